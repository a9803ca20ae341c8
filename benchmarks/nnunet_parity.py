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

Both predictions are scored by the same code (Dice per class; HD95 in mm with ``labelzoo.metrics``) and the
script prints a table plus the steady-state wall time per training iteration of each, measured the same way:
between the end of the first and of the last iteration, so start-up, caching and the first batch are left out.
The two trainings run one after the other: on a shared machine compare the network step with
``benchmarks/parity_network_speed.py`` too (both sides alternated in one process). Without ``nnunetv2`` the
nnU-Net rows say so. ``--reuse`` with ``--work`` re-scores a side whose results are already there.

On CPU keep the budget tiny (the default: 10 iterations); with a GPU pass ``--iterations 250 --device cuda``
or more. Run: ``python benchmarks/nnunet_parity.py [--configuration 3d_fullres] [--iterations 10]
[--cases 10] [--shape 40,48,40] [--device cpu] [--work DIR] [--nnunet-python PY] [--reuse]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from labelzoo.data import build_sample_studies
from labelzoo.io import save_nifti, write_json_atomic
from labelzoo.metrics import hd95_mm
from labelzoo.planning.transforms import num_workers

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


ITER_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*Epoch: \d+/\d+, Iter: (\d+)/(\d+)")


def steady_time_per_iteration(log: str) -> float:
    """Seconds per iteration between the first and the last ``Iter: k/N`` line of a MONAI StatsHandler log."""
    stamps = {}
    for line in log.splitlines():
        m = ITER_LINE.match(line)
        if m:
            stamps[int(m.group(2))] = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
    if len(stamps) < 2:
        raise RuntimeError("training log has fewer than two iteration lines: use --iterations >= 2")
    first, last = min(stamps), max(stamps)
    return (stamps[last] - stamps[first]).total_seconds() / (last - first)


def run_labelzoo(work: Path, raw: Path, configuration: str, iterations: int,
                 fold: int) -> tuple[Path, list[str], float]:
    """Plan, train one epoch of ``iterations``, predict the held-out fold; returns (predictions, cases, s/iter)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = work / "labelzoo"
    subprocess.run([sys.executable, "-m", "labelzoo.cli", "plan", str(raw), "--out", str(out), "--configurations",
                    configuration, "--overwrite"], check=True, env=env)
    bundle = next(p for p in out.iterdir() if p.is_dir() and (p / "configs" / "train.json").is_file())
    datalist = json.loads((bundle / "configs" / "datalist.json").read_text())["training"]
    held = [d for d in datalist if d["fold"] == fold]
    run = [sys.executable, "-m", "monai.bundle", "run", "--bundle_root", str(bundle)]
    proc = subprocess.run(run + ["--config_file", str(bundle / "configs" / "train.json"), "--fold", str(fold),
                                 "--num_epochs", "1", "--iterations_per_epoch", str(iterations), "--val_interval", "1"],
                          env=env, cwd=bundle, capture_output=True, text=True)
    (work / "labelzoo_train.log").write_text(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"LabelZoo training failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    per_iter = steady_time_per_iteration(proc.stdout + "\n" + proc.stderr)
    pred_dir = work / "labelzoo_pred"
    images = [str(raw / d["image"]) if not Path(d["image"]).is_absolute() else d["image"] for d in held]
    subprocess.run(run + ["--config_file", str(bundle / "configs" / "inference.json"), "--output_dir", str(pred_dir),
                          "--datalist", json.dumps([{"image": i} for i in images])], check=True, env=env, cwd=bundle)
    return pred_dir, [d["case_id"] for d in held], per_iter


def run_nnunet(work: Path, configuration: str, iterations: int, fold: int, splits: list[dict],
               device: str, python: Path) -> tuple[Path, float] | str:
    """nnU-Net v2 on the same data, split and budget; returns (predictions, s/iter) or why it did not run.

    nnU-Net runs with ``python`` (the parity environment of ``make parity-venv``), never in this process: its
    dependencies (numpy 2.x) differ from LabelZoo's.
    """
    probe = subprocess.run([str(python), "-c", "import nnunetv2"], capture_output=True, text=True) \
        if python.is_file() else None
    if probe is None or probe.returncode != 0:
        return f"nnunetv2 is not importable with {python} (run `make parity-venv`, or pass --nnunet-python)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"nnUNet_raw": str(work / "nnUNet_raw"), "nnUNet_preprocessed": str(work / "nnUNet_pre"),
                "nnUNet_results": str(work / "nnUNet_results"), "PYTHONUNBUFFERED": "1",
                # the same number of data-augmentation workers as the bundle's DataLoader
                "nnUNet_n_proc_DA": str(num_workers())})
    plan = ("from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import plan_and_preprocess_entry;"
            "plan_and_preprocess_entry()")
    subprocess.run([str(python), "-c", plan, "-d", str(DATASET_ID), "-c", configuration, "-np", "1",
                    "--verify_dataset_integrity"], check=True, env=env)
    write_json_atomic(work / "nnUNet_pre" / DATASET_NAME / "splits_final.json", splits)
    code = f"""
import os, torch, time, json
from batchgenerators.utilities.file_and_folder_operations import load_json, join
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
pre = join({str(work / 'nnUNet_pre')!r}, {DATASET_NAME!r})
plans, ds = load_json(join(pre, 'nnUNetPlans.json')), load_json(join(pre, 'dataset.json'))
plans['continue_training'] = False  # what nnUNetv2_train's get_trainer_from_args sets
if {device!r} == 'cpu':  # as nnUNetv2_train -device cpu
    torch.set_num_threads(os.cpu_count())
class ParityBudgetTrainer(nnUNetTrainer):
    # nnUNetTrainer records its __init__ arguments by name: keep its signature
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.iteration_ends = []
        self.num_epochs = 1
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = 1
    def train_step(self, batch):
        out = super().train_step(batch)
        self.iteration_ends.append(time.perf_counter())
        return out
t = ParityBudgetTrainer(plans, {configuration!r}, {fold}, ds, device=torch.device({device!r}))
t.run_training()
# steady state as for LabelZoo: between the first and the last iteration's end
per_iter = (t.iteration_ends[-1] - t.iteration_ends[0]) / (len(t.iteration_ends) - 1)
t.perform_actual_validation(False)
json.dump({{"per_iter": per_iter, "validation": join(t.output_folder, 'validation')}}, open('nnunet_result.json', 'w'))
"""
    subprocess.run([str(python), "-c", code], check=True, env=env, cwd=work)
    result = json.loads((work / "nnunet_result.json").read_text())
    return Path(result["validation"]), float(result["per_iter"])


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
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp).resolve()
        raw = work / "nnUNet_raw" / DATASET_NAME
        if args.reuse and (raw / "dataset.json").is_file():
            names = {i: n for n, i in json.loads((raw / "dataset.json").read_text())["labels"].items()}
        else:
            raw, names = build_dataset(work, args.cases, shape, args.seed)
        lz_file = work / "labelzoo_result.json"
        if args.reuse and lz_file.is_file():
            r = json.loads(lz_file.read_text())
            lz_pred, held, lz_iter = Path(r["predictions"]), r["held_out"], r["per_iter"]
        else:
            lz_pred, held, lz_iter = run_labelzoo(work, raw, args.configuration, args.iterations, args.fold)
            write_json_atomic(lz_file, {"predictions": str(lz_pred), "held_out": held, "per_iter": lz_iter})
        lz = score(lz_pred, raw, held, len(names), "_0000_seg.nii.gz")
        bundle_dl = json.loads(next((work / "labelzoo").glob("*/configs/datalist.json")).read_text())["training"]
        folds = sorted({d["fold"] for d in bundle_dl})
        splits = [{"train": [d["case_id"] for d in bundle_dl if d["fold"] != k],
                   "val": [d["case_id"] for d in bundle_dl if d["fold"] == k]} for k in folds]
        nn_file = work / "nnunet_result.json"
        if args.reuse and nn_file.is_file():
            r = json.loads(nn_file.read_text())
            nn = (Path(r["validation"]), float(r["per_iter"]))
        else:
            nn = run_nnunet(work, args.configuration, args.iterations, args.fold, splits, args.device,
                            Path(args.nnunet_python))
        nn_scores = score(nn[0], raw, held, len(names), ".nii.gz") if isinstance(nn, tuple) else None

        print(f"\n{args.configuration}, {args.iterations} iterations, fold {args.fold} ({len(held)} held-out cases: "
              f"{', '.join(held)}), device {args.device}")
        print(f"{'class':<14}{'LabelZoo Dice':>14}{'nnU-Net Dice':>14}{'LZ HD95 mm':>12}{'nnU HD95 mm':>12}")
        for c, name in sorted(names.items())[1:]:
            n_d, n_h = nn_scores[c] if nn_scores else (float("nan"), float("nan"))
            print(f"{name:<14}{lz[c][0]:>14.4f}{n_d:>14.4f}{lz[c][1]:>12.2f}{n_h:>12.2f}")
        lz_mean = float(np.nanmean([v[0] for v in lz.values()]))
        nn_mean = float(np.nanmean([v[0] for v in nn_scores.values()])) if nn_scores else float("nan")
        print(f"{'mean':<14}{lz_mean:>14.4f}{nn_mean:>14.4f}")
        print(f"time per iteration: LabelZoo {lz_iter:.2f} s"
              + (f", nnU-Net {nn[1]:.2f} s, ratio {lz_iter / nn[1]:.2f}x" if isinstance(nn, tuple) else
                 f"; nnU-Net not run: {nn}"))


if __name__ == "__main__":
    main()
