"""End to end: `labelzoo plan` on a tiny synthetic MSD dataset -> bundle -> 1-epoch training -> inference,
each step a real subprocess (`labelzoo` and `python -m monai.bundle run`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_plan_train_infer(msd_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from labelzoo.cli import main

    out = tmp_path / "planned"
    assert main(["plan", str(msd_dataset), "--out", str(out), "--configurations", "3d_fullres"]) == 0
    err = capsys.readouterr().err
    assert "1/3 fingerprint" in err and "3/3 emit bundles" in err  # the progress display
    bundle = out / "labelzoosyntheticct_ct_nnunet3dfullres_segmentation"
    assert (out / "plans.json").is_file() and (out / "fingerprint.json").is_file()
    assert bundle.is_dir()

    bundle_run = [sys.executable, "-m", "monai.bundle", "run", "--bundle_root", str(bundle)]
    _run(bundle_run + ["--config_file", str(bundle / "configs" / "train.json"), "--num_epochs", "1",
                       "--iterations_per_epoch", "1", "--val_interval", "1", "--num_workers", "0"], cwd=bundle)
    assert (bundle / "models" / "model.pt").is_file()
    # evaluate: Dice and HD95 in mm (labelzoo.metrics.HD95Metric) saved per case
    configs = f"['{bundle / 'configs' / 'train.json'}','{bundle / 'configs' / 'evaluate.json'}']"
    _run(bundle_run + ["--config_file", configs, "--num_workers", "0"], cwd=bundle)
    metrics = (bundle / "eval" / "metrics.csv").read_text()
    assert "val_mean_dice" in metrics and "val_hd95" in metrics and (bundle / "eval" / "val_hd95_raw.csv").is_file()

    _run(bundle_run + ["--config_file", str(bundle / "configs" / "inference.json")], cwd=bundle)
    pred_file = bundle / "eval" / "case_003_seg.nii.gz"
    image = nib.load(msd_dataset / "imagesTs" / "case_003.nii.gz")
    pred = nib.load(pred_file)
    assert pred.shape == image.shape and np.allclose(pred.affine, image.affine)
    assert set(np.unique(np.asanyarray(pred.dataobj)).tolist()) <= {0, 1, 2, 3}  # channel_def class indices


def test_plan_fingerprint_cli_reports_bad_cases(msd_dataset: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(msd_dataset, root)
    (root / "labelsTr" / "case_001.nii.gz").unlink()
    (root / "imagesTr" / "case_002.nii.gz").unlink()
    proc = subprocess.run([sys.executable, "-m", "labelzoo.cli", "plan", "fingerprint", str(root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "labelzoo: error: dataset" in proc.stderr and "Traceback" not in proc.stderr
    assert "case_001: label file labelsTr/case_001.nii.gz does not exist" in proc.stderr
    assert "case_002: image file imagesTr/case_002.nii.gz does not exist" in proc.stderr


@pytest.mark.slow
def test_planned_bundles_pass_verify_with_runs(msd_dataset: Path, tmp_path: Path) -> None:
    """`labelzoo bundle verify` with its real runs (train, evaluate, inference on its own synthetic data)."""
    from labelzoo.bundle.verify import format_report, verify_bundle

    out = tmp_path / "planned"
    _run([sys.executable, "-m", "labelzoo.cli", "plan", str(msd_dataset), "--out", str(out)])
    for bundle in sorted(p for p in out.iterdir() if p.is_dir()):
        problems = verify_bundle(bundle, run=True, workdir=tmp_path / "verify" / bundle.name)
        assert not problems, format_report(bundle, problems)


@pytest.mark.slow
def test_plan_train_infer_2d(msd_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "planned"
    _run([sys.executable, "-m", "labelzoo.cli", "plan", str(msd_dataset), "--out", str(out),
          "--configurations", "2d"])
    bundle = out / "labelzoosyntheticct_ct_nnunet2d_segmentation"
    bundle_run = [sys.executable, "-m", "monai.bundle", "run", "--bundle_root", str(bundle)]
    _run(bundle_run + ["--config_file", str(bundle / "configs" / "train.json"), "--num_epochs", "1",
                       "--iterations_per_epoch", "1", "--val_interval", "1", "--num_workers", "0"], cwd=bundle)
    _run(bundle_run + ["--config_file", str(bundle / "configs" / "inference.json")], cwd=bundle)
    assert (bundle / "eval" / "case_003_seg.nii.gz").is_file()


@pytest.mark.slow
def test_train_cv_find_best_serves_best(msd_dataset: Path, tmp_path: Path) -> None:
    """plan -> train-cv (2 folds, both configurations) -> find-best -> inference with the chosen bundle."""
    import json

    out = tmp_path / "planned"
    _run([sys.executable, "-m", "labelzoo.cli", "plan", str(msd_dataset), "--out", str(out)])
    for bundle in sorted(p for p in out.iterdir() if p.is_dir()):
        _run([sys.executable, "-m", "labelzoo.cli", "train-cv", str(bundle), "--folds", "2", "--num_epochs", "1",
              "--iterations_per_epoch", "1", "--val_interval", "1", "--num_workers", "0"], timeout=900)
        summary = json.loads((bundle / "cv" / "summary.json").read_text())
        assert len(summary["cases"]) == 3 and {c["fold"] for c in summary["cases"].values()} == {0, 1}
        assert all((bundle / "cv" / "predictions" / f"{c}_seg.nii.gz").is_file() for c in summary["cases"])
    _run([sys.executable, "-m", "labelzoo.cli", "find-best", str(out)])
    result = json.loads((out / "find_best.json").read_text())
    assert {"2d", "3d_fullres", "ensemble__2d__3d_fullres"} == set(result["scores"])
    best = out / result["served_bundle"]
    assert (best / "models" / "model.pt").is_file()
    _run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(best / "configs" / "inference.json"),
          "--bundle_root", str(best)], cwd=best)
    assert (best / "eval" / "case_003_seg.nii.gz").is_file()


@pytest.mark.slow
def test_cascade_bundle_passes_verify_with_runs(msd_dataset: Path, tmp_path: Path) -> None:
    """A cascade stage-2 bundle (forced on the tiny data) trains, evaluates and infers under verify."""
    from labelzoo.bundle.verify import format_report, verify_bundle
    from labelzoo.planning.emit import emit_bundles
    from labelzoo.planning.fingerprint import extract_fingerprint
    from labelzoo.planning.planner import ExperimentPlanner

    fp = extract_fingerprint(msd_dataset)
    plans = ExperimentPlanner().plan(fp)
    cfg = plans["configurations"]["3d_fullres"]
    plans["configurations"]["3d_lowres"] = {**cfg, "next_stage": "3d_cascade_fullres"}
    plans["configurations"]["3d_cascade_fullres"] = {**cfg, "previous_stage": "3d_lowres"}
    (bundle,) = emit_bundles(plans, fp, tmp_path / "planned", msd_dataset, configurations=["3d_cascade_fullres"])
    problems = verify_bundle(bundle, run=True, workdir=tmp_path / "verify")
    assert not problems, format_report(bundle, problems)
