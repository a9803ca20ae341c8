"""The ``labelzoo`` command line: ``fire`` over the plain functions of the package, nothing else.

Run ``labelzoo --help`` for the list of commands and ``labelzoo COMMAND --help`` for one of them.
"""

from __future__ import annotations

import logging
import sys

import fire

from labelzoo import __version__
from labelzoo.data import build_brats_studies, build_cxr_studies, build_sample_studies
from labelzoo.errors import LabelZooError
from labelzoo.planning import commands as plan_commands
from labelzoo.planning import crossval as plan_crossval
from labelzoo.serve import serve
from labelzoo.simulate.commands import simulate
from labelzoo.zoo import commands as zoo_commands


def version() -> str:
    """Print the LabelZoo version. Example: labelzoo version
    """
    return __version__


def sample_data(out: str, n_images: int = 8, n_labeled: int = 3, shape: str | None = None,
                spacing: str | None = None, seed: int = 0, layout: str = "monailabel",
                overwrite: bool = False, kind: str = "ct", enhancing_label: int = 4) -> str:
    """Build synthetic demo studies (no download) in OUT: abdominal CT (default), brain MRI or chest X-ray.

    --kind ct: CT labelled in BTCV numbering (spleen 1, left kidney 3, liver 6), 96x96x64 at 1.5x1.5x2 mm.
    --kind brats: 4-channel MRI (T1, T1Gd, T2, FLAIR in one 4D NIfTI) with a tumour in BraTS labels
    (1 necrosis, 2 oedema, 4 enhancing; 3 with --enhancing_label 3), 64x64x48 at 1 mm.
    --kind cxr: 2D frontal chest radiographs with lung masks (0/1), 288x256 pixels; --layout msd writes PNG
    (the input of bundles/lung_xray_unetplusplus_segmentation), --layout monailabel 2D NIfTI.
    With --layout monailabel (default) OUT is a MONAI Label local datastore (images, labels/final); with
    --layout msd it is a Medical Segmentation Decathlon dataset (imagesTr, labelsTr, imagesTs, dataset.json);
    with --layout dicom (ct only) one DICOM CT series per case, to load into a PACS for the DICOMweb datastore.
    Example: labelzoo sample-data data/sample --n_images 8 --n_labeled 3
    Example: labelzoo sample-data data/brats --kind brats --layout msd
    Example: labelzoo sample-data data/cxr --kind cxr --layout msd --n_images 40 --n_labeled 32

    Args:
        out: destination folder; must be empty unless --overwrite.
        n_images: number of cases.
        n_labeled: cases with a label (the rest are for annotation).
        shape: volume size in voxels, X,Y,Z (default 96,96,64 for ct, 64,64,48 for brats); ROWS,COLUMNS for cxr.
        spacing: voxel size in mm, X,Y,Z (default 1.5,1.5,2.0 for ct, 1,1,1 for brats; not for cxr).
        seed: base random seed (the same seed gives the same data).
        layout: monailabel, msd or dicom.
        overwrite: write into a non-empty folder.
        kind: ct, brats or cxr.
        enhancing_label: brats only: label of the enhancing tumour, 4 (BraTS 2021) or 3 (BraTS 2023+).
    """
    if kind not in ("ct", "brats", "cxr"):
        raise LabelZooError(f"--kind must be 'ct', 'brats' or 'cxr', got {kind!r}")
    sizes = {k: v for k, v in (("shape", shape), ("spacing", spacing)) if v is not None}
    if kind == "cxr":
        if spacing is not None:
            raise LabelZooError("--spacing does not apply to --kind cxr (radiographs are written in pixels)")
        path = build_cxr_studies(out, n_images=n_images, n_labeled=n_labeled, seed=seed, layout=layout,
                                 overwrite=overwrite, **sizes)
    elif kind == "brats":
        path = build_brats_studies(out, n_images=n_images, n_labeled=n_labeled, seed=seed, layout=layout,
                                   overwrite=overwrite, enhancing_label=enhancing_label, **sizes)
    else:
        path = build_sample_studies(out, n_images=n_images, n_labeled=n_labeled, seed=seed, layout=layout,
                                    overwrite=overwrite, **sizes)
    return f"wrote {n_images} cases ({n_labeled} labelled) to {path}"


def bundle_verify(bundle_dir: str, variant: str | None = None, run: bool = True, workdir: str | None = None,
                  timeout: int = 900) -> int:
    """Check a MONAI bundle: model-zoo layout and metadata schema, MONAI workflow properties, the MONAI Label
    contract, network shapes and TorchScript export, and (unless --norun) a real 1-epoch train, evaluate and
    inference run on tiny synthetic data. Prints one line per problem (file#config_id: what is wrong) and
    exits 1 when there is any.
    Example: labelzoo bundle verify bundles/btcv_ct_unetr_segmentation --variant configs/baseline.json

    Args:
        bundle_dir: the bundle folder (holding configs/).
        variant: an override config (e.g. configs/baseline.json) merged after the bundle's configs.
        run: run train/evaluate/inference for real (--norun for the static checks only).
        workdir: keep the bundle copy, synthetic data, outputs and logs in this folder.
        timeout: seconds allowed for each `python -m monai.bundle run`.
    """
    from labelzoo.bundle.verify import format_report, verify_bundle

    problems = verify_bundle(bundle_dir, run=run, variant=variant, workdir=workdir, timeout=timeout)
    print(format_report(bundle_dir, problems), file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


def search(dataset: str, budget: int = 16, out: str | None = None, resume: bool = False, pool: int = 500,
           top_k: int = 2, proxy_iterations: int = 20, full_iterations: int = 200, patch: str = "32,32,32",
           base_channels: int = 8, seed: int = 0, max_epochs: int = 100, name: str | None = None,
           threads: int | None = None, device: str = "cpu", ray_address: str | None = None,
           cpus_per_trial: float = 1, gpus_per_trial: float | None = None, max_concurrent: int | None = None,
           max_retries: int = 1, executor: str = "ray") -> str | int:
    """T-AutoML search: find a network, augmentations, loss and learning rate for DATASET; emit a bundle.

    Proxy-trains BUDGET random configurations (appending each finished trial to OUT/trials.jsonl), trains
    the transformer ranking predictor, ranks a pool of unseen configurations, fully trains the best and
    writes the winner as a MONAI bundle in OUT. Ctrl-C keeps every finished trial; --resume continues.
    Every training is a Ray task: an embedded Ray instance by default (one CPU trial at a time), or a cluster
    with --ray_address auto (trials run where --cpus_per_trial / --gpus_per_trial are free).
    Example: labelzoo search data/msd --budget 16 --out runs/search --pool 500 --top_k 2

    Args:
        dataset: a dataset folder in MSD layout (dataset.json, imagesTr, labelsTr).
        budget: configurations to sample and proxy-train (at least 3).
        out: search folder (trial log, predictor report, weights, the bundle); default DATASET-search.
        resume: continue the search in OUT (same dataset, seed and schedule).
        pool: unseen configurations the predictor ranks.
        top_k: best-ranked pool configurations to train fully (plus the best proxy one).
        proxy_iterations: optimiser steps per proxy trial.
        full_iterations: optimiser steps per full training.
        patch: training patch X,Y,Z (each at least 16).
        base_channels: network width at full resolution (multiple of 4).
        seed: random seed of the sampled configurations and the training.
        max_epochs: train#trainer#max_epochs written into the bundle's train.json.
        name: bundle folder name (model-zoo <anatomy>_<modality>_<method>_<task>); default from the dataset.
        threads: torch CPU threads for training (1 is fastest for small networks on shared cores).
        device: where to train: cpu (default), cuda, cuda:N or auto (auto: each trial's own node decides).
        ray_address: an existing Ray cluster (auto, ray://HOST:PORT); default: Ray started in this process.
        cpus_per_trial: CPUs each trial asks Ray for (and its torch threads unless --threads is given).
        gpus_per_trial: GPUs each trial asks Ray for (1: N GPUs run N trials at once; 0.5 shares one); default
            1 when the cluster has GPUs and --device is not cpu, else 0.
        max_concurrent: trials running at once (default: 1 on the CPUs of the embedded Ray, else what fits).
        max_retries: retries of a failed trial (its error is logged in trials.jsonl) before it is given up.
        executor: ray (default) or inline (one trial after another in this process, no Ray).
    """
    from pathlib import Path

    from labelzoo.automl.search import SearchSettings, parse_patch, run_search
    from labelzoo.distributed.runner import RayOptions

    settings = SearchSettings(dataset=str(dataset), budget=budget, pool=pool, top_k=top_k,
                              proxy_iterations=proxy_iterations, full_iterations=full_iterations,
                              patch_size=parse_patch(patch), base_channels=base_channels, seed=seed,
                              max_epochs=max_epochs, name=name, threads=threads, device=device)
    out_dir = Path(out) if out else Path(f"{Path(str(dataset)).resolve().name}-search")
    try:
        ray = RayOptions(address=ray_address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                         max_concurrent=max_concurrent, max_retries=max_retries, executor=executor)
        result = run_search(settings, out_dir, resume=resume, ray=ray)
    except KeyboardInterrupt:
        print(f"labelzoo: interrupted: finished trials are kept in {out_dir / 'trials.jsonl'}; continue with "
              f"`labelzoo search {dataset} --out {out_dir} --resume`", file=sys.stderr)
        return 130
    held = result.predictor.get("heldout") or {}
    quality = (f"; predictor on held-out configurations: pairwise accuracy {held['pairwise_accuracy']:.3f}, "
               f"Kendall tau {held['kendall_tau']:.3f}") if held else ""
    return f"winner: Dice {result.dice:.4f} after {result.trials} trials{quality}\nbundle: {result.bundle}"


def agreement(studies: str, threshold: float = 0.8, plot: str | None = None, json_out: str | None = None) -> str:
    """Agreement between annotators on a LabelZoo datastore: counts, time per label, Dice per class, disputed images.

    Reads what the server stored for images with several reads (--conf reads_per_image=2 or more).
    Example: labelzoo agreement data/sample --plot agreement.png
    """
    from labelzoo.annotators import agreement_report, format_report, plot_agreement, records_from_datastore
    from labelzoo.io import write_json_atomic

    if not 0.0 <= float(threshold) <= 1.0:
        raise LabelZooError(f"--threshold must be in [0, 1], got {threshold}")
    report = agreement_report(records_from_datastore(studies), float(threshold))
    if not report["images"]:
        raise LabelZooError(f"no image in {studies} has two or more reads yet (serve it with "
                            "--conf reads_per_image=2 and let two annotators label the same images)")
    if json_out:
        write_json_atomic(json_out, report)
    text = format_report(report)
    if plot:
        text += f"\nplot: {plot_agreement(report, str(plot))}"
    return text


COMMANDS = {
    "agreement": agreement,
    "bundle": {"verify": bundle_verify},
    "search": search,
    "serve": serve,
    "simulate": simulate,
    "sample-data": sample_data,
    "version": version,
    "zoo": zoo_commands.COMMANDS,
    "train-cv": plan_crossval.train_cv,
    "find-best": plan_crossval.find_best,
    # `labelzoo plan DATASET` runs fingerprint + plan + emit; `labelzoo plan fingerprint DATASET` one stage.
    "plan": {
        "run": plan_commands.run,
        "fingerprint": plan_commands.fingerprint,
        "plans": plan_commands.plans,
        "show": plan_commands.show,
    },
}

#: Command groups whose first positional argument, when it is not a sub-command, goes to a default one.
DEFAULT_SUBCOMMANDS = {"plan": "run"}


def _route_default_subcommand(argv: list[str]) -> list[str]:
    """``labelzoo plan DATASET`` -> ``labelzoo plan run DATASET`` (fire has no default sub-command)."""
    if len(argv) >= 2 and argv[0] in DEFAULT_SUBCOMMANDS:
        group = COMMANDS[argv[0]]
        if argv[1] not in group and not argv[1].startswith("-"):
            return [argv[0], DEFAULT_SUBCOMMANDS[argv[0]], *argv[1:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``labelzoo`` console script; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    argv = _route_default_subcommand(list(argv))
    try:
        result = fire.Fire(COMMANDS, command=argv, name="labelzoo", serialize=_serialize)
    except LabelZooError as e:
        print(f"labelzoo: error: {e}", file=sys.stderr)
        return e.exit_code
    except fire.core.FireExit as e:
        return int(e.code or 0)
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    return 0


def _serialize(value: object) -> object:
    """Print strings as they are; return codes (ints) are not printed."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    return value


if __name__ == "__main__":
    sys.exit(main())
