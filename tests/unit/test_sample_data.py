import json

import nibabel as nib
import numpy as np
import pytest

from labelzoo.data import CT_LABELS, build_sample_studies, make_ct_case
from labelzoo.errors import LabelZooError


def test_case_is_deterministic_and_has_every_class():
    a_img, a_lbl, a_aff = make_ct_case(3, shape=(40, 40, 24))
    b_img, b_lbl, b_aff = make_ct_case(3, shape=(40, 40, 24))
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lbl, b_lbl)
    np.testing.assert_array_equal(a_aff, b_aff)
    assert sorted(np.unique(a_lbl).tolist()) == sorted(CT_LABELS.values())
    # CT intensities: air outside the body, soft tissue and contrast-enhanced organs inside
    assert a_img.min() < -900 and 80 < a_img[a_lbl == CT_LABELS["liver"]].mean() < 140


def test_cases_differ_by_seed():
    a, _, _ = make_ct_case(0, shape=(32, 32, 16))
    b, _, _ = make_ct_case(1, shape=(32, 32, 16))
    assert not np.array_equal(a, b)


def test_affine_carries_spacing_and_scanner_orientation():
    _, _, affine = make_ct_case(0, shape=(32, 32, 16), spacing=(0.8, 0.8, 3.0))
    np.testing.assert_allclose(np.abs(np.diag(affine)[:3]), [0.8, 0.8, 3.0])
    assert nib.aff2axcodes(affine) == ("L", "P", "S")


@pytest.mark.parametrize("shape", [(8, 32, 32), (32, 32)])
def test_bad_shape_is_named(shape):
    with pytest.raises(LabelZooError, match="shape"):
        make_ct_case(0, shape=shape)


def test_monailabel_layout(tmp_path):
    out = build_sample_studies(tmp_path / "s", n_images=3, n_labeled=1, shape="32,32,16")
    images = sorted(p.name for p in out.glob("*.nii.gz"))
    labels = sorted(p.name for p in (out / "labels" / "final").glob("*.nii.gz"))
    assert images == ["case_000.nii.gz", "case_001.nii.gz", "case_002.nii.gz"]
    assert labels == ["case_000.nii.gz"]
    img, lbl = nib.load(out / images[0]), nib.load(out / "labels" / "final" / labels[0])
    assert img.shape == lbl.shape == (32, 32, 16)
    np.testing.assert_allclose(img.affine, lbl.affine)
    assert not list(out.rglob(".*")), "no temporary files left behind"


def test_msd_layout(tmp_path):
    out = build_sample_studies(tmp_path / "m", n_images=3, n_labeled=2, shape="32,32,16", layout="msd")
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["numTest"] == 1
    assert meta["labels"]["6"] == "liver"
    for item in meta["training"]:
        assert (out / item["image"]).is_file() and (out / item["label"]).is_file()
    assert all((out / t).is_file() for t in meta["test"])


def test_refuses_non_empty_folder_unless_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(LabelZooError, match="not empty"):
        build_sample_studies(tmp_path, n_images=1, n_labeled=0, shape="32,32,16")
    build_sample_studies(tmp_path, n_images=1, n_labeled=0, shape="32,32,16", overwrite=True)
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "kwargs, word",
    [({"n_images": 0}, "n_images"), ({"n_labeled": 5}, "n_labeled"), ({"layout": "zip"}, "layout"),
     ({"shape": "1,2"}, "shape"), ({"spacing": "a,b,c"}, "spacing")],
)
def test_bad_arguments_are_named(tmp_path, kwargs, word):
    with pytest.raises(LabelZooError, match=word):
        build_sample_studies(tmp_path / "x", **{"n_images": 2, "n_labeled": 1, "shape": "32,32,16", **kwargs})


def test_dicom_layout_round_trips_geometry(tmp_path):
    import SimpleITK as sitk

    out = build_sample_studies(tmp_path / "d", n_images=1, n_labeled=0, shape="32,28,16", layout="dicom")
    files = sorted((out / "case_000").glob("*.dcm"))
    assert len(files) == 16
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out / "case_000")))
    series = reader.Execute()
    assert series.GetSize() == (32, 28, 16)
    np.testing.assert_allclose(series.GetSpacing(), (1.5, 1.5, 2.0))
    image, _, _ = make_ct_case(0, shape=(32, 28, 16))
    np.testing.assert_allclose(sitk.GetArrayFromImage(series).transpose(2, 1, 0), np.rint(image))
