"""Several annotators: leases, agreement, consensus, the report (pure functions, no server)."""

from __future__ import annotations

import numpy as np

from labelzoo.annotators import (
    LeaseBook,
    agreement_report,
    annotator_slug,
    class_dice,
    format_report,
    majority_vote,
    pairwise_dice,
    plot_agreement,
    staple,
)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_leases_hand_an_image_to_one_annotator_until_idle():
    clock = Clock()
    book = LeaseBook(idle_s=60, clock=clock)
    book.acquire("a", "alice", "first")
    assert book.unavailable("bob", reads=1, done={}) == {"a"}
    assert book.unavailable("alice", reads=1, done={}) == set()
    clock.t += 50
    assert book.renew("a", "alice") is not None  # working on it: 60 s more from now
    clock.t += 50
    assert book.unavailable("bob", reads=1, done={}) == {"a"}
    clock.t += 11
    assert book.unavailable("bob", reads=1, done={}) == set()  # idle 61 s: expired
    assert book.renew("a", "alice") is None


def test_multiple_reads_let_k_annotators_hold_an_image():
    book = LeaseBook(idle_s=60, clock=Clock())
    book.acquire("a", "alice")
    assert book.unavailable("bob", reads=2, done={}) == set()
    book.acquire("a", "bob")
    assert book.unavailable("carol", reads=2, done={}) == {"a"}
    # alice already labelled it and bob holds it: the 2 reads are taken
    book.release("a", "alice")
    assert book.unavailable("carol", reads=2, done={"a": {"alice"}}) == {"a"}
    lease = book.release("a", "bob")
    assert lease.annotator == "bob" and lease.start == 1000.0


def test_dice_vote_and_staple():
    a = np.zeros((8, 8), np.uint8)
    a[2:6, 2:6] = 1
    b = a.copy()
    b[2:6, 5] = 0
    c = a.copy()
    c[2:6, 2] = 0
    c[0, 0] = 2
    assert class_dice(a, a, [1, 2]) == {1: 1.0, 2: 1.0}
    pairs = pairwise_dice({"x": a, "y": b, "z": c}, [1])
    assert set(pairs) == {("x", "y"), ("x", "z"), ("y", "z")}
    assert abs(pairs[("x", "y")][1] - 2 * 12 / 28) < 1e-9
    vote = majority_vote([a, b, c])
    assert np.array_equal(vote, a)  # each voxel has 2 of 3 votes for a's value
    assert np.array_equal(majority_vote([a, np.zeros_like(a)]), np.zeros_like(a))  # ties go to background
    consensus = staple([a, b, c])
    assert consensus.shape == a.shape and set(np.unique(consensus)) <= {0, 1, 2}
    assert (consensus == 1).sum() >= 12


def test_report_counts_times_and_disputes(tmp_path):
    images = {
        "i1": {"pairs": {"alice|bob": {"1": 0.9, "6": 0.95}}, "vs_model": {"alice": {"1": 0.7}},
               "labels": [{"annotator": "alice", "seconds": 30}, {"annotator": "bob", "seconds": 50}]},
        "i2": {"pairs": {"alice|bob": {"1": 0.5, "6": 0.6}}, "vs_model": {},
               "labels": [{"annotator": "alice", "seconds": 40}, {"annotator": "bob", "seconds": None}]},
    }
    report = agreement_report(images, threshold=0.8)
    assert report["annotators"]["alice"] == {"labels": 2, "median_seconds_per_label": 35.0}
    assert report["annotators"]["bob"]["labels"] == 2
    assert report["classes"]["1"]["mean_pairwise_dice"] == 0.7 and report["classes"]["1"]["mean_dice_vs_model"] == 0.7
    assert report["disputed"] == ["i2"] and report["images"]["i1"] == 0.925
    text = format_report(report)
    assert "alice" in text and "i2 (0.550)" in text
    path = plot_agreement(report, str(tmp_path / "a.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert annotator_slug("Dr. Ann Lee/../x") == "Dr.-Ann-Lee-.-x"
