"""The workbench's vectors on a real Milvus 2.3.5 server (started once per test session).

Each test keeps to its own Milvus database, dropped afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cli_env, local_pack_settings, run_cli
from tests.services.milvus import drop_milvus_db, milvus_db_name
from tests.services.postgres import fresh_pg_url  # noqa: F401 - fixture
from workbench.errors import ConfigurationError, StoreError
from workbench.settings import StorageSettings
from workbench.store.vectors import VectorIndex

pytestmark = [pytest.mark.integration, pytest.mark.server]

INDEX_TYPES = ["FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW"]


@pytest.fixture
def milvus_db(milvus_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    db = milvus_db_name(request)
    yield db
    drop_milvus_db(milvus_server, db)


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _faces(n_people: int, per_person: int, dim: int, seed: int = 0) -> np.ndarray:
    """Face-like vectors: tight clusters (one per person) on the unit sphere."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng, n_people, dim)
    v = np.repeat(centres, per_person, axis=0) + 0.35 * _unit(rng, n_people * per_person, dim)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_vector_index_on_server(milvus_server: str, milvus_db: str) -> None:
    """Upsert, count(*), query_iterator, search, delete and describe_index on a server,
    with every read seeing the writes before it (Strong by default)."""
    st = StorageSettings(milvus_uri=milvus_server, milvus_db=milvus_db)
    index = VectorIndex(milvus_server, st)
    assert not index.is_lite
    vectors = _faces(30, 10, 128)
    ids = list(range(1, 301))
    index.ensure_collection("faces_test", 128, metric="cosine")
    photo_ids = [i // 3 for i in ids]
    index.upsert("faces_test", ids[:200], photo_ids[:200], ["a"] * 200, vectors[:200], "p1")
    index.upsert("faces_test", ids[200:], photo_ids[200:], ["b"] * 100, vectors[200:], "p2")
    # Counts and ids right after the write (no flush, no sleep).
    assert index.count("faces_test") == 300
    assert index.count("faces_test", "p2") == 100
    assert index.ids("faces_test", "p1") == set(ids[:200])
    hits = index.search("faces_test", vectors[[4, 250]], top_k=5)
    assert [h[0].face_id for h in hits] == [5, 251]
    assert hits[0][0].photo_id == 5 // 3 and hits[0][0].source == "a"
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-4)
    only_p2 = index.search("faces_test", vectors[[4]], top_k=5, pack="p2")[0]
    assert only_p2 and all(h.face_id > 200 for h in only_p2)
    only_b = index.search("faces_test", vectors[[4]], top_k=5, source="b")[0]
    assert all(h.source == "b" for h in only_b)
    # A delete is visible at once.
    index.delete("faces_test", [5, 6, 7])
    assert index.count("faces_test") == 297
    assert 5 not in {h.face_id for h in index.search("faces_test", vectors[[4]], top_k=5)[0]}
    # Upserting the same ids again replaces, never duplicates.
    index.upsert("faces_test", ids[:10], [0] * 10, ["a"] * 10, vectors[:10], "p1")
    assert index.count("faces_test") == 300
    index.flush("faces_test")
    index.close()
    # A new client (another process, say) reads the index back from the server.
    again = VectorIndex(milvus_server, st)
    spec = again.index_spec("faces_test")
    assert (spec.index_type, spec.metric) == ("HNSW", "cosine")
    assert again.count("faces_test") == 300
    again.close()
    # The database keeps it from other workbenches on the same server.
    other = VectorIndex(milvus_server, StorageSettings(milvus_db=f"{milvus_db}_other"))
    try:
        assert not other.has("faces_test") and other.count("faces_test") == 0
    finally:
        other.close()
        drop_milvus_db(milvus_server, f"{milvus_db}_other")


def _wait_indexed(index: VectorIndex, name: str, rows: int, timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        info = index.client.describe_index(name, "vector")
        if int(info.get("indexed_rows", 0)) >= rows and info.get("state") == "Finished":
            return time.monotonic() - started
        time.sleep(0.5)
    pytest.fail(f"{name}: index not built after {timeout} s: {info}")


def test_every_index_type_builds_with_default_params(milvus_server: str, milvus_db: str) -> None:
    """Each index type really builds on the server with the settings' defaults (1,100
    vectors: past Milvus's 1,024-row minimum for building an index) and finds each
    person's faces."""
    st = StorageSettings(milvus_db=milvus_db)
    index = VectorIndex(milvus_server, st)
    vectors = _faces(110, 10, 128, seed=1)
    ids = list(range(len(vectors)))
    queries = vectors[::55] + 0.05 * _unit(np.random.default_rng(2), 20, 128)
    people = [i // 10 for i in ids[::55]]
    timings = {}
    for index_type in INDEX_TYPES:
        index.drop("faces_all")
        index.ensure_collection("faces_all", 128, index_type=index_type, metric="cosine")
        index.upsert("faces_all", ids, ids, ["s"] * len(ids), vectors, "p")
        index.flush("faces_all")
        timings[index_type] = _wait_indexed(index, "faces_all", len(ids))
        assert index.count("faces_all") == len(ids)
        assert index.index_spec("faces_all").index_type == index_type
        hits = index.search("faces_all", queries, top_k=10)
        top1 = [h[0].face_id // 10 for h in hits]
        assert top1 == people, f"{index_type}: top-1 people {top1} != {people}"
        same = np.mean(
            [sum(x.face_id // 10 == p for x in h) / 10 for h, p in zip(hits, people, strict=True)]
        )
        assert same >= 0.9, f"{index_type}: only {same:.0%} of the top-10 are the person"
    print("index build seconds:", {k: round(v, 1) for k, v in timings.items()})
    index.close()


def _top_matches(wb: object, photos: list[Path]) -> list[list[str]]:
    out = []
    for p in photos:
        res = wb.search(p, top_k=3, threshold=0)  # type: ignore[attr-defined]
        face = max(res, key=lambda r: (r.box[2] - r.box[0]) * (r.box[3] - r.box[1]))
        out.append([m.photo for m in face.matches])
    return out


def test_reindex_through_index_types_on_server(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    models_dir: Path,
    dev_photos: list,
    milvus_server: str,
    milvus_db: str,
    fresh_pg_url: str,  # noqa: F811 - fixture
) -> None:
    """FLAT → IVF_FLAT → IVF_SQ8 → IVF_PQ → HNSW on the server, catalog on PostgreSQL:
    the vectors come from the catalog (no model runs), counts and top matches stay; the
    last switch is `workbench reindex --index HNSW` in a subprocess."""
    from workbench.core import Workbench

    by_id: dict[str, list] = {}
    for p in dev_photos:
        if p.category == "identity":
            by_id.setdefault(p.identity, []).append(p)
    people = [ps for ps in by_id.values() if len(ps) >= 3][:4]
    photos = [p.path for ps in people for p in ps[:3]]
    queries = photos[::3]  # one per person: each search runs the models once
    storage = {"milvus_uri": milvus_server, "milvus_db": milvus_db, "catalog_url": fresh_pg_url}
    settings = local_pack_settings(tmp_path / "wb", models_dir, storage=storage)
    with Workbench(settings) as wb:
        wb.ingest(photos, progress=False)
        faces = wb.stats().faces
        assert faces >= len(photos) and wb.stats().agree
        before = _top_matches(wb, queries)
        assert all(m[0] == str(p.resolve()) for m, p in zip(before, queries, strict=True))

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("reindex ran a model")

    with Workbench(settings) as wb:
        for index_type in INDEX_TYPES[:-1]:
            with monkeypatch.context() as m:  # vectors come from the catalog: no model runs
                for method in ("detect", "analyze", "analyze_many", "embed_at"):
                    m.setattr(wb.pack, method, no_model)
                n = wb.reindex(index_type=index_type, progress=False)  # type: ignore[arg-type]
            assert n == faces
            assert wb.index_spec().index_type == index_type
            st = wb.stats()
            assert st.agree and st.faces == faces
            assert _top_matches(wb, queries) == before, index_type
    env = cli_env(tmp_path / "wb", models_dir)
    env.update(
        WORKBENCH_STORAGE__MILVUS_URI=milvus_server,
        WORKBENCH_STORAGE__MILVUS_DB=milvus_db,
        WORKBENCH_STORAGE__CATALOG_URL=fresh_pg_url,
    )
    done = run_cli(["reindex", "--index", "HNSW", "--json"], env)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["vectors"], doc["index_type"]) == (faces, "HNSW")
    with Workbench(settings) as wb:
        assert wb.index_spec().index_type == "HNSW" and wb.stats().agree
        assert _top_matches(wb, queries) == before


def test_bad_settings_give_clear_errors(tmp_path: Path, milvus_server: str, milvus_db: str) -> None:
    index = VectorIndex(milvus_server, StorageSettings(milvus_db=milvus_db, pq_m=24))
    with pytest.raises(ConfigurationError, match=r"'faces_x' has dim 128.*PQ_M"):
        index.ensure_collection("faces_x", 128, index_type="IVF_PQ")
    assert not index.has("faces_x")  # nothing half-made
    index.close()
    from workbench.store.milvus_server import MilvusServer, free_ports, port_free

    # Nothing listens on a free port: the error says how to start a server.
    (port,) = free_ports(1)
    started = time.monotonic()
    nowhere = VectorIndex(f"http://127.0.0.1:{port}", StorageSettings())
    with pytest.raises(StoreError, match="workbench milvus start"):
        nowhere.has("x")
    assert time.monotonic() - started < 30
    # A port in use (the session server's) is refused before anything starts.
    busy = int(milvus_server.rsplit(":", 1)[1])
    assert not port_free(busy)
    with pytest.raises(StoreError, match=f"already in use: proxy {busy}"):
        MilvusServer(tmp_path / "second", port=busy).start(timeout=5)
    assert not (tmp_path / "second" / "milvus.pid").exists()


def test_milvus_cli_start_status_stop(tmp_path: Path, models_dir: Path) -> None:
    """`workbench milvus start / status / stop` through the real command line."""
    from pymilvus import MilvusClient

    from workbench.store.milvus_server import free_ports

    env = cli_env(tmp_path / "wb", models_dir)
    data = tmp_path / "server"
    (port,) = free_ports(1)
    args = ["--data", str(data)]
    try:
        st = run_cli(["milvus", "start", *args, "--port", str(port), "--free-ports"], env)
        assert st.returncode == 0, st.stderr
        uri = f"http://127.0.0.1:{port}"
        assert f"export WORKBENCH_STORAGE__MILVUS_URI={uri}" in st.stdout
        client = MilvusClient(uri)
        assert client.list_collections() == []
        client.close()
        status = run_cli(["milvus", "status", *args, "--json"], env)
        doc = json.loads(status.stdout)
        assert doc["running"] and doc["uri"] == uri and doc["pid"] > 0
        again = run_cli(["milvus", "start", *args, "--port", str(port), "--json"], env)
        assert json.loads(again.stdout)["already_running"] is True
    finally:
        stop = run_cli(["milvus", "stop", *args], env)
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stderr
    # The whole process group is gone, not only the pid the record names.
    assert not _group_alive(doc["pid"]), f"processes of Milvus's group {doc['pid']} remain"
    status = run_cli(["milvus", "status", *args, "--json"], env)
    assert json.loads(status.stdout)["running"] is False
    assert (data / "logs" / "milvus.log").exists()


def _group_alive(pgid: int) -> bool:
    """Whether any process is still in process group ``pgid`` (zombies aside)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False
