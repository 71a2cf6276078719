"""Distributed processing for real: `workbench enqueue` on a Redis server, `workbench worker`
processes (FastStream) writing to PostgreSQL and a Milvus server, killed with SIGKILL.

The expected faces of every photo come from a single-process ingest of the same
photos, so "exact" means: the workers' catalog and index hold what one
uninterrupted ingest holds, each photo once, each face once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cli_env, local_pack_settings, run_cli
from tests.services.milvus import drop_milvus_db, milvus_db_name

pytestmark = pytest.mark.integration

N_PHOTOS = 200


@pytest.fixture(scope="module")
def lfw200(lfw_dir: Path) -> list[Path]:
    photos = sorted((lfw_dir / "images").rglob("*.jpg"))[:N_PHOTOS]
    assert len(photos) == N_PHOTOS
    return photos


@pytest.fixture(scope="module")
def reference(
    lfw200: list[Path], models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, int]:
    """Faces per photo (by path) of one uninterrupted single-process ingest."""
    from workbench.core import Workbench

    home = tmp_path_factory.mktemp("reference")
    with Workbench(local_pack_settings(home, models_dir)) as wb:
        report = wb.ingest(lfw200, source="lfw200", progress=False)
        assert report.errors == 0
        return _faces_by_uri(wb)


def _faces_by_uri(wb: object) -> dict[str, int]:
    from sqlalchemy import func, select

    from workbench.store.models import Face, Photo

    with wb.catalog.session() as s:  # type: ignore[attr-defined]
        rows = s.execute(
            select(Photo.uri, func.count(Face.id))
            .outerjoin(Face, Face.photo_id == Photo.id)
            .group_by(Photo.id, Photo.uri)
        ).all()
    return {uri: int(n) for uri, n in rows}


def _queue_env(home: Path, models: Path, redis_url: str, **extra: str) -> dict[str, str]:
    env = cli_env(home, models)
    env.update(
        WORKBENCH_QUEUE__URL=redis_url,
        WORKBENCH_QUEUE__STREAM=f"jobs-{uuid.uuid4().hex[:8]}",
        WORKBENCH_QUEUE__GROUP="workers",
        OMP_NUM_THREADS="1",
    )
    env.update(extra)
    return env


class Worker:
    """A `workbench worker` subprocess with its log in a file."""

    def __init__(
        self, env: dict[str, str], name: str, log: Path, *args: str, prefix: list[str] | None = None
    ) -> None:
        self.log = log
        self._fh = open(log, "a")  # noqa: SIM115 - closed in wait()
        cmd = prefix or [sys.executable, "-m", "workbench.cli"]
        self.proc = subprocess.Popen(
            [*cmd, "-v", "worker", "--name", name, *args],
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"worker did not finish in {timeout} s:\n{self.text()[-3000:]}")
        finally:
            self._fh.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def _redis(url: str) -> object:
    import redis

    return redis.Redis.from_url(url)


def _consumer_pending(client: object, stream: str, group: str, name: str) -> int:
    try:
        consumers = client.xinfo_consumers(stream, group)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - the group does not exist yet
        return 0
    for c in consumers:
        if c["name"] in (name, name.encode()):
            return int(c["pending"])
    return 0


@pytest.fixture
def server_storage(
    milvus_server: str, fresh_pg_url: str, request: pytest.FixtureRequest
) -> Iterator[dict[str, str]]:
    """PostgreSQL catalog + Milvus server database of this test, as WORKBENCH_* variables."""
    db = milvus_db_name(request)
    yield {
        "WORKBENCH_STORAGE__CATALOG_URL": fresh_pg_url,
        "WORKBENCH_STORAGE__MILVUS_URI": milvus_server,
        "WORKBENCH_STORAGE__MILVUS_DB": db,
    }
    drop_milvus_db(milvus_server, db)


@pytest.mark.server
def test_killed_worker_loses_and_duplicates_nothing(
    tmp_path: Path,
    models_dir: Path,
    lfw200: list[Path],
    reference: dict[str, int],
    redis_url: str,
    server_storage: dict[str, str],
) -> None:
    from workbench.core import Workbench
    from workbench.ingest.queue import queue_state
    from workbench.settings import WorkbenchSettings

    env = _queue_env(
        tmp_path / "home",
        models_dir,
        redis_url,
        WORKBENCH_QUEUE__RECLAIM_AFTER="3",
        WORKBENCH_QUEUE__BATCH="8",
        **server_storage,
    )
    paths = [str(p) for p in lfw200]
    r = run_cli(["enqueue", "--source", "lfw200", "--json", *paths], env)
    assert r.returncode == 0, r.stderr
    # At-least-once delivery can hand out a photo twice: enqueue 20 of them again.
    r = run_cli(["enqueue", "--source", "lfw200", *paths[:20]], env)
    assert r.returncode == 0, r.stderr

    stream, group = env["WORKBENCH_QUEUE__STREAM"], env["WORKBENCH_QUEUE__GROUP"]
    client = _redis(redis_url)
    settings = WorkbenchSettings(
        home=tmp_path / "home",
        storage={
            "catalog_url": env["WORKBENCH_STORAGE__CATALOG_URL"],
            "milvus_uri": env["WORKBENCH_STORAGE__MILVUS_URI"],
            "milvus_db": env["WORKBENCH_STORAGE__MILVUS_DB"],
        },
        queue={"url": redis_url, "stream": stream, "group": group},
        local={
            "models_dir": models_dir,
            "detector": env["WORKBENCH_LOCAL__DETECTOR"],
            "recognizer": env["WORKBENCH_LOCAL__RECOGNIZER"],
        },
    )
    a = Worker(env, "a", tmp_path / "a.log")
    b = Worker(env, "b", tmp_path / "b.log", "--until-empty")

    # Kill `a` with SIGKILL once photos are committed and it holds jobs in hand.
    from sqlalchemy import create_engine, text

    engine = create_engine(env["WORKBENCH_STORAGE__CATALOG_URL"])
    deadline = time.monotonic() + 300
    killed_holding = 0
    while time.monotonic() < deadline:
        assert a.proc.poll() is None, f"worker a exited early:\n{a.text()[-3000:]}"
        try:
            with engine.connect() as conn:
                photos = conn.execute(text("select count(*) from photos")).scalar_one()
        except Exception:  # noqa: BLE001 - tables not created yet
            photos = 0
        held = _consumer_pending(client, stream, group, "a")
        if photos >= 60 and held > 0:
            a.proc.send_signal(signal.SIGKILL)
            killed_holding = held
            break
        time.sleep(0.2)
    assert killed_holding > 0, "never caught worker a holding jobs"
    assert a.wait(30) == -signal.SIGKILL
    engine.dispose()

    # Start it again; both drain the queue, one of them taking over a's jobs.
    a2 = Worker(env, "a", tmp_path / "a2.log", "--until-empty")
    assert a2.wait(400) == 0, a2.text()[-3000:]
    assert b.wait(400) == 0, b.text()[-3000:]
    logs = a2.text() + b.text()
    assert "took over" in logs, "no worker took over the killed worker's jobs"
    assert queue_state(settings.queue).empty

    with Workbench(settings) as wb:
        got = _faces_by_uri(wb)
        st = wb.stats()
        from sqlalchemy import func, select

        from workbench.store.models import Analysis, Photo

        with wb.catalog.session() as s:
            statuses = dict(
                s.execute(select(Photo.status, func.count(Photo.id)).group_by(Photo.status)).all()
            )
            verdicts = s.execute(
                select(Analysis.photo_id, func.count()).group_by(Analysis.photo_id)
            ).all()
        pack = wb.pack.name
        in_catalog = wb.catalog.face_ids(pack)
        in_index = wb.index.ids(wb.collection, pack)

    # Nothing lost, nothing twice: every photo once with exactly the reference's faces.
    assert len(got) == N_PHOTOS, f"{len(got)} photos in the catalog"
    assert got == reference
    assert "error" not in statuses, statuses
    assert all(n == 1 for _, n in verdicts) and len(verdicts) == N_PHOTOS
    assert st.faces == sum(reference.values())
    assert in_index == in_catalog and len(in_catalog) == st.faces
    assert st.agree, st.to_dict()


_CRASHING_WORKER = """
import hashlib, os, sys
import workbench.ingest.pipeline as pipeline

poison, args = sys.argv[1], sys.argv[2:]
decode = pipeline.decode_image

def crash_on_poison(data, *args, **kwargs):
    # Stands for a photo that kills its worker (a decoder segfault, the OOM killer).
    if hashlib.sha256(data).hexdigest() == poison:
        os._exit(3)
    return decode(data, *args, **kwargs)

pipeline.decode_image = crash_on_poison
from workbench.cli import main
main(args)
"""


def test_poison_photo_is_recorded_not_retried_forever(
    tmp_path: Path,
    models_dir: Path,
    lfw200: list[Path],
    reference: dict[str, int],
    redis_url: str,
) -> None:
    import hashlib

    from workbench.core import Workbench
    from workbench.store.models import Photo

    photos = lfw200[:6]
    poison = photos[2]
    env = _queue_env(
        tmp_path / "home",
        models_dir,
        redis_url,
        WORKBENCH_QUEUE__RECLAIM_AFTER="1",
        WORKBENCH_QUEUE__MAX_DELIVERIES="3",
    )
    r = run_cli(["enqueue", "--source", "mixed", *map(str, photos)], env)
    assert r.returncode == 0, r.stderr
    script = tmp_path / "crashing_worker.py"
    script.write_text(_CRASHING_WORKER)
    sha = hashlib.sha256(poison.read_bytes()).hexdigest()
    prefix = [sys.executable, str(script), sha]

    exits = []
    for i in range(10):
        w = Worker(env, "w", tmp_path / f"w{i}.log", "--until-empty", prefix=prefix)
        exits.append(w.wait(180))
        if exits[-1] == 0:
            break
    # Delivered 1 (in a batch), 2 and 3 (alone): each time the worker died;
    # the 4th delivery is recorded as the photo's error instead.
    assert exits == [3, 3, 3, 0] or (exits[-1] == 0 and exits.count(3) == 3), exits

    with Workbench(local_pack_settings(tmp_path / "home", models_dir)) as wb:
        got = _faces_by_uri(wb)
        with wb.catalog.session() as s:
            bad = s.query(Photo).filter(Photo.uri == str(poison)).one()
        assert wb.stats().agree
    assert bad.status == "error"
    assert "gave up after 4 deliveries" in (bad.error or ""), bad.error
    assert {u: n for u, n in got.items() if u != str(poison)} == {
        str(p): reference[str(p)] for p in photos if p != poison
    }


def test_enqueue_reports_a_bad_source_and_sends_the_rest(
    tmp_path: Path, models_dir: Path, lfw200: list[Path], redis_url: str
) -> None:
    from workbench.ingest.queue import queue_state
    from workbench.settings import QueueSettings

    env = _queue_env(tmp_path / "home", models_dir, redis_url)
    missing = tmp_path / "no-such-folder"
    r = run_cli(["enqueue", "--json", str(missing), *map(str, lfw200[:3])], env)
    assert r.returncode == 0, r.stderr
    import json

    doc = json.loads(r.stdout)
    assert doc["jobs"] == 3 and doc["sources"] == 3
    assert [e["source"] for e in doc["errors"]] == [str(missing)]
    state = queue_state(
        QueueSettings(url=redis_url, stream=env["WORKBENCH_QUEUE__STREAM"], group="workers")
    )
    assert (state.waiting, state.pending) == (3, 0)


def test_job_messages_and_broker_urls_are_checked() -> None:
    from workbench.errors import ConfigurationError, WorkbenchError
    from workbench.ingest.queue import PhotoJob, check_broker_url

    job = PhotoJob("lfw", "local", "/x/a.jpg", {"k": 1})
    assert PhotoJob.from_message(job.to_message()) == job
    with pytest.raises(WorkbenchError, match="without uri"):
        PhotoJob.from_message({"v": 1, "source": "s", "origin": "local"})
    with pytest.raises(WorkbenchError, match="version"):
        PhotoJob.from_message({"v": 99, "source": "s", "origin": "local", "uri": "u"})
    with pytest.raises(WorkbenchError, match="JSON object"):
        PhotoJob.from_message(["not", "a", "job"])
    with pytest.raises(ConfigurationError, match="only Redis"):
        check_broker_url("amqp://guest@localhost/")


def test_worker_names_an_unreachable_broker(tmp_path: Path, models_dir: Path) -> None:
    from tests.services.redis import free_port

    env = cli_env(tmp_path / "home", models_dir)
    env["WORKBENCH_QUEUE__URL"] = f"redis://127.0.0.1:{free_port()}/0"
    r = run_cli(["worker", "--until-empty"], env)
    assert r.returncode == 2
    assert "cannot reach the broker" in r.stderr or "cannot read the job queue" in r.stderr
    assert "Traceback" not in r.stderr


_FLAKY_INDEX_WORKER = """
import sys
from pathlib import Path

from workbench.errors import StoreError
from workbench.store.faces import FaceStore

flag, args = Path(sys.argv[1]), sys.argv[2:]
write = FaceStore.write_vectors

def fail_once(self, *a, **k):
    # Stands for Milvus going away for a moment, after the catalog committed the batch.
    if not flag.exists():
        flag.touch()
        raise StoreError("Milvus is unreachable (injected)")
    return write(self, *a, **k)

FaceStore.write_vectors = fail_once
from workbench.cli import main
main(args)
"""


def test_a_failed_index_write_leaves_jobs_pending_then_recovers(
    tmp_path: Path,
    models_dir: Path,
    lfw200: list[Path],
    reference: dict[str, int],
    redis_url: str,
) -> None:
    from workbench.core import Workbench

    photos = lfw200[10:14]
    env = _queue_env(tmp_path / "home", models_dir, redis_url, WORKBENCH_QUEUE__RECLAIM_AFTER="1")
    r = run_cli(["enqueue", *map(str, photos)], env)
    assert r.returncode == 0, r.stderr
    script = tmp_path / "flaky_index_worker.py"
    script.write_text(_FLAKY_INDEX_WORKER)
    prefix = [sys.executable, str(script), str(tmp_path / "failed-once")]
    w = Worker(env, "w", tmp_path / "w.log", "--until-empty", prefix=prefix)
    assert w.wait(240) == 0, w.text()[-3000:]
    log = w.text()
    assert "jobs failed and stay pending" in log and "Milvus is unreachable" in log
    assert "took over" in log  # the same worker claimed its own failed jobs again
    with Workbench(local_pack_settings(tmp_path / "home", models_dir)) as wb:
        got = _faces_by_uri(wb)
        st = wb.stats()
    assert got == {str(p): reference[str(p)] for p in photos}
    assert st.agree and st.faces == sum(got.values())


_STARTING_WORKER = """
import sys, time
from pathlib import Path

from workbench.ingest.queue import PhotoJob
from workbench.ingest.worker import PhotoWorker
from workbench.settings import WorkbenchSettings

barrier, n, name, photo = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]

def all_at_once(stage):
    # Every worker reaches this line, then all go on within a millisecond or so.
    (barrier / f"{stage}-{name}").touch()
    deadline = time.monotonic() + 120
    while len(list(barrier.glob(f"{stage}-*"))) < n:
        if time.monotonic() > deadline:
            sys.exit(f"{name}: the others never reached {stage}")
        time.sleep(0.001)

settings = WorkbenchSettings()
all_at_once("open")  # a new catalog (and its vector server) opened by all at once
worker = PhotoWorker(settings, name)
worker.pack.load()
all_at_once("start")  # the pack row and its collection, found missing by all
worker.start()
worker.process([PhotoJob("race", "local", photo, {})])
report = worker.stop("done")
print(name, report.photos, report.errors)
"""


@pytest.mark.parametrize(
    "storage",
    [
        pytest.param("home", id="sqlite-lite"),
        pytest.param("servers", id="postgresql-milvus", marks=pytest.mark.server),
    ],
)
def test_workers_started_at_the_same_instant_all_start(
    tmp_path: Path,
    models_dir: Path,
    lfw200: list[Path],
    reference: dict[str, int],
    storage: str,
    request: pytest.FixtureRequest,
) -> None:
    """Four workers open a new workbench at the same instant, three times over: all four
    create its catalog, register the pack, create the collection and commit a photo at
    once; none may crash, and the catalog holds one pack and every photo once."""
    from sqlalchemy import func, select

    from workbench.core import Workbench
    from workbench.settings import WorkbenchSettings
    from workbench.store.models import Pack, Run

    n = 4
    script = tmp_path / "starting_worker.py"
    script.write_text(_STARTING_WORKER)
    for attempt in range(3):
        home = tmp_path / f"home{attempt}"
        env = {**cli_env(home, models_dir), "OMP_NUM_THREADS": "1"}
        if storage == "servers":
            env.update(_server_storage_of_attempt(request))
        barrier = tmp_path / f"barrier{attempt}"
        barrier.mkdir()
        photos = lfw200[attempt * n : attempt * n + n]
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(barrier), str(n), f"w{i}", str(photo)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i, photo in enumerate(photos)
        ]
        outcomes = [(p.wait(300), *p.communicate()) for p in procs]
        for code, out, err in outcomes:
            assert code == 0, f"attempt {attempt}: a worker failed:\n{err[-3000:]}"
            assert out.split()[1:] == ["1", "0"], out
        settings = WorkbenchSettings(
            home=home,
            storage={
                k.removeprefix("WORKBENCH_STORAGE__").lower(): v
                for k, v in env.items()
                if k.startswith("WORKBENCH_STORAGE__")
            },
            local={
                "models_dir": models_dir,
                "detector": env["WORKBENCH_LOCAL__DETECTOR"],
                "recognizer": env["WORKBENCH_LOCAL__RECOGNIZER"],
            },
        )
        with Workbench(settings) as wb:
            got = _faces_by_uri(wb)
            with wb.catalog.session() as s:
                packs = s.scalar(select(func.count()).select_from(Pack))
                runs = s.execute(select(Run.status)).scalars().all()
            assert wb.stats().agree
        assert packs == 1
        assert runs == ["done"] * n
        assert got == {str(p): reference[str(p)] for p in photos}


def _server_storage_of_attempt(request: pytest.FixtureRequest) -> dict[str, str]:
    """A new empty PostgreSQL database and Milvus database, dropped when the test ends."""
    from tests.services.postgres import create_database, drop_database

    admin, milvus = (
        request.getfixturevalue("postgres_url"),
        request.getfixturevalue("milvus_server"),
    )
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = create_database(admin, name)
    request.addfinalizer(lambda: drop_database(admin, name))
    db = f"race_{uuid.uuid4().hex[:8]}"
    request.addfinalizer(lambda: drop_milvus_db(milvus, db))
    return {
        "WORKBENCH_STORAGE__CATALOG_URL": url,
        "WORKBENCH_STORAGE__MILVUS_URI": milvus,
        "WORKBENCH_STORAGE__MILVUS_DB": db,
    }
