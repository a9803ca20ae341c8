"""Interactive annotation: prompts (clicks, boxes, scribbles, lassos) encoded as guidance channels.

See :mod:`labelzoo.interactive.prompts` for the request format and its validation,
:mod:`labelzoo.interactive.transforms` for the bundle transforms and :mod:`labelzoo.interactive.simulate`
for the simulated annotator of the tests and the benchmark.
"""

from labelzoo.interactive.prompts import PROMPT_PARAMS, Prompts, parse_prompts

__all__ = ["PROMPT_PARAMS", "Prompts", "parse_prompts"]
