"""Active-learning strategies: thin MONAI Label wrappers over :mod:`labelzoo.activelearning`.

Each returns ``{"id", "score", "reason", "selection": {"strategy", "score", "reason"}}`` so a client
can show why an image was chosen (MONAI Label merges the image's info into the answer; its
``strategy`` key is MONAI Label's record of when each strategy served the image, hence ``selection``).
"""

from __future__ import annotations

import logging
import random
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from labelzoo.activelearning import Choice, choose_first, choose_hybrid, choose_random, choose_uncertain
from lib.errors import bad_request
from lib.scoring import ScoreBoard, ScoringWorker

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
        labelled = [i for i in datastore.list_images() if i not in set(pool)]
        reference_ids = set(labelled) | set(served)
        reference = list(self.board.features(datastore, reference_ids, any_version=True).values())
        candidates = {i: s for i, s in scores.items() if i not in served} or scores
        return _answer(choose_hybrid(candidates, features, reference, alpha, strategy="hybrid"))
