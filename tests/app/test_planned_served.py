"""The app serves planner-made bundles like any other: `--conf bundles=<planned folder>`, real server and client."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import pytest

from labelzoo.planning.emit import emit_bundles
from labelzoo.planning.fingerprint import extract_fingerprint
from labelzoo.planning.planner import ExperimentPlanner


@pytest.mark.server
def test_planned_bundle_is_served_and_infers(msd_dataset: Path, sample_studies: Path, server_factory,
                                             tmp_path: Path) -> None:
    fp = extract_fingerprint(msd_dataset)
    planned = tmp_path / "planned"
    (bundle,) = emit_bundles(ExperimentPlanner().plan(fp), fp, planned, msd_dataset, configurations=["3d_fullres"])
    server = server_factory(sample_studies, conf=f"models={bundle.name},bundles={planned},skip_scoring=true")
    client = server.client()
    model = client.info()["models"][bundle.name]
    assert model["labels"] == {"spleen": 1, "left kidney": 2, "liver": 3} and model["dimension"] == 3
    label_file, params = client.infer(bundle.name, "case_000", {})
    image = nib.load(sample_studies / "case_000.nii.gz")
    pred = nib.load(label_file)
    assert pred.shape == image.shape == (64, 64, 48)
    assert set(pred.get_fdata().ravel().astype(int).tolist()) <= {0, 1, 2, 3}


@pytest.mark.slow
@pytest.mark.server
def test_planned_bundle_trains_in_the_app(msd_dataset: Path, sample_studies: Path, server_factory,
                                          tmp_path: Path) -> None:
    """MONAI Label's bundle train task runs a planner-made train.json (1 epoch) and the new weights serve."""
    import json
    import time

    fp = extract_fingerprint(msd_dataset)
    planned = tmp_path / "planned"
    (bundle,) = emit_bundles(ExperimentPlanner().plan(fp), fp, planned, msd_dataset, configurations=["3d_fullres"])
    train = json.loads((bundle / "configs" / "train.json").read_text())
    train.update({"iterations_per_epoch": 2, "num_workers": 0, "cache_rate": 0.0, "val_interval": 1})
    (bundle / "configs" / "train.json").write_text(json.dumps(train, indent=4))
    server = server_factory(sample_studies, conf=f"models={bundle.name},bundles={planned},skip_scoring=true")
    client = server.client()
    client.train_start(bundle.name, {"max_epochs": 1, "val_split": 0.5, "pretrained": False, "multi_gpu": False})
    deadline = time.monotonic() + 600
    while True:
        task = client.train_status()
        if task.get("status") in ("DONE", "ERROR", "STOPPED"):
            break
        assert time.monotonic() < deadline, f"training did not finish: {task}\n{server.log_text()[-3000:]}"
        time.sleep(3)
    assert task["status"] == "DONE", f"{task}\n{server.log_text()[-3000:]}"
    assert (bundle / "models" / "model.pt").is_file()
    label_file, _ = client.infer(bundle.name, "case_001", {})
    assert nib.load(label_file).shape == (64, 64, 48)
