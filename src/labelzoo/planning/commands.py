"""The planner's command-line functions (``labelzoo plan``, ``labelzoo plan fingerprint``), over the stages.

``labelzoo plan DATASET`` = fingerprint -> plan -> emit, with a progress display on stderr.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from labelzoo.errors import LabelZooError
from labelzoo.io import write_json_atomic
from labelzoo.planning.emit import emit_bundles
from labelzoo.planning.fingerprint import extract_fingerprint, load_fingerprint, write_fingerprint
from labelzoo.planning.planner import ExperimentPlanner


class Progress:
    """A one-line progress display on stderr (a bar on a terminal, plain lines otherwise)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()

    def stage(self, text: str) -> None:
        self.stream.write(f"[{time.monotonic() - self.start:6.1f}s] {text}\n")
        self.stream.flush()

    def cases(self, done: int, total: int, case_id: str) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        line = f"  fingerprint [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {case_id}"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done == total else ""))
        elif done == total or done % max(1, total // 10) == 0:
            self.stream.write(line + "\n")
        self.stream.flush()


def _parse_list(value: str | list | tuple | None) -> list[str] | None:
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(i).strip() for i in items if str(i).strip()]


def fingerprint(dataset: str, out: str | None = None, modality: str | None = None,
                base_dir: str | None = None) -> str:
    """Read a dataset, check every case, and write its fingerprint JSON.

    DATASET is an MSD or nnU-Net v2 raw dataset folder (with dataset.json), or a MONAI datalist JSON.
    Every problem (missing files, image/label geometry mismatch, channel counts, empty or undeclared
    labels) is listed in one error. Example: labelzoo plan fingerprint data/Task09_Spleen --out fp.json

    Args:
        dataset: dataset folder, dataset.json or datalist JSON.
        out: fingerprint file to write (default: fingerprint.json beside dataset.json).
        modality: datalist only: modality per channel, comma-separated (CT, MRI, ...).
        base_dir: datalist only: folder the datalist's relative paths start from.
    """
    progress = Progress()
    path = write_fingerprint(dataset, out, modality=modality, base_dir=base_dir, progress=progress.cases)
    return f"wrote {path}"


def plans(fingerprint_file: str, out: str = "plans.json", gpu_memory_gb: float = 8.0) -> str:
    """Plan the configurations of a fingerprint (pure rules, no images read) and write plans.json.

    Example: labelzoo plan plans fingerprint.json --out plans.json --gpu_memory_gb 8

    Args:
        fingerprint_file: a fingerprint written by `labelzoo plan fingerprint`.
        out: plans file to write.
        gpu_memory_gb: GPU memory budget in GB (estimated from the network, no GPU is queried).
    """
    result = ExperimentPlanner(gpu_memory_gb=gpu_memory_gb).plan(load_fingerprint(fingerprint_file))
    write_json_atomic(out, result)
    return f"wrote {out}: configurations {', '.join(result['configurations'])}"


def run(dataset: str, out: str | None = None, gpu_memory_gb: float = 8.0, configurations: str | None = None,
        name: str | None = None, modality: str | None = None, base_dir: str | None = None,
        overwrite: bool = False, interactive: bool = False) -> str:
    """Fingerprint + plan + emit (also `labelzoo plan DATASET`): one DynUNet bundle per configuration in OUT.

    OUT gets fingerprint.json, plans.json and one bundle folder per configuration (2d, 3d_fullres, and
    3d_lowres + 3d_cascade_fullres when planned); serve them with
    `labelzoo serve --conf bundles=OUT`. Example: labelzoo plan data/Task09_Spleen --out planned --gpu_memory_gb 8

    Args:
        dataset: dataset folder (MSD / nnU-Net raw), dataset.json or MONAI datalist JSON.
        out: output folder (default: <dataset>_planned beside the dataset).
        gpu_memory_gb: GPU memory budget in GB the configurations must fit (estimated on CPU).
        configurations: comma-separated subset to emit (default: all planned).
        name: anatomy part of the bundle names (default: from the dataset name).
        modality: datalist only: modality per channel, comma-separated.
        base_dir: datalist only: folder its relative paths start from.
        overwrite: replace bundles already in OUT.
        interactive: also emit the interactive variant of each 3d_fullres, 3d_lowres and 2d configuration
            (`<...>_interactive_annotation`, with click / box / scribble / lasso / prior-mask guidance channels,
            served as a MONAI Label DeepEdit model; the 2d one runs volumes slice by slice, each prompt guiding
            the slice it is drawn on). The cascade's stage 2 gets none (the prior channel takes its role).
    """
    planner = ExperimentPlanner(gpu_memory_gb=gpu_memory_gb)  # checks the budget before any work
    progress = Progress()
    ds = Path(dataset).expanduser()
    if out is None:
        base = ds if ds.is_dir() else ds.parent
        out = str(base.parent / f"{base.name}_planned")
    out_dir = Path(out).expanduser()
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise LabelZooError(f"--out {out_dir} is not empty: choose an empty folder or pass --overwrite")
    progress.stage(f"1/3 fingerprint of {dataset}")
    fp = extract_fingerprint(dataset, modality=modality, base_dir=base_dir, progress=progress.cases)
    write_json_atomic(out_dir / "fingerprint.json", fp)
    progress.stage(f"2/3 plan ({gpu_memory_gb:g} GB GPU budget)")
    planned = planner.plan(fp)
    write_json_atomic(out_dir / "plans.json", planned)
    for cname, cfg in planned["configurations"].items():
        progress.stage(f"    {cname}: spacing {[round(s, 3) for s in cfg['spacing']]}, patch {cfg['patch_size']}, "
                       f"batch {cfg['batch_size']}, {len(cfg['strides'])} stages")
    progress.stage("3/3 emit bundles")
    root = ds if ds.is_dir() else (Path(base_dir).expanduser() if base_dir else ds.parent)
    written = emit_bundles(planned, fp, out_dir, root, _parse_list(configurations), name, overwrite)
    if interactive:
        from labelzoo.interactive.plan import emit_interactive_bundles

        written += emit_interactive_bundles(written, overwrite)
    lines = [f"wrote {len(written)} bundle(s) to {out_dir}:"] + [f"  {p.name}" for p in written]
    lines.append(f"serve them with: labelzoo serve --conf bundles={out_dir}")
    return "\n".join(lines)


def show(plans_file: str) -> str:
    """Print a plans.json as a short table. Example: labelzoo plan show planned/plans.json"""
    data = json.loads(Path(plans_file).read_text())
    rows = [f"{'configuration':<20} {'spacing':<28} {'patch':<18} batch stages"]
    for cname, cfg in data["configurations"].items():
        rows.append(f"{cname:<20} {str([round(s, 3) for s in cfg['spacing']]):<28} {str(cfg['patch_size']):<18} "
                    f"{cfg['batch_size']:<5} {len(cfg['strides'])}")
    return "\n".join(rows)
