"""The catalog's counts as Prometheus gauges (``workbench serve-metrics``), read on each scrape.

Workers serve their own counters and stage histograms (`workbench.monitoring.metrics`);
this adds what only the catalog knows (photos by status and source, faces per pack,
runs), so one scrape target describes the whole collection whichever process did
the work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from workbench.errors import StoreError, error_line

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from workbench.settings import WorkbenchSettings

CATALOG_METRIC_NAMES: tuple[str, ...] = (
    "workbench_catalog_up",
    "workbench_catalog_scrape_seconds",
    "workbench_catalog_photos",
    "workbench_catalog_faces",
    "workbench_catalog_faces_indexed",
    "workbench_catalog_runs",
)
"""Gauges :class:`CatalogCollector` reports (``workbench serve-metrics`` only)."""


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
            log("catalog metrics unavailable: {}", error_line(e))
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

        from workbench.store.models import Face, Photo, Run

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


def register_catalog_collector(settings: WorkbenchSettings) -> CatalogCollector:
    """Add a :class:`CatalogCollector` for ``settings``' catalog to the default registry."""
    collector = CatalogCollector(settings)
    REGISTRY.register(collector)
    return collector


__all__ = ["CATALOG_METRIC_NAMES", "CatalogCollector", "register_catalog_collector"]
