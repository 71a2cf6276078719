"""Ingest jobs of the HTTP API: `POST /v1/ingest` makes one, `GET /v1/jobs/{id}` follows it.

Jobs run where the settings say (``api.jobs``):

* ``process`` (the default): one at a time on a thread of the API's process, through
  the same `Workbench.ingest` a notebook calls; progress is the run's own count
  of photos handled out of photos listed.
* ``broker``: the photos are published to the broker (`workbench enqueue`) for
  `workbench worker`s; progress is how many of them the catalog has finished
  (analysed, without faces, or an error).

Jobs are kept in the API's memory (the newest `KEPT_JOBS`); what they wrote is in
the catalog like any ingest's, and each in-process job names its catalog run.
"""

from __future__ import annotations

import datetime as dt
import queue
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loguru import logger
from sqlalchemy import func, select

from workbench.errors import NotFoundError
from workbench.store.models import Photo, utcnow

if TYPE_CHECKING:
    from workbench.core import Workbench
    from workbench.ingest.pipeline import Ingest

JobStatus = Literal["queued", "running", "done", "failed"]
KEPT_JOBS = 1000
SHOWN_ERRORS = 100
"""Photo errors a job's answer lists (the catalog keeps them all)."""


@dataclass
class Job:
    """One ingest job and how far it has got."""

    id: str
    sources: list[str]
    source: str | None
    where: Literal["process", "broker"]
    status: JobStatus = "queued"
    created_at: dt.datetime = field(default_factory=utcnow)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    total: int | None = None
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    run_id: int | None = None
    uploads: Path | None = None
    # Broker jobs: the photos published, to count those the catalog has finished.
    published: list[tuple[str, str]] = field(default_factory=list)
    run: Ingest | None = None

    def to_dict(self) -> dict[str, Any]:
        run = self.run
        if run is not None and self.status == "running":  # live counts of the run
            # Nothing counted yet: the sources are still being listed.
            self.total = run.total if run.total or run.done else None
            self.done = run.done
            self.counts = run.report.counts()
        return {
            "id": self.id,
            "status": self.status,
            "where": self.where,
            "sources": self.sources,
            "source": self.source,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "progress": {"done": self.done, "total": self.total},
            "counts": self.counts,
            "errors": self.errors[:SHOWN_ERRORS],
            "error": self.error,
            "run_id": self.run_id,
        }


class JobRunner:
    """Runs the API's ingest jobs, one at a time, and answers how each is doing."""

    def __init__(self, wb: Workbench) -> None:
        self.wb = wb
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._todo: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    # ---- making and reading jobs -----------------------------------------------
    def submit(self, sources: list[str], source: str | None, uploads: Path | None = None) -> Job:
        where = self.wb.settings.api.jobs
        job = Job(uuid.uuid4().hex, sources, source, where, uploads=uploads)
        self._keep(job)
        if where == "broker":
            self._publish(job)
        else:
            self._start_thread()
            self._todo.put(job)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(
                f"no job {job_id!r} in this API process (jobs are kept in memory, the newest "
                f"{KEPT_JOBS}; what a job wrote is in the catalog: GET /v1/stats)"
            )
        if job.where == "broker" and job.status == "running":
            self._count_published(job)
        return job

    def close(self) -> None:
        if self._thread is not None:
            self._todo.put(None)

    def _keep(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEPT_JOBS:
                self._jobs.popitem(last=False)

    # ---- in the API's process ------------------------------------------------
    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="api-ingest", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while (job := self._todo.get()) is not None:
            self._run(job)

    def _run(self, job: Job) -> None:
        job.status, job.started_at = "running", utcnow()
        watch: Callable[[Ingest], None] = lambda run: setattr(job, "run", run)  # noqa: E731
        try:
            report = self.wb.ingest(job.sources, source=job.source, progress=False, watch=watch)
        except Exception as e:  # noqa: BLE001 - the job fails in words; the API goes on
            logger.exception("API ingest job {} failed", job.id)
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"
            self._drop_run(job)
        else:
            job.status = "done"
            job.counts, job.run_id = report.counts(), report.run_id
            job.errors = [{"uri": u, "error": r} for u, r in report.error_details]
            self._drop_run(job)
            if report.source_errors and not report.photos:
                job.status = "failed"
                job.error = "; ".join(f"{s}: {r}" for s, r in report.source_errors)
        finally:
            job.finished_at = utcnow()

    @staticmethod
    def _drop_run(job: Job) -> None:
        run = job.run
        if run is not None:
            job.total, job.done, job.run_id = run.total, run.done, run.report.run_id
            job.counts = job.counts or run.report.counts()
        job.run = None

    # ---- on the workers ------------------------------------------------------
    def _publish(self, job: Job) -> None:
        from workbench.ingest.queue import list_jobs, publish

        settings = self.wb.settings
        try:
            photos, errors, _listed = list_jobs(job.sources, settings, job.source)
            job.errors = [{"uri": s, "error": e} for s, e in errors]
            if photos:
                publish(photos, settings.queue)
        except Exception as e:  # noqa: BLE001
            job.status, job.error, job.finished_at = "failed", str(e), utcnow()
            return
        job.published = [(p.source, p.uri) for p in photos]
        job.total, job.started_at = len(photos), utcnow()
        job.status = "running" if photos else ("failed" if errors else "done")
        if not photos:
            job.finished_at = utcnow()
            job.error = "; ".join(f"{s}: {e}" for s, e in errors) or None

    def _count_published(self, job: Job) -> None:
        by_source: dict[str, list[str]] = {}
        for source, uri in job.published:
            by_source.setdefault(source, []).append(uri)
        finished = 0
        counts: dict[str, int] = {}
        with self.wb.catalog.session() as s:
            for source, uris in by_source.items():
                for i in range(0, len(uris), 500):
                    rows = s.execute(
                        select(Photo.status, func.count())
                        .where(Photo.source == source, Photo.uri.in_(uris[i : i + 500]))
                        .where(Photo.status != "pending")
                        .group_by(Photo.status)
                    ).all()
                    for status, n in rows:
                        counts[status] = counts.get(status, 0) + int(n)
                        finished += int(n)
        job.done = finished
        job.counts = counts
        if job.total is not None and finished >= job.total:
            job.status, job.finished_at = "done", utcnow()


def remove_uploads(folder: Path | None) -> None:
    """Drop an upload folder that holds nothing the catalog points at (a refused request)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["KEPT_JOBS", "Job", "JobRunner", "JobStatus", "remove_uploads"]
