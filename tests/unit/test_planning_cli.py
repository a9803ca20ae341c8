"""`labelzoo plan ...` command routing and the stage commands, in-process (cheap)."""

from __future__ import annotations

import json
from pathlib import Path

from labelzoo.cli import _route_default_subcommand, main


def test_plan_dataset_routes_to_run() -> None:
    assert _route_default_subcommand(["plan", "data/x", "--out", "y"]) == ["plan", "run", "data/x", "--out", "y"]
    assert _route_default_subcommand(["plan", "fingerprint", "data/x"]) == ["plan", "fingerprint", "data/x"]
    assert _route_default_subcommand(["plan", "--help"]) == ["plan", "--help"]
    assert _route_default_subcommand(["serve", "x"]) == ["serve", "x"]


def test_fingerprint_then_plans_then_show(msd_dataset: Path, tmp_path: Path, capsys) -> None:
    fp = tmp_path / "fp.json"
    assert main(["plan", "fingerprint", str(msd_dataset), "--out", str(fp)]) == 0
    assert json.loads(fp.read_text())["num_training"] == 3
    plans = tmp_path / "plans.json"
    assert main(["plan", "plans", str(fp), "--out", str(plans), "--gpu_memory_gb", "4"]) == 0
    assert json.loads(plans.read_text())["gpu_memory_gb"] == 4.0
    capsys.readouterr()
    assert main(["plan", "show", str(plans)]) == 0
    out = capsys.readouterr().out
    assert "3d_fullres" in out and "[48, 48, 32]" in out


def test_bad_arguments_are_one_line_errors(msd_dataset: Path, tmp_path: Path, capsys) -> None:
    assert main(["plan", "plans", str(tmp_path / "missing.json")]) == 2
    assert "labelzoo: error:" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    assert main(["plan", str(msd_dataset), "--out", str(tmp_path / "out")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["plan", str(msd_dataset), "--out", str(tmp_path / "o2"), "--gpu_memory_gb", "0"]) == 2
    assert "gpu_memory_gb" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    assert main(["train-cv", str(tmp_path)]) == 2
    assert "not a bundle made by `labelzoo plan`" in capsys.readouterr().err
