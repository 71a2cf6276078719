"""Clustering scores against brute force and scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from workbench.evaluation.cluster_metrics import cluster_scores

pytestmark = pytest.mark.unit


def _brute(truth: list, pred: list, noise: object = -1) -> dict[str, float]:
    n = len(truth)
    pred = [("noise", i) if p == noise else p for i, p in enumerate(pred)]
    same_t = {(i, j) for i, j in itertools.combinations(range(n), 2) if truth[i] == truth[j]}
    same_p = {(i, j) for i, j in itertools.combinations(range(n), 2) if pred[i] == pred[j]}
    pp = len(same_t & same_p) / len(same_p) if same_p else 1.0
    pr = len(same_t & same_p) / len(same_t) if same_t else 1.0
    bp = br = 0.0
    for i in range(n):
        cluster = {j for j in range(n) if pred[j] == pred[i]}
        klass = {j for j in range(n) if truth[j] == truth[i]}
        bp += len(cluster & klass) / len(cluster)
        br += len(cluster & klass) / len(klass)
    return {"pp": pp, "pr": pr, "bp": bp / n, "br": br / n}


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_and_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    truth = rng.integers(0, 8, n).tolist()
    pred = [t if rng.random() < 0.7 else int(rng.integers(-1, 10)) for t in truth]
    got = cluster_scores(truth, pred)
    want = _brute(truth, pred)
    assert got.pairwise_precision == pytest.approx(want["pp"])
    assert got.pairwise_recall == pytest.approx(want["pr"])
    assert got.bcubed_precision == pytest.approx(want["bp"])
    assert got.bcubed_recall == pytest.approx(want["br"])
    assert got.noise == sum(p == -1 for p in pred)
    assert got.clusters == len({p for p in pred if p != -1})
    from sklearn import metrics as sklearn  # the reference implementation (dev extra)

    singleton_pred = [("n", i) if p == -1 else ("c", p) for i, p in enumerate(pred)]
    codes = {v: k for k, v in enumerate(dict.fromkeys(singleton_pred))}
    want_nmi = sklearn.normalized_mutual_info_score(truth, [codes[v] for v in singleton_pred])
    assert got.nmi == pytest.approx(want_nmi)


def test_perfect_and_degenerate_clusterings() -> None:
    truth = ["a", "a", "b", "b", "b", "c"]
    perfect = cluster_scores(truth, [5, 5, 7, 7, 7, 9])
    assert perfect.pairwise_f == perfect.bcubed_f == perfect.nmi == pytest.approx(1.0)
    assert (perfect.identities, perfect.clusters, perfect.noise) == (3, 3, 0)
    # Everything noise: nothing wrongly together, nothing rightly together.
    alone = cluster_scores(truth, [-1] * 6)
    assert alone.pairwise_precision == 1.0 and alone.pairwise_recall == 0.0
    assert alone.bcubed_precision == 1.0 and alone.bcubed_recall == pytest.approx(
        (2 * 1 / 2 + 3 * 1 / 3 + 1) / 6
    )
    assert alone.clusters == 0
    # Everything in one cluster: recall 1, precision low.
    lumped = cluster_scores(truth, [0] * 6)
    assert lumped.pairwise_recall == 1.0 and lumped.pairwise_precision == pytest.approx(4 / 15)
    assert lumped.nmi == 0.0


def test_string_labels_and_another_noise_value() -> None:
    s = cluster_scores(["x", "x", "y"], ["p1", "p1", "none"], noise="none")
    assert s.noise == 1 and s.clusters == 1 and s.pairwise_f == 1.0


def test_errors() -> None:
    with pytest.raises(ValueError, match="2 true labels but 3"):
        cluster_scores([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="no faces"):
        cluster_scores([], [])
