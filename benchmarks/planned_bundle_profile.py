"""Where one training iteration of a planned bundle spends its time: data (loading, augmentation) vs network.

Plans a bundle (``labelzoo plan``) on a synthetic MSD dataset (``labelzoo.data.build_sample_studies``) or takes an
existing one (``--bundle``), instantiates its ``configs/train.json`` with ``monai.bundle.ConfigParser`` exactly as
``python -m monai.bundle run`` does, and times on the same machine, in the same run:

- **augmentation per transform**: each random transform of ``train#random_transforms`` on cached (deterministic)
  samples, milliseconds per sample (every transform forced to fire, ``prob`` 1, and at its own probability);
- **data only**: batches per second of ``train#dataloader`` alone (workers as configured and with 0 workers);
- **network only**: forward + deep-supervision loss + backward + SGD step on one fixed batch;
- **full iteration**: the bundle's own ``SupervisedTrainer`` for ``--iterations`` iterations (steady state, the
  first iteration left out), which is what ``monai.bundle run`` costs per iteration.

The ratio ``full / network`` says how much the data pipeline adds on top of the network; it prints the figures
and no plot. Run: ``python benchmarks/planned_bundle_profile.py [--configuration 3d_fullres] [--iterations 8]
[--shape 48,56,48] [--bundle DIR] [--threads N]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.engines import SupervisedTrainer
from monai.transforms import Compose, Randomizable

from labelzoo.data import build_sample_studies


def plan_bundle(work: Path, configuration: str, cases: int, shape: tuple[int, ...]) -> Path:
    """A planned bundle of ``configuration`` for a synthetic MSD dataset under ``work``."""
    msd = build_sample_studies(work / "msd", n_images=cases, n_labeled=cases, shape=shape, seed=3, layout="msd",
                               overwrite=True)
    subprocess.run([sys.executable, "-m", "labelzoo.cli", "plan", str(msd), "--out", str(work / "bundles"),
                    "--configurations", configuration, "--overwrite"], check=True, capture_output=True)
    return next(p for p in (work / "bundles").iterdir() if (p / "configs" / "train.json").is_file())


def parser_for(bundle: Path, **overrides: object) -> ConfigParser:
    """``configs/train.json`` of ``bundle`` with overrides, as ``monai.bundle run`` reads it."""
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser["bundle_root"] = str(bundle)
    for k, v in overrides.items():
        parser[k] = v
    return parser


def without_class_locations(random_transforms: list[dict]) -> list[dict]:
    """The random part as emitted before class locations were cached: the crop scans the label every patch."""
    out = []
    for t in copy.deepcopy(random_transforms):
        if t["_target_"] in ("ClassesToIndicesd", "SelectItemsd"):
            continue
        t.pop("indices_key", None)
        out.append(t)
    return out


def time_transforms(parser: ConfigParser, samples: list[dict], repeats: int) -> list[tuple[str, float, float]]:
    """(name, ms per sample when it fires, its probability) of every transform of ``train#random_transforms``;
    the ones before the first random transform run once per case (CacheDataset caches them): probability 0."""
    rows = []
    randoms = parser.get_parsed_content("train#random_transforms")
    seen_random = False
    for t in randoms:
        name = type(t).__name__
        seen_random = seen_random or isinstance(t, Randomizable)
        forced = copy.deepcopy(t)
        prob = float(getattr(t, "prob", 1.0)) if seen_random else 0.0
        if hasattr(forced, "prob"):
            forced.prob = 1.0
        if isinstance(forced, Randomizable):
            forced.set_random_state(0)
        t0 = time.perf_counter()
        for _ in range(repeats):
            for s in samples:
                forced(dict(s))
        rows.append((name, 1000 * (time.perf_counter() - t0) / (repeats * len(samples)), prob))
        samples = [forced(dict(s)) for s in samples]  # the next transform sees this one's output, as in training
        samples = [s[0] if isinstance(s, list) else s for s in samples]
    return rows


def time_loader(loader, batches: int) -> float:
    """Seconds per batch of ``loader`` (after the first batch, which starts the workers)."""
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            break
        n += 1
    return (time.perf_counter() - t0) / max(1, n)


def time_network(parser: ConfigParser, batch: dict, steps: int) -> float:
    """Seconds per forward + loss + backward + step of the bundle's network on one fixed batch."""
    net = parser.get_parsed_content("network")
    loss_fn = parser.get_parsed_content("loss")
    opt = parser.get_parsed_content("optimizer")
    device = parser.get_parsed_content("device")
    x, y = batch["image"].to(device), batch["label"].to(device)
    net.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def time_trainer(parser: ConfigParser, iterations: int) -> float:
    """Steady seconds per iteration of the bundle's ``SupervisedTrainer`` (first iteration left out)."""
    trainer: SupervisedTrainer = parser.get_parsed_content("train#trainer")
    stamps: list[float] = []
    from ignite.engine import Events

    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: stamps.append(time.perf_counter()))
    trainer.run()
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configuration", default="3d_fullres", choices=["3d_fullres", "2d"])
    ap.add_argument("--bundle", default=None, help="an existing planned bundle (default: plan one)")
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--shape", default="48,56,48", help="synthetic image size (voxels)")
    ap.add_argument("--iterations", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        bundle = Path(args.bundle) if args.bundle else plan_bundle(work, args.configuration, args.cases,
                                                                    tuple(int(s) for s in args.shape.split(",")))
        plan = json.loads((bundle / "configs" / "plan.json").read_text())
        base = parser_for(bundle, num_epochs=1, iterations_per_epoch=args.iterations)
        workers = base.get_parsed_content("num_workers")
        print(f"bundle {bundle.name}: patch {plan['patch_size']}, batch {plan['batch_size']}, "
              f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, num_workers {workers}")

        t0 = time.perf_counter()
        det = Compose(base.get_parsed_content("train#deterministic_transforms"))
        cached = [det(dict(d)) for d in base.get_parsed_content("train_datalist")]
        print(f"deterministic part (cached once by CacheDataset): {1000 * (time.perf_counter() - t0) / len(cached):.0f}"
              " ms per case")
        print(f"\n{'train#random_transforms':<30}{'ms when it runs':>16}{'probability':>12}{'ms expected':>12}")
        rows = time_transforms(base, cached, repeats=2)
        for name, ms, prob in rows:
            print(f"{name:<30}{ms:>16.1f}{prob if prob else 'cached':>12}{ms * prob:>12.1f}")
        print(f"{'per sample':<30}{'':>16}{'':>12}{sum(r[1] * r[2] for r in rows):>12.1f}")
        before = parser_for(bundle)
        before["train#random_transforms"] = without_class_locations(before.get("train#random_transforms"))
        crop = next(t for t in before.get_parsed_content("train#random_transforms")
                    if type(t).__name__ == "RandCropByLabelClassesd")
        crop.set_random_state(0)
        pad = before.get_parsed_content("train#random_transforms")[0]
        padded = [pad(dict(c)) for c in cached]
        t0 = time.perf_counter()
        for c in padded * 2:
            crop(dict(c))
        print(f"before (crop scanning the whole label per patch): RandCropByLabelClassesd "
              f"{1000 * (time.perf_counter() - t0) / (2 * len(padded)):.1f} ms per sample")

        it = {"num_epochs": 1, "iterations_per_epoch": args.iterations}
        loader_w = time_loader(parser_for(bundle, **it).get_parsed_content("train#dataloader"), args.iterations)
        loader_0 = time_loader(parser_for(bundle, **it, num_workers=0).get_parsed_content("train#dataloader"),
                               args.iterations)
        batch = next(iter(parser_for(bundle, num_workers=0, iterations_per_epoch=1)
                          .get_parsed_content("train#dataloader")))
        net = time_network(parser_for(bundle), batch, max(2, args.iterations // 2))
        full = time_trainer(parser_for(bundle, **it), args.iterations)
        full0 = time_trainer(parser_for(bundle, **it, num_workers=0), args.iterations)
        old = parser_for(bundle, **it)
        old["train#random_transforms"] = without_class_locations(old.get("train#random_transforms"))
        full_before = time_trainer(old, args.iterations)
        print(f"\ndata only, {workers} worker(s): {loader_w:.3f} s/batch; 0 workers: {loader_0:.3f} s/batch")
        print(f"network only (forward + loss + backward + step): {net:.3f} s/iteration")
        print(f"full iteration (SupervisedTrainer), {workers} worker(s): {full:.3f} s ({full / net:.2f}x network); "
              f"0 workers: {full0:.3f} s ({full0 / net:.2f}x network)")
        print(f"full iteration before (class locations per patch), {workers} worker(s): {full_before:.3f} s "
              f"({full_before / net:.2f}x network); after / before: {full / full_before:.2f}")

if __name__ == "__main__":
    main()
