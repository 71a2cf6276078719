"""`CatalogVectors`: the vector index of a read-only home, answered from the catalog.

A Milvus Lite file cannot be opened where it cannot be written (its lock file), so
a home on a read-only mount or without write permission would have no search.
The catalog holds every face's embedding (it is the source of truth), so this
serves the same reads exactly, searching through `ExactIndex`: `search`, `count`,
`ids`, `index_spec` (read from the Lite collection's manifest). Writes say the home
is read-only.
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
from workbench.store.exact_index import ExactIndex
from workbench.store.vectors import IndexSpec, VectorHit


class CatalogVectors:
    """Read-only stand-in for `VectorIndex` over a home that cannot be written."""

    is_lite = True

    def __init__(self, data_dir: Path, storage: StorageSettings, catalog: Catalog) -> None:
        self.uri = str(data_dir)
        self.storage = storage
        self.catalog = catalog
        # Every vector is held, whatever the size: there is no other index to ask.
        self.exact = ExactIndex(catalog, max_mb=1 << 40)

    @property
    def consistency(self) -> str:
        return self.storage.milvus_consistency

    def close(self) -> None:
        self.exact.close()

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
        spec = lite_index_spec(Path(self.uri), name)
        return spec or IndexSpec(self.storage.index_type, self.storage.metric or "cosine")

    def count(self, name: str, pack: str | None = None) -> int:
        return sum(self.catalog.count_faces(p) for p in self._packs(name, pack))

    def ids(self, name: str, pack: str | None = None) -> set[int]:
        out: set[int] = set()
        for p in self._packs(name, pack):
            out |= self.catalog.face_ids(p)
        return out

    def search(
        self,
        name: str,
        queries: NDArray[np.float32],
        top_k: int,
        source: str | None = None,
        pack: str | None = None,
    ) -> list[list[VectorHit]]:
        """Exact nearest faces of each query (`ExactIndex.search`)."""
        return self.exact.search(name, queries, top_k, source=source, pack=pack)

    def search_range(
        self,
        name: str,
        queries: NDArray[np.float32],
        min_cosine: float,
        source: str | None = None,
        pack: str | None = None,
    ) -> list[list[VectorHit]]:
        """Every face of each query at or above ``min_cosine`` (`ExactIndex.search_range`)."""
        return self.exact.search_range(name, queries, min_cosine, source=source, pack=pack)

    # ---- writing: refused --------------------------------------------------------
    def _read_only(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise StoreError(
            f"{self.uri} is read-only here: reading commands (stats, search, export, gallery) "
            "work, writing ones need write access to it"
        )

    upsert = ensure_collection = delete = drop = build_params = _read_only

    def flush(self, name: str) -> None:
        """Nothing was written."""


def lite_index_spec(data_dir: Path, name: str) -> IndexSpec | None:
    """The index type and metric of a Milvus Lite collection, from the manifest Lite keeps
    beside its data, without starting Lite; None when there is none to read."""
    manifest = data_dir / "collections" / name / "manifest.json"
    try:
        spec = json.loads(manifest.read_text())["index_specs"]["vector"]
        metric: Metric = "l2" if str(spec["metric_type"]).upper() == "L2" else "cosine"
        return IndexSpec(str(spec["index_type"]), metric)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def writable(path: Path) -> bool:
    """Whether ``path`` (or, when it is not made yet, its nearest existing folder) can be
    written here: False on a read-only mount or without permission."""
    here = path
    while not here.exists() and here != here.parent:
        here = here.parent
    return os.access(here, os.W_OK)


__all__ = ["CatalogVectors", "lite_index_spec", "writable"]
