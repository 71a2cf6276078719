"""Clustering face embeddings into people, with scikit-learn conventions.

All estimators take L2-normalised embeddings (rows of ``X``) and compare
them by cosine similarity. DBSCAN and HDBSCAN never build a dense n × n
matrix: they work on an exact k-nearest-neighbour graph (faiss, blocked
inner products), so 100k faces cost ``n · k`` numbers, not ``n²``. The same
graph feeds the UMAP map (`workbench.analysis.facemap`).

Three rules hold for every method here:

* **cannot-link**: faces of one photo (``groups``) are never in one cluster;
  the one nearer the cluster's centre stays, the others become noise;
* **order independence**: the partition depends on the vectors, not on the
  order they come in (exact neighbours, components instead of a scan,
  border faces go to their *nearest* core face, seeded K-Means on sorted rows);
* **noise is ``-1``** in ``labels_``.

Defaults come from the pack's calibration (`ClusterParams.for_calibration`):
two faces are *linked* when their similarity reaches ``link_percent`` (the pack's
own from its calibration, else 91.4 %: a pair false-match rate of 5e-7, one stranger
pair in two million; `dlib`'s is 81.5 %, cosine 0.945, where its links were before).
Links are transitive in DBSCAN, so each must be far surer than the 85 % (1e-5) of a
single search's match.
Packs whose same-person and different-person similarities overlap more
(dlib) chain under any DBSCAN cut; their calibration names HDBSCAN as their
method, which chooses its cuts per cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from workbench._optional import require
from workbench.errors import ConfigurationError
from workbench.faces.calibration import Calibration

Method = Literal["dbscan", "hdbscan", "kmeans"]
METHODS: tuple[str, ...] = get_args(Method)
NOISE = -1

DEFAULT_LINK_PERCENT = 91.4
"""Similarity (%) at which two faces are linked into one cluster: a pair false-match rate
of 5e-7. The `local` pack's link stays where it was measured best on all of LFW (cosine
0.561, 99.99 % on the scale before false-match rates)."""
DEFAULT_NEIGHBORS = 16
"""Neighbours kept per face (itself included); also UMAP's ``n_neighbors``."""


# ---- the neighbour graph --------------------------------------------------------
@dataclass(frozen=True)
class KnnGraph:
    """Each row's ``k`` most similar rows, most similar first; column 0 is the row itself."""

    indices: NDArray[np.int64]
    similarities: NDArray[np.float32]
    """Cosine similarities matching ``indices``."""

    @property
    def n(self) -> int:
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    @property
    def distances(self) -> NDArray[np.float32]:
        """Cosine distances (1 − similarity), clipped at 0."""
        return np.clip(1.0 - self.similarities, 0.0, None)

    def to_sparse(self, min_similarity: float | None = None) -> sparse.csr_matrix:
        """Symmetric similarity matrix of the graph's edges (optionally only strong ones)."""
        rows = np.repeat(np.arange(self.n), self.k)
        cols = self.indices.reshape(-1)
        sims = self.similarities.reshape(-1)
        keep = (cols >= 0) & (rows != cols)
        if min_similarity is not None:
            keep &= sims >= min_similarity
        m = sparse.csr_matrix((sims[keep], (rows[keep], cols[keep])), shape=(self.n, self.n))
        return m.maximum(m.T).tocsr()


def normalise(X: ArrayLike) -> NDArray[np.float32]:
    """Rows scaled to unit length (float32, C-contiguous); zero rows stay zero."""
    A = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    if A.ndim != 2:
        raise ConfigurationError(f"embeddings must be a 2-D array (faces × dims), got {A.shape}")
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    return np.ascontiguousarray(A / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def knn_graph(X: ArrayLike, k: int = DEFAULT_NEIGHBORS, *, block: int = 4096) -> KnnGraph:
    """Exact ``k`` nearest neighbours by cosine similarity (faiss inner product, blocked).

    Exact rather than approximate because approximate graphs depend on the
    order of insertion, and the grouping must not. ~1 min for 100k × 512 on
    two cores; memory is ``n · k`` plus one block of scores.
    """
    A = normalise(X)
    n = A.shape[0]
    k = max(1, min(int(k), n))
    if n == 0:
        return KnnGraph(np.zeros((0, k), np.int64), np.zeros((0, k), np.float32))
    faiss = require("faiss", None, "the neighbour graph of faces")
    index = faiss.IndexFlatIP(A.shape[1])
    index.add(A)
    sims = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    for start in range(0, n, block):
        s, i = index.search(A[start : start + block], k)
        sims[start : start + block], idx[start : start + block] = s, i
    _self_first(idx, sims)
    return KnnGraph(idx, sims)


def _self_first(idx: NDArray[np.int64], sims: NDArray[np.float32]) -> None:
    """Put each row itself in column 0 (a duplicate face may tie with it)."""
    rows = np.arange(idx.shape[0])
    at = idx == rows[:, None]
    has = at.any(axis=1)
    pos = np.where(has, at.argmax(axis=1), idx.shape[1] - 1)
    for r in np.nonzero(pos != 0)[0]:
        p = pos[r]
        idx[r, 1 : p + 1] = idx[r, 0:p].copy()
        sims[r, 1 : p + 1] = sims[r, 0:p].copy()
        idx[r, 0], sims[r, 0] = r, 1.0


# ---- parameters -----------------------------------------------------------------
@dataclass(frozen=True)
class ClusterParams:
    """Hyper-parameters of every method; `for_calibration` derives the defaults of a pack."""

    method: Method = "dbscan"
    min_similarity: float = 0.5
    """Cosine similarity at which two faces are linked (DBSCAN's ``eps = 1 − this``)."""
    min_samples: int | None = None
    """Faces (itself included) that make a face a core face. ``None``: 2 for DBSCAN (one
    other face within reach), 1 for HDBSCAN (plain distances, no density smoothing:
    pairwise F 0.867 vs 0.847 with 2 on all of LFW)."""
    min_cluster_size: int = 2
    """HDBSCAN: smallest group that counts as a person."""
    n_clusters: int | None = None
    """K-Means: the number of people (required)."""
    n_neighbors: int = DEFAULT_NEIGHBORS
    link_percent: float | None = None
    """The calibrated similarity ``min_similarity`` came from, when it did."""

    @classmethod
    def for_calibration(
        cls, calibration: Calibration, link_percent: float | None = None, **overrides: Any
    ) -> ClusterParams:
        """The pack's defaults: its method (DBSCAN unless the calibration names another),
        linking faces at ``link_percent`` similarity (default: the pack's own, from its
        calibration, else `DEFAULT_LINK_PERCENT`)."""
        if link_percent is None:
            link_percent = calibration.link_percent or DEFAULT_LINK_PERCENT
        method = calibration.cluster_method or "dbscan"
        if method not in METHODS:
            method = "dbscan"  # a calibration file from a newer version
        base = cls(
            method=method,  # type: ignore[arg-type]
            min_similarity=round(calibration.cosine_at(link_percent), 4),
            link_percent=link_percent,
        )
        return base.with_overrides(**overrides)

    def with_overrides(self, **overrides: Any) -> ClusterParams:
        """A copy with the given fields changed (``None`` values leave a field as it is)."""
        known = set(self.__dataclass_fields__)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown clustering parameter(s) {', '.join(unknown)};"
                f" known: {', '.join(sorted(known))}"
            )
        changes = {k: v for k, v in overrides.items() if v is not None}
        if "min_similarity" in changes:
            changes.setdefault("link_percent", None)
        out = replace(self, **changes)
        out.validate()
        return out

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigurationError(
                f"clustering method {self.method!r} is not one of {', '.join(METHODS)}"
            )
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ConfigurationError(
                f"min_similarity {self.min_similarity} is a cosine similarity: use -1…1"
            )
        if self.samples < 1 or self.min_cluster_size < 2 or self.n_neighbors < 2:
            raise ConfigurationError(
                "min_samples must be ≥ 1, min_cluster_size ≥ 2 and n_neighbors ≥ 2"
                f" (got {self.samples}, {self.min_cluster_size}, {self.n_neighbors})"
            )
        if self.method == "kmeans" and (self.n_clusters is None or self.n_clusters < 1):
            raise ConfigurationError(
                "K-Means needs the number of people: pass n_clusters (--n-clusters N)"
            )

    @property
    def samples(self) -> int:
        """``min_samples`` with the method's default filled in."""
        if self.min_samples is not None:
            return self.min_samples
        return 1 if self.method == "hdbscan" else 2

    def make(self) -> FaceClusterer:
        """The estimator these parameters describe."""
        if self.method == "dbscan":
            return FaceDBSCAN(self.min_similarity, self.samples, self.n_neighbors)
        if self.method == "hdbscan":
            return FaceHDBSCAN(self.min_cluster_size, self.samples, self.n_neighbors)
        return FaceKMeans(int(self.n_clusters or 0))

    def to_dict(self) -> dict[str, Any]:
        keys = {
            "dbscan": ("min_similarity", "min_samples", "n_neighbors", "link_percent"),
            "hdbscan": ("min_cluster_size", "min_samples", "n_neighbors"),
            "kmeans": ("n_clusters",),
        }[self.method]
        out = {"method": self.method, **{k: getattr(self, k) for k in keys}}
        if "min_samples" in out:
            out["min_samples"] = self.samples
        return out


# ---- estimators -----------------------------------------------------------------
class FaceClusterer:
    """Base of the estimators: ``fit(X, groups=None, graph=None)`` sets ``labels_``."""

    labels_: NDArray[np.int64]

    def fit(
        self,
        X: ArrayLike,
        y: Any = None,
        *,
        groups: ArrayLike | None = None,
        graph: KnnGraph | None = None,
    ) -> FaceClusterer:
        A = normalise(X)
        if graph is not None and graph.n != A.shape[0]:
            raise ConfigurationError(
                f"the neighbour graph has {graph.n} rows but there are {A.shape[0]} faces"
            )
        labels = self._labels(A, graph) if len(A) else np.zeros(0, np.int64)
        if groups is not None:
            labels = enforce_cannot_link(A, labels, np.asarray(groups))
        self.labels_ = canonical_labels(labels)
        return self

    def fit_predict(self, X: ArrayLike, y: Any = None, **kwargs: Any) -> NDArray[np.int64]:
        return self.fit(X, **kwargs).labels_

    @property
    def n_clusters_(self) -> int:
        return int(self.labels_.max()) + 1 if len(self.labels_) else 0

    def _labels(self, A: NDArray[np.float32], graph: KnnGraph | None) -> NDArray[np.int64]:
        raise NotImplementedError

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}


class FaceDBSCAN(FaceClusterer):
    """DBSCAN on cosine similarity over the exact kNN graph.

    A face with at least ``min_samples`` faces (itself included) at
    similarity ≥ ``min_similarity`` is a core face; linked core faces form a
    cluster; any other face within reach of a core face joins the cluster of
    the *nearest* one (scikit-learn takes the first one found, which depends
    on the order of the data). A face has at most ``n_neighbors`` neighbours,
    so ``min_samples`` must not exceed it.
    """

    def __init__(
        self,
        min_similarity: float = 0.5,
        min_samples: int = 2,
        n_neighbors: int = DEFAULT_NEIGHBORS,
    ) -> None:
        self.min_similarity = min_similarity
        self.min_samples = min_samples
        self.n_neighbors = n_neighbors

    def _labels(self, A: NDArray[np.float32], graph: KnnGraph | None) -> NDArray[np.int64]:
        if self.min_samples > self.n_neighbors:
            raise ConfigurationError(
                f"min_samples ({self.min_samples}) cannot exceed n_neighbors ({self.n_neighbors})"
            )
        g = graph if graph is not None else knn_graph(A, self.n_neighbors)
        reach = g.similarities >= self.min_similarity
        reach &= g.indices >= 0
        core = reach.sum(axis=1) >= self.min_samples
        self.core_sample_indices_ = np.nonzero(core)[0]
        links = g.to_sparse(self.min_similarity)
        core_links = links[core][:, core]
        n_comp, comp = connected_components(core_links, directed=False)
        labels = np.full(g.n, NOISE, np.int64)
        labels[core] = comp
        # Border faces: the cluster of their most similar core neighbour within reach
        # (rows are sorted by similarity, so the first such column is the nearest).
        for r in np.nonzero(~core)[0]:
            for c, ok in zip(g.indices[r, 1:], reach[r, 1:], strict=True):
                if ok and core[c]:
                    labels[r] = labels[c]
                    break
        return labels


class FaceHDBSCAN(FaceClusterer):
    """HDBSCAN (scikit-learn) on the sparse kNN graph of cosine distances.

    Density-based like DBSCAN but with no similarity cut to choose: it keeps
    the clusters that persist over all cuts. ``min_samples`` sets the core
    distance (the ``min_samples``-th neighbour, itself included; 1: plain distances).
    """

    def __init__(
        self,
        min_cluster_size: int = 2,
        min_samples: int = 1,
        n_neighbors: int = DEFAULT_NEIGHBORS,
    ) -> None:
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.n_neighbors = n_neighbors

    def _labels(self, A: NDArray[np.float32], graph: KnnGraph | None) -> NDArray[np.int64]:
        from sklearn.cluster import HDBSCAN

        if len(A) < 2:
            return np.full(len(A), NOISE, np.int64)
        g = graph if graph is not None else knn_graph(A, self.n_neighbors)
        D = distance_graph(g)
        # scikit-learn's sparse HDBSCAN needs one connected graph. Parts of the kNN graph
        # that share no edge are infinitely far apart, so each is its own tree: run them
        # one by one (the same condensed trees as one run joined at infinity).
        n_parts, part = connected_components(D, directed=False)
        labels = np.full(g.n, NOISE, np.int64)
        next_label = 0
        for p in range(n_parts):
            members = np.nonzero(part == p)[0]
            if len(members) < self.min_cluster_size:
                continue
            if len(members) <= max(self.min_samples, 2):
                labels[members] = next_label  # too small to split further
                next_label += 1
                continue
            model = HDBSCAN(
                min_cluster_size=self.min_cluster_size,
                min_samples=min(self.min_samples, len(members) - 1),
                metric="precomputed",
                allow_single_cluster=False,
                copy=True,
            )
            sub = np.asarray(model.fit(D[members][:, members]).labels_, dtype=np.int64)
            found = sub >= 0
            labels[members[found]] = sub[found] + next_label
            next_label += int(sub.max()) + 1 if found.any() else 0
        return labels


def distance_graph(g: KnnGraph) -> sparse.csr_matrix:
    """The graph's cosine distances as a symmetric sparse matrix (an edge found from either end)."""
    rows = np.repeat(np.arange(g.n), g.k)
    cols = g.indices.reshape(-1)
    # Distances of exactly 0 would vanish from a sparse matrix: keep them positive.
    d = np.maximum(g.distances.reshape(-1), 1e-6).astype(np.float64)
    keep = (cols >= 0) & (rows != cols)
    D = sparse.csr_matrix((d[keep], (rows[keep], cols[keep])), shape=(g.n, g.n))
    # Both ends usually found the edge, with values a few ULP apart: keep one of them.
    return D.maximum(D.T).tocsr()


class FaceKMeans(FaceClusterer):
    """K-Means on unit vectors, for when the number of people is known.

    Every face gets a cluster (no noise, except where cannot-link removes a
    face); rows are sorted before fitting so the seeding ignores input order.
    """

    def __init__(self, n_clusters: int, random_state: int = 0) -> None:
        self.n_clusters = n_clusters
        self.random_state = random_state

    def _labels(self, A: NDArray[np.float32], graph: KnnGraph | None) -> NDArray[np.int64]:
        from sklearn.cluster import KMeans

        if self.n_clusters > len(A):
            raise ConfigurationError(
                f"K-Means was asked for {self.n_clusters} people but there are {len(A)} faces"
            )
        order = np.lexsort(A.T[::-1])
        model = KMeans(self.n_clusters, n_init=1, random_state=self.random_state)
        sorted_labels = model.fit_predict(A[order])
        labels = np.empty(len(A), np.int64)
        labels[order] = sorted_labels
        return labels


# ---- shared rules ---------------------------------------------------------------
def enforce_cannot_link(
    A: NDArray[np.float32], labels: NDArray[np.int64], groups: NDArray[Any]
) -> NDArray[np.int64]:
    """No cluster keeps two faces of one group (photo): the one most like the centre stays."""
    if len(groups) != len(labels):
        raise ConfigurationError(f"groups has {len(groups)} entries for {len(labels)} faces")
    labels = labels.copy()
    clustered = np.nonzero(labels != NOISE)[0]
    if not len(clustered):
        return labels
    _, group_codes = np.unique(groups[clustered], return_inverse=True)
    key = labels[clustered] * (int(group_codes.max()) + 1) + group_codes
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    clash = clustered[counts[inverse] > 1]
    if not len(clash):
        return labels
    centres: dict[int, NDArray[np.float32]] = {}
    best: dict[tuple[int, Any], tuple[float, int]] = {}
    for i in clash:
        c = int(labels[i])
        if c not in centres:
            centres[c] = A[labels == c].mean(axis=0)
        sim = float(A[i] @ centres[c])
        k = (c, groups[i].item() if hasattr(groups[i], "item") else groups[i])
        if k not in best or sim > best[k][0]:
            best[k] = (sim, int(i))
    keep = {i for _, i in best.values()}
    for i in clash:
        if int(i) not in keep:
            labels[i] = NOISE
    return labels


def canonical_labels(labels: NDArray[np.int64]) -> NDArray[np.int64]:
    """Clusters renumbered 0… by size (largest first); a cluster of one face becomes noise."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    valid = labels != NOISE
    if not valid.any():
        return labels
    _, inverse, counts = np.unique(labels[valid], return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] >= 2]
    remap = np.full(len(counts), NOISE, np.int64)
    remap[order] = np.arange(len(order))
    labels[valid] = remap[inverse]
    return labels


def cluster_embeddings(
    X: ArrayLike,
    params: ClusterParams,
    *,
    groups: ArrayLike | None = None,
    graph: KnnGraph | None = None,
) -> NDArray[np.int64]:
    """Labels for ``X`` with ``params`` (noise ``-1``), cannot-link on ``groups``."""
    params.validate()
    return params.make().fit(X, groups=groups, graph=graph).labels_


def size_summary(labels: NDArray[np.int64]) -> dict[str, Any]:
    """Clusters, noise faces and the cluster size distribution."""
    valid = labels[labels != NOISE]
    sizes = np.bincount(valid) if len(valid) else np.zeros(0, np.int64)
    return {
        "faces": int(len(labels)),
        "clusters": int(len(sizes)),
        "noise": int((labels == NOISE).sum()),
        "largest": int(sizes.max()) if len(sizes) else 0,
        "median_size": float(np.median(sizes)) if len(sizes) else 0.0,
    }


__all__ = [
    "METHODS",
    "NOISE",
    "ClusterParams",
    "FaceClusterer",
    "FaceDBSCAN",
    "FaceHDBSCAN",
    "FaceKMeans",
    "KnnGraph",
    "Method",
    "canonical_labels",
    "cluster_embeddings",
    "enforce_cannot_link",
    "knn_graph",
    "size_summary",
]
