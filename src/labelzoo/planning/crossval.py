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

from labelzoo.distributed.runner import (
    Outcome,
    RayOptions,
    Task,
    TrialProgress,
    append_record,
    ray_session,
    read_records,
    run_tasks,
)
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


FOLDS_LOG = "folds.jsonl"
#: Test hook: comma-separated ``<bundle name>/<fold>`` keys whose first training attempt gets an invalid network
#: (an unknown ``network_def#_target_``), so the failure, its record and the retry take the real code path.
INJECT_FAILURES_ENV = "LABELZOO_INJECT_TRIAL_FAILURES"


def train_fold(bundle: str, cv_datalist: str, fold: int, overrides: list[str], held_out: list[dict],
               label_values: list[int], invalid: bool = False) -> dict[str, Any]:
    """One fold (a Ray task): train on the other folds, predict the held-out cases, score them.

    Writes ``BUNDLE/cv/fold_K/{model.pt,train.log}`` and the held-out predictions; returns the fold's record
    (``score``: its mean Dice over the held-out cases and foreground classes).
    """
    import time

    start = time.perf_counter()
    root = Path(bundle)
    fold_dir = root / CV_DIR / f"fold_{fold}"
    extra = ["--network_def#_target_", "labelzoo.networks.NoSuchNetwork"] if invalid else []
    _run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(root / "configs" / "train.json"),
          "--bundle_root", str(root), "--datalist_file", str(cv_datalist), "--dataset_dir", "/",
          "--fold", str(fold), "--ckpt_dir", str(fold_dir), "--output_dir", str(fold_dir / "logs"), *overrides,
          *extra], fold_dir / "train.log")
    if not (fold_dir / "model.pt").is_file():
        raise LabelZooError(f"fold {fold} of {root.name}: training wrote no {fold_dir / 'model.pt'} (see "
                            f"{fold_dir / 'train.log'})")
    pred_dir = root / CV_DIR / "predictions"
    predict_cases(root, held_out, fold_dir / "model.pt", pred_dir)
    scores = score_fold_predictions(held_out, pred_dir, label_values, [])
    table = {c: {int(k): v for k, v in s["dice"].items()} for c, s in scores.items()}
    return {"fold": fold, "score": choose.mean_dice(table) if table else None, "cases": len(held_out),
            "seconds": time.perf_counter() - start}


def _cv_bundles(path: Path) -> list[Path]:
    """``path`` itself when it is a planned bundle, else the planned bundles inside it (`labelzoo plan`'s OUT)."""
    if (path / "configs" / "train.json").is_file():
        return [path]
    found = sorted(p for p in path.iterdir() if (p / "configs" / "plan.json").is_file()) if path.is_dir() else []
    if not found:
        raise LabelZooError(f"{path} is not a bundle made by `labelzoo plan` (no configs/train.json) nor a folder "
                            "of such bundles")
    return found


class _CvJob:
    """The cross-validation of one bundle: its datalist, folds to train and the overrides of each run."""

    def __init__(self, root: Path, folds: int, overrides: list[str], only_fold: int | None, resume: bool) -> None:
        from labelzoo.planning.emit import assign_folds

        self.root = root
        self.train, self.plan, datalist = _bundle_info(root)
        cases = datalist["training"]
        if folds > len(cases):
            raise LabelZooError(f"--folds {folds} is more than the {len(cases)} training cases of {root.name}")
        self.folds = folds
        fold_of = assign_folds([c["case_id"] for c in cases], folds)
        dataset_dir = Path(self.train["dataset_dir"])
        self.cases = [{**c, "fold": fold_of[c["case_id"]],
                       "image": [str(dataset_dir / p) for p in c["image"]] if isinstance(c["image"], list)
                       else str(dataset_dir / c["image"]), "label": str(dataset_dir / c["label"])} for c in cases]
        self.cv = root / CV_DIR
        self.cv_datalist = self.cv / "datalist.json"
        self.log = self.cv / FOLDS_LOG
        self.overrides = overrides
        wanted = [only_fold] if only_fold is not None else list(range(folds))
        finished = self.finished() if resume else set()
        self.todo = [k for k in wanted if k not in finished]
        self.skipped = [k for k in wanted if k in finished]

    def finished(self) -> set[int]:
        """Folds whose latest record (same number of folds) is a success, with their weights on disk."""
        last: dict[int, str] = {}
        for r in read_records(self.log):
            if r.get("folds") == self.folds and isinstance(r.get("fold"), int):
                last[r["fold"]] = r.get("status", "")
        return {k for k, status in last.items() if status == "ok" and (self.cv / f"fold_{k}" / "model.pt").is_file()}

    def tasks(self, inject: set[str]) -> list[Task]:
        write_json_atomic(self.cv_datalist, {"training": self.cases})
        out = []
        for k in self.todo:
            key = f"{self.root.name}/{k}"
            out.append(Task(key=key, fn=train_fold, args=(str(self.root), str(self.cv_datalist), k, self.overrides),
                            kwargs={"held_out": [c for c in self.cases if c["fold"] == k],
                                    "label_values": self.train["label_values"]},
                            attempt_kwargs=lambda attempt, key=key: {"invalid": attempt == 1 and key in inject}))
        return out

    def summary(self) -> dict[str, Any]:
        pred_dir = self.cv / "predictions"
        label_values = self.train["label_values"]
        candidates = self.plan.get("lcc_candidates", label_values[1:])
        scores = score_fold_predictions([c for c in self.cases if (pred_dir / f"{c['case_id']}_seg.nii.gz").is_file()],
                                        pred_dir, label_values, candidates)
        without = {c: {int(k): v for k, v in s["dice"].items()} for c, s in scores.items()}
        summary = {"configuration": self.plan["configuration"], "bundle": self.root.name, "folds": self.folds,
                   "label_values": label_values, "lcc_candidates": candidates,
                   "mean_dice": choose.mean_dice(without) if without else float("nan"), "cases": scores}
        write_json_atomic(self.cv / "summary.json", summary)
        return summary


def train_cv(bundle: str, folds: int = 5, num_epochs: int | None = None, iterations_per_epoch: int | None = None,
             val_interval: int | None = None, num_workers: int | None = None, only_fold: int | None = None,
             resume: bool = False, ray_address: str | None = None, cpus_per_trial: float = 1,
             gpus_per_trial: float | None = None, max_concurrent: int | None = None, max_retries: int = 1,
             executor: str = "ray") -> str:
    """Cross-validate planned bundles: train one model per fold, predict and score the held-out cases.

    BUNDLE is a bundle written by `labelzoo plan`, or the folder `labelzoo plan` wrote (every configuration,
    the cascade's second stage after its first). Every fold is a Ray task (`python -m monai.bundle run` in the
    worker): Ray is started in this process by default (one CPU fold at a time), or joined with --ray_address
    (the bundle folder must then be on storage every node sees). Each finished or failed fold is appended to
    BUNDLE/cv/folds.jsonl at once; --resume skips the folds already there; a failed fold is retried
    --max_retries times. Writes BUNDLE/cv/fold_K/model.pt, BUNDLE/cv/predictions/ (label and softmax maps of
    every case, each predicted by the model that did not see it) and BUNDLE/cv/summary.json (Dice per case and
    class, with and without largest-component post-processing).
    Example: labelzoo train-cv planned/spleen_ct_nnunet3dfullres_segmentation --folds 5 --gpus_per_trial 1

    Args:
        bundle: a bundle folder written by `labelzoo plan`, or the folder of several.
        folds: number of folds (default 5, as nnU-Net); at most the number of cases.
        num_epochs: override the bundle's epochs (default: the bundle's).
        iterations_per_epoch: override the iterations per epoch.
        val_interval: override the validation interval in epochs.
        num_workers: override the data-loading workers.
        only_fold: train and score this fold only (the others must exist for the summary).
        resume: skip the folds cv/folds.jsonl records as finished (same --folds).
        ray_address: an existing Ray cluster (auto, ray://HOST:PORT); default: Ray started in this process.
        cpus_per_trial: CPUs each fold asks Ray for.
        gpus_per_trial: GPUs each fold asks Ray for (1: N GPUs train N folds at once); default 1 when the
            cluster has GPUs, else 0.
        max_concurrent: folds training at once (default: 1 on the CPUs of the embedded Ray, else what fits).
        max_retries: retries of a failed fold (its error goes to cv/folds.jsonl) before it is given up.
        executor: ray (default) or inline (one fold after another in this process, no Ray).
    """
    import os

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise LabelZooError(f"--folds must be an integer of at least 2, got {folds!r}")
    options = RayOptions(address=ray_address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                         max_concurrent=max_concurrent, max_retries=max_retries, executor=executor)
    options.validate()
    roots = _cv_bundles(Path(bundle).expanduser().resolve())
    if num_epochs is not None and val_interval is None:  # validate (and save weights) at least at the end
        val_interval = min(min(int(_load_json(r / "configs" / "train.json").get("val_interval", 1)) for r in roots),
                           int(num_epochs))
    overrides: list[str] = []
    for key, value in (("num_epochs", num_epochs), ("iterations_per_epoch", iterations_per_epoch),
                       ("val_interval", val_interval), ("num_workers", num_workers)):
        if value is not None:
            overrides += [f"--{key}", str(value)]
    jobs = {r.name: _CvJob(r, folds, overrides, only_fold, resume) for r in roots}
    # a cascade's second stage trains on its first stage's cross-validation predictions: a later wave
    waves = [[j for j in jobs.values() if j.train.get("previous_stage_bundle") not in jobs],
             [j for j in jobs.values() if j.train.get("previous_stage_bundle") in jobs]]
    inject = {k.strip() for k in os.environ.get(INJECT_FAILURES_ENV, "").split(",") if k.strip()}
    failed: dict[str, str] = {}

    def on_done(task: Task, outcome: Outcome) -> None:
        name, k = task.key.rsplit("/", 1)
        append_record(jobs[name].log, {**outcome.result, "status": "ok", "folds": folds, "attempt": outcome.attempt})
        logger.info("%s fold %s: mean Dice %s in %.0fs", name, k, outcome.result.get("score"), outcome.seconds)

    def on_failed(task: Task, outcome: Outcome, final: bool) -> None:
        name, k = task.key.rsplit("/", 1)
        append_record(jobs[name].log, {"fold": int(k), "status": "failed", "folds": folds, "attempt": outcome.attempt,
                                      "final": final, "error": outcome.error, "seconds": outcome.seconds})
        if final:
            failed[task.key] = (outcome.error or "").splitlines()[0]

    for job in jobs.values():
        if job.skipped:
            logger.info("%s: folds %s already trained (%s): skipped", job.root.name, job.skipped, job.log)
    with ray_session(options):
        for wave in waves:
            tasks = [t for job in wave for t in job.tasks(inject)]
            if not tasks:
                continue
            progress = TrialProgress("folds", len(tasks))
            try:
                run_tasks(tasks, options, on_done, on_failed, progress)
            finally:
                progress.close()
    lines = []
    for job in jobs.values():
        summary = job.summary()
        lines.append(f"{job.root.name}: {len(summary['cases'])} case(s) scored, cross-validation mean Dice "
                     f"{summary['mean_dice']:.4f}")
    if failed:
        raise LabelZooError("\n".join(lines + [f"fold {k} failed after {max_retries} retries: {e}"
                                                for k, e in failed.items()]
                                       + ["errors in BUNDLE/cv/folds.jsonl; fix the cause and rerun with --resume"]))
    return "\n".join(lines)


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
