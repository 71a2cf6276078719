"""`FaceStore`: the catalog and the vector index as one store of faces.

The catalog is the source of truth; the index holds a copy of each face's
vector, keyed by face id. Every write that touches both goes through here, in
the order that makes a crash at any point (``kill -9`` included) harmless:

1. photos and their faces are committed to the catalog in one transaction,
   faces flagged ``indexed = false`` (`commit_photos`);
2. their vectors are upserted into the index (idempotent: keyed by face id);
3. only then are the faces flagged ``indexed`` (`write_vectors`).

Deleting goes the other way round: index first, then catalog (`delete_photo`),
so no vector ever points at a photo that is gone for good. `sync` repairs
whatever an interruption left (faces not flagged indexed, then an id diff both
ways), `reindex` rebuilds a collection from the catalog without running a
model, and `stats` says whether the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
from loguru import logger
from numpy.typing import NDArray
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from workbench.errors import ConfigurationError, WorkbenchError
from workbench.faces.types import AnalyzedFace
from workbench.monitoring import metrics as mon
from workbench.monitoring.logs import progress_bar
from workbench.redaction import redact_value
from workbench.settings import IndexType, Metric, WorkbenchSettings
from workbench.store.catalog import Catalog
from workbench.store.catalog_vectors import CatalogVectors, lite_index_spec, writable
from workbench.store.exact_index import ExactIndex
from workbench.store.models import Analysis, Face, Pack, Photo, PhotoStatus, utcnow
from workbench.store.schema import is_contention, redacted, storage_failure
from workbench.store.vectors import IndexSpec, VectorIndex, is_lite_uri

WRITE_ATTEMPTS = 3
"""Tries of one batch's catalog transaction when another writer collides with it."""


@dataclass
class PackIndexState:
    pack: str
    collection: str
    catalog_faces: int
    index_vectors: int

    @property
    def agree(self) -> bool:
        return self.catalog_faces == self.index_vectors


@dataclass
class Stats:
    """Photo counts per source and status, and whether catalog and index agree."""

    photos: int
    faces: int
    by_source_status: list[dict[str, Any]] = field(default_factory=list)
    packs: list[PackIndexState] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return all(p.agree for p in self.packs)

    def _repr_html_(self) -> str | None:
        """A table per source and status, for notebooks (`workbench.display.stats`)."""
        from workbench.display.stats import stats_repr

        return stats_repr(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "photos": self.photos,
            "faces": self.faces,
            "by_source_status": self.by_source_status,
            "packs": [
                {
                    "pack": p.pack,
                    "collection": p.collection,
                    "catalog_faces": p.catalog_faces,
                    "index_vectors": p.index_vectors,
                    "agree": p.agree,
                }
                for p in self.packs
            ],
            "agree": self.agree,
        }


@dataclass
class PhotoWrite:
    """One photo of an ingest batch, as the ingest found it, for `FaceStore.commit_photos`."""

    source: str
    origin: str
    uri: str
    meta: dict[str, Any]
    sha256: str | None
    size: int | None
    decoded: tuple[int, int, str] | None
    """Width, height and format, when the photo decoded."""
    error: str | None
    faces: list[AnalyzedFace] = field(default_factory=list)
    existing_id: int | None = None
    """The catalog row this photo updates (same bytes seen before, or a retried error)."""
    stale_id: int | None = None
    """An earlier error row of the same uri, replaced now that (new) bytes were read."""
    phash: str | None = None
    """Perceptual hash of the pixels."""
    copy_of: int | None = None
    """The catalog photo this one is a resized or re-encoded copy of: recorded as a
    ``duplicate`` of it, not analysed."""
    copy_in_batch: int | None = None
    """The same, of an earlier write of the same batch (its position)."""


@dataclass
class Committed:
    """What `FaceStore.commit_photos` made of one photo."""

    status: PhotoStatus | str
    """done, no_faces, error, pending, or skipped (another writer analysed it meanwhile)."""
    photo_id: int | None = None
    n_faces: int = 0


@dataclass
class NewVectors:
    """The vectors of faces just committed, for `FaceStore.write_vectors`."""

    face_ids: list[int] = field(default_factory=list)
    photo_ids: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    vectors: list[NDArray[np.float32]] = field(default_factory=list)


class FaceStore:
    """A workbench's catalog and vector index, kept in agreement (module notes)."""

    def __init__(
        self,
        catalog: Catalog,
        index: VectorIndex | CatalogVectors,
        exact: ExactIndex | None = None,
    ) -> None:
        self.catalog = catalog
        self.index = index
        self.exact = index.exact if isinstance(index, CatalogVectors) else exact
        """Exact in-process search over the catalog's vectors, where it answers (`searcher`)."""

    @classmethod
    def open(cls, settings: WorkbenchSettings) -> FaceStore:
        """The store of ``settings``' home (or catalog URL and Milvus URI)."""
        catalog = Catalog(settings.catalog_url)
        return cls(catalog, open_vectors(settings, catalog), open_exact(settings, catalog))

    def searcher(self, collection: str) -> VectorIndex | CatalogVectors | ExactIndex:
        """What answers searches of ``collection``: the exact in-process index on an
        embedded home while its vectors fit `storage.exact_max_mb` (`ExactIndex`), else
        Milvus. Both take the same `search` / `search_range` calls. (A read-only home's
        exact index has no budget: it always fits.)"""
        if self.exact is not None and self.exact.fits(collection):
            return self.exact
        return self.index

    @property
    def where(self) -> str:
        """The catalog, for messages (a SQLite file's path, a server URL without password)."""
        url = self.catalog.url
        return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else redacted(url)

    def close(self) -> None:
        if self.exact is not None:
            self.exact.close()
        self.index.close()
        self.catalog.close()

    # ---- packs and their collections ----------------------------------------
    def pack_row(self, name: str) -> Pack:
        """The catalog's record of a pack that has written faces."""
        packs = self.catalog.packs()
        for p in packs:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in packs) or "(none yet)"
        raise WorkbenchError(f"pack {name!r} has no faces in {self.where}; packs here: {known}")

    def collection_of(self, pack: str, default: str) -> str:
        """Where the catalog says ``pack``'s faces went (homes made before collections were
        per embedder keep theirs), else ``default`` (the pack's own)."""
        for row in self.catalog.packs():
            if row.name == pack:
                return str(row.collection)
        return default

    def metric_of(self, collection: str, default: Metric) -> Metric:
        """The metric the collection was built with, once it exists, else ``default``.

        On an embedded home, read from the Lite collection's manifest: a search that the
        exact index answers then never starts the home's Lite server."""
        if self.index.is_lite:
            spec = lite_index_spec(Path(self.index.uri), collection)
            if spec is not None:
                return spec.metric
        if self.index.has(collection):
            return self.index.index_spec(collection).metric
        return default

    def register_pack(self, name: str, dim: int, collection: str, metric: Metric) -> None:
        """Record the pack (its vector size) and make its collection (``metric`` unless the
        settings name one) before its first face is written."""
        self.catalog.register_pack(name, dim, collection)
        self.index.ensure_collection(collection, dim, metric=self.index.storage.metric or metric)

    def index_spec(self, pack: str) -> IndexSpec:
        """The index type and metric of the pack's collection, as Milvus has it (no model runs)."""
        return self.index.index_spec(self.pack_row(pack).collection)

    # ---- writing (the crash-safe order) -------------------------------------
    def commit_photos(
        self, writes: Sequence[PhotoWrite], pack: str | None, run_id: int | None
    ) -> tuple[list[Committed], NewVectors]:
        """Step 1: photos, their faces (not yet indexed) and ``pack``'s verdicts, in one
        transaction. ``pack`` None registers the photos (``pending``) without a verdict.

        Another writer committing one of these photos meanwhile (a second worker: same
        bytes, unique sha256) or holding SQLite's write lock rolls the transaction back:
        the photos are looked up again and it is tried again, `WRITE_ATTEMPTS` times.
        Returns each photo's outcome and the new faces' vectors, for `write_vectors`.
        """
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return self._commit(writes, pack, run_id)
            except (IntegrityError, OperationalError) as e:
                failure = storage_failure(e, self.where)
                if failure is not None or not is_contention(e) or attempt == WRITE_ATTEMPTS - 1:
                    mon.ERRORS.labels(kind="store").inc()
                    if failure is not None:
                        raise failure from e
                    raise
                logger.info("batch collided with another writer ({}); retrying", type(e).__name__)
                self._adopt_existing(writes)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _adopt_existing(self, writes: Sequence[PhotoWrite]) -> None:
        """Point photos that another process has just added at their catalog rows."""
        for w in writes:
            if w.sha256 is not None and w.existing_id is None:
                existing = self.catalog.photo_by_sha(w.sha256)
                if existing is not None:
                    w.existing_id = existing.id

    def _commit(
        self, writes: Sequence[PhotoWrite], pack: str | None, run_id: int | None
    ) -> tuple[list[Committed], NewVectors]:
        faces_written: list[Face] = []
        placed: list[tuple[Committed, Photo]] = []
        placed_at: dict[int, Photo] = {}
        outcomes: list[Committed] = []
        with self.catalog.session.begin() as s:
            for w in writes:
                # First: the original may need a flush for its id, before this row exists.
                original = _original(s, w, writes, placed_at) if w.error is None else None
                if w.stale_id is not None and w.stale_id != w.existing_id:
                    stale = s.get(Photo, w.stale_id)
                    if stale is not None:
                        s.delete(stale)
                # Locked (on PostgreSQL) so two workers given the same photo cannot
                # both add its faces: the second sees the first one's verdict.
                photo = s.get(Photo, w.existing_id, with_for_update=True) if w.existing_id else None
                if (
                    photo is not None
                    and pack is not None
                    and w.error is None
                    and s.get(Analysis, (photo.id, pack)) is not None
                ):
                    outcomes.append(Committed("skipped", photo.id))
                    continue
                if photo is None:
                    # Signed URLs and tokens a service echoed stay out of the catalog.
                    meta = redact_value(w.meta)
                    photo = Photo(
                        sha256=w.sha256, source=w.source, origin=w.origin, uri=w.uri, meta=meta
                    )
                    s.add(photo)
                photo.size_bytes = w.size
                photo.run_id = run_id
                if pack is not None:
                    photo.pack = pack
                photo.updated_at = utcnow()
                if w.decoded is not None:
                    photo.width, photo.height, photo.format = w.decoded
                if w.phash is not None:
                    photo.phash = w.phash
                photo.error, photo.n_faces = None, 0
                if w.error is not None:
                    photo.status, photo.error = "error", w.error
                elif original is not None:
                    photo.status, photo.duplicate_of = "duplicate", original
                    outcomes.append(Committed("duplicate"))
                    placed.append((outcomes[-1], photo))
                    placed_at[id(w)] = photo
                    continue
                elif pack is None:
                    photo.status = "pending"
                elif not w.faces:
                    photo.status = "no_faces"
                else:
                    photo.status, photo.n_faces = "done", len(w.faces)
                    for f in w.faces:
                        row = _face_row(f, pack)
                        photo.faces.append(row)
                        faces_written.append(row)
                outcome = Committed(photo.status, n_faces=photo.n_faces)
                if pack is not None and w.error is None:
                    if photo.id is None:
                        s.flush()  # assigns the photo id the verdict refers to
                    s.merge(
                        Analysis(
                            photo_id=photo.id,
                            pack=pack,
                            n_faces=len(w.faces),
                            run_id=run_id,
                            analysed_at=utcnow(),
                        )
                    )
                outcomes.append(outcome)
                placed.append((outcome, photo))
                placed_at[id(w)] = photo
            s.flush()  # assigns face and photo ids
            for outcome, photo in placed:
                outcome.photo_id = photo.id
            new = NewVectors()
            for f in faces_written:
                new.face_ids.append(f.id)
                new.photo_ids.append(f.photo.id)
                new.sources.append(f.photo.source)
                new.vectors.append(f.vector())
        return outcomes, new

    def write_vectors(self, collection: str, new: NewVectors, pack: str) -> None:
        """Steps 2 and 3: upsert committed faces' vectors, then flag them indexed."""
        if not new.face_ids:
            return
        self.index.upsert(
            collection, new.face_ids, new.photo_ids, new.sources, np.stack(new.vectors), pack
        )
        self.catalog.mark_indexed(new.face_ids)

    def _rewrite(self, collection: str, pack: str, rows: list[Face]) -> None:
        """Write catalog faces' vectors again (sync, reindex)."""
        photos = self.catalog.photos_by_ids({f.photo_id for f in rows})
        self.write_vectors(
            collection,
            NewVectors(
                [f.id for f in rows],
                [f.photo_id for f in rows],
                [photos[f.photo_id].source for f in rows],
                [f.vector() for f in rows],
            ),
            pack,
        )

    def flush(self, collection: str) -> None:
        """Seal what was written so searches use the index (`VectorIndex.flush`)."""
        self.index.flush(collection)

    # ---- keeping catalog and index in agreement -----------------------------
    def sync(self, pack: str) -> int:
        """Bring the pack's vectors in line with the catalog; return vectors written.

        First pushes faces not yet flagged indexed (an interrupted write);
        then, if counts still differ, compares ids both ways.
        """
        collection = self.pack_row(pack).collection
        written = 0
        while rows := self.catalog.unindexed_faces(pack):
            self._rewrite(collection, pack, rows)
            written += len(rows)
        if self.index.count(collection, pack) != self.catalog.count_faces(pack):
            in_catalog = self.catalog.face_ids(pack)
            in_index = self.index.ids(collection, pack)
            stale = sorted(in_index - in_catalog)
            missing = sorted(in_catalog - in_index)
            if stale:
                self.index.delete(collection, stale)
            for i in range(0, len(missing), 5000):
                rows = list(self.catalog.faces_by_ids(missing[i : i + 5000]).values())
                self._rewrite(collection, pack, rows)
                written += len(rows)
            logger.info(
                "index {} ({}): removed {} stale, restored {} missing vectors",
                collection,
                pack,
                len(stale),
                len(missing),
            )
        if written:
            self.index.flush(collection)
        return written

    def reindex(
        self,
        pack: str,
        *,
        index_type: IndexType | None = None,
        metric: Metric | None = None,
        progress: bool = True,
    ) -> int:
        """Rebuild the pack's collection from the catalog, without running models.

        ``index_type`` and ``metric`` switch the collection to another index
        (default: the settings' type, the collection's metric); searches read
        them back from Milvus. Packs sharing the collection (one embedder) are
        rebuilt with it.
        """
        _check_choice("index type", index_type, get_args(IndexType))
        _check_choice("metric", metric, get_args(Metric))
        row = self.pack_row(pack)
        collection = row.collection
        sharing = [p.name for p in self.catalog.packs() if p.collection == collection]
        if metric is None and self.index.has(collection):
            metric = self.index.index_spec(collection).metric  # kept unless asked
        # Refuse settings the new index cannot be built with before dropping the old one.
        self.index.build_params(
            collection, row.embedding_dim, index_type or self.index.storage.index_type
        )
        self.index.drop(collection)
        self.index.ensure_collection(
            collection, row.embedding_dim, index_type=index_type, metric=metric
        )
        total = sum(self.catalog.count_faces(name) for name in sharing)
        written = 0
        with progress_bar(
            total=total, desc=f"reindex {collection}", unit="face", enabled=progress
        ) as bar:
            for name in sharing:
                for rows in self.catalog.iter_faces(name):
                    self._rewrite(collection, name, rows)
                    written += len(rows)
                    bar.update(len(rows))
        self.index.flush(collection)
        return written

    def delete_photo(self, ref: str | int) -> int:
        """Remove a photo (by id, sha256 or uri) and its faces from index and catalog."""
        photo = self.catalog.find_photo(str(ref))
        if photo is None:
            raise WorkbenchError(f"no photo with id, sha256 or uri {ref!r} in {self.where}")
        packs = {p.name: p for p in self.catalog.packs()}
        with self.catalog.session() as s:
            faces = list(s.execute(select(Face.id, Face.pack).where(Face.photo_id == photo.id)))
        # Index first: a crash after this leaves catalog rows whose vectors the
        # next sync restores, never vectors pointing at a deleted photo.
        by_pack: dict[str, list[int]] = {}
        for face_id, pack in faces:
            by_pack.setdefault(pack, []).append(face_id)
        for pack, ids in by_pack.items():
            if pack in packs:
                self.index.delete(packs[pack].collection, ids)
        with self.catalog.session.begin() as s:
            # Its copies were never analysed (their faces were this photo's): the first goes
            # back to the analysis queue and stands in for it, the others copy that one.
            copies = list(
                s.scalars(select(Photo.id).where(Photo.duplicate_of == photo.id).order_by(Photo.id))
            )
            if copies:
                first, *rest = copies
                s.execute(
                    update(Photo)
                    .where(Photo.id == first)
                    .values(duplicate_of=None, status="pending")
                )
                if rest:
                    s.execute(update(Photo).where(Photo.id.in_(rest)).values(duplicate_of=first))
            s.delete(s.get(Photo, photo.id))
        return len(faces)

    def stats(self) -> Stats:
        """Counts per source and status, and per pack whether catalog and index agree."""
        with self.catalog.session() as s:
            rows = s.execute(
                select(Photo.source, Photo.status, func.count(Photo.id))
                .group_by(Photo.source, Photo.status)
                .order_by(Photo.source, Photo.status)
            ).all()
            photos = int(s.scalar(select(func.count(Photo.id))) or 0)
            faces = int(s.scalar(select(func.count(Face.id))) or 0)
        packs = [
            PackIndexState(
                p.name,
                p.collection,
                self.catalog.count_faces(p.name),
                self.index.count(p.collection, p.name),
            )
            for p in self.catalog.packs()
        ]
        return Stats(
            photos,
            faces,
            [{"source": src, "status": st, "photos": n} for src, st, n in rows],
            packs,
        )


def open_vectors(settings: WorkbenchSettings, catalog: Catalog) -> VectorIndex | CatalogVectors:
    """The home's vector index: its Milvus (the home's shared Lite server, or a server), or,
    where a Lite file cannot be written (a read-only home), exact search over the catalog's
    vectors (`CatalogVectors`)."""
    uri = settings.milvus_uri
    if is_lite_uri(uri) and not writable(Path(uri)):
        return CatalogVectors(Path(uri), settings.storage, catalog)
    return VectorIndex(uri, settings.storage)


def open_exact(settings: WorkbenchSettings, catalog: Catalog) -> ExactIndex | None:
    """The exact in-process index of an embedded home (Milvus Lite), unless
    ``storage.exact_search`` is off; None on a Milvus server."""
    storage = settings.storage
    if storage.exact_search and is_lite_uri(settings.milvus_uri):
        return ExactIndex(catalog, storage.exact_max_mb)
    return None


def _original(
    s: Session, w: PhotoWrite, writes: Sequence[PhotoWrite], placed_at: dict[int, Photo]
) -> int | None:
    """The photo id ``w`` is a copy of (an earlier write of the batch gets its id now)."""
    if w.copy_of is not None:
        return w.copy_of
    if w.copy_in_batch is None:
        return None
    first = placed_at.get(id(writes[w.copy_in_batch]))
    if first is None or first.status == "error":
        return None
    if first.id is None:
        s.flush()  # assigns the original's id
    return first.id


def _face_row(face: AnalyzedFace, pack: str) -> Face:
    d, q = face.detection, face.quality
    quality = (
        {}
        if q is None
        else {
            "size": q.size,
            "sharpness": q.sharpness,
            "yaw": q.yaw,
            "pitch": q.pitch,
            "roll": q.roll,
        }
    )
    return Face(
        pack=pack,
        x1=d.box[0],
        y1=d.box[1],
        x2=d.box[2],
        y2=d.box[3],
        landmarks=[round(float(v), 2) for v in d.landmarks.reshape(-1)],
        score=d.score,
        embedding=np.asarray(face.embedding, dtype=np.float32).tobytes(),
        indexed=False,
        **quality,
    )


def _check_choice(what: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise ConfigurationError(f"{what} {value!r} is not one of {', '.join(allowed)}")


__all__ = [
    "Committed",
    "FaceStore",
    "open_vectors",
    "NewVectors",
    "PackIndexState",
    "PhotoWrite",
    "Stats",
]
