"""Fingerprint extraction (stage 1 of the planner) on small synthetic datasets in every layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from labelzoo.errors import LabelZooError
from labelzoo.io import save_nifti, write_json_atomic
from labelzoo.planning.fingerprint import (
    FINGERPRINT_FORMAT,
    SPACING_2D,
    connected_components_per_class,
    extract_fingerprint,
    foreground_samples,
    intensity_statistics,
    load_fingerprint,
    nonzero_bbox,
    write_fingerprint,
)


def test_msd_fingerprint(msd_dataset: Path, tmp_path: Path) -> None:
    out = write_fingerprint(msd_dataset, tmp_path / "fp.json")
    fp = load_fingerprint(out)
    assert fp["format"] == FINGERPRINT_FORMAT and fp["layout"] == "msd"
    assert fp["num_training"] == 3 and fp["channel_names"] == {"0": "CT"}
    assert fp["labels"] == {"0": "background", "1": "spleen", "3": "left kidney", "6": "liver"}
    assert fp["spacings"] == [[1.5, 1.5, 2.0]] * 3
    assert fp["shapes_before_crop"] == [[48, 48, 32]] * 3
    props = fp["foreground_intensity_properties_per_channel"]["0"]
    # the organs are 110-200 HU with noise: the foreground statistics must sit in that range
    assert 80 < props["mean"] < 200 and props["percentile_00_5"] < props["median"] < props["percentile_99_5"]
    case = fp["cases"][0]
    assert case["classes_present"] == [1, 3, 6]
    assert set(case["connected_components"]) == {"1", "3", "6"} and min(case["connected_components"].values()) >= 1
    assert not any(str(v).startswith("/") for v in case["image"] + [case["label"]])  # paths relative to the dataset


def _write_case(root: Path, case: str, image: np.ndarray, label: np.ndarray, spacing=(1.0, 1.0, 2.0),
                channel_files: bool = True, label_affine: np.ndarray | None = None) -> None:
    affine = np.diag([*spacing, 1.0])
    if channel_files:
        for c in range(image.shape[0]):
            save_nifti(image[c], affine, root / "imagesTr" / f"{case}_{c:04d}.nii.gz")
    save_nifti(label.astype(np.uint8), affine if label_affine is None else label_affine,
               root / "labelsTr" / f"{case}.nii.gz")


def _mri_case(seed: int, shape=(24, 24, 12), channels: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = np.zeros((channels, *shape), np.float32)
    image[:, 4:20, 4:20, 2:10] = rng.normal(100, 10, (channels, 16, 16, 8))  # head in a zero background
    label = np.zeros(shape, np.uint8)
    label[8:12, 8:12, 4:8] = 1
    label[14:17, 14:17, 4:6] = 2
    return image, label


def test_nnunet_raw_multichannel_and_crop(tmp_path: Path) -> None:
    root = tmp_path / "Dataset001_Brain"
    for i in range(3):
        _write_case(root, f"brain_{i:03d}", *_mri_case(i))
    write_json_atomic(root / "dataset.json", {"channel_names": {"0": "T1", "1": "FLAIR"},
                                              "labels": {"background": 0, "edema": 1, "tumour": 2},
                                              "numTraining": 3, "file_ending": ".nii.gz"})
    fp = extract_fingerprint(root)
    assert fp["layout"] == "nnunet" and fp["channel_names"] == {"0": "T1", "1": "FLAIR"}
    assert fp["labels"] == {"0": "background", "1": "edema", "2": "tumour"}
    assert fp["shapes_after_crop"] == [[16, 16, 8]] * 3  # cropped to the nonzero head
    assert fp["median_relative_size_after_cropping"] == pytest.approx(16 * 16 * 8 / (24 * 24 * 12))
    assert set(fp["foreground_intensity_properties_per_channel"]) == {"0", "1"}


def test_datalist_and_2d_images(tmp_path: Path) -> None:
    entries = []
    for i in range(2):
        img = np.random.default_rng(i).normal(0, 1, (32, 40)).astype(np.float32)
        lab = np.zeros((32, 40), np.uint8)
        lab[5:15, 5:20] = 1
        save_nifti(img, np.eye(4), tmp_path / "img" / f"x{i}.nii.gz")
        save_nifti(lab, np.eye(4), tmp_path / "lab" / f"x{i}.nii.gz")
        entries.append({"image": f"img/x{i}.nii.gz", "label": f"lab/x{i}.nii.gz"})
    (tmp_path / "datalist.json").write_text(json.dumps({"training": entries}))
    fp = extract_fingerprint(tmp_path / "datalist.json", modality="XR")
    assert fp["layout"] == "datalist" and fp["channel_names"] == {"0": "XR"}
    assert fp["shapes_before_crop"] == [[32, 40, 1]] * 2 and fp["spacings"][0][2] == SPACING_2D


def test_bad_dataset_lists_every_offending_case(tmp_path: Path) -> None:
    root = tmp_path / "Dataset002_Bad"
    image, label = _mri_case(0)
    _write_case(root, "good_000", image, label)
    _write_case(root, "good_001", image, label)
    _write_case(root, "nolabel", image, label)
    (root / "labelsTr" / "nolabel.nii.gz").unlink()
    _write_case(root, "geometry", image, label[:, :, :10])  # label shape differs
    _write_case(root, "shifted", image, label, label_affine=np.diag([1.0, 1.0, 3.0, 1.0]))
    _write_case(root, "empty", image, np.zeros_like(label))
    _write_case(root, "undeclared", image, np.where(label == 2, 7, label))
    _write_case(root, "onechannel", image, label)
    (root / "imagesTr" / "onechannel_0001.nii.gz").unlink()
    write_json_atomic(root / "dataset.json", {"channel_names": {"0": "T1", "1": "T2"},
                                              "labels": {"background": 0, "a": 1, "b": 2},
                                              "numTraining": 8, "file_ending": ".nii.gz"})
    with pytest.raises(LabelZooError) as err:
        extract_fingerprint(root)
    msg = str(err.value)
    assert "6 problem(s)" in msg
    for case, words in [("nolabel", "does not exist"), ("geometry", "label shape"), ("shifted", "affines differ"),
                        ("empty", "empty"), ("undeclared", "[7]"), ("onechannel", "onechannel_0001")]:
        line = next((li for li in msg.splitlines() if li.strip().startswith(case)), "")
        assert words in line, f"{case}: {msg}"
    assert "good_000" not in msg


def test_msd_json_naming_missing_files_and_channel_count(msd_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "msd"
    shutil.copytree(msd_dataset, root)
    data = json.loads((root / "dataset.json").read_text())
    data["training"].append({"image": "./imagesTr/ghost.nii.gz", "label": "./labelsTr/ghost.nii.gz"})
    data["modality"] = {"0": "T1", "1": "T2"}
    (root / "dataset.json").write_text(json.dumps(data))
    with pytest.raises(LabelZooError) as err:
        extract_fingerprint(root)
    msg = str(err.value)
    assert "imagesTr/ghost.nii.gz does not exist" in msg and "labelsTr/ghost.nii.gz does not exist" in msg
    assert msg.count("1 image channel(s), dataset declares 2") == 3


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(LabelZooError, match="no dataset.json"):
        extract_fingerprint(tmp_path)
    with pytest.raises(LabelZooError, match="no such file or folder"):
        extract_fingerprint(tmp_path / "missing")


def test_nonzero_bbox_fills_holes() -> None:
    data = np.zeros((1, 10, 10, 4))
    data[0, 2:8, 2:8, 1:3] = 1
    data[0, 4:6, 4:6, 1:3] = 0  # a hole inside
    assert nonzero_bbox(data) == ((2, 8), (2, 8), (1, 3))


def test_monai_label_datastore(sample_studies: Path) -> None:
    fp = extract_fingerprint(sample_studies, modality="CT")
    assert fp["layout"] == "datastore" and fp["num_training"] == 2  # only the labelled cases
    assert fp["labels"] == {"0": "background", "1": "label_1", "3": "label_3", "6": "label_6"}
    assert fp["channel_names"] == {"0": "CT"}


def test_foreground_statistics_are_nnunets_sampling(tmp_path: Path) -> None:
    """Same multiset as nnU-Net v2's ``collect_foreground_intensities``: per case a fresh RandomState(1234),
    ``choice(fg, n, replace=True)`` per channel in turn, over (z, y, x)-ordered voxels; every case weighs the same."""
    root = tmp_path / "Dataset003_Weights"
    cases = []
    for i, (lo, hi) in enumerate([(5, 7), (5, 19)]):  # a small and a large tumour: 8 vs 392 foreground voxels
        image, label = _mri_case(i)
        label[:] = 0
        label[lo:hi, lo:hi, 4:6] = 1
        image[1] += 1000.0 * i  # channel 1: case 0 ~100, case 1 ~1100
        _write_case(root, f"case_{i:03d}", image, label)
        cases.append((image, label))
    write_json_atomic(root / "dataset.json", {"channel_names": {"0": "T1", "1": "FLAIR"},
                                              "labels": {"background": 0, "tumour": 1},
                                              "numTraining": 2, "file_ending": ".nii.gz"})
    n_total = 4000
    fp = extract_fingerprint(root, num_foreground_voxels=n_total)
    # nnU-Net's procedure, literally (arrays in its (z, y, x) order)
    drawn: list[list[np.ndarray]] = [[], []]
    for image, label in cases:
        rs = np.random.RandomState(1234)
        zyx = np.transpose(image, (0, 3, 2, 1))
        fg = np.transpose(label, (2, 1, 0)) > 0
        for c in range(2):
            drawn[c].append(rs.choice(zyx[c][fg], n_total // 2, replace=True))
    for c in range(2):
        ref = np.concatenate(drawn[c]).astype(np.float64)
        props = fp["foreground_intensity_properties_per_channel"][str(c)]
        p005, med, p995 = np.percentile(ref, (0.5, 50.0, 99.5))
        expected = {"mean": ref.mean(), "std": ref.std(), "min": ref.min(), "max": ref.max(), "median": med,
                    "percentile_00_5": p005, "percentile_99_5": p995}
        for k, v in expected.items():
            assert props[k] == pytest.approx(v, rel=1e-6, abs=1e-4), (c, k)
    # both cases weigh half, whatever their foreground size (all-voxel statistics would give ~1093)
    assert 550 < fp["foreground_intensity_properties_per_channel"]["1"]["mean"] < 650


def test_foreground_samples_compressed_equals_expanded() -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(0, 1, (2, 6, 5, 4)).astype(np.float32)
    fg = rng.random((6, 5, 4)) > 0.7
    for n in (7, 5000):  # fewer draws than voxels (values kept) and more (value, count) pairs
        parts = foreground_samples(data, fg, n)
        rs = np.random.RandomState(1234)
        for c, (values, counts) in enumerate(parts):
            ref = rs.choice(np.transpose(data[c])[np.transpose(fg)], n, replace=True)
            expanded = values if counts is None else np.repeat(values, counts)
            assert np.array_equal(np.sort(expanded), np.sort(ref))
            got, want = intensity_statistics(values, counts), intensity_statistics(ref)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_connected_components_in_class_boxes() -> None:
    from scipy.ndimage import generate_binary_structure
    from scipy.ndimage import label as cc_label

    lab = np.zeros((40, 30, 20), np.int64)
    lab[2:5, 2:5, 2:5] = 1
    lab[10:12, 10:12, 10:12] = 1  # class 1: two blobs
    lab[20:30, 5:8, 3:9] = 3
    lab[6, 6, 6] = 3  # touches class 1's box corner, isolated voxel: class 3 has two components
    got = connected_components_per_class(lab, [1, 3, 5])
    s = generate_binary_structure(3, 3)
    assert got == {"1": 2, "3": cc_label(lab == 3, structure=s)[1], "5": 0} and got["3"] == 2
