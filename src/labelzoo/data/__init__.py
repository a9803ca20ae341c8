"""Sample-data builders: deterministic synthetic volumes for the demo and the tests (no downloads)."""

from labelzoo.data.brats import (
    BRATS_CHANNELS,
    build_brats_studies,
    make_brats_case,
)
from labelzoo.data.cxr import (
    CXR_LABELS,
    build_cxr_studies,
    make_cxr_case,
)
from labelzoo.data.synthetic import (
    CT_LABELS,
    build_sample_studies,
    make_ct_case,
)

__all__ = ["BRATS_CHANNELS", "CT_LABELS", "CXR_LABELS", "build_brats_studies", "build_cxr_studies",
           "build_sample_studies", "make_brats_case", "make_ct_case", "make_cxr_case"]
