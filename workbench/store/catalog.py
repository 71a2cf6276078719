"""The catalog: photos, faces (with their embeddings), people, packs and runs (SQLAlchemy 2).

The catalog is the source of truth. Embeddings are kept here so the vector
index can be rebuilt without re-running models.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

PhotoStatus = Literal["pending", "done", "no_faces", "error"]
"""``pending``: registered (read, hashed, decoded) but not yet analysed by any pack."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class Pack(Base):
    """A model pack that has written faces: its vector size and metric."""

    __tablename__ = "packs"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    embedding_dim: Mapped[int] = mapped_column(Integer)
    collection: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), default="ingest")
    pack: Mapped[str] = mapped_column(String(200))
    sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="running")
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Photo(Base):
    __tablename__ = "photos"
    __table_args__ = (
        Index("ix_photos_source_status", "source", "status"),
        Index("ix_photos_uri", "uri"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL when the bytes could not be read at all (the uri identifies it then).
    sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(40))
    uri: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[PhotoStatus] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    pack: Mapped[str | None] = mapped_column(String(200))
    n_faces: Mapped[int] = mapped_column(Integer, default=0)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    faces: Mapped[list[Face]] = relationship(
        back_populates="photo", cascade="all, delete-orphan", passive_deletes=True
    )


class Analysis(Base):
    """That a pack analysed a photo, and its verdict (a photo can be analysed by many packs)."""

    __tablename__ = "analyses"
    photo_id: Mapped[int] = mapped_column(
        ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True
    )
    pack: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    n_faces: Mapped[int] = mapped_column(Integer, default=0)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    analysed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Face(Base):
    __tablename__ = "faces"
    __table_args__ = (
        Index("ix_faces_pack_indexed", "pack", "indexed"),
        {"sqlite_autoincrement": True},
    )
    # sqlite_autoincrement: ids are never reused, so a vector left behind by a
    # crash can never be mistaken for a later face.
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    pack: Mapped[str] = mapped_column(String(200))
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    landmarks: Mapped[list[float]] = mapped_column(JSON)
    score: Mapped[float] = mapped_column(Float)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    indexed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    photo: Mapped[Photo] = relationship(back_populates="faces")

    @property
    def box(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]

    def vector(self) -> NDArray[np.float32]:
        return np.frombuffer(self.embedding, dtype=np.float32)


class Person(Base):
    """A person: faces of one pack grouped by clustering and corrected by users.

    ``confirmed`` means a user acted on it (named, merged, split, hidden):
    its faces are then kept by every later re-cluster.
    """

    __tablename__ = "people"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pack: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str | None] = mapped_column(String(300))
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class FacePerson(Base):
    """A face's cluster in the last clustering run and the person it belongs to.

    ``cluster`` is ``-1`` for noise; ``person_id`` is NULL for a face in no
    person. ``confirmed``: a user put the face there, so clustering never moves it.
    """

    __tablename__ = "face_people"
    face_id: Mapped[int] = mapped_column(
        ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True
    )
    pack: Mapped[str] = mapped_column(String(200), index=True)
    cluster: Mapped[int] = mapped_column(Integer, default=-1)
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), index=True
    )
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))


class Rejection(Base):
    """ "Not this person": the face is never assigned to the person again."""

    __tablename__ = "face_rejections"
    face_id: Mapped[int] = mapped_column(
        ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers (dashboards) do not block the ingest
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Catalog:
    """Photos, faces, packs and runs in any SQLAlchemy database (SQLite by default)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self.session: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    # ---- packs -------------------------------------------------------------
    def register_pack(self, name: str, embedding_dim: int, collection: str) -> None:
        with self.session.begin() as s:
            existing = s.get(Pack, name)
            if existing is None:
                s.add(Pack(name=name, embedding_dim=embedding_dim, collection=collection))
            elif existing.embedding_dim != embedding_dim:
                from workbench.errors import StoreError

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

    def photos_by_ids(self, ids: Sequence[int]) -> dict[int, Photo]:
        with self.session() as s:
            return {p.id: p for p in s.scalars(select(Photo).where(Photo.id.in_(list(ids))))}

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
        with self.session() as s:
            return {f.id: f for f in s.scalars(select(Face).where(Face.id.in_(list(ids))))}

    def unindexed_faces(self, pack: str, limit: int = 5000) -> list[Face]:
        with self.session() as s:
            q = select(Face).where(Face.pack == pack, Face.indexed.is_(False)).limit(limit)
            return list(s.scalars(q))

    def mark_indexed(self, face_ids: Sequence[int], value: bool = True) -> None:
        with self.session.begin() as s:
            s.execute(update(Face).where(Face.id.in_(list(face_ids))).values(indexed=value))

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
        wanted = None if face_ids is None else sorted(set(int(i) for i in face_ids))
        last = 0
        while True:
            q = select(Face.id, Face.photo_id, Face.embedding).where(Face.pack == pack)
            if wanted is not None:
                chunk = [i for i in wanted if i > last][:batch]
                if not chunk:
                    break
                q = q.where(Face.id.in_(chunk))
            else:
                q = q.where(Face.id > last)
            with self.session() as s:
                rows = s.execute(q.order_by(Face.id).limit(batch)).all()
            if not rows:
                break
            for fid, pid, emb in rows:
                ids.append(fid)
                photo_ids.append(pid)
                vecs.append(np.frombuffer(emb, dtype=np.float32))
            last = rows[-1][0]
        dim = vecs[0].shape[0] if vecs else 0
        return (
            np.asarray(ids, dtype=np.int64),
            np.asarray(photo_ids, dtype=np.int64),
            np.stack(vecs) if vecs else np.zeros((0, dim), np.float32),
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
        with self.session.begin() as s:
            run = Run(kind=kind, pack=pack, sources=sources)
            s.add(run)
            s.flush()
            return run.id

    def finish_run(self, run_id: int, counts: dict[str, Any], status: str = "done") -> None:
        with self.session.begin() as s:
            run = s.get(Run, run_id)
            if run is not None:
                run.finished_at, run.counts, run.status = utcnow(), counts, status
