"""Sample-data builders: deterministic synthetic volumes for the demo and the tests (no downloads)."""

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

__all__ = ["CT_LABELS", "CXR_LABELS", "build_cxr_studies", "build_sample_studies", "make_ct_case", "make_cxr_case"]
