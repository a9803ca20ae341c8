"""Summaries of simulation runs: per-strategy learning-curve figures, the round-time split, the plot.

Pure functions over the rows a run writes (plain dicts), so the figures are unit-tested on fixed numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelzoo.simulate.metrics import curve_auc, labels_to_reach

TIME_KEYS = ("score_s", "next_s", "infer_s", "save_s", "train_s", "train_run_s", "train_overhead_s", "eval_s",
             "rescored_s")


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def curve(rows: Iterable[dict[str, Any]], x: str = "labels") -> tuple[list[float], list[float]]:
    """(``x``, test Dice) of the rows where the model was scored, in ``x`` order (``x``: labels, or the
    cumulative annotated slices / voxels)."""
    pts = sorted((float(r[x]), float(r["test_dice"])) for r in rows
                 if _num(r.get("test_dice")) is not None and _num(r.get(x)) is not None)
    return [p[0] for p in pts], [p[1] for p in pts]


def split_reference(runs: dict[tuple[str, int], list[dict[str, Any]]]) -> tuple[dict, list[float]]:
    """The strategies' runs, and the final test Dice of each full-data reference run (strategy ``full``)."""
    from labelzoo.simulate.loop import REFERENCE

    ref = [curve(rows)[1][-1] for (s, _), rows in sorted(runs.items()) if s == REFERENCE and curve(rows)[1]]
    return {k: v for k, v in runs.items() if k[0] != REFERENCE}, ref


def _spread(values: Sequence[float | None]) -> dict[str, float | int | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals)}


def summarize(runs: dict[tuple[str, int], list[dict[str, Any]]], target_fraction: float = 0.95,
              reference_dice: float | None = None) -> dict[str, Any]:
    """Per strategy: final test Dice, area under the learning curve, labels to reach the target, effort, times.

    Args:
        runs: ``(strategy, seed)`` -> the run's rows; runs of the strategy ``full`` are the full-data reference.
        target_fraction: the target is this fraction of the reference Dice.
        reference_dice: the "full-data" Dice; default: the mean final Dice of the ``full`` runs, else the best test
            Dice any run reached.

    Returns:
        ``{"reference_dice", "reference_source", "target_dice", "strategies": {name: {...}}}``; every figure is
        ``{"mean", "std", "n"}`` over seeds. ``labels_to_target`` (``slices_to_target``: annotated slices) counts a
        run that never reaches the target as missing and reports how many did in ``reached``.
    """
    runs, ref_runs = split_reference(runs)
    best = max((d for rows in runs.values() for d in curve(rows)[1]), default=math.nan)
    if reference_dice is not None:
        reference, source = float(reference_dice), "given"
    elif ref_runs:
        reference, source = float(np.mean(ref_runs)), f"full data, mean of {len(ref_runs)} run(s)"
    else:
        reference, source = best, "best of the runs"
    target = target_fraction * reference
    per: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for (strategy, _seed), rows in sorted(runs.items()):
        xs, ys = curve(rows)
        p = per[strategy]
        p["final_dice"].append(ys[-1] if ys else None)
        p["final_labels"].append(xs[-1] if xs else None)
        p["auc"].append(curve_auc(xs, ys) if xs else None)
        reach = labels_to_reach(xs, ys, target) if xs else None
        p["labels_to_target"].append(reach)
        p["reached"].append(reach is not None)
        sx, sy = curve(rows, "cum_annotated_slices")
        p["slices_to_target"].append(labels_to_reach(sx, sy, target) if sx else None)
        p["annotated_slices"].append(sx[-1] if sx else None)
        hd = [_num(r.get("test_hd95")) for r in rows if _num(r.get("test_dice")) is not None]
        p["final_hd95"].append(hd[-1] if hd else None)
        rounds = [r for r in rows if int(r.get("round", 0)) > 0]
        p["effort_voxels"].append(float(sum(_num(r.get("voxels_changed")) or 0 for r in rounds)))
        clicks = [_num(r.get("clicks")) for r in rounds if _num(r.get("clicks")) is not None]
        p["effort_clicks"].append(float(sum(clicks)) if clicks else None)  # with --click_model only
        p["effort_mean_1_minus_dice"].append(
            float(np.mean([_num(r.get("one_minus_dice")) or 0 for r in rounds])) if rounds else None)
        for key in TIME_KEYS:
            vals = [_num(r.get(key)) for r in rows if _num(r.get(key)) is not None]
            p[f"time_{key}"].append(float(np.mean(vals)) if vals else None)
    out: dict[str, Any] = {}
    for strategy, p in per.items():
        entry = {k: _spread(v) for k, v in p.items() if k != "reached"}
        entry["reached"] = f"{sum(p['reached'])}/{len(p['reached'])}"
        out[strategy] = entry
    return {"reference_dice": reference, "reference_source": source, "reference_runs": _spread(ref_runs),
            "target_fraction": target_fraction, "target_dice": target, "strategies": out}


def _fmt(s: dict[str, Any], digits: int = 3) -> str:
    if s.get("mean") is None:
        return "-"
    if s.get("n", 0) > 1:
        return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"
    return f"{s['mean']:.{digits}f}"


def markdown_table(summary: dict[str, Any]) -> str:
    """The per-strategy table (mean ± std over seeds) as Markdown."""
    target = f"{summary['target_fraction']:.0%} of {summary['reference_dice']:.3f}"
    head = (f"| strategy | final test Dice | HD95 (mm) | area under Dice curve | labels to {target} (runs reaching) | "
            f"annotated slices | slices to {target} | voxels corrected | mean 1 - Dice of suggestions |")
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    empty = {"mean": None}
    with_clicks = any(s.get("effort_clicks", empty).get("mean") is not None for s in summary["strategies"].values())
    if with_clicks:
        lines = [head + " clicks to Dice 0.9 |", lines[1] + " --- |"]
    for name, s in summary["strategies"].items():
        lines.append(f"| `{name}` | {_fmt(s['final_dice'])} | {_fmt(s['final_hd95'], 1)} | {_fmt(s['auc'])} | "
                     f"{_fmt(s['labels_to_target'], 1)} ({s['reached']}) | "
                     f"{_fmt(s.get('annotated_slices', empty), 0)} | "
                     f"{_fmt(s.get('slices_to_target', empty), 0)} | {_fmt(s['effort_voxels'], 0)} | "
                     f"{_fmt(s['effort_mean_1_minus_dice'])} |"
                     + (f" {_fmt(s.get('effort_clicks', empty), 1)} |" if with_clicks else ""))
    ref = summary.get("reference_runs") or {}
    if ref.get("n"):
        lines.append(f"\nFull-data reference (every pool image labelled, the same training): test Dice {_fmt(ref)} "
                     f"({ref['n']} seed(s)); target = {target}.")
    return "\n".join(lines)


def time_table(summary: dict[str, Any]) -> str:
    """Mean wall time of each step (seconds per round for score/next/infer/save, per training for train/eval).

    A training splits into its run (the task's own time: config, data, iterations, weights saved) and the overhead
    around it (the task process starting and exiting, polling); see :func:`labelzoo.simulate.loop.train_split`.
    """
    lines = ["| strategy | score pool | next_sample | infer | save_label | train | of which: run | of which: process "
             "start/exit | test scoring | new weights -> pool re-scored |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in summary["strategies"].items():
        lines.append(f"| `{name}` | " + " | ".join(_fmt(s[f"time_{k}"], 2) for k in TIME_KEYS) + " |")
    return "\n".join(lines)


def plot(runs: dict[tuple[str, int], list[dict[str, Any]]], path: Path, title: str = "") -> Path:
    """Test Dice vs labels and cumulative voxels corrected vs labels, one line per strategy (mean, min-max band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax3, ax2) = plt.subplots(1, 3, figsize=(14, 4), dpi=80)
    runs, ref = split_reference(runs)
    by_strategy: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for (strategy, _), rows in sorted(runs.items()):
        by_strategy[strategy].append(rows)
    if ref:
        for ax in (ax1, ax3):
            ax.axhline(float(np.mean(ref)), color="k", ls="--", lw=1, label="full data")
    for strategy, all_rows in by_strategy.items():
        curves = [dict(zip(*curve(rows), strict=True)) for rows in all_rows]
        xs = sorted(set().union(*curves))
        ys = np.array([[c.get(x, np.nan) for x in xs] for c in curves])
        line, = ax1.plot(xs, np.nanmean(ys, 0), marker="o", label=strategy)
        if len(curves) > 1:
            ax1.fill_between(xs, np.nanmin(ys, 0), np.nanmax(ys, 0), alpha=0.15, color=line.get_color())
        for rows in all_rows:
            sx, sy = curve(rows, "cum_annotated_slices")
            ax3.plot(sx, sy, marker=".", color=line.get_color(), alpha=0.7)
        eff = [{int(r["labels"]): float(r["cum_voxels_changed"]) for r in rows
                if _num(r.get("cum_voxels_changed")) is not None} for rows in all_rows]
        ex = sorted(set().union(*eff))
        if ex:
            ey = np.array([[e.get(x, np.nan) for x in ex] for e in eff])
            ax2.plot(ex, np.nanmean(ey, 0), marker="o", label=strategy, color=line.get_color())
    ax1.set_xlabel("labelled images")
    ax1.set_ylabel("test Dice (held-out)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax3.set_xlabel("annotated slices (cumulative, log)")
    ax3.set_xscale("log")
    ax3.set_ylabel("test Dice (one line per run)")
    ax3.grid(alpha=0.3)
    ax2.set_xlabel("labelled images")
    ax2.set_ylabel("cumulative voxels corrected")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def load_runs(folder: Path) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The runs whose CSVs (``<strategy>-seed<seed>.csv``) are in ``folder``, e.g. from several invocations."""
    import csv

    runs = {}
    for path in sorted(Path(folder).glob("*-seed*.csv")):
        rows = list(csv.DictReader(path.open()))
        if rows:
            runs[(rows[0]["strategy"], int(rows[0]["seed"]))] = rows
    return runs
