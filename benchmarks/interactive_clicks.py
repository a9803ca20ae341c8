r"""Benchmark interactive annotation through the live server: click latency and a simulated annotator.

The interactive bundle (``bundles/abdomen_ct_dynunet_interactive_annotation``) is served by ``labelzoo serve``
and driven with ``MONAILabelClient``, the path the Slicer plugin and LabelZoo's extension use; each image is
sent once (MONAI Label's sessions API) and every click is a ``/infer`` on the session.

1. **Latency**: median click-to-label round trip (client side) over ``--repeats`` clicks, and its split from
   the server's own latencies (preprocessing, network, postprocessing, writing; HTTP = the rest), for a 128^3
   region of interest, the 96x96x64 sample volume and a 512x512x100 CT-sized volume (``--sizes``), over the
   whole volume, with ``prompt_roi`` (prediction on a region around the prompts, answered as a whole volume) and
   with ``result_region`` (the same prediction, answered as the region only). The first request of a
   session preprocesses the image; the next ones reuse it (the app's per-image preprocessing cache).
2. **Simulated annotator** on held-out synthetic cases: click at the centre of the largest error region
   (foreground click in a missed region, background click in a false one), keeping every earlier click, up to
   ``--max_clicks``; each click's answer is the prompt region only, merged into the label map so far, as the
   Slicer module does (``--whole_answers``: whole-volume answers); Dice after 1/3/5/10 clicks, NoC@85/90 and
   the AUC of Dice-per-click, per structure, with the median latency per click. Three protocols
   (``--protocols``): ``automatic`` (start from the automatic result, clicks alone), ``current`` (the same, and
   every click uploads the label map so far as the structure's ``prior``, the Slicer module's "Refine current
   mask") and ``spoiled`` (start from a poor suggestion, :func:`~labelzoo.interactive.simulate.
   spoiled_suggestion`, uploaded as ``prior`` with every click: the refinement gain). Then one 3D box, 2D box,
   scribble or lasso alone (whole-volume answers). Baselines: the same model without prompts (its automatic
   mode, column ``auto``) and the **non-interactive control** (column ``no-int``): the same recipe (network,
   input channels, data, epochs, validation) trained with interaction off (:data:`CONTROL`: DeepEdit's
   ``deepgrow_probability`` 0, so every guidance and prior channel is zero in every iteration, and no click, box,
   scribble, lasso or prior simulated), served the same way; its table compares the automatic Dice of both per
   held-out case (mean, standard deviation over cases, paired difference), i.e. what interactivity costs or gains
   in automatic mode.

Weights: ``--weights models/model.pt`` of the bundle trained with ``--overrides`` (the same
overrides the server then uses); without ``--weights`` the bundle is trained here for ``--epochs`` on
synthetic CT (minutes on CPU at the default small size). The control likewise: ``--baseline_weights PATH`` is used
when the file exists, else the control is trained here on the same training cases for the same ``--epochs`` and
saved there (or at ``--save_baseline_weights``); ``--no_baseline`` leaves it out. ``--finetune_from PATH``
starts the interactive training from those weights instead of from scratch (e.g. a few epochs with
``prior_from_prediction_prob`` on).

Example (what the README reports, small size on a shared 2-core machine; training then measuring):
    python benchmarks/interactive_clicks.py --epochs 40 --train_cases 12 --train_only --save_weights /tmp/w.pt \
        --save_baseline_weights /tmp/control.pt \
        --overrides '{"deepgrow_probability": 0.8, "max_interactions": 3, "val_interval": 10}'
    python benchmarks/interactive_clicks.py --weights /tmp/w.pt --baseline_weights /tmp/control.pt --cases 6 \
        --max_clicks 10 --repeats 3 --sizes sample --overrides '{"deepgrow_probability": 0.8, "max_interactions": 3}'
    python benchmarks/interactive_clicks.py --latency_only --sizes roi128,ct512   # latency alone, random weights
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labelzoo.data import build_sample_studies  # noqa: E402
from labelzoo.data.synthetic import make_ct_case, scanner_affine  # noqa: E402
from labelzoo.interactive.simulate import dice, prompt_dice, simulate_clicks, spoiled_suggestion  # noqa: E402
from tests.app.conftest import _set  # noqa: E402
from tests.conftest import run_server  # noqa: E402

NAME = "abdomen_ct_dynunet_interactive_annotation"
VALUES = {"spleen": 1, "left kidney": 2, "liver": 3}
GT_VALUES = {"spleen": 1, "left kidney": 3, "liver": 6}
SMALL = {"filters": [8, 16, 32, 64], "pixdim": [2.25, 2.25, 3.2], "roi_size": [64, 64, 40], "max_interactions": 2,
         "val_interval": 2, "num_workers": 0}
SIZES = {"roi128": (128, 128, 128), "sample": (96, 96, 64), "ct512": (512, 512, 100)}
# the non-interactive control: the same recipe with interaction off. DeepEdit's Interaction zeroes every guidance
# channel (boxes, priors, clicks) when it draws no deepgrow round, so with probability 0 the network never sees a
# prompt; the prompt simulation is switched off too, so nothing is simulated at all
CONTROL = {"deepgrow_probability": 0.0, "max_clicks": 0, "box_prob": 0.0, "scribble_prob": 0.0, "lasso_prob": 0.0,
           "prior_prob": 0.0, "corrective_clicks": 0, "prior_from_prediction_prob": 0.0}
HELD_OUT_SEED = 1000  # held-out case n uses seed 1000 + n; the training cases use seeds 0 .. train_cases - 1


def bundle_copy(dst_root: Path, overrides: dict) -> Path:
    dst = dst_root / NAME
    shutil.copytree(REPO / "bundles" / NAME, dst, ignore=shutil.ignore_patterns("models", "eval"))
    for config in ("inference", "train"):
        path = dst / "configs" / f"{config}.json"
        data = json.loads(path.read_text())
        for k, v in overrides.items():
            if k in data or config == "train":
                _set(data, k, v)
        path.write_text(json.dumps(data, indent=4) + "\n")
    return dst


def train(bundle: Path, data: Path, epochs: int, env: dict, log: Path | None = None,
          init: Path | None = None) -> None:
    """Train the bundle copy on ``data`` (``init``: start from these weights instead of from scratch)."""
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "train.json"),
           "--bundle_root", str(bundle), "--dataset_dir", str(data), "--max_epochs", str(epochs)]
    if init is not None:
        (bundle / "models").mkdir(exist_ok=True)
        shutil.copy(init, bundle / "models" / "init.pt")
        path = bundle / "configs" / "train.json"
        config = json.loads(path.read_text())
        config["initialize"] = [*config.get("initialize", []), "$@network.load_state_dict(torch.load(@bundle_root "
                                "+ '/models/init.pt', map_location=@device, weights_only=True))"]
        path.write_text(json.dumps(config, indent=4) + "\n")
    what = "the non-interactive control" if bundle.parent.name == "control" else "the interactive bundle"
    print(f"training {what} {epochs} epochs{' from ' + str(init) if init else ''} ...", flush=True)
    t0 = time.perf_counter()
    with open(log or os.devnull, "w") as out:
        subprocess.run(cmd, check=True, cwd=bundle, env=env, stdout=out, stderr=subprocess.STDOUT)
    print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)


def write_volume(path: Path, shape: tuple[int, int, int], seed: int) -> None:
    spacing = (0.8, 0.8, 2.5) if shape[0] >= 256 else (1.5, 1.5, 2.0)
    image, _, affine = make_ct_case(seed, shape=shape, spacing=spacing)
    nib.save(nib.Nifti1Image(image, affine), str(path))


MODES = {"": {}, "roi": {"prompt_roi": True}, "region": {"result_region": True}}


def latencies(client, image: Path, repeats: int, rng: np.random.Generator, mode: str) -> dict[str, float]:
    session = client.create_session(str(image))["session_id"]
    shape = nib.load(str(image)).shape
    rows = []
    for r in range(repeats + 1):
        point = [int(rng.integers(s // 4, 3 * s // 4)) for s in shape]
        t0 = time.perf_counter()
        _, out = client.infer(NAME, "", {"liver": [point], **MODES[mode]}, session_id=session)
        total = time.perf_counter() - t0
        lat = (json.loads(out) if isinstance(out, str) else out).get("latencies", {})
        if r:  # the first request loads the network
            rows.append({"round trip": total, "pre": lat.get("pre", 0.0), "network": lat.get("infer", 0.0),
                         "post": lat.get("post", 0.0), "write": lat.get("write", 0.0)})
    client.remove_session(session)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med["http+other"] = med["round trip"] - med["pre"] - med["network"] - med["post"] - med["write"]
    med["worst"] = max(r["round trip"] for r in rows)
    return med


def predictor(client, session: str, shape: tuple[int, ...], region: bool, refine: str | None = None,
              start: np.ndarray | None = None, affine: np.ndarray | None = None, tmp: Path | None = None):
    """params -> label map, as the Slicer module sees it: with ``region`` each answer is only the prompt region
    (``result_region``), written at its place into the label map so far (the first, prompt-free answer is the
    whole automatic result); without it every answer is the whole volume.

    ``refine`` (a label name): every prompted request uploads the label map so far as that label's prior mask
    (``"prior": [label]``), as the Slicer module's "Refine current mask" does, so that a click corrects the
    current mask rather than restarting from the image. ``start``: the label map so far before any click (a
    suggestion to refine) instead of the automatic result; it is also the answer with no click."""
    current = np.zeros(shape, dtype=np.uint8) if start is None else start.astype(np.uint8).copy()

    def predict(params: dict) -> np.ndarray:
        prompted = any(params.values())
        if start is not None and not prompted:
            return current.copy()
        extra: dict = {"result_region": True} if region else {}
        label_in = None
        if refine and prompted:
            value = VALUES[refine]
            label_in = str(tmp / "prior.nii.gz")
            nib.save(nib.Nifti1Image(np.where(current == value, value, 0).astype(np.uint8), affine), label_in)
            extra["prior"] = [refine]
        label_file, out = client.infer(NAME, "", {**params, **extra}, label_in=label_in, session_id=session)
        out = json.loads(out) if isinstance(out, str) else out
        answer = np.asarray(nib.load(label_file).dataobj)
        box = (out or {}).get("result_region")
        if box is None:
            current[...] = answer
        else:
            current[tuple(slice(a, b + 1) for a, b in zip(box["min"], box["max"], strict=True))] = answer
        return current.copy()

    return predict


def automatic_dice(client, studies: Path, truth: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Per structure, the Dice of the served model's automatic answer (no prompt) on each held-out case."""
    out: dict[str, list[float]] = {name: [] for name in VALUES}
    for case, gt in truth.items():
        session = client.create_session(str(studies / f"{case}.nii.gz"))["session_id"]
        label_file, _ = client.infer(NAME, "", {}, session_id=session)
        pred = np.asarray(nib.load(label_file).dataobj)
        client.remove_session(session)
        for name, value in VALUES.items():
            out[name].append(dice(pred == value, gt == GT_VALUES[name]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="trained models/model.pt (trained here when absent)")
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--save_weights", type=Path, help="keep the weights trained here (for --weights later)")
    parser.add_argument("--train_cases", type=int, default=8,
                        help="synthetic cases made for training here (80%% train, 20%% validation)")
    parser.add_argument("--train_log", type=Path, help="write the training's output (loss, validation Dice) here")
    parser.add_argument("--protocols", default="",
                        help="click protocols to run, comma-separated among automatic,current,spoiled (default all)")
    parser.add_argument("--train_only", action="store_true",
                        help="train (and --save_weights / --save_baseline_weights), measure nothing")
    parser.add_argument("--baseline_weights", type=Path,
                        help="weights of the non-interactive control (trained here and saved there when absent)")
    parser.add_argument("--save_baseline_weights", type=Path, help="keep the control's weights trained here")
    parser.add_argument("--no_baseline", action="store_true", help="leave the non-interactive control out")
    parser.add_argument("--finetune_from", type=Path,
                        help="train the interactive bundle from these weights (fine-tuning) rather than from scratch")
    parser.add_argument("--overrides", default="{}",
                        help='JSON config overrides for training and serving, e.g. \'{"guidance_sigma": 5}\'')
    parser.add_argument("--cases", type=int, default=6, help="held-out cases for the simulated annotator")
    parser.add_argument("--max_clicks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="roi128,sample,ct512")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of the server")
    parser.add_argument("--whole_answers", action="store_true",
                        help="simulated clicks get whole-volume answers (default: the prompt region, as in Slicer)")
    parser.add_argument("--latency_only", action="store_true",
                        help="only the latency table, with random weights unless --weights (no training)")
    args = parser.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    overrides = {**SMALL, **json.loads(args.overrides)}
    baseline = not (args.no_baseline or args.latency_only)
    with tempfile.TemporaryDirectory(prefix="lz-interactive-") as tmp_name:
        tmp = Path(tmp_name)
        bundles = tmp / "bundles"
        bundle = bundle_copy(bundles, overrides)
        control = bundle_copy(tmp / "control", {**overrides, **CONTROL}) if baseline else None
        data = None
        if (not args.weights and not args.latency_only) or (
                baseline and not (args.baseline_weights and args.baseline_weights.exists())):
            # the same training cases for the interactive model and the control
            data = build_sample_studies(tmp / "msd", n_images=args.train_cases, n_labeled=args.train_cases,
                                        shape=(64, 64, 40), spacing=(2.25, 2.25, 3.2), layout="msd")
        (bundle / "models").mkdir(exist_ok=True)
        if args.weights:
            shutil.copy(args.weights, bundle / "models" / "model.pt")
        elif not args.latency_only:
            train(bundle, data, args.epochs, env, args.train_log, init=args.finetune_from)
            if args.save_weights:
                shutil.copy(bundle / "models" / "model.pt", args.save_weights)
        if control is not None:
            (control / "models").mkdir(exist_ok=True)
            if args.baseline_weights and args.baseline_weights.exists():
                shutil.copy(args.baseline_weights, control / "models" / "model.pt")
            else:
                log = args.train_log.with_name(args.train_log.name + ".control") if args.train_log else None
                train(control, data, args.epochs, env, log)
                for keep in (args.baseline_weights, args.save_baseline_weights):
                    if keep:
                        shutil.copy(control / "models" / "model.pt", keep)
        if args.train_only:
            return
        # held-out cases: seeds the training data did not use
        studies = tmp / "studies"
        studies.mkdir()
        truth, affines = {}, {}
        for n in range(args.cases):
            image, label, _ = make_ct_case(HELD_OUT_SEED + n, shape=(64, 64, 40), spacing=(2.25, 2.25, 3.2))
            affine = scanner_affine((64, 64, 40), (2.25, 2.25, 3.2))
            nib.save(nib.Nifti1Image(image, affine), str(studies / f"test_{n:03d}.nii.gz"))
            truth[f"test_{n:03d}"] = label
            affines[f"test_{n:03d}"] = affine
        volumes = tmp / "volumes"
        volumes.mkdir()
        control_dice: dict[str, list[float]] = {}
        if control is not None:  # the control first, on its own server (same name, same serving path)
            conf = f"models={NAME},bundles={control.parent},skip_scoring=true,skip_trainers=true"
            with run_server(studies, tmp / "control_server.log", conf=conf, timeout=600, extra_env=env) as server:
                control_dice = automatic_dice(server.client(), studies, truth)
        conf = f"models={NAME},bundles={bundles},skip_scoring=true,skip_trainers=true"
        with run_server(studies, tmp / "server.log", conf=conf, timeout=600, extra_env=env) as server:
            client = server.client()
            rng = np.random.default_rng(0)
            print(f"\n== click-to-label round trip (median of {args.repeats}, seconds; server threads {args.threads})")
            print(f"{'volume (mode)':<26}{'round trip':>11}{'http+other':>11}{'pre':>8}{'network':>9}"
                  f"{'post':>8}{'write':>8}{'worst':>8}")
            for key in args.sizes.split(","):
                shape = SIZES[key]
                path = volumes / f"{key}.nii.gz"
                write_volume(path, shape, 7)
                for mode in MODES:
                    m = latencies(client, path, args.repeats, rng, mode)
                    name = f"{key} {'x'.join(map(str, shape))} {mode}".rstrip()
                    print(f"{name:<26}{m['round trip']:>11.2f}{m['http+other']:>11.2f}{m['pre']:>8.2f}"
                          f"{m['network']:>9.2f}{m['post']:>8.2f}{m['write']:>8.2f}{m['worst']:>8.2f}", flush=True)
            if args.latency_only:
                return

            if control_dice:
                auto_dice = automatic_dice(client, studies, truth)
                print(f"\n== automatic mode: interactive model against the non-interactive control ({args.cases} "
                      "held-out cases; mean, sd over cases; paired difference)")
                print(f"{'structure':<14}{'interactive':>12}{'sd':>6}{'no-int':>8}{'sd':>6}{'diff':>8}{'sd':>6}"
                      f"{'int>no-int':>12}")
                for name in VALUES:
                    a, b = np.asarray(auto_dice[name]), np.asarray(control_dice[name])
                    print(f"{name:<14}{a.mean():>12.3f}{a.std():>6.3f}{b.mean():>8.3f}{b.std():>6.3f}"
                          f"{(a - b).mean():>+8.3f}{(a - b).std():>6.3f}{f'{int((a > b).sum())}/{len(a)}':>12}",
                          flush=True)

            cols = ["auto", "dice@1", "dice@3", "dice@5", "dice@10", "noc85", "noc90", "auc"]
            protocols = [("automatic", "clicks from the automatic result", False, False),
                         ("current", "clicks refining the current mask (prior)", True, False),
                         ("spoiled", "clicks refining a spoiled suggestion (prior)", True, True)]
            chosen = args.protocols.split(",") if args.protocols else [p[0] for p in protocols]
            shapes = {}
            for key, title, refine, spoiled in protocols:
                if key not in chosen:
                    continue
                print(f"\n== simulated annotator, {title} ({args.cases} held-out cases, up to {args.max_clicks} "
                      "clicks)")
                first = "start" if spoiled else "auto"
                ctrl = ["no-int"] if control_dice else []
                print(f"{'structure':<14}" + "".join(f"{c:>8}" for c in [first, *ctrl, *cols[1:]]) + f"{'s/click':>9}")
                for name, value in VALUES.items():
                    rows, secs, prompt_rows = [], [], []
                    for case, gt in truth.items():
                        session = client.create_session(str(studies / f"{case}.nii.gz"))["session_id"]

                        def predict(params, session=session):
                            label_file, _ = client.infer(NAME, "", params, session_id=session)
                            return np.asarray(nib.load(label_file).dataobj)

                        truth_mask = gt == GT_VALUES[name]
                        start = np.where(spoiled_suggestion(truth_mask), value, 0) if spoiled else None
                        clicks = predictor(client, session, gt.shape, region=not args.whole_answers,
                                           refine=name if refine else None, start=start, affine=affines[case],
                                           tmp=tmp)
                        run = simulate_clicks(clicks, truth_mask, name, value, args.max_clicks)
                        rows.append(run.summary(args.max_clicks))
                        secs += run.seconds[1:]
                        if not refine:
                            prompt_rows.append(prompt_dice(predict, truth_mask, name, value))
                        client.remove_session(session)
                    mean = {c: float(np.mean([r[c] for r in rows if c in r])) for c in cols if c in rows[0]}
                    if control_dice:
                        mean["no-int"] = float(np.mean(control_dice[name]))
                    print(f"{name:<14}" + "".join(f"{mean.get(c, float('nan')):>8.2f}" for c in [cols[0], *ctrl,
                                                                                                 *cols[1:]])
                          + f"{statistics.median(secs) if secs else float('nan'):>9.2f}", flush=True)
                    if prompt_rows:
                        shapes[name] = {k: float(np.mean([r[k] for r in prompt_rows])) for k in prompt_rows[0]}
            if not shapes:
                return
            print("\n== one prompt alone (Dice)")
            print(f"{'structure':<14}" + "".join(f"{k:>10}" for k in next(iter(shapes.values()))))
            for name, row in shapes.items():
                print(f"{name:<14}" + "".join(f"{v:>10.2f}" for v in row.values()))


if __name__ == "__main__":
    main()
