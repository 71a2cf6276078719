"""`CatalogVectors`: the vector index of a read-only home, answered from the catalog.

A Milvus Lite file cannot be opened where it cannot be written (its lock file), so
a home on a read-only mount or without write permission would have no search.
The catalog holds every face's embedding (it is the source of truth), so this
serves the same reads exactly, by brute force in numpy: `search`, `count`, `ids`,
`index_spec` (read from the Lite collection's manifest). Writes say the home is
read-only. Exact search over the catalog's vectors costs a few milliseconds a query
at 100k faces once they are loaded (a pack's vectors are read once per process).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from workbench.errors import StoreError
from workbench.settings import Metric, StorageSettings
from workbench.store.catalog import Catalog
from workbench.store.vectors import IndexSpec, VectorHit


class CatalogVectors:
    """Read-only stand-in for `VectorIndex` over a home that cannot be written."""

    is_lite = True

    def __init__(self, data_dir: Path, storage: StorageSettings, catalog: Catalog) -> None:
        self.uri = str(data_dir)
        self.storage = storage
        self.catalog = catalog
        self._loaded: dict[str, tuple[Any, ...]] = {}

    @property
    def consistency(self) -> str:
        return self.storage.milvus_consistency

    def close(self) -> None:
        self._loaded.clear()

    # ---- what the catalog knows ---------------------------------------------
    def _packs(self, name: str, pack: str | None) -> list[str]:
        sharing = [p.name for p in self.catalog.packs() if p.collection == name]
        return [p for p in sharing if pack is None or p == pack]

    def has(self, name: str) -> bool:
        return bool(self._packs(name, None))

    def tagged(self, name: str) -> bool:
        return True

    def index_spec(self, name: str) -> IndexSpec:
        """The index type and metric the Lite collection was built with (its manifest)."""
        manifest = Path(self.uri) / "collections" / name / "manifest.json"
        try:
            spec = json.loads(manifest.read_text())["index_specs"]["vector"]
            metric: Metric = "l2" if str(spec["metric_type"]).upper() == "L2" else "cosine"
            return IndexSpec(str(spec["index_type"]), metric)
        except (OSError, ValueError, KeyError, TypeError):
            return IndexSpec(self.storage.index_type, self.storage.metric or "cosine")

    def count(self, name: str, pack: str | None = None) -> int:
        return sum(self.catalog.count_faces(p) for p in self._packs(name, pack))

    def ids(self, name: str, pack: str | None = None) -> set[int]:
        out: set[int] = set()
        for p in self._packs(name, pack):
            out |= self.catalog.face_ids(p)
        return out

    def _vectors(self, pack: str) -> tuple[Any, ...]:
        """Face ids, photo ids, sources and unit vectors of ``pack`` (read once)."""
        if pack not in self._loaded:
            ids, photo_ids, X = self.catalog.face_vectors(pack)
            photos = self.catalog.photos_by_ids(sorted(set(photo_ids.tolist())))
            sources = np.array([photos[int(p)].source for p in photo_ids], dtype=object)
            norms = np.linalg.norm(X, axis=1, keepdims=True) if len(X) else X
            A = (X / np.maximum(norms, 1e-12)).astype(np.float32) if len(X) else X
            self._loaded[pack] = (ids, photo_ids, sources, A)
        return self._loaded[pack]

    def _scored(
        self, name: str, queries: NDArray[np.float32], source: str | None, pack: str | None
    ) -> tuple[Any, ...]:
        """Ids, photo ids, sources of the faces searched, and each query's similarities."""
        parts = [self._vectors(p) for p in self._packs(name, pack)]
        if not parts:
            empty = np.zeros(0, np.int64)
            return empty, empty, np.zeros(0, object), np.zeros((len(queries), 0), np.float32)
        ids = np.concatenate([p[0] for p in parts])
        photo_ids = np.concatenate([p[1] for p in parts])
        sources = np.concatenate([p[2] for p in parts])
        A = np.concatenate([p[3] for p in parts])
        if source:
            keep = sources == source
            ids, photo_ids, sources, A = ids[keep], photo_ids[keep], sources[keep], A[keep]
        Q = np.asarray(queries, dtype=np.float32)
        Q = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
        sims = Q @ A.T if len(A) else np.zeros((len(Q), 0), np.float32)
        return ids, photo_ids, sources, sims

    def search_range(
        self,
        name: str,
        queries: NDArray[np.float32],
        min_cosine: float,
        source: str | None = None,
        pack: str | None = None,
    ) -> list[list[VectorHit]]:
        """Every face of each query at or above ``min_cosine``, best first (exact)."""
        ids, photo_ids, sources, sims = self._scored(name, queries, source, pack)
        out = []
        for row in sims:
            hit = np.flatnonzero(row >= min_cosine)
            hit = hit[np.lexsort((ids[hit], -row[hit]))]
            out.append(
                [
                    VectorHit(int(ids[i]), int(photo_ids[i]), str(sources[i]), float(row[i]))
                    for i in hit
                ]
            )
        return out

    def search(
        self,
        name: str,
        queries: NDArray[np.float32],
        top_k: int,
        source: str | None = None,
        pack: str | None = None,
    ) -> list[list[VectorHit]]:
        """Exact nearest faces of each query (of ``pack``'s faces when given), best first,
        scored as cosine similarity, as `VectorIndex.search` does."""
        ids, photo_ids, sources, sims = self._scored(name, queries, source, pack)
        k = min(top_k, sims.shape[1])
        out: list[list[VectorHit]] = []
        for row in sims:
            best = np.argpartition(-row, k - 1)[:k] if k else np.array([], dtype=np.int64)
            best = best[np.argsort(-row[best], kind="stable")]
            out.append(
                [
                    VectorHit(int(ids[i]), int(photo_ids[i]), str(sources[i]), float(row[i]))
                    for i in best
                ]
            )
        return out

    # ---- writing: refused --------------------------------------------------------
    def _read_only(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise StoreError(
            f"{self.uri} is read-only here: reading commands (stats, search, export, gallery) "
            "work, writing ones need write access to it"
        )

    upsert = ensure_collection = delete = drop = build_params = _read_only

    def flush(self, name: str) -> None:
        """Nothing was written."""


def writable(path: Path) -> bool:
    """Whether ``path`` (or, when it is not made yet, its nearest existing folder) can be
    written here: False on a read-only mount or without permission."""
    here = path
    while not here.exists() and here != here.parent:
        here = here.parent
    return os.access(here, os.W_OK)


__all__ = ["CatalogVectors", "writable"]
