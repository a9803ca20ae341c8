"""Input checks the app applies before touching the datastore or a model."""

import nibabel as nib
import numpy as np
import pytest

from labelzoo.errors import LabelZooError
from labelzoo.validation import check_id, geometry_error, label_shape_error, read_shape


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "..", ".hidden", "x/../../etc", "a\\b", "a b", "x" * 300])
def test_check_id_rejects_path_like_ids(bad):
    with pytest.raises(LabelZooError, match="id"):
        check_id(bad)


@pytest.mark.parametrize("good", ["case_001", "img-2.v1", "A"])
def test_check_id_accepts_plain_ids(good):
    assert check_id(good) == good


def test_geometry_error():
    assert geometry_error((64, 64, 48), 3, 1) is None
    assert geometry_error((64, 64, 48, 1), 3, 1) is None
    assert geometry_error((64, 64, 48, 4), 3, 4) is None
    assert "4 channels" in geometry_error((64, 64, 48, 4), 3, 1, model="m")
    assert "1 channel " in geometry_error((64, 64, 48), 3, 4, model="m")
    assert "2 dimensions" in geometry_error((64, 64), 3, 1)
    assert geometry_error((256, 256), 2, 1) is None
    assert "expects a 2D" in geometry_error((8, 8, 8, 8, 8), 2, 1)


def test_label_shape_error():
    assert label_shape_error((64, 64, 48), (64, 64, 48)) is None
    assert label_shape_error((64, 64, 48, 1), (64, 64, 48)) is None
    assert label_shape_error((64, 64, 48), (64, 64, 48, 4)) is None
    assert "must match" in label_shape_error((32, 32, 48), (64, 64, 48))


def test_read_shape(tmp_path):
    img = tmp_path / "a.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.eye(4)), img)
    assert read_shape(img) == (4, 5, 6)
    assert read_shape(img, full=True) == (4, 5, 6)
    junk = tmp_path / "junk.nii.gz"
    junk.write_text("not an image")
    with pytest.raises(LabelZooError, match="junk.nii.gz is not a readable image"):
        read_shape(junk, full=True)


def test_label_values_error_names_stray_values_and_models():
    from labelzoo.validation import label_values_error

    ct = ("btcv", 3, 1, frozenset(range(1, 14)))
    brats = ("brats", 3, 4, frozenset({1, 2, 4}))
    assert label_values_error({0, 1, 6}, (64, 64, 48), [ct, brats]) is None
    message = label_values_error({0, 14}, (64, 64, 48), [ct, brats], name="label for 'case_002'")
    assert "[14]" in message and "btcv" in message and "brats" not in message  # brats does not read 1-channel CT
    assert label_values_error({0, 4}, (64, 64, 48, 4), [ct, brats]) is None
    assert label_values_error({0, 99}, (64, 64), [ct, brats]) is None  # no served model reads a 2D image


def test_read_label_values(tmp_path):
    import nibabel as nib
    import numpy as np
    import pytest

    from labelzoo.errors import LabelZooError
    from labelzoo.validation import read_label_values

    data = np.zeros((8, 8, 8), np.float32)
    data[0, 0, 0], data[1, 1, 1] = 3, 6
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "l.nii.gz")
    assert read_label_values(tmp_path / "l.nii.gz") == {0, 3, 6}
    data[2, 2, 2] = 0.5
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "f.nii.gz")
    with pytest.raises(LabelZooError, match="non-integer"):
        read_label_values(tmp_path / "f.nii.gz")
