"""multi_gpu_train.json runs for real: ``torchrun --nproc_per_node=2`` with the gloo backend on CPU.

Every bundle's multi-GPU config comes from :func:`labelzoo.bundle.emit.multi_gpu_train_config`. Each run
here trains **two epochs** (so DDP sees a second iteration: MONAI 1.5's UNETR used to crash there with
unused cross-attention parameters) and validates **once**, on both ranks (a rank that skipped validation
left the other waiting in the metric gather: the old BraTS config). UNETR runs in the default suite
(about 15-40 s on 2 CPU cores); the other bundles (BraTS, 2D lung, a planner-emitted and a search-emitted
bundle) and the README's two-node command (``torchrun --nnodes 2 --node_rank R --master_addr ...`` started
twice on loopback) are ``slow``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from labelzoo.bundle.emit import multi_gpu_train_for
from labelzoo.bundle.smoke import prepare_workspace, run_workflow
from labelzoo.distributed.ddp import freeze_unused_cross_attention, rank_handlers
from labelzoo.progress import TrainProgress

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p for p in (REPO / "bundles").iterdir() if (p / "configs" / "train.json").is_file())
UNETR = REPO / "bundles" / "btcv_ct_unetr_segmentation"
SEARCH_VECTOR = [0, 2, 1, -1, -1, 1, 1, 0, 0, -1, 2, 0, 2, 1, 0] + [1, 0, 0, 1, 1, 1, 1, 1, 2, 3]


# ----------------------------------------------------------------------------------------------------------
# the config and its helpers
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_committed_multi_gpu_config_is_the_generated_one(bundle: Path) -> None:
    train = json.loads((bundle / "configs" / "train.json").read_text())
    committed = json.loads((bundle / "configs" / "multi_gpu_train.json").read_text())
    assert committed == multi_gpu_train_for(train), (
        f"{bundle.name}/configs/multi_gpu_train.json differs from labelzoo.bundle.emit.multi_gpu_train_for: "
        "regenerate it with labelzoo.bundle.emit.write_multi_gpu_train")


def test_rank_handlers_select_by_type_not_position() -> None:
    from monai.handlers import (
        CheckpointLoader,
        CheckpointSaver,
        LrScheduleHandler,
        MetricsSaver,
        StatsHandler,
        TensorBoardStatsHandler,
        ValidationHandler,
    )

    # the BraTS order (scheduler first): the old `handlers[:1]` kept the scheduler and dropped validation
    train = [LrScheduleHandler.__new__(LrScheduleHandler), ValidationHandler.__new__(ValidationHandler),
             StatsHandler.__new__(StatsHandler), TensorBoardStatsHandler.__new__(TensorBoardStatsHandler)]
    assert [type(h) for h in rank_handlers(train, rank=1)] == [LrScheduleHandler, ValidationHandler]
    assert rank_handlers(train, rank=0) == train
    val = [StatsHandler.__new__(StatsHandler), MetricsSaver.__new__(MetricsSaver),
           CheckpointSaver.__new__(CheckpointSaver)]
    assert [type(h) for h in rank_handlers(val, rank=1)] == [MetricsSaver]
    assert rank_handlers(None, rank=1) == []
    # MONAI Label's checkpoint loader must load on every rank; the app's progress file has one writer
    app = [CheckpointLoader.__new__(CheckpointLoader), TrainProgress.__new__(TrainProgress)]
    assert [type(h) for h in rank_handlers(app, rank=1)] == [CheckpointLoader]


def test_ddp_ready_freezes_unetr_unused_cross_attention() -> None:
    import torch
    from monai.networks.nets import UNETR

    net = UNETR(in_channels=1, out_channels=3, img_size=(32, 32, 32), feature_size=8, hidden_size=48, mlp_dim=96,
                num_heads=4)
    x = torch.rand(1, 1, 32, 32, 32)
    net(x).sum().backward()
    no_grad = {n for n, p in net.named_parameters() if p.grad is None}
    assert no_grad and all(".cross_attn." in n or ".norm_cross_attn." in n for n in no_grad)
    frozen = freeze_unused_cross_attention(net)
    assert frozen == sum(p.numel() for n, p in net.named_parameters() if n in no_grad)
    assert {n for n, p in net.named_parameters() if not p.requires_grad} == no_grad
    assert set(net.state_dict()) >= no_grad  # still saved: checkpoints load into the plain UNETR
    assert freeze_unused_cross_attention(torch.nn.Conv3d(1, 1, 3)) == 0


# ----------------------------------------------------------------------------------------------------------
# 2-rank runs
# ----------------------------------------------------------------------------------------------------------


def _two_epochs_one_validation(bundle: Path) -> dict:
    """Override ids that make ``train.json`` train 2 epochs and validate at the end of the second only."""
    train = json.loads((bundle / "configs" / "train.json").read_text())
    out: dict = {}
    epochs = train["train"]["trainer"]["max_epochs"]
    out[epochs[1:] if isinstance(epochs, str) and epochs.startswith("@") else "train#trainer#max_epochs"] = 2
    validation = [h for h in train["train"]["handlers"] if h.get("_target_") == "ValidationHandler"]
    assert len(validation) == 1, f"{bundle.name}: expected one ValidationHandler in train#handlers"
    interval = validation[0]["interval"]
    assert isinstance(interval, str) and interval.startswith("@"), f"{bundle.name}: interval is not a reference"
    out[interval[1:]] = 2
    return out


def _workspace(bundle: Path, workdir: Path, extra: dict | None):
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    ws, problems = prepare_workspace(bundle, workdir, meta)
    assert problems == []
    overrides = json.loads(ws.override_files["multi_gpu"].read_text())
    overrides.update(_two_epochs_one_validation(ws.bundle))
    overrides.update(extra or {})
    ws.override_files["multi_gpu"].write_text(json.dumps(overrides))
    return ws


def _check_log(text: str, ranks: int) -> None:
    # every rank trained the second epoch and validated exactly once
    # (the evaluator's epoch is the trainer's: one "run complete" per validation)
    assert len(re.findall(r"SupervisedTrainer - INFO - Epoch\[2\] Complete", text)) == ranks, text[-4000:]
    assert len(re.findall(r"SupervisedEvaluator - INFO - Engine run complete", text)) == ranks, text[-4000:]


def run_two_ranks(bundle: Path, workdir: Path, extra: dict | None = None) -> str:
    """Train ``bundle`` (smoke size) with 2 ranks for 2 epochs and 1 validation; return the log."""
    ws = _workspace(bundle, workdir, extra)
    problems, log = run_workflow(ws, "multi_gpu", timeout=600, nproc=2,
                                 env={"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    text = log.read_text(errors="replace")
    assert problems == [], text[-4000:]
    # both ranks trained the second epoch and validated exactly once
    assert len(re.findall(r"SupervisedTrainer - INFO - Epoch\[2\] Complete", text)) == 2, text[-4000:]
    # (the evaluator's epoch is the trainer's: one "run complete" per validation)
    assert len(re.findall(r"SupervisedEvaluator - INFO - Engine run complete", text)) == 2, text[-4000:]
    assert (ws.bundle / "models" / "model.pt").is_file(), "rank 0 did not save the checkpoint"
    return text


def test_unetr_trains_two_iterations_on_two_ranks(tmp_path: Path) -> None:
    # two validation cases, one per rank
    text = run_two_ranks(UNETR, tmp_path, {"val_fraction": 0.5})
    assert "froze" in text and "cross-attention" in text


@pytest.mark.slow
def test_two_nodes_one_process_each(tmp_path: Path, free_port: int) -> None:
    """The README's multi-node command: ``torchrun --nnodes 2 --node_rank R --master_addr ... --master_port ...``
    started twice (two "machines" on loopback), one process each."""
    ws = _workspace(REPO / "bundles" / "lung_xray_unetplusplus_segmentation", tmp_path, {"val_fraction": 0.5})
    tail = ws.command("multi_gpu")[2:]  # after `python -m`: monai.bundle run ...
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    procs, logs, files = [], [tmp_path / "node0.log", tmp_path / "node1.log"], []
    try:
        for rank, log in enumerate(logs):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                   "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(free_port), "-m",
                   *tail]
            files.append(open(log, "w"))  # closed below
            procs.append(subprocess.Popen(cmd, stdout=files[-1], stderr=subprocess.STDOUT, env=env, cwd=tmp_path))
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for f in files:
            f.close()
    texts = [log.read_text(errors="replace") for log in logs]
    assert codes == [0, 0], "\n".join(t[-3000:] for t in texts)
    for text in texts:
        _check_log(text, 1)
    assert (ws.bundle / "models" / "model.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["brats_mri_axialattention_segmentation", "lung_xray_unetplusplus_segmentation"])
def test_repo_bundle_trains_on_two_ranks(name: str, tmp_path: Path) -> None:
    # at least one validation case per rank (the validation sampler does not pad)
    run_two_ranks(REPO / "bundles" / name, tmp_path, {"val_fraction": 0.5})


@pytest.mark.slow
def test_planned_bundle_trains_on_two_ranks(msd_dataset: Path, tmp_path: Path) -> None:
    from labelzoo.planning.emit import emit_bundles
    from labelzoo.planning.fingerprint import extract_fingerprint
    from labelzoo.planning.planner import ExperimentPlanner

    fp = extract_fingerprint(msd_dataset)
    plans = ExperimentPlanner().plan(fp)
    (bundle,) = emit_bundles(plans, fp, tmp_path / "planned", msd_dataset, configurations=["3d_fullres"])
    # validate on two cases (one per rank; the tiny dataset's fold 0 holds one)
    run_two_ranks(bundle, tmp_path / "run", {"val_datalist": "$@datalist[:2]"})


@pytest.mark.slow
def test_searched_bundle_trains_on_two_ranks(tmp_path: Path) -> None:
    from labelzoo.automl.bundle import emit_bundle
    from labelzoo.automl.train import read_msd_dataset
    from labelzoo.data import build_sample_studies

    ds = build_sample_studies(tmp_path / "ds", n_images=4, n_labeled=4, shape=(32, 32, 32), layout="msd")
    info = read_msd_dataset(ds)
    bundle = emit_bundle(tmp_path / "found" / "msd_ct_tautoml_segmentation", SEARCH_VECTOR, info, [32, 32, 32], 8,
                         dice=0.1)
    run_two_ranks(bundle, tmp_path / "run", {"num_val": 2})
