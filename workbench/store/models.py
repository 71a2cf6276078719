"""The catalog's tables (SQLAlchemy 2 ORM): photos, faces with their embeddings, the packs
that analysed them, people, and the runs that wrote them.

Embeddings are kept here so the vector index can be rebuilt without re-running
models: the catalog is the source of truth. The schema is versioned by the
migrations in ``migrations/`` (`workbench.store.schema`).
"""

from __future__ import annotations

import datetime as dt
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
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from workbench.sources.base import SOURCE_LENGTH

PhotoStatus = Literal["pending", "done", "no_faces", "error", "duplicate"]
"""``pending``: registered (read, hashed, decoded) but not yet analysed by any pack;
``duplicate``: a resized or re-encoded copy of the photo ``duplicate_of`` (not analysed:
its faces are that photo's)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime) -> dt.datetime:
    """A catalog timestamp as an aware UTC datetime. SQLite hands back naive datetimes
    (the catalog writes them in UTC); PostgreSQL aware ones in the session's time zone."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


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
    # The process running it: a run whose process is gone is ``interrupted``, not ``running``.
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)


class Photo(Base):
    __tablename__ = "photos"
    __table_args__ = (
        Index("ix_photos_source_status", "source", "status"),
        Index("ix_photos_uri", "uri"),
        # The gallery's pages: a filter, newest first (WHERE x = ? ORDER BY id DESC LIMIT n).
        Index("ix_photos_status_id", "status", "id"),
        Index("ix_photos_source_id", "source", "id"),
        Index("ix_photos_origin_id", "origin", "id"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL when the bytes could not be read at all (the uri identifies it then).
    sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH))
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
    # A perceptual hash of the pixels (256-bit DCT hash, hex): copies that were resized
    # or re-encoded keep it within a few bits (`workbench.imaging.duplicates`).
    phash: Mapped[str | None] = mapped_column(String(64))
    # Deleting the photo a duplicate points at hands the duplicate back to the
    # analysis (`FaceStore.delete_photo`), so there is no ON DELETE rule.
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("photos.id"), index=True)
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
    # Quality (`workbench.faces.quality`); NULL for faces stored before it was measured
    # until `workbench quality` fills them in.
    size: Mapped[float | None] = mapped_column(Float)
    sharpness: Mapped[float | None] = mapped_column(Float)
    yaw: Mapped[float | None] = mapped_column(Float)
    pitch: Mapped[float | None] = mapped_column(Float)
    roll: Mapped[float | None] = mapped_column(Float)
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


class ApiKey(Base):
    """A key of the HTTP API (`workbench api-key create`): only its SHA-256 is kept.

    The key is shown once, when made; ``prefix`` (its first characters) is what
    lists show to tell keys apart. A revoked key stays, with ``revoked_at``, so a
    log line naming it can still be traced.
    """

    __tablename__ = "api_keys"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
