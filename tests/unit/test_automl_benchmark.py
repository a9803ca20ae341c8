"""The T-AutoML evidence script runs end to end (tiny settings) and writes its rank plot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_quick_run_prints_figures_and_saves_the_plot(tmp_path):
    png = tmp_path / "rank.png"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "automl_predictor_vs_random.py"), "--quick",
                           "--plot", str(png)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mean best Dice: random" in proc.stdout and "ratio guided/random" in proc.stdout
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
