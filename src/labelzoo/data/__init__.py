"""Sample-data builders: deterministic synthetic volumes for the demo and the tests (no downloads)."""

from labelzoo.data.synthetic import (
    CT_LABELS,
    build_sample_studies,
    make_ct_case,
)

__all__ = ["CT_LABELS", "build_sample_studies", "make_ct_case"]
