"""`ExactIndex`: exact search, in process, over the catalog's vectors of a pack.

Milvus Lite answers a query in Python at ~0.6 µs per stored face whatever its
index (it rebuilds a mask of deleted rows on every query), misses a filter's
matches under HNSW, and right after a write searches unsealed rows slowly until
its index is rebuilt. A matrix product over the pack's unit vectors is exact
(recall 1.0, filters included), a few milliseconds at 100k faces, and needs no
index build. So an embedded home (SQLite + Milvus Lite) searches here while the
pack's vectors fit ``storage.exact_max_mb``; Milvus stays the vector store of
record and answers for larger packs and on a server.

The catalog is the source of truth, and this index follows it, whoever writes:

* face ids only grow (``sqlite_autoincrement``; a sequence on PostgreSQL), and a
  face's vector never changes, so new faces are the rows above the highest id
  held;
* a delete, or a PostgreSQL transaction that committed a lower id after a
  higher one, shows as a count of rows up to that id other than the rows held:
  then the ids are compared both ways;
* on SQLite, ``PRAGMA data_version`` on a connection of its own tells, in
  microseconds, whether any other connection (this process's writers included)
  has committed since the last look, so an unchanged catalog costs nothing more.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workbench.store.catalog import Catalog
from workbench.store.vectors import VectorHit

_EMPTY_IDS = np.zeros(0, np.int64)


@dataclass
class _PackVectors:
    """One pack's faces as held: ids ascending, their photos and sources, unit vectors.

    ``unit`` has room for more rows than ``n`` (it doubles when full), so that
    appending the faces of an ingest does not copy the whole matrix each time.
    """

    ids: NDArray[np.int64] = field(default_factory=lambda: _EMPTY_IDS)
    photo_ids: NDArray[np.int64] = field(default_factory=lambda: _EMPTY_IDS)
    sources: NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    """Each face's source as a code of `ExactIndex`'s source table (a filter compares ints)."""
    unit: NDArray[np.float32] | None = None
    n: int = 0
    version: int | None = None
    """The catalog's ``data_version`` when last brought up to date (SQLite)."""
    seen_id: int = -1
    """The highest face id of the whole table (any pack) looked at; -1: nothing loaded."""
    table_count: int = 0
    """Faces in the whole table (every pack) when last brought up to date."""

    @property
    def last_id(self) -> int:
        return int(self.ids[self.n - 1]) if self.n else 0

    @property
    def matrix(self) -> NDArray[np.float32]:
        assert self.unit is not None
        return self.unit[: self.n]

    def append(
        self,
        ids: NDArray[np.int64],
        photo_ids: NDArray[np.int64],
        sources: NDArray[np.int32],
        vectors: NDArray[np.float32],
    ) -> None:
        if not len(ids):
            return
        unit = _unit(vectors)
        need = self.n + len(ids)
        if self.unit is None or need > len(self.unit) or self.unit.shape[1] != unit.shape[1]:
            grown = np.empty((max(need, 2 * self.n, 1024), unit.shape[1]), np.float32)
            if self.unit is not None and self.n:
                grown[: self.n] = self.unit[: self.n]
            self.unit = grown
        self.unit[self.n : need] = unit
        self.ids = np.concatenate([self.ids[: self.n], ids])
        self.photo_ids = np.concatenate([self.photo_ids[: self.n], photo_ids])
        self.sources = np.concatenate([self.sources[: self.n], sources])
        self.n = need

    def sort(self) -> None:
        """Put the rows back in id order (after rows that committed late were added)."""
        assert self.unit is not None
        order = np.argsort(self.ids[: self.n], kind="stable")
        self.unit[: self.n] = self.unit[: self.n][order]
        self.ids, self.photo_ids = self.ids[order], self.photo_ids[order]
        self.sources = self.sources[order]

    def keep(self, mask: NDArray[np.bool_]) -> None:
        """Keep the rows where ``mask`` is true (in order)."""
        assert self.unit is not None
        kept = int(mask.sum())
        self.unit[:kept] = self.unit[: self.n][mask]
        self.ids = self.ids[: self.n][mask]
        self.photo_ids = self.photo_ids[: self.n][mask]
        self.sources = self.sources[: self.n][mask]
        self.n = kept


def _unit(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    X = np.asarray(vectors, dtype=np.float32)
    return (X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class ExactIndex:
    """Exact cosine search over packs' vectors from the catalog, kept current (module notes).

    The same reads as `VectorIndex` (`search`, `search_range`), scored as cosine
    similarity, best first, ties by face id. Thread-safe: searches of a server's
    threads share one copy of the vectors.
    """

    def __init__(self, catalog: Catalog, max_mb: int) -> None:
        self.catalog = catalog
        self.max_bytes = max_mb * 1024 * 1024
        self._packs: dict[str, _PackVectors] = {}
        self._source_code: dict[str, int] = {}
        self._memo: dict[Hashable, tuple[int, Any]] = {}
        self._source_names: list[str] = []
        self._lock = threading.Lock()
        self._version_conn: Any = None
        url = catalog.engine.url
        on_file = url.database not in (None, "", ":memory:")
        self._watch = url.get_backend_name() == "sqlite" and on_file

    def close(self) -> None:
        with self._lock:
            self._packs.clear()
            self._memo.clear()
            if self._version_conn is not None:
                self._version_conn.close()
                self._version_conn = None

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()``, kept under ``key`` while nothing is committed to the catalog
        (SQLite's data_version unchanged); computed every time where that cannot be told."""
        with self._lock:
            version = self._data_version()
            held = self._memo.get(key)
        if version is not None and held is not None and held[0] == version:
            return held[1]
        value = compute()
        if version is not None:  # read before computing: a commit meanwhile recomputes
            with self._lock:
                self._memo[key] = (version, value)
        return value

    # ---- what it holds -------------------------------------------------------------
    def packs_of(self, collection: str) -> list[str]:
        return [p.name for p in self.catalog.packs() if p.collection == collection]

    def fits(self, collection: str) -> bool:
        """Whether the vectors of every pack of ``collection`` fit the memory budget (a
        pack held is sized by what it holds; one not yet held is counted in the catalog)."""
        size = 0
        for p in self.catalog.packs():
            if p.collection == collection:
                held = self._packs.get(p.name)
                n = held.n if held is not None else self.catalog.count_faces(p.name)
                size += n * p.embedding_dim * 4
        return size <= self.max_bytes

    def _data_version(self) -> int | None:
        """SQLite's count of commits by other connections (None: not SQLite)."""
        if not self._watch:
            return None
        try:
            if self._version_conn is None:
                # A connection of the catalog's own engine (its URL's read-only flags
                # included), held for good: data_version counts what *other*
                # connections commit, so it must not serve writes.
                self._version_conn = self.catalog.engine.raw_connection()
            cur = self._version_conn.cursor()
            try:
                return int(cur.execute("PRAGMA data_version").fetchone()[0])
            finally:
                cur.close()
        except sqlite3.Error:
            self._watch = False  # cannot be watched: look at the catalog every time
            return None

    def _current(self, pack: str) -> _PackVectors:
        """The pack's vectors, brought up to date with the catalog (caller holds the lock).

        The first time, the pack's faces up to the table's highest id. Then the rows
        above the highest id seen (of any pack: a primary-key range, not the pack's
        index) and the table's row count: a count other than the last one plus the new
        rows means a delete or a late commit somewhere, and the pack's ids are compared.
        """
        held = self._packs.setdefault(pack, _PackVectors())
        version = self._data_version()
        if version is not None and version == held.version:
            return held
        if held.seen_id < 0:
            held.table_count, held.seen_id = self.catalog.face_table_extent()
            ids, photo_ids, vectors = self.catalog.face_vectors(pack)
            keep = ids <= held.seen_id  # later rows come with the next look
            self._add(held, ids[keep], photo_ids[keep], vectors[keep])
        else:
            ids, photo_ids, packs, vectors = self.catalog.faces_after(held.seen_id)
            total, _ = self.catalog.face_table_extent()
            if len(ids):
                held.seen_id = int(ids[-1])
                mine = packs == pack
                self._add(held, ids[mine], photo_ids[mine], vectors[mine])
            if total != held.table_count + len(ids):
                self._reconcile(held, pack)
            held.table_count = total
        held.version = version
        return held

    def _add(
        self,
        held: _PackVectors,
        ids: NDArray[np.int64],
        photo_ids: NDArray[np.int64],
        vectors: NDArray[np.float32],
    ) -> None:
        if len(ids) and held.n and ids[0] <= held.last_id:
            # Rows a reconcile already took (they committed while it ran).
            new = ~np.isin(ids, held.ids[: held.n])
            ids, photo_ids, vectors = ids[new], photo_ids[new], vectors[new]
        if not len(ids):
            return
        source_of = self.catalog.sources_of(sorted(set(photo_ids.tolist())))
        there = np.fromiter((int(p) in source_of for p in photo_ids), bool, len(photo_ids))
        if not there.all():
            # Deleted (with its faces) between the two reads: the faces are gone too.
            ids, photo_ids, vectors = ids[there], photo_ids[there], vectors[there]
            if not len(ids):
                return
        codes = np.fromiter((self._code(source_of[int(p)]) for p in photo_ids), np.int32)
        held.append(ids, photo_ids, codes, vectors)
        if held.n > len(ids) and ids[0] < held.ids[held.n - len(ids) - 1]:
            held.sort()

    def _code(self, source: str) -> int:
        code = self._source_code.get(source)
        if code is None:
            code = self._source_code[source] = len(self._source_names)
            self._source_names.append(source)
        return code

    def _reconcile(self, held: _PackVectors, pack: str) -> None:
        """Drop what the catalog deleted, add what committed below the highest id held."""
        stored = self.catalog.face_ids(pack)
        held.keep(np.fromiter((int(i) in stored for i in held.ids[: held.n]), bool, held.n))
        late = sorted(stored - set(held.ids[: held.n].tolist()))
        if late:
            self._add(held, *self.catalog.face_vectors(pack, face_ids=late))

    # ---- reads ---------------------------------------------------------------------
    def _scored(
        self, collection: str, queries: NDArray[np.float32], source: str | None, pack: str | None
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], list[str], NDArray[np.float32]]:
        """Ids, photo ids and sources of the faces searched, and each query's similarities.

        A source filter is applied to the similarities of every face, as numpy's
        masked brute force does: cheaper than copying the source's rows out first."""
        packs = [pack] if pack is not None else self.packs_of(collection)
        Q = _unit(np.atleast_2d(queries))
        with self._lock:
            parts = [held for held in (self._current(p) for p in packs) if held.n]
            if not parts:
                return _EMPTY_IDS, _EMPTY_IDS, [], np.zeros((len(Q), 0), np.float32)
            if len(parts) == 1:
                (one,) = parts
                ids, photo_ids, codes, A = one.ids, one.photo_ids, one.sources, one.matrix
            else:
                ids = np.concatenate([p.ids for p in parts])
                photo_ids = np.concatenate([p.photo_ids for p in parts])
                codes = np.concatenate([p.sources for p in parts])
                A = np.concatenate([p.matrix for p in parts])
            sims = Q @ A.T
            if source:
                code = self._source_code.get(source, -1)
                keep = np.flatnonzero(codes == code)
                ids, photo_ids, codes, sims = ids[keep], photo_ids[keep], codes[keep], sims[:, keep]
            names = self._source_names
        return ids, photo_ids, _SourceNames(codes, names), sims

    def search(
        self,
        collection: str,
        queries: NDArray[np.float32],
        top_k: int,
        source: str | None = None,
        pack: str | None = None,
    ) -> list[list[VectorHit]]:
        """The exact ``top_k`` nearest faces of each query, best first (ties: lower id)."""
        ids, photo_ids, sources, sims = self._scored(collection, queries, source, pack)
        k = min(top_k, sims.shape[1])
        out: list[list[VectorHit]] = []
        for row in sims:
            if k == 0:
                out.append([])
                continue
            # The k-th best score, then every face at or above it: ties at the edge are
            # broken by id, as a full sort would, whatever argpartition picked.
            kth = np.partition(row, len(row) - k)[len(row) - k]
            cand = np.flatnonzero(row >= kth)
            best = cand[np.lexsort((ids[cand], -row[cand]))][:k]
            out.append(_hits(best, ids, photo_ids, sources, row))
        return out

    def search_range(
        self,
        collection: str,
        queries: NDArray[np.float32],
        min_cosine: float,
        source: str | None = None,
        pack: str | None = None,
    ) -> list[list[VectorHit]]:
        """Every face of each query at or above ``min_cosine``, best first (exact)."""
        ids, photo_ids, sources, sims = self._scored(collection, queries, source, pack)
        out = []
        for row in sims:
            hit = np.flatnonzero(row >= min_cosine)
            hit = hit[np.lexsort((ids[hit], -row[hit]))]
            out.append(_hits(hit, ids, photo_ids, sources, row))
        return out


class _SourceNames:
    """Source names by position, from codes and the index's table of names."""

    def __init__(self, codes: NDArray[np.int32], names: list[str]) -> None:
        self.codes, self.names = codes, names

    def __getitem__(self, i: int) -> str:
        return self.names[int(self.codes[i])]


def _hits(
    at: Sequence[int] | NDArray[np.intp],
    ids: NDArray[np.int64],
    photo_ids: NDArray[np.int64],
    sources: _SourceNames | list[str],
    row: NDArray[np.float32],
) -> list[VectorHit]:
    return [VectorHit(int(ids[i]), int(photo_ids[i]), str(sources[i]), float(row[i])) for i in at]


__all__ = ["ExactIndex"]
