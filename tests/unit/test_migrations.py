"""The catalog's Alembic migrations on SQLite and PostgreSQL.

Catalogs at revision 0001 and catalogs made before migrations (``create_all``
of the models as they were, copied below) get rows, are opened, and must come
out at the newest revision with every row, the wider ``photos.source`` and
the gallery's indexes; the models must equal the migrated schema; a catalog
newer than the code is refused; processes opening one new catalog at once
upgrade it once.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
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
    inspect,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tests.conftest import CATALOG_BACKENDS as BACKENDS
from workbench.errors import StoreError
from workbench.store import catalog as cat_mod
from workbench.store import models, schema
from workbench.store.catalog import Catalog
from workbench.store.models import Face, Photo
from workbench.store.schema import SCHEMA_HEAD, SCHEMA_REVISIONS, alembic_config, catalog_revision

REPO = Path(__file__).resolve().parents[2]
GALLERY_INDEXES = {"ix_photos_status_id", "ix_photos_source_id", "ix_photos_origin_id"}


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    return str(request.getfixturevalue("fresh_pg_url"))


# ---- the models as they were before migrations (commit 7acd940), for create_all ------
def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class OldBase(DeclarativeBase):
    pass


class OldPack(OldBase):
    __tablename__ = "packs"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    embedding_dim: Mapped[int] = mapped_column(Integer)
    collection: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OldRun(OldBase):
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


class OldPhoto(OldBase):
    __tablename__ = "photos"
    __table_args__ = (
        Index("ix_photos_source_status", "source", "status"),
        Index("ix_photos_uri", "uri"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(40))
    uri: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    pack: Mapped[str | None] = mapped_column(String(200))
    n_faces: Mapped[int] = mapped_column(Integer, default=0)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OldAnalysis(OldBase):
    __tablename__ = "analyses"
    photo_id: Mapped[int] = mapped_column(
        ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True
    )
    pack: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    n_faces: Mapped[int] = mapped_column(Integer, default=0)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    analysed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OldFace(OldBase):
    __tablename__ = "faces"
    __table_args__ = (
        Index("ix_faces_pack_indexed", "pack", "indexed"),
        {"sqlite_autoincrement": True},
    )
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


class OldPerson(OldBase):
    __tablename__ = "people"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pack: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str | None] = mapped_column(String(300))
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OldFacePerson(OldBase):
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


class OldRejection(OldBase):
    __tablename__ = "face_rejections"
    face_id: Mapped[int] = mapped_column(
        ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# ---- helpers ---------------------------------------------------------------------------
def _fill(url: str) -> None:
    """Rows in every table through raw SQL (any schema revision): 3 photos (the third then
    deleted, so the id high-water mark is 3), 2 faces, a person, a verdict, a rejection."""
    engine = create_engine(url)
    now = utcnow()
    vec = np.arange(4, dtype=np.float32).tobytes()
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO runs (kind, pack, sources, started_at, status, counts) "
                "VALUES ('ingest', 'p', '[\"s\"]', :t, 'done', '{}')"
            ),
            {"t": now},
        )
        for i in (1, 2, 3):
            c.execute(
                text(
                    "INSERT INTO photos (sha256, source, origin, uri, status, pack, n_faces, "
                    "run_id, metadata, created_at, updated_at) VALUES (:sha, :src, 'local', "
                    ":uri, 'done', 'p', 1, 1, '{\"date\": \"2024-05-06\"}', :t, :t)"
                ),
                {"sha": f"{i:064x}", "src": "s" * 200 if i == 1 else "s", "uri": f"/{i}", "t": now},
            )
        for pid in (1, 2):
            c.execute(
                text(
                    "INSERT INTO faces (photo_id, pack, x1, y1, x2, y2, landmarks, score, "
                    "embedding, indexed, created_at) VALUES (:p, 'p', 1, 2, 3, 4, '[1.5]', 0.9, "
                    ":e, :ix, :t)"
                ),
                {"p": pid, "e": vec, "ix": pid == 1, "t": now},
            )
        c.execute(
            text(
                "INSERT INTO people (pack, name, hidden, confirmed, created_at, updated_at) "
                "VALUES ('p', 'Ann', :f, :tr, :t, :t)"
            ),
            {"f": False, "tr": True, "t": now},
        )
        c.execute(
            text(
                "INSERT INTO face_people (face_id, pack, cluster, person_id, confirmed) "
                "VALUES (1, 'p', 0, 1, :tr)"
            ),
            {"tr": True},
        )
        c.execute(
            text("INSERT INTO face_rejections (face_id, person_id, created_at) VALUES (2, 1, :t)"),
            {"t": now},
        )
        if inspect(c).has_table("analyses"):
            c.execute(
                text(
                    "INSERT INTO analyses (photo_id, pack, n_faces, analysed_at) "
                    "VALUES (1, 'p', 1, :t)"
                ),
                {"t": now},
            )
        c.execute(text("DELETE FROM photos WHERE id = 3"))
    engine.dispose()


def _check_upgraded(url: str) -> None:
    """Every row is there, the schema is the newest, ids go on past the deleted one."""
    cat = Catalog(url)
    try:
        assert cat.revision() == SCHEMA_HEAD
        with cat.engine.connect() as c:
            insp = inspect(c)
            source = next(col for col in insp.get_columns("photos") if col["name"] == "source")
            assert source["type"].length == 512
            assert {ix["name"] for ix in insp.get_indexes("photos")} >= GALLERY_INDEXES
            assert {"ix_photos_source_status", "ix_photos_uri"} <= {
                ix["name"] for ix in insp.get_indexes("photos")
            }
            counts = {
                t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("runs", "photos", "faces", "people", "face_people", "face_rejections")
            }
        assert counts == {
            "runs": 1,
            "photos": 2,
            "faces": 2,
            "people": 1,
            "face_people": 1,
            "face_rejections": 1,
        }
        p1 = cat.find_photo("1")
        assert p1 is not None and p1.source == "s" * 200 and p1.meta == {"date": "2024-05-06"}
        assert cat.photo_by_sha(f"{2:064x}") is not None
        ids, pids, vecs = cat.face_vectors("p")
        assert ids.tolist() == [1, 2] and pids.tolist() == [1, 2]
        assert vecs.tolist() == [[0, 1, 2, 3]] * 2
        assert [f.id for f in cat.unindexed_faces("p")] == [2]
        # The wider column takes a 512-character source; the deleted id 3 is not reused.
        with cat.session.begin() as s:
            s.add(
                Photo(sha256="f" * 64, source="x" * 512, origin="local", uri="/4", status="pending")
            )
        new = cat.photo_by_sha("f" * 64)
        assert new is not None and new.id == 4 and new.source == "x" * 512
        # Foreign keys still cascade after the rebuild.
        with cat.session.begin() as s:
            s.delete(s.get(Photo, 1))
        assert cat.count_faces() == 1
    finally:
        cat.close()


# ---- tests -----------------------------------------------------------------------------
pytestmark = pytest.mark.unit


def test_revisions_match_the_scripts() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    walked = [r.revision for r in script.walk_revisions()][::-1]
    assert tuple(walked) == SCHEMA_REVISIONS
    assert script.get_current_head() == SCHEMA_HEAD


def test_migrations_ship_with_the_package() -> None:
    data = (REPO / "pyproject.toml").read_text()
    for pattern in (
        "store/migrations/*.py",
        "store/migrations/script.py.mako",
        "store/migrations/versions/*.py",
    ):
        assert pattern in data
    assert not (schema.MIGRATIONS_DIR / "versions" / "__init__.py").exists()


def test_head_schema_equals_the_models(db_url: str) -> None:
    """Alembic's autogenerate finds nothing to do between head and the ORM models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    Catalog(db_url).close()
    engine = create_engine(db_url)
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), models.Base.metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_from_0001(db_url: str) -> None:
    from alembic import command

    engine = create_engine(db_url)
    with engine.begin() as c:
        command.upgrade(alembic_config(c), "0001")
    engine.dispose()
    _fill(db_url)
    cat = Catalog(db_url)
    assert cat.upgraded == ("0001", SCHEMA_HEAD)
    cat.close()
    _check_upgraded(db_url)


def test_upgrade_a_catalog_made_before_migrations(db_url: str) -> None:
    engine = create_engine(db_url)
    OldBase.metadata.create_all(engine)
    engine.dispose()
    _fill(db_url)
    _check_upgraded(db_url)


def test_upgrade_a_catalog_older_than_the_analyses_table(db_url: str) -> None:
    engine = create_engine(db_url)
    OldBase.metadata.create_all(
        engine, tables=[t for t in OldBase.metadata.sorted_tables if t.name != "analyses"]
    )
    engine.dispose()
    _fill(db_url)
    cat = Catalog(db_url)
    try:
        assert cat.upgraded == (None, SCHEMA_HEAD)
        with cat.engine.connect() as c:
            assert inspect(c).has_table("analyses")
        assert cat.count_faces() == 2
    finally:
        cat.close()


def test_a_catalog_newer_than_the_code_is_refused(db_url: str) -> None:
    Catalog(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '0999_future'"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"revision '0999_future'.*upgrade the workbench"):
        Catalog(db_url)


def test_opening_at_head_is_one_small_query(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    Catalog(url).close()
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        cat = Catalog(url)
        times.append(time.perf_counter() - t0)
        assert cat.upgraded is None
        cat.close()
    # Measured here: ~2 ms (engine creation included); migrations are never loaded.
    assert sorted(times)[5] < 0.05, times


def test_in_memory_sqlite() -> None:
    cat = Catalog("sqlite://")
    try:
        assert cat.revision() == SCHEMA_HEAD
        with cat.session.begin() as s:
            s.add(Photo(sha256="a" * 64, source="s", origin="local", uri="/a", status="pending"))
        assert cat.photo_by_sha("a" * 64) is not None
    finally:
        cat.close()


def test_chunked_in_lists(tmp_path: Path) -> None:
    """Lookups by many ids go in chunks (SQLite and PostgreSQL limit bind parameters)."""
    cat = Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}")
    try:
        with cat.session.begin() as s:
            s.add(Photo(sha256="a" * 64, source="s", origin="local", uri="/a", status="done"))
            s.flush()
            s.add(
                Face(
                    photo_id=1,
                    pack="p",
                    x1=0,
                    y1=0,
                    x2=1,
                    y2=1,
                    landmarks=[],
                    score=1.0,
                    embedding=b"\0" * 8,
                )
            )
        many = list(range(1, 70_001))
        assert list(cat.photos_by_ids(many)) == [1]
        assert list(cat.faces_by_ids(many)) == [1]
        cat.mark_indexed(many)
        assert cat.unindexed_faces("p") == []
        assert [len(c) for c in cat_mod.chunked(range(12_001))] == [5000, 5000, 2001]
    finally:
        cat.close()


def test_processes_opening_a_new_catalog_at_once(db_url: str, tmp_path: Path) -> None:
    """Two processes open the same empty catalog at the same instant (after their imports):
    one upgrades, the other waits on the lock and finds it done; nobody fails, one version
    row. (Measured with three: the same.)"""
    code = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from workbench.store.catalog import Catalog
        import alembic.command  # loaded before the start line, like the catalog
        url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
        ready.touch()
        while not go.exists():
            time.sleep(0.002)
        cat = Catalog(url)
        print("upgraded" if cat.upgraded else "at-head", cat.revision())
        cat.close()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, db_url, str(r), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for r in ready
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.01)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert out.split()[1] == SCHEMA_HEAD
    assert sum(out.startswith("upgraded") for out, _ in outs) == 1
    engine = create_engine(db_url)
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
        assert catalog_revision(c) == SCHEMA_HEAD
    engine.dispose()
    cat = Catalog(db_url)
    assert cat.upgraded is None
    cat.close()


def test_session_time_zone_does_not_move_timestamps(db_url: str) -> None:
    """Timestamps come back as the same instant whatever the server's time zone."""
    cat = Catalog(db_url)
    try:
        when = dt.datetime(2024, 1, 2, 23, 30, tzinfo=dt.timezone.utc)
        with cat.session.begin() as s:
            s.add(
                Photo(
                    sha256="a" * 64,
                    source="s",
                    origin="local",
                    uri="/a",
                    status="done",
                    created_at=when,
                )
            )
        with Session(cat.engine) as s:
            if cat.engine.dialect.name == "postgresql":
                s.execute(text("SET TIME ZONE 'Asia/Tokyo'"))
            got = s.scalar(select(Photo.created_at))
        assert got is not None
        got = got if got.tzinfo else got.replace(tzinfo=dt.timezone.utc)
        assert got == when
    finally:
        cat.close()
