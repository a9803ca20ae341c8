"""Bad input to the UNETR bundle fails with a message naming the file and what was expected.

Cases (issue 3): an image with the wrong number of channels, a 2D image, an unreadable file, a dataset
folder without dataset.json. Each goes through the bundle's real inference workflow (MONAI's
``ConfigWorkflow`` over configs/inference.json with the smoke overrides; one case also through
``python -m monai.bundle run`` in a subprocess), and the transforms are unit-tested directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from labelzoo.bundle.smoke import SmokeWorkspace, prepare_workspace
from labelzoo.data.msd import msd_datalist
from labelzoo.errors import LabelZooError
from labelzoo.io import save_nifti, write_json_atomic
from labelzoo.transforms import CheckedLoadImaged, ValidateImaged

REPO = Path(__file__).resolve().parents[2]
UNETR = REPO / "bundles" / "btcv_ct_unetr_segmentation"
AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> SmokeWorkspace:
    """The smoke workspace of the UNETR bundle with random (untrained) small weights in models/model.pt."""
    from monai.bundle import ConfigParser

    meta = json.loads((UNETR / "configs" / "metadata.json").read_text())
    ws, problems = prepare_workspace(UNETR, tmp_path_factory.mktemp("bad-input"), meta)
    assert problems == []
    parser = ConfigParser()
    parser.read_config([str(ws.bundle / "configs" / "inference.json"), str(ws.override_files["inference"])])
    torch.save(parser.get_parsed_content("network_def").state_dict(), ws.bundle / "models" / "model.pt")
    return ws


def _dataset_with_test_image(root: Path, name: str, write) -> tuple[Path, Path]:
    """An MSD folder whose single test image is written by ``write(path)``."""
    image = root / "imagesTs" / name
    image.parent.mkdir(parents=True, exist_ok=True)
    write(image)
    write_json_atomic(root / "dataset.json", {"training": [], "test": [f"./imagesTs/{name}"]})
    return root, image


def _run_inference(ws: SmokeWorkspace, dataset: Path, out: Path) -> None:
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(
        config_file=[str(ws.bundle / "configs" / "inference.json"), str(ws.override_files["inference"])],
        meta_file=str(ws.bundle / "configs" / "metadata.json"), logging_file=False, workflow_type="infer",
        bundle_root=str(ws.bundle), dataset_dir=str(dataset), output_dir=str(out),
    )
    wf.initialize()
    wf.run()
    wf.finalize()


def _labelzoo_error(exc: BaseException) -> LabelZooError:
    """The LabelZooError somewhere in an exception chain (MONAI and ignite wrap transform errors)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, LabelZooError):
            return seen
        seen = seen.__cause__ or seen.__context__
    raise AssertionError(f"no LabelZooError in the chain of {exc!r}")


def test_inference_good_image_runs(workspace: SmokeWorkspace, tmp_path: Path) -> None:
    """Control: the same workflow on a valid 3D CT writes a prediction."""
    dataset, image = _dataset_with_test_image(
        tmp_path / "ds", "ok.nii.gz", lambda p: save_nifti(np.full((40, 40, 32), 40.0, np.float32), AFFINE, p))
    _run_inference(workspace, dataset, tmp_path / "out")
    assert (tmp_path / "out" / "ok_seg.nii.gz").is_file()


@pytest.mark.parametrize(
    ("name", "write", "expected"),
    [
        ("two_channels.nii.gz", lambda p: save_nifti(np.zeros((40, 40, 32, 2), np.float32), AFFINE, p),
         "has 2 channel(s)"),
        ("slice.nii.gz", lambda p: save_nifti(np.zeros((40, 40), np.float32), AFFINE, p), "is a 2D image"),
        ("single_slice.nii.gz", lambda p: save_nifti(np.zeros((40, 40, 1), np.float32), AFFINE, p),
         "is a 2D image"),
        ("broken.nii.gz", lambda p: p.write_bytes(b"this is not a NIfTI file"), "cannot read 'image' file"),
    ],
    ids=["wrong-channels", "2d-image", "single-slice", "unreadable"],
)
def test_inference_bad_image(workspace: SmokeWorkspace, tmp_path: Path, name: str, write, expected: str) -> None:
    dataset, image = _dataset_with_test_image(tmp_path / "ds", name, write)
    with pytest.raises(Exception) as info:  # noqa: B017 (the LabelZooError is inside MONAI's wrapping)
        _run_inference(workspace, dataset, tmp_path / "out")
    message = str(_labelzoo_error(info.value))
    assert expected in message
    assert str(image) in message  # names the file
    assert "expected" in message  # and what was expected
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_inference_dataset_without_dataset_json(workspace: SmokeWorkspace, tmp_path: Path) -> None:
    folder = tmp_path / "no_json"
    (folder / "imagesTs").mkdir(parents=True)
    with pytest.raises(Exception) as info:  # noqa: B017
        _run_inference(workspace, folder, tmp_path / "out")
    message = str(_labelzoo_error(info.value))
    assert str(folder) in message and "no dataset.json" in message and "expected an MSD-style dataset" in message


def test_cli_run_reports_wrong_channels(workspace: SmokeWorkspace, tmp_path: Path) -> None:
    """Through `python -m monai.bundle run`: the user sees the file and the expectation on stderr."""
    dataset, image = _dataset_with_test_image(
        tmp_path / "ds", "rgb.nii.gz", lambda p: save_nifti(np.zeros((40, 40, 32, 3), np.float32), AFFINE, p))
    cmd = [sys.executable, "-m", "monai.bundle", "run",
           "--config_file", json.dumps([str(workspace.bundle / "configs" / "inference.json"),
                                        str(workspace.override_files["inference"])]),
           "--meta_file", str(workspace.bundle / "configs" / "metadata.json"),
           "--bundle_root", str(workspace.bundle), "--dataset_dir", str(dataset),
           "--output_dir", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode != 0
    assert f"LabelZooError: 'image' file {image} has 3 channel(s)" in proc.stderr
    assert "expected 1 channel(s) of a 3D image" in proc.stderr


# ----------------------------------------------------------------------------------------------------------
# the pieces, directly
# ----------------------------------------------------------------------------------------------------------


def test_validate_imaged_messages() -> None:
    check = ValidateImaged(keys="image", num_channels=4, spatial_dims=3)
    check.check(torch.zeros(4, 8, 8, 8), "ok.nii.gz")
    with pytest.raises(LabelZooError, match=r"'image' file a\.nii\.gz has 1 channel\(s\) .* expected 4 channel"):
        check.check(torch.zeros(1, 8, 8, 8), "a.nii.gz")
    with pytest.raises(LabelZooError, match=r"b\.png is a 2D image of spatial shape \(8, 8\): expected 4 channel"):
        check.check(torch.zeros(4, 8, 8), "b.png")
    with pytest.raises(ValueError, match="spatial_dims"):
        ValidateImaged(keys="image", num_channels=1, spatial_dims=4)
    two_d = ValidateImaged(keys="image", num_channels=1, spatial_dims=2)
    two_d.check(torch.zeros(1, 16, 16), "ok.png")


def test_checked_load_imaged_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"garbage")
    with pytest.raises(LabelZooError, match=r"cannot read 'image' file .*bad\.nii\.gz: expected an image file"):
        CheckedLoadImaged(keys="image")({"image": str(bad)})
    missing = tmp_path / "missing.nii.gz"
    with pytest.raises(LabelZooError, match="missing.nii.gz"):
        CheckedLoadImaged(keys="image")({"image": str(missing)})


def test_msd_datalist(tmp_path: Path) -> None:
    records = [{"image": f"./imagesTr/{i}.nii.gz", "label": f"./labelsTr/{i}.nii.gz"} for i in range(10)]
    write_json_atomic(tmp_path / "dataset.json", {"training": records, "test": ["./imagesTs/t.nii.gz"]})
    train, val = msd_datalist(tmp_path, "training"), msd_datalist(tmp_path, "validation")
    assert (len(train), len(val)) == (8, 2)
    assert not {r["image"] for r in train} & {r["image"] for r in val}
    assert train[0]["image"] == str((tmp_path / "imagesTr" / "0.nii.gz").resolve())
    assert msd_datalist(tmp_path, "test") == [{"image": str((tmp_path / "imagesTs" / "t.nii.gz").resolve())}]
    with pytest.raises(LabelZooError, match="must be one of"):
        msd_datalist(tmp_path, "train")
    with pytest.raises(LabelZooError, match=r"does not exist: expected an MSD-style dataset folder"):
        msd_datalist(tmp_path / "nowhere")
    write_json_atomic(tmp_path / "dataset.json", {"training": [{"image": "a.nii.gz"}]})
    with pytest.raises(LabelZooError, match=r"dataset\.json: 'training' entries \[0\] have no 'label'"):
        msd_datalist(tmp_path, "training")
    with pytest.raises(LabelZooError, match=r"has no 'test' list"):
        msd_datalist(tmp_path, "test")
