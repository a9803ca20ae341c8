"""T-AutoML: search networks, augmentations, losses and learning rate with a transformer ranking predictor.

- :mod:`labelzoo.automl.space`: the search-space tables.
- :mod:`labelzoo.automl.encoding`: a configuration as one integer vector; validity, sampling.
- :mod:`labelzoo.automl.components`: the MONAI transforms, loss and optimiser a configuration maps to.
- :mod:`labelzoo.automl.predictor`: the pairwise-ranking transformer.
- :mod:`labelzoo.automl.search`: the search loop behind ``labelzoo search``.

The network built from a vector lives in :mod:`labelzoo.networks.tautoml`. Only the pure modules are
imported here, so ``import labelzoo.automl`` does not load torch.
"""

from labelzoo.automl.encoding import (
    Block,
    Config,
    InvalidVectorError,
    check_vector,
    decode,
    encode,
    sample_unique,
    sample_vector,
)

__all__ = [
    "Block",
    "Config",
    "InvalidVectorError",
    "check_vector",
    "decode",
    "encode",
    "sample_unique",
    "sample_vector",
]
