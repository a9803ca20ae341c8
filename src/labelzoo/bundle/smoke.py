"""The real run of ``labelzoo bundle verify``: tiny synthetic data, small-ROI overrides, real workflows.

A bundle states how to run small in ``configs/smoke.json`` (LabelZoo's convention; MONAI ignores the
file)::

    {
        "data": {                         # the synthetic MSD-style dataset (all keys optional)
            "spatial_size": [48, 48, 40], # voxels per case (default 48^3 in 3D, 64^2 in 2D)
            "spacing": [1.5, 1.5, 2.0],   # mm (default 1.0)
            "label_values": [0, 1, 3, 6], # values painted in the label maps (default: channel_def indices)
            "num_training": 3,            # cases in dataset.json "training" (default 3)
            "num_test": 1,                # cases in "test" (default 1)
            "suffix": ".nii.gz",          # or ".png" for 2D bundles (uint8 images and labels)
            "channels_as_files": false,   # true: each case's image is a list of one file per channel
            "patch_size": [32, 32, 32]    # network input for the TorchScript round-trip (default: metadata
                                          # spatial_shape)
        },
        "all": {"roi_size": [32, 32, 32], "network_def#feature_size": 8},   # every workflow
        "train": {"max_epochs": 1, "val_interval": 1},   # train.json runs (also evaluate, multi-GPU)
        "evaluate": {},                                  # evaluate.json only
        "inference": {},                                 # inference.json only
        "multi_gpu": {},                                 # multi_gpu_train.json only
        "variants": ["configs/baseline.json"]            # override files that must verify too (the test
                                                         # suite verifies each one: verify --variant FILE)
    }

Override keys are MONAI config ids (``a#b#c``), exactly what ``python -m monai.bundle run --a#b#c value``
takes. The image channels, 2D vs 3D and the classes come from metadata ``network_data_format``
(``inputs.image.num_channels`` less ``guidance_channels`` (interactive bundles) / ``spatial_shape`` /
``modality``, ``outputs.pred.channel_def``);
sigmoid (region) bundles whose labels are not the channel indices set ``data.label_values`` to the raw
label values their transforms convert (BraTS: ``[0, 1, 2, 4]``).

Each workflow runs as ``python -m monai.bundle run --config_file "[<bundle configs>, <override file>]"
--meta_file ... --logging_file ... --bundle_root <copy> --dataset_dir <synthetic data>`` in a
subprocess, on a copy of the bundle in a temporary folder (the bundle itself is never written to).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelzoo.bundle.checks import config_parser
from labelzoo.bundle.problems import Problem
from labelzoo.io import save_nifti, write_json_atomic

logger = logging.getLogger(__name__)

SMOKE_FILE = "configs/smoke.json"
SMOKE_SECTIONS = ("data", "all", "train", "evaluate", "inference", "multi_gpu")
DATA_KEYS = ("spatial_size", "spacing", "label_values", "num_training", "num_test", "suffix",
             "channels_as_files", "patch_size")

#: Which bundle configs each workflow merges, and which smoke sections apply to it, in order.
WORKFLOWS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "train": (("configs/train.json",), ("all", "train")),
    "evaluate": (("configs/train.json", "configs/evaluate.json"), ("all", "train", "evaluate")),
    "inference": (("configs/inference.json",), ("all", "inference")),
    "multi_gpu": (("configs/train.json", "configs/multi_gpu_train.json"), ("all", "train", "multi_gpu")),
}


@dataclass
class SmokeSpec:
    """A bundle's ``configs/smoke.json``: the synthetic data and the override sections."""

    data: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: list[str] = field(default_factory=list)

    def overrides(self, workflow: str) -> dict[str, Any]:
        """The merged override ids for ``workflow`` (``train``, ``evaluate``, ``inference``, ``multi_gpu``)."""
        out: dict[str, Any] = {}
        for name in WORKFLOWS[workflow][1]:
            out.update(self.sections.get(name, {}))
        return out


def load_smoke(root: Path) -> tuple[SmokeSpec, list[Problem]]:
    """Read ``configs/smoke.json`` (optional: a bundle without it runs at full size)."""
    path = root / SMOKE_FILE
    if not path.is_file():
        return SmokeSpec(), []
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        return SmokeSpec(), [Problem("smoke", SMOKE_FILE, f"not valid JSON at line {e.lineno} column {e.colno}: "
                                                          f"{e.msg}")]
    if not isinstance(raw, dict):
        return SmokeSpec(), [Problem("smoke", SMOKE_FILE, "must be a JSON object with sections "
                                                          f"{', '.join(SMOKE_SECTIONS)}")]
    problems = [Problem("smoke", SMOKE_FILE, "unknown section: expected one of "
                                             f"{', '.join((*SMOKE_SECTIONS, 'variants'))}", k)
                for k in raw if k not in (*SMOKE_SECTIONS, "variants")]
    variants = raw.get("variants", [])
    if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
        problems.append(Problem("smoke", SMOKE_FILE, "must be a list of override files relative to the bundle, "
                                                     "e.g. [\"configs/baseline.json\"]", "variants"))
        variants = []
    problems += [Problem("smoke", SMOKE_FILE, f"variant file {v} does not exist in the bundle", "variants")
                 for v in variants if not (root / v).is_file()]
    problems += [Problem("smoke", SMOKE_FILE, f"must be an object of config id: value, got {type(v).__name__}", k)
                 for k, v in raw.items() if k in SMOKE_SECTIONS and not isinstance(v, dict)]
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    problems += [Problem("smoke", SMOKE_FILE, f"unknown data key: expected one of {', '.join(DATA_KEYS)}",
                         f"data#{k}") for k in data if k not in DATA_KEYS]
    sections = {k: v for k, v in raw.items() if k in SMOKE_SECTIONS[1:] and isinstance(v, dict)}
    return SmokeSpec(data=data, sections=sections, variants=list(variants)), problems


# ----------------------------------------------------------------------------------------------------------
# synthetic data from network_data_format
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataFormat:
    """What the synthetic data must look like, from metadata and ``smoke.json`` ``data``."""

    num_channels: int
    spatial_dims: int
    modality: str
    label_values: tuple[int, ...]
    label_names: dict[int, str]
    spatial_size: tuple[int, ...]
    spacing: tuple[float, ...]
    num_training: int = 3
    num_test: int = 1
    suffix: str = ".nii.gz"
    channels_as_files: bool = False


def default_label_values(channel_def: dict[int, str]) -> tuple[int, ...]:
    """Label values when smoke ``data.label_values`` is absent.

    With a ``background`` channel (softmax over exclusive classes) the values are the channel indices;
    without one (sigmoid outputs, one per class or region) channel ``i`` is label ``i + 1`` and 0 is
    background, so a single-channel binary bundle gets ``(0, 1)``.

    Example:
        >>> default_label_values({0: "background", 1: "spleen"}), default_label_values({0: "lung"})
        ((0, 1), (0, 1))
    """
    if any(name.strip().lower() == "background" for name in channel_def.values()):
        return tuple(sorted(channel_def))
    return (0, *(k + 1 for k in sorted(channel_def)))


def data_format(meta: dict[str, Any], data: dict[str, Any] | None = None) -> DataFormat:
    """Derive the synthetic data's format from metadata ``network_data_format`` and smoke ``data``.

    Example:
        >>> meta = {"network_data_format": {"inputs": {"image": {"num_channels": 1, "spatial_shape": [96, 96, 96],
        ...     "modality": "CT"}}, "outputs": {"pred": {"channel_def": {"0": "background", "1": "spleen"}}}}}
        >>> fmt = data_format(meta)
        >>> fmt.spatial_dims, fmt.label_values, fmt.spatial_size
        (3, (0, 1), (48, 48, 48))
    """
    data = data or {}
    fmt = meta.get("network_data_format", {})
    image = next(iter(fmt.get("inputs", {}).values()), {})
    pred = next(iter(fmt.get("outputs", {}).values()), {})
    dims = len(image.get("spatial_shape") or [0, 0, 0])
    cdef = {int(k): str(v) for k, v in (pred.get("channel_def") or {"0": "background", "1": "foreground"}).items()}
    values = tuple(int(v) for v in data.get("label_values", default_label_values(cdef)))
    size = tuple(int(s) for s in data.get("spatial_size", [48] * dims if dims == 3 else [64] * dims))
    spacing = tuple(float(s) for s in data.get("spacing", [1.0] * dims))
    return DataFormat(
        num_channels=int(image.get("num_channels", 1)) - int(image.get("guidance_channels", 0)),
        spatial_dims=dims,
        modality=str(image.get("modality", "")),
        label_values=values,
        label_names=_label_names(cdef, values),
        spatial_size=size,
        spacing=spacing,
        num_training=int(data.get("num_training", 3)),
        num_test=int(data.get("num_test", 1)),
        suffix=str(data.get("suffix", ".nii.gz")),
        channels_as_files=bool(data.get("channels_as_files", False)),
    )


def _label_names(cdef: dict[int, str], values: tuple[int, ...]) -> dict[int, str]:
    has_background = any(n.strip().lower() == "background" for n in cdef.values())
    names = dict(cdef) if has_background else {0: "background", **{k + 1: n for k, n in cdef.items()}}
    return {v: names.get(v, f"class {v}") for v in values}


def synthetic_case(fmt: DataFormat, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One case: image ``(C, *spatial)`` float32 and label ``(*spatial)`` uint8 with blobs of each label value.

    CT images are in Hounsfield units (air -1000, soft tissue ~40, one contrast per class); other modalities
    are positive intensities. Every non-zero label value gets one ellipsoid, so every class is present.
    """
    rng = np.random.default_rng(seed)
    size = np.array(fmt.spatial_size, dtype=float)
    grid = np.meshgrid(*(np.arange(s, dtype=np.float32) for s in fmt.spatial_size), indexing="ij")
    ct = fmt.modality.upper() == "CT"
    base, tissue = (-1000.0, 40.0) if ct else (0.0, 100.0)
    body = sum(((g - s / 2) / (0.42 * s)) ** 2 for g, s in zip(grid, size, strict=True)) <= 1.0
    image = np.full(fmt.spatial_size, base, dtype=np.float32)
    image[body] = tissue
    label = np.zeros(fmt.spatial_size, dtype=np.uint8)
    fg = [v for v in fmt.label_values if v != 0]
    for i, value in enumerate(fg):
        angle = 2 * np.pi * i / max(len(fg), 1)
        offset = np.zeros(len(size))
        offset[0], offset[1] = np.cos(angle), np.sin(angle)
        centre = size / 2 + 0.18 * size * offset + rng.uniform(-1.5, 1.5, len(size))
        radii = np.maximum(size * 0.12, 2.5)
        blob = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1.0
        image[blob] = tissue + 60.0 * (i + 1)
        label[blob] = value
    image += rng.normal(0.0, 10.0, size=fmt.spatial_size).astype(np.float32)
    channels = np.stack([image * (1.0 + 0.1 * c) if not ct else image for c in range(fmt.num_channels)])
    return channels.astype(np.float32), label


def _affine(fmt: DataFormat) -> np.ndarray:
    """An LPS-style scanner affine for 3D (so Orientation/inversion are exercised), a plain one for 2D."""
    if fmt.spatial_dims == 3:
        from labelzoo.data.synthetic import scanner_affine

        return scanner_affine(fmt.spatial_size, fmt.spacing)
    affine = np.eye(4)
    for i, s in enumerate(fmt.spacing):
        affine[i, i] = s
    return affine


def _save(array: np.ndarray, fmt: DataFormat, path: Path, is_label: bool) -> None:
    if fmt.suffix == ".png":
        from PIL import Image

        path.parent.mkdir(parents=True, exist_ok=True)
        if is_label:
            img = Image.fromarray(array.astype(np.uint8))
        else:
            lo, hi = float(array.min()), float(array.max())
            scaled = ((array - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8)
            img = Image.fromarray(np.moveaxis(scaled, 0, -1) if scaled.ndim == 3 else scaled)
        img.save(path)
    else:
        save_nifti(array, _affine(fmt), path)


def write_synthetic_dataset(out: Path, fmt: DataFormat, seed: int = 0) -> Path:
    """Write an MSD-style dataset (``dataset.json``, ``imagesTr/``, ``labelsTr/``, ``imagesTs/``) in ``out``."""
    out = Path(out)
    training, test = [], []
    for i in range(fmt.num_training + fmt.num_test):
        name = f"case_{i:03d}"
        image, label = synthetic_case(fmt, seed + i)
        folder = "imagesTr" if i < fmt.num_training else "imagesTs"
        if fmt.channels_as_files and fmt.num_channels > 1:
            rel_image: Any = [f"./{folder}/{name}_{c:04d}{fmt.suffix}" for c in range(fmt.num_channels)]
            for c, rel in enumerate(rel_image):
                _save(image[c], fmt, out / rel, False)
        else:
            rel_image = f"./{folder}/{name}{fmt.suffix}"
            if fmt.suffix == ".png":
                _save(image if fmt.num_channels > 1 else image[0], fmt, out / rel_image, False)
            else:
                _save(image[0] if fmt.num_channels == 1 else np.moveaxis(image, 0, -1), fmt, out / rel_image, False)
        if i < fmt.num_training:
            rel_label = f"./labelsTr/{name}{fmt.suffix}"
            _save(label, fmt, out / rel_label, True)
            training.append({"image": rel_image, "label": rel_label})
        else:
            test.append(rel_image)
    write_json_atomic(out / "dataset.json", {
        "name": "LabelZooSmoke",
        "description": "synthetic data written by labelzoo bundle verify",
        "tensorImageSize": f"{fmt.spatial_dims}D",
        "modality": {str(c): fmt.modality or "image" for c in range(fmt.num_channels)},
        "labels": {str(v): n for v, n in fmt.label_names.items()},
        "numTraining": len(training),
        "numTest": len(test),
        "training": training,
        "test": test,
    })
    return out


# ----------------------------------------------------------------------------------------------------------
# the workspace: a copy of the bundle, the data, one override file per workflow
# ----------------------------------------------------------------------------------------------------------


@dataclass
class SmokeWorkspace:
    """Everything a smoke run needs, under one temporary folder."""

    root: Path
    bundle: Path
    data: Path
    meta: dict[str, Any]
    spec: SmokeSpec
    variant: Path | None = None
    name: str = ""
    override_files: dict[str, Path] = field(default_factory=dict)

    def output_dir(self, workflow: str) -> Path:
        return self.root / f"out_{workflow}"

    def command(self, workflow: str, nproc: int | None = None) -> list[str]:
        """The ``python -m monai.bundle run`` (or ``torchrun ... -m monai.bundle run``) command of a workflow."""
        files = [str(self.bundle / f) for f in WORKFLOWS[workflow][0]] + [str(self.override_files[workflow])]
        head = [sys.executable, "-m"]
        if nproc:
            head += ["torch.distributed.run", "--standalone", "--nnodes=1", f"--nproc_per_node={nproc}", "-m"]
        return head + [
            "monai.bundle", "run",
            "--config_file", json.dumps(files),
            "--meta_file", str(self.bundle / "configs" / "metadata.json"),
            "--logging_file", str(self.bundle / "configs" / "logging.conf"),
            "--bundle_root", str(self.bundle),
            "--dataset_dir", str(self.data),
            "--output_dir", str(self.output_dir(workflow)),
        ]


def _ignore_outputs(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n in ("models", "eval", "__pycache__", ".ipynb_checkpoints")]


def prepare_workspace(bundle_dir: Path, workdir: Path, meta: dict[str, Any], variant: Path | None = None
                      ) -> tuple[SmokeWorkspace, list[Problem]]:
    """Copy the bundle, write the synthetic data and one override file per workflow (variant + smoke)."""
    spec, problems = load_smoke(bundle_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    bundle = workdir / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(bundle_dir, bundle, ignore=_ignore_outputs)
    (bundle / "models").mkdir(exist_ok=True)
    data = write_synthetic_dataset(workdir / "data", data_format(meta, spec.data))
    variant_cfg: dict[str, Any] = {}
    if variant is not None:
        variant_cfg = json.loads(Path(variant).read_text())
    ws = SmokeWorkspace(root=workdir, bundle=bundle, data=data, meta=meta, spec=spec, variant=variant,
                        name=Path(bundle_dir).resolve().name)
    for workflow, (files, _) in WORKFLOWS.items():
        if not all((bundle / f).is_file() for f in files):
            continue
        # variant ids that do not apply to this workflow's configs (training-only ids in inference.json) are
        # dropped here; check_variant reports those that apply nowhere.
        parser, _ = config_parser(bundle, files)
        overrides = {k: v for k, v in variant_cfg.items() if parser is not None and _settable(parser, k)}
        overrides.update(spec.overrides(workflow))
        path = workdir / "overrides" / f"{workflow}.json"
        write_json_atomic(path, overrides)
        ws.override_files[workflow] = path
    return ws, problems


def _settable(parser: Any, config_id: str) -> bool:
    parent = config_id.rsplit("#", 1)[0] if "#" in config_id else ""
    return parent == "" or parent in parser


# ----------------------------------------------------------------------------------------------------------
# running and checking
# ----------------------------------------------------------------------------------------------------------


def _error_summary(log: str, limit: int = 3) -> str:
    """The last lines of a failed run that say what went wrong (the error, not the whole traceback)."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error:" in ln or "Exception" in ln]
    picked = (errors or lines)[-limit:]
    return " | ".join(picked)[-1500:]


def run_workflow(ws: SmokeWorkspace, workflow: str, timeout: float = 900, nproc: int | None = None,
                 env: dict[str, str] | None = None) -> tuple[list[Problem], Path]:
    """Run one workflow in a subprocess; a non-zero exit becomes a Problem quoting the error and the log."""
    log = ws.root / f"{workflow}.log"
    cmd = ws.command(workflow, nproc=nproc)
    logger.info("running %s: %s", workflow, " ".join(cmd))
    run_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    rel = WORKFLOWS[workflow][0][-1]
    with open(log, "w") as out:
        try:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=run_env, cwd=ws.root,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return [Problem(f"run:{workflow}", rel, f"did not finish within {timeout:.0f} s (log: {log})")], log
    if proc.returncode != 0:
        text = log.read_text(errors="replace")
        return [Problem(f"run:{workflow}", rel, f"`python -m monai.bundle run` exited with {proc.returncode}: "
                                                f"{_error_summary(text)} (log: {log})")], log
    return [], log


def _spatial_geometry(path: Path, dims: int) -> tuple[tuple[int, ...], np.ndarray | None]:
    if path.name.endswith(".png"):
        from PIL import Image

        with Image.open(path) as img:
            return tuple(reversed(img.size))[:dims], None
    import nibabel as nib

    img = nib.load(str(path))
    return tuple(int(s) for s in img.shape[:dims]), np.asarray(img.affine)


def check_outputs(inputs: list[Path], out_dir: Path, dims: int, workflow: str, rel: str) -> list[Problem]:
    """Each input has an output file named after it, with the input's spatial shape and affine."""
    problems: list[Problem] = []
    produced = [p for p in out_dir.rglob("*") if p.is_file()] if out_dir.is_dir() else []
    for src in inputs:
        stem = src.name.split(".")[0]
        matches = [p for p in produced if p.name.startswith(stem) and not p.name.endswith((".csv", ".json"))]
        if not matches:
            problems.append(Problem(f"run:{workflow}", rel, f"no output for {src.name} under {out_dir} "
                                                            f"(expected a file named {stem}*, e.g. {stem}_seg.nii.gz)"))
            continue
        want_shape, want_affine = _spatial_geometry(src, dims)
        got_shape, got_affine = _spatial_geometry(matches[0], dims)
        if got_shape != want_shape:
            hint = ""
            if workflow == "monailabel" and dims == 2:
                hint = (" (MONAI Label writes 2D predictions as they leave postprocessing: end it with "
                        "SqueezeDimd(keys='pred', dim=0) after SaveImaged, as MONAI Label's 2D apps do)")
            problems.append(Problem(f"run:{workflow}", rel, f"{matches[0].name} has spatial shape {got_shape}, "
                                                            f"expected the input's {want_shape}{hint}"))
        elif want_affine is not None and got_affine is not None and not np.allclose(got_affine, want_affine,
                                                                                     atol=1e-3):
            problems.append(Problem(f"run:{workflow}", rel, f"{matches[0].name} has affine "
                                                            f"{np.round(got_affine, 3).tolist()}, expected the "
                                                            f"input's {np.round(want_affine, 3).tolist()}"))
    return problems


def check_workflow_properties(ws: SmokeWorkspace) -> list[Problem]:
    """``monai.bundle.ConfigWorkflow(...).check_properties()`` for the train and infer workflows.

    It instantiates each property (trainer, datasets, network...), so it runs on the smoke workspace.
    """
    from monai.bundle import ConfigWorkflow

    problems: list[Problem] = []
    for workflow, kind in (("train", "train"), ("inference", "infer")):
        if workflow not in ws.override_files:
            continue
        files = [str(ws.bundle / f) for f in WORKFLOWS[workflow][0]] + [str(ws.override_files[workflow])]
        rel = WORKFLOWS[workflow][0][-1]
        try:
            wf = ConfigWorkflow(config_file=files, meta_file=str(ws.bundle / "configs" / "metadata.json"),
                                logging_file=False, workflow_type=kind, bundle_root=str(ws.bundle),
                                dataset_dir=str(ws.data), output_dir=str(ws.output_dir(f"properties_{workflow}")))
            wf.initialize()
            missing = wf.check_properties()
        except Exception as e:  # noqa: BLE001 (reported, not raised)
            problems.append(Problem("properties", rel, f"ConfigWorkflow(workflow_type={kind!r}) could not build "
                                                       f"its properties: {type(e).__name__}: {_error_summary(str(e))}"))
            continue
        for name in missing or []:
            problems.append(Problem("properties", rel, f"ConfigWorkflow(workflow_type={kind!r}).check_properties() "
                                                       f"reports property '{name}' missing or with a wrong id"))
    return problems


def _monailabel_bundle(ws: SmokeWorkspace) -> Path:
    """A copy of the trained smoke bundle whose inference.json / train.json have the smoke overrides merged in,
    as MONAI Label reads those files directly (it takes no override files)."""
    from monai.bundle import ConfigParser

    dst = ws.root / "monailabel" / (ws.name or ws.bundle.name)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(ws.bundle, dst)
    for workflow, rel in (("inference", "configs/inference.json"), ("train", "configs/train.json")):
        parser = ConfigParser()
        parser.read_config([str(ws.bundle / rel), str(ws.override_files[workflow])])
        parser["dataset_dir"] = str(ws.data)
        ConfigParser.export_config_file(parser.get(), str(dst / rel), indent=4)
    return dst


def check_monailabel_tasks(ws: SmokeWorkspace) -> list[Problem]:
    """Load the trained smoke bundle with MONAI Label's own ``BundleInferTask`` / ``BundleTrainTask`` and run
    one inference through MONAI Label's pipeline (its loader, the bundle's pre/post transforms and inferer,
    its ``Restored``); the label file must have the input's geometry and MONAI Label must find labels."""
    rel = "configs/inference.json"
    test = json.loads((ws.data / "dataset.json").read_text())["test"]
    if not test or isinstance(test[0], list):
        return []  # MONAI Label sends one image file per request; multi-file cases cannot be sent as is
    try:
        bundle = _monailabel_bundle(ws)
        from monailabel.tasks.infer.bundle import BundleInferTask
        from monailabel.tasks.train.bundle import BundleTrainTask

        task = BundleInferTask(str(bundle), {})
        if not task.is_valid():
            return [Problem("monailabel", rel, "MONAI Label's BundleInferTask rejected the bundle (see its log)")]
        if not task.labels:
            return [Problem("monailabel", "configs/metadata.json", "MONAI Label found no label besides background",
                            "network_data_format#outputs#pred#channel_def")]
        trainer = BundleTrainTask(str(bundle), {})
        if not trainer.is_valid():
            return [Problem("monailabel", "configs/train.json", "MONAI Label's BundleTrainTask rejected the bundle")]
        trainer.config()
        image = ws.data / test[0]
        suffix = ".png" if image.name.endswith(".png") else ".nii.gz"
        label, _ = task({"image": str(image), "device": "cpu", "result_extension": suffix, "result_dtype": "uint8"})
    except Exception as e:  # noqa: BLE001 (reported, not raised)
        return [Problem("monailabel", rel, f"MONAI Label's BundleInferTask failed on {test[0]}: "
                                           f"{type(e).__name__}: {_error_summary(str(e))}")]
    try:
        fmt = data_format(ws.meta, ws.spec.data)
        out = ws.output_dir("monailabel")
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{image.name.split('.')[0]}_label{suffix}"
        shutil.move(str(label), target)
        return check_outputs([image], out, fmt.spatial_dims, "monailabel", rel)
    except Exception as e:  # noqa: BLE001
        return [Problem("monailabel", rel, f"MONAI Label's label file {label} is unreadable: {e}")]


def smoke_run(ws: SmokeWorkspace, timeout: float = 900) -> list[Problem]:
    """Train 1 epoch, then evaluate and infer, each through ``python -m monai.bundle run``; check outputs."""
    problems = check_workflow_properties(ws)
    if problems:
        return problems
    fmt = data_format(ws.meta, ws.spec.data)
    run_problems, _ = run_workflow(ws, "train", timeout)
    if run_problems:
        return problems + run_problems
    if not (ws.bundle / "models" / "model.pt").is_file():
        return problems + [Problem("run:train", "configs/train.json", "training finished without writing "
                                                                      "models/model.pt (MONAI Label and "
                                                                      "inference.json load that file)",
                                   "validate#handlers")]
    if "evaluate" in ws.override_files:
        run_problems, _ = run_workflow(ws, "evaluate", timeout)
        problems += run_problems
        out = ws.output_dir("evaluate")
        if not run_problems and not (out.is_dir() and any(p.is_file() for p in out.rglob("*"))):
            problems.append(Problem("run:evaluate", "configs/evaluate.json", f"wrote nothing to output_dir ({out}): "
                                                                             "expected metrics and predictions",
                                    "output_dir"))
    run_problems, _ = run_workflow(ws, "inference", timeout)
    problems += run_problems
    if not run_problems:
        test = json.loads((ws.data / "dataset.json").read_text())["test"]
        inputs = [ws.data / (t[0] if isinstance(t, list) else t) for t in test]
        problems += check_outputs(inputs, ws.output_dir("inference"), fmt.spatial_dims, "inference",
                                  "configs/inference.json")
    if not problems:
        problems += check_monailabel_tasks(ws)
    return problems
