"""Verification metrics on similarity scores: thresholds, ROC, k-fold protocol.

Pure numpy, so the notebooks and the CLI share one definition. A pair is
judged "same person" when its score is strictly above the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class Confusion:
    """Counts of one threshold's decisions, and the rates made of them."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def accuracy(self) -> float:
        n = self.tp + self.fp + self.tn + self.fn
        return (self.tp + self.tn) / n if n else float("nan")

    @property
    def precision(self) -> float:
        d = self.tp + self.fp
        return self.tp / d if d else 0.0

    @property
    def recall(self) -> float:
        d = self.tp + self.fn
        return self.tp / d if d else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _arrays(scores: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"{len(s)} scores but {len(y)} labels")
    if not np.isfinite(s).all():
        raise ValueError(
            "scores hold NaN or ±inf; decide what a missing score means before measuring"
        )
    return s, y


def confusion(scores: ArrayLike, labels: ArrayLike, threshold: float) -> Confusion:
    s, y = _arrays(scores, labels)
    pred = s > threshold
    return Confusion(
        tp=int((pred & y).sum()),
        fp=int((pred & ~y).sum()),
        tn=int((~pred & ~y).sum()),
        fn=int((~pred & y).sum()),
    )


def best_threshold(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """The threshold with the highest accuracy, and that accuracy.

    Candidates are midpoints between consecutive distinct scores, one just
    below the lowest, and the highest (everything judged different, as the
    test is strictly above). Ties go to the middle of the best plateau (the
    upper middle for an even count), the most robust choice on new data.
    """
    s, y = _arrays(scores, labels)
    if len(s) == 0:
        raise ValueError("no scores to choose a threshold from")
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # Threshold below the k-th sorted score (k = 0..n): pairs [0, k) are
    # judged different, [k, n) same.
    neg_below = np.concatenate([[0], np.cumsum(~y_sorted)])
    pos_above = y_sorted.sum() - np.concatenate([[0], np.cumsum(y_sorted)])
    correct = neg_below + pos_above
    # A cut is only possible between distinct scores.
    valid = np.ones(len(s) + 1, dtype=bool)
    valid[1:-1] = s_sorted[1:] > s_sorted[:-1]
    correct = np.where(valid, correct, -1)
    best = correct.max()
    ks = np.flatnonzero(correct == best)
    k = int(ks[len(ks) // 2])
    if k == 0:
        # Strictly below the lowest score even where 1e-6 is lost to rounding.
        thr = min(s_sorted[0] - 1e-6, np.nextafter(s_sorted[0], -np.inf))
    elif k == len(s):
        thr = s_sorted[-1]
    else:
        thr = (s_sorted[k - 1] + s_sorted[k]) / 2.0
    return float(thr), float(best / len(s))


@dataclass(frozen=True)
class Roc:
    """Receiver operating characteristic: false and true accept rates by threshold."""

    fpr: NDArray[np.float64]
    tpr: NDArray[np.float64]
    thresholds: NDArray[np.float64]

    @property
    def auc(self) -> float:
        return float((np.diff(self.fpr) * (self.tpr[1:] + self.tpr[:-1]) / 2).sum())

    def thinned(self, max_points: int = 200) -> dict[str, list[float]]:
        """At most ``max_points`` points of the curve, spread evenly on a log FAR axis.

        Enough to draw it (and small enough to keep in a JSON document); the
        first and last points and the best TAR at each kept FAR are exact.
        """
        fpr, tpr = self.fpr, self.tpr
        if len(fpr) > max_points:
            positive = fpr[fpr > 0]
            lo = positive.min() if len(positive) else 1e-6
            edges = np.r_[0.0, np.geomspace(lo, 1.0, max_points - 2)]
            # The origin, then the last point at or below each edge: the best
            # TAR at that FAR.
            idx = np.unique(np.r_[0, np.searchsorted(fpr, edges, side="right") - 1])
            fpr, tpr = fpr[idx], tpr[idx]
        return {"fpr": [round(float(v), 6) for v in fpr], "tpr": [round(float(v), 6) for v in tpr]}

    def tar_at_far(self, far: float) -> float:
        """The highest true accept rate whose false accept rate is at most ``far``."""
        ok = self.fpr <= far + 1e-12
        return float(self.tpr[ok].max()) if ok.any() else 0.0


def roc(scores: ArrayLike, labels: ArrayLike) -> Roc:
    """The ROC curve, one point per distinct score (plus the origin)."""
    s, y = _arrays(scores, labels)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError(f"a ROC needs both classes; got {pos} same and {neg} different pairs")
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s_desc)), len(s) - 1]
    tp = np.cumsum(y_desc)[last_of_value]
    fp = np.cumsum(~y_desc)[last_of_value]
    return Roc(
        fpr=np.r_[0.0, fp / neg],
        tpr=np.r_[0.0, tp / pos],
        thresholds=np.r_[np.inf, s_desc[last_of_value]],
    )


@dataclass(frozen=True)
class FoldResult:
    fold: int
    threshold: float
    """Chosen on the other folds."""
    test: Confusion


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std())}


@dataclass(frozen=True)
class KFoldReport:
    """The standard LFW protocol: per fold, a threshold from the others, tested on it."""

    folds: tuple[FoldResult, ...]
    roc: Roc
    far: float = 1e-3
    pooled: Confusion = field(default=Confusion(0, 0, 0, 0))
    """All held-out decisions together (each pair judged by its own fold's threshold)."""

    def _per_fold(self, name: str) -> list[float]:
        return [getattr(f.test, name) for f in self.folds]

    @property
    def accuracy(self) -> dict[str, float]:
        return _mean_std(self._per_fold("accuracy"))

    def summary(self) -> dict[str, Any]:
        thresholds = [f.threshold for f in self.folds]
        return {
            "folds": len(self.folds),
            "accuracy": self.accuracy,
            "precision": _mean_std(self._per_fold("precision")),
            "recall": _mean_std(self._per_fold("recall")),
            "f1": _mean_std(self._per_fold("f1")),
            "roc_auc": self.roc.auc,
            "tar_at_far": {"far": self.far, "tar": self.roc.tar_at_far(self.far)},
            "threshold": _mean_std(thresholds),
            "per_fold": [
                {
                    "fold": f.fold + 1,
                    "threshold": f.threshold,
                    "accuracy": f.test.accuracy,
                    "tp": f.test.tp,
                    "fp": f.test.fp,
                    "tn": f.test.tn,
                    "fn": f.test.fn,
                }
                for f in self.folds
            ],
        }


def kfold_verification(
    scores: ArrayLike, labels: ArrayLike, folds: ArrayLike, far: float = 1e-3
) -> KFoldReport:
    """Choose the threshold on all folds but one and test it on that one, for each fold."""
    s, y = _arrays(scores, labels)
    f = np.asarray(folds).reshape(-1)
    if f.shape != s.shape:
        raise ValueError(f"{len(s)} scores but {len(f)} fold numbers")
    ids = np.unique(f)
    if len(ids) < 2:
        raise ValueError("the k-fold protocol needs at least two folds")
    results = []
    tp = fp = tn = fn = 0
    for k in ids:
        test = f == k
        thr, _ = best_threshold(s[~test], y[~test])
        c = confusion(s[test], y[test], thr)
        tp, fp, tn, fn = tp + c.tp, fp + c.fp, tn + c.tn, fn + c.fn
        results.append(FoldResult(int(k), thr, c))
    return KFoldReport(tuple(results), roc(s, y), far, Confusion(tp, fp, tn, fn))


__all__ = [
    "Confusion",
    "FoldResult",
    "KFoldReport",
    "Roc",
    "best_threshold",
    "confusion",
    "kfold_verification",
    "roc",
]
