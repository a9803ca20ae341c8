"""Every kind of repository bundle is served and answers through the Slicer plugin's client.

The BraTS bundle (4-channel MRI in, sigmoid regions out) must give a label map in BraTS convention, and the
2D lung bundle a mask of the radiograph's size. Each bundle is served as a shrunk copy (its smoke overrides,
as in the other app tests), on studies of its own kind built by ``labelzoo sample-data``.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from labelzoo.data import build_brats_studies, build_cxr_studies
from tests.app.conftest import REPO_ROOT, shrink_bundle

pytestmark = pytest.mark.server

CASES = {
    # bundle: (studies builder, allowed label values, expected labels shown to the annotator)
    "brats_mri_axialattention_segmentation": (
        lambda out: build_brats_studies(out, n_images=2, n_labeled=0, shape=(32, 32, 32)),
        {0, 1, 2, 4}, 3),
    "lung_xray_unetplusplus_segmentation": (
        lambda out: build_cxr_studies(out, n_images=2, n_labeled=0, shape=(80, 64), layout="monailabel"),
        {0, 1}, 2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bundle_is_served_and_infers(name: str, server_factory, tmp_path: Path) -> None:
    build, allowed, dims = CASES[name]
    studies = build(tmp_path / "studies")
    bundles = tmp_path / "bundles"
    shrink_bundle(REPO_ROOT / "bundles" / name, bundles)
    server = server_factory(studies, conf=f"models={name},bundles={bundles},skip_scoring=true")
    client = server.client()
    model = client.info()["models"][name]
    assert model["dimension"] == dims and model["trained"] is False

    image_id = client.next_sample("first", {})["id"]
    label_file, _ = client.infer(name, image_id, {})
    image = nib.load(next(studies.glob(f"{image_id}.*")))
    pred = nib.load(label_file)
    assert pred.shape == image.shape[:dims]
    assert set(np.unique(np.asarray(pred.dataobj)).astype(int).tolist()) <= allowed
    np.testing.assert_allclose(pred.affine, image.affine, atol=1e-4)
