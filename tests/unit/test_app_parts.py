"""Pure parts of the app layer: bundle discovery, training progress records, train/validation split."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from labelzoo.discovery import find_bundles, read_bundle_info, select_bundles, uses_sigmoid
from labelzoo.errors import LabelZooError
from labelzoo.progress import TrainProgress, read_progress, update_progress

APP_DIR = Path(__file__).resolve().parents[2] / "apps" / "labelzoo"


def _bundle(root: Path, name: str, channels: int = 1, spatial=(96, 96, 96), sigmoid=False, weights=False) -> Path:
    path = root / name
    (path / "configs").mkdir(parents=True)
    meta = {"version": "0.1.0", "description": f"{name} bundle", "network_data_format": {
        "inputs": {"image": {"num_channels": channels, "spatial_shape": list(spatial)}},
        "outputs": {"pred": {"channel_def": {"0": "background", "1": "Tumour", "2": "oedema"}}}}}
    (path / "configs" / "metadata.json").write_text(json.dumps(meta))
    post = {"_target_": "Compose", "transforms": [{"_target_": "Activationsd", "keys": "pred",
                                                   "sigmoid": sigmoid, "softmax": not sigmoid}]}
    (path / "configs" / "inference.json").write_text(json.dumps({"postprocessing": post}))
    if weights:
        (path / "models").mkdir()
        (path / "models" / "model.pt").write_bytes(b"x")
    return path


def test_discovery_reads_everything_from_metadata(tmp_path):
    _bundle(tmp_path / "repo", "b_ct", weights=True)
    _bundle(tmp_path / "repo", "a_mri", channels=4, sigmoid=True)
    _bundle(tmp_path / "extra", "c_xray", spatial=(256, 256))
    found = find_bundles([tmp_path / "repo", tmp_path / "extra" / "c_xray"])
    assert list(found) == ["a_mri", "b_ct", "c_xray"]
    mri, ct, xray = (read_bundle_info(found[n], n) for n in found)
    assert (mri.channels, mri.spatial_dims, mri.multilabel, mri.weights) == (4, 3, True, None)
    assert (ct.channels, ct.multilabel, ct.weights.name) == (1, False, "model.pt")
    assert xray.spatial_dims == 2 and xray.labels == {"tumour": 1, "oedema": 2}
    assert not xray.has_train and xray.has_infer


def test_extra_folder_replaces_a_repository_bundle(tmp_path):
    _bundle(tmp_path / "repo", "b_ct")
    copy = _bundle(tmp_path / "tmp", "b_ct", channels=2)
    assert find_bundles([tmp_path / "repo", tmp_path / "tmp"])["b_ct"] == copy.resolve()


def test_select_bundles_and_errors(tmp_path):
    found = {"a": Path("a"), "b": Path("b")}
    assert select_bundles(found, "all") == found
    assert list(select_bundles(found, "b")) == ["b"]
    assert list(select_bundles(found, "a+b")) == ["a", "b"]
    with pytest.raises(LabelZooError, match="no bundle named 'zz'; available: a, b"):
        select_bundles(found, "zz")
    with pytest.raises(LabelZooError, match="does not exist"):
        find_bundles([tmp_path / "nope"])


def test_uses_sigmoid():
    assert uses_sigmoid({"postprocessing": {"transforms": [{"_target_": "Activationsd", "sigmoid": True}]}})
    assert not uses_sigmoid({"postprocessing": [{"_target_": "Activationsd", "softmax": True}]})


def test_progress_handler_records_epochs_loss_and_best_metric(tmp_path):
    path = tmp_path / "models" / "progress.json"
    train, val = TrainProgress(str(path)), TrainProgress(str(path), phase="validate")
    trainer = SimpleNamespace(state=SimpleNamespace(max_epochs=2, epoch=0, epoch_length=2, output=None))
    evaluator = SimpleNamespace(state=SimpleNamespace(metrics={}, key_metric_name="val_mean_dice", best_metric=-1,
                                                      best_metric_epoch=-1, epoch=1))
    train.started(trainer)
    for epoch, (losses, dice) in enumerate([([1.0, 0.5], 0.2), ([0.25, 0.25], 0.1)], start=1):
        for loss in losses:
            trainer.state.output = [{"loss": loss}]
            train.iteration_completed(trainer)
        evaluator.state.epoch, evaluator.state.metrics = epoch, {"val_mean_dice": dice}
        val.validated(evaluator)
        trainer.state.epoch = epoch
        train.epoch_completed(trainer)
    train.completed(trainer)
    p = read_progress(path)
    assert p["status"] == "finished" and p["epoch"] == 2 and p["max_epochs"] == 2
    assert p["loss"] == pytest.approx(0.25) and p["metric"] == pytest.approx(0.1)
    assert p["best_metric"] == pytest.approx(0.2) and p["best_metric_epoch"] == 1
    assert p["elapsed_s"] >= 0
    with pytest.raises(ValueError, match="phase"):
        TrainProgress(str(path), phase="test")
    assert read_progress(tmp_path / "missing.json") == {}
    assert update_progress(path, status="stopped")["status"] == "stopped"


@pytest.fixture
def app_lib():
    sys.path.insert(0, str(APP_DIR))
    try:
        import lib.train

        yield lib
    finally:
        sys.path.remove(str(APP_DIR))


def test_split_datalist_and_flags(app_lib):
    from lib.train import split_datalist, truthy

    items = [{"image": f"i{n}"} for n in range(5)]
    train, val = split_datalist(items, 0.2)
    assert [d["image"] for d in val] == ["i4"] and len(train) == 4
    assert split_datalist(items[:1], 0.2) == (items[:1], items[:1])
    assert split_datalist(items, 0) == (items, [])
    assert split_datalist(items, -1) == (items, None)
    assert truthy("false") is False and truthy(True) and truthy(["true"]) and not truthy(0)


def test_multi_gpu_failure_is_raised(app_lib):
    from lib.train import LabelZooTrainTask

    task = LabelZooTrainTask.__new__(LabelZooTrainTask)
    with pytest.raises(RuntimeError, match="exited with code 3"):
        task._run_command([sys.executable, "-c", "raise SystemExit(3)"], None)
