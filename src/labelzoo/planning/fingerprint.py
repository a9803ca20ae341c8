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
(mean, median, std, min, max, percentiles 0.5 and 99.5 of the same number of foreground voxels drawn
from every case with replacement, seed 1234 per case, so that every case weighs the same), plus class
presence and connected-component counts per class (used by the post-processing decision; counted inside
each class's bounding box only).

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
#: Seed of the foreground voxel sampling (nnU-Net v2 draws each case with a fresh
#: ``np.random.RandomState(1234)``, the channels one after the other from the same stream).
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
    """Number of connected components (full connectivity) of each class present in ``label``.

    Each class is labelled inside its own bounding box (one ``find_objects`` pass over the volume), not
    over the whole image: the counts are the same, the work scales with the organ, not the scan (a small
    organ in an abdominal CT no longer costs a full-volume labelling per class).
    """
    from scipy.ndimage import find_objects, generate_binary_structure
    from scipy.ndimage import label as cc_label

    structure = generate_binary_structure(label.ndim, label.ndim)
    lab = np.asarray(label)
    if lab.min(initial=0) < 0:
        raise ValueError("label values must be >= 0")
    boxes = find_objects(lab.astype(np.intp, copy=False), max_label=max(classes, default=0))
    out = {}
    for c in classes:
        box = boxes[c - 1] if 0 < c <= len(boxes) else None
        out[str(c)] = 0 if box is None else int(cc_label(lab[box] == c, structure=structure)[1])
    return out


def foreground_samples(data: np.ndarray, foreground: np.ndarray, n_samples: int,
                       seed: int = SAMPLING_SEED) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """nnU-Net v2's ``collect_foreground_intensities`` for one case, without materialising repeated voxels.

    nnU-Net draws ``n_samples`` foreground voxels per channel *with replacement* (``rs.choice(fg, n,
    replace=True)`` with a fresh ``RandomState(seed)`` per case, channels in turn), from its (z, y, x)
    arrays. This draws the same indices (``choice`` with replacement is ``randint(0, n_fg, n)``) over the
    foreground voxels in that (z, y, x) order, so the multiset is nnU-Net's. When a case has fewer
    foreground voxels than ``n_samples``, the draw is returned as (distinct voxel values, how often each
    was drawn) instead of ``n_samples`` values.

    Args:
        data: (C, X, Y, Z) image.
        foreground: (X, Y, Z) boolean mask (label > 0).
        n_samples: draws per channel.
        seed: seed of the case's random state.

    Returns:
        Per channel ``(values, counts)``; ``counts`` is None when every value counts once.
    """
    rs = np.random.RandomState(seed)
    mask_zyx = np.transpose(foreground)
    out: list[tuple[np.ndarray, np.ndarray | None]] = []
    for c in range(data.shape[0]):
        values = np.transpose(data[c])[mask_zyx].astype(np.float32, copy=False)
        if values.size == 0:
            out.append((values, None))
            continue
        idx = rs.randint(0, values.size, size=int(n_samples))
        if values.size <= n_samples:
            counts = np.bincount(idx, minlength=values.size)
            keep = counts > 0
            out.append((values[keep], counts[keep].astype(np.int64)))
        else:
            out.append((values[idx], None))
        del idx
    return out


def _analyse_case(case: CaseFiles, spec: DatasetSpec, n_samples: int,
                  problems: list[str]) -> tuple[dict, list[tuple[np.ndarray, np.ndarray | None]]] | None:
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
    samples = foreground_samples(data, seg_int > 0, n_samples)
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


def intensity_statistics(values: np.ndarray, counts: np.ndarray | None = None) -> dict[str, float]:
    """nnU-Net v2's foreground intensity properties of one channel (from sampled foreground voxels).

    Args:
        values: sampled voxel values.
        counts: how often each value was drawn (None: once each). The statistics are those of the
            expanded sample, percentiles with numpy's default linear interpolation between ranks.
    """
    keys = ("mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5")
    if values.size == 0:
        return {k: 0.0 for k in keys}
    if counts is None:
        v = values.astype(np.float64)
        p005, median, p995 = np.percentile(v, (0.5, 50.0, 99.5))
        return {"mean": float(v.mean()), "median": float(median), "std": float(v.std()), "min": float(v.min()),
                "max": float(v.max()), "percentile_99_5": float(p995), "percentile_00_5": float(p005)}
    order = np.argsort(values, kind="stable")
    v = values[order].astype(np.float64)
    w = np.asarray(counts)[order].astype(np.int64)
    total = int(w.sum())
    cum = np.cumsum(w)
    mean = float(np.dot(v, w) / total)
    std = float(np.sqrt(np.dot((v - mean) ** 2, w) / total))

    def pct(q: float) -> float:
        h = (total - 1) * q / 100.0
        lo = int(np.floor(h))
        a = v[np.searchsorted(cum, lo, side="right")]
        b = v[np.searchsorted(cum, min(lo + 1, total - 1), side="right")]
        t = h - lo
        return float(a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t))  # numpy's _lerp

    return {"mean": mean, "median": pct(50.0), "std": std, "min": float(v[0]), "max": float(v[-1]),
            "percentile_99_5": pct(99.5), "percentile_00_5": pct(0.5)}


def _channel_statistics(parts: list[tuple[np.ndarray, np.ndarray | None]]) -> dict[str, float]:
    """Statistics of one channel over all cases' samples (see :func:`foreground_samples`)."""
    if not parts:
        return intensity_statistics(np.zeros(0, np.float32))
    values = np.concatenate([v for v, _ in parts])
    if all(c is None for _, c in parts):
        return intensity_statistics(values)
    counts = np.concatenate([np.ones(v.size, np.int64) if c is None else c for v, c in parts])
    return intensity_statistics(values, counts)


# --------------------------------------------------------------------------------------------- entry points


def extract_fingerprint(
    dataset: str | Path,
    modality: str | None = None,
    base_dir: str | Path | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    num_foreground_voxels: int = NUM_FOREGROUND_VOXELS_FOR_STATS,
) -> dict:
    """Read every training case of ``dataset``, check it, and return the fingerprint (a JSON-able dict).

    Args:
        dataset: dataset folder, ``dataset.json`` or MONAI datalist (see :func:`read_dataset_spec`).
        modality: datalist only: modality of each channel, comma-separated.
        base_dir: datalist only: folder its relative paths start from.
        progress: called as ``progress(done, total, case_id)`` after each case.
        num_foreground_voxels: foreground voxels drawn over the whole dataset for the intensity
            statistics, split equally between cases (nnU-Net's 10^8 by default).

    Raises:
        LabelZooError: listing every offending case when any case is unusable.
    """
    spec = read_dataset_spec(dataset, modality=modality, base_dir=base_dir)
    problems = list(spec.problems)
    if int(num_foreground_voxels) < 1:
        raise LabelZooError(f"num_foreground_voxels must be >= 1, got {num_foreground_voxels}")
    n_samples = max(1, int(num_foreground_voxels) // max(1, len(spec.cases)))  # nnU-Net: int(10e7 // n)
    records: list[dict] = []
    samples: list[list[tuple[np.ndarray, np.ndarray | None]]] = [[] for _ in spec.channel_names]
    for i, case in enumerate(spec.cases):
        result = _analyse_case(case, spec, n_samples, problems)
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
    props = {str(c): _channel_statistics(s) for c, s in enumerate(samples)}
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
