"""The synthetic chest-radiograph builder: deterministic, plausible, both layouts, PNG and NIfTI agree."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelzoo.data import CXR_LABELS, build_cxr_studies, make_cxr_case
from labelzoo.errors import LabelZooError


def test_case_is_deterministic_and_varies_with_seed():
    a_img, a_lab = make_cxr_case(3, (96, 80))
    b_img, b_lab = make_cxr_case(3, (96, 80))
    c_img, _ = make_cxr_case(4, (96, 80))
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)
    assert a_img.shape == a_lab.shape == (96, 80)
    assert a_img.dtype == np.uint8 and a_lab.dtype == np.uint8


def test_two_dark_lung_fields_with_the_heart_cut_out():
    from scipy.ndimage import label as connected

    image, lung = make_cxr_case(0)
    assert set(np.unique(lung)) == {0, 1}
    _, n = connected(lung)
    assert n == 2, "one field per lung"
    h, w = lung.shape
    assert lung[:, : w // 2].sum() > lung[:, w // 2:].sum(), "the heart takes area from the viewer's right lung"
    assert image[lung == 1].mean() < image[lung == 0].mean() - 40, "lungs are darker than the rest"
    assert 0.1 < lung.mean() < 0.45


@pytest.mark.parametrize("shape", [(16, 64), (64,), "64x64", (64, 64, 3)])
def test_bad_shape_is_named(shape, tmp_path):
    with pytest.raises(LabelZooError, match="shape"):
        build_cxr_studies(tmp_path / "out", shape=shape)


def test_bad_counts_layout_and_non_empty_folder(tmp_path):
    with pytest.raises(LabelZooError, match="n_labeled"):
        build_cxr_studies(tmp_path / "a", n_images=2, n_labeled=3)
    with pytest.raises(LabelZooError, match="layout"):
        build_cxr_studies(tmp_path / "b", layout="coco")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("x")
    with pytest.raises(LabelZooError, match="not empty"):
        build_cxr_studies(tmp_path / "c", n_images=1, n_labeled=1, shape=(32, 32))
    assert (tmp_path / "c" / "keep.txt").read_text() == "x"


def test_msd_layout_png_and_dataset_json(tmp_path):
    from PIL import Image

    out = build_cxr_studies(tmp_path / "msd", n_images=3, n_labeled=2, shape=(72, 64), seed=5)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["numTest"] == 1
    assert meta["labels"] == {str(v): k for k, v in CXR_LABELS.items()}
    first = meta["training"][0]
    image = np.array(Image.open(out / first["image"]))
    label = np.array(Image.open(out / first["label"]))
    expected_image, expected_label = make_cxr_case(5, (72, 64))
    assert np.array_equal(image, expected_image) and np.array_equal(label, expected_label)
    assert (out / meta["test"][0]).is_file()


def test_monailabel_layout_nifti_loads_like_the_png(tmp_path):
    """MONAI reads the NIfTI twin and the PNG of a case as the same (W, H) array: orientation round-trips."""
    from monai.transforms import LoadImage

    from labelzoo.data.cxr import save_png

    out = build_cxr_studies(tmp_path / "ml", n_images=2, n_labeled=1, shape=(72, 64), layout="monailabel")
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["cxr_000.nii.gz", "cxr_001.nii.gz"]
    assert [p.name for p in (out / "labels" / "final").iterdir()] == ["cxr_000.nii.gz"]
    image, _ = make_cxr_case(0, (72, 64))
    png = save_png(image, tmp_path / "cxr_000.png")
    load = LoadImage(image_only=True)
    from_nifti, from_png = load(out / "cxr_000.nii.gz"), load(png)
    assert from_nifti.shape == from_png.shape == (64, 72)
    assert np.array_equal(np.asarray(from_nifti), np.asarray(from_png))
