"""Ray scheduling of search trials: concurrency speed-up and per-trial overhead against the in-process loop.

On a small synthetic CT task (``labelzoo.data.build_sample_studies``, MSD layout) the script measures:

1. **scaling**: the wall time of the same small ``labelzoo search`` (``--budget`` proxy trials + the full
   trainings) with 1 and with 2 concurrent trials on an embedded Ray instance (``--max_concurrent 1`` / ``2``,
   one CPU and one torch thread per trial), and its ratio; the in-process loop (``executor="inline"``, what
   LabelZoo did before Ray) is the baseline of the same run. Ray's start-up is part of each search's time and
   is also printed on its own;
2. **overhead**: ``--tasks`` tiny trials (1 optimiser step each) through :func:`labelzoo.distributed.runner.run_tasks`
   one at a time, on Ray (already started, workers warm) and in-process; per trial, the wall time minus the
   training time measured inside the trial is what scheduling, argument transfer and result return cost
   (robust to the training itself running faster or slower on busy shared cores).

Example (about 3 minutes on 2 CPU cores)::

    python benchmarks/ray_scaling.py --budget 6 --iterations 30 --tasks 20

``--quick`` runs a tiny version (about a minute) to check that the script works.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=int, default=6, help="proxy trials per search, >= 3 (default 6)")
    p.add_argument("--iterations", type=int, default=30, help="optimiser steps per proxy trial (default 30)")
    p.add_argument("--tasks", type=int, default=20, help="tiny trials for the overhead measurement (default 20)")
    p.add_argument("--patch", type=int, default=16, help="cubic training patch size (default 16)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the embedded Ray instance (default 2)")
    p.add_argument("--quick", action="store_true", help="tiny settings, to check the script runs")
    args = p.parse_args(argv)
    if args.quick:
        args.budget, args.iterations, args.tasks = 3, 4, 4
    if args.budget < 3:
        p.error(f"--budget must be at least 3, got {args.budget}")
    return args


def timed_search(dataset: Path, out: Path, args: argparse.Namespace, ray_options) -> float:
    from labelzoo.automl.search import SearchSettings, run_search

    settings = SearchSettings(dataset=str(dataset), budget=args.budget, pool=20, top_k=1,
                              proxy_iterations=args.iterations, full_iterations=args.iterations,
                              patch_size=[args.patch] * 3, base_channels=4, seed=0, max_epochs=2, threads=1)
    start = time.perf_counter()
    run_search(settings, out, ray=ray_options)
    return time.perf_counter() - start


def ray_startup(cpus: int) -> float:
    from labelzoo.distributed.runner import RayOptions, ray_session

    start = time.perf_counter()
    with ray_session(RayOptions(num_cpus=cpus)):
        seconds = time.perf_counter() - start
    return seconds


def overhead(dataset: Path, args: argparse.Namespace) -> dict[str, float]:
    """Mean seconds per tiny trial, in-process and on a warm Ray instance, one trial at a time."""
    import random

    from labelzoo.automl.encoding import sample_unique
    from labelzoo.automl.search import run_trial
    from labelzoo.automl.train import prepare_data, read_msd_dataset
    from labelzoo.distributed.runner import RayOptions, Task, ray_session, run_tasks

    data = prepare_data(read_msd_dataset(dataset))
    vectors = sample_unique(random.Random(1), args.tasks)

    def tasks(prefix: str) -> list[Task]:
        return [Task(f"{prefix}/{i}", run_trial, (v,), {"iterations": 1, "patch_size": [args.patch] * 3,
                                                         "base_channels": 4, "seed": i, "device": "cpu",
                                                         "threads": 1}) for i, v in enumerate(vectors)]

    inside: list[float] = []
    out: dict[str, float] = {}
    for name, options in (("inline", RayOptions(executor="inline")), ("ray", RayOptions(num_cpus=args.cpus))):
        with ray_session(options):
            # one warm-up trial (imports in the worker, first data transfer), then the timed ones
            run_tasks(tasks("warm")[:1], options, on_done=lambda t, o: None, shared={"data": data})
            start = time.perf_counter()
            outcomes = run_tasks(tasks(name), options, on_done=lambda t, o: None, shared={"data": data})
            wall = time.perf_counter() - start
        inside = [o.seconds for o in outcomes.values()]
        out[f"{name}_wall_per_trial"] = wall / args.tasks
        out[f"{name}_inside_per_trial"] = statistics.mean(inside)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from labelzoo.data import build_sample_studies
    from labelzoo.distributed.runner import RayOptions

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        dataset = build_sample_studies(tmp_path / "Task01_Synthetic", n_images=6, n_labeled=5, shape=(32, 32, 32),
                                       seed=1, layout="msd")
        print(f"search: {args.budget} proxy + 2 full trials of {args.iterations} steps on {args.patch}^3 patches; "
              f"embedded Ray with {args.cpus} CPUs; {os.cpu_count()} cores on this machine", flush=True)
        startup = ray_startup(args.cpus)
        print(f"Ray start-up (ray.init + shutdown): {startup:.1f} s", flush=True)
        times = {}
        for name, options in (("in-process loop", RayOptions(executor="inline")),
                              ("Ray, 1 concurrent", RayOptions(num_cpus=args.cpus, max_concurrent=1)),
                              ("Ray, 2 concurrent", RayOptions(num_cpus=args.cpus, max_concurrent=2))):
            times[name] = timed_search(dataset, tmp_path / name.replace(" ", "_").replace(",", ""), args, options)
            print(f"  {name:<18} {times[name]:7.1f} s", flush=True)
        one, two = times["Ray, 1 concurrent"], times["Ray, 2 concurrent"]
        print(f"speed-up 2 vs 1 concurrent: {one / two:.2f}x; Ray 1 concurrent / in-process: "
              f"{one / times['in-process loop']:.2f}x", flush=True)

        print(f"\noverhead: {args.tasks} tiny trials (1 step each), one at a time, after a warm-up trial", flush=True)
        o = overhead(dataset, args)
        for name, label in (("inline", "in-process"), ("ray", "Ray")):
            wall, inside = o[f"{name}_wall_per_trial"], o[f"{name}_inside_per_trial"]
            print(f"  {label:<11} {wall * 1000:6.0f} ms per trial, of which training {inside * 1000:6.0f} ms: "
                  f"overhead {(wall - inside) * 1000:5.1f} ms")
        extra = (o["ray_wall_per_trial"] - o["ray_inside_per_trial"]) - (
            o["inline_wall_per_trial"] - o["inline_inside_per_trial"])
        print(f"  Ray's scheduling overhead per trial (wall - training, Ray minus in-process): {extra * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
