"""The simulator's pure parts: effort and quality metrics, label mapping, splits, summaries, the bundle copy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from labelzoo.errors import LabelZooError
from labelzoo.simulate.dataset import Case, read_dataset, split_cases
from labelzoo.simulate.loop import click_effort, click_structures, prepare_bundle, thread_env, train_split
from labelzoo.simulate.metrics import (
    apply_lookup,
    class_dice,
    correction_effort,
    curve_auc,
    hd95,
    label_lookup,
    labels_to_reach,
)
from labelzoo.simulate.report import markdown_table, plot, summarize, time_table


def test_label_lookup_matches_class_names() -> None:
    lut = label_lookup({"spleen": 1, "left kidney": 2, "Liver": 3}, {0: "background", 1: "spleen", 3: "left kidney",
                                                                       6: "liver"})
    assert lut == {0: 0, 1: 1, 2: 3, 3: 6}
    assert label_lookup({"a": 1, "b": 2}, None) == {0: 0, 1: 1, 2: 2}
    with pytest.raises(ValueError, match="'tumour'"):
        label_lookup({"tumour": 1}, {1: "liver"})
    pred = np.array([0, 1, 2, 3, 9])
    assert apply_lookup(pred, lut).tolist() == [0, 1, 3, 6, 0]


def test_correction_effort() -> None:
    truth = np.zeros((10, 10), dtype=int)
    truth[2:6, 2:6] = 1  # 16 voxels
    same = correction_effort(truth, truth.copy(), [1])
    assert same.voxels_changed == 0 and same.one_minus_dice == 0.0
    empty = correction_effort(truth, np.zeros_like(truth), [1])
    assert empty.voxels_changed == 16 and empty.one_minus_dice == 1.0 and empty.fraction_changed == 0.16
    shifted = np.zeros_like(truth)
    shifted[2:6, 3:7] = 1  # 12 of 16 overlap
    e = correction_effort(truth, shifted, [1])
    assert e.voxels_changed == 8 and e.one_minus_dice == pytest.approx(1 - 24 / 32)
    with pytest.raises(ValueError, match="shape"):
        correction_effort(truth, truth[:5], [1])
    assert class_dice(truth, truth, [1, 2]) == {1: 1.0, 2: 1.0}


def test_hd95() -> None:
    truth = np.zeros((20, 20, 20), dtype=int)
    truth[5:10, 5:10, 5:10] = 1
    moved = np.roll(truth, 2, axis=0)
    d = hd95(truth, moved, [1, 2], spacing=(1.5, 1.0, 1.0))
    assert d[1] == pytest.approx(3.0) and 2 not in d  # 2 voxels x 1.5 mm; class 2 absent from both
    assert math.isinf(hd95(truth, np.zeros_like(truth), [1])[1])


def test_curve_summaries() -> None:
    assert curve_auc([2, 4, 6], [0.2, 0.4, 0.4]) == pytest.approx((0.6 + 0.8) / 4)
    assert curve_auc([2], [0.5]) == 0.5 and math.isnan(curve_auc([], []))
    assert labels_to_reach([2, 4, 6], [0.2, 0.5, 0.7], 0.5) == 4.0
    assert labels_to_reach([2, 4], [0.2, 0.3], 0.5) is None


def _cases(n: int) -> list[Case]:
    return [Case(f"case_{i:03d}", Path(f"i{i}"), Path(f"l{i}")) for i in range(n)]


def test_split_is_fixed_for_test_and_seeded_for_initial() -> None:
    cases = _cases(12)
    a, b, c = split_cases(cases, 3, 2, seed=0), split_cases(cases, 3, 2, seed=0), split_cases(cases, 3, 2, seed=1)
    assert a == b
    assert a.test == c.test  # every seed and strategy is scored on the same cases
    assert a.initial != c.initial
    ids = [x.id for x in a.test + a.initial + a.unlabelled]
    assert sorted(ids) == sorted(x.id for x in cases) and len(a.unlabelled) == 7
    with pytest.raises(LabelZooError, match="leaves none"):
        split_cases(cases, 10, 2, 0)
    with pytest.raises(LabelZooError, match="--initial"):
        split_cases(cases, 3, 0, 0)


def test_read_dataset(tmp_path: Path) -> None:
    from labelzoo.data import build_sample_studies

    msd = build_sample_studies(tmp_path / "msd", n_images=3, n_labeled=3, shape=(16, 16, 16), layout="msd")
    data = read_dataset(msd)
    assert [c.id for c in data.cases] == ["case_000", "case_001", "case_002"]
    assert data.labels == {0: "background", 1: "spleen", 3: "left kidney", 6: "liver"}
    store = build_sample_studies(tmp_path / "store", n_images=3, n_labeled=2, shape=(16, 16, 16))
    assert [c.id for c in read_dataset(store).cases] == ["case_000", "case_001"]  # labelled ones only
    with pytest.raises(LabelZooError, match="no such folder"):
        read_dataset(tmp_path / "nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "imagesTr").mkdir()
    (tmp_path / "bad" / "dataset.json").write_text(json.dumps({"training": [{"image": "./imagesTr/x.nii.gz",
                                                                             "label": "./labelsTr/x.nii.gz"}]}))
    with pytest.raises(LabelZooError, match="does not exist"):
        read_dataset(tmp_path / "bad")


def _rows(strategy: str, seed: int, dice: list[float]) -> list[dict]:
    rows = [{"strategy": strategy, "seed": seed, "round": 0, "labels": 2, "test_dice": dice[0], "train_s": 10}]
    for i, d in enumerate(dice[1:], start=1):
        rows.append({"strategy": strategy, "seed": seed, "round": i, "labels": 2 + i, "test_dice": d,
                     "voxels_changed": 100 * i, "one_minus_dice": 0.5, "cum_voxels_changed": 100 * i * (i + 1) / 2,
                     "infer_s": 0.5, "train_s": 12})
    return rows


def test_summarize_and_report(tmp_path: Path) -> None:
    runs = {("random", 0): _rows("random", 0, [0.2, 0.4, 0.5]), ("random", 1): _rows("random", 1, [0.2, 0.3, 0.6]),
            ("boundary", 0): _rows("boundary", 0, [0.2, 0.58, 0.8])}
    s = summarize(runs)
    assert s["reference_dice"] == 0.8 and s["target_dice"] == pytest.approx(0.76)
    r, b = s["strategies"]["random"], s["strategies"]["boundary"]
    assert r["final_dice"]["mean"] == pytest.approx(0.55) and r["final_dice"]["std"] == pytest.approx(0.05)
    assert r["reached"] == "0/2" and r["labels_to_target"]["mean"] is None
    assert b["labels_to_target"]["mean"] == 4.0 and b["reached"] == "1/1"
    assert b["effort_voxels"]["mean"] == 300.0 and b["time_train_s"]["mean"] == pytest.approx(34 / 3)
    table = markdown_table(s)
    assert "| `boundary` | 0.800 |" in table and "0.550 ± 0.050" in table
    assert "| `random` |" in time_table(s)
    png = plot(runs, tmp_path / "p.png", title="t")
    assert png.stat().st_size > 1000
    assert summarize(runs, reference_dice=0.5)["strategies"]["random"]["labels_to_target"]["mean"] == 4.0


def test_prepare_bundle_saves_final_weights_and_applies_overrides(tmp_path: Path) -> None:
    src = tmp_path / "src" / "b"
    (src / "configs").mkdir(parents=True)
    (src / "models").mkdir()
    (src / "models" / "model.pt").write_bytes(b"x")
    (src / "configs" / "train.json").write_text(json.dumps({"val_interval": 5, "iterations_per_epoch": 250,
                                                             "network_def": {"filters": [32, 64]},
                                                             "train": {"handlers": [{"_target_": "X"}]}}))
    (src / "configs" / "inference.json").write_text(json.dumps({"network_def": {"filters": [32, 64]}}))
    dst = prepare_bundle(src, tmp_path / "dst", {"iterations_per_epoch": 7, "network_def#filters": [8, 16]},
                         {"network_def#filters": [8, 16]})
    train = json.loads((dst / "configs" / "train.json").read_text())
    assert train["iterations_per_epoch"] == 7 and train["network_def"]["filters"] == [8, 16]
    assert train["val_interval"] == 1_000_000
    assert train["train"]["handlers"][-1]["save_final"] is True
    assert json.loads((dst / "configs" / "inference.json").read_text())["network_def"]["filters"] == [8, 16]
    assert not (dst / "models" / "model.pt").exists()  # every run starts untrained
    (src / "configs" / "train.json").write_text(json.dumps({"train": {}}))
    with pytest.raises(LabelZooError, match="train#handlers"):
        prepare_bundle(src, tmp_path / "dst2")


def test_click_effort_counts_clicks_to_dice_90_per_structure() -> None:
    """A model that fills the whole structure once a foreground click lies inside it: 1 click per missed structure,
    0 for a structure the suggestion already has, max_clicks for one it never finds; background clicks remove."""
    truth = np.zeros((20, 20, 10), np.int64)
    truth[2:8, 2:8, 2:8] = 1  # found by the suggestion
    truth[10:16, 10:16, 2:8] = 2  # missed: one click fixes it
    truth[2:6, 12:18, 2:8] = 3  # missed: the model never finds it
    suggestion = np.where(truth == 1, 1, 0)
    suggestion[15:19, 0:4, 0:4] = 2  # plus a false blob of structure 2 that a background click removes
    calls = []

    def predict(params: dict) -> np.ndarray:  # interactive values: 1 -> 5, 2 -> 7, 3 -> 9
        calls.append(params)
        out = np.zeros_like(truth)
        for name, value, loop in (("a", 5, 1), ("b", 7, 2)):
            if any(truth[tuple(p)] == loop for p in params.get(name, [])):
                out[truth == loop] = value
        if not params.get("background") and "b" in params:
            out[15:19, 0:4, 0:4] = 7  # the false blob, until a background click
        return out

    structures = [(1, "a", 5), (2, "b", 7), (3, "c", 9)]
    assert click_effort(predict, truth, suggestion, structures, max_clicks=4) == 0 + 2 + 4
    assert all("a" not in p for p in calls)  # a structure already at Dice 0.9 costs no request
    models = {"m": {"labels": {"spleen": 1, "liver": 2}},
              "i": {"labels": {"background": 0, "Liver": 3, "spleen": 1}}}
    assert click_structures(models, "m", "i", [1, 2]) == [(1, "spleen", 1), (2, "Liver", 3)]
    with pytest.raises(LabelZooError, match="no label 'liver'"):
        click_structures({**models, "i": {"labels": {"spleen": 1}}}, "m", "i", [1, 2])
    with pytest.raises(LabelZooError, match="--click_model 'x' is not served"):
        click_structures(models, "m", "x", [1])


def test_train_split_separates_the_run_from_its_overhead() -> None:
    assert train_split(30.0, {"elapsed_s": 21.5}) == {"train_run_s": 21.5, "train_overhead_s": 8.5}
    # a clock step between the two processes never makes the overhead negative
    assert train_split(10.0, {"elapsed_s": 12.0}) == {"train_run_s": 10.0, "train_overhead_s": 0.0}
    for progress in ({}, {"elapsed_s": None}, {"elapsed_s": "3"}, {"elapsed_s": True}, {"elapsed_s": -1}):
        assert train_split(5.0, progress) == {}


def test_thread_env_caps_every_thread_pool() -> None:
    assert thread_env(None) == {}
    assert thread_env(1) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
