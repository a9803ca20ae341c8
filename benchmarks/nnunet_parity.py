"""LabelZoo-planned bundle vs nnU-Net v2 at an equal training budget: per-class Dice, HD95 and time per iteration.

Builds one synthetic CT dataset (``labelzoo.data.build_sample_studies``; hippocampus-sized by default),
writes it as an nnU-Net v2 raw dataset (``imagesTr/CASE_0000.nii.gz``, consecutive labels), and on the same
cases, the same fold and the same number of training iterations:

- **LabelZoo**: ``labelzoo plan`` (fingerprint -> plans -> bundle) of ``--configuration``, trained with
  ``python -m monai.bundle run --config_file configs/train.json`` (one epoch of ``--iterations`` iterations),
  then ``configs/inference.json`` (mirrored TTA) on the held-out fold;
- **nnU-Net v2** (``nnunetv2`` 2.8.1, the ``parity`` extra) in its own environment (``make parity-venv`` makes
  ``.venv-parity``; ``--nnunet-python`` names another interpreter), in subprocesses:
  ``nnUNetv2_plan_and_preprocess``, then ``nnUNetTrainer`` as ``nnUNetv2_train -device cpu`` builds it, with
  ``num_epochs = 1`` and ``num_iterations_per_epoch = --iterations``, the same split (``splits_final.json``
  written from the bundle's folds) and as many data-augmentation workers (``nnUNet_n_proc_DA``) as the bundle's
  DataLoader, then its own validation of the held-out fold (mirrored TTA).

``--train-seeds 0,1,2`` trains each side once per seed (LabelZoo ``--seed``; nnU-Net, which has no seed option,
seeded by this script) and reports each side's mean Dice as mean +- sd over the seeds: at a reduced budget the
spread between two trainings of the same recipe is larger than the 1-point goal, so one run per side says little.

Both predictions are scored by the same code (Dice per class; HD95 in mm with ``labelzoo.metrics``) and the
script prints a table plus the steady-state time per training iteration of each, measured the same way for
both by this script (``run_timed``): at each iteration's end line of the training's output it notes the wall
clock and the CPU seconds of the training's whole process tree (main process + data-loading workers, from
``/proc``); per iteration = (last - first) / (iterations - 1), so start-up, caching and the first batch are
left out. The accuracy run trains the two sides one after the other.

**Time per iteration, fairly** (``--speed-rounds R``): on a shared machine the load changes between two
trainings, so one after the other mixes the load with the recipes. ``--speed-rounds`` runs R rounds of short
whole trainings (``--speed-iterations`` each, no validation) of every side, the order rotated by one each
round, and prints per side the median wall and CPU seconds per iteration and the ratios to nnU-Net (of the
medians, and the median of the per-round ratios). CPU seconds per iteration are the work an iteration costs,
whatever share of the cores the process got; wall seconds are what a user waits. ``--compare-src DIR`` adds a
third side: the bundle planned by another LabelZoo source tree (e.g. ``/path/to/other/checkout/src``), for a
before/after of a change in the same run; ``--labelzoo-override KEY=VALUE`` adds the same bundle run with
``--KEY VALUE`` (e.g. ``num_workers=0``). ``benchmarks/parity_network_speed.py`` times the network step alone
(both sides alternated in one process).

On CPU keep the budget small (the default: 10 iterations); with a GPU pass ``--iterations 250 --device cuda``
or more. Run: ``python benchmarks/nnunet_parity.py [--configuration 3d_fullres] [--iterations 10]
[--cases 10] [--seed 3] [--train-seeds 0,1,2] [--threads N] [--shape 40,48,40] [--device cpu] [--work DIR]
[--nnunet-python PY] [--reuse]
[--speed-rounds R --speed-iterations N [--compare-src DIR] [--labelzoo-override KEY=VALUE]]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from labelzoo.data import build_sample_studies
from labelzoo.io import save_nifti, write_json_atomic
from labelzoo.metrics import hd95_mm
from labelzoo.planning.transforms import num_workers
from labelzoo.progress import progress_bar

logger = logging.getLogger(__name__)

DATASET_ID = 977
DATASET_NAME = f"Dataset{DATASET_ID}_ParitySynthetic"


def build_dataset(work: Path, cases: int, shape: tuple[int, ...], seed: int) -> tuple[Path, dict[int, str]]:
    """The synthetic MSD dataset rewritten as an nnU-Net v2 raw dataset with consecutive labels."""
    msd = build_sample_studies(work / "msd", n_images=cases, n_labeled=cases, shape=shape, seed=seed, layout="msd",
                               overwrite=True)
    spec = json.loads((msd / "dataset.json").read_text())
    values = sorted(int(k) for k in spec["labels"])
    names = {i: spec["labels"][str(v)] for i, v in enumerate(values)}
    raw = work / "nnUNet_raw" / DATASET_NAME
    for item in spec["training"]:
        case = Path(item["image"]).name.replace(".nii.gz", "")
        img = nib.load(msd / item["image"])
        lab = np.asanyarray(nib.load(msd / item["label"]).dataobj)
        idx = np.zeros(lab.shape, np.uint8)
        for i, v in enumerate(values):
            idx[lab == v] = i
        save_nifti(np.asanyarray(img.dataobj).astype(np.float32), img.affine, raw / "imagesTr" / f"{case}_0000.nii.gz")
        save_nifti(idx, img.affine, raw / "labelsTr" / f"{case}.nii.gz")
    write_json_atomic(raw / "dataset.json", {"channel_names": {"0": "CT"},
                                             "labels": {n: i for i, n in names.items()},
                                             "numTraining": len(spec["training"]), "file_ending": ".nii.gz",
                                             "name": DATASET_NAME})
    return raw, names


def score(pred_dir: Path, raw: Path, cases: list[str], n_classes: int, suffix: str) -> dict[int, tuple[float, float]]:
    """Mean Dice and HD95 (mm) per foreground class over ``cases`` (predictions ``pred_dir/<case><suffix>``)."""
    dice: dict[int, list[float]] = {c: [] for c in range(1, n_classes)}
    hd: dict[int, list[float]] = {c: [] for c in range(1, n_classes)}
    for case in cases:
        ref_img = nib.load(raw / "labelsTr" / f"{case}.nii.gz")
        ref = np.asanyarray(ref_img.dataobj).astype(np.int64)
        pred = np.asanyarray(nib.load(pred_dir / f"{case}{suffix}").dataobj).astype(np.int64).reshape(ref.shape)
        spacing = [float(s) for s in ref_img.header.get_zooms()[:3]]
        p1 = torch.nn.functional.one_hot(torch.as_tensor(pred), n_classes).movedim(-1, 0)[None]
        r1 = torch.nn.functional.one_hot(torch.as_tensor(ref), n_classes).movedim(-1, 0)[None]
        hds = hd95_mm(p1, r1, spacing=spacing)[0]
        for c in range(1, n_classes):
            p, r = pred == c, ref == c
            if r.any() or p.any():
                dice[c].append(2.0 * float((p & r).sum()) / float(p.sum() + r.sum()))
            if r.any() and p.any():
                hd[c].append(float(hds[c - 1]))
    return {c: (float(np.mean(dice[c])) if dice[c] else float("nan"),
                float(np.mean(hd[c])) if hd[c] else float("nan")) for c in dice}


#: an iteration's end: MONAI's StatsHandler line (LabelZoo) or the line the nnU-Net trainer below prints
ITER_LINE = re.compile(r"(?:Epoch: \d+/\d+, Iter: |parity-iteration )(\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every live descendant (plus the children they have reaped)."""
    stats: dict[int, tuple[int, float]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        # after the command: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based over the whole line
        stats[int(proc.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / CLK_TCK)
    tree, total, changed = {pid}, 0.0, True
    while changed:
        changed = False
        for p, (ppid, _) in stats.items():
            if ppid in tree and p not in tree:
                tree.add(p)
                changed = True
    for p in tree:
        total += stats.get(p, (0, 0.0))[1]
    return total


def run_timed(cmd: list[str], env: dict[str, str], cwd: Path,
              log: Path) -> tuple[int, str, dict[int, tuple[float, float]]]:
    """Run a training, reading its output as it comes; at each iteration's end line note the wall clock and the
    CPU seconds of its whole process tree (main process and data-loading workers). Both sides are timed by
    this one function. Returns (exit status, output, {iteration: (wall s, CPU s)})."""
    marks: dict[int, tuple[float, float]] = {}
    lines: list[str] = []
    with subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            lines.append(line)
            m = ITER_LINE.search(line)
            if m:
                marks[int(m.group(1))] = (time.perf_counter(), tree_cpu_seconds(proc.pid))
    out = "".join(lines)
    log.write_text(out)
    return proc.returncode, out, marks


def steady(marks: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """(wall s, CPU s) per iteration between the end of the first and of the last iteration (start-up, caching
    and the first batch left out)."""
    if len(marks) < 2:
        raise RuntimeError("fewer than two iterations were seen: use --iterations >= 2")
    first, last = min(marks), max(marks)
    n = last - first
    return (marks[last][0] - marks[first][0]) / n, (marks[last][1] - marks[first][1]) / n


def plan_labelzoo(work: Path, raw: Path, configuration: str, src: str | None = None, name: str = "labelzoo") -> Path:
    """``labelzoo plan`` of ``configuration`` into ``work/name``; ``src`` plans with another LabelZoo source tree
    (e.g. a checkout before a change, for a before/after timing in the same run)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve())
    out = work / name
    subprocess.run([sys.executable, "-m", "labelzoo.cli", "plan", str(raw), "--out", str(out), "--configurations",
                    configuration, "--overwrite"], check=True, env=env, capture_output=True)
    return next(p for p in out.iterdir() if p.is_dir() and (p / "configs" / "train.json").is_file())


def train_labelzoo(bundle: Path, iterations: int, fold: int, log: Path, validate: bool = True,
                   src: str | None = None, overrides: list[str] | None = None,
                   seed: int | None = None) -> tuple[float, float]:
    """One epoch of ``iterations`` with ``python -m monai.bundle run`` (validation after it unless ``validate`` is
    false; training seed ``--seed`` if given); returns the steady-state (wall, CPU) seconds per iteration."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve())
    run = [sys.executable, "-m", "monai.bundle", "run", "--bundle_root", str(bundle)]
    # val_interval > num_epochs: no validation at all (the timing-only runs)
    rc, out, marks = run_timed(run + ["--config_file", str(bundle / "configs" / "train.json"), "--fold", str(fold),
                                      "--num_epochs", "1", "--iterations_per_epoch", str(iterations),
                                      "--val_interval", "1" if validate else "1000", *(overrides or []),
                                      *(["--seed", str(seed)] if seed is not None else [])],
                               env, bundle, log)
    if rc != 0:
        raise RuntimeError(f"LabelZoo training failed:\n{out[-3000:]}")
    return steady(marks)


def run_labelzoo(work: Path, raw: Path, configuration: str, iterations: int, fold: int,
                 overrides: list[str] | None = None, seed: int = 0,
                 bundle: Path | None = None) -> tuple[Path, list[str], tuple[float, float]]:
    """Plan (unless ``bundle`` is given), train one epoch of ``iterations`` with training seed ``seed``, predict the
    held-out fold into ``work/labelzoo_pred_s<seed>``; returns (predictions, cases, (wall s, CPU s) per iteration)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    bundle = bundle or plan_labelzoo(work, raw, configuration)
    datalist = json.loads((bundle / "configs" / "datalist.json").read_text())["training"]
    held = [d for d in datalist if d["fold"] == fold]
    per_iter = train_labelzoo(bundle, iterations, fold, work / f"labelzoo_train_s{seed}.log", overrides=overrides,
                              seed=seed)
    run = [sys.executable, "-m", "monai.bundle", "run", "--bundle_root", str(bundle)]
    pred_dir = work / f"labelzoo_pred_s{seed}"
    images = [str(raw / d["image"]) if not Path(d["image"]).is_absolute() else d["image"] for d in held]
    subprocess.run(run + ["--config_file", str(bundle / "configs" / "inference.json"), "--output_dir", str(pred_dir),
                          "--datalist", json.dumps([{"image": i} for i in images])], check=True, env=env, cwd=bundle)
    return pred_dir, [d["case_id"] for d in held], per_iter


def nnunet_env(work: Path) -> dict[str, str]:
    """Environment of the nnU-Net subprocesses (its folders; as many augmentation workers as the bundle)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"nnUNet_raw": str(work / "nnUNet_raw"), "nnUNet_preprocessed": str(work / "nnUNet_pre"),
                "nnUNet_results": str(work / "nnUNet_results"), "PYTHONUNBUFFERED": "1",
                # the same number of data-augmentation workers as the bundle's DataLoader
                "nnUNet_n_proc_DA": str(num_workers())})
    return env


def nnunet_missing(python: Path) -> str | None:
    """Why nnU-Net cannot run with ``python``, or None."""
    probe = subprocess.run([str(python), "-c", "import nnunetv2"], capture_output=True, text=True) \
        if python.is_file() else None
    if probe is None or probe.returncode != 0:
        return f"nnunetv2 is not importable with {python} (run `make parity-venv`, or pass --nnunet-python)"
    return None


def prepare_nnunet(work: Path, configuration: str, splits: list[dict], python: Path) -> None:
    """``nnUNetv2_plan_and_preprocess`` of ``configuration`` and the bundle's folds as ``splits_final.json``."""
    plan = ("from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import plan_and_preprocess_entry;"
            "plan_and_preprocess_entry()")
    subprocess.run([str(python), "-c", plan, "-d", str(DATASET_ID), "-c", configuration, "-np", "1",
                    "--verify_dataset_integrity"], check=True, env=nnunet_env(work), capture_output=True)
    write_json_atomic(work / "nnUNet_pre" / DATASET_NAME / "splits_final.json", splits)


def train_nnunet(work: Path, configuration: str, iterations: int, fold: int, device: str, python: Path,
                 validate: bool = True, threads: int | None = None, seed: int | None = None) -> dict:
    """``nnUNetTrainer`` as ``nnUNetv2_train -device cpu`` builds it (``threads`` torch threads instead of one per
    core if given), one epoch of ``iterations``, then (if ``validate``) its own validation of the held-out fold;
    returns ``{"per_iter": s, "validation": folder}``.

    ``seed``: nnU-Net has no seed option; the script seeds Python's, NumPy's and PyTorch's generators before the
    trainer is made (its augmentation workers are forked from that state)."""
    code = f"""
import os, random, torch, time, json
import numpy as np
if {seed!r} is not None:
    random.seed({seed!r}); np.random.seed({seed!r}); torch.manual_seed({seed!r})
from batchgenerators.utilities.file_and_folder_operations import load_json, join
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
pre = join({str(work / 'nnUNet_pre')!r}, {DATASET_NAME!r})
plans, ds = load_json(join(pre, 'nnUNetPlans.json')), load_json(join(pre, 'dataset.json'))
plans['continue_training'] = False  # what nnUNetv2_train's get_trainer_from_args sets
if {device!r} == 'cpu':  # as nnUNetv2_train -device cpu (unless the benchmark's --threads)
    torch.set_num_threads({threads!r} or os.cpu_count())
class ParityBudgetTrainer(nnUNetTrainer):
    # nnUNetTrainer records its __init__ arguments by name: keep its signature
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.iteration_ends, self.step_seconds = [], []
        self.num_epochs = 1
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = 1
    def train_step(self, batch):
        t0 = time.perf_counter()
        out = super().train_step(batch)
        self.iteration_ends.append(time.perf_counter())
        self.step_seconds.append(self.iteration_ends[-1] - t0)
        print("parity-iteration", len(self.iteration_ends), flush=True)  # timed by the benchmark
        return out
t = ParityBudgetTrainer(plans, {configuration!r}, {fold}, ds, device=torch.device({device!r}))
t.run_training()
# steady state as for LabelZoo: between the first and the last iteration's end
per_iter = (t.iteration_ends[-1] - t.iteration_ends[0]) / (len(t.iteration_ends) - 1)
if {validate!r}:
    t.perform_actual_validation(False)
json.dump({{"per_iter": per_iter, "step_seconds": t.step_seconds, "validation": join(t.output_folder, 'validation')}},
          open('nnunet_result.json', 'w'))
"""
    rc, out, marks = run_timed([str(python), "-c", code], nnunet_env(work), work, work / "nnunet_train.log")
    if rc != 0:
        raise RuntimeError(f"nnU-Net training failed:\n{out[-3000:]}")
    result = json.loads((work / "nnunet_result.json").read_text())
    result["per_iter"], result["cpu_per_iter"] = steady(marks)
    return result


def run_nnunet(work: Path, configuration: str, iterations: int, fold: int, splits: list[dict],
               device: str, python: Path, threads: int | None = None, seed: int = 0,
               prepare: bool = True) -> tuple[Path, tuple[float, float]] | str:
    """nnU-Net v2 on the same data, split and budget (training seed ``seed``; ``prepare``: plan and preprocess
    first); returns (predictions, copied to ``work/nnunet_pred_s<seed>``, (wall s, CPU s) per iteration) or why it
    did not run.

    nnU-Net runs with ``python`` (the parity environment of ``make parity-venv``), never in this process: its
    dependencies (numpy 2.x) differ from LabelZoo's.
    """
    missing = nnunet_missing(python)
    if missing:
        return missing
    if prepare:
        prepare_nnunet(work, configuration, splits, python)
    result = train_nnunet(work, configuration, iterations, fold, device, python, threads=threads, seed=seed)
    # the trainer's output folder is the same for every seed: keep this seed's predictions
    pred = work / f"nnunet_pred_s{seed}"
    if pred.exists():
        shutil.rmtree(pred)
    shutil.copytree(result["validation"], pred)
    return pred, (float(result["per_iter"]), float(result["cpu_per_iter"]))


def bundle_splits(bundle: Path) -> list[dict]:
    """The bundle's folds as nnU-Net's ``splits_final.json`` (one ``{"train": [...], "val": [...]}`` per fold)."""
    datalist = json.loads((bundle / "configs" / "datalist.json").read_text())["training"]
    folds = sorted({d["fold"] for d in datalist})
    return [{"train": [d["case_id"] for d in datalist if d["fold"] != k],
             "val": [d["case_id"] for d in datalist if d["fold"] == k]} for k in folds]


def interleaved_speed(work: Path, raw: Path, configuration: str, fold: int, rounds: int, iterations: int,
                      device: str, python: Path, compare_src: str | None,
                      overrides: list[str] | None = None) -> dict[str, list[tuple[float, float]]]:
    """Steady-state seconds per iteration of short whole trainings of each side, **alternated**: round ``r``
    runs every side once (LabelZoo, nnU-Net, and the bundle planned with ``compare_src`` if given), in an order
    rotated by one each round, so every side meets the same load on average. No validation in these runs."""
    bundle = plan_labelzoo(work, raw, configuration)
    splits = bundle_splits(bundle)
    sides: dict[str, Any] = {"LabelZoo": lambda: train_labelzoo(bundle, iterations, fold, work / "speed_lz.log",
                                                                validate=False)}
    if compare_src:
        before = plan_labelzoo(work, raw, configuration, src=compare_src, name="labelzoo_compare")
        sides["LabelZoo (--compare-src)"] = lambda: train_labelzoo(before, iterations, fold, work / "speed_cmp.log",
                                                                   validate=False, src=compare_src)
    if overrides:  # the same bundle with ``monai.bundle run`` overrides, e.g. ["--num_workers", "0"]
        sides["LabelZoo " + " ".join(overrides)] = lambda: train_labelzoo(bundle, iterations, fold,
                                                                          work / "speed_ovr.log", validate=False,
                                                                          overrides=overrides)
    missing = nnunet_missing(python)
    if missing:
        logger.warning("nnU-Net side left out: %s", missing)
    else:
        prepare_nnunet(work, configuration, splits, python)
        def nnunet() -> tuple[float, float]:
            r = train_nnunet(work, configuration, iterations, fold, device, python, validate=False)
            return float(r["per_iter"]), float(r["cpu_per_iter"])

        sides["nnU-Net v2"] = nnunet
    names = list(sides)
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    bar = progress_bar(rounds * len(names), desc="interleaved trainings", unit="training")
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            times[n].append(sides[n]())
            bar.update(1)
            bar.set_postfix_str(f"round {r + 1} {n}: {times[n][-1][0]:.2f} s/iter, load {os.getloadavg()[0]:.1f}")
    bar.close()
    return times


def print_speed(times: dict[str, list[tuple[float, float]]], configuration: str, iterations: int) -> None:
    """Per side: median wall and CPU seconds per iteration, and ratios to nnU-Net (of the medians, and the median of
    the per-round ratios: each round's sides ran back to back, under about the same load)."""
    rounds = len(next(iter(times.values())))
    print(f"\n{configuration}: steady-state time per iteration, {rounds} interleaved rounds of {iterations}-iteration "
          f"trainings (load average at the end {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)")
    ref = times.get("nnU-Net v2")
    for name, ts in times.items():
        wall, cpu = [t[0] for t in ts], [t[1] for t in ts]
        line = (f"{name:<26} wall {statistics.median(wall):6.2f} s  CPU {statistics.median(cpu):6.2f} s  "
                f"(wall by round: {', '.join(f'{t:.2f}' for t in wall)})")
        if ref and name != "nnU-Net v2":
            rw, rc = [t[0] for t in ref], [t[1] for t in ref]
            line += (f"\n{'':<26} ratio to nnU-Net: wall {statistics.median(wall) / statistics.median(rw):.2f}x of "
                     f"medians, {statistics.median([a / b for a, b in zip(wall, rw, strict=True)]):.2f}x median per "
                     f"round; CPU {statistics.median(cpu) / statistics.median(rc):.2f}x")
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configuration", default="3d_fullres", choices=["3d_fullres", "2d"])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--shape", default="40,48,40")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--nnunet-python", default=str(Path(__file__).resolve().parents[1] / ".venv-parity" / "bin" /
                                                       "python"),
                        help="interpreter with nnunetv2 (default: .venv-parity/bin/python of `make parity-venv`)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --work: keep the dataset and a side's results already there (re-score only)")
    parser.add_argument("--speed-rounds", type=int, default=0,
                        help="time per iteration only: this many rounds of short whole trainings of each side, "
                             "alternated (order rotated each round), medians printed; no Dice")
    parser.add_argument("--speed-iterations", type=int, default=8,
                        help="iterations of each short training of --speed-rounds (steady state: first left out)")
    parser.add_argument("--compare-src", default=None,
                        help="with --speed-rounds: also time the bundle planned with this LabelZoo source tree "
                             "(e.g. another checkout's src/, for a before/after in the same run)")
    parser.add_argument("--labelzoo-override", action="append", default=[], metavar="KEY=VALUE",
                        help="with --speed-rounds: also time the same bundle run with `--KEY VALUE` (repeatable; "
                             "e.g. num_workers=0)")
    parser.add_argument("--train-seeds", default="0",
                        help="accuracy run: training seeds, comma-separated; each side trains once per seed (LabelZoo "
                             "`--seed`, nnU-Net seeded by this script) and the mean Dice is reported as mean +- sd "
                             "over the seeds (at a small budget one run says little: see README)")
    parser.add_argument("--threads", type=int, default=None,
                        help="accuracy run: torch threads of both trainings (LabelZoo `--num_threads`, nnU-Net "
                             "`torch.set_num_threads`); default as shipped (one per core). 1 on a loaded machine "
                             "(the Dice does not depend on it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    shape = tuple(int(s) for s in args.shape.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp).resolve()
        if args.speed_rounds:
            raw, _ = build_dataset(work, args.cases, shape, args.seed)
            times = interleaved_speed(work, raw, args.configuration, args.fold, args.speed_rounds,
                                      args.speed_iterations, args.device, Path(args.nnunet_python), args.compare_src,
                                      [x for kv in args.labelzoo_override for x in ("--" + kv.split("=", 1)[0],
                                                                                    kv.split("=", 1)[1])])
            write_json_atomic(work / "speed_result.json", times)
            print_speed(times, args.configuration, args.speed_iterations)
            return
        raw = work / "nnUNet_raw" / DATASET_NAME
        if args.reuse and (raw / "dataset.json").is_file():
            names = {i: n for n, i in json.loads((raw / "dataset.json").read_text())["labels"].items()}
        else:
            raw, names = build_dataset(work, args.cases, shape, args.seed)
        seeds = [int(x) for x in args.train_seeds.split(",")]
        if len(set(seeds)) != len(seeds):
            parser.error(f"--train-seeds: repeated seed in {args.train_seeds!r}")
        threads = ["--num_threads", str(args.threads)] if args.threads else None
        bundle: Path | None = None
        lz_runs: dict[int, tuple[Path, tuple[float, float]]] = {}
        nn_runs: dict[int, tuple[Path, tuple[float, float]]] = {}
        nn_missing: str | None = None
        nn_prepared, splits = False, []
        held: list[str] = []
        bar = progress_bar(2 * len(seeds), desc="trainings (LabelZoo, nnU-Net per seed)", unit="training")
        for k in seeds:
            # one seed: LabelZoo, then nnU-Net (a run cut short still has complete pairs)
            lz_file = work / f"labelzoo_result_s{k}.json"
            if args.reuse and lz_file.is_file():
                r = json.loads(lz_file.read_text())
                lz_runs[k], held = (Path(r["predictions"]), tuple(r["per_iter"])), r["held_out"]
            else:
                bundle = bundle or plan_labelzoo(work, raw, args.configuration)
                pred, held, it = run_labelzoo(work, raw, args.configuration, args.iterations, args.fold, threads,
                                              seed=k, bundle=bundle)
                write_json_atomic(lz_file, {"predictions": str(pred), "held_out": held, "per_iter": it, "seed": k})
                lz_runs[k] = (pred, it)
            bar.update(1)
            nn_file = work / f"nnunet_result_s{k}.json"
            if args.reuse and nn_file.is_file():
                r = json.loads(nn_file.read_text())
                nn_runs[k] = (Path(r["predictions"]), (float(r["per_iter"]), float(r["cpu_per_iter"])))
            elif nn_missing is None:
                splits = splits or bundle_splits(next(p.parent.parent for p in
                                                      (work / "labelzoo").glob("*/configs/datalist.json")))
                # plan and preprocess once per invocation, before its first nnU-Net training
                nn = run_nnunet(work, args.configuration, args.iterations, args.fold, splits, args.device,
                                Path(args.nnunet_python), threads=args.threads, seed=k, prepare=not nn_prepared)
                nn_prepared = True
                if isinstance(nn, str):
                    nn_missing = nn
                else:
                    write_json_atomic(nn_file, {"predictions": str(nn[0]), "per_iter": nn[1][0],
                                                "cpu_per_iter": nn[1][1], "seed": k})
                    nn_runs[k] = nn
            bar.update(1)
            bar.set_postfix_str(f"seed {k} done")
        bar.close()
        report_accuracy(args, names, held, raw, lz_runs, nn_runs, nn_missing, work)


def _mean_sd(values: list[float]) -> str:
    """``mean +- sd (n)`` of per-seed figures (sd of the seeds, ddof 1; none for one seed)."""
    if not values:
        return "n/a"
    sd = f" +- {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.4f}{sd} (n={len(values)})"


def report_accuracy(args: argparse.Namespace, names: dict[int, str], held: list[str], raw: Path,
                    lz_runs: dict[int, tuple[Path, tuple[float, float]]],
                    nn_runs: dict[int, tuple[Path, tuple[float, float]]], nn_missing: str | None, work: Path) -> None:
    """Scores every seed's predictions of both sides with the same code; prints per seed, per class (mean over the
    seeds) and the mean Dice of each side as mean +- sd over the training seeds; writes accuracy_result.json."""
    n = len(names)
    lz = {k: score(p, raw, held, n, "_0000_seg.nii.gz") for k, (p, _) in lz_runs.items()}
    nn = {k: score(p, raw, held, n, ".nii.gz") for k, (p, _) in nn_runs.items()}

    def mean_dice(s: dict[int, tuple[float, float]]) -> float:
        return float(np.nanmean([v[0] for v in s.values()]))

    print(f"\n{args.configuration}, {args.iterations} iterations, fold {args.fold} ({len(held)} held-out cases: "
          f"{', '.join(held)}), dataset seed {args.seed}, training seeds {args.train_seeds}, device {args.device}")
    print(f"{'training seed':<14}{'LabelZoo Dice':>14}{'nnU-Net Dice':>14}")
    for k in sorted(set(lz) | set(nn)):
        a = f"{mean_dice(lz[k]):.4f}" if k in lz else "n/a"
        b = f"{mean_dice(nn[k]):.4f}" if k in nn else "n/a"
        print(f"{k:<14}{a:>14}{b:>14}")
    print(f"\nper class, mean over the seeds\n{'class':<14}{'LabelZoo Dice':>14}{'nnU-Net Dice':>14}"
          f"{'LZ HD95 mm':>12}{'nnU HD95 mm':>12}")
    per_class = {}
    for c, name in sorted(names.items())[1:]:
        cl = [float(np.nanmean([s[c][i] for s in lz.values()])) for i in (0, 1)]
        cn = [float(np.nanmean([s[c][i] for s in nn.values()])) if nn else float("nan") for i in (0, 1)]
        per_class[name] = {"labelzoo": cl, "nnunet": cn if nn else None}
        print(f"{name:<14}{cl[0]:>14.4f}{cn[0]:>14.4f}{cl[1]:>12.2f}{cn[1]:>12.2f}")
    lz_means = [mean_dice(lz[k]) for k in sorted(lz)]
    nn_means = [mean_dice(nn[k]) for k in sorted(nn)]
    print(f"\nmean Dice over the training seeds: LabelZoo {_mean_sd(lz_means)}, nnU-Net {_mean_sd(nn_means)}")
    if lz_means and nn_means:
        print(f"LabelZoo - nnU-Net: {100 * (statistics.mean(lz_means) - statistics.mean(nn_means)):+.1f} points "
              f"(goal: within 1 point)")
    write_json_atomic(work / "accuracy_result.json", {
        "configuration": args.configuration, "iterations": args.iterations, "fold": args.fold, "seed": args.seed,
        "train_seeds": sorted(set(lz) | set(nn)), "cases": args.cases, "held_out": held,
        "labelzoo_mean_dice": statistics.mean(lz_means) if lz_means else None,
        "nnunet_mean_dice": statistics.mean(nn_means) if nn_means else None,
        "per_seed": {str(k): {"labelzoo": mean_dice(lz[k]) if k in lz else None,
                              "nnunet": mean_dice(nn[k]) if k in nn else None} for k in sorted(set(lz) | set(nn))},
        "per_class": per_class})
    its = [it for _, it in lz_runs.values()]
    nits = [it for _, it in nn_runs.values()]
    print(f"time per iteration (one after the other; for a fair ratio use --speed-rounds): LabelZoo wall "
          f"{statistics.median(t[0] for t in its):.2f} s, CPU {statistics.median(t[1] for t in its):.2f} s"
          + (f"; nnU-Net wall {statistics.median(t[0] for t in nits):.2f} s, CPU "
             f"{statistics.median(t[1] for t in nits):.2f} s" if nits else f"; nnU-Net not run: {nn_missing}"))

if __name__ == "__main__":
    main()
