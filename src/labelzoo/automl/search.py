"""The T-AutoML search loop behind ``labelzoo search DATASET --budget N``.

Procedure (T-AutoML, LabelZoo SPEC section 5, scaled to a budget):

1. draw ``budget`` distinct random configurations and proxy-train each (a short schedule on small
   patches, one Ray task each: see below); every finished trial is appended to ``OUT/trials.jsonl`` at once (flushed and
   fsynced), so a crash or Ctrl-C loses no finished trial and ``--resume`` continues where it stopped;
2. train the pairwise-ranking transformer on the observed (configuration, validation Dice) results;
   its pairwise accuracy and Kendall tau on held-out configurations (the last quarter, with a predictor
   trained on the rest) go to ``OUT/predictor.json``;
3. rank a pool of unseen configurations by predicted win probability against the observed ones
   (``OUT/ranking.json``, reused on resume);
4. fully train (a longer schedule) the top ``top_k`` of the pool plus the best proxy-trained configuration
   (so the search never does worse than its random phase), logging them as ``full`` trials and keeping
   their weights under ``OUT/weights``;
5. write the winner as a MONAI bundle ``OUT/<name>`` (see :mod:`labelzoo.automl.bundle`).

Every training (proxy and full) is an independent task scheduled by Ray (:mod:`labelzoo.distributed.runner`):
an embedded Ray instance by default, an existing cluster with ``--ray_address``; each trial asks for
``--cpus_per_trial`` / ``--gpus_per_trial``. A failed trial is logged in ``trials.jsonl`` with its error
(``"status": "failed"``) and retried up to ``--max_retries`` times; the search goes on without it. One progress
line shows trials done / running / failed and the best Dice so far.

Test hook: the environment variable ``LABELZOO_INJECT_TRIAL_FAILURES`` (comma-separated ``phase/trial`` keys such
as ``proxy/1``) gives the first attempt of those trials an invalid configuration vector; the trial's own
validation (:func:`labelzoo.automl.encoding.check_vector`) rejects it in the worker, so the failure, its record
and the retry go through the real code path.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labelzoo.automl.encoding import check_vector, sample_unique
from labelzoo.distributed.runner import (
    Outcome,
    RayOptions,
    Task,
    TrialProgress,
    append_record,
    ray_session,
    run_tasks,
)
from labelzoo.errors import LabelZooError
from labelzoo.io import write_json_atomic

logger = logging.getLogger(__name__)

TRIALS_FILE = "trials.jsonl"
SETTINGS_FILE = "search.json"
PREDICTOR_FILE = "predictor.json"
RANKING_FILE = "ranking.json"
#: Test hook (see the module docstring).
INJECT_FAILURES_ENV = "LABELZOO_INJECT_TRIAL_FAILURES"


@dataclass
class SearchSettings:
    """What a search run is; stored in ``OUT/search.json`` and checked on ``--resume``."""

    dataset: str
    budget: int = 16
    pool: int = 500
    top_k: int = 2
    proxy_iterations: int = 20
    full_iterations: int = 200
    patch_size: list[int] = field(default_factory=lambda: [32, 32, 32])
    base_channels: int = 8
    seed: int = 0
    max_epochs: int = 100
    name: str | None = None
    threads: int | None = None
    device: str = "cpu"

    #: Settings that must match the stored ones to resume (they change what the logged trials mean).
    FIXED = ("dataset", "budget", "pool", "top_k", "proxy_iterations", "full_iterations", "patch_size",
             "base_channels", "seed")

    def validate(self) -> None:
        """Raise :class:`LabelZooError` naming the first bad setting."""
        for name, low in (("budget", 3), ("pool", 1), ("top_k", 1), ("proxy_iterations", 1),
                          ("full_iterations", 1), ("max_epochs", 1), ("base_channels", 4)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise LabelZooError(f"--{name} must be an integer of at least {low}, got {value!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise LabelZooError(f"--threads must be a positive integer, got {self.threads!r}")
        if self.device not in ("cpu", "cuda", "auto") and not str(self.device).startswith("cuda:"):
            raise LabelZooError(f"--device must be cpu, cuda, cuda:N or auto, got {self.device!r}")
        if self.base_channels % 4:
            raise LabelZooError(f"--base_channels must be a multiple of 4, got {self.base_channels}")
        if self.top_k > self.pool:
            raise LabelZooError(f"--top_k ({self.top_k}) cannot exceed --pool ({self.pool})")
        if len(self.patch_size) != 3 or min(self.patch_size) < 16:
            raise LabelZooError(
                f"--patch must be three sizes of at least 16 voxels like 32,32,32, got {self.patch_size}"
            )


def parse_patch(value: str | int | tuple | list) -> list[int]:
    """``"32,32,32"``, ``32`` or a sequence -> ``[32, 32, 32]``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * 3
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        out = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise LabelZooError(f"--patch must be three integers like 32,32,32, got {value!r}") from None
    if len(out) == 1:
        out *= 3
    return out


# ----------------------------------------------------------------------------------------------------------
# the trial log
# ----------------------------------------------------------------------------------------------------------


def append_trial(path: Path, record: dict[str, Any]) -> None:
    """Append one finished trial as a JSON line, flushed and fsynced before returning."""
    append_record(path, record)


def read_trials(path: Path, repair: bool = False, include_failed: bool = False) -> list[dict[str, Any]]:
    """The finished trials of a log; a torn last line (a crash while writing) is skipped with a warning and,
    with ``repair``, removed from the file (atomically) so that new trials can be appended after it.
    Failed attempts (``"status": "failed"``, with their ``error``) are returned only with ``include_failed``.

    Raises:
        LabelZooError: if a line other than the last is not a trial record.
    """
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    trials = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            record["phase"], record["trial"]  # noqa: B018 (presence check)
            if record.get("status") == "failed":
                str(record["error"])
                if include_failed:
                    trials.append(record)
                continue
            check_vector(record["vector"])
            float(record["dice"])
        except (ValueError, KeyError, TypeError) as e:
            if n == len(lines):
                logger.warning("%s line %d is incomplete (interrupted while writing): ignored", path, n)
                if repair:
                    _rewrite(path, lines[: n - 1])
                continue
            raise LabelZooError(f"{path} line {n} is not a trial record ({e}): fix or remove that line") from None
        trials.append(record)
    return trials


def _rewrite(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


def _settings_for_run(out: Path, settings: SearchSettings, resume: bool) -> None:
    stored_path = out / SETTINGS_FILE
    has_log = (out / TRIALS_FILE).is_file()
    if resume:
        if not stored_path.is_file():
            raise LabelZooError(f"--resume: {stored_path} not found: {out} holds no search to continue")
        stored = json.loads(stored_path.read_text())
        for key in SearchSettings.FIXED:
            if stored.get(key) != getattr(settings, key):
                raise LabelZooError(f"--resume: --{key} is {getattr(settings, key)!r} but the search in {out} used "
                                    f"{stored.get(key)!r}: resume with the same value or start a new --out folder")
    elif has_log or stored_path.is_file():
        raise LabelZooError(f"{out} already holds a search ({TRIALS_FILE}): pass --resume to continue it or "
                            "choose another --out folder")
    write_json_atomic(stored_path, asdict(settings))


# ----------------------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    """Where the search left its outputs and what it found."""

    bundle: Path
    winner: list[int]
    dice: float
    trials: int
    predictor: dict[str, Any]


def _device(name: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LabelZooError(f"--device {name}: no CUDA device is available (use --device cpu or auto)")
    return name


def run_trial(vector: list[int], data: Any, iterations: int, patch_size: list[int], base_channels: int, seed: int,
              device: str, threads: int | None = None, keep_weights: bool = False,
              invalid: bool = False) -> dict[str, Any]:
    """One trial (a Ray task, or in-process): train ``vector`` and return its record fields and weights.

    ``invalid`` replaces the vector's first block type by an unknown one (the test hook of the module docstring):
    the vector check below rejects it, as it would any corrupt configuration.
    """
    import socket

    import labelzoo.automl.train as train_module
    from labelzoo.automl.train import torch_threads

    started = time.time()
    if invalid:
        vector = [vector[0], 99, *vector[2:]]
    check_vector(vector)
    with torch_threads(threads):
        result = train_module.train_config(vector, data, iterations, patch_size, base_channels, seed=seed,
                                           keep_weights=keep_weights, device=_device(device))
    return {"score": result.dice, "dice": result.dice, "seconds": result.seconds, "iterations": result.iterations,
            "diverged": result.diverged, "state_dict": result.state_dict, "host": socket.gethostname(),
            "pid": os.getpid(), "started": started, "finished": time.time()}


def _injected_failures() -> set[str]:
    return {k.strip() for k in os.environ.get(INJECT_FAILURES_ENV, "").split(",") if k.strip()}


def _run_phase(phase: str, settings: SearchSettings, data: Any, log: Path, vectors: list[list[int]],
               done: dict[int, dict], iterations: int, seed_offset: int, ray: RayOptions,
               save: Any = None) -> dict[int, dict]:
    """Train the ``vectors`` not in ``done`` as tasks; append each finished (or failed) trial to the log."""
    inject = _injected_failures()
    threads = settings.threads if ray.executor == "inline" else (settings.threads or ray.torch_threads())
    tasks = []
    for i, vector in enumerate(vectors):
        if i in done:
            continue
        key = f"{phase}/{i}"
        tasks.append(Task(key=key, fn=run_trial, args=(vector,),
                          kwargs={"iterations": iterations, "patch_size": settings.patch_size,
                                  "base_channels": settings.base_channels, "seed": settings.seed + seed_offset + i,
                                  "device": settings.device, "threads": threads, "keep_weights": save is not None},
                          attempt_kwargs=(lambda attempt, k=key: {"invalid": attempt == 1 and k in inject})))
    best = max(((t["dice"], t["trial"]) for t in done.values()), default=None)
    progress = TrialProgress(phase, len(vectors), done=len(done), best=best[0] if best else None)

    def on_done(task: Task, outcome: Outcome) -> None:
        i = int(task.key.split("/")[1])
        result = outcome.result
        if save is not None:
            save(i, result["state_dict"])
        record = {"phase": phase, "trial": i, "vector": vectors[i], "dice": result["dice"],
                  "seconds": result["seconds"], "iterations": result["iterations"], "diverged": result["diverged"],
                  "attempt": outcome.attempt, **{k: result[k] for k in ("host", "pid", "started", "finished")}}
        append_trial(log, record)
        done[i] = record
        nonlocal best
        if best is None or record["dice"] > best[0]:
            best = (record["dice"], i)
        logger.info("[%s %d/%d] trial %d: Dice %.4f in %.1fs | best so far %.4f (trial %d)", phase, len(done),
                    len(vectors), i, record["dice"], record["seconds"], best[0], best[1])

    def on_failed(task: Task, outcome: Outcome, final: bool) -> None:
        i = int(task.key.split("/")[1])
        append_trial(log, {"phase": phase, "trial": i, "vector": vectors[i], "status": "failed",
                           "attempt": outcome.attempt, "final": final, "error": outcome.error,
                           "seconds": outcome.seconds})

    if tasks:
        try:
            run_tasks(tasks, ray, on_done, on_failed, progress, shared={"data": data})
        finally:
            progress.close()
    return done


def _proxy_phase(settings: SearchSettings, data: Any, log: Path, trials: list[dict[str, Any]],
                 ray: RayOptions) -> list[dict]:
    candidates = sample_unique(random.Random(settings.seed), settings.budget)
    done = {t["trial"]: t for t in trials if t["phase"] == "proxy"}
    for t in done.values():
        if t["trial"] >= len(candidates) or list(t["vector"]) != candidates[t["trial"]]:
            raise LabelZooError(f"{log}: proxy trial {t['trial']} does not match this search's configurations "
                                "(another seed?): start a new --out folder")
    if done:
        logger.info("resuming: %d of %d proxy trials already in %s", len(done), settings.budget, log)
    done = _run_phase("proxy", settings, data, log, candidates, done, settings.proxy_iterations, 0, ray)
    missing = sorted(set(range(len(candidates))) - set(done))
    if missing:
        logger.warning("proxy trials %s failed after %d retries (errors in %s); the search goes on without them",
                       missing, ray.max_retries, log)
    if len(done) < 3:
        raise LabelZooError(f"only {len(done)} of {settings.budget} proxy trials succeeded (at least 3 are needed): "
                            f"see the errors in {log}; fix the cause and continue with --resume")
    return [done[i] for i in sorted(done)]


def _fit_and_rank(settings: SearchSettings, out: Path, proxy: list[dict]) -> tuple[list[list[int]], dict[str, Any]]:
    """Train the predictor, rank the pool, return the configurations to train fully and the report."""
    from labelzoo.automl.predictor import evaluate_predictor, fit_predictor, win_probability

    ranking_path = out / RANKING_FILE
    if ranking_path.is_file():
        stored = json.loads(ranking_path.read_text())
        logger.info("resuming: using the ranking in %s", ranking_path)
        return [check_vector(v) for v in stored["full_candidates"]], stored.get("predictor", {})
    vectors = [t["vector"] for t in proxy]
    scores = [float(t["dice"]) for t in proxy]
    report: dict[str, Any] = {"n_observed": len(vectors)}
    n_held = max(2, len(vectors) // 4)
    try:
        held = fit_predictor(vectors[:-n_held], scores[:-n_held], seed=settings.seed)
        report["heldout"] = evaluate_predictor(held, vectors[-n_held:], scores[-n_held:]).as_dict()
        logger.info("predictor on %d held-out configurations: pairwise accuracy %.3f, Kendall tau %.3f", n_held,
                    report["heldout"]["pairwise_accuracy"], report["heldout"]["kendall_tau"])
    except LabelZooError as e:
        report["heldout"] = None
        logger.warning("predictor not evaluated on held-out configurations: %s", e)
    best_observed = vectors[max(range(len(scores)), key=scores.__getitem__)]
    try:
        model = fit_predictor(vectors, scores, seed=settings.seed)
    except LabelZooError as e:
        logger.warning("predictor not trained (%s): fully training the best proxy configurations instead", e)
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        picks = [vectors[i] for i in order[: settings.top_k + 1]]
        report["pool"] = None
    else:
        pool = sample_unique(random.Random(settings.seed + 1), settings.pool, exclude=vectors)
        reference = vectors if len(vectors) <= 64 else random.Random(settings.seed).sample(vectors, 64)
        wins = win_probability(model, pool, reference)
        order = sorted(range(len(pool)), key=lambda i: -wins[i])
        picks = [pool[i] for i in order[: settings.top_k]] + [best_observed]
        report["pool"] = {"size": len(pool), "top": [{"vector": pool[i], "win_probability": wins[i]}
                                                     for i in order[: settings.top_k]]}
        # how the predictor ranks the observed configurations against their actual Dice
        report["observed_win_probability"] = win_probability(model, vectors, vectors)
    write_json_atomic(out / PREDICTOR_FILE, report)
    write_json_atomic(ranking_path, {"full_candidates": picks, "predictor": report})
    return picks, report


def _full_phase(settings: SearchSettings, data: Any, out: Path, log: Path, picks: list[list[int]],
                trials: list[dict[str, Any]], ray: RayOptions) -> list[dict]:
    import torch

    weights = out / "weights"
    done = {t["trial"]: t for t in trials if t["phase"] == "full" and (weights / f"full_{t['trial']}.pt").is_file()}

    def save(j: int, state: dict[str, Any]) -> None:
        weights.mkdir(parents=True, exist_ok=True)
        tmp = weights / f".full_{j}.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, weights / f"full_{j}.pt")

    done = _run_phase("full", settings, data, log, picks, done, settings.full_iterations, 10_000, ray, save=save)
    if not done:
        raise LabelZooError(f"every full training failed: see the errors in {log}; fix the cause and continue "
                            "with --resume")
    return [done[j] for j in sorted(done)]


def run_search(settings: SearchSettings, out: str | Path, resume: bool = False,
               ray: RayOptions | None = None) -> SearchResult:
    """Run (or with ``resume`` continue) a T-AutoML search; see the module docstring for the steps.

    ``ray`` schedules the trainings (default: an embedded Ray instance, one CPU trial at a time).

    Raises:
        LabelZooError: on a bad setting, a dataset that is not in MSD layout, an ``out`` folder that already
            holds a search without ``resume`` (or a different one with it).
    """
    import torch

    from labelzoo.automl.bundle import default_bundle_name, emit_bundle
    from labelzoo.automl.train import prepare_data, read_msd_dataset, torch_threads

    settings.validate()
    ray = ray or RayOptions()
    ray.validate()
    ray.wants_gpu = settings.device != "cpu"
    if ray.executor == "ray" and settings.device.startswith("cuda") and not ray.gpus_per_trial:
        ray.gpus_per_trial = 1.0  # Ray hides GPUs from tasks that ask for none
        logger.info("--device %s: each trial asks Ray for 1 GPU (set --gpus_per_trial to share one)", settings.device)
    if ray.executor == "inline" or ray.embedded:
        _device(settings.device)  # fail before anything is written (a cluster's workers may have GPUs)
    out = Path(out).expanduser().resolve()
    info = read_msd_dataset(settings.dataset)
    settings.dataset = str(info.root)
    out.mkdir(parents=True, exist_ok=True)
    _settings_for_run(out, settings, resume)
    log = out / TRIALS_FILE
    trials = read_trials(log, repair=True)
    start = time.perf_counter()
    logger.info("T-AutoML search on %s: %d proxy trials of %d iterations, pool %d, top %d -> %s", info.root,
                settings.budget, settings.proxy_iterations, settings.pool, settings.top_k, out)
    with torch_threads(settings.threads), ray_session(ray):
        data = prepare_data(info)
        proxy = _proxy_phase(settings, data, log, trials, ray)
        picks, report = _fit_and_rank(settings, out, proxy)
        full = _full_phase(settings, data, out, log, picks, trials, ray)
    winner = max(full, key=lambda t: t["dice"])
    state = torch.load(out / "weights" / f"full_{winner['trial']}.pt", map_location="cpu", weights_only=True)
    name = settings.name or default_bundle_name(info)
    summary = {
        "budget": settings.budget, "proxy_iterations": settings.proxy_iterations,
        "full_iterations": settings.full_iterations, "pool": settings.pool, "top_k": settings.top_k,
        "patch_size": settings.patch_size, "best_proxy_dice": max(t["dice"] for t in proxy),
        "winner_full_trial": winner["trial"], "predictor_heldout": report.get("heldout"),
    }
    bundle = emit_bundle(out / name, winner["vector"], info, settings.patch_size, settings.base_channels,
                         state_dict=state, dice=winner["dice"], max_epochs=settings.max_epochs, name=name,
                         search_summary=summary, overwrite=True)
    logger.info("search done in %.0fs: winner Dice %.4f, bundle %s", time.perf_counter() - start, winner["dice"],
                bundle)
    return SearchResult(bundle=bundle, winner=winner["vector"], dice=winner["dice"],
                        trials=len(proxy) + len(full), predictor=report)
