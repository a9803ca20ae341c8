"""Cross-validation and the final choice (stage 4, IO): ``labelzoo train-cv`` and ``labelzoo find-best``.

``train-cv BUNDLE`` trains one model per fold (``python -m monai.bundle run`` in a subprocess, weights in
``BUNDLE/cv/fold_K/model.pt``), predicts each fold's held-out cases with that fold's model
(``BUNDLE/cv/predictions/<case>_seg.nii.gz``, the stage-1 input of a cascade, and ``<case>_prob.nii.gz``
softmax maps for ensembling) and scores them against the labels, with and without largest-component
post-processing: ``BUNDLE/cv/summary.json``.

``find-best OUT`` reads the summaries of the planned bundles in ``OUT``, scores every pair ensemble from
the saved probabilities, picks the best configuration or ensemble by cross-validation mean Dice
(:func:`labelzoo.planning.choose.choose_best`), decides the post-processing on it
(:func:`labelzoo.planning.choose.decide_postprocessing`) and writes ``OUT/find_best.json`` and a servable
bundle ``OUT/best/<bundle name>``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from labelzoo.errors import LabelZooError
from labelzoo.io import write_json_atomic
from labelzoo.planning import choose

logger = logging.getLogger(__name__)

CV_DIR = "cv"


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LabelZooError(f"{path} not found") from None


def _bundle_info(bundle: Path) -> tuple[dict, dict, dict]:
    """(train.json, plan.json, datalist.json) of a planned bundle, with a clear error when it is not one."""
    for f in ("train.json", "inference.json", "plan.json", "datalist.json"):
        if not (bundle / "configs" / f).is_file():
            raise LabelZooError(f"{bundle} is not a bundle made by `labelzoo plan` (no configs/{f})")
    return (_load_json(bundle / "configs" / "train.json"), _load_json(bundle / "configs" / "plan.json"),
            _load_json(bundle / "configs" / "datalist.json"))


def _run(cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise LabelZooError(f"`{' '.join(cmd[:6])} ...` failed (exit {proc.returncode}); log {log}:\n{tail}")


def _read_labels(path: Path) -> np.ndarray:
    import nibabel as nib

    return np.rint(np.asanyarray(nib.load(str(path)).dataobj)).astype(np.int64)


def predict_cases(bundle: Path, cases: list[dict], checkpoint: Path, out_dir: Path) -> None:
    """Run the bundle's inference.json on ``cases`` with ``checkpoint``, saving label maps and softmax maps."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    parser["datalist"] = [{"image": c["image"]} for c in cases]
    parser["ckpt_dir"] = str(checkpoint.parent)
    parser["output_dir"] = str(out_dir)
    parser["dataloader#num_workers"] = 0
    post = parser["postprocessing"]["transforms"]
    at = next(i for i, t in enumerate(post) if t.get("_target_") == "Invertd") + 1
    post[at:at] = [{"_target_": "CopyItemsd", "keys": "pred", "names": "prob"},
                   {"_target_": "SaveImaged", "keys": "prob", "output_dir": "@output_dir", "output_postfix": "prob",
                    "separate_folder": False, "resample": False, "print_log": False}]
    parser["postprocessing"]["transforms"] = post
    parser["handlers"][0]["load_path"] = str(checkpoint)
    if parser.get("initialize"):
        parser.get_parsed_content("initialize")
    parser.get_parsed_content("evaluator").run()


def score_fold_predictions(cases: list[dict], pred_dir: Path, label_values: list[int],
                           candidates: list[int]) -> dict[str, dict]:
    """Dice per case and class (class indices) of saved predictions, without and with each candidate LCC."""
    value_to_class = {v: i for i, v in enumerate(label_values)}
    classes = list(range(1, len(label_values)))
    cand = [value_to_class[v] for v in candidates if v in value_to_class]
    out = {}
    for c in cases:
        ref_raw = _read_labels(Path(c["label"]))
        ref = np.zeros_like(ref_raw)
        for v, i in value_to_class.items():
            ref[ref_raw == v] = i
        pred = _read_labels(pred_dir / f"{c['case_id']}_seg.nii.gz")
        out[c["case_id"]] = {
            "fold": c.get("fold"),
            "dice": {str(k): v for k, v in choose.dice_per_class(pred, ref, classes).items()},
            "dice_lcc": {str(k): choose.dice_per_class(choose.keep_largest_component(pred, k), ref, [k])[k]
                         for k in cand},
        }
    return out


def train_cv(bundle: str, folds: int = 5, num_epochs: int | None = None, iterations_per_epoch: int | None = None,
             val_interval: int | None = None, num_workers: int | None = None, only_fold: int | None = None) -> str:
    """Cross-validate a planned bundle: train one model per fold, predict and score the held-out cases.

    Writes BUNDLE/cv/fold_K/model.pt, BUNDLE/cv/predictions/ (label and softmax maps of every case, each
    predicted by the model that did not see it) and BUNDLE/cv/summary.json (Dice per case and class, with
    and without largest-component post-processing).
    Example: labelzoo train-cv planned/spleen_ct_nnunet3dfullres_segmentation --folds 5

    Args:
        bundle: a bundle folder written by `labelzoo plan`.
        folds: number of folds (default 5, as nnU-Net); at most the number of cases.
        num_epochs: override the bundle's epochs (default: the bundle's).
        iterations_per_epoch: override the iterations per epoch.
        val_interval: override the validation interval in epochs.
        num_workers: override the data-loading workers.
        only_fold: train and score this fold only (the others must exist for the summary).
    """
    root = Path(bundle).expanduser().resolve()
    train, plan, datalist = _bundle_info(root)
    cases = datalist["training"]
    if not isinstance(folds, int) or folds < 2:
        raise LabelZooError(f"--folds must be an integer of at least 2, got {folds!r}")
    if folds > len(cases):
        raise LabelZooError(f"--folds {folds} is more than the {len(cases)} training cases of {root.name}")
    from labelzoo.planning.emit import assign_folds

    fold_of = assign_folds([c["case_id"] for c in cases], folds)
    dataset_dir = Path(train["dataset_dir"])
    resolved = [{**c, "fold": fold_of[c["case_id"]],
                 "image": [str(dataset_dir / p) for p in c["image"]] if isinstance(c["image"], list)
                 else str(dataset_dir / c["image"]), "label": str(dataset_dir / c["label"])} for c in cases]
    cv = root / CV_DIR
    cv_datalist = cv / "datalist.json"
    write_json_atomic(cv_datalist, {"training": resolved})
    if num_epochs is not None and val_interval is None:  # validate (and save weights) at least at the end
        val_interval = min(int(train.get("val_interval", 1)), int(num_epochs))
    overrides: list[str] = []
    for key, value in (("num_epochs", num_epochs), ("iterations_per_epoch", iterations_per_epoch),
                       ("val_interval", val_interval), ("num_workers", num_workers)):
        if value is not None:
            overrides += [f"--{key}", str(value)]
    pred_dir = cv / "predictions"
    todo = [only_fold] if only_fold is not None else list(range(folds))
    for k in todo:
        fold_dir = cv / f"fold_{k}"
        logger.info("fold %d/%d: training", k + 1, folds)
        _run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(root / "configs" / "train.json"),
              "--bundle_root", str(root), "--datalist_file", str(cv_datalist), "--dataset_dir", "/",
              "--fold", str(k), "--ckpt_dir", str(fold_dir), "--output_dir", str(fold_dir / "logs"), *overrides],
             fold_dir / "train.log")
        held_out = [c for c in resolved if c["fold"] == k]
        logger.info("fold %d/%d: predicting %d held-out case(s)", k + 1, folds, len(held_out))
        predict_cases(root, held_out, fold_dir / "model.pt", pred_dir)
    label_values = train["label_values"]
    candidates = plan.get("lcc_candidates", label_values[1:])
    scores = score_fold_predictions([c for c in resolved if (pred_dir / f"{c['case_id']}_seg.nii.gz").is_file()],
                                    pred_dir, label_values, candidates)
    without = {c: {int(k): v for k, v in s["dice"].items()} for c, s in scores.items()}
    summary = {"configuration": plan["configuration"], "bundle": root.name, "folds": folds,
               "label_values": label_values, "lcc_candidates": candidates,
               "mean_dice": choose.mean_dice(without), "cases": scores}
    write_json_atomic(cv / "summary.json", summary)
    return f"{root.name}: {len(scores)} case(s) scored, cross-validation mean Dice {summary['mean_dice']:.4f}"


def _load_prob(path: Path) -> np.ndarray:
    import nibabel as nib

    arr = np.asanyarray(nib.load(str(path)).dataobj).astype(np.float32)
    return np.moveaxis(arr, -1, 0) if arr.ndim == 4 else arr[None]


def find_best(planned: str, out: str | None = None, all_folds: bool = False) -> str:
    """Choose the best configuration or pair ensemble by cross-validation mean Dice and decide the
    largest-component post-processing on it; write find_best.json and a servable bundle.

    Needs `labelzoo train-cv` on at least one bundle in PLANNED. The chosen single configuration becomes
    PLANNED/best/<bundle> (weights of its best fold; an ensemble is served by its host member's bundle holding
    the other members' networks and weights; post-processing set in inference.json); serve it with
    `labelzoo serve --conf bundles=PLANNED/best`. Example: labelzoo find-best planned

    Args:
        planned: the folder `labelzoo plan` wrote (bundles with cv/summary.json).
        out: folder for the chosen bundle (default PLANNED/best).
        all_folds: serve every fold model of the chosen configuration, averaged (nnU-Net's default; k times
            slower inference) instead of the best fold's.
    """
    root = Path(planned).expanduser().resolve()
    summaries = {}
    for s in sorted(root.glob(f"*/{CV_DIR}/summary.json")):
        data = _load_json(s)
        summaries[data["configuration"]] = (s.parent.parent, data)
    if not summaries:
        raise LabelZooError(f"no cross-validated bundle in {root}: run `labelzoo train-cv {root}/<bundle>` first")
    scores: dict[str, float] = {name: d["mean_dice"] for name, (_, d) in summaries.items()}
    members: dict[str, tuple[str, ...]] = {name: (name,) for name in summaries}
    for pair in choose.candidate_ensembles(list(summaries)):
        table, _ = _ensemble_tables([summaries[c] for c in pair], [])
        if table:
            name = choose.ensemble_name(pair)
            scores[name] = choose.mean_dice(table)
            members[name] = pair
    best = choose.choose_best(scores)
    # the bundle that serves the choice: the configuration itself, or the ensemble's host member (the one whose
    # inferer can wrap the others: a cascade first, then 3D full resolution, then low resolution)
    single = best if best in summaries else min(members[best], key=HOST_ORDER.index)
    bundle, summary = summaries[single]
    candidates = sorted({int(k) for s in summary["cases"].values() for k in s["dice_lcc"]})
    if best in summaries:  # train-cv scored the configuration's predictions with and without the step
        without = {c: {int(k): v for k, v in s["dice"].items()} for c, s in summary["cases"].items()}
        with_lcc: dict[int, dict] = {}
        for cls_idx in candidates:
            with_lcc[cls_idx] = {c: {**without[c], cls_idx: s["dice_lcc"][str(cls_idx)]}
                                 for c, s in summary["cases"].items() if str(cls_idx) in s["dice_lcc"]}
    else:  # an ensemble: decide on the ensemble's own cross-validation predictions, as nnU-Net does
        without, with_lcc = _ensemble_tables([summaries[c] for c in members[best]], candidates)
    kept = choose.decide_postprocessing(without, with_lcc, sorted(with_lcc))
    out_dir = Path(out).expanduser() if out else root / "best"
    others = [summaries[c] for c in members[best] if c != single]
    target = _write_best_bundle(bundle, summary, kept, out_dir, others, scores[best], all_folds)
    result = {"scores": scores, "best": best, "members": list(members[best]), "host": single,
              "served_bundle": str(target.relative_to(root)) if target.is_relative_to(root) else str(target),
              "postprocessing_lcc_classes": kept,
              "postprocessing_decided_on": best}
    write_json_atomic(root / "find_best.json", result)
    lines = [f"{k}: {v:.4f}" for k, v in sorted(scores.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines + [f"best: {best}; served bundle {target} (largest-component classes {kept})"])


def _ensemble_tables(members: list[tuple[Path, dict]], candidates: list[int]) -> tuple[dict, dict]:
    """Cross-validation Dice of the averaged softmax of ``members`` on the cases all of them predicted.

    Returns:
        ``(without, with_lcc)``: Dice per case and class of the ensemble's predictions, and for each class in
        ``candidates`` the same after keeping only that class' largest component (the tables
        :func:`labelzoo.planning.choose.decide_postprocessing` reads); empty when no case has every member's
        probabilities.
    """
    cases = set.intersection(*(set(d["cases"]) for _, d in members))
    without: dict[str, dict[int, float]] = {}
    with_lcc: dict[int, dict[str, dict[int, float]]] = {int(c): {} for c in candidates}
    label_values = members[0][1]["label_values"]
    classes = list(range(1, len(label_values)))
    cv_datalist = _load_json(members[0][0] / CV_DIR / "datalist.json")["training"]
    labels = {c["case_id"]: c["label"] for c in cv_datalist}
    for case in sorted(cases):
        probs = [members_dir / CV_DIR / "predictions" / f"{case}_prob.nii.gz" for members_dir, _ in members]
        if not all(p.is_file() for p in probs):
            continue
        arrays = [_load_prob(p) for p in probs]
        if len({a.shape for a in arrays}) != 1:
            continue
        pred = np.mean(arrays, axis=0).argmax(0)
        raw = _read_labels(Path(labels[case]))
        ref = np.zeros_like(raw)
        for i, v in enumerate(label_values):
            ref[raw == v] = i
        without[case] = choose.dice_per_class(pred, ref, classes)
        for c in with_lcc:
            with_lcc[c][case] = choose.dice_per_class(choose.keep_largest_component(pred, c), ref, classes)
    return without, with_lcc


#: Which member of an ensemble hosts it (its inferer wraps the others'), most preferred first.
HOST_ORDER = ["3d_cascade_fullres", "3d_fullres", "3d_lowres", "2d"]


def _best_fold(bundle: Path, summary: dict) -> int:
    """The fold whose held-out cases scored best (its weights are served)."""
    fold_means = {}
    for k in range(summary["folds"]):
        table = {c: {int(i): v for i, v in s["dice"].items()} for c, s in summary["cases"].items() if s["fold"] == k}
        fold_means[k] = choose.mean_dice(table) if table else float("nan")
    have = [k for k in fold_means if (bundle / CV_DIR / f"fold_{k}" / "model.pt").is_file()]
    if not have:
        raise LabelZooError(f"{bundle}: no fold weights in {CV_DIR}/fold_K/model.pt; run `labelzoo train-cv` again")
    return max(have, key=lambda k: (np.nan_to_num(fold_means[k], nan=-1.0), -k))


def ensemble_member_config(host_plan: dict, member_bundle: Path, weights: str) -> tuple[dict, dict]:
    """(network_def, EnsembleMember arguments) of a member, for the host bundle's inference.json."""
    member_plan = _load_json(member_bundle / "configs" / "plan.json")
    net = _load_json(member_bundle / "configs" / "inference.json")["network_def"]
    args: dict[str, Any] = {"checkpoint": f"$@bundle_root + '/models/{weights}'", "roi_size": member_plan["patch_size"]}
    if member_plan["spatial_dims"] == 2 and host_plan["spatial_dims"] == 3:
        args["slice_axis"] = member_plan["slice_axis"]
    else:
        args["spacing_ratio"] = [m / h for m, h in zip(member_plan["spacing"], host_plan["spacing"], strict=True)]
    return net, args


def _write_best_bundle(bundle: Path, summary: dict, lcc_classes: list[int], out_dir: Path,
                       others: list[tuple[Path, dict]], cv_score: float, all_folds: bool = False) -> Path:
    """Copy ``bundle`` (configs, docs) with its best fold's weights, the other ensemble members' weights and
    networks (inference via :class:`labelzoo.planning.ensemble.EnsembleInferer`) and the decided
    post-processing."""
    target = out_dir / bundle.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(bundle, target, ignore=shutil.ignore_patterns(CV_DIR, "models", "eval"))
    best_fold = _best_fold(bundle, summary)
    (target / "models").mkdir(exist_ok=True)
    shutil.copy(bundle / CV_DIR / f"fold_{best_fold}" / "model.pt", target / "models" / "model.pt")
    inference = _load_json(target / "configs" / "inference.json")
    inference["postprocessing_lcc_classes"] = lcc_classes
    host_plan = _load_json(bundle / "configs" / "plan.json")
    member_args, weights = [], ["models/model.pt"]
    if all_folds:  # the other folds of the host configuration, on the same grid
        sliced = inference["inferer"].get("_target_") == "SliceInferer"
        grid = {"slice_axis": host_plan["slice_axis"]} if sliced else {}
        for k in range(summary["folds"]):
            src = bundle / CV_DIR / f"fold_{k}" / "model.pt"
            if k == best_fold or not src.is_file():
                continue
            shutil.copy(src, target / "models" / f"fold_{k}.pt")
            inference[f"ensemble_fold_{k}_network_def"] = inference["network_def"]
            member_args.append({"network": f"@ensemble_fold_{k}_network_def",
                                "checkpoint": f"$@bundle_root + '/models/fold_{k}.pt'",
                                "roi_size": host_plan["patch_size"], **grid})
            weights.append(f"models/fold_{k}.pt")
    for member_bundle, member_summary in others:
        cfg = member_summary["configuration"]
        name = f"member_{cfg}.pt"
        shutil.copy(member_bundle / CV_DIR / f"fold_{_best_fold(member_bundle, member_summary)}" / "model.pt",
                    target / "models" / name)
        net, args = ensemble_member_config(host_plan, member_bundle, name)
        inference[f"ensemble_{cfg}_network_def"] = net
        member_args.append({"network": f"@ensemble_{cfg}_network_def", **args})
        weights.append(f"models/{name}")
    if member_args:
        inference["inferer"] = {"_target_": "labelzoo.planning.ensemble.EnsembleInferer",
                                "inferer": inference["inferer"], "members": member_args,
                                "sw_batch_size": "@sw_batch_size", "overlap": 0.5}
    write_json_atomic(target / "configs" / "inference.json", inference)
    (target / "large_files.yml").write_text("large_files:\n" + "".join(
        f"  - path: \"{w}\"\n    url: \"\"\n    hash_val: \"\"\n    hash_type: \"\"\n" for w in weights))
    meta = _load_json(target / "configs" / "metadata.json")
    version = meta["version"].split(".")
    version[-1] = str(int(version[-1]) + 1)
    meta["version"] = ".".join(version)
    what = (f"ensemble of {summary['configuration']} and {', '.join(s['configuration'] for _, s in others)}"
            if others else summary["configuration"])
    what += ", all folds" if all_folds else f", weights of fold {best_fold}"
    meta["changelog"] = {meta["version"]: f"chosen by labelzoo find-best: {what}, cross-validation mean Dice "
                                          f"{cv_score:.4f}, largest-component post-processing on classes "
                                          f"{lcc_classes}",
                         **meta["changelog"]}
    meta["eval_metrics"] = {"cv_mean_dice": cv_score}
    write_json_atomic(target / "configs" / "metadata.json", meta)
    write_json_atomic(target / "configs" / "cv_summary.json", summary)
    return target
