"""Dataset fingerprint (stage 1 of the planner, the only stage that reads images).

Reads a labelled dataset in one of three layouts and writes the fingerprint JSON the pure planner
(:mod:`labelzoo.planning.planner`) works from:

- **MSD** (Medical Segmentation Decathlon): ``dataset.json`` with ``modality``, ``labels``
  (``{"value": "name"}``) and ``training`` (``[{"image": ..., "label": ...}]``); a multi-channel image
  is one 4D NIfTI file with channels last.
- **nnU-Net v2 raw**: ``dataset.json`` with ``channel_names``, ``labels`` (``{"name": value}``),
  ``file_ending`` and ``numTraining``; ``imagesTr/CASE_XXXX<file_ending>`` (one file per channel) and
  ``labelsTr/CASE<file_ending>``.
- **MONAI datalist**: a JSON file with ``training`` (``[{"image": path or [paths], "label": path}]``);
  give the modality per channel with ``modality=`` (default ``MRI``, i.e. z-score normalisation).
- **MONAI Label datastore**: images in a folder, submitted labels in ``labels/final`` (what annotators
  produced in the annotation loop); ``modality=`` as for a datalist.

What is measured follows nnU-Net v2's ``DatasetFingerprintExtractor``
(``nnunetv2/experiment_planning/dataset_fingerprint/fingerprint_extractor.py``): per-case shape before
and after cropping to the nonzero region, spacing, foreground intensity statistics per channel
(sampled foreground voxels; mean, median, std, min, max, percentiles 0.5 and 99.5), plus class presence
and connected-component counts per class (used by the post-processing decision).

Axes are kept in the order of the files (x, y, z as MONAI loads them, no reorientation); a 2D image is
treated as a volume of one slice whose slice spacing is :data:`SPACING_2D` (nnU-Net's convention).

All cases are checked before anything is written; every problem found (missing files, geometry
mismatches, channel counts, empty or undeclared labels) is reported in one :class:`LabelZooError`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelzoo.errors import LabelZooError
from labelzoo.io import write_json_atomic

logger = logging.getLogger(__name__)

#: Version tag written into every fingerprint; the planner refuses other formats.
FINGERPRINT_FORMAT = "labelzoo-fingerprint/1"
#: Slice spacing given to 2D images (nnU-Net v2's natural-image reader uses 999 as well).
SPACING_2D = 999.0
#: Foreground voxels sampled over the whole dataset for the intensity statistics
#: (nnU-Net v2 ``DatasetFingerprintExtractor.num_foreground_voxels_for_intensitystats = 10e7``).
NUM_FOREGROUND_VOXELS_FOR_STATS = int(10e7)
#: Seed of the foreground voxel sampling (nnU-Net v2 uses ``np.random.RandomState(1234)``).
SAMPLING_SEED = 1234
#: Tolerance (mm) when comparing image and label affines.
AFFINE_ATOL = 1e-3

IMAGE_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class CaseFiles:
    """The files of one training case: one path per channel (or one multi-channel file) and a label."""

    case_id: str
    images: list[Path]
    label: Path | None


@dataclass
class DatasetSpec:
    """A dataset as declared by its ``dataset.json`` (or datalist), before any image is read."""

    name: str
    root: Path
    layout: str
    channel_names: dict[str, str]
    labels: dict[int, str]
    cases: list[CaseFiles]
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- reading specs


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabelZooError(f"{path}: no such file (expected a dataset.json or a MONAI datalist)") from None
    except json.JSONDecodeError as e:
        raise LabelZooError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise LabelZooError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _parse_labels(raw: Any, source: Path) -> dict[int, str]:
    """``labels`` of MSD (``{"1": "liver"}``) or nnU-Net v2 (``{"liver": 1}``) -> ``{1: "liver"}``."""
    if not isinstance(raw, dict) or not raw:
        raise LabelZooError(f"{source}: field 'labels' must be a non-empty object, e.g. {{\"0\": \"background\"}}")
    out: dict[int, str] = {}
    for k, v in raw.items():
        if str(k).lstrip("-").isdigit():
            out[int(k)] = str(v)
        elif isinstance(v, int) and not isinstance(v, bool):
            out[int(v)] = str(k)
        else:
            raise LabelZooError(
                f"{source}: labels entry {k!r}: {v!r} is neither 'value': 'name' (MSD) nor 'name': value "
                "(nnU-Net v2; region-based lists are not supported)"
            )
    if 0 not in out:
        out[0] = "background"
    return dict(sorted(out.items()))


def _channel_names(raw: Any, source: Path) -> dict[str, str]:
    if not isinstance(raw, dict) or not raw:
        raise LabelZooError(
            f"{source}: 'channel_names' (or 'modality') must be a non-empty object like {{\"0\": \"CT\"}}")
    return {str(int(k)): str(v) for k, v in sorted(raw.items(), key=lambda kv: int(kv[0]))}


def _resolve(root: Path, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else (root / p)


def read_dataset_spec(dataset: str | Path, modality: str | None = None,
                      base_dir: str | Path | None = None) -> DatasetSpec:
    """Find out the layout of ``dataset`` and list its training cases (no image is read).

    Args:
        dataset: an MSD or nnU-Net v2 raw dataset folder (holding ``dataset.json``), a ``dataset.json``,
            or a MONAI datalist JSON file.
        modality: for a datalist, the modality of each channel, comma-separated (``CT`` or ``MRI,MRI``).
        base_dir: for a datalist, the folder its relative paths start from (default: the file's folder).

    Raises:
        LabelZooError: when the folder or JSON is unusable (the per-case problems are collected in
        ``DatasetSpec.problems`` and reported by :func:`extract_fingerprint`).
    """
    path = Path(dataset).expanduser()
    if path.is_dir():
        json_path = path / "dataset.json"
        if not json_path.is_file() and (path / "labels" / "final").is_dir():
            return _datastore_spec(path, modality)
        if not json_path.is_file():
            raise LabelZooError(f"{path} holds no dataset.json (nor labels/final/): give an MSD / nnU-Net raw dataset "
                                "folder, a MONAI Label datastore or a datalist")
    elif path.is_file():
        json_path = path
    else:
        raise LabelZooError(f"dataset {path}: no such file or folder")
    data = _load_json(json_path)
    root = Path(base_dir).expanduser() if base_dir else json_path.parent
    name = str(data.get("name") or json_path.parent.name)

    if "channel_names" in data or "file_ending" in data:
        return _nnunet_spec(data, json_path, root, name)
    if "training" not in data:
        raise LabelZooError(
            f"{json_path}: no 'training' list and no 'channel_names': not an MSD, nnU-Net or datalist file")
    if "modality" in data:
        channels = _channel_names(data["modality"], json_path)
        layout = "msd"
    else:
        mods = (modality or "MRI").split(",")
        channels = {str(i): m.strip() for i, m in enumerate(mods)}
        layout = "datalist"
    labels = _parse_labels(data.get("labels", {"0": "background", "1": "foreground"}), json_path)
    spec = DatasetSpec(name, root, layout, channels, labels, [])
    training = data["training"]
    if not isinstance(training, list) or not training:
        raise LabelZooError(f"{json_path}: 'training' must be a non-empty list of {{'image': ..., 'label': ...}}")
    for i, item in enumerate(training):
        if not isinstance(item, dict) or "image" not in item:
            spec.problems.append(f"training[{i}]: entry has no 'image' field")
            continue
        images = item["image"] if isinstance(item["image"], list) else [item["image"]]
        case_id = _strip_suffix(Path(str(images[0])).name)
        label = item.get("label")
        spec.cases.append(CaseFiles(case_id, [_resolve(root, str(x)) for x in images],
                                    _resolve(root, str(label)) if label else None))
    return spec


def _datastore_spec(root: Path, modality: str | None) -> DatasetSpec:
    """A MONAI Label local datastore: images in ``root``, final labels in ``labels/final`` (labelled ones only).

    Label values and names come from the labels found (names ``label_<value>``) unless the datastore has a
    ``labels.json`` (``{"name": value}``) beside the images; modality from ``modality``.
    """
    final = root / "labels" / "final"
    labelled = sorted(p for p in final.iterdir() if p.name.endswith(IMAGE_SUFFIXES))
    if not labelled:
        raise LabelZooError(f"{final} holds no NIfTI label: annotate (submit labels) before planning")
    mods = (modality or "MRI").split(",")
    channels = {str(i): m.strip() for i, m in enumerate(mods)}
    names_file = root / "labels.json"
    if names_file.is_file():
        labels = _parse_labels(_load_json(names_file), names_file)
    else:
        import nibabel as nib

        values = sorted({int(v) for p in labelled for v in np.unique(np.asanyarray(nib.load(str(p)).dataobj))})
        labels = {v: ("background" if v == 0 else f"label_{v}") for v in values}
    spec = DatasetSpec(root.name, root, "datastore", channels, labels, [])
    for lab in labelled:
        spec.cases.append(CaseFiles(_strip_suffix(lab.name), [root / lab.name], lab))
    return spec


def _strip_suffix(name: str) -> str:
    for s in IMAGE_SUFFIXES + (".nrrd", ".mha", ".png"):
        if name.endswith(s):
            return name[: -len(s)]
    return name


def _nnunet_spec(data: dict, json_path: Path, root: Path, name: str) -> DatasetSpec:
    channels = _channel_names(data.get("channel_names") or data.get("modality"), json_path)
    labels = _parse_labels(data.get("labels"), json_path)
    ending = str(data.get("file_ending", ".nii.gz"))
    spec = DatasetSpec(name, root, "nnunet", channels, labels, [])
    if isinstance(data.get("dataset"), dict):  # explicit file lists (nnU-Net v2 'dataset' key)
        for case_id, entry in sorted(data["dataset"].items()):
            spec.cases.append(CaseFiles(case_id, [_resolve(root, p) for p in entry.get("images", [])],
                                        _resolve(root, entry["label"]) if entry.get("label") else None))
        return spec
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if not images_dir.is_dir():
        raise LabelZooError(f"{images_dir}: no such folder (nnU-Net raw datasets keep training images in imagesTr/)")
    ids = sorted({p.name[: -len(ending) - 5] for p in images_dir.glob(f"*_[0-9][0-9][0-9][0-9]{ending}")})
    if not ids:
        raise LabelZooError(f"{images_dir} holds no CASE_XXXX{ending} files")
    n_ch = len(channels)
    for case_id in ids:
        spec.cases.append(CaseFiles(case_id, [images_dir / f"{case_id}_{c:04d}{ending}" for c in range(n_ch)],
                                    labels_dir / f"{case_id}{ending}"))
    declared = data.get("numTraining")
    if isinstance(declared, int) and declared != len(ids):
        spec.problems.append(f"dataset.json: numTraining is {declared} but imagesTr holds {len(ids)} cases")
    return spec


# --------------------------------------------------------------------------------------------- per-case analysis


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Array, affine and voxel spacing of a NIfTI file."""
    import nibabel as nib

    img = nib.load(str(path))
    zooms = tuple(float(z) for z in img.header.get_zooms())
    return np.asanyarray(img.dataobj), np.asarray(img.affine, dtype=float), zooms


def _as_volume(array: np.ndarray, zooms: tuple[float, ...], multichannel: bool) -> tuple[np.ndarray, list[float]]:
    """(C, X, Y, Z) array and (sx, sy, sz) spacing; 2D images get one slice of :data:`SPACING_2D`."""
    if multichannel and array.ndim == 4:
        vol = np.moveaxis(array, -1, 0)
    elif array.ndim == 3:
        vol = array[None]
    elif array.ndim == 2:
        vol = array[None, :, :, None]
    elif array.ndim == 4 and array.shape[-1] == 1:
        vol = array[None, ..., 0]
    else:
        raise ValueError(f"unsupported image dimensions {array.shape}")
    spacing = [float(z) for z in zooms[:3]] + [SPACING_2D] * (3 - min(3, len(zooms)))
    return vol, spacing[:3]


def nonzero_bbox(data: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Bounding box of nnU-Net's nonzero mask (any channel != 0, holes filled), per spatial axis.

    Mirrors ``nnunetv2/preprocessing/cropping/cropping.py`` (``create_nonzero_mask`` + bbox). An image
    without any nonzero voxel keeps its full extent.
    """
    from scipy.ndimage import binary_fill_holes

    mask = np.any(data != 0, axis=0)
    mask = binary_fill_holes(mask)
    if not mask.any():
        return tuple((0, s) for s in mask.shape)
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.where(mask.any(axis=other))[0]
        out.append((int(idx[0]), int(idx[-1]) + 1))
    return tuple(out)


def connected_components_per_class(label: np.ndarray, classes: list[int]) -> dict[str, int]:
    """Number of connected components (full connectivity) of each class present in ``label``."""
    from scipy.ndimage import generate_binary_structure
    from scipy.ndimage import label as cc_label

    structure = generate_binary_structure(label.ndim, label.ndim)
    return {str(c): int(cc_label(label == c, structure=structure)[1]) for c in classes}


def _analyse_case(case: CaseFiles, spec: DatasetSpec, rng: np.random.RandomState, n_samples: int,
                  problems: list[str]) -> tuple[dict, list[np.ndarray]] | None:
    """Read one case, check it, and measure it; append problems and return None when it is unusable."""
    n_ch = len(spec.channel_names)
    rel = lambda p: _relative(p, spec.root)  # noqa: E731
    missing = [p for p in case.images if not p.is_file()]
    if case.label is None:
        problems.append(f"{case.case_id}: no label file given")
    elif not case.label.is_file():
        problems.append(f"{case.case_id}: label file {rel(case.label)} does not exist")
    for p in missing:
        problems.append(f"{case.case_id}: image file {rel(p)} does not exist")
    if missing or case.label is None or not case.label.is_file():
        return None
    bad = [p for p in case.images + [case.label] if not p.name.endswith(IMAGE_SUFFIXES)]
    if bad:
        problems.append(f"{case.case_id}: {rel(bad[0])} is not NIfTI (.nii or .nii.gz)")
        return None
    try:
        channels, spacing, affine = [], None, None
        for p in case.images:
            arr, aff, zooms = _load(p)
            vol, sp = _as_volume(arr, zooms, multichannel=len(case.images) == 1)
            channels.append(vol.astype(np.float32, copy=False))
            spacing = spacing or sp
            affine = aff if affine is None else affine
        seg_arr, seg_aff, seg_zooms = _load(case.label)
        seg = _as_volume(seg_arr, seg_zooms, multichannel=False)[0][0]
    except Exception as e:  # noqa: BLE001 - any unreadable file becomes one listed problem
        problems.append(f"{case.case_id}: cannot read ({e})")
        return None
    shapes = {c.shape[1:] for c in channels}
    if len(shapes) > 1:
        problems.append(f"{case.case_id}: channel files have different shapes {sorted(shapes)}")
        return None
    data = np.concatenate(channels, axis=0)
    ok = True
    if data.shape[0] != n_ch:
        problems.append(
            f"{case.case_id}: {data.shape[0]} image channel(s), dataset declares {n_ch} ({spec.channel_names})")
        ok = False
    if seg.shape != data.shape[1:]:
        problems.append(f"{case.case_id}: image shape {list(data.shape[1:])} and label shape {list(seg.shape)} differ")
        ok = False
    elif not np.allclose(affine, seg_aff, atol=AFFINE_ATOL):
        problems.append(
            f"{case.case_id}: image and label affines differ (geometry mismatch: spacing, origin or direction)")
        ok = False
    seg_int = np.rint(seg).astype(np.int64)
    present = sorted(int(v) for v in np.unique(seg_int))
    undeclared = [v for v in present if v not in spec.labels]
    if undeclared:
        problems.append(f"{case.case_id}: label values {undeclared} are not declared in labels {sorted(spec.labels)}")
        ok = False
    fg_classes = [v for v in present if v != 0]
    if not fg_classes:
        problems.append(f"{case.case_id}: label map is empty (no foreground voxel)")
        ok = False
    if not ok:
        return None

    bbox = nonzero_bbox(data)
    shape_before = [int(s) for s in data.shape[1:]]
    shape_after = [b - a for a, b in bbox]
    fg = seg_int > 0
    samples = []
    for c in range(n_ch):
        values = data[c][fg]
        take = min(n_samples, values.size)
        samples.append(values[rng.choice(values.size, take, replace=False)] if take < values.size else values)
    record = {
        "case_id": case.case_id,
        "image": [rel(p) for p in case.images],
        "label": rel(case.label),
        "spacing": [float(s) for s in spacing],
        "file_ndim": int(min(seg_arr.ndim, 3)),
        "shape_before_crop": shape_before,
        "shape_after_crop": shape_after,
        "bbox_nonzero": [list(b) for b in bbox],
        "relative_size_after_cropping": float(np.prod(shape_after) / np.prod(shape_before)),
        "classes_present": fg_classes,
        "connected_components": connected_components_per_class(seg_int, fg_classes),
        "foreground_voxels": {str(c): int((seg_int == c).sum()) for c in fg_classes},
    }
    return record, samples


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def intensity_statistics(values: np.ndarray) -> dict[str, float]:
    """nnU-Net v2's foreground intensity properties of one channel (from sampled foreground voxels)."""
    if values.size == 0:
        return {k: 0.0 for k in ("mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5")}
    v = values.astype(np.float64)
    p005, median, p995 = np.percentile(v, (0.5, 50.0, 99.5))
    return {"mean": float(v.mean()), "median": float(median), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max()), "percentile_99_5": float(p995), "percentile_00_5": float(p005)}


# --------------------------------------------------------------------------------------------- entry points


def extract_fingerprint(
    dataset: str | Path,
    modality: str | None = None,
    base_dir: str | Path | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """Read every training case of ``dataset``, check it, and return the fingerprint (a JSON-able dict).

    Args:
        dataset: dataset folder, ``dataset.json`` or MONAI datalist (see :func:`read_dataset_spec`).
        modality: datalist only: modality of each channel, comma-separated.
        base_dir: datalist only: folder its relative paths start from.
        progress: called as ``progress(done, total, case_id)`` after each case.

    Raises:
        LabelZooError: listing every offending case when any case is unusable.
    """
    spec = read_dataset_spec(dataset, modality=modality, base_dir=base_dir)
    problems = list(spec.problems)
    rng = np.random.RandomState(SAMPLING_SEED)
    n_samples = max(1, NUM_FOREGROUND_VOXELS_FOR_STATS // max(1, len(spec.cases)))
    records, samples = [], [[] for _ in spec.channel_names]
    for i, case in enumerate(spec.cases):
        result = _analyse_case(case, spec, rng, n_samples, problems)
        if result is not None:
            rec, smp = result
            records.append(rec)
            for c, s in enumerate(smp):
                samples[c].append(s)
        if progress:
            progress(i + 1, len(spec.cases), case.case_id)
    if problems:
        listing = "\n  ".join(problems)
        raise LabelZooError(f"dataset {dataset} has {len(problems)} problem(s); fix them and run again:\n  {listing}")
    spacings = [r["spacing"] for r in records]
    props = {str(c): intensity_statistics(np.concatenate(s) if s else np.zeros(0)) for c, s in enumerate(samples)}
    return {
        "format": FINGERPRINT_FORMAT,
        "dataset_name": spec.name,
        "layout": spec.layout,
        "channel_names": spec.channel_names,
        "labels": {str(k): v for k, v in spec.labels.items()},
        "num_training": len(records),
        "spacings": spacings,
        "shapes_before_crop": [r["shape_before_crop"] for r in records],
        "shapes_after_crop": [r["shape_after_crop"] for r in records],
        "file_ndim": max(r["file_ndim"] for r in records),
        "median_relative_size_after_cropping": float(np.median([r["relative_size_after_cropping"] for r in records])),
        "foreground_intensity_properties_per_channel": props,
        "cases": records,
    }


def write_fingerprint(dataset: str | Path, out: str | Path | None = None, modality: str | None = None,
                      base_dir: str | Path | None = None,
                      progress: Callable[[int, int, str], None] | None = None) -> Path:
    """Extract the fingerprint of ``dataset`` and write it (atomically) to ``out``.

    ``out`` defaults to ``fingerprint.json`` next to the dataset's JSON file.
    """
    fp = extract_fingerprint(dataset, modality=modality, base_dir=base_dir, progress=progress)
    if out is None:
        ds = Path(dataset).expanduser()
        out = (ds if ds.is_dir() else ds.parent) / "fingerprint.json"
    path = write_json_atomic(Path(out).expanduser(), fp)
    logger.info("wrote the fingerprint of %d cases to %s", fp["num_training"], path)
    return path


def load_fingerprint(path: str | Path) -> dict:
    """Read a fingerprint JSON written by :func:`write_fingerprint`, checking its format tag."""
    data = _load_json(Path(path).expanduser())
    if data.get("format") != FINGERPRINT_FORMAT:
        raise LabelZooError(f"{path}: not a LabelZoo fingerprint (format {data.get('format')!r}, "
                            f"expected {FINGERPRINT_FORMAT!r}); run `labelzoo plan fingerprint DATASET`")
    return data
