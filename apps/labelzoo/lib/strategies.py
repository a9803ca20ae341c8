"""Active-learning strategies: thin MONAI Label wrappers over :mod:`labelzoo.activelearning`.

Each returns ``{"id", "score", "reason", "selection": {"strategy", "score", "reason"}}`` so a client
can show why an image was chosen (MONAI Label merges the image's info into the answer; its
``strategy`` key is MONAI Label's record of when each strategy served the image, hence ``selection``).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from labelzoo.activelearning import (
    Choice,
    choose_class_stratified,
    choose_first,
    choose_foreground_random,
    choose_hybrid,
    choose_power,
    choose_random,
    choose_uncertain,
    power_beta,
    region_uncertainty,
)
from labelzoo.partial import slices_to_grid, top_slices
from labelzoo.validation import read_shape
from lib.errors import bad_request
from lib.scoring import ScoreBoard, Scorer, ScoringWorker, UncertaintyScoring

logger = logging.getLogger(__name__)


def _answer(choice: Choice | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    return {"id": choice.id, "score": choice.score, "reason": choice.reason, "selection": choice.as_dict()}


def _pool(request: dict, datastore: Datastore) -> list[str]:
    return sorted(datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels")))


def _int_param(request: dict, key: str, default: int) -> int:
    value = request.get(key, default)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise bad_request(f"parameter {key!r} must be a positive integer, got {value!r}") from None
    if value < 1:
        raise bad_request(f"parameter {key!r} must be a positive integer, got {value}")
    return value


class FirstStrategy(Strategy):
    """``first``: the first unlabelled image in name order."""

    def __init__(self):
        super().__init__("First unlabelled image in name order")

    def __call__(self, request, datastore: Datastore):
        return _answer(choose_first(_pool(request, datastore)))


class RandomStrategy(Strategy):
    """``random``: a uniformly random unlabelled image."""

    def __init__(self, seed: int | None = None):
        super().__init__("Random unlabelled image")
        self._rng = random.Random(seed)

    def __call__(self, request, datastore: Datastore):
        return _answer(choose_random(_pool(request, datastore), self._rng))


class _ScoredStrategy(Strategy):
    """Shared fallback: while the pool is not scored yet, hand out the first unscored image and say so."""

    def __init__(self, name: str, description: str, method: str, board: ScoreBoard, worker: ScoringWorker | None):
        super().__init__(description)
        self.name = name
        self.method = method
        self.board = board
        self.worker = worker

    def info(self) -> dict[str, Any]:
        i = super().info()
        i.update({"model": self.board.model, "scoring": self.method})
        return i

    def _fallback(self, pool: list[str], scores: dict[str, float]) -> dict[str, Any] | None:
        if self.worker is not None:
            self.worker.wake([self.method])
        unscored = [i for i in pool if i not in scores]
        choice = choose_first(unscored or pool, strategy=self.name)
        if choice is None:
            return None
        reason = (f"no {self.method} scores from model {self.board.model!r} yet ({len(scores)} of {len(pool)} "
                  f"unlabelled images scored, scoring in the background): first unscored image instead")
        return _answer(Choice(choice.id, self.name, None, reason))


class UncertaintyStrategy(_ScoredStrategy):
    """``epistemic`` / ``tta``: top-``k`` by uncertainty, then the least recently served among them."""

    def __init__(self, name: str, description: str, method: str, board: ScoreBoard,
                 worker: ScoringWorker | None, k: int = 3):
        super().__init__(name, description, method, board, worker)
        self.k = k

    def info(self) -> dict[str, Any]:
        i = super().info()
        i["k"] = self.k
        return i

    def __call__(self, request, datastore: Datastore):
        k = _int_param(request, "k", self.k)
        pool = _pool(request, datastore)
        scores = self.board.scores(datastore, pool, self.method)
        if not scores:
            return self._fallback(pool, scores)
        last = self.board.last_served(datastore, scores)
        return _answer(choose_uncertain(scores, k=k, last_served=last, strategy=self.name))


class HybridStrategy(_ScoredStrategy):
    """``hybrid``: uncertain and far (in feature space) from labelled and recently served images."""

    def __init__(self, board: ScoreBoard, worker: ScoringWorker | None, alpha: float = 0.5):
        super().__init__("hybrid", "Uncertain images far from those labelled or already served (uncertainty + "
                         "diversity), so a batch is not near-duplicates", "epistemic", board, worker)
        self.alpha = alpha

    def info(self) -> dict[str, Any]:
        i = super().info()
        i["alpha"] = self.alpha
        return i

    def __call__(self, request, datastore: Datastore):
        try:
            alpha = float(request.get("alpha", self.alpha))
        except (TypeError, ValueError):
            raise bad_request(f"parameter 'alpha' must be a number in [0, 1], got {request.get('alpha')!r}") from None
        if not 0 <= alpha <= 1:
            raise bad_request(f"parameter 'alpha' must be a number in [0, 1], got {alpha}")
        pool = _pool(request, datastore)
        scores = self.board.scores(datastore, pool, self.method)
        features = self.board.features(datastore, scores)
        if not scores or not features:
            return self._fallback(pool, scores)
        served = self.board.last_served(datastore, pool)
        unlabelled = set(pool)
        labelled = [i for i in datastore.list_images() if i not in unlabelled]
        reference_ids = set(labelled) | set(served)
        reference = list(self.board.features(datastore, reference_ids, any_version=True).values())
        candidates = {i: s for i, s in scores.items() if i not in served} or scores
        return _answer(choose_hybrid(candidates, features, reference, alpha, strategy="hybrid"))


# ---- region-aware scoring and the strategies that rank on it ------------------------------------------------
#: Scoring method name and the image-info entry holding its per-class detail (``scores.<model>.regions``).
BOUNDARY, REGIONS = "boundary", "regions"


class BoundaryScoring(UncertaintyScoring):
    """``boundary``: uncertainty on the predicted structures' boundaries, overall and per class.

    One pass per image (Monte-Carlo dropout samples averaged when the network has dropout) gives the
    boundary-band entropy (``scores.<model>.boundary``) and, in ``scores.<model>.regions``, the per-class
    band entropy, predicted volumes, foreground fraction and the most uncertain slices
    (:func:`labelzoo.activelearning.region_uncertainty`).
    """

    name = BOUNDARY

    def __init__(self, scorer: Scorer, board: ScoreBoard, width: int = 2):
        super().__init__(BOUNDARY, scorer, board,
                         f"Uncertainty on the boundaries of the predicted structures ({board.model}): "
                         "mean entropy in a band around each structure, not over the whole (mostly empty) volume")
        self.width = width

    def score_one(self, datastore: Datastore, image_id: str) -> float:
        version = self.board.version()
        mc, _, n_dropout, inferer = self.scorer._networks()
        task = self.scorer.task
        x = task.preprocess(datastore.get_image_uri(image_id), self.scorer.device)
        n = self.scorer.samples if n_dropout else 1
        probs = torch.stack([task.probabilities(x, mc, inferer, self.scorer.device) for _ in range(n)]).mean(0)
        regions = region_uncertainty(probs, multilabel=task.bundle_info.multilabel, width=self.width)
        detail = regions.as_dict()
        # slices are asked for in the image file's voxel grid (the preprocessing may resample the slice axis)
        uri = datastore.get_image_uri(image_id)
        dims = task.bundle_info.spatial_dims
        n_image = read_shape(uri)[dims - 1] if dims == 3 else len(regions.slice_scores)
        per_slice = slices_to_grid(regions.slice_scores, n_image)
        detail.update(slice_axis=dims - 1, slice_scores=[round(v, 5) for v in per_slice],
                      slices=top_slices(per_slice, len(regions.slices)))
        self.board.write(datastore, image_id, {BOUNDARY: regions.score, REGIONS: detail}, version)
        logger.info("boundary score of %s with %s: %.5f", image_id, self.board.model, regions.score)
        return regions.score


def _regions(board: ScoreBoard, datastore: Datastore, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Image id -> the ``regions`` detail stored with the current weights."""
    version = board.version()
    out = {}
    for i in ids:
        entry = ((datastore.get_image_info(i).get("scores") or {}).get(board.model) or {}).get(REGIONS)
        if isinstance(entry, dict) and entry.get("version") == version and isinstance(entry.get("score"), dict):
            out[i] = entry["score"]
    return out


def _with_slices(answer: dict[str, Any] | None, regions: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Add the most uncertain slices of the chosen image (``slices`` along ``slice_axis`` of the image file's voxel
    grid) to the answer: where to look first (the whole image is still asked for)."""
    if answer and answer["id"] in regions:
        answer["slices"] = list(regions[answer["id"]].get("slices") or [])
        answer["slice_axis"] = regions[answer["id"]].get("slice_axis", 2)
        answer["selection"]["slices"] = answer["slices"]
    return answer


def _partial(answer: dict[str, Any] | None, axis: int, slices: list[int], why: str) -> dict[str, Any] | None:
    """Make ``answer`` a slice-level query: annotate only ``slices`` along ``axis`` (``partial: true``)."""
    if answer:
        answer.update(partial=True, slice_axis=axis, slices=list(slices))
        answer["reason"] = f"{answer['reason']}; annotate only slices {', '.join(map(str, slices))} ({why})"
        answer["selection"].update(partial=True, slice_axis=axis, slices=list(slices), reason=answer["reason"])
    return answer


def _slice_params(request: dict, n_default: int, gap_default: int) -> tuple[int, int]:
    return _int_param(request, "n_slices", n_default), _int_param(request, "slice_gap", gap_default)


class ForegroundRandomStrategy(Strategy):
    """``fg_random``: random, biased to images with more predicted foreground (nnActive's strong baseline)."""

    def __init__(self, board: ScoreBoard | None, seed: int | None = None, floor: float = 0.05):
        super().__init__("Random unlabelled image, biased to predicted foreground (foreground-aware random)")
        self.board = board
        self.floor = floor
        self._rng = random.Random(seed)

    def info(self) -> dict[str, Any]:
        i = super().info()
        if self.board is not None:
            i.update({"model": self.board.model, "scoring": BOUNDARY})
        return i

    def __call__(self, request, datastore: Datastore):
        pool = _pool(request, datastore)
        regions = _regions(self.board, datastore, pool) if self.board is not None else {}
        fg = {i: float(r.get("foreground", 0.0)) for i, r in regions.items()}
        return _answer(choose_foreground_random(pool, fg, self._rng, self.floor))


class PowerBoundaryStrategy(_ScoredStrategy):
    """``boundary``: boundary-region uncertainty, drawn by power sampling (score ** beta) rather than top-k."""

    def __init__(self, board: ScoreBoard, worker: ScoringWorker | None, beta: float = 2.0, seed: int | None = None):
        super().__init__("boundary", "Uncertain on the structures' boundaries (not diluted by empty background), "
                         "drawn with probability ~ score ** beta so a batch is not near-duplicates",
                         BOUNDARY, board, worker)
        self.beta = beta
        self._rng = random.Random(seed)

    def info(self) -> dict[str, Any]:
        i = super().info()
        i["beta"] = self.beta
        return i

    def __call__(self, request, datastore: Datastore):
        pool = _pool(request, datastore)
        scores = self.board.scores(datastore, pool, self.method)
        if not scores:
            return self._fallback(pool, scores)
        return _with_slices(_answer(choose_power(scores, self.beta, self._rng, strategy=self.name)),
                            _regions(self.board, datastore, list(scores)))


class ClassStratifiedStrategy(_ScoredStrategy):
    """``clasp``: classes take turns; power-sample by the uncertainty on that class's boundary (ClaSP PE)."""

    def __init__(self, board: ScoreBoard, worker: ScoringWorker | None, seed: int | None = None):
        super().__init__("clasp", "Class-stratified: classes take turns, each drawing an image by its uncertainty on "
                         "that class's boundary (power sampling, exponent rising with the labels)",
                         BOUNDARY, board, worker)
        self._rng = random.Random(seed)

    def __call__(self, request, datastore: Datastore):
        pool = _pool(request, datastore)
        regions = _regions(self.board, datastore, pool)
        if not regions:
            return self._fallback(pool, {})
        n_labelled = len(datastore.list_images()) - len(pool)
        class_scores = {i: {int(c): float(v) for c, v in (r.get("classes") or {}).items()} for i, r in regions.items()}
        choice = choose_class_stratified(class_scores, n_labelled, self._rng, beta=power_beta(n_labelled))
        return _with_slices(_answer(choice), regions)


# ---- slice-level (partial) queries ---------------------------------------------------------------------------
class SliceStrategy(_ScoredStrategy):
    """``boundary_slices``: the image as ``boundary`` draws it, and only its ``n_slices`` most uncertain slices.

    The answer holds ``partial: true``, ``slice_axis`` and ``slices`` (image file voxel grid): the annotator
    paints those slices and submits the label with label info ``{"annotated_slices": {"axis", "slices"}}``;
    training leaves the other voxels out. Slices are at least ``slice_gap`` apart (neighbours look alike).
    """

    def __init__(self, board: ScoreBoard, worker: ScoringWorker | None, beta: float = 2.0, n_slices: int = 3,
                 slice_gap: int = 3, seed: int | None = None):
        super().__init__("boundary_slices", "Slice-level query: the image drawn by boundary uncertainty, and its most "
                         "uncertain slices only (partial annotation; training ignores the other voxels)",
                         BOUNDARY, board, worker)
        self.beta, self.n_slices, self.slice_gap = beta, n_slices, slice_gap
        self._rng = random.Random(seed)

    def info(self) -> dict[str, Any]:
        i = super().info()
        i.update(beta=self.beta, n_slices=self.n_slices, slice_gap=self.slice_gap, partial=True)
        return i

    def __call__(self, request, datastore: Datastore):
        n, gap = _slice_params(request, self.n_slices, self.slice_gap)
        pool = _pool(request, datastore)
        scores = self.board.scores(datastore, pool, self.method)
        regions = _regions(self.board, datastore, list(scores))
        scores = {i: s for i, s in scores.items() if (regions.get(i) or {}).get("slice_scores")}
        if not scores:
            return self._fallback(pool, scores)
        answer = _answer(choose_power(scores, self.beta, self._rng, strategy=self.name))
        detail = regions[answer["id"]]
        slices = top_slices(detail["slice_scores"], n, gap)
        return _partial(answer, int(detail.get("slice_axis", 2)), slices, "the most uncertain on the boundaries")


class RandomSliceStrategy(Strategy):
    """``random_slices``: a random image and ``n_slices`` random slices of it (the slice-level random baseline)."""

    def __init__(self, spatial_dims: int = 3, n_slices: int = 3, slice_gap: int = 3, seed: int | None = None):
        super().__init__("Slice-level random baseline: a random image and random slices of it (partial annotation)")
        self.spatial_dims, self.n_slices, self.slice_gap = spatial_dims, n_slices, slice_gap
        self._rng = random.Random(seed)

    def info(self) -> dict[str, Any]:
        i = super().info()
        i.update(n_slices=self.n_slices, slice_gap=self.slice_gap, partial=True)
        return i

    def __call__(self, request, datastore: Datastore):
        n, gap = _slice_params(request, self.n_slices, self.slice_gap)
        answer = _answer(choose_random(_pool(request, datastore), self._rng))
        if answer is None:
            return None
        depth = read_shape(datastore.get_image_uri(answer["id"]))[self.spatial_dims - 1]
        # random slice scores: top_slices then keeps the gap between the drawn slices
        slices = top_slices([self._rng.random() for _ in range(depth)], n, gap)
        return _partial(answer, self.spatial_dims - 1, slices, "drawn at random")
