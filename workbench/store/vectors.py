"""Face vectors in Milvus (a Lite file by default, any Milvus URI by setting).

One collection per embedder (dimensions and meaning differ); the faces of
every pack using that embedder (``scrfd`` or ``mtcnn`` boxes, say) share it,
each vector tagged with its pack, and searches keep to one pack. Collections
made before packs shared them have no ``pack`` field and hold one pack.
Primary keys are catalog face ids, so upserts are idempotent and the index
can always be rebuilt from the catalog.

The same code serves a Milvus Lite file and a Milvus server URI. On a server
the workbench keeps to its own database (``storage.milvus_db``, created when
missing) and reads with ``storage.milvus_consistency`` (Strong by default, so
a search right after an ingest or delete sees it). Index build and search
parameters come from the settings (`index_params`, `search_params`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workbench._optional import require
from workbench.errors import ConfigurationError, StoreError
from workbench.settings import IndexType, Metric, StorageSettings
from workbench.sources.base import SOURCE_LENGTH
from workbench.store.lite_server import LiteLease, attach

MAX_PACK_LEN = 200  # the catalog's pack name column


@dataclass(frozen=True)
class VectorHit:
    face_id: int
    photo_id: int
    source: str
    score: float
    """Cosine similarity, whatever the metric of the collection."""


@dataclass(frozen=True)
class IndexSpec:
    """How a collection's vectors are indexed and compared."""

    index_type: str
    metric: Metric


_MILVUS_METRIC: dict[str, str] = {"cosine": "COSINE", "l2": "L2"}


def pq_m_for(dim: int, storage: StorageSettings, collection: str = "") -> int:
    """IVF_PQ sub-quantizers for ``dim``: the setting, else one per 8 dimensions."""
    m = storage.pq_m
    if m is None:  # one sub-quantizer per 8 dimensions, or the nearest divisor below
        return next(k for k in range(max(1, dim // 8), 0, -1) if dim % k == 0)
    if m > dim or dim % m:
        where = f"collection {collection!r} " if collection else ""
        divisors = [k for k in (4, 8, 16, 32, 64, 128) if k <= dim and dim % k == 0]
        raise ConfigurationError(
            f"IVF_PQ pq_m {m} must divide the embedding dimension: {where}has dim {dim}; "
            f"use one of {', '.join(map(str, divisors))} (WORKBENCH_STORAGE__PQ_M) or unset it "
            "for one sub-quantizer per 8 dimensions"
        )
    return m


def index_params(
    index_type: str, storage: StorageSettings, dim: int, collection: str = ""
) -> dict[str, Any]:
    """Milvus build parameters of ``index_type`` from the settings (validated against ``dim``)."""
    if index_type == "HNSW":
        return {"M": storage.hnsw_m, "efConstruction": storage.hnsw_ef_construction}
    if index_type in ("IVF_FLAT", "IVF_SQ8"):
        return {"nlist": storage.ivf_nlist}
    if index_type == "IVF_PQ":
        m = pq_m_for(dim, storage, collection)
        return {"nlist": storage.ivf_nlist, "m": m, "nbits": storage.pq_nbits}
    return {}


def search_params(index_type: str, storage: StorageSettings, top_k: int) -> dict[str, Any]:
    """Milvus search parameters of ``index_type`` from the settings, for ``top_k`` results."""
    if index_type == "HNSW":
        return {"ef": max(storage.hnsw_ef, top_k)}  # Milvus refuses ef < top_k
    if index_type.startswith("IVF"):
        return {"nprobe": min(storage.ivf_nprobe, storage.ivf_nlist)}
    return {}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


RANGE_PAGE = 1024
"""Hits per range-search request (HNSW explores at least this many candidates)."""
_EPS = 1e-6


def _range_bounds(metric: Metric, min_cosine: float, upper: float | None) -> dict[str, float]:
    """Milvus range-search bounds for cosine in [min_cosine, upper] (upper None: 1).

    COSINE keeps ``radius < similarity ≤ range_filter``; L2 (squared distance between
    unit vectors, ``2 − 2·cos``) keeps ``range_filter ≤ distance < radius``.
    """
    top = 1.0 if upper is None else upper
    if metric == "l2":
        return {
            "radius": 2.0 - 2.0 * min_cosine + _EPS,
            "range_filter": max(0.0, 2.0 - 2.0 * top - _EPS),
        }
    return {"radius": min_cosine - _EPS, "range_filter": top + (_EPS if upper is not None else 1.0)}


SERVER_URI_PREFIXES = ("http://", "https://", "tcp://", "unix:")


def is_lite_uri(uri: str) -> bool:
    """Whether a Milvus URI names a Lite data directory (else a server)."""
    return not uri.startswith(SERVER_URI_PREFIXES)


class VectorIndex:
    """A pymilvus `MilvusClient` over the workbench's collections."""

    def __init__(self, uri: str, storage: StorageSettings, client: Any | None = None) -> None:
        self.uri = uri
        self.storage = storage
        self._client = client
        self._lease: LiteLease | None = None
        self._loaded: set[str] = set()
        self._specs: dict[str, IndexSpec] = {}
        self._tagged: dict[str, bool] = {}

    @property
    def is_lite(self) -> bool:
        return is_lite_uri(self.uri)

    @property
    def consistency(self) -> str:
        return self.storage.milvus_consistency

    @property
    def client(self) -> Any:
        if self._client is None:
            pymilvus = require("pymilvus", None, "the Milvus vector index")
            kwargs: dict[str, Any] = {}
            db = self.storage.milvus_db
            if self.is_lite and db not in (None, "default"):
                raise ConfigurationError(
                    f"milvus_db {db!r} needs a Milvus server: the Lite file {self.uri} has"
                    " one database. Unset WORKBENCH_STORAGE__MILVUS_DB or set"
                    " WORKBENCH_STORAGE__MILVUS_URI to a server (`workbench milvus start`)"
                )
            if self.storage.milvus_token is not None:
                kwargs["token"] = self.storage.milvus_token.get_secret_value()
            uri = self.uri
            if self.is_lite:
                # One server per home serves the Lite file to every process that opens it.
                self._lease = attach(
                    Path(self.uri), idle_s=self.storage.lite_idle_s, wait_s=self.storage.wait_s
                )
                uri = self._lease.uri
            try:
                if db and not self.is_lite:
                    self._ensure_database(pymilvus, db, kwargs)
                    kwargs["db_name"] = db
                self._client = pymilvus.MilvusClient(uri, **kwargs)
            except StoreError:
                self._release()
                raise
            except Exception as e:  # noqa: BLE001 - pymilvus wraps many causes
                self._release()
                hint = (
                    ""
                    if self.is_lite
                    else " (is the server running? `workbench milvus start` runs one on"
                    " 127.0.0.1:19530)"
                )
                raise StoreError(f"cannot open Milvus at {self.uri}: {e}{hint}") from e
        return self._client

    def _ensure_database(self, pymilvus: Any, db: str, kwargs: dict[str, Any]) -> None:
        """Create the server database ``db`` unless it exists."""
        admin = pymilvus.MilvusClient(self.uri, **kwargs)
        try:
            if db not in admin.list_databases():
                try:
                    admin.create_database(db)
                except Exception as e:  # noqa: BLE001 - another process may have just made it
                    if db not in admin.list_databases():
                        raise StoreError(
                            f"cannot create Milvus database {db!r} on {self.uri}: {e}"
                        ) from e
        finally:
            admin.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._release()

    def _release(self) -> None:
        if self._lease is not None:
            self._lease.close()
            self._lease = None

    # ---- collections -------------------------------------------------------
    def _index_params(self, index_type: str, dim: int, name: str = "") -> dict[str, Any]:
        return index_params(index_type, self.storage, dim, name)

    def _search_params(self, index_type: str, top_k: int = 10) -> dict[str, Any]:
        return search_params(index_type, self.storage, top_k)

    def build_params(self, name: str, dim: int, index_type: str) -> dict[str, Any]:
        """The build parameters of a new ``index_type`` index on collection ``name``;
        ConfigurationError when this Milvus or the settings cannot build it."""
        if index_type == "IVF_PQ" and self.is_lite:
            raise ConfigurationError(
                f"Milvus Lite ({self.uri}) has no IVF_PQ index (collection {name!r}): use"
                " HNSW, IVF_SQ8, IVF_FLAT or FLAT, or a Milvus server for IVF_PQ"
                " (`workbench milvus start`, then WORKBENCH_STORAGE__MILVUS_URI)"
            )
        return self._index_params(index_type, dim, name)

    def ensure_collection(
        self,
        name: str,
        dim: int,
        *,
        index_type: IndexType | None = None,
        metric: Metric | None = None,
    ) -> None:
        """Create the collection unless it exists (with the settings' index, or the one given)."""
        c = self.client
        if c.has_collection(name):
            return
        from pymilvus import DataType

        index_type = index_type or self.storage.index_type
        metric = metric or self.storage.metric or "cosine"
        params = self.build_params(name, dim, index_type)  # validated before anything is made
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("photo_id", DataType.INT64)
        schema.add_field("source", DataType.VARCHAR, max_length=SOURCE_LENGTH)
        schema.add_field("pack", DataType.VARCHAR, max_length=MAX_PACK_LEN)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = c.prepare_index_params()
        index.add_index(
            field_name="vector",
            index_type=index_type,
            metric_type=_MILVUS_METRIC[metric],
            params=params,
        )
        try:
            c.create_collection(name, schema=schema, index_params=index)
        except Exception as e:  # noqa: BLE001 - pymilvus wraps many causes
            if not c.has_collection(name):
                raise StoreError(f"cannot create the collection {name} on {self.uri}: {e}") from e
            # Another process (a second worker starting at once) made it meanwhile: its
            # index is the one to read back.
            return
        self._specs[name] = IndexSpec(index_type, metric)
        self._tagged[name] = True

    def tagged(self, name: str) -> bool:
        """Whether the collection's vectors carry their pack (collections made since packs
        share them by embedder do)."""
        if name not in self._tagged:
            try:
                fields = self.client.describe_collection(name).get("fields", [])
            except Exception:  # noqa: BLE001 - missing collection
                return True
            self._tagged[name] = any(f.get("name") == "pack" for f in fields)
        return self._tagged[name]

    def _filter(self, name: str, pack: str | None, source: str | None = None) -> str:
        terms = []
        if pack is not None and self.tagged(name):
            terms.append(f"pack == {_quote(pack)}")
        if source:
            terms.append(f"source == {_quote(source)}")
        return " and ".join(terms)

    def index_spec(self, name: str) -> IndexSpec:
        """The index type and metric the collection was built with (read from Milvus).

        Searches use these, not the settings, so a collection rebuilt with
        another index or metric keeps answering correctly.
        """
        spec = self._specs.get(name)
        if spec is None:
            try:
                info = self.client.describe_index(name, "vector") or {}
            except Exception:  # noqa: BLE001 - an old or missing index: fall back to settings
                info = {}
            metric = str(info.get("metric_type", "")).upper()
            spec = IndexSpec(
                str(info.get("index_type") or self.storage.index_type),
                "l2"
                if metric == "L2"
                else "cosine"
                if metric == "COSINE"
                else self.storage.metric or "cosine",
            )
            self._specs[name] = spec
        return spec

    def drop(self, name: str) -> None:
        if self.client.has_collection(name):
            self.client.drop_collection(name)
        self._loaded.discard(name)
        self._specs.pop(name, None)
        self._tagged.pop(name, None)

    def _ready(self, name: str) -> bool:
        """True when the collection exists and is loaded (a new process must load it first)."""
        if name in self._loaded:
            return True
        if not self.client.has_collection(name):
            return False
        self.client.load_collection(name)
        self._loaded.add(name)
        return True

    def has(self, name: str) -> bool:
        return bool(self.client.has_collection(name))

    # ---- data --------------------------------------------------------------
    def upsert(
        self,
        name: str,
        ids: Sequence[int],
        photo_ids: Sequence[int],
        sources: Sequence[str],
        vectors: NDArray[np.float32],
        pack: str,
    ) -> None:
        """Write the vectors of one pack's faces (keyed by face id)."""
        if len(ids) == 0:
            return
        rows = [
            {"id": int(i), "photo_id": int(p), "source": s[:SOURCE_LENGTH], "vector": v.tolist()}
            for i, p, s, v in zip(ids, photo_ids, sources, vectors, strict=True)
        ]
        if self.tagged(name):
            for row in rows:
                row["pack"] = pack
        try:
            self.client.upsert(name, rows)
        except Exception as e:  # noqa: BLE001
            raise StoreError(f"writing {len(rows)} vectors to {name} failed: {e}") from e

    def flush(self, name: str) -> None:
        """Seal what was written so searches use the index.

        Milvus Lite otherwise keeps rows in an in-memory buffer (up to 128 MiB)
        that every search scans in Python: at 100k faces a query took 2–4 s in
        the process that wrote them, ~90 ms after a flush.
        """
        if self.has(name):
            self.client.flush(name)

    def delete(self, name: str, ids: Sequence[int]) -> None:
        if ids and self.has(name):
            self.client.delete(name, ids=[int(i) for i in ids])

    def count(self, name: str, pack: str | None = None) -> int:
        """Vectors in the collection (of ``pack`` only, when given)."""
        if not self._ready(name):
            return 0
        res = self.client.query(
            name,
            filter=self._filter(name, pack),
            output_fields=["count(*)"],
            consistency_level=self.consistency,
        )
        return int(res[0]["count(*)"])

    def ids(self, name: str, pack: str | None = None) -> set[int]:
        """Every primary key in the collection, or of ``pack`` (for reconciliation)."""
        if not self._ready(name):
            return set()
        out: set[int] = set()
        flt = " and ".join(t for t in ("id >= 0", self._filter(name, pack)) if t)
        it = self.client.query_iterator(
            name,
            batch_size=10_000,
            filter=flt,
            output_fields=["id"],
            consistency_level=self.consistency,
        )
        try:
            while batch := it.next():
                out.update(int(r["id"]) for r in batch)
        finally:
            it.close()
        return out

    def search(
        self,
        name: str,
        queries: NDArray[np.float32],
        top_k: int,
        source: str | None = None,
        pack: str | None = None,
    ) -> list[list[VectorHit]]:
        """Nearest faces of each query vector (of ``pack``'s faces when given), best first,
        scored as cosine similarity."""
        if not self._ready(name):
            return [[] for _ in range(len(queries))]
        flt = self._filter(name, pack, source)
        spec = self.index_spec(name)
        try:
            res = self.client.search(
                name,
                data=[q.tolist() for q in queries],
                limit=top_k,
                filter=flt,
                output_fields=["photo_id", "source"],
                search_params={
                    "metric_type": _MILVUS_METRIC[spec.metric],
                    "params": self._search_params(spec.index_type, top_k),
                },
                anns_field="vector",
                consistency_level=self.consistency,
            )
        except Exception as e:  # noqa: BLE001
            raise StoreError(f"searching {name} failed: {e}") from e
        return [[self._hit(h, spec.metric) for h in hits] for hits in res]

    def search_range(
        self,
        name: str,
        queries: NDArray[np.float32],
        min_cosine: float,
        source: str | None = None,
        pack: str | None = None,
        page: int = RANGE_PAGE,
    ) -> list[list[VectorHit]]:
        """Every face of each query at or above ``min_cosine`` (of ``pack``'s faces when
        given), best first: Milvus range searches, a page at a time, each page starting
        below the last one's lowest score."""
        if not self._ready(name):
            return [[] for _ in range(len(queries))]
        flt = self._filter(name, pack, source)
        spec = self.index_spec(name)
        return [self._range_one(name, q, min_cosine, flt, spec, page) for q in queries]

    def _range_one(
        self,
        name: str,
        query: NDArray[np.float32],
        min_cosine: float,
        flt: str,
        spec: IndexSpec,
        page: int,
    ) -> list[VectorHit]:
        found: dict[int, VectorHit] = {}
        upper: float | None = None
        while True:
            params = dict(self._search_params(spec.index_type, page))
            params.update(_range_bounds(spec.metric, min_cosine, upper))
            try:
                res = self.client.search(
                    name,
                    data=[query.tolist()],
                    limit=page,
                    filter=flt,
                    output_fields=["photo_id", "source"],
                    search_params={"metric_type": _MILVUS_METRIC[spec.metric], "params": params},
                    anns_field="vector",
                    consistency_level=self.consistency,
                )
            except Exception as e:  # noqa: BLE001
                raise StoreError(f"range search of {name} failed: {e}") from e
            batch = [self._hit(h, spec.metric) for h in res[0]]
            new = [h for h in batch if h.face_id not in found and h.score >= min_cosine]
            found.update((h.face_id, h) for h in new)
            if len(batch) < page or not new:
                break
            # The next page: what scores at or below this page's lowest (ties come again).
            upper = min(h.score for h in batch)
        return sorted(found.values(), key=lambda h: (-h.score, h.face_id))

    def _hit(self, h: dict[str, Any], metric: Metric) -> VectorHit:
        entity = h.get("entity", {})
        # Lite and the 2.3 server both name the key by its field ("id"); some servers say "pk".
        face_id = h.get("id", h.get("pk", entity.get("id")))
        dist = float(h["distance"])
        # On unit vectors squared L2 = 2 - 2·cos; report cosine either way.
        cos = dist if metric == "cosine" else 1.0 - dist / 2.0
        return VectorHit(int(face_id), int(entity["photo_id"]), str(entity["source"]), cos)
