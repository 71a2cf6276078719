"""Clustering estimators on synthetic embeddings with a known truth."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.analysis.cluster import (
    DEFAULT_LINK_PERCENT,
    NOISE,
    ClusterParams,
    FaceDBSCAN,
    FaceHDBSCAN,
    FaceKMeans,
    KnnGraph,
    canonical_labels,
    distance_graph,
    enforce_cannot_link,
    knn_graph,
    normalise,
)
from workbench.errors import ConfigurationError
from workbench.evaluation.cluster_metrics import cluster_scores
from workbench.faces.calibration import Calibration


def identities(
    n_people: int = 60, dim: int = 128, seed: int = 0, noise: float = 0.06
) -> tuple[np.ndarray, np.ndarray]:
    """Faces around random identity centres: same person cos ≈ 0.6, others ≈ 0."""
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.zipf(1.8, n_people), 1, 40)
    centres = normalise(rng.standard_normal((n_people, dim)))
    truth = np.repeat(np.arange(n_people), sizes)
    X = centres[truth] + rng.standard_normal((len(truth), dim)).astype(np.float32) * noise
    return normalise(X), truth


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labelings group the items identically (noise as singletons)."""

    def groups(labels: np.ndarray) -> set[frozenset[int]]:
        out: dict[int, set[int]] = {}
        for i, c in enumerate(labels.tolist()):
            out.setdefault(c if c != NOISE else -(i + 2), set()).add(i)
        return {frozenset(g) for g in out.values()}

    return groups(a) == groups(b)


def test_knn_graph_is_exact_and_starts_with_self() -> None:
    X, _ = identities()
    g = knn_graph(X, 8)
    S = X @ X.T
    np.fill_diagonal(S, 2.0)
    brute = np.argsort(-S, axis=1, kind="stable")[:, :8]
    assert (g.indices[:, 0] == np.arange(len(X))).all()
    np.testing.assert_allclose(
        g.similarities, np.take_along_axis(S, brute, 1).clip(max=1.0), atol=1e-5
    )
    assert (np.diff(g.similarities[:, 1:], axis=1) <= 1e-6).all()


def test_dbscan_finds_the_identities() -> None:
    X, truth = identities()
    labels = FaceDBSCAN(min_similarity=0.5).fit(X).labels_
    s = cluster_scores(truth, labels)
    assert s.pairwise_f > 0.99 and s.bcubed_f > 0.99, s


@pytest.mark.parametrize("method", ["dbscan", "hdbscan", "kmeans"])
def test_grouping_does_not_depend_on_order(method: str) -> None:
    X, truth = identities(seed=3)
    params = ClusterParams(
        method=method,  # type: ignore[arg-type]
        min_similarity=0.4,
        n_clusters=len(np.unique(truth)),
    )
    labels = params.make().fit(X).labels_
    perm = np.random.default_rng(7).permutation(len(X))
    shuffled = params.make().fit(X[perm]).labels_
    back = np.empty_like(shuffled)
    back[perm] = shuffled
    assert same_partition(labels, back)


def test_border_face_joins_its_nearest_core_face() -> None:
    # Two arcs of 8 faces (0–7° and 60–67°) and one face at 35.5° that reaches a
    # few faces of each but is no core face itself: it goes to the nearer arc.
    degrees = [*range(8), *range(60, 68), 35.5]
    X = np.array([[np.cos(np.radians(d)), np.sin(np.radians(d))] for d in degrees], np.float32)
    m = FaceDBSCAN(min_similarity=float(np.cos(np.radians(29))), min_samples=8, n_neighbors=17)
    labels = m.fit(X).labels_
    assert 16 not in m.core_sample_indices_
    assert labels[0] != labels[8] and NOISE not in labels[:16]
    assert labels[16] == labels[8]


def test_faces_of_one_photo_never_share_a_cluster() -> None:
    X, truth = identities()
    groups = np.arange(len(X))
    # Photo 10**6 holds one face of each of the first three big identities,
    # plus a second face of identity 0.
    first = [int(np.nonzero(truth == t)[0][0]) for t in range(3)]
    extra = int(np.nonzero(truth == 0)[0][1])
    for i in [*first, extra]:
        groups[i] = 10**6
    for est in (FaceDBSCAN(min_similarity=-1.0), FaceHDBSCAN(), FaceKMeans(5)):
        labels = est.fit(X, groups=groups).labels_
        clustered = labels[[*first, extra]]
        real = clustered[clustered != NOISE]
        assert len(set(real.tolist())) == len(real), (type(est).__name__, clustered)


def test_cannot_link_keeps_the_face_nearest_the_centre() -> None:
    X = normalise(np.array([[1, 0], [1, 0.1], [1, -0.1], [0.6, 0.8]], np.float32))
    labels = np.zeros(4, np.int64)
    out = enforce_cannot_link(X, labels, np.array([1, 2, 3, 3]))
    assert out.tolist() == [0, 0, 0, NOISE]


def test_canonical_labels_orders_by_size_and_drops_singletons() -> None:
    out = canonical_labels(np.array([5, 5, 9, 9, 9, 7, NOISE]))
    assert out.tolist() == [1, 1, 0, 0, 0, NOISE, NOISE]


def test_distance_graph_is_symmetric_and_exact() -> None:
    X, _ = identities(n_people=30)
    g = knn_graph(X, 6)
    # faiss may return an edge's similarity from its two ends a few ULP apart.
    noisy = KnnGraph(g.indices, g.similarities + np.float32(3e-7) * (g.indices % 2))
    D = distance_graph(noisy)
    assert abs(D - D.T).max() == 0
    rows, cols = D.nonzero()
    true = 1.0 - np.einsum("ij,ij->i", X[rows], X[cols])
    np.testing.assert_allclose(np.asarray(D[rows, cols]).ravel(), np.maximum(true, 1e-6), atol=1e-5)


def test_hdbscan_handles_a_disconnected_graph() -> None:
    X, truth = identities(n_people=40, noise=0.03)
    labels = FaceHDBSCAN(min_cluster_size=2, min_samples=2, n_neighbors=4).fit(X).labels_
    assert cluster_scores(truth, labels).bcubed_f > 0.9


def test_defaults_come_from_the_calibration() -> None:
    cal = Calibration("p", threshold=0.31, slope=30.0)
    params = ClusterParams.for_calibration(cal)
    assert params.method == "dbscan" and params.link_percent == DEFAULT_LINK_PERCENT == 91.4
    assert params.min_similarity == pytest.approx(cal.cosine_at(91.4), abs=1e-4)
    assert cal.percent(params.min_similarity) == pytest.approx(91.4, abs=0.01)
    assert cal.cosine_at(100.0) <= 1.0  # never past where faces can be
    stricter = ClusterParams.for_calibration(cal, 93.0)
    assert stricter.min_similarity > params.min_similarity
    tuned = params.with_overrides(min_similarity=0.6, min_samples=3)
    assert tuned.min_similarity == 0.6 and tuned.link_percent is None and tuned.min_samples == 3


def test_a_pack_calibration_can_name_its_method() -> None:
    cal = Calibration("dlib", threshold=0.9, slope=180.0, cluster_method="hdbscan")
    params = ClusterParams.for_calibration(cal)
    assert params.method == "hdbscan" and params.samples == 1
    assert params.with_overrides(method="dbscan").samples == 2
    assert (
        ClusterParams.for_calibration(Calibration("x", 0.3, 30.0, cluster_method="??")).method
        == "dbscan"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"method": "spectral"}, "not one of dbscan, hdbscan, kmeans"),
        ({"method": "kmeans"}, "n_clusters"),
        ({"min_similarity": 1.5}, "-1…1"),
        ({"min_samples": 0}, "min_samples must be"),
        ({"eps": 0.3}, "unknown clustering parameter"),
    ],
)
def test_bad_parameters_say_what_is_allowed(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ClusterParams().with_overrides(**overrides)


def test_kmeans_refuses_more_people_than_faces() -> None:
    X, _ = identities(n_people=3)
    with pytest.raises(ConfigurationError, match="asked for"):
        FaceKMeans(len(X) + 1).fit(X)


def test_empty_and_tiny_inputs() -> None:
    assert FaceDBSCAN().fit(np.zeros((0, 8), np.float32)).labels_.tolist() == []
    one = normalise(np.ones((1, 8), np.float32))
    assert FaceDBSCAN().fit(one).labels_.tolist() == [NOISE]
    assert FaceHDBSCAN().fit(one).labels_.tolist() == [NOISE]
