"""How well a clustering of faces matches the true identities.

Pairwise precision / recall / F (over pairs of faces put together), BCubed
precision / recall / F (per face, then averaged) and NMI, all computed from
the sparse contingency table, so a million faces cost a sort, not a
million-squared matrix. Noise (label ``-1`` by default) counts as singleton
clusters: a face left out is a face not grouped with anyone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class ClusterScores:
    """Agreement of predicted clusters with true identities."""

    faces: int
    identities: int
    clusters: int
    """Predicted clusters, noise not counted."""
    noise: int
    """Faces left unclustered (each is its own singleton in the scores)."""
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f: float
    nmi: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _codes(labels: NDArray[Any]) -> tuple[NDArray[np.int64], int]:
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    return codes, int(codes.max()) + 1 if len(codes) else 0


def _f(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def _pairs(counts: NDArray[np.int64]) -> float:
    return float((counts * (counts - 1) // 2).sum())


def cluster_scores(truth: ArrayLike, predicted: ArrayLike, noise: Any = -1) -> ClusterScores:
    """Compare predicted cluster labels with true identity labels (any hashable values).

    Predicted faces labelled ``noise`` become singleton clusters.
    """
    t = np.asarray(truth).reshape(-1)
    p = np.asarray(predicted).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"{len(t)} true labels but {len(p)} predicted labels")
    n = len(t)
    if n == 0:
        raise ValueError("no faces to score")
    is_noise = p == noise
    t_codes, n_true = _codes(t)
    p_codes, _ = _codes(p)
    n_noise = int(is_noise.sum())
    clusters = len(np.unique(p_codes[~is_noise]))
    if n_noise:
        # Noise faces: one fresh cluster each, then codes made dense again.
        p_codes = p_codes.copy()
        p_codes[is_noise] = p_codes.max() + 1 + np.arange(n_noise)
        p_codes, _ = _codes(p_codes)
    # Sparse contingency table: the distinct (true, predicted) cells and their counts.
    cells, n_ij = np.unique(np.stack([t_codes, p_codes]), axis=1, return_counts=True)
    b_i = np.bincount(t_codes)  # faces per identity
    a_j = np.bincount(p_codes)  # faces per predicted cluster
    n_ij = n_ij.astype(np.int64)

    together = _pairs(n_ij)
    pred_pairs, true_pairs = _pairs(a_j), _pairs(b_i)
    pw_p = together / pred_pairs if pred_pairs else 1.0
    pw_r = together / true_pairs if true_pairs else 1.0

    bc_p = float((n_ij * n_ij / a_j[cells[1]]).sum() / n)
    bc_r = float((n_ij * n_ij / b_i[cells[0]]).sum() / n)

    # NMI with the arithmetic mean of the entropies (scikit-learn's default).
    pij = n_ij / n
    mi = float((pij * np.log(n * n_ij / (b_i[cells[0]] * a_j[cells[1]]))).sum())
    h_t = float(-(b_i / n * np.log(b_i / n)).sum())
    h_p = float(-(a_j / n * np.log(a_j / n)).sum())
    nmi = 1.0 if h_t == h_p == 0.0 else max(0.0, mi) / ((h_t + h_p) / 2)

    return ClusterScores(
        faces=n,
        identities=n_true,
        clusters=clusters,
        noise=n_noise,
        pairwise_precision=pw_p,
        pairwise_recall=pw_r,
        pairwise_f=_f(pw_p, pw_r),
        bcubed_precision=bc_p,
        bcubed_recall=bc_r,
        bcubed_f=_f(bc_p, bc_r),
        nmi=min(1.0, nmi),
    )


__all__ = ["ClusterScores", "cluster_scores"]
