"""`Catalog`: the queries on photos, faces, packs and runs, in any SQLAlchemy database
(SQLite by default, PostgreSQL in production). Tables in `workbench.store.models`,
engines and schema upgrades in `workbench.store.schema`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Integer, and_, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from workbench.errors import StoreError
from workbench.settings import QualitySettings
from workbench.store.models import Analysis, Face, Pack, Person, Photo, Run, utcnow
from workbench.store.processes import pid_alive
from workbench.store.schema import catalog_revision, open_engine

IN_CHUNK = 5000
"""Ids per ``IN (...)`` list on SQLite (at most 32766 bind parameters there)."""
PG_ARRAY_CHUNK = 100_000
"""Ids per ``= ANY(array)`` on PostgreSQL: one bind parameter (an IN list of thousands of
parameters is both limited to 65535 and slow to send through psycopg)."""


def passes_gate(gate: QualitySettings) -> Any:
    """SQL: the face passes the quality gate (an unmeasured value never fails it), as
    `workbench.faces.quality.reasons` judges a face in Python."""
    return and_(
        or_(Face.size.is_(None), Face.size >= gate.min_size),
        Face.score >= gate.min_score,
        or_(Face.sharpness.is_(None), Face.sharpness >= gate.min_sharpness),
        or_(Face.yaw.is_(None), func.abs(Face.yaw) <= gate.max_yaw),
        or_(Face.pitch.is_(None), func.abs(Face.pitch) <= gate.max_pitch),
    )


def chunked(ids: Sequence[int] | Any, size: int = IN_CHUNK) -> Iterator[list[int]]:
    """Ids in lists of at most ``size``, for ``IN (...)`` (bind parameters are limited)."""
    items = [int(i) for i in ids]
    for start in range(0, len(items), size):
        yield items[start : start + size]


def id_in(column: Any, ids: Sequence[int] | Any, dialect: str) -> Iterator[Any]:
    """``column IN ids`` as one condition per part of ``ids`` the database takes at once:
    ``IN (...)`` lists of `IN_CHUNK` on SQLite, ``= ANY(:array)`` on PostgreSQL. Run the
    query once per condition and combine the results."""
    if dialect == "postgresql":
        from sqlalchemy import any_, literal
        from sqlalchemy.dialects.postgresql import ARRAY

        for chunk in chunked(ids, PG_ARRAY_CHUNK):
            yield column == any_(literal(chunk, ARRAY(Integer)))
    else:
        for chunk in chunked(ids):
            yield column.in_(chunk)


class Catalog:
    """Photos, faces, packs and runs in any SQLAlchemy database (SQLite by default).

    Opening brings the schema to the newest revision (module notes); ``upgraded``
    is then ``(before, after)``, or None when it was already there.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine
        self.upgraded: tuple[str | None, str] | None
        self.engine, self.upgraded = open_engine(url)
        self.session: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)

    def id_in(self, column: Any, ids: Sequence[int] | Any) -> Iterator[Any]:
        """`id_in` for this catalog's database (for queries by many ids)."""
        return id_in(column, ids, self.engine.dialect.name)

    def revision(self) -> str | None:
        """The schema revision the catalog is at."""
        with self.engine.connect() as conn:
            return catalog_revision(conn)

    def close(self) -> None:
        self.engine.dispose()

    # ---- packs -------------------------------------------------------------
    def register_pack(self, name: str, embedding_dim: int, collection: str) -> None:
        """Record a pack before its first face (once; again with the same size is a no-op).

        Processes starting at once (two workers) may both find it missing: the one whose
        insert loses the race reads the winner's row instead of failing.
        """
        try:
            self._register_pack(name, embedding_dim, collection)
        except (IntegrityError, OperationalError):
            # The other insert committed first (PostgreSQL: unique violation; SQLite: the
            # snapshot this transaction read is stale). Its row is there to check now.
            self._register_pack(name, embedding_dim, collection)

    def _register_pack(self, name: str, embedding_dim: int, collection: str) -> None:
        with self.session.begin() as s:
            existing = s.get(Pack, name)
            if existing is None:
                s.add(Pack(name=name, embedding_dim=embedding_dim, collection=collection))
            elif existing.embedding_dim != embedding_dim:
                raise StoreError(
                    f"pack {name!r} wrote {existing.embedding_dim}-d vectors before and now "
                    f"gives {embedding_dim}-d; a changed model needs a new pack name"
                )

    def packs(self) -> list[Pack]:
        with self.session() as s:
            return list(s.scalars(select(Pack).order_by(Pack.name)))

    # ---- photos ------------------------------------------------------------
    def photo_by_sha(self, sha: str) -> Photo | None:
        with self.session() as s:
            return s.scalar(select(Photo).where(Photo.sha256 == sha))

    def known_photo(self, origin: str, uri: str | None, sha: str | None) -> Photo | None:
        """The photo a remote source's listing names, found before downloading it:
        by the hash the service published, else by a uri that names fixed bytes
        (a row whose read failed comes last: it has no bytes yet)."""
        if sha is not None:
            return self.photo_by_sha(sha)
        if uri is None:
            return None
        with self.session() as s:
            return s.scalar(
                select(Photo)
                .where(Photo.origin == origin, Photo.uri == uri)
                .order_by(Photo.sha256.is_(None), Photo.id)
                .limit(1)
            )

    def error_photo(self, source: str, uri: str) -> Photo | None:
        """The error row of this source's uri, if its last attempt failed."""
        with self.session() as s:
            return s.scalar(
                select(Photo)
                .where(Photo.source == source, Photo.uri == uri, Photo.status == "error")
                .limit(1)
            )

    @staticmethod
    def analysed_clause(pack: str) -> Any:
        """SQL: the photo has a verdict of ``pack`` (catalogs older than the analyses
        table only have the photo's last pack and the faces to tell)."""
        return (
            select(Analysis.photo_id)
            .where(Analysis.photo_id == Photo.id, Analysis.pack == pack)
            .exists()
            | select(Face.id).where(Face.photo_id == Photo.id, Face.pack == pack).exists()
            | ((Photo.pack == pack) & Photo.status.in_(["done", "no_faces"]))
        )

    def analysed_by(self, photo: Photo, pack: str) -> bool:
        """Whether ``pack`` has already analysed this photo."""
        with self.session() as s:
            q = select(Photo.id).where(Photo.id == photo.id, self.analysed_clause(pack))
            return s.scalar(q) is not None

    def photos_to_embed(self, pack: str) -> list[Photo]:
        """Photos ``pack`` has not analysed: registered ones, and those other packs did."""
        q = (
            select(Photo)
            .where(
                (Photo.status == "pending")
                | (Photo.status.in_(["done", "no_faces"]) & ~self.analysed_clause(pack))
            )
            .order_by(Photo.id)
        )
        with self.session() as s:
            return list(s.scalars(q))

    def photo_hashes(self, source: str) -> Iterator[tuple[int, str]]:
        """(id, perceptual hash) of every photo of ``source`` a copy may be recorded against:
        hashed, readable and not itself a copy."""
        q = select(Photo.id, Photo.phash).where(
            Photo.source == source,
            Photo.phash.is_not(None),
            Photo.duplicate_of.is_(None),
            Photo.status != "error",
        )
        with self.session() as s:
            yield from ((int(i), str(h)) for i, h in s.execute(q))

    def copies_of(self, ids: Sequence[int]) -> dict[int, list[str]]:
        """The uris of the recorded copies of each of these photos (ids without copies are
        left out), oldest first."""
        out: dict[int, list[str]] = {}
        with self.session() as s:
            for cond in self.id_in(Photo.duplicate_of, ids):
                rows = s.execute(
                    select(Photo.duplicate_of, Photo.uri).where(cond).order_by(Photo.id)
                )
                for original, uri in rows:
                    out.setdefault(int(original), []).append(str(uri))
        return out

    def photos_by_ids(self, ids: Sequence[int]) -> dict[int, Photo]:
        out: dict[int, Photo] = {}
        with self.session() as s:
            for cond in self.id_in(Photo.id, ids):
                out.update((p.id, p) for p in s.scalars(select(Photo).where(cond)))
        return out

    def find_photo(self, ref: str) -> Photo | None:
        """A photo by id, sha256 or uri."""
        with self.session() as s:
            if ref.isdigit():
                return s.get(Photo, int(ref))
            return s.scalar(
                select(Photo).where((Photo.sha256 == ref) | (Photo.uri == ref)).limit(1)
            )

    # ---- faces -------------------------------------------------------------
    def faces_by_ids(self, ids: Sequence[int]) -> dict[int, Face]:
        out: dict[int, Face] = {}
        with self.session() as s:
            for cond in self.id_in(Face.id, ids):
                out.update((f.id, f) for f in s.scalars(select(Face).where(cond)))
        return out

    def unindexed_faces(self, pack: str, limit: int = 5000) -> list[Face]:
        with self.session() as s:
            q = select(Face).where(Face.pack == pack, Face.indexed.is_(False)).limit(limit)
            return list(s.scalars(q))

    def mark_indexed(self, face_ids: Sequence[int], value: bool = True) -> None:
        with self.session.begin() as s:
            for cond in self.id_in(Face.id, face_ids):
                s.execute(update(Face).where(cond).values(indexed=value))

    def iter_faces(self, pack: str, batch: int = 5000) -> Iterator[list[Face]]:
        """All faces of a pack in id order, a batch at a time (keyset paging)."""
        last = 0
        while True:
            with self.session() as s:
                rows = list(
                    s.scalars(
                        select(Face)
                        .where(Face.pack == pack, Face.id > last)
                        .order_by(Face.id)
                        .limit(batch)
                    )
                )
            if not rows:
                return
            yield rows
            last = rows[-1].id

    def face_vectors(
        self, pack: str, face_ids: Sequence[int] | None = None, batch: int = 20000
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
        """Face ids, photo ids and embeddings of a pack (or of the given faces), in id order."""
        ids: list[int] = []
        photo_ids: list[int] = []
        vecs: list[NDArray[np.float32]] = []
        base = select(Face.id, Face.photo_id, Face.embedding).where(Face.pack == pack)

        def take(rows: Sequence[Any]) -> None:
            for fid, pid, emb in rows:
                ids.append(fid)
                photo_ids.append(pid)
                vecs.append(np.frombuffer(emb, dtype=np.float32))

        if face_ids is not None:
            # Ascending parts of the sorted ids: the result stays in id order, and a part
            # with none of this pack's faces does not end the walk.
            wanted = sorted({int(i) for i in face_ids})
            for part in chunked(wanted, batch):
                for cond in self.id_in(Face.id, part):
                    with self.session() as s:
                        take(s.execute(base.where(cond).order_by(Face.id)).all())
        else:
            last = 0
            while True:
                with self.session() as s:
                    rows = s.execute(
                        base.where(Face.id > last).order_by(Face.id).limit(batch)
                    ).all()
                if not rows:
                    break
                take(rows)
                last = rows[-1][0]
        dim = vecs[0].shape[0] if vecs else 0
        return (
            np.asarray(ids, dtype=np.int64),
            np.asarray(photo_ids, dtype=np.int64),
            np.stack(vecs) if vecs else np.zeros((0, dim), np.float32),
        )

    def count_searchable(
        self, pack: str, source: str | None = None, gate: QualitySettings | None = None
    ) -> int:
        """Faces of ``pack`` a search looks at: of ``source`` when given, passing ``gate``."""
        q = select(func.count(Face.id)).where(Face.pack == pack)
        if source:
            q = q.join(Photo, Photo.id == Face.photo_id).where(Photo.source == source)
        if gate is not None and gate.enabled:
            q = q.where(passes_gate(gate))
        with self.session() as s:
            return int(s.scalar(q) or 0)

    def gated_face_ids(self, pack: str, gate: QualitySettings) -> set[int]:
        """Ids of ``pack``'s faces that fail the quality gate."""
        if not gate.enabled:
            return set()
        q = select(Face.id).where(Face.pack == pack, ~passes_gate(gate))
        with self.session() as s:
            return {int(i) for i in s.scalars(q)}

    def sources_of(self, photo_ids: Sequence[int]) -> dict[int, str]:
        """The source of each photo id."""
        out: dict[int, str] = {}
        for part in chunked(sorted({int(i) for i in photo_ids}), 20000):
            for cond in self.id_in(Photo.id, part):
                with self.session() as s:
                    out.update(
                        (int(i), str(src))
                        for i, src in s.execute(select(Photo.id, Photo.source).where(cond))
                    )
        return out

    def face_table_extent(self) -> tuple[int, int]:
        """Faces in the catalog (every pack) and the highest face id (0 when none)."""
        # Two statements: a bare count reads SQLite's smallest index, and max(id) the
        # rowid's end; one statement with both scans the table.
        with self.engine.connect() as c:
            count = c.execute(select(func.count()).select_from(Face)).scalar()
            top = c.execute(select(func.max(Face.id))).scalar()
        return int(count or 0), int(top or 0)

    def faces_after(
        self, last_id: int, batch: int = 20000
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.str_], NDArray[np.float32]]:
        """Face ids, photo ids, packs and embeddings of every face (any pack) with an id
        above ``last_id``, in id order: a primary-key range, cheap however large the pack."""
        rows: list[Any] = []
        while True:
            with self.engine.connect() as c:  # plain rows: no ORM on a search's path
                part = c.execute(
                    select(Face.id, Face.photo_id, Face.pack, Face.embedding)
                    .where(Face.id > last_id)
                    .order_by(Face.id)
                    .limit(batch)
                ).all()
            rows.extend(part)
            if len(part) < batch:
                break
            last_id = part[-1][0]
        if not rows:
            return (
                np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.str_),
                np.zeros((0, 0), np.float32),
            )  # fmt: skip
        return (
            np.fromiter((r[0] for r in rows), np.int64, len(rows)),
            np.fromiter((r[1] for r in rows), np.int64, len(rows)),
            np.array([r[2] for r in rows], dtype=np.str_),
            np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows]),
        )

    def face_ids(self, pack: str) -> set[int]:
        with self.session() as s:
            return set(s.scalars(select(Face.id).where(Face.pack == pack)))

    def count_faces(self, pack: str | None = None) -> int:
        with self.session() as s:
            q = select(func.count(Face.id))
            if pack is not None:
                q = q.where(Face.pack == pack)
            return int(s.scalar(q) or 0)

    def has_people(self, pack: str) -> bool:
        """Whether clustering (or a user) has made people for this pack yet."""
        with self.session() as s:
            return s.scalar(select(Person.id).where(Person.pack == pack).limit(1)) is not None

    # ---- runs --------------------------------------------------------------
    def start_run(self, pack: str, sources: list[str], kind: str = "ingest") -> int:
        """Record a run of this process (its host and pid), after marking the runs of
        processes of this host that died without ending theirs `interrupted`."""
        self.reap_runs()
        with self.session.begin() as s:
            run = Run(
                kind=kind, pack=pack, sources=sources, host=socket.gethostname(), pid=os.getpid()
            )
            s.add(run)
            s.flush()
            return run.id

    def reap_runs(self) -> int:
        """Mark ``interrupted`` the ``running`` runs whose process (on this host) is gone;
        returns how many. Runs of other hosts are left to those hosts."""
        host = socket.gethostname()
        with self.session() as s:
            running = s.execute(
                select(Run.id, Run.pid).where(Run.status == "running", Run.host == host)
            ).all()
        dead = [run_id for run_id, pid in running if pid is not None and not pid_alive(pid)]
        if dead:
            with self.session.begin() as s:
                s.execute(
                    update(Run)
                    .where(Run.id.in_(dead), Run.status == "running")
                    .values(status="interrupted", finished_at=utcnow())
                )
        return len(dead)

    def finish_run(self, run_id: int, counts: dict[str, Any], status: str = "done") -> None:
        with self.session.begin() as s:
            run = s.get(Run, run_id)
            if run is not None:
                run.finished_at, run.counts, run.status = utcnow(), counts, status
