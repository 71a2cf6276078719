"""`workbench serve-metrics` in a real subprocess, scraped over HTTP; JSON logs of a real ingest."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import cli_env, local_pack_settings

pytestmark = pytest.mark.integration

PHOTOS = ("dev_0001.jpg", "dev_0002.jpg", "dev_0003.png", "dev_0004.jpg")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _scrape(port: int, deadline_s: float = 30.0) -> str:
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def ingested_home(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, faces_dev_dir: Path
) -> Path:
    """A workbench home with four dev photos ingested by the `local` pack (then closed)."""
    from workbench.core import Workbench

    home = tmp_path_factory.mktemp("metrics-home")
    photos = home / "photos"
    photos.mkdir()
    for name in PHOTOS:
        (photos / name).write_bytes((faces_dev_dir / "images" / name).read_bytes())
    with Workbench(local_pack_settings(home / "wb", models_dir)) as wb:
        wb.ingest([photos], progress=False)
    return home / "wb"


@pytest.fixture
def serve(ingested_home: Path, models_dir: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve-metrics", "--port", str(port)],
        env=cli_env(ingested_home, models_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_metrics_reports_catalog_and_process(
    serve: tuple[int, subprocess.Popen[str]], ingested_home: Path, models_dir: Path
) -> None:
    from workbench.core import Workbench

    port, proc = serve
    text = _scrape(port)
    samples = _samples(text)

    with Workbench(local_pack_settings(ingested_home, models_dir)) as wb:
        stats = wb.catalog  # catalog only: the index belongs to nobody here
        from sqlalchemy import func, select

        from workbench.store.models import Face, Photo

        with stats.session() as s:
            expected = {
                (src, st): n
                for src, st, n in s.execute(
                    select(Photo.source, Photo.status, func.count()).group_by(
                        Photo.source, Photo.status
                    )
                )
            }
            faces = dict(s.execute(select(Face.pack, func.count()).group_by(Face.pack)).all())

    assert samples[("workbench_catalog_up", ())] == 1.0
    photo_samples = {
        (dict(labels)["source"], dict(labels)["status"]): v
        for (name, labels), v in samples.items()
        if name == "workbench_catalog_photos"
    }
    assert photo_samples == {k: float(v) for k, v in expected.items()}
    assert sum(photo_samples.values()) == len(PHOTOS)
    assert faces, "the dev photos have faces"
    for pack, n in faces.items():
        assert samples[("workbench_catalog_faces", (("pack", pack),))] == n
        assert samples[("workbench_catalog_faces_indexed", (("pack", pack),))] == n
    assert samples[("workbench_catalog_runs", (("kind", "ingest"), ("status", "done")))] == 1.0
    # Process and machine figures, and the package's own metric families.
    assert samples[("workbench_process_resident_memory_bytes", ())] > 10e6
    assert samples[("workbench_system_memory_total_bytes", ())] > 0
    assert ("workbench_system_cpu_percent", ()) in samples
    assert ("workbench_stage_seconds_count", (("stage", "decode"),)) in samples
    assert "# TYPE workbench_photos_processed_total counter" in text
    assert "# TYPE workbench_search_seconds histogram" in text
    assert proc.poll() is None


def test_busy_port_is_refused(
    serve: tuple[int, subprocess.Popen[str]], ingested_home: Path, models_dir: Path
) -> None:
    port, _ = serve
    _scrape(port)  # the first server is listening
    second = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "serve-metrics", "--port", str(port)],
        env=cli_env(ingested_home, models_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert f"cannot serve metrics on 127.0.0.1:{port}" in second.stderr
    assert "Choose another port" in second.stderr
    assert "Traceback" not in second.stderr


def test_busy_catalog_gives_up_zero_not_an_error(tmp_path: Path, models_dir: Path) -> None:
    """A catalog that cannot be read (here: a directory where the SQLite file should be)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from workbench.monitoring.catalog import CatalogCollector

    settings = local_pack_settings(tmp_path / "wb", models_dir)
    bad = tmp_path / "wb" / "catalog.sqlite"
    bad.mkdir(parents=True)
    registry = CollectorRegistry()
    registry.register(CatalogCollector(settings, timeout_s=0.5))  # type: ignore[arg-type]
    samples = _samples(generate_latest(registry).decode())
    assert samples[("workbench_catalog_up", ())] == 0.0
    assert not any(name == "workbench_catalog_photos" for name, _ in samples)


def test_locked_catalog_scrape_returns_quickly(ingested_home: Path, models_dir: Path) -> None:
    """An exclusive SQLite lock held by another connection: up=0 within the scrape timeout."""
    import sqlite3

    from prometheus_client import CollectorRegistry, generate_latest

    from workbench.monitoring.catalog import CatalogCollector

    settings = local_pack_settings(ingested_home, models_dir)
    db = sqlite3.connect(ingested_home / "catalog.sqlite", timeout=1)
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("BEGIN EXCLUSIVE")
        registry = CollectorRegistry()
        registry.register(CatalogCollector(settings, timeout_s=0.5))  # type: ignore[arg-type]
        start = time.monotonic()
        samples = _samples(generate_latest(registry).decode())
        took = time.monotonic() - start
    finally:
        db.rollback()
        db.close()
    assert samples[("workbench_catalog_up", ())] == 0.0
    assert took < 5


def test_ingest_json_logs_carry_the_photo(
    tmp_path: Path, models_dir: Path, faces_dev_dir: Path
) -> None:
    """A real ingest (CLI, --log-json -v): per-photo log lines carry `photo` as a field."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in PHOTOS[:3]:
        (photos / name).write_bytes((faces_dev_dir / "images" / name).read_bytes())
    (photos / "broken.jpg").write_bytes(b"not a jpeg at all")
    env = cli_env(tmp_path / "wb", models_dir)
    done = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "--log-json", "-vv", "ingest", "--no-progress"]
        + [str(photos)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    # The CLI's own error summary ("  error: ...") is not a log line; every log line is JSON.
    assert not [line for line in lines if re.match(r"\d\d:\d\d:\d\d ", line)]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert all({"time", "level", "message", "logger"} <= r.keys() for r in records)
    per_photo = [r for r in records if r["message"].startswith(str(photos))]
    by_name = {Path(r["message"].split(":")[0]).name: r for r in per_photo}
    assert {"broken.jpg", *PHOTOS[:3]} <= by_name.keys(), lines
    for name in ("broken.jpg", *PHOTOS[:3]):
        assert by_name[name].get("photo") not in (None, ""), by_name[name]
    assert by_name["broken.jpg"]["level"] == "WARNING"


def test_queue_poller_reports_depth_and_survives_a_down_broker(redis_url: str) -> None:
    """Depth as the workers compute it (waiting + pending of the group); a broker that is
    down removes the series instead of failing."""
    import redis
    from loguru import logger
    from prometheus_client import REGISTRY

    from workbench.ingest.queue import QueuePoller
    from workbench.settings import QueueSettings

    queue = QueueSettings(url=redis_url, stream="test:metrics-depth", group="g")
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(queue.stream)
        for i in range(5):
            client.xadd(queue.stream, {"job": str(i)})
        client.xgroup_create(queue.stream, queue.group, id="0")
        client.xreadgroup(queue.group, "c1", {queue.stream: ">"}, count=2)  # 2 pending
        poller = QueuePoller(queue)
        poller.poll_once()
        assert REGISTRY.get_sample_value("workbench_queue_depth", {"queue": queue.stream}) == 5
        pending = client.xpending_range(queue.stream, queue.group, "-", "+", 10)
        client.xack(queue.stream, queue.group, *[m["message_id"] for m in pending])
        poller.poll_once()
        assert REGISTRY.get_sample_value("workbench_queue_depth", {"queue": queue.stream}) == 3
    finally:
        client.delete(queue.stream)
        client.close()

    down = QueuePoller(QueueSettings(url=f"redis://:s3cret@127.0.0.1:{_free_port()}/0"))
    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING", format="{message}")
    try:
        down.poll_once()
        down.poll_once()  # warned once, not per poll
    finally:
        logger.remove(sink)
    assert len(messages) == 1 and "queue depth unavailable" in messages[0]
    assert "s3cret" not in messages[0]
    assert REGISTRY.get_sample_value("workbench_queue_depth", {"queue": down.queue.stream}) is None
