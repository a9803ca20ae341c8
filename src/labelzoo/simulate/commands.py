"""``labelzoo simulate``: does LabelZoo save annotation effort? A simulated annotator through the real server."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from labelzoo.errors import LabelZooError
from labelzoo.io import write_json_atomic

logger = logging.getLogger(__name__)


def _as_list(value: Any, name: str, cast: type = str) -> list:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        out = [cast(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raise LabelZooError(f"--{name} must be a comma-separated list of {cast.__name__}, got {value!r}") from None
    if not out:
        raise LabelZooError(f"--{name} is empty")
    return out


def _as_dict(value: Any, name: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise LabelZooError(f"--{name} must be a JSON object of config id -> value, got {value!r}") from None
    if not isinstance(value, dict):
        raise LabelZooError(f"--{name} must be a JSON object of config id -> value, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _positive(value: Any, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise LabelZooError(f"--{name} must be an integer >= {low}, got {value!r}")
    return value


def find_bundle(model: str, option: str = "--model") -> Path:
    """A bundle folder (with ``configs/metadata.json``), given as a path or as a name in the repository's bundles/."""
    from labelzoo.paths import bundles_dir

    path = Path(model).expanduser()
    if not (path / "configs" / "metadata.json").is_file():
        try:
            repo = bundles_dir() / model
        except LabelZooError:
            repo = path
        path = repo
    if not (path / "configs" / "metadata.json").is_file():
        raise LabelZooError(f"{option} {model}: not a bundle folder (no configs/metadata.json) nor a bundle in "
                            "bundles/")
    return path.resolve()


def _smoke_overrides(bundle: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    path = bundle / "configs" / "smoke.json"
    if not path.is_file():
        raise LabelZooError(f"--smoke: {path} does not exist")
    smoke = json.loads(path.read_text())
    return ({**smoke.get("all", {}), **smoke.get("train", {})}, {**smoke.get("all", {}), **smoke.get("inference", {})})


def _stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so the servers a run started are stopped on the way out."""
    import signal
    import threading

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def simulate(dataset: str, model: str, out: str = "simulation", strategies: str = "random,epistemic",
             seeds: str = "0", initial: int = 2, budget: int = 8, train_every: int = 2, n_test: int = 4,
             epochs: int = 5, train_overrides: str | dict | None = None, infer_overrides: str | dict | None = None,
             smoke: bool = False, device: str = "cpu", conf: str | dict | None = None, server: str | None = None,
             reference_dice: float | None = None, reference: bool = False,
             strategy_options: str | dict | None = None, click_model: str | None = None, max_clicks: int = 20,
             threads: int | None = None, overwrite: bool = False) -> str:
    """Play an annotator against a live LabelZoo server and measure the annotation effort each strategy saves.

    For every strategy and seed: a fresh server (`labelzoo serve` on a free loopback port), an empty
    datastore into which the pool images are uploaded with --initial of them labelled, and an untrained copy
    of the model. Each round: next_sample(strategy) -> /infer (the suggestion) -> effort of correcting it
    (voxels changed, 1 - Dice vs the truth) -> save_label (the truth). A slice-level strategy (boundary_slices,
    random_slices) answers with the slices to annotate: the annotator submits the truth on those slices only,
    with label info {"annotated_slices": {"axis", "slices"}}; the server trains with the other voxels ignored, and
    the effort is counted on those slices (annotated slices / voxels columns). Every --train_every labels:
    POST /train (--epochs, followed through GET /train/) and the served model's Dice / HD95 on held-out test
    cases (uploaded with /infer, never put in the datastore). Stops at --budget labels. All through
    monailabel.client.MONAILabelClient, the client the Slicer plugin uses.
    Writes OUT/<strategy>-seed<seed>.csv (one row per round), OUT/summary.json, OUT/summary.md (tables: final
    Dice, area under the learning curve, labels and annotated slices to reach 95% of the reference Dice, effort,
    mean ± std over seeds; wall time per step) and OUT/simulation.png (test Dice vs labels and vs annotated
    slices, cumulative voxels corrected vs labels, one line per strategy). With --reference, OUT/full-seed<s>.csv
    is the full-data reference of each seed (every pool image labelled, the same trainings as a run makes, each
    continuing from the last), and the 95% target is taken from it. With --click_model (an interactive bundle,
    e.g. abdomen_ct_dynunet_interactive_annotation with trained weights) every whole-image round also records
    `clicks`: the simulated clicks (the interactive benchmark's protocol: each at the centre of the largest error
    region) that bring the suggestion to Dice 0.9, structure by structure, the interactive model refining the
    suggestion sent as its prior mask (0 for a structure already at 0.9; --max_clicks for one never there).
    Example: labelzoo simulate data/msd --model planned/x_ct_nnunet3dfullres_segmentation --strategies
    random,fg_random,epistemic,boundary --seeds 0,1 --budget 8 --train_overrides '{"iterations_per_epoch": 20}'

    Args:
        dataset: labelled cases: an MSD dataset (dataset.json, imagesTr, labelsTr) or a MONAI Label datastore
            (images + labels/final). Class names in dataset.json are matched to the model's label names.
        model: the bundle to train and serve: a bundle folder or the name of one in bundles/ (with --server:
            the served model's name).
        out: output folder (must be empty unless --overwrite).
        strategies: comma-separated active-learning strategies the server offers (random, first, epistemic,
            tta, hybrid, fg_random, boundary, clasp; slice-level: boundary_slices, random_slices).
        seeds: comma-separated run seeds (which pool cases start labelled; the test set is fixed).
        initial: labelled images in the datastore at the start.
        budget: stop when this many images are labelled (initial ones included).
        train_every: train (and score on the test set) after this many new labels.
        n_test: held-out test cases (never in the datastore).
        epochs: max_epochs of each training (continuing from the previous weights).
        train_overrides: JSON object of train.json config ids -> values for the model copy,
            e.g. '{"iterations_per_epoch": 20}'.
        infer_overrides: the same for inference.json.
        smoke: apply the bundle's configs/smoke.json (a tiny network for CPU) before the overrides.
        device: cpu, cuda or auto: where the server infers and trains.
        conf: extra server settings (as labelzoo serve --conf), e.g. epistemic_samples=3.
        server: URL of a running LabelZoo server with an empty datastore, instead of starting one per run
            (one strategy and one seed only; the model starts from whatever weights it has).
        reference_dice: the "full data" Dice for the labels-to-95% figure (default: the mean of the --reference
            runs, else the best Dice any run reached).
        reference: also run, per seed, the full-data reference (every pool image labelled, the same training).
        strategy_options: JSON object of next_sample options for every query (checked by the server), e.g.
            '{"n_slices": 3, "slice_gap": 3}' for the slice-level strategies.
        click_model: an interactive bundle (folder or name in bundles/; with --server: the served model's name)
            that measures the clicks to Dice 0.9 of each suggestion; served as it is (its weights are kept, it is
            never trained by the loop); its label names must include the model's.
        max_clicks: clicks at most per structure for --click_model.
        threads: CPU threads of each server and of the trainings and scorings it starts (OMP_NUM_THREADS); default
            torch's own choice (one per core). On cores other work already uses, 1 is much faster, as no threads
            spin-wait for each other (measured on 2 shared cores, 0.26 s per training iteration against 1.5-2 s).
        overwrite: write into a non-empty OUT.
    """
    from labelzoo.progress import progress_bar
    from labelzoo.simulate.dataset import read_dataset
    from labelzoo.simulate.loop import REFERENCE, RunSettings, run_one
    from labelzoo.simulate.report import markdown_table, plot, summarize, time_table

    strategy_list = _as_list(strategies, "strategies")
    seed_list = _as_list(seeds, "seeds", int)
    initial = _positive(initial, "initial")
    budget = _positive(budget, "budget", initial + 1)
    train_every = _positive(train_every, "train_every")
    n_test = _positive(n_test, "n_test")
    epochs = _positive(epochs, "epochs")
    if device not in ("cpu", "cuda", "auto"):
        raise LabelZooError(f"--device must be cpu, cuda or auto, got {device!r}")
    from labelzoo.appconf import check_conf, parse_conf

    server_conf = check_conf(parse_conf(conf)) if conf else {}
    train_ovr, infer_ovr = _as_dict(train_overrides, "train_overrides"), _as_dict(infer_overrides, "infer_overrides")
    from labelzoo.options import STRATEGY_OPTIONS, check_options

    sample_options = check_options(_as_dict(strategy_options, "strategy_options"), STRATEGY_OPTIONS,
                                   "--strategy_options")
    if not isinstance(reference, bool):
        raise LabelZooError(f"--reference is a flag (--reference / --noreference), got {reference!r}")
    if server and reference:
        raise LabelZooError("--reference needs a fresh server per run: leave --server out")
    if server and len(strategy_list) * len(seed_list) > 1:
        raise LabelZooError("--server runs one strategy and one seed (its datastore and weights cannot be reset); "
                            "leave --server out to compare several")
    bundle = None
    if not server:
        bundle = find_bundle(model)
        if smoke:
            smoke_train, smoke_infer = _smoke_overrides(bundle)
            train_ovr, infer_ovr = {**smoke_train, **train_ovr}, {**smoke_infer, **infer_ovr}
        for key in ("num_workers",):  # worker processes only cost start-up time for a handful of small images
            train_ovr.setdefault(key, 0)
            infer_ovr.setdefault(key, 0)
    max_clicks = _positive(max_clicks, "max_clicks")
    if threads is not None:
        threads = _positive(threads, "threads")
        if server:
            raise LabelZooError("--threads applies to the servers simulate starts: set OMP_NUM_THREADS where you "
                                "start the --server instead")
    click_bundle = ""
    if click_model and not server:
        click_path = find_bundle(str(click_model), "--click_model")
        from labelzoo.discovery import read_bundle_info

        if not read_bundle_info(click_path).guidance_channels:
            raise LabelZooError(f"--click_model {click_path}: not an interactive bundle (its metadata declares no "
                                "guidance_channels)")
        click_bundle = str(click_path)
    data = read_dataset(dataset)
    out_dir = Path(out).expanduser()
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise LabelZooError(f"--out {out_dir} is not empty: choose an empty folder or pass --overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = RunSettings(model=bundle.name if bundle else model, initial=initial, budget=budget,
                           train_every=train_every, n_test=n_test, epochs=epochs, device=device,
                           server_conf=server_conf, sample_options=sample_options,
                           click_model=str(click_model or "") if server else "", click_bundle=click_bundle,
                           max_clicks=max_clicks, threads=threads)
    rounds = max(0, min(budget, len(data.cases) - n_test) - initial)
    _stop_on_sigterm()
    bar = progress_bar(total=rounds * len(strategy_list) * len(seed_list), desc="simulate", unit="label")
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    started = time.monotonic()
    try:
        for seed in seed_list:
            for strategy in strategy_list + ([REFERENCE] if reference else []):
                bar.set_postfix_str(f"{strategy} seed {seed}: training on the initial labels")

                def tick(msg: str) -> None:
                    bar.update(1)
                    bar.set_postfix_str(msg)

                runs[(strategy, seed)] = run_one(settings, data, bundle, strategy, seed, out_dir, server=server,
                                                 tick=tick, bundle_overrides=(train_ovr, infer_ovr))
    finally:
        bar.close()
    summary = summarize(runs, reference_dice=reference_dice)
    summary["settings"] = {"dataset": str(data.root), "model": str(bundle or model), "strategies": strategy_list,
                           "seeds": seed_list, "initial": initial, "budget": budget, "train_every": train_every,
                           "n_test": n_test, "epochs": epochs, "train_overrides": train_ovr, "reference": reference,
                           "strategy_options": sample_options,
                           "infer_overrides": infer_ovr, "device": device, "conf": server_conf, "threads": threads,
                           "wall_time_s": round(time.monotonic() - started, 1)}
    write_json_atomic(out_dir / "summary.json", summary)
    tables = markdown_table(summary) + "\n\nMean wall time (s): per round (score, next, infer, save), " \
        "per training (train, test scoring)\n\n" + time_table(summary) + "\n"
    (out_dir / "summary.md").write_text(tables)
    png = plot(runs, out_dir / "simulation.png",
               title=f"{Path(str(data.root)).name}: {settings.model}, {len(seed_list)} seed(s)")
    for leftover in out_dir.glob("*/tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    return f"{tables}\nwrote {out_dir / 'summary.json'}, {png} and one CSV per run"
