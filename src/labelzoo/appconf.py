"""The ``--conf`` keys the LabelZoo MONAI Label app understands, with defaults and help.

Pure data, shared by ``labelzoo serve`` (which rejects unknown keys before starting anything) and by
``apps/labelzoo/main.py`` (which reads the values). Values are strings, as MONAI Label passes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from labelzoo.errors import LabelZooError


@dataclass(frozen=True)
class ConfKey:
    """One app setting: its default (a string, as MONAI Label passes them) and what it does."""

    default: str
    help: str


APP_CONF: dict[str, ConfKey] = {
    "models": ConfKey("all", "bundles to serve: 'all' or comma-separated bundle folder names"),
    "bundles": ConfKey("", "extra folders holding bundles (or a bundle), separated by commas"),
    "skip_trainers": ConfKey("false", "'true' serves inference only (no training tasks)"),
    "skip_scoring": ConfKey("false", "'true' registers no scoring methods"),
    "device": ConfKey("auto", "'auto' (CUDA when present, else CPU), 'cpu' or 'cuda'"),
    # active learning and scoring (apps/labelzoo/lib/strategies.py, scoring.py)
    "scoring_model": ConfKey("", "bundle whose uncertainty the strategies rank on (default: the first served bundle)"),
    "epistemic_samples": ConfKey("5", "Monte-Carlo dropout forward passes per image for the epistemic score"),
    "epistemic_dropout": ConfKey("0.2", "dropout rate applied to the network's dropout layers while scoring"),
    "tta_samples": ConfKey("5", "test-time augmentations per image for the tta score (2 to 7)"),
    "strategy_k": ConfKey("3", "epistemic/tta strategies: rotate through the top k uncertain images"),
    "hybrid_alpha": ConfKey("0.5", "hybrid strategy: weight of uncertainty against diversity (0 to 1)"),
    "scoring_interval": ConfKey("2", "seconds between the scoring worker's checks for new weights or images"),
    "save_original": ConfKey("true", "store each suggestion as label tag 'original' (the dice score compares to it)"),
}

TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}


def parse_conf(conf: dict | str | None) -> dict[str, str]:
    """Turn ``--conf`` into a dict of strings and reject unknown keys.

    Accepts a dict (``--conf '{"models": "all"}'``) or a string of ``key=value`` pairs separated by
    commas or semicolons (``--conf models=all,skip_scoring=true``). A value holding commas (a list)
    must be given in the dict form.

    Raises:
        LabelZooError: naming the unknown key and listing the known ones, or a malformed pair.

    Example:
        >>> parse_conf("skip_scoring=true")
        {'skip_scoring': 'true'}
    """
    if conf is None or conf == "":
        return {}
    if isinstance(conf, dict):
        items = {str(k): v for k, v in conf.items()}
    elif isinstance(conf, str):
        items = {}
        for pair in filter(None, (p.strip() for p in conf.replace(";", ",").split(","))):
            if "=" not in pair:
                raise LabelZooError(f"--conf entry {pair!r} is not key=value (known keys: {', '.join(APP_CONF)})")
            key, value = pair.split("=", 1)
            items[key.strip()] = value.strip()
    else:
        raise LabelZooError(f"--conf must be key=value pairs or a dict, got {conf!r}")
    unknown = sorted(set(items) - set(APP_CONF))
    if unknown:
        raise LabelZooError(f"unknown --conf key {', '.join(map(repr, unknown))}; known keys: {', '.join(APP_CONF)}")
    return {k: _as_str(v) for k, v in items.items()}


def _as_str(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def conf_value(conf: dict[str, str], key: str) -> str:
    """The value of ``key`` in ``conf``, or its default."""
    return str(conf.get(key, APP_CONF[key].default))


def conf_bool(conf: dict[str, str], key: str) -> bool:
    """A boolean setting; raises :class:`LabelZooError` for a value that is not a yes/no word."""
    value = conf_value(conf, key).strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise LabelZooError(f"--conf {key} must be true or false, got {value!r}")
