"""The simulated annotation loop: one run = one strategy, one seed, one fresh server, datastore and model.

Each round asks the server for the next image (``next_sample``), gets its suggestion (``/infer``),
measures the correction effort against the ground truth the simulator holds, and submits the ground
truth (``save_label``), all through ``monailabel.client.MONAILabelClient``. Every ``train_every`` labels
the model is trained (``POST /train``, progress followed through ``GET /train/``) and scored on the
held-out test set through ``/infer`` with the image uploaded (the test images never enter the datastore).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelzoo.errors import LabelZooError
from labelzoo.io import write_json_atomic
from labelzoo.simulate.dataset import Case, Dataset, split_cases
from labelzoo.simulate.metrics import (
    apply_lookup,
    class_dice,
    correction_effort,
    finite_mean,
    hd95,
    label_lookup,
)
from labelzoo.simulate.server import local_server, wait_until_up

logger = logging.getLogger(__name__)

#: CSV columns of a run, one row per round (round 0: the model trained on the initial labels).
COLUMNS = ["strategy", "seed", "round", "labels", "image", "selection_score", "slices", "partial", "voxels_changed",
           "fraction_changed", "one_minus_dice", "cum_voxels_changed", "cum_one_minus_dice", "annotated_slices",
           "annotated_voxels", "cum_annotated_slices", "cum_annotated_voxels", "clicks", "cum_clicks", "score_s",
           "next_s", "infer_s", "clicks_s", "save_s", "train_s", "train_run_s", "train_overhead_s", "eval_s",
           "test_dice", "test_hd95", "pool", "rescored_s", "partial_labels"]

#: the pseudo-strategy of the full-data reference run: every pool image labelled, the same training
REFERENCE = "full"

#: the Dice a simulated annotator's clicks aim for (``clicks`` column: clicks to bring a suggestion there)
CLICK_TARGET = 0.9


@dataclass
class RunSettings:
    """What one simulation run needs (see :func:`labelzoo.simulate.commands.simulate` for the meaning)."""

    model: str
    initial: int = 2
    budget: int = 8
    train_every: int = 2
    n_test: int = 4
    epochs: int = 5
    device: str = "cpu"
    train_params: dict[str, Any] = field(default_factory=dict)
    server_conf: dict[str, str] = field(default_factory=dict)
    sample_options: dict[str, Any] = field(default_factory=dict)
    server_timeout: float = 300.0
    train_timeout: float = 1800.0
    click_model: str = ""
    click_bundle: str = ""
    max_clicks: int = 20
    threads: int | None = None


# ---- the bundle copy each run trains ----------------------------------------------------------------------
def set_config_id(config: dict, key: str, value: Any) -> None:
    """Set ``a#b#c`` in a nested config (MONAI bundle id syntax)."""
    node: Any = config
    parts = key.split("#")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def prepare_bundle(src: Path, dst_root: Path, train_overrides: dict[str, Any] | None = None,
                   infer_overrides: dict[str, Any] | None = None, keep_weights: bool = False) -> Path:
    """Copy bundle ``src`` under ``dst_root`` (no weights unless ``keep_weights``) and make it a loop's model.

    Overrides (config id -> value, MONAI's ``a#b`` syntax) are written into ``train.json`` / ``inference.json``.
    Every training of the loop uses all submitted labels (the app is asked for ``val_split=0``), so the
    copy's trainer saves its final weights as ``models/model.pt`` (a ``CheckpointSaver`` with
    ``save_final``) and validation is pushed beyond the run (``val_interval``) when the bundle has one.
    """
    dst = dst_root / src.name
    ignore = ["eval", "logs", "__pycache__", "train_progress.json"] + ([] if keep_weights else ["*.pt", "*.ts"])
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*ignore))
    for name, overrides in (("train", train_overrides or {}), ("inference", infer_overrides or {})):
        path = dst / "configs" / f"{name}.json"
        if not path.is_file():
            if name == "train":
                raise LabelZooError(f"bundle {src} has no configs/train.json: the loop needs a trainable bundle")
            continue
        config = json.loads(path.read_text())
        for key, value in overrides.items():
            set_config_id(config, key, value)
        if name == "train":
            if "val_interval" in config:
                config["val_interval"] = 1_000_000
            handlers = config.get("train", {}).get("handlers")
            if not isinstance(handlers, list):
                raise LabelZooError(f"{path}: train#handlers must be a list (MONAI Label's bundle contract)")
            handlers.append({"_target_": "CheckpointSaver", "save_dir": "@ckpt_dir",
                             "save_dict": {"model": "@network"}, "save_final": True, "final_filename": "model.pt"})
        path.write_text(json.dumps(config, indent=4) + "\n")
    return dst


# ---- talking to the server ---------------------------------------------------------------------------------
def _load(path: str | Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import nibabel as nib

    img = nib.load(str(path))
    data = np.squeeze(np.asarray(img.dataobj))
    return data, tuple(float(z) for z in img.header.get_zooms()[: data.ndim])


def _http(client: Any, method: str, selector: str, body: dict | None = None) -> Any:
    from monailabel.client.client import MONAILabelUtils

    status, response, _, _ = MONAILabelUtils.http_method(method, client._server_url, selector, body,
                                                         headers=client._headers)
    text = response.decode() if isinstance(response, bytes) else response
    if status != 200:
        raise LabelZooError(f"{method} {selector} answered HTTP {status}: {str(text)[:500]}")
    return json.loads(text) if text else None


class Trainer:
    """Starts one training through ``POST /train/<model>`` and follows it through ``GET /train/``."""

    #: seconds between two ``GET /train/`` polls (a training of a few seconds must not wait a second for its end)
    poll_s = 0.25

    def __init__(self, client: Any, model: str, epochs: int, params: dict[str, Any], timeout: float):
        self.client, self.model, self.epochs, self.params, self.timeout = client, model, epochs, params, timeout
        self.runs = 0

    def __call__(self, on_progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
        # pretrained: continue from the served weights (a fresh copy has none: the app then starts from random)
        params = {"max_epochs": self.epochs, "val_split": 0, "pretrained": True, "multi_gpu": False, **self.params}
        started = self.client.train_start(self.model, params)
        task_id = started.get("id") if isinstance(started, dict) else None
        self.runs += 1
        deadline = time.monotonic() + self.timeout
        while True:
            time.sleep(self.poll_s)
            task = self.client.train_status()
            if task_id and task.get("id") != task_id:
                continue
            if on_progress is not None:
                on_progress(task.get("progress") or {})
            if task.get("status") in ("DONE", "ERROR", "STOPPED"):
                break
            if time.monotonic() > deadline:
                self.client.train_stop()
                raise LabelZooError(f"training {self.model} did not finish within {self.timeout:.0f} s")
        progress = task.get("progress") or {}
        if task.get("status") != "DONE" or progress.get("status") == "failed":
            detail = progress.get("error") or list(task.get("details") or [])[-3:]
            raise LabelZooError(f"training {self.model} ended {task.get('status')}: {detail}")
        return progress


def train_split(train_s: float, progress: dict[str, Any]) -> dict[str, float]:
    """Split a training's wall time (as the client saw it) into the run and its overhead.

    ``train_run_s``: the training task's own time as it reports it (``elapsed_s`` of ``GET /train/``: from the task
    starting in its process to its last progress update; config, data caching, iterations, weights saved and
    registered). ``train_overhead_s``: the rest: MONAI Label's task process starting (Python, torch and the app
    imported and initialised), its exit, and the client's polling. Empty when the server reports no elapsed time.
    """
    run = progress.get("elapsed_s")
    if isinstance(run, bool) or not isinstance(run, (int, float)) or run < 0:
        return {}
    run = min(float(run), train_s)
    return {"train_run_s": round(run, 3), "train_overhead_s": round(train_s - run, 3)}


def evaluate(client: Any, model: str, test: list[Case], to_model: dict[int, int],
             classes: list[int]) -> dict[str, Any]:
    """Mean Dice and HD95 (mm) of the served model on the held-out cases (images uploaded with ``/infer``).

    Args:
        to_model: dataset label value -> the model's value for the same class.
        classes: the model's foreground values.
    """
    dice, dist = [], []
    for case in test:
        out, _ = client.infer(model, "", {}, file=str(case.image))
        pred, _ = _load(out)
        Path(out).unlink(missing_ok=True)
        truth, spacing = _load(case.label)
        truth = apply_lookup(truth, to_model)
        pred = np.rint(pred).astype(np.int64)
        dice.append(float(np.mean(list(class_dice(truth, pred, classes).values()))))
        dist.append(finite_mean(list(hd95(truth, pred, classes, spacing).values())))
    return {"test_dice": float(np.mean(dice)), "test_hd95": finite_mean(dist), "per_case_dice": dice}


def model_label(case: Case, to_model: dict[int, int], folder: Path) -> Path:
    """The case's ground truth in the model's label values, as the annotator submits it (written once)."""
    import nibabel as nib

    if all(k == v for k, v in to_model.items()):
        return case.label
    path = folder / f"{case.id}.nii.gz"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        img = nib.load(str(case.label))
        data = apply_lookup(np.asarray(img.dataobj), to_model).astype(np.uint8)
        nib.save(nib.Nifti1Image(data, img.affine), str(path))
    return path


def annotate(truth: np.ndarray, suggestion: np.ndarray, classes: list[int], answer: dict[str, Any]) -> dict[str, Any]:
    """What the simulated annotator does with one query: the label it submits, its params, and the effort.

    A whole-image query: the truth, every voxel annotated. A slice-level query (``partial: true``): the truth on
    the asked slices only (0 elsewhere, as an unpainted Slicer segment), label info ``annotated_slices``, and the
    effort counted on those slices only.
    """
    from labelzoo.partial import PARTIAL_KEY, check_annotated_slices, partial_label, slice_mask

    if not answer.get("partial"):
        effort = correction_effort(truth, suggestion, classes)
        depth = truth.shape[-1] if truth.ndim == 3 else 1
        return {"label": truth, "params": {}, "partial": False, "annotated_slices": depth,
                "annotated_voxels": int(truth.size), **effort.as_dict()}
    try:
        axis, slices = check_annotated_slices({"axis": answer.get("slice_axis"), "slices": answer.get("slices")},
                                              truth.shape, "next_sample answer")
    except LabelZooError as e:
        raise LabelZooError(f"the slice-level answer for {answer.get('id')!r} is unusable: {e}") from None
    mask = slice_mask(truth.shape, axis, slices)
    effort = correction_effort(truth[mask], suggestion[mask], classes)
    return {"label": partial_label(truth, axis, slices), "params": {PARTIAL_KEY: {"axis": axis, "slices": slices}},
            "partial": True, "annotated_slices": len(slices), "annotated_voxels": int(mask.sum()),
            **effort.as_dict()}


def click_effort(predict: Callable[[dict[str, Any]], np.ndarray], truth: np.ndarray, suggestion: np.ndarray,
                 structures: list[tuple[int, str, int]], max_clicks: int, target: float = CLICK_TARGET) -> int:
    """Clicks a simulated annotator needs to bring a suggestion to Dice >= ``target``, summed over structures.

    The protocol of the interactive benchmark (:func:`labelzoo.interactive.simulate.simulate_clicks`: each click at
    the centre of the largest error region), sent to an interactive model that refines the suggestion (``predict``
    sends it as the prior mask). A structure whose suggestion already reaches ``target`` costs 0 clicks; one that
    never gets there within ``max_clicks`` costs ``max_clicks``.

    Args:
        predict: click params (``{label name: [points], "background": [points]}``) -> label map in the
            interactive model's values, on the image's grid.
        truth: the ground truth in the loop model's values.
        suggestion: the loop model's suggestion, same values and grid.
        structures: ``(loop model value, interactive model label name, interactive model value)`` per structure.
        max_clicks: clicks at most per structure.
        target: the Dice to reach.
    """
    from labelzoo.interactive.simulate import dice, simulate_clicks

    total = 0
    for loop_value, name, click_value in structures:
        gt = np.asarray(truth) == loop_value
        if dice(np.asarray(suggestion) == loop_value, gt) >= target:
            continue
        run = simulate_clicks(predict, gt, name, click_value, max_clicks)
        total += next((k for k, d in enumerate(run.dices) if d >= target), max_clicks)
    return total


def click_structures(models: dict[str, Any], model: str, click_model: str,
                     classes: list[int]) -> list[tuple[int, str, int]]:
    """``(loop value, interactive label name, interactive value)`` for every class, matched by label name."""
    if click_model not in models:
        raise LabelZooError(f"--click_model {click_model!r} is not served; served: {', '.join(models)}")
    click_labels = {str(n): int(v) for n, v in (models[click_model].get("labels") or {}).items()
                    if str(n).strip().lower() != "background"}
    if not click_labels:
        raise LabelZooError(f"--click_model {click_model!r} names no labels in /info/")
    by_name = {n.strip().lower(): (n, v) for n, v in click_labels.items()}
    names = {int(v): str(n) for n, v in (models[model].get("labels") or {}).items()}
    out = []
    for c in classes:
        hit = by_name.get(names.get(c, "").strip().lower())
        if hit is None:
            raise LabelZooError(f"--click_model {click_model!r} has no label {names.get(c, c)!r} of {model!r} "
                                f"(its labels: {', '.join(click_labels)})")
        out.append((c, hit[0], hit[1]))
    return out


def _save_array(data: np.ndarray, like: Path, path: Path) -> Path:
    import nibabel as nib

    img = nib.load(str(like))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), img.affine), str(path))
    return path


def _scoring_method(info: dict, strategy: str) -> str | None:
    """The scoring method a strategy ranks on, as its ``/info/`` entry says (``None`` for random / first)."""
    entry = (info.get("strategies") or {}).get(strategy) or {}
    method = entry.get("scoring") if isinstance(entry, dict) else None
    return method if method in (info.get("scoring") or {}) else None


def n_trainings(initial: int, budget: int, train_every: int) -> int:
    """How many trainings a run makes: one on the initial labels, one every ``train_every`` labels and at the end."""
    return 1 + -(-max(0, budget - initial) // train_every)


def run_loop(url: str, settings: RunSettings, dataset: Dataset, strategy: str, seed: int, out_csv: Path,
             tick: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Play the annotator against the server at ``url`` for one strategy and seed; write and return the rows.

    The server's datastore must be empty: the pool is uploaded through the client.
    """
    from monailabel.client import MONAILabelClient

    tmp = out_csv.parent / out_csv.stem / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    client = MONAILabelClient(url, tmpdir=str(tmp))
    info = client.info()
    models = info.get("models") or {}
    if settings.model not in models:
        raise LabelZooError(f"--model {settings.model!r} is not served at {url}; served: {', '.join(models) or 'none'}")
    if strategy != REFERENCE and strategy not in (info.get("strategies") or {}):
        raise LabelZooError(f"strategy {strategy!r} is not offered by {url}; offered: "
                            f"{', '.join(info.get('strategies') or {})}")
    try:
        lut = label_lookup(models[settings.model].get("labels") or {}, dataset.labels)
    except ValueError as e:
        raise LabelZooError(f"--model {settings.model}: {e}") from None
    # the annotator paints with the model's label values (the app refuses others): compare and submit in those
    to_model = {d: m for m, d in lut.items()}
    classes = sorted(set(to_model.values()) - {0})
    labels_dir = out_csv.parent / out_csv.stem / "labels"
    split = split_cases(dataset.cases, settings.n_test, settings.initial, seed)
    budget = min(settings.budget, len(split.initial) + len(split.unlabelled))
    by_id = {c.id: c for c in split.initial + split.unlabelled}
    for case in split.initial + split.unlabelled:
        client.upload_image(str(case.image), image_id=case.id)
    reference = strategy == REFERENCE
    start = split.initial + split.unlabelled if reference else split.initial
    cum_slices, cum_voxels = 0, 0
    for case in start:
        path = model_label(case, to_model, labels_dir)
        client.save_label(case.id, str(path), tag="final")
        shape = _load(path)[0].shape
        cum_slices += shape[-1] if len(shape) == 3 else 1
        cum_voxels += int(np.prod(shape))
    method = None if reference else _scoring_method(info, strategy)
    structures = click_structures(models, settings.model, settings.click_model, classes) if settings.click_model \
        else []
    to_click = {0: 0, **{c: v for c, _, v in structures}}
    cum_clicks = 0
    trainer = Trainer(client, settings.model, settings.epochs, settings.train_params, settings.train_timeout)

    rows: list[dict[str, Any]] = []
    labelled = len(start)
    trained_at: list[float] = []  # when the newest weights were written (monotonic seconds)
    cum_vox, cum_dice = 0, 0.0

    def train_and_score(row: dict[str, Any]) -> None:
        t = time.monotonic()
        progress = trainer()
        row["partial_labels"] = progress.get("partial_labels", 0)  # how many labels the server trained as partial
        row["train_s"] = round(time.monotonic() - t, 3)
        row.update(train_split(row["train_s"], progress))
        trained_at[:] = [time.monotonic()]
        t = time.monotonic()
        row.update({k: v for k, v in evaluate(client, settings.model, split.test, to_model, classes).items()
                    if k != "per_case_dice"})
        row["eval_s"] = round(time.monotonic() - t, 3)

    row0: dict[str, Any] = {"strategy": strategy, "seed": seed, "round": 0, "labels": labelled,
                            "cum_annotated_slices": cum_slices, "cum_annotated_voxels": cum_voxels}
    if reference:
        # the full-data reference: the same trainings as a run makes (each continuing from the last), all labels in
        for _ in range(n_trainings(settings.initial, budget, settings.train_every) - 1):
            trainer()
    train_and_score(row0)
    rows.append(row0)
    _write_csv(out_csv, rows)
    round_no = 0
    while labelled < budget and not reference:
        round_no += 1
        row: dict[str, Any] = {"strategy": strategy, "seed": seed, "round": round_no}
        t = time.monotonic()
        if method:
            _http(client, "POST", f"/scoring/{method}?run_sync=true", {})
        row["score_s"] = round(time.monotonic() - t, 3)
        row["pool"] = len(by_id) - labelled
        if method and trained_at:
            # scoring keep-up: new weights -> every unlabelled image scored with them (test scoring ran meanwhile)
            row["rescored_s"] = round(time.monotonic() - trained_at.pop(), 3)
        t = time.monotonic()
        answer = client.next_sample(strategy, dict(settings.sample_options))
        row["next_s"] = round(time.monotonic() - t, 3)
        image = (answer or {}).get("id")
        if not image:
            logger.warning("%s: no image left to annotate after %d labels", strategy, labelled)
            break
        if image not in by_id:
            raise LabelZooError(f"next_sample({strategy}) answered {image!r}, which is not an unlabelled pool image")
        row["image"] = image
        row["selection_score"] = answer.get("score")
        row["slices"] = " ".join(str(s) for s in answer.get("slices") or [])  # slice-level query, if offered
        t = time.monotonic()
        out, _ = client.infer(settings.model, image, {})
        row["infer_s"] = round(time.monotonic() - t, 3)
        submitted = model_label(by_id[image], to_model, labels_dir)
        truth, _ = _load(submitted)
        suggestion, _ = _load(out)
        Path(out).unlink(missing_ok=True)
        truth, suggestion = np.rint(truth).astype(np.int64), np.rint(suggestion).astype(np.int64)
        done = annotate(truth, suggestion, classes, answer)
        if structures and not done["partial"]:
            # clicks to Dice 0.9: the interactive model refines this suggestion (sent as its prior mask)
            t = time.monotonic()
            prior = _save_array(apply_lookup(suggestion, to_click), submitted, tmp / f"prior-{image}.nii.gz")

            def predict(params: dict[str, Any], image: str = image, prior: Path = prior) -> np.ndarray:
                got, _ = client.infer(settings.click_model, image, {**params, "prior": True}, label_in=str(prior))
                arr = np.rint(_load(got)[0]).astype(np.int64)
                Path(got).unlink(missing_ok=True)
                return arr

            row["clicks"] = click_effort(predict, truth, suggestion, structures, settings.max_clicks)
            cum_clicks += row["clicks"]
            row["cum_clicks"] = cum_clicks
            row["clicks_s"] = round(time.monotonic() - t, 3)
            prior.unlink(missing_ok=True)
        if done["partial"]:
            submitted = _save_array(done["label"], submitted, tmp / f"partial-{image}.nii.gz")
        cum_vox += done["voxels_changed"]
        cum_dice += done["one_minus_dice"]
        cum_slices += done["annotated_slices"]
        cum_voxels += done["annotated_voxels"]
        row.update({k: v for k, v in done.items() if k not in ("label", "params")})
        row.update(cum_voxels_changed=cum_vox, cum_one_minus_dice=round(cum_dice, 6),
                   cum_annotated_slices=cum_slices, cum_annotated_voxels=cum_voxels)
        t = time.monotonic()
        client.save_label(image, str(submitted), tag="final", params=done["params"] or None)
        if done["partial"]:
            Path(submitted).unlink(missing_ok=True)
        row["save_s"] = round(time.monotonic() - t, 3)
        labelled += 1
        row["labels"] = labelled
        if (labelled - len(split.initial)) % settings.train_every == 0 or labelled >= budget:
            train_and_score(row)
        rows.append(row)
        _write_csv(out_csv, rows)
        if tick is not None:
            tick(f"{strategy} seed {seed}: {labelled}/{budget} labels")
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in COLUMNS})
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text(buf.getvalue())
    tmp.replace(path)


def run_one(settings: RunSettings, dataset: Dataset, bundle: Path | None, strategy: str, seed: int, out: Path,
            server: str | None = None, tick: Callable[[str], None] | None = None,
            bundle_overrides: tuple[dict, dict] = ({}, {})) -> list[dict[str, Any]]:
    """One run in ``out/<strategy>-seed<seed>/``: a fresh server (or ``server``), datastore and model copy."""
    run_dir = out / f"{strategy}-seed{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    out_csv = out / f"{strategy}-seed{seed}.csv"
    if server:
        wait_until_up(server, 30)
        return run_loop(server, settings, dataset, strategy, seed, out_csv, tick)
    assert bundle is not None
    bundles = run_dir / "bundles"
    copy = prepare_bundle(bundle, bundles, *bundle_overrides)
    studies = run_dir / "studies"
    studies.mkdir()
    models = copy.name
    if settings.click_bundle:  # the interactive model the click effort is measured with, served as it is
        click = Path(settings.click_bundle)
        if click.name == copy.name:
            raise LabelZooError(f"--click_model {click} has the name of --model: they must differ")
        shutil.copytree(click, bundles / click.name, ignore=shutil.ignore_patterns("eval", "logs", "__pycache__"))
        models += f"+{click.name}"
        settings = replace_model(settings, settings.model, click.name)
    conf = {"models": models, "bundles": str(bundles), "device": settings.device,
            "scoring_model": copy.name, **settings.server_conf}
    env = thread_env(settings.threads)
    if strategy in ("random", "first", "random_slices", REFERENCE):
        conf.setdefault("skip_scoring", "true")  # nothing ranks: keep the 2 cores for the loop
    elif strategy != "tta":
        conf.setdefault("tta_samples", "2")  # the worker scores every method; keep the unused one light
    with local_server(studies, conf, run_dir / "server.log", settings.server_timeout, env=env) as url:
        rows = run_loop(url, replace_model(settings, copy.name), dataset, strategy, seed, out_csv, tick)
    write_json_atomic(run_dir / "settings.json", {"strategy": strategy, "seed": seed, "conf": conf,
                                                  "settings": asdict(settings)})
    return rows


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment capping the CPU threads of the server and of the training / scoring processes it starts.

    torch (OpenMP / MKL) sizes its thread pool from these at start-up. On a machine whose cores other work
    already uses, one thread per process avoids the oversubscription in which OpenMP threads spin-wait for each
    other (measured on 2 shared cores: a training iteration 0.26 s with one thread against 1.5-2 s with two).
    ``None``: leave the environment as it is.
    """
    if threads is None:
        return {}
    n = str(int(threads))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}


def replace_model(settings: RunSettings, model: str, click_model: str | None = None) -> RunSettings:
    """``settings`` with ``model`` (and ``click_model`` when given) as the served models' names."""
    from dataclasses import replace

    return replace(settings, model=model, click_model=settings.click_model if click_model is None else click_model)
