"""The lung X-ray UNet++ bundle: masks come back on the input's pixels for every input format, the augmentation
presets and encoder variants build, and bad input is named.

The default configuration and the UNet variant (``configs/smoke.json`` "variants") are verified (train / evaluate /
inference for real, MONAI Label's tasks) by the parametrized test over every bundle in
``tests/bundles/test_verify.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from labelzoo.data.cxr import make_cxr_case, save_cxr_nifti, save_png
from labelzoo.errors import LabelZooError

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "lung_xray_unetplusplus_segmentation"
CONFIGS = BUNDLE / "configs"


def _parser(*files: str, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser.update({"bundle_root": str(BUNDLE), **overrides})
    return parser


# ----------------------------------------------------------------------------------------------------------
# geometry: a perfect prediction goes through the real pre- and post-processing back onto the label
# ----------------------------------------------------------------------------------------------------------


def _save_dicom(image: np.ndarray, path: Path) -> Path:
    """A single-frame CR DICOM of a ``(rows, columns)`` uint8 image."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "CR"
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.7, 0.7]
    ds.PixelData = (image.astype(np.uint16) * 16).tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(str(path))
    return path


def _write_inputs(folder: Path, image: np.ndarray) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True)
    Image.fromarray(image).save(folder / "grey.jpg", quality=95)
    rgb = np.stack([image, image, image], axis=-1)
    rgba = np.concatenate([rgb, np.full(image.shape + (1,), 255, np.uint8)], axis=-1)
    return [
        save_png(image, folder / "grey.png"),
        folder / "grey.jpg",
        save_png(rgb, folder / "rgb.png"),
        save_png(rgba, folder / "rgba.png"),
        save_cxr_nifti(image, folder / "grey.nii.gz"),
        _save_dicom(image, folder / "grey.dcm"),
    ]


def test_masks_come_back_on_the_input_pixels_for_every_format(tmp_path: Path) -> None:
    """Pre-process each file, replace the network by the resized true mask, post-process and save: the saved mask
    must be the true mask at the input's (rows, columns) for PNG, JPEG, RGB(A), 2D NIfTI and DICOM."""
    from PIL import Image

    image, lung = make_cxr_case(7, shape=(150, 118))  # not square, not a multiple of the network size
    inputs = _write_inputs(tmp_path / "in", image)
    out_dir = tmp_path / "out"
    parser = _parser("inference.json", output_dir=str(out_dir), image_size=[64, 64])
    pre = parser.get_parsed_content("preprocessing")
    post = parser.get_parsed_content("postprocessing")
    label_pre = pre.transforms[0].__class__(keys="image", ensure_channel_first=True)
    for path in inputs:
        data = pre({"image": str(path)})
        assert data["image"].shape == (1, 64, 64), path.name
        # the "network output": logits of the true mask resized exactly as the image was
        truth = save_png(lung, tmp_path / "truth.png")
        resized = pre.transforms[-2]({"image": label_pre({"image": str(truth)})["image"].float()})["image"] > 0.5
        logits = torch.cat([~resized, resized]).float() * 8.0 - 4.0
        data["pred"] = MetaTensor(logits, meta=dict(data["image"].meta))
        post(data)
        saved = out_dir / f"{path.name.split('.')[0]}_seg.png"
        mask = np.array(Image.open(saved))
        assert mask.shape == lung.shape, f"{path.name}: mask {mask.shape}, input {lung.shape}"
        iou = np.logical_and(mask, lung).sum() / np.logical_or(mask, lung).sum()
        assert iou > 0.9, f"{path.name}: the mask is not on the lungs (IoU {iou:.2f}): orientation lost"
        saved.unlink()


def test_nifti_output_keeps_the_input_affine(tmp_path: Path) -> None:
    import nibabel as nib

    image, _ = make_cxr_case(1, shape=(72, 64))
    src = save_cxr_nifti(image, tmp_path / "in" / "case.nii.gz")
    parser = _parser("inference.json", output_dir=str(tmp_path / "out"), output_ext=".nii.gz", image_size=[64, 64])
    data = parser.get_parsed_content("preprocessing")({"image": str(src)})
    data["pred"] = MetaTensor(torch.zeros(2, 64, 64), meta=dict(data["image"].meta))
    parser.get_parsed_content("postprocessing")(data)
    out = nib.load(str(tmp_path / "out" / "case_seg.nii.gz"))
    ref = nib.load(str(src))
    assert out.shape[:2] == ref.shape[:2] == (64, 72)
    assert np.allclose(out.affine, ref.affine)


def _not_an_image(path: Path) -> None:
    path.write_bytes(b"not an image")


def _volume(path: Path) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((40, 40, 3), np.float32), np.eye(4)), str(path))


@pytest.mark.parametrize(("name", "writer", "match"), [
    ("bad.png", _not_an_image, "cannot read 'image' file"),
    ("volume.nii.gz", _volume, "expected a 2D image"),
])
def test_bad_input_is_named(tmp_path: Path, name: str, writer, match: str) -> None:
    path = tmp_path / name
    writer(path)
    pre = _parser("inference.json").get_parsed_content("preprocessing")
    with pytest.raises(Exception) as info:
        pre({"image": str(path)})
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    named = [e for e in chain if isinstance(e, LabelZooError)]
    assert named and match in str(named[0]) and path.name in str(named[0])


# ----------------------------------------------------------------------------------------------------------
# augmentation presets and encoder variants
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "present", "absent"), [
    ("light", {"RandScaleCropd", "OneOf"}, {"RandCoarseDropoutd", "RandAffined"}),
    ("medium", {"RandScaleCropd", "OneOf", "RandCoarseDropoutd"}, {"RandAffined"}),
    ("heavy", {"RandScaleCropd", "OneOf", "RandCoarseDropoutd", "RandAffined"}, set()),
])
def test_augmentation_presets(tmp_path: Path, preset: str, present: set[str], absent: set[str]) -> None:
    from labelzoo.data import build_cxr_studies

    data_dir = build_cxr_studies(tmp_path / "data", n_images=2, n_labeled=2, shape=(80, 64))
    parser = _parser("train.json", f"augment_{preset}.json", dataset_dir=str(data_dir), image_size=[64, 64],
                     val_fraction=0.5)
    names = {type(t).__name__ for t in parser.get_parsed_content("train#random_transforms")}
    assert present <= names and not (absent & names)
    pipeline = parser.get_parsed_content("train#preprocessing")
    sample = parser.get_parsed_content("train#dataset#data")[0]
    for seed in range(4):
        pipeline.set_random_state(seed)
        out = pipeline(dict(sample))
        assert out["image"].shape == out["label"].shape == (1, 64, 64)
        assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("variant", ["encoder_unetplusplus.json", "encoder_unet.json", "unet.json", "train.json"])
def test_variants_build_with_encoder_learning_rate(variant: str) -> None:
    parser = _parser(*dict.fromkeys(["train.json", variant]), backbone="resnet10", device="$torch.device('cpu')")
    net = parser.get_parsed_content("network_def")
    with torch.no_grad():
        assert net.eval()(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)
    net.train()(torch.rand(2, 1, 64, 64)).sum().backward()
    unused = [n for n, p in net.named_parameters() if p.grad is None]
    assert not unused, f"parameters without gradient break DistributedDataParallel: {unused[:5]}"
    groups = parser.get_parsed_content("optimizer").param_groups
    assert [g["name"] for g in groups] == ["encoder", "decoder"]
    assert groups[0]["lr"] == pytest.approx(groups[1]["lr"] / 10)
    ckpt = parser.get_parsed_content("ckpt_name")
    if variant != "train.json":
        assert ckpt != "model.pt" and ckpt.endswith(".pt"), "variants keep their own checkpoint"


# ----------------------------------------------------------------------------------------------------------
# slow: multi-process training and learning the task
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_multi_gpu_config_runs_two_processes_on_cpu(tmp_path: Path) -> None:
    from labelzoo.data import build_cxr_studies

    data_dir = build_cxr_studies(tmp_path / "data", n_images=10, n_labeled=10, shape=(80, 64))  # 2 validation images
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("models", "eval"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
           "-m", "monai.bundle", "run", "--config_file",
           str([str(bundle / "configs" / "train.json"), str(bundle / "configs" / "multi_gpu_train.json")]),
           "--bundle_root", str(bundle), "--dataset_dir", str(data_dir), "--max_epochs", "2",
           "--image_size", "[64,64]", "--features", "[8,8,16,16,32,8]", "--num_workers", "0", "--batch_size", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (bundle / "models" / "model.pt").is_file()


@pytest.mark.slow
def test_unetplusplus_learns_the_synthetic_lungs(tmp_path: Path) -> None:
    from labelzoo.data import build_cxr_studies

    data_dir = build_cxr_studies(tmp_path / "data", n_images=16, n_labeled=16, shape=(96, 80))
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("models", "eval"))
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "train.json"),
           "--bundle_root", str(bundle), "--dataset_dir", str(data_dir), "--max_epochs", "25",
           "--image_size", "[96,96]", "--features", "[16,16,32,64,128,16]", "--num_workers", "0",
           "--batch_size", "4", "--augmentation", "light"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    best = [float(line.rsplit(":", 1)[1]) for line in proc.stdout.splitlines() + proc.stderr.splitlines()
            if "Got new best metric of val_iou" in line]
    assert best and max(best) > 0.8, f"best validation IoU {max(best, default=0):.3f}"
