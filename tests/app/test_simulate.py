"""``labelzoo simulate`` end to end: two rounds of the annotation loop against a live LabelZoo server on CPU.

The simulator starts the real server (``labelzoo serve`` in a subprocess), uploads the pool, and plays
next_sample -> infer -> save_label -> train -> test scoring through ``MONAILabelClient``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from labelzoo.cli import main
from labelzoo.data import build_sample_studies
from labelzoo.planning.emit import emit_bundles
from labelzoo.planning.fingerprint import extract_fingerprint
from labelzoo.planning.planner import ExperimentPlanner

SMALL = {"network_def#filters": [4, 8, 16, 32]}


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 6-case synthetic CT dataset (BTCV label values 1, 3, 6) and a 3D bundle planned on it (predicts 1, 2, 3)."""
    root = tmp_path_factory.mktemp("sim")
    data = build_sample_studies(root / "msd", n_images=6, n_labeled=6, shape=(32, 32, 24), seed=3, layout="msd")
    fp = extract_fingerprint(data)
    (bundle,) = emit_bundles(ExperimentPlanner().plan(fp), fp, root / "planned", data, configurations=["3d_fullres"])
    return data, bundle


@pytest.mark.server
def test_two_rounds_against_a_live_server(planned: tuple[Path, Path], tmp_path: Path) -> None:
    data, bundle = planned
    out = tmp_path / "out"
    code = main(["simulate", str(data), str(bundle), "--out", str(out), "--strategies", "boundary", "--seeds", "0",
                 "--initial", "1", "--budget", "3", "--train_every", "2", "--n_test", "2", "--epochs", "1",
                 "--train_overrides", json.dumps({"iterations_per_epoch": 2, **SMALL}),
                 "--infer_overrides", json.dumps(SMALL), "--conf", "epistemic_samples=1", "--threads", "1",
                 "--click_model", "abdomen_ct_dynunet_interactive_annotation", "--max_clicks", "2"])
    assert code == 0
    rows = list(csv.DictReader((out / "boundary-seed0.csv").open()))
    assert [int(r["round"]) for r in rows] == [0, 1, 2] and [int(r["labels"]) for r in rows] == [1, 2, 3]
    # the model was trained and scored on the held-out cases after the initial label and after 2 new ones
    assert rows[0]["test_dice"] and rows[2]["test_dice"] and not rows[1]["test_dice"]
    assert 0.0 <= float(rows[2]["test_dice"]) <= 1.0
    for r in (rows[0], rows[2]):  # a training's wall time = the task's own run + its process start / exit
        run, overhead = float(r["train_run_s"]), float(r["train_overhead_s"])
        assert run > 0 and overhead >= 0 and run + overhead == pytest.approx(float(r["train_s"]), abs=0.01)
    images = [r["image"] for r in rows[1:]]
    assert len(set(images)) == 2 and all(i.startswith("case_") for i in images)
    for r in rows[1:]:
        assert int(r["voxels_changed"]) > 0 and 0.0 <= float(r["one_minus_dice"]) <= 1.0
        assert float(r["infer_s"]) > 0 and r["slices"]  # boundary answers name the slices to annotate first
        # clicks to Dice 0.9 through the served interactive bundle (untrained here): 0..2 per structure
        assert 0 <= int(r["clicks"]) <= 3 * 2 and float(r["clicks_s"]) > 0
    assert int(rows[2]["cum_clicks"]) == sum(int(r["clicks"]) for r in rows[1:])
    assert int(rows[2]["cum_voxels_changed"]) == sum(int(r["voxels_changed"]) for r in rows[1:])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategies"]["boundary"]["final_dice"]["n"] == 1
    assert summary["strategies"]["boundary"]["effort_clicks"]["mean"] == int(rows[2]["cum_clicks"])
    assert (out / "simulation.png").stat().st_size > 1000
    assert "| `boundary` |" in (out / "summary.md").read_text()
    assert "clicks to Dice 0.9" in (out / "summary.md").read_text()
    # the held-out cases never entered the datastore: 1 initial + 3 to annotate
    store = json.loads((out / "boundary-seed0" / "studies" / "datastore_v2.json").read_text())
    assert len(store["objects"]) == 4


@pytest.mark.server
def test_a_slice_level_round_trains_on_the_annotated_slices(planned: tuple[Path, Path], tmp_path: Path) -> None:
    """boundary_slices asks for 2 slices; the annotator paints those; the server trains with the rest ignored."""
    data, bundle = planned
    out = tmp_path / "out"
    code = main(["simulate", str(data), str(bundle), "--out", str(out), "--strategies", "boundary_slices",
                 "--seeds", "1", "--initial", "1", "--budget", "2", "--train_every", "1", "--n_test", "2",
                 "--epochs", "1", "--strategy_options", json.dumps({"n_slices": 2, "slice_gap": 2}),
                 "--train_overrides", json.dumps({"iterations_per_epoch": 2, **SMALL}),
                 "--infer_overrides", json.dumps(SMALL), "--conf", "epistemic_samples=1"])
    assert code == 0
    rows = list(csv.DictReader((out / "boundary_slices-seed1.csv").open()))
    assert [int(r["labels"]) for r in rows] == [1, 2]
    query = rows[1]
    slices = [int(s) for s in query["slices"].split()]
    assert query["partial"] == "True" and len(slices) == 2 and abs(slices[0] - slices[1]) >= 2
    assert all(0 <= s < 24 for s in slices)  # the image file's grid (24 slices)
    assert int(query["annotated_slices"]) == 2 and int(query["annotated_voxels"]) == 2 * 32 * 32
    assert int(query["cum_annotated_slices"]) == 24 + 2  # the initial image counts whole
    assert query["test_dice"] and 0.0 <= float(query["test_dice"]) <= 1.0  # trained on the partial label
    assert rows[0]["partial_labels"] == "0" and query["partial_labels"] == "1"  # as the server reported
    store = json.loads((out / "boundary_slices-seed1" / "studies" / "datastore_v2.json").read_text())
    info = store["objects"][query["image"]]["labels"]["final"]["info"]
    assert info["annotated_slices"] == {"axis": 2, "slices": slices}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategies"]["boundary_slices"]["annotated_slices"]["mean"] == 26


def test_bad_arguments_name_the_parameter(planned: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    data, bundle = planned
    assert main(["simulate", str(tmp_path / "nope"), str(bundle), "--out", str(tmp_path / "o")]) != 0
    assert "no such folder" in capsys.readouterr().err
    assert main(["simulate", str(data), str(tmp_path / "nobundle"), "--out", str(tmp_path / "o")]) != 0
    assert "--model" in capsys.readouterr().err
    assert main(["simulate", str(data), str(bundle), "--budget", "1", "--initial", "2"]) != 0
    assert "--budget" in capsys.readouterr().err
    assert main(["simulate", str(data), str(bundle), "--n_test", "5", "--out", str(tmp_path / "o2")]) != 0
    assert "leaves none" in capsys.readouterr().err
    assert main(["simulate", str(data), str(bundle), "--strategies", "a,b", "--server", "http://127.0.0.1:1"]) != 0
    assert "--server" in capsys.readouterr().err
    assert main(["simulate", str(data), str(bundle), "--threads", "0", "--out", str(tmp_path / "o5")]) != 0
    assert "--threads" in capsys.readouterr().err
    assert main(["simulate", str(data), str(bundle), "--strategy_options", '{"n_slices": 0}',
                 "--out", str(tmp_path / "o3")]) != 0
    assert "n_slices" in capsys.readouterr().err
    assert main(["simulate", str(data), str(bundle), "--click_model", str(bundle), "--out", str(tmp_path / "o4")]) != 0
    err = capsys.readouterr().err
    assert "--click_model" in err and "not an interactive bundle" in err
