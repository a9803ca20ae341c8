"""Does LabelZoo save annotation effort? Active-learning strategies against random, through the real server.

Builds synthetic CT (``labelzoo sample-data``, BTCV label values 1, 3, 6), plans a small nnU-Net-style 3D
bundle on it (``labelzoo plan``; it predicts 1, 2, 3), then runs ``labelzoo simulate --reference``: per
strategy and seed a fresh LabelZoo server, datastore and untrained model; a simulated annotator labels images
(or, for the slice-level strategies, only the slices the server asks for) in the order the strategy asks, the
model is retrained every few labels and scored on held-out cases; per seed a full-data reference run (every
pool image labelled, the same training iterations) gives the Dice the 95 % target is taken from. Prints the
per-strategy table (test Dice, HD95, area under the learning curve with its spread over seeds, labels and
annotated slices to 95 % of the full-data Dice, voxels corrected) and the wall-time split of a round, and
saves the plot.

    nice -n 10 python benchmarks/annotation_effort.py           # CPU: 10 strategies + full x 2 seeds, ~55 min
    python benchmarks/annotation_effort.py --strategies random,fg_random,boundary_slices --seeds 0   # ~8 min
    python benchmarks/annotation_effort.py --strategies random,boundary --seeds 0 --no_reference \
        --shape 64,64,40 --spacing 2.25,2.25,3.2 --click_weights W.pt --out benchmarks/results/annotation_effort_clicks
                      # + clicks to Dice 0.9 with the interactive bundle (W.pt: interactive_clicks.py --save_weights)
    python benchmarks/annotation_effort.py --device cuda --n_images 40 --budget 16 --train_every 1 \
        --seeds 0,1,2 --epochs 4 --threads 0                    # a GPU: a finer curve, more labels and seeds
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from labelzoo.data import build_sample_studies
from labelzoo.planning.emit import emit_bundles
from labelzoo.planning.fingerprint import extract_fingerprint
from labelzoo.planning.planner import ExperimentPlanner
from labelzoo.simulate.commands import simulate
from labelzoo.simulate.report import load_runs, markdown_table, plot, summarize, time_table

#: A narrower network than the plan's (8..64 features instead of 32..320): CPU-sized, same topology.
SMALL_FILTERS = [8, 16, 32, 64]
#: Slices one slice-level query asks for (of the volume's last axis), at least this far apart.
N_SLICES, SLICE_GAP = 3, 3
#: Every strategy the app offers (whole images; then the slice-level ones).
ALL_STRATEGIES = "random,fg_random,first,epistemic,tta,hybrid,clasp,boundary,boundary_slices,random_slices"


def light_augmentation(patch_size: str = "@patch_size", num_classes: int = 4) -> list[dict]:
    """The planned bundle's patch sampling without its nnU-Net augmentation (rotation, zoom, noise, blur, contrast,
    low resolution, mirroring), for the loop's short CPU trainings: augmentation regularises a training of
    hundreds of epochs, and slows one of a few hundred iterations (measured in the README). Its time per iteration
    is small at 32x32x24 either way. Same keys, crop and foreground-biased sampling as the plan's."""
    keys = ["image", "label"]
    return [
        {"_target_": "SpatialPadd", "keys": keys, "spatial_size": patch_size},
        {"_target_": "ClassesToIndicesd", "keys": "label", "indices_postfix": "_cls_indices",
         "num_classes": num_classes, "max_samples_per_class": 10000},
        {"_target_": "RandCropByLabelClassesd", "keys": keys, "label_key": "label", "spatial_size": patch_size,
         "num_classes": num_classes, "ratios": [3.0] + [1] * (num_classes - 1), "num_samples": 1, "warn": False,
         "indices_key": "label_cls_indices"},
        {"_target_": "SelectItemsd", "keys": keys},
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/results/annotation_effort")
    p.add_argument("--strategies", default=ALL_STRATEGIES)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--n_images", type=int, default=14)
    p.add_argument("--shape", default="32,32,24")
    p.add_argument("--spacing", default=None, help="voxel spacing in mm, e.g. 2.25,2.25,3.2 (the sample default)")
    p.add_argument("--click_weights", type=Path, default=None,
                   help="weights of the interactive bundle as benchmarks/interactive_clicks.py trains it "
                        "(--save_weights): every whole-image round also counts the clicks to Dice 0.9")
    p.add_argument("--max_clicks", type=int, default=10, help="clicks at most per structure (--click_weights)")
    p.add_argument("--n_test", type=int, default=4)
    p.add_argument("--initial", type=int, default=2)
    p.add_argument("--budget", type=int, default=6)
    p.add_argument("--train_every", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--iterations", type=int, default=50, help="iterations per epoch")
    p.add_argument("--lr", type=float, default=0.03,
                   help="learning rate (the plan: 0.01, too slow for a few hundred iterations)")
    p.add_argument("--augment", action="store_true",
                   help="keep the planned bundle's nnU-Net augmentation (default: patch sampling only, see "
                        "light_augmentation)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per server / training process (OMP_NUM_THREADS); 0: torch's default")
    p.add_argument("--mirroring", action="store_true",
                   help="keep the planned bundle's test-time mirroring (8 flips per prediction: 8x the scoring time)")
    p.add_argument("--no_reference", action="store_true", help="skip the full-data reference runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--full_width", action="store_true", help="keep the planned network width")
    p.add_argument("--keep", action="store_true", help="keep the work folder (data, bundles, server logs)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="labelzoo-effort-"))
    try:
        extra = {"spacing": args.spacing} if args.spacing else {}
        data = build_sample_studies(work / "msd", n_images=args.n_images, n_labeled=args.n_images,
                                    shape=args.shape, seed=100, layout="msd", **extra)
        click_model = None
        if args.click_weights:
            from interactive_clicks import SMALL, bundle_copy  # the click model at the size that benchmark trains

            click = bundle_copy(work / "click", SMALL)
            (click / "models").mkdir()
            shutil.copy(args.click_weights, click / "models" / "model.pt")
            click_model = str(click)
        fp = extract_fingerprint(data)
        (bundle,) = emit_bundles(ExperimentPlanner().plan(fp), fp, work / "planned", data,
                                 configurations=["3d_fullres"])
        train: dict = {"iterations_per_epoch": args.iterations}
        if args.lr is not None:
            train["learning_rate"] = args.lr
        if not args.augment:
            n_classes = json.loads((bundle / "configs" / "train.json").read_text())["network_def"]["out_channels"]
            train["train#random_transforms"] = light_augmentation(num_classes=int(n_classes))
        infer: dict = {} if args.mirroring else {"use_mirroring": False}
        if not args.full_width:  # 8, 16, 32, 64, 64, ...: one per stage of the planned network
            strides = json.loads((bundle / "configs" / "train.json").read_text())["network_def"]["strides"]
            small = SMALL_FILTERS + [SMALL_FILTERS[-1]] * max(0, len(strides) - len(SMALL_FILTERS))
            train["network_def#filters"] = infer["network_def#filters"] = small[:len(strides)]
        out = Path(args.out)
        runs = work / "runs"
        print(simulate(str(data), str(bundle), out=str(runs), strategies=args.strategies, seeds=args.seeds,
                       initial=args.initial, budget=args.budget, train_every=args.train_every, n_test=args.n_test,
                       epochs=args.epochs, train_overrides=train, infer_overrides=infer, device=args.device,
                       reference=not args.no_reference,
                       strategy_options={"n_slices": N_SLICES, "slice_gap": SLICE_GAP}, click_model=click_model,
                       max_clicks=args.max_clicks, threads=args.threads or None, overwrite=True))
        out.mkdir(parents=True, exist_ok=True)
        for f in runs.glob("*.csv"):
            shutil.copy(f, out / f.name)
        settings = json.loads((runs / "summary.json").read_text())["settings"]
        # no machine paths in the results: the work folder is temporary
        settings = {k: v.replace(str(work), "<work>") if isinstance(v, str) else v for k, v in settings.items()}
        # the table and plot cover every run in OUT, so seeds run in separate invocations add up
        all_runs = load_runs(out)
        summary = summarize(all_runs)
        summary["settings"] = {**settings, "seeds": sorted({s for _, s in all_runs})}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        tables = f"{markdown_table(summary)}\n\n{time_table(summary)}\n"
        (out / "summary.md").write_text(tables)
        plot(all_runs, out / "simulation.png", title=f"synthetic CT, planned 3D U-Net, {len(all_runs)} runs "
             "(dashed: full-data reference)")
        minutes = settings["wall_time_s"] / 60
        print(f"\nall {len(all_runs)} runs in {out}:\n{tables}\nthis invocation: {minutes:.1f} min")
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
