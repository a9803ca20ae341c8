"""multi_gpu_train.json runs for real: `torchrun --nproc_per_node=2` with the gloo backend on CPU.

Two processes train one epoch of the smoke-size UNETR under DistributedDataParallel, each validating its
share of the validation cases; rank 0 alone writes models/model.pt. About 30 s on 2 CPU cores, so it is
part of the default suite.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from labelzoo.bundle.smoke import prepare_workspace, run_workflow

REPO = Path(__file__).resolve().parents[2]
UNETR = REPO / "bundles" / "btcv_ct_unetr_segmentation"


def test_multi_gpu_train_runs_two_processes(tmp_path: Path) -> None:
    meta = json.loads((UNETR / "configs" / "metadata.json").read_text())
    ws, problems = prepare_workspace(UNETR, tmp_path, meta)
    assert problems == []
    # one training case (DistributedSampler pads it to both ranks), two validation cases (one per rank)
    overrides = json.loads(ws.override_files["multi_gpu"].read_text())
    ws.override_files["multi_gpu"].write_text(json.dumps({**overrides, "val_fraction": 0.5}))

    problems, log = run_workflow(ws, "multi_gpu", timeout=600, nproc=2,
                                 env={"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    text = log.read_text(errors="replace")
    assert problems == [], text[-3000:]
    # both ranks ran the trainer: each process' ignite engine logs its own epoch
    assert len(re.findall(r"SupervisedTrainer - INFO - Epoch\[1\] Complete", text)) == 2, text[-3000:]
    assert (ws.bundle / "models" / "model.pt").is_file()
