"""``workbench serve-metrics``: this process's metrics plus catalog figures for Prometheus.

Workers serve their own counters and stage histograms (``monitoring.serve_metrics``);
this command adds what only the catalog knows (photos by status and source, faces
per pack, runs), computed on each scrape, so one scrape target describes the
whole collection whichever process did the work.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from loguru import logger
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from workbench.errors import StoreError, WorkbenchError
from workbench.redaction import redact_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from workbench.settings import QueueSettings, WorkbenchSettings

CATALOG_METRIC_NAMES: tuple[str, ...] = (
    "workbench_catalog_up",
    "workbench_catalog_scrape_seconds",
    "workbench_catalog_photos",
    "workbench_catalog_faces",
    "workbench_catalog_faces_indexed",
    "workbench_catalog_runs",
)
"""Gauges :class:`CatalogCollector` reports (``workbench serve-metrics`` only)."""

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class CatalogCollector(Collector):
    """Catalog counts read on each scrape: photos, faces, indexed faces, runs.

    Only grouped counts over indexed columns are read, so a scrape stays
    cheap at millions of photos. The vector index itself is not opened: a
    Milvus Lite file admits one process, and that belongs to the ingest or
    the notebook; ``workbench_catalog_faces_indexed`` (faces the catalog
    recorded as written to the index) stands in for the index's count.

    A catalog that cannot be read within ``timeout_s`` (locked, down,
    unreachable) gives ``workbench_catalog_up 0`` and no counts, never a
    failed scrape.
    """

    def __init__(self, settings: WorkbenchSettings, timeout_s: float = 5.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._engine_: Engine | None = None
        self._was_up = True
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Any]:
        # Registering must not touch the database.
        return []

    def collect(self) -> Iterable[Any]:
        start = time.perf_counter()
        try:
            with self._lock:
                families = self._read()
            up = 1.0
        except Exception as e:  # noqa: BLE001 — any failure is reported as up=0, not a 500
            # Warn when it goes down, not on every scrape while it stays down.
            log = logger.warning if self._was_up else logger.debug
            log("catalog metrics unavailable: {}", _short(e))
            families, up = [], 0.0
        self._was_up = up == 1.0
        yield GaugeMetricFamily(
            "workbench_catalog_up",
            "1 when the last scrape read the catalog, 0 when it could not (busy, down).",
            value=up,
        )
        yield GaugeMetricFamily(
            "workbench_catalog_scrape_seconds",
            "Time the last scrape spent reading the catalog, in seconds.",
            value=time.perf_counter() - start,
        )
        yield from families

    def _engine(self) -> Engine:
        """An engine of its own: short lock waits, read-only, never creates the catalog."""
        if self._engine_ is not None:
            return self._engine_
        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url

        url = make_url(self.settings.catalog_url)
        ms = int(self.timeout_s * 1000)
        if url.get_backend_name() == "sqlite":
            path = Path(url.database or "")
            if not path.is_file():
                raise StoreError(f"no catalog at {path} yet (nothing ingested)")
            engine = create_engine(url, connect_args={"timeout": self.timeout_s})

            def pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute(f"PRAGMA busy_timeout={ms}")
                cur.execute("PRAGMA query_only=ON")
                cur.close()

            event.listen(engine, "connect", pragmas)
        elif url.get_backend_name() == "postgresql":
            engine = create_engine(
                url,
                pool_pre_ping=True,
                connect_args={
                    "connect_timeout": max(1, round(self.timeout_s)),
                    "options": f"-c statement_timeout={ms}",
                },
            )
        else:
            engine = create_engine(url, pool_pre_ping=True)
        self._engine_ = engine
        return engine

    def _read(self) -> list[GaugeMetricFamily]:
        from sqlalchemy import func, select

        from workbench.store.catalog import Face, Photo, Run

        with self._engine().connect() as conn:
            photo_rows = conn.execute(
                select(Photo.source, Photo.status, func.count()).group_by(
                    Photo.source, Photo.status
                )
            ).all()
            face_rows = conn.execute(
                select(Face.pack, Face.indexed, func.count()).group_by(Face.pack, Face.indexed)
            ).all()
            run_rows = conn.execute(
                select(Run.kind, Run.status, func.count()).group_by(Run.kind, Run.status)
            ).all()
            conn.rollback()
        photos = GaugeMetricFamily(
            "workbench_catalog_photos",
            "Photos in the catalog, by source and status.",
            labels=["source", "status"],
        )
        for source, status, n in photo_rows:
            photos.add_metric([str(source), str(status)], n)
        faces = GaugeMetricFamily(
            "workbench_catalog_faces", "Faces in the catalog, by model pack.", labels=["pack"]
        )
        indexed = GaugeMetricFamily(
            "workbench_catalog_faces_indexed",
            "Faces the catalog records as written to the vector index, by model pack.",
            labels=["pack"],
        )
        totals: dict[str, list[int]] = {}
        for pack, is_indexed, n in face_rows:
            counts = totals.setdefault(str(pack), [0, 0])
            counts[0] += n
            if is_indexed:
                counts[1] += n
        for pack, (total, done) in sorted(totals.items()):
            faces.add_metric([pack], total)
            indexed.add_metric([pack], done)
        runs = GaugeMetricFamily(
            "workbench_catalog_runs",
            "Pipeline runs recorded in the catalog, by kind and status.",
            labels=["kind", "status"],
        )
        for kind, status, n in run_rows:
            runs.add_metric([str(kind), str(status)], n)
        return [photos, faces, indexed, runs]


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


class QueuePoller:
    """Sets ``workbench_queue_depth{queue=<stream>}`` from the broker every few seconds.

    Depth as the workers report it (`workbench.queue.queue_state`): jobs of the
    workers' consumer group waiting plus delivered but not yet acknowledged.
    A polling thread rather than a collector, because the gauge is already
    registered by ``workbench.monitoring`` and a second family of that name
    would break the exposition.
    """

    def __init__(self, queue: QueueSettings, interval_s: float = 5.0) -> None:
        self.queue, self.interval_s = queue, interval_s
        self._stop = threading.Event()
        self._warned = False

    def poll_once(self) -> None:
        from workbench import monitoring as mon
        from workbench.queue import queue_state

        stream = self.queue.stream
        try:
            mon.QUEUE_DEPTH.labels(queue=stream).set(queue_state(self.queue).depth)
            self._warned = False
        except Exception as e:  # noqa: BLE001 — the broker may come and go; keep serving
            if not self._warned:
                logger.warning(
                    "queue depth unavailable: {}",
                    _short(e).replace(self.queue.url, redact_url(self.queue.url)),
                )
                self._warned = True
            with contextlib.suppress(KeyError):
                mon.QUEUE_DEPTH.remove(stream)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.poll_once()
                self._stop.wait(self.interval_s)

        threading.Thread(target=loop, name="workbench-queue-depth", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def register_catalog_collector(settings: WorkbenchSettings) -> CatalogCollector:
    """Add a :class:`CatalogCollector` for ``settings``' catalog to the default registry."""
    collector = CatalogCollector(settings)
    REGISTRY.register(collector)
    return collector


@click.command("serve-metrics")
@click.option("--port", type=int, default=9464, show_default=True, help="TCP port (0: any free).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 exposes the metrics to the network.",
)
@click.option(
    "--queue-depth/--no-queue-depth",
    default=False,
    show_default=True,
    help="Also report the broker queue's depth (settings queue.url, stream and group, "
    "i.e. WORKBENCH_QUEUE__URL ...); needs the redis package.",
)
@click.pass_context
def serve_metrics(ctx: click.Context, port: int, host: str, queue_depth: bool) -> None:
    """Serve Prometheus metrics: this process, the catalog's counts and the queue depth.

    Scrape http://HOST:PORT/metrics. Catalog figures (workbench_catalog_*)
    are read on each scrape; no model and no vector index is opened, so it
    runs beside an ingest, the workers and the notebooks. Stops on Ctrl-C.
    """
    from workbench import monitoring as mon
    from workbench.cli import _settings

    settings = _settings(ctx)
    if host not in LOCAL_HOSTS:
        click.echo(
            f"warning: serving metrics on {host}, reachable from other machines; "
            "use --host 127.0.0.1 unless Prometheus scrapes from elsewhere",
            err=True,
        )
    register_catalog_collector(settings)
    try:
        bound = mon.serve_metrics(port, host)
    except WorkbenchError as e:
        raise click.ClickException(str(e)) from e
    poller = None
    if queue_depth:
        poller = QueuePoller(settings.queue)
        poller.start()
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"serving metrics on http://{shown}:{bound}/metrics (Ctrl-C stops)", err=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if poller is not None:
            poller.stop()


__all__ = ["CATALOG_METRIC_NAMES", "CatalogCollector", "QueuePoller", "serve_metrics"]
