"""T-AutoML evidence: predictor-guided search vs random search at equal training budget.

On a small synthetic CT task (``labelzoo.data.build_sample_studies``, MSD layout), for each seed:

- **random search** proxy-trains ``budget`` random configurations;
- **predictor-guided search** proxy-trains the first ``budget / 2`` of those same random configurations,
  fits the pairwise-ranking transformer on them, ranks a pool of unseen configurations and proxy-trains the
  top ``budget / 2``.

Both spend the same number of trainings of the same length. The script prints the best validation Dice
each search found per seed, the means and their ratio (guided / random), the mean Dice of the second half
(random draws vs predictor picks), and the predictor's pairwise accuracy and Kendall tau on the
second-half random configurations, which it never saw. It saves a PNG of predicted vs actual rank of
those held-out configurations.

Example (about 10 minutes on 2 CPU cores)::

    python benchmarks/automl_predictor_vs_random.py --seeds 3 --budget 10 --iterations 40 --plot automl_rank.png

``--quick`` runs a tiny version (about a minute) to check that the script works.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="independent repetitions (default 3)")
    p.add_argument("--budget", type=int, default=10, help="trainings per search, even, >= 4 (default 10)")
    p.add_argument("--pool", type=int, default=300, help="unseen configurations the predictor ranks (default 300)")
    p.add_argument("--iterations", type=int, default=40, help="optimiser steps per training (default 40)")
    p.add_argument("--patch", type=int, default=16, help="cubic training patch size (default 16)")
    p.add_argument("--base-channels", type=int, default=8, help="network width at full resolution (default 8)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--plot", default="automl_predicted_vs_actual_rank.png", help="PNG file for the rank plot")
    p.add_argument("--quick", action="store_true", help="tiny settings, to check the script runs")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.pool, args.iterations = 1, 4, 20, 3
    if args.budget < 4 or args.budget % 2:
        p.error(f"--budget must be an even number of at least 4, got {args.budget}")
    return args


def ranks(values: list[float]) -> list[int]:
    """Rank 1 = highest value."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    out = [0] * len(values)
    for r, i in enumerate(order, start=1):
        out[i] = r
    return out


def run_seed(seed: int, data, args: argparse.Namespace) -> dict:
    from labelzoo.automl.encoding import sample_unique
    from labelzoo.automl.predictor import evaluate_predictor, fit_predictor, win_probability
    from labelzoo.automl.train import train_config

    half = args.budget // 2
    patch = [args.patch] * 3

    def train(vector: list[int], k: int) -> float:
        return train_config(vector, data, args.iterations, patch, args.base_channels, seed=1000 * seed + k).dice

    configs = sample_unique(random.Random(seed), args.budget)
    dice = [train(v, k) for k, v in enumerate(configs)]
    first, second = configs[:half], configs[half:]
    model = fit_predictor(first, dice[:half], seed=seed)
    report = evaluate_predictor(model, second, dice[half:]) if len(set(dice[half:])) > 1 else None
    predicted = win_probability(model, second, first)
    pool = sample_unique(random.Random(seed + 10_000), args.pool, exclude=configs)
    wins = win_probability(model, pool, first)
    picks = [pool[i] for i in sorted(range(len(pool)), key=lambda i: -wins[i])[:half]]
    guided = [train(v, args.budget + k) for k, v in enumerate(picks)]
    return {
        "random_best": max(dice), "guided_best": max(dice[:half] + guided),
        "random_second_half": statistics.mean(dice[half:]), "guided_second_half": statistics.mean(guided),
        "report": report, "predicted_rank": ranks(predicted), "actual_rank": ranks(dice[half:]),
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    n = 0
    for seed, r in enumerate(results):
        ax.scatter(r["actual_rank"], r["predicted_rank"], label=f"seed {seed}", alpha=0.8)
        n = max(n, len(r["actual_rank"]))
    ax.plot([1, n], [1, n], color="grey", linestyle="--", linewidth=1, label="perfect ranking")
    ax.set_xlabel("actual rank (validation Dice, 1 = best)")
    ax.set_ylabel("predicted rank (win probability, 1 = best)")
    ax.set_title("T-AutoML predictor on held-out configurations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import logging

    from labelzoo.automl.train import prepare_data, read_msd_dataset, torch_threads
    from labelzoo.data import build_sample_studies

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="labelzoo-automl-bench-") as tmp, torch_threads(args.threads):
        root = build_sample_studies(Path(tmp) / "Task00_Synthetic", n_images=6, n_labeled=6, shape=(32, 32, 32),
                                    seed=7, layout="msd")
        data = prepare_data(read_msd_dataset(root))
        print(f"task: synthetic CT 32^3, {len(data.train)} training / {len(data.val)} validation cases, "
              f"{data.info.num_classes} classes; {args.budget} trainings of {args.iterations} steps per search, "
              f"pool {args.pool}")
        print(f"{'seed':>4}  {'random best':>11}  {'guided best':>11}  {'random 2nd half':>15}  "
              f"{'guided picks':>12}  {'pair acc':>8}  {'tau':>6}")
        results = []
        for seed in range(args.seeds):
            r = run_seed(seed, data, args)
            results.append(r)
            rep = r["report"]
            acc = f"{rep.pairwise_accuracy:.3f}" if rep else "n/a"
            tau = f"{rep.kendall_tau:+.3f}" if rep else "n/a"
            print(f"{seed:>4}  {r['random_best']:>11.4f}  {r['guided_best']:>11.4f}  {r['random_second_half']:>15.4f}"
                  f"  {r['guided_second_half']:>12.4f}  {acc:>8}  {tau:>6}", flush=True)
    rb = statistics.mean(r["random_best"] for r in results)
    gb = statistics.mean(r["guided_best"] for r in results)
    rh = statistics.mean(r["random_second_half"] for r in results)
    gh = statistics.mean(r["guided_second_half"] for r in results)
    wins = sum(r["guided_best"] > r["random_best"] for r in results)
    ties = sum(r["guided_best"] == r["random_best"] for r in results)
    print(f"mean best Dice: random {rb:.4f}, guided {gb:.4f}, ratio guided/random {gb / rb if rb else float('nan'):.3f}"
          f" (guided better in {wins}, equal in {ties} of {len(results)} seeds)")
    print(f"mean Dice of the second half: random draws {rh:.4f}, predictor picks {gh:.4f}, "
          f"ratio {gh / rh if rh else float('nan'):.3f}")
    reports = [r["report"] for r in results if r["report"]]
    if reports:
        print(f"predictor on held-out configurations: mean pairwise accuracy "
              f"{statistics.mean(x.pairwise_accuracy for x in reports):.3f}, mean Kendall tau "
              f"{statistics.mean(x.kendall_tau for x in reports):+.3f} (chance: 0.5 / 0)")
    plot(results, Path(args.plot))
    print(f"rank plot: {args.plot}; total {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
