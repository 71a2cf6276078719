"""`workbench worker`: consume photo jobs and run detection + embedding (`workbench.ingest.queue`).

A worker is one long ingest run (`Ingest.begin` / `feed` / `end`) fed by two
FastStream subscribers on the same stream and consumer group:

- new jobs, a batch at a time (``queue.batch``), analysed together;
- jobs another worker left unacknowledged for ``queue.reclaim_after`` seconds
  (it died), claimed with XAUTOCLAIM and done one at a time, so that a photo
  that kills its worker takes down no innocent batch-mates twice. A job
  delivered more than ``queue.max_deliveries`` times is recorded as that
  photo's error (kind ``poison``) instead of being tried again.

A job is acknowledged only after its photo and faces are committed and its
vectors written; a failure of the catalog or the index leaves it pending, to
be claimed again. Starting, a worker pushes vectors of faces that a killed
worker committed but did not index (`FaceStore.sync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from workbench._optional import require
from workbench.errors import WorkbenchError
from workbench.faces.registry import open_pack
from workbench.ingest.pipeline import Ingest, IngestReport
from workbench.ingest.queue import (
    PhotoJob,
    check_broker_url,
    ensure_group,
    queue_state,
    redis_client,
)
from workbench.monitoring import metrics as mon
from workbench.redaction import redact_url
from workbench.settings import WorkbenchSettings
from workbench.store.faces import FaceStore


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class WorkerOptions:
    name: str
    until_empty: bool = False
    """Exit once no job waits and none is pending (a batch run, and the tests)."""
    metrics_port: int | None = None
    idle_poll: float = 1.0


class PhotoWorker:
    """Analyses photo jobs into one workbench (its catalog and vector index)."""

    def __init__(self, settings: WorkbenchSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.store = FaceStore.open(settings)
        self.pack = open_pack(settings.pack, settings)
        self.ingest = Ingest(self.store, settings, self.pack, progress=False)
        self._opened: dict[str, Any] = {}
        self._lock = threading.Lock()  # one batch at a time: Ingest is not re-entrant

    def start(self) -> None:
        """Load the pack, recover what a killed worker left unindexed, open the run."""
        self.ingest.begin([f"worker:{self.name}"])
        logger.info(
            "worker {} ready: pack {}, catalog {}, vectors {}",
            self.name,
            self.pack.name,
            redact_url(self.settings.catalog_url),
            self.settings.milvus_uri,
        )

    def process(self, jobs: list[PhotoJob], redelivered: bool = False) -> None:
        """Analyse these photos and commit them (raises if the catalog or index fails)."""
        with self._lock:
            refs = [job.ref(self.settings, self._opened) for job in jobs]
            self.ingest.feed(refs)
            if redelivered:
                # The worker that had this job may have died between committing
                # faces and writing their vectors.
                self.store.sync(self.pack.name)

    def give_up(self, job: PhotoJob, deliveries: int) -> None:
        """Record a photo whose job was delivered too often as an error, unless it is done."""
        with self._lock:
            catalog = self.store.catalog
            known = catalog.known_photo(job.origin, job.uri, None)
            if (
                known is not None
                and known.sha256 is not None
                and catalog.analysed_by(known, self.pack.name)
            ):
                logger.bind(photo=known.id).info(
                    "{}: delivered {} times but already analysed; acknowledged", job.uri, deliveries
                )
                return
            reason = (
                f"gave up after {deliveries} deliveries: the worker processing this photo "
                "stopped each time (crashed or was killed) before finishing it"
            )
            ref = job.ref(self.settings, self._opened)
            self.ingest.fail([ref], reason, kind="poison")

    def stop(self, status: str = "done") -> IngestReport:
        try:
            return self.ingest.end(status)
        finally:
            self.store.close()


def run_worker(settings: WorkbenchSettings, options: WorkerOptions) -> IngestReport:
    """Consume jobs until stopped (SIGINT / SIGTERM) or, with ``until_empty``, drained."""
    check_broker_url(settings.queue.url)
    require("faststream.redis", "workers", "the job queue")
    queue_state(settings.queue)  # an unreachable broker is said before models load
    if options.metrics_port is not None:
        port = mon.serve_metrics(options.metrics_port)
        logger.info("worker {} metrics on http://127.0.0.1:{}/metrics", options.name, port)
    worker = PhotoWorker(settings, options.name)
    worker.start()
    status = "interrupted"
    try:
        asyncio.run(_consume(worker, settings, options))
        status = "done"
    finally:
        report = worker.stop(status)
    return report


async def _consume(
    worker: PhotoWorker, settings: WorkbenchSettings, options: WorkerOptions
) -> None:
    from faststream import AckPolicy
    from faststream.redis import RedisBroker, StreamSub
    from faststream.redis.annotations import RedisBatchStreamMessage, RedisStreamMessage

    q = settings.queue
    client = redis_client(q)
    ensure_group(client, q)
    broker = RedisBroker(q.url, logger=None)
    busy = 0  # batches in hand (the drain check must not stop the worker mid-batch)

    async def in_hand(fn: Callable[..., None], *args: Any) -> None:
        """Run the worker's blocking ``fn`` in a thread, counted as work in hand."""
        nonlocal busy
        busy += 1
        try:
            await asyncio.to_thread(fn, *args)
        finally:
            busy -= 1

    async def run_or_leave_pending(jobs: list[PhotoJob], redelivered: bool) -> bool:
        """Process jobs; on a failure of the catalog or the index, say so and leave them
        unacknowledged: they are claimed again after ``reclaim_after``, and recorded as
        errors once delivered ``max_deliveries`` times."""
        try:
            await in_hand(worker.process, jobs, redelivered)
            return True
        except Exception as e:  # noqa: BLE001 - the worker goes on with the next jobs
            mon.ERRORS.labels(kind="store").inc()
            logger.error(
                "worker {}: {} jobs failed and stay pending (tried again after {} s): {}: {}",
                options.name,
                len(jobs),
                q.reclaim_after,
                type(e).__name__,
                e,
            )
            return False

    @broker.subscriber(
        stream=StreamSub(
            q.stream,
            group=q.group,
            consumer=options.name,
            batch=True,
            max_records=q.batch,
            polling_interval=int(options.idle_poll * 1000),
        ),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_jobs(bodies: list[Any], msg: RedisBatchStreamMessage) -> None:
        jobs = _parse(bodies)
        if jobs and not await run_or_leave_pending(jobs, redelivered=False):
            return
        await msg.ack()
        await msg.delete()  # done: keep the stream short (lag stays exact)

    @broker.subscriber(
        stream=StreamSub(
            q.stream,
            group=q.group,
            consumer=options.name,
            min_idle_time=int(q.reclaim_after * 1000),
            polling_interval=int(max(options.idle_poll, 1.0) * 1000),
        ),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_reclaimed(body: Any, msg: RedisStreamMessage) -> None:
        jobs = _parse([body])
        if jobs:
            deliveries = await msg.get_delivery_count()
            logger.info(
                "worker {} took over {} (delivery {})", options.name, jobs[0].uri, deliveries
            )
            if deliveries > q.max_deliveries:
                await in_hand(worker.give_up, jobs[0], deliveries)
            elif not await run_or_leave_pending(jobs, redelivered=True):
                return
        await msg.ack()
        await msg.delete()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await broker.connect()
    except Exception as e:  # noqa: BLE001
        raise WorkbenchError(f"cannot reach the broker at {redact_url(q.url)}: {e}") from e
    await broker.start()
    logger.info(
        "worker {} consuming {} ({}) on {}", options.name, q.stream, q.group, redact_url(q.url)
    )
    try:
        empty_since: float | None = None
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):  # not the builtin before 3.11
                await asyncio.wait_for(stop.wait(), timeout=options.idle_poll)
            state = await asyncio.to_thread(queue_state, q, client)
            mon.QUEUE_DEPTH.labels(queue=q.stream).set(state.depth)
            if options.until_empty and state.empty and busy == 0:
                # Twice in a row, a poll apart: a batch just read is pending at once.
                if empty_since is not None:
                    logger.info("worker {}: the queue is empty; stopping", options.name)
                    break
                empty_since = time.monotonic()
            else:
                empty_since = None
    finally:
        await broker.stop()
        client.close()


def _parse(bodies: list[Any]) -> list[PhotoJob]:
    """The jobs of these message bodies; a malformed one is logged and dropped (it would
    fail the same way every time)."""
    jobs = []
    for body in bodies:
        try:
            jobs.append(PhotoJob.from_message(body))
        except WorkbenchError as e:
            mon.ERRORS.labels(kind="source").inc()
            logger.error("dropped a malformed photo job: {}", e)
    return jobs


__all__ = ["PhotoWorker", "WorkerOptions", "default_worker_name", "run_worker"]
