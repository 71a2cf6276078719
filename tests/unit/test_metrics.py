"""Verification metrics (`workbench.evaluation.metrics`) against hand counts and brute force."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest

from workbench.evaluation.metrics import (
    Confusion,
    Roc,
    best_threshold,
    confusion,
    kfold_verification,
    roc,
)

pytestmark = pytest.mark.unit


def _brute_best_accuracy(s: np.ndarray, y: np.ndarray) -> float:
    """The best accuracy of ``score > t`` over every threshold that can make a difference."""
    candidates = np.r_[s.min() - 1.0, s]
    return max(float(((s > t) == y).mean()) for t in candidates)


def _mann_whitney(s: np.ndarray, y: np.ndarray) -> float:
    """P(positive score > negative score), ties counting one half, over all pos × neg pairs."""
    pos, neg = s[y], s[~y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(pos, neg))
    return wins / (len(pos) * len(neg))


# ---- confusion -------------------------------------------------------------------
def test_confusion_counts_by_hand() -> None:
    scores = [0.9, 0.8, 0.3, 0.6, 0.1, 0.5]
    labels = [True, True, True, False, False, False]
    c = confusion(scores, labels, 0.55)
    # Accepted (> 0.55): 0.9, 0.8 (same) and 0.6 (different); 0.3 is a missed same pair.
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 1, 2, 1)
    assert c.accuracy == pytest.approx(4 / 6)
    assert c.precision == pytest.approx(2 / 3)
    assert c.recall == pytest.approx(2 / 3)
    assert c.f1 == pytest.approx(2 / 3)


def test_confusion_is_strictly_above_the_threshold() -> None:
    c = confusion([0.6, 0.6, 0.2], [True, False, False], 0.6)
    assert (c.tp, c.fp, c.tn, c.fn) == (0, 0, 2, 1)
    c = confusion([0.6, 0.6, 0.2], [True, False, False], 0.5999)
    assert (c.tp, c.fp, c.tn, c.fn) == (1, 1, 1, 0)


def test_confusion_rates_without_decisions() -> None:
    assert math.isnan(Confusion(0, 0, 0, 0).accuracy)
    nothing_accepted = Confusion(tp=0, fp=0, tn=3, fn=2)
    assert nothing_accepted.precision == 0.0
    assert nothing_accepted.recall == 0.0
    assert nothing_accepted.f1 == 0.0
    assert nothing_accepted.accuracy == pytest.approx(0.6)


# ---- best_threshold --------------------------------------------------------------
def test_best_threshold_separates_separable_classes() -> None:
    scores = [0.1, 0.72, 0.3, 0.2, 0.9, 0.8]
    labels = [False, True, False, False, True, True]
    thr, acc = best_threshold(scores, labels)
    assert acc == 1.0
    assert 0.3 < thr < 0.72
    assert thr == pytest.approx((0.3 + 0.72) / 2)  # the midpoint, not on a sample
    assert confusion(scores, labels, thr).accuracy == 1.0


def test_best_threshold_ties_go_to_the_middle_plateau() -> None:
    # Alternating classes: cuts below 0.2, 0.4 and 0.6 all score 4 of 6.
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    labels = [False, True, False, True, False, True]
    thr, acc = best_threshold(scores, labels)
    assert acc == pytest.approx(4 / 6)
    assert thr == pytest.approx(0.35)


def test_best_threshold_never_cuts_between_tied_scores() -> None:
    # Cutting inside the tie at 0.5 would score 4 of 4; no threshold can do that.
    scores = [0.1, 0.5, 0.5, 0.9]
    labels = [False, False, True, True]
    thr, acc = best_threshold(scores, labels)
    assert acc == pytest.approx(3 / 4)
    assert confusion(scores, labels, thr).accuracy == pytest.approx(acc)


@pytest.mark.parametrize(
    ("labels", "judged_same"),
    [([True, True, True], 3), ([False, False, False], 0)],
)
def test_best_threshold_on_one_class(labels: list[bool], judged_same: int) -> None:
    scores = [0.2, 0.4, 0.6]
    thr, acc = best_threshold(scores, labels)
    assert acc == 1.0
    c = confusion(scores, labels, thr)
    assert c.accuracy == 1.0 and c.tp + c.fp == judged_same


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_matches_brute_force_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(80) < 0.4
    s = np.round(rng.normal(size=80) + 0.8 * y, 1)  # rounding makes ties
    thr, acc = best_threshold(s, y)
    assert acc == pytest.approx(_brute_best_accuracy(s, y))
    assert confusion(s, y, thr).accuracy == pytest.approx(acc)
    # Off the samples, but for "judge all different", which sits on the highest score.
    assert thr not in set(s.tolist()) or thr == s.max()


def test_best_threshold_below_the_lowest_large_score() -> None:
    scores, labels = [2e10, 3e10], [True, True]
    thr, acc = best_threshold(scores, labels)
    assert confusion(scores, labels, thr).accuracy == acc == 1.0


# ---- roc -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_is_the_mann_whitney_statistic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(120) < 0.3
    y[:2] = [True, False]
    s = rng.integers(0, 8, size=120) / 7 + 0.15 * y  # many ties, within and across classes
    r = roc(s, y)
    assert r.auc == pytest.approx(_mann_whitney(s, y), abs=1e-12)
    assert (r.fpr[0], r.tpr[0]) == (0.0, 0.0)
    assert (r.fpr[-1], r.tpr[-1]) == (1.0, 1.0)
    assert (np.diff(r.fpr) >= 0).all() and (np.diff(r.tpr) >= 0).all()
    assert len(r.thresholds) == len(np.unique(s)) + 1


def test_roc_points_by_hand() -> None:
    pos = [0.9, 0.8, 0.6, 0.3]
    neg = [0.7, 0.5, 0.4, 0.2, 0.1]
    r = roc(pos + neg, [True] * 4 + [False] * 5)
    np.testing.assert_allclose(r.tpr, [0, 0.25, 0.5, 0.5, 0.75, 0.75, 0.75, 1, 1, 1])
    np.testing.assert_allclose(r.fpr, [0, 0, 0, 0.2, 0.2, 0.4, 0.6, 0.6, 0.8, 1])
    assert r.thresholds[0] == np.inf
    np.testing.assert_allclose(r.thresholds[1:], sorted(pos + neg, reverse=True))
    assert r.tar_at_far(0.0) == 0.5
    assert r.tar_at_far(0.1) == 0.5
    assert r.tar_at_far(0.2) == 0.75
    assert r.tar_at_far(0.6) == 1.0
    assert r.auc == pytest.approx(_mann_whitney(np.array(pos + neg), np.arange(9) < 4))


def test_tar_at_far_on_a_known_curve() -> None:
    curve = Roc(
        fpr=np.array([0.0, 0.001, 0.01, 0.1, 1.0]),
        tpr=np.array([0.0, 0.6, 0.8, 0.95, 1.0]),
        thresholds=np.array([np.inf, 0.7, 0.5, 0.3, 0.0]),
    )
    assert curve.tar_at_far(0.0) == 0.0
    assert curve.tar_at_far(0.0005) == 0.0
    assert curve.tar_at_far(0.001) == 0.6
    assert curve.tar_at_far(0.05) == 0.8
    assert curve.tar_at_far(1.0) == 1.0
    auc = 0.001 * 0.3 + 0.009 * 0.7 + 0.09 * 0.875 + 0.9 * 0.975
    assert curve.auc == pytest.approx(auc)


# ---- k-fold ----------------------------------------------------------------------
def _shifted_folds(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Five folds of 40 pairs; fold 2's scores sit 0.6 higher than the others'."""
    rng = np.random.default_rng(seed)
    folds = np.repeat(np.arange(5), 40)
    y = np.tile(np.arange(40) % 2 == 0, 5)
    s = rng.normal(0.1, 0.08, size=200) + 0.5 * y
    s[folds == 2] += 0.6
    return s, y, folds


def test_kfold_thresholds_come_from_the_other_folds() -> None:
    s, y, folds = _shifted_folds()
    report = kfold_verification(s, y, folds)
    assert [f.fold for f in report.folds] == [0, 1, 2, 3, 4]
    for f in report.folds:
        held_out = folds == f.fold
        thr, _ = best_threshold(s[~held_out], y[~held_out])
        assert f.threshold == thr
        assert f.test == confusion(s[held_out], y[held_out], thr)
    own, _ = best_threshold(s[folds == 2], y[folds == 2])
    shifted = report.folds[2]
    assert abs(own - shifted.threshold) > 0.3, "fold 2 must not be judged by its own threshold"
    assert shifted.test.accuracy < 0.9  # its different-identity pairs now look alike
    assert all(f.test.accuracy == 1.0 for f in report.folds if f.fold != 2)


def test_kfold_pooled_counts_and_summary() -> None:
    s, y, folds = _shifted_folds(1)
    report = kfold_verification(s, y, folds, far=0.01)
    p = report.pooled
    assert p.tp + p.fp + p.tn + p.fn == len(s)
    assert p.tp + p.fn == int(y.sum())
    assert (p.tp, p.fp, p.tn, p.fn) == tuple(
        sum(getattr(f.test, k) for f in report.folds) for k in ("tp", "fp", "tn", "fn")
    )
    accuracies = [f.test.accuracy for f in report.folds]
    assert report.accuracy == {
        "mean": pytest.approx(np.mean(accuracies)),
        "std": pytest.approx(np.std(accuracies)),
    }
    summary = report.summary()
    assert summary["folds"] == 5
    assert summary["roc_auc"] == pytest.approx(roc(s, y).auc)
    assert summary["tar_at_far"]["far"] == 0.01
    assert [row["fold"] for row in summary["per_fold"]] == [1, 2, 3, 4, 5]


def test_kfold_keeps_any_fold_numbers() -> None:
    s, y, folds = _shifted_folds(2)
    report = kfold_verification(s, y, np.where(folds % 2 == 0, 7, 3))
    assert [f.fold for f in report.folds] == [3, 7]


# ---- errors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda s, y: confusion(s, y, 0.5),
        best_threshold,
        roc,
        lambda s, y: kfold_verification(s, y, np.arange(len(s)) % 2),
    ],
    ids=["confusion", "best_threshold", "roc", "kfold"],
)
def test_nan_and_length_mismatch_are_refused(call: object) -> None:
    with pytest.raises(ValueError, match="NaN"):
        call([0.1, float("nan"), 0.7, 0.2], [True, False, True, False])  # type: ignore[operator]
    with pytest.raises(ValueError, match="3 scores but 4 labels"):
        call([0.1, 0.3, 0.7], [True, False, True, False])  # type: ignore[operator]


@pytest.mark.parametrize("label", [True, False])
def test_one_class_has_no_roc(label: bool) -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc([0.1, 0.5, 0.9], [label] * 3)
    with pytest.raises(ValueError, match="both classes"):
        kfold_verification([0.1, 0.5, 0.9, 0.4], [label] * 4, [0, 1, 0, 1])


def test_kfold_needs_two_folds_and_one_fold_number_per_score() -> None:
    s, y = [0.1, 0.9, 0.2, 0.8], [False, True, False, True]
    with pytest.raises(ValueError, match="at least two folds"):
        kfold_verification(s, y, [0, 0, 0, 0])
    with pytest.raises(ValueError, match="4 scores but 3 fold numbers"):
        kfold_verification(s, y, [0, 1, 0])


def test_best_threshold_needs_scores() -> None:
    with pytest.raises(ValueError, match="no scores"):
        best_threshold([], [])
