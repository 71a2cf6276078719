"""The catalog: photos, faces (with their embeddings), people, packs and runs (SQLAlchemy 2).

The catalog is the source of truth. Embeddings are kept here so the vector
index can be rebuilt without re-running models.

Its schema is versioned with Alembic (``workbench/store/migrations``): opening a
`Catalog` brings any catalog to the newest revision (a new database, one made
before migrations, one a revision behind), under a lock so several processes
opening it at once (workers on several machines on one PostgreSQL) upgrade it
once. At the newest revision opening costs one small query. A catalog newer
than the code is refused with the revision it is at. ``workbench db upgrade`` /
``workbench db current`` do the same explicitly.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
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
    inspect,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

SCHEMA_REVISIONS: tuple[str, ...] = ("0001", "0002")
"""The catalog's Alembic revisions, oldest first (tests check them against the scripts)."""
SCHEMA_HEAD = SCHEMA_REVISIONS[-1]
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 0x57_42_43_41_54_4C_47  # pg_advisory_xact_lock key: "WBCATLG"
IN_CHUNK = 5000
"""Ids per ``IN (...)`` list on SQLite (at most 32766 bind parameters there)."""
PG_ARRAY_CHUNK = 100_000
"""Ids per ``= ANY(array)`` on PostgreSQL: one bind parameter (an IN list of thousands of
parameters is both limited to 65535 and slow to send through psycopg)."""
SOURCE_LENGTH = 512
"""``photos.source``: as long as the vector index's source field."""

PhotoStatus = Literal["pending", "done", "no_faces", "error"]
"""``pending``: registered (read, hashed, decoded) but not yet analysed by any pack."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, foreign_keys: bool = True) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL may wait for a lock
    cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    # Readers (dashboards) do not block the ingest. Switching a new file to WAL needs it
    # to itself and SQLite answers "locked" at once, without the busy timeout, while
    # another process holds it (two workers opening a new catalog): try again.
    deadline = time.monotonic() + 30
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _postgres_utc(dbapi_conn: Any, _record: Any) -> None:
    """Timestamps come back in UTC whatever the server's or the database's TimeZone (as
    SQLite's do): exports and dates must not shift with the server's configuration."""
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True
    cur = dbapi_conn.cursor()
    cur.execute("SET TIME ZONE 'UTC'")
    cur.close()
    dbapi_conn.autocommit = autocommit


def _sqlite_memory(url: str) -> bool:
    u = make_url(url)
    return u.get_backend_name() == "sqlite" and u.database in (None, "", ":memory:")


def redacted(url: str) -> str:
    """The URL without its password (for messages and ``workbench db current``)."""
    from workbench.redaction import redact_url

    return redact_url(url)


def catalog_revision(conn: Connection) -> str | None:
    """The schema revision the database is at: None before migrations (or when empty)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    revs = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if len(revs) > 1:
        from workbench.errors import StoreError

        raise StoreError(
            f"the catalog's alembic_version table names several revisions ({', '.join(revs)}); "
            "the workbench's migrations are one line: repair the table by hand"
        )
    return revs[0] if revs else None


def _quick_revision(engine: Engine) -> str | None:
    """The revision in one query (opening a catalog at the newest revision costs only
    this); None when there is no version table (then `upgrade_catalog` looks closely)."""
    with engine.connect() as conn:
        try:
            revs = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        except (OperationalError, ProgrammingError):  # no such table (or worse: looked at next)
            conn.rollback()
            return None
    return revs[0] if len(revs) == 1 else None


def _check_known(rev: str | None, url: str) -> None:
    if rev is not None and rev not in SCHEMA_REVISIONS:
        from workbench.errors import StoreError

        raise StoreError(
            f"the catalog at {redacted(url)} is at schema revision {rev!r}, which this "
            f"workbench does not know (it knows {', '.join(SCHEMA_REVISIONS)}; newest "
            f"{SCHEMA_HEAD}): a newer workbench upgraded it; upgrade the workbench "
            "(pip install -U face-workbench) to open it"
        )


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Any:
    """An Alembic `Config` for the catalog's migrations (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _migration_engine(url: str) -> Engine:
    """SQLite: a connection of its own for the upgrade. Foreign keys off (rebuilding a
    table in batch mode drops it, which would otherwise cascade-delete its children),
    and one explicit ``BEGIN IMMEDIATE`` transaction: the upgrade is atomic and holds
    the write lock, so a second process opening the file waits, then finds it done."""
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)

    def connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver's own BEGINs off: ours below
        _sqlite_pragmas(dbapi_conn, record, foreign_keys=False)

    event.listen(engine, "connect", connect)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


def upgrade_catalog(
    url: str, engine: Engine | None = None, wait_s: float = 600.0
) -> tuple[str | None, str]:
    """Bring the catalog at ``url`` to the newest revision; returns (before, after).

    Serialised between processes: on PostgreSQL by a transaction-level advisory
    lock, on SQLite by the write lock of ``BEGIN IMMEDIATE``; the revision is
    read again under the lock, so the second process finds the work done. The
    whole upgrade is one transaction on both (DDL is transactional there).
    A database with the tables but no ``alembic_version`` (made before
    migrations) goes through revision 0001, which creates only what is missing.
    """
    from alembic import command

    if make_url(url).get_backend_name() == "sqlite" and not _sqlite_memory(url):
        eng = _migration_engine(url)
    else:  # a server database, or an in-memory SQLite only the given engine can reach
        eng = engine or create_engine(url)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                with eng.connect() as conn:
                    if eng.dialect.name == "postgresql":
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                        )
                    else:
                        conn.begin()
                    before = catalog_revision(conn)
                    _check_known(before, url)
                    if before != SCHEMA_HEAD:
                        command.upgrade(alembic_config(conn), "head")
                    conn.commit()
                    return before, SCHEMA_HEAD
            except OperationalError as exc:
                # SQLite: another process held the write lock past busy_timeout (a long
                # rebuild of a big catalog): wait on, up to wait_s.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
    finally:
        if eng is not engine:
            eng.dispose()


class Catalog:
    """Photos, faces, packs and runs in any SQLAlchemy database (SQLite by default).

    Opening brings the schema to the newest revision (module notes); ``upgraded``
    is then ``(before, after)``, or None when it was already there.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///") and not _sqlite_memory(url):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        sqlite = make_url(url).get_backend_name() == "sqlite"
        # Server databases: a connection dropped while a notebook sat idle is replaced.
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=not sqlite)
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        elif self.engine.dialect.name == "postgresql":
            event.listen(self.engine, "connect", _postgres_utc)
        self.upgraded: tuple[str | None, str] | None = None
        try:
            rev = _quick_revision(self.engine)
            _check_known(rev, url)
            if rev != SCHEMA_HEAD:
                before, after = upgrade_catalog(url, self.engine)
                # None too when another process upgraded it while this one waited.
                self.upgraded = (before, after) if before != after else None
        except BaseException:
            self.engine.dispose()
            raise
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
