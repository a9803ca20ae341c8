"""Request option schemas: nothing a client sends may become bundle config code (pure functions)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser

from labelzoo.errors import LabelZooError
from labelzoo.options import (
    INFER_OPTIONS,
    STRATEGY_OPTIONS,
    TRAIN_OPTIONS,
    check_inert,
    check_info,
    check_options,
    parse_json_object,
)
from labelzoo.validation import affine_error, check_image_size, header_shape, size_error


def test_every_config_sigil_is_refused_in_text_options():
    for value in ("$print(1)", " $x", "@network_def", "%configs/a.json#x"):
        with pytest.raises(LabelZooError, match="tracking_run_name"):
            check_options({"tracking_run_name": value}, TRAIN_OPTIONS, "training")
    assert check_options({"tracking_run_name": "run 1 (liver)"}, TRAIN_OPTIONS, "t") == {
        "tracking_run_name": "run 1 (liver)"}


def test_checked_values_stay_strings_in_a_bundle_config():
    """What passes the checks is inert data: ConfigParser gives it back unchanged, evaluates nothing."""
    clean = check_options({"tracking_run_name": "a$b@c%d", "client_id": "x = 1 + 1"}, TRAIN_OPTIONS, "t")
    parser = ConfigParser({"name": clean["tracking_run_name"], "client": clean["client_id"]})
    assert parser.get_parsed_content("name") == "a$b@c%d"
    assert parser.get_parsed_content("client") == "x = 1 + 1"


@pytest.mark.parametrize("value", [
    {"_target_": "os.system", "command": "true"},
    [{"a": {"_requires_": "x"}}],
    {"$k": 1},
    {"k": "$v"},
    float("nan"),
    object(),
])
def test_nested_config_syntax_is_refused(value):
    with pytest.raises(LabelZooError):
        check_inert(value, "label_info")


def test_typed_options_collapse_lists_and_name_what_is_wrong():
    # the Slicer plugin sends a chosen list item back as a one-item list; an empty list is the default
    clean = check_options({"device": ["cpu"], "max_epochs": "3", "val_split": -1, "model_filename": [],
                           "tracking": ["None", "mlflow"], "run_id": "", "pretrained": "false"}, TRAIN_OPTIONS, "t")
    assert clean == {"device": "cpu", "max_epochs": 3, "val_split": -1.0, "model_filename": "model.pt",
                     "tracking": "None", "run_id": "run", "pretrained": False}
    for bad, name in (({"max_epochs": 2.5}, "max_epochs"), ({"max_epochs": True}, "max_epochs"),
                      ({"val_split": 1}, "val_split"), ({"val_split": "inf"}, "val_split"),
                      ({"device": "cuda; rm"}, "device"), ({"gpus": "0,a"}, "gpus"),
                      ({"model_filename": "a/b.pt"}, "model_filename"), ({"unknown": 1}, "unknown")):
        with pytest.raises(LabelZooError, match=repr(name)):
            check_options(bad, TRAIN_OPTIONS, "training")
    with pytest.raises(LabelZooError, match="JSON object"):
        check_options([1], TRAIN_OPTIONS, "training")


def test_infer_and_strategy_options():
    clean = check_options({"foreground": [[1, 2, 3.4]], "background": "[[5, 6, 7]]", "label_info": [{"name": "liver",
                           "idx": 6}], "result_extension": ".nii.gz"}, INFER_OPTIONS, "inference")
    assert clean["foreground"] == [[1, 2, 3]] and clean["background"] == [[5, 6, 7]]
    for bad in ({"foreground": [[1, "x", 3]]}, {"image": "/etc/passwd"}, {"result_extension": ".py"},
                {"label_tag": "../x"}):
        with pytest.raises(LabelZooError):
            check_options(bad, INFER_OPTIONS, "inference")
    assert check_options({"k": "2"}, STRATEGY_OPTIONS, "s") == {"k": 2}
    with pytest.raises(LabelZooError, match="'k'"):
        check_options({"k": 0}, STRATEGY_OPTIONS, "s")


def test_form_fields_must_be_json_objects():
    assert parse_json_object("", "params") == {} and parse_json_object('{"a": 1}', "params") == {"a": 1}
    for text, words in (("[1]", "JSON object"), ("{", "not valid JSON"), ('"x"', "JSON object")):
        with pytest.raises(LabelZooError, match=words):
            parse_json_object(text, "params")
    with pytest.raises(LabelZooError, match="'ts'"):
        check_info({"ts": 1}, "params")


def test_sizes_are_read_from_the_header(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 1024))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352
    bomb = tmp_path / "bomb.nii.gz"
    bomb.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4))
    assert header_shape(bomb) == ((1024, 1024, 1024), 2)
    with pytest.raises(LabelZooError, match="max_image_voxels"):
        check_image_size(bomb, max_voxels=200_000_000, max_bytes=2**30)
    assert size_error((512, 512, 760), 2, 200_000_000) is None
    png = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((30, 40), np.uint8)).save(png)
    assert header_shape(png) == ((40, 30), 1)


def test_affine_tolerance():
    image = np.diag([1.5, 1.5, 2.0, 1.0])
    image[:3, 3] = [-50, -60, 10]
    assert affine_error(image + 1e-6, image) is None
    other = image.copy()
    other[2, 2] = 5.0
    assert "spacing" in affine_error(other, image)
    shifted = image.copy()
    shifted[0, 3] += 1.0
    assert "origin" in affine_error(shifted, image)
