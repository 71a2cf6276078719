"""The catalog's operations behave the same on SQLite and PostgreSQL.

Each test runs on a fresh SQLite file and on a fresh database of the session's
PostgreSQL 15 (``server`` mark): lookups, the "already analysed" rules, keyset
paging, embeddings as bytes, JSON, booleans, time zones, cascades, ids that
are never reused, long ``IN`` lists, exact (case-sensitive) matching, two
writers racing on one photo or one pack, and the gallery's queries using its indexes.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, event, insert, select, text
from sqlalchemy.exc import IntegrityError

from tests.conftest import CATALOG_BACKENDS as BACKENDS
from workbench.errors import StoreError
from workbench.store.catalog import Catalog
from workbench.store.models import Analysis, Face, FacePerson, Person, Photo, Rejection, Run

pytestmark = pytest.mark.integration


@pytest.fixture(params=BACKENDS)
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    else:
        url = str(request.getfixturevalue("fresh_pg_url"))
    cat = Catalog(url)
    yield cat
    cat.close()


def sha(i: int) -> str:
    return f"{i:064x}"


def add_photo(cat: Catalog, i: int, **kw: Any) -> int:
    values: dict[str, Any] = dict(
        sha256=sha(i), source="s", origin="local", uri=f"/p/{i}.jpg", status="pending"
    )
    values.update(kw)
    with cat.session.begin() as s:
        p = Photo(**values)
        s.add(p)
        s.flush()
        return p.id


def add_face(cat: Catalog, photo_id: int, pack: str, vec: np.ndarray, **kw: Any) -> int:
    with cat.session.begin() as s:
        f = Face(
            photo_id=photo_id,
            pack=pack,
            x1=1.5,
            y1=2.5,
            x2=30.25,
            y2=40.75,
            landmarks=[1.0, 2.0, 3.5],
            score=0.99,
            embedding=np.asarray(vec, np.float32).tobytes(),
            **kw,
        )
        s.add(f)
        s.flush()
        return f.id


# ---- lookups and the pipeline's rules --------------------------------------------------
def test_a_pack_registered_by_two_processes_at_once(catalog: Catalog) -> None:
    """Two workers starting together both find the pack missing; the slower insert loses
    the race (a unique violation) and must read the winner's row, not crash the worker."""
    other = Catalog(catalog.url)
    raced: list[bool] = []

    def the_other_worker_wins(*_args: Any) -> None:
        if not raced:
            raced.append(True)
            other.register_pack("p", 128, "faces_p")

    event.listen(catalog.session, "before_flush", the_other_worker_wins)
    try:
        catalog.register_pack("p", 128, "faces_p")
    finally:
        event.remove(catalog.session, "before_flush", the_other_worker_wins)
        other.close()
    assert raced == [True]
    assert [(p.name, p.embedding_dim, p.collection) for p in catalog.packs()] == [
        ("p", 128, "faces_p")
    ]
    with pytest.raises(StoreError, match="wrote 128-d vectors before"):
        catalog.register_pack("p", 512, "faces_p")


def test_packs_runs_and_lookups(catalog: Catalog) -> None:
    catalog.register_pack("p", 4, "faces_p")
    catalog.register_pack("p", 4, "faces_p")  # again: nothing changes
    assert [(p.name, p.embedding_dim) for p in catalog.packs()] == [("p", 4)]
    run = catalog.start_run("p", ["s", "другой"])
    catalog.finish_run(run, {"photos": 2, "nested": {"a": [1, None]}})
    with catalog.session() as s:
        r = s.get(Run, run)
        assert r is not None and r.sources == ["s", "другой"] and r.status == "done"
        assert r.counts == {"photos": 2, "nested": {"a": [1, None]}}
        assert r.finished_at is not None and r.finished_at >= r.started_at
    meta = {"date": "2024-05-06", "album": "Лето ☀", "n": 3, "ok": True, "x": None}
    pid = add_photo(catalog, 1, meta=meta, origin="vk", uri="https://vk/1", run_id=run)
    p = catalog.photo_by_sha(sha(1))
    assert p is not None and p.id == pid and p.meta == meta
    assert catalog.known_photo("vk", None, sha(1)).id == pid  # type: ignore[union-attr]
    assert catalog.known_photo("vk", "https://vk/1", None).id == pid  # type: ignore[union-attr]
    assert catalog.known_photo("local", "https://vk/1", None) is None
    assert catalog.find_photo(str(pid)).id == pid  # type: ignore[union-attr]
    assert catalog.find_photo(sha(1)).id == pid  # type: ignore[union-attr]
    assert catalog.find_photo("https://vk/1").id == pid  # type: ignore[union-attr]


def test_known_photo_prefers_the_row_with_bytes(catalog: Catalog) -> None:
    """An error row (no sha256, NULL) comes after the row that has the bytes, on both
    databases (they sort NULLs differently; the query must not depend on it)."""
    err = add_photo(catalog, 0, sha256=None, status="error", error="read failed", uri="/u")
    good = add_photo(catalog, 2, uri="/u", status="done")
    assert err < good
    assert catalog.known_photo("local", "/u", None).id == good  # type: ignore[union-attr]
    assert catalog.error_photo("s", "/u").id == err  # type: ignore[union-attr]


def test_matching_is_exact_and_case_sensitive(catalog: Catalog) -> None:
    upper = add_photo(catalog, 0xABC, uri="/Photos/A.jpg")
    lower = add_photo(catalog, 2, uri="/photos/a.jpg")
    assert catalog.find_photo("/Photos/A.jpg").id == upper  # type: ignore[union-attr]
    assert catalog.find_photo("/photos/a.jpg").id == lower  # type: ignore[union-attr]
    assert catalog.find_photo("/PHOTOS/A.JPG") is None
    assert catalog.photo_by_sha(sha(0xABC)) is not None
    assert catalog.photo_by_sha(sha(0xABC).upper()) is None


def test_analysed_by_and_photos_to_embed(catalog: Catalog) -> None:
    v = np.ones(4, np.float32)
    pending = add_photo(catalog, 1)
    by_a = add_photo(catalog, 2, status="done", pack="a", n_faces=1)
    add_face(catalog, by_a, "a", v)
    none_a = add_photo(catalog, 3, status="no_faces", pack="a")
    with catalog.session.begin() as s:
        s.add(Analysis(photo_id=none_a, pack="a", n_faces=0))
    legacy = add_photo(catalog, 4, status="no_faces", pack="a")  # no verdict row, last pack a
    add_photo(catalog, 5, status="error", error="x")
    photos = catalog.photos_by_ids([pending, by_a, none_a, legacy])
    assert not catalog.analysed_by(photos[pending], "a")
    assert all(catalog.analysed_by(photos[i], "a") for i in (by_a, none_a, legacy))
    assert not any(catalog.analysed_by(photos[i], "b") for i in (by_a, none_a, legacy))
    assert [p.id for p in catalog.photos_to_embed("a")] == [pending]
    assert [p.id for p in catalog.photos_to_embed("b")] == [pending, by_a, none_a, legacy]


def test_faces_paging_vectors_and_flags(catalog: Catalog) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((7, 8)).astype(np.float32)
    vecs[0, 0] = np.float32(np.nan)  # any bit pattern survives: embeddings are raw bytes
    vecs[1, :] = 0.0
    pid = add_photo(catalog, 1, status="done", pack="a")
    ids = [add_face(catalog, pid, "a", v) for v in vecs]
    other = add_face(catalog, pid, "b", vecs[2])
    assert [[f.id for f in b] for b in catalog.iter_faces("a", batch=3)] == [
        ids[:3],
        ids[3:6],
        ids[6:],
    ]
    fids, pids, got = catalog.face_vectors("a", batch=2)
    assert fids.tolist() == ids and pids.tolist() == [pid] * 7
    assert got.tobytes() == vecs.tobytes()
    fids, _, got = catalog.face_vectors("a", face_ids=[ids[5], ids[1], other, 10**9], batch=1)
    assert fids.tolist() == [ids[1], ids[5]] and got.tobytes() == vecs[[1, 5]].tobytes()
    assert catalog.face_vectors("zzz")[2].shape == (0, 0)
    face = catalog.faces_by_ids([ids[0]])[ids[0]]
    assert face.box == [1.5, 2.5, 30.25, 40.75] and face.landmarks == [1.0, 2.0, 3.5]
    assert face.indexed is False and face.vector().tobytes() == vecs[0].tobytes()
    catalog.mark_indexed(ids[:4])
    assert [f.id for f in catalog.unindexed_faces("a")] == ids[4:]
    assert catalog.count_faces() == 8 and catalog.count_faces("a") == 7
    assert catalog.face_ids("b") == {other}


def test_long_in_lists(catalog: Catalog) -> None:
    """More ids than PostgreSQL's 65535 bind parameters (and SQLite's 32766)."""
    pid = add_photo(catalog, 1, status="done")
    fid = add_face(catalog, pid, "a", np.zeros(2))
    many = list(range(1, 70_001))
    assert list(catalog.photos_by_ids(many)) == [pid]
    assert list(catalog.faces_by_ids(many)) == [fid]
    catalog.mark_indexed(many)
    assert catalog.unindexed_faces("a") == []
    assert catalog.face_vectors("a", face_ids=many)[0].tolist() == [fid]
    # A first part of the ids holding none of the pack's faces does not end the walk.
    of_b = [add_face(catalog, pid, "b", np.zeros(2)) for _ in range(3)]
    late = add_face(catalog, pid, "a", np.zeros(2))
    assert catalog.face_vectors("a", face_ids=[late, *of_b], batch=2)[0].tolist() == [late]


def test_people_lookups_by_many_faces(catalog: Catalog) -> None:
    """An incremental clustering asks for the people of every neighbour of every new face."""
    from workbench.analysis.people import People

    pid = add_photo(catalog, 1, status="done")
    fid = add_face(catalog, pid, "a", np.zeros(2))
    with catalog.session.begin() as s:
        s.add(Person(id=5, pack="a"))
        s.flush()  # no relationship orders the two inserts
        s.add(FacePerson(face_id=fid, pack="a", cluster=0, person_id=5, confirmed=True))
    people = People(catalog, "a")
    many = list(range(1, 70_001))
    got = people.person_of(many)
    assert len(got) == 70_000 and got[fid] == 5 and got[2] is None
    assert people._confirmed_map(many)[fid] is True
    with pytest.raises(Exception, match="not faces of pack"):
        people._own_faces(many)


def test_time_zones_and_booleans(catalog: Catalog) -> None:
    when = dt.datetime(2024, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    pid = add_photo(catalog, 1, created_at=when)
    with catalog.session() as s:
        if catalog.engine.dialect.name == "postgresql":
            s.execute(text("SET TIME ZONE 'Asia/Tokyo'"))
        got = s.scalar(select(Photo.created_at).where(Photo.id == pid))
        flags = s.execute(select(Person.hidden).where(Person.hidden.is_(True))).all()
    assert got is not None and flags == []
    # SQLite keeps the wall time it was given (no zone); PostgreSQL the instant.
    if catalog.engine.dialect.name == "postgresql":
        assert got == when
    else:
        assert got.replace(tzinfo=None) == when.replace(tzinfo=None)


def test_timestamps_come_back_in_utc(catalog: Catalog) -> None:
    """Whatever time zone the server or the database is set to (exports write UTC)."""
    if catalog.engine.dialect.name == "postgresql":
        with catalog.engine.connect() as c:
            db = c.exec_driver_sql("SELECT current_database()").scalar()
            c.exec_driver_sql(f"ALTER DATABASE \"{db}\" SET timezone TO 'Asia/Tokyo'")
            c.commit()
        catalog.close()  # new connections take the database's setting
    when = dt.datetime(2024, 12, 31, 23, 30, tzinfo=dt.timezone.utc)
    pid = add_photo(catalog, 1, created_at=when)
    with catalog.session() as s:
        got = s.scalar(select(Photo.created_at).where(Photo.id == pid))
    assert got is not None
    assert got.utcoffset() in (None, dt.timedelta(0)) and got.replace(tzinfo=None) == dt.datetime(
        2024, 12, 31, 23, 30
    )


# ---- ids, cascades ----------------------------------------------------------------------
def test_ids_are_never_reused(catalog: Catalog) -> None:
    a, b = add_photo(catalog, 1), add_photo(catalog, 2)
    fa = add_face(catalog, a, "p", np.zeros(2))
    fb = add_face(catalog, b, "p", np.zeros(2))
    with catalog.session.begin() as s:
        s.execute(delete(Photo).where(Photo.id == b))
    c = add_photo(catalog, 3)
    assert c > b
    assert add_face(catalog, c, "p", np.zeros(2)) > fb > fa


def test_cascades(catalog: Catalog) -> None:
    pid = add_photo(catalog, 1, status="done")
    keep = add_photo(catalog, 2, status="done")
    f1, f2 = (add_face(catalog, pid, "p", np.zeros(2)) for _ in range(2))
    f3 = add_face(catalog, keep, "p", np.zeros(2))
    with catalog.session.begin() as s:
        s.add_all([Person(id=1, pack="p", name="Ann"), Person(id=2, pack="p")])
        s.add(Analysis(photo_id=pid, pack="p", n_faces=2))
        s.execute(
            insert(FacePerson),
            [
                {"face_id": f1, "pack": "p", "cluster": 0, "person_id": 1},
                {"face_id": f2, "pack": "p", "cluster": 0, "person_id": 2},
                {"face_id": f3, "pack": "p", "cluster": 1, "person_id": 2},
            ],
        )
        s.add(Rejection(face_id=f3, person_id=1))
    with catalog.session.begin() as s:  # a photo takes its faces, verdicts and links
        s.delete(s.get(Photo, pid))
    with catalog.session.begin() as s:  # a person leaves its faces unassigned
        s.execute(delete(Person).where(Person.id == 2))
    with catalog.session() as s:
        assert list(s.scalars(select(Face.id))) == [f3]
        assert s.scalars(select(Analysis.photo_id)).all() == []
        assert s.execute(select(FacePerson.face_id, FacePerson.person_id)).all() == [(f3, None)]
        assert s.execute(select(Rejection.face_id, Rejection.person_id)).all() == [(f3, 1)]
    with catalog.session.begin() as s:
        s.execute(delete(Person).where(Person.id == 1))
    with catalog.session() as s:
        assert s.scalars(select(Rejection.face_id)).all() == []


# ---- two writers --------------------------------------------------------------------------
def test_two_writers_racing_on_one_photo(catalog: Catalog) -> None:
    """Two catalogs (two processes) add the same bytes at once: the second writer gets an
    IntegrityError (the pipeline then adopts the first one's row), never a duplicate."""
    other = Catalog(catalog.url)
    first_flushed, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def first() -> None:
        with catalog.session.begin() as s:
            s.add(Photo(sha256=sha(7), source="a", origin="local", uri="/a", status="pending"))
            s.flush()
            first_flushed.set()
            release.wait(10)

    def second() -> None:
        first_flushed.wait(10)
        try:
            with other.session.begin() as s:
                s.add(Photo(sha256=sha(7), source="b", origin="local", uri="/b", status="pending"))
            outcome["second"] = "committed"
        except IntegrityError as e:
            outcome["second"] = e

    t1, t2 = threading.Thread(target=first), threading.Thread(target=second)
    t1.start()
    t2.start()
    first_flushed.wait(10)
    t2.join(0.5)  # the second writer waits on the first one's lock (row or database)
    release.set()
    t1.join(30)
    t2.join(30)
    other.close()
    assert isinstance(outcome.get("second"), IntegrityError), outcome
    with catalog.session() as s:
        rows = s.execute(select(Photo.source).where(Photo.sha256 == sha(7))).all()
    assert rows == [("a",)]


# ---- the gallery's indexes -------------------------------------------------------------
def _plan(catalog: Catalog, query: Any) -> str:
    sql = str(query.compile(dialect=catalog.engine.dialect, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN QUERY PLAN " if catalog.engine.dialect.name == "sqlite" else "EXPLAIN "
    with catalog.engine.connect() as c:
        rows = c.exec_driver_sql(prefix + sql).all()
    return "\n".join(" ".join(str(v) for v in r) for r in rows)


def test_gallery_pages_use_the_indexes(catalog: Catalog) -> None:
    from workbench.analysis.gallery import GalleryFilter, _conditions, _item_query, gallery_page

    # A realistic mix: most photos done, from one big local source; a few errors, one
    # small source, a few VK photos. A page of those must not scan the big rest.
    def status(i: int) -> str:
        return "error" if i % 250 == 0 else "pending" if i % 50 == 1 else "done"

    now = dt.datetime.now(dt.timezone.utc)
    rows = [
        {
            "sha256": sha(i),
            "source": "small" if i % 200 == 3 else "big",
            "origin": "vk" if i % 100 == 7 else "local",
            "uri": f"/p/{i}",
            "status": status(i),
            "n_faces": 0,
            "metadata": {},
            "created_at": now,
            "updated_at": now,
        }
        for i in range(20_000)
    ]
    with catalog.session.begin() as s:
        s.execute(insert(Photo.__table__), rows)  # type: ignore[arg-type]
    with catalog.engine.connect() as c:
        c.exec_driver_sql("ANALYZE")
        c.commit()
    cases = {
        "ix_photos_status_id": (GalleryFilter(status="errors"), 80),
        "ix_photos_source_id": (GalleryFilter(source="small"), 100),
        "ix_photos_origin_id": (GalleryFilter(origin="vk"), 200),
    }
    for index, (flt, total) in cases.items():
        q = _item_query(flt).where(*_conditions(flt)).order_by(Photo.id.desc()).limit(48)
        plan = _plan(catalog, q)
        assert index in plan, plan
        page = gallery_page(catalog, flt, page=1)
        assert len(page.items) == 48 and page.total == total
        ids = [i.id for i in page.items]
        assert ids == sorted(ids, reverse=True)


# ---- workbench db ------------------------------------------------------------------------
def test_db_commands(catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`workbench db current` reads the revision, `db upgrade` brings a catalog made before
    migrations to the newest one; a catalog newer than the code is a clear error. One
    real `workbench` process (the command is wired into the entry point), the rest in
    this process (click's runner)."""
    import json

    from click.testing import CliRunner

    from tests.conftest import run_cli
    from workbench.cli import cli
    from workbench.store.schema import SCHEMA_HEAD

    home = str(tmp_path / "home")
    monkeypatch.setenv("WORKBENCH_STORAGE__CATALOG_URL", catalog.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(WORKBENCH_HOME=home, WORKBENCH_STORAGE__CATALOG_URL=catalog.url)
    runner = CliRunner()

    def db(*args: str) -> Any:
        return runner.invoke(cli, ["--home", home, "db", *args], catch_exceptions=True)

    with catalog.engine.begin() as c:  # as if made before migrations
        c.exec_driver_sql("DROP TABLE alembic_version")
    doc = json.loads(db("current", "--json").output)
    assert doc["revision"] is None and doc["head"] == SCHEMA_HEAD and not doc["up_to_date"]
    assert doc["state"].startswith("before migrations")
    assert doc["dialect"] == catalog.engine.dialect.name
    done = run_cli(["db", "upgrade", "--json"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) | {"url": None} == {
        "url": None,
        "dialect": catalog.engine.dialect.name,
        "before": None,
        "after": SCHEMA_HEAD,
        "changed": True,
    }
    assert catalog.revision() == SCHEMA_HEAD
    again = db("upgrade")
    assert again.exit_code == 0 and f"already at revision {SCHEMA_HEAD}" in again.output
    with catalog.engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '0100'")
    out = db("current")
    assert out.exit_code == 0 and "revision 0100" in out.output
    assert "newer than this workbench" in out.output
    refused = db("upgrade")
    assert isinstance(refused.exception, StoreError)
    assert "revision '0100'" in str(refused.exception)
    assert "upgrade the workbench" in str(refused.exception)
