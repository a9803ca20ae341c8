"""Several annotators on one server: who works on what (leases), agreement between readers, consensus labels.

Pure functions and small classes, unit-tested without a server (``tests/unit/test_annotators.py``); the app
(``apps/labelzoo``) stores labels and calls these.

- :class:`LeaseBook`: ``next_sample`` hands an image to one annotator at a time; a lease expires after an idle
  time and is renewed while the annotator works on the image (inference, saving).
- :func:`pairwise_dice`, :func:`majority_vote`, :func:`staple`: agreement per label class between readers (and
  against the model's suggestion) and a consensus label (majority vote; STAPLE with SimpleITK's
  ``MultiLabelSTAPLEImageFilter``).
- :func:`agreement_report`: annotators' counts and time per label, the agreement table, disputed images.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the annotator name of a request without identity
ANONYMOUS = "anonymous"
#: label tags of the readers of an image when several reads are asked for: ``read-<annotator>``
READ_PREFIX = "read-"
CONSENSUS_TAG = "consensus"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def annotator_slug(name: str) -> str:
    """A label-tag-safe form of an annotator name (``Dr. Ann Lee`` -> ``Dr.-Ann-Lee``)."""
    slug = re.sub(r"\.{2,}", ".", _UNSAFE.sub("-", str(name))).strip("-.")[:60]
    return slug or ANONYMOUS


def read_tag(annotator: str) -> str:
    return READ_PREFIX + annotator_slug(annotator)


# ---- leases ---------------------------------------------------------------------------------------------------------
@dataclass
class Lease:
    image: str
    annotator: str
    start: float
    expires: float
    strategy: str | None = None

    def as_dict(self, now: float) -> dict[str, Any]:
        return {"image": self.image, "annotator": self.annotator, "start_ts": self.start, "expires_ts": self.expires,
                "expires_in_s": round(max(0.0, self.expires - now), 1), "strategy": self.strategy}


class LeaseBook:
    """Which annotator holds which image, until when. Thread-safe; ``clock`` is injectable for tests.

    An image may be leased by up to ``reads`` annotators at once (one per annotator), minus those who already
    labelled it; with ``reads == 1`` it is one annotator's at a time.
    """

    def __init__(self, idle_s: float = 1800.0, clock: Callable[[], float] = time.time):
        self.idle_s = float(idle_s)
        self.clock = clock
        self._leases: dict[tuple[str, str], Lease] = {}
        self._lock = threading.Lock()
        self._history: dict[tuple[str, str], Lease] = {}

    def _expire(self, now: float) -> None:
        for key in [k for k, lease in self._leases.items() if lease.expires <= now]:
            del self._leases[key]

    def holders(self, image: str) -> list[Lease]:
        with self._lock:
            now = self.clock()
            self._expire(now)
            return [lease for (img, _), lease in self._leases.items() if img == image]

    def unavailable(self, annotator: str, reads: int, done: Mapping[str, set[str]]) -> set[str]:
        """Images another annotator may not be given now: leased to ``reads`` others, or leased to others with
        the remaining reads already taken (``done``: image -> annotators with a label)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            by_image: dict[str, set[str]] = {}
            for (img, who), _ in self._leases.items():
                by_image.setdefault(img, set()).add(who)
            out = set()
            for img, who in by_image.items():
                others = who - {annotator}
                if annotator in who:
                    continue
                if len(others | done.get(img, set())) >= reads:
                    out.add(img)
            return out

    def acquire(self, image: str, annotator: str, strategy: str | None = None) -> Lease:
        with self._lock:
            now = self.clock()
            self._expire(now)
            key = (image, annotator)
            lease = self._leases.get(key)
            if lease is None:
                lease = Lease(image, annotator, now, now + self.idle_s, strategy)
                self._leases[key] = lease
            else:
                lease.expires = now + self.idle_s
                lease.strategy = strategy or lease.strategy
            self._history[key] = lease
            return lease

    def renew(self, image: str, annotator: str) -> Lease | None:
        """Extend ``annotator``'s lease of ``image`` (``None`` when they hold none)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            lease = self._leases.get((image, annotator))
            if lease is not None:
                lease.expires = now + self.idle_s
            return lease

    def release(self, image: str, annotator: str) -> Lease | None:
        """End the lease (the label is saved); returns it (or the last one this annotator held) for timing."""
        with self._lock:
            lease = self._leases.pop((image, annotator), None)
            return lease or self._history.get((image, annotator))

    def last(self, image: str, annotator: str) -> Lease | None:
        """``annotator``'s current lease of ``image``, or the last one they held (expired or released)."""
        with self._lock:
            return self._leases.get((image, annotator)) or self._history.get((image, annotator))

    def held_by_other(self, image: str, annotator: str) -> list[str]:
        return [lease.annotator for lease in self.holders(image) if lease.annotator != annotator]


# ---- agreement -------------------------------------------------------------------------------------------------------
def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def class_dice(a: np.ndarray, b: np.ndarray, classes: Iterable[int]) -> dict[int, float]:
    """Dice per label value (``classes``, background excluded by the caller)."""
    return {int(c): dice(a == c, b == c) for c in classes}


def pairwise_dice(labels: Mapping[str, np.ndarray], classes: Iterable[int]) -> dict[tuple[str, str], dict[int, float]]:
    """Dice per class for every pair of readers (names sorted within each pair)."""
    classes = list(classes)
    return {(p, q): class_dice(labels[p], labels[q], classes)
            for p, q in itertools.combinations(sorted(labels), 2)}


def majority_vote(labels: Sequence[np.ndarray]) -> np.ndarray:
    """Per voxel, the label value most readers gave (ties: the smallest value, so background wins a 1-1 tie)."""
    stack = np.stack([np.asarray(x) for x in labels])
    values = np.unique(stack)
    counts = np.stack([(stack == v).sum(0) for v in values])
    return values[np.argmax(counts, axis=0)].astype(stack.dtype)


def staple(labels: Sequence[np.ndarray]) -> np.ndarray:
    """Multi-label STAPLE consensus (Warfield et al. 2004), SimpleITK's ``MultiLabelSTAPLEImageFilter``.

    Voxels STAPLE leaves undecided fall back to the majority vote.
    """
    import SimpleITK as sitk

    arrays = [np.asarray(x).astype(np.uint16) for x in labels]
    images = [sitk.GetImageFromArray(a) for a in arrays]
    undecided = int(max(int(a.max()) for a in arrays) + 1)
    f = sitk.MultiLabelSTAPLEImageFilter()
    f.SetLabelForUndecidedPixels(undecided)
    out = sitk.GetArrayFromImage(f.Execute(images)).astype(arrays[0].dtype)
    vote = majority_vote(arrays)
    return np.where(out == undecided, vote, out).astype(np.asarray(labels[0]).dtype)


def consensus(labels: Sequence[np.ndarray], method: str = "majority") -> np.ndarray:
    if method == "majority":
        return majority_vote(labels)
    if method == "staple":
        return staple(labels)
    raise ValueError(f"consensus method must be 'majority' or 'staple', got {method!r}")


# ---- the report ------------------------------------------------------------------------------------------------------
def agreement_report(images: Mapping[str, Mapping[str, Any]], threshold: float = 0.8) -> dict[str, Any]:
    """Summarise several readers' work.

    Args:
        images: image id -> ``{"pairs": {"a|b": {class: dice}}, "vs_model": {annotator: {class: dice}},
            "labels": [{"annotator", "seconds"}...]}`` (the per-image agreement the app stores).
        threshold: an image whose lowest pairwise mean Dice is below this is disputed.

    Returns:
        ``annotators`` (labels, median seconds per label), ``classes`` (mean pairwise Dice per class, and vs
        the model), ``images`` (per image: mean pairwise Dice), ``disputed`` (ids, lowest first).
    """
    per_annotator: dict[str, list[float]] = {}
    per_class: dict[str, list[float]] = {}
    per_class_model: dict[str, list[float]] = {}
    per_image: dict[str, float] = {}
    for image, entry in images.items():
        for label in entry.get("labels", []):
            seconds = label.get("seconds")
            per_annotator.setdefault(label.get("annotator", ANONYMOUS), [])
            if seconds is not None:
                per_annotator[label.get("annotator", ANONYMOUS)].append(float(seconds))
        means = []
        for scores in entry.get("pairs", {}).values():
            for c, d in scores.items():
                per_class.setdefault(str(c), []).append(float(d))
            if scores:
                means.append(float(np.mean(list(scores.values()))))
        for scores in entry.get("vs_model", {}).values():
            for c, d in scores.items():
                per_class_model.setdefault(str(c), []).append(float(d))
        if means:
            per_image[image] = round(min(means), 4)
    counts = {}
    for entry in images.values():
        for label in entry.get("labels", []):
            name = label.get("annotator", ANONYMOUS)
            counts[name] = counts.get(name, 0) + 1
    return {
        "annotators": {a: {"labels": counts.get(a, 0),
                           "median_seconds_per_label": round(float(np.median(s)), 1) if s else None}
                       for a, s in sorted(per_annotator.items())},
        "classes": {c: {"mean_pairwise_dice": round(float(np.mean(v)), 4), "pairs": len(v),
                        "mean_dice_vs_model": (round(float(np.mean(per_class_model[c])), 4)
                                               if per_class_model.get(c) else None)}
                    for c, v in sorted(per_class.items(), key=lambda kv: int(kv[0]))},
        "images": per_image,
        "disputed": sorted((i for i, d in per_image.items() if d < threshold), key=lambda i: per_image[i]),
        "threshold": threshold,
    }


def plot_agreement(report: Mapping[str, Any], path: str, class_names: Mapping[str, str] | None = None) -> str:
    """Bar plot of the mean pairwise Dice per class (and vs the model) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(report["classes"])
    names = [(class_names or {}).get(c, c) for c in classes]
    between = [report["classes"][c]["mean_pairwise_dice"] for c in classes]
    model = [report["classes"][c]["mean_dice_vs_model"] or 0.0 for c in classes]
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(classes) + 2), 3.5))
    ax.bar(x - 0.2, between, 0.4, label="between annotators")
    ax.bar(x + 0.2, model, 0.4, label="annotators vs model suggestion")
    ax.axhline(report.get("threshold", 0.8), color="grey", lw=0.8, ls="--", label="disputed below")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean Dice")
    ax.set_title("Agreement per class")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def records_from_datastore(studies: str) -> dict[str, dict[str, Any]]:
    """The per-image agreement records a LabelZoo server stored in ``STUDIES/datastore_v2.json``."""
    import json
    from pathlib import Path

    from labelzoo.errors import LabelZooError

    path = Path(studies) / "datastore_v2.json"
    if not path.is_file():
        raise LabelZooError(f"{path} does not exist: give the studies folder a LabelZoo server serves")
    try:
        objects = json.loads(path.read_text()).get("objects", {})
    except ValueError as e:
        raise LabelZooError(f"{path} is not valid JSON ({e})") from None
    return {i: o["image"]["info"]["agreement"] for i, o in objects.items()
            if isinstance(o, dict) and (o.get("image", {}).get("info") or {}).get("agreement")}


def format_report(report: Mapping[str, Any]) -> str:
    """The report as text tables (annotators, classes, disputed images)."""
    lines = ["annotator                     labels   median s/label"]
    for name, a in report["annotators"].items():
        seconds = "-" if a["median_seconds_per_label"] is None else f"{a['median_seconds_per_label']:.1f}"
        lines.append(f"{name[:28]:<28}{a['labels']:>8}{seconds:>17}")
    lines += ["", "class   mean Dice between annotators   pairs   mean Dice vs model"]
    for c, v in report["classes"].items():
        model = "-" if v["mean_dice_vs_model"] is None else f"{v['mean_dice_vs_model']:.3f}"
        lines.append(f"{c:<8}{v['mean_pairwise_dice']:>30.3f}{v['pairs']:>8}{model:>21}")
    disputed = ", ".join(f"{i} ({report['images'][i]:.3f})" for i in report["disputed"]) or "none"
    lines += ["", f"disputed images (lowest pairwise mean Dice < {report['threshold']}): {disputed}"]
    return "\n".join(lines)
