"""Photo jobs on a broker: `workbench enqueue` publishes them, `workbench worker` consumes them.

The broker is Redis, through FastStream: one stream of jobs (one message per
photo) read by one consumer group, so each job goes to one worker and stays
*pending* until that worker acknowledges it, after its photo and faces are
committed and its vectors written. A worker that dies leaves its jobs
pending; after ``queue.reclaim_after`` seconds another worker (or the same one,
restarted) claims them (XAUTOCLAIM) and does them again. Writes are
idempotent (a photo is keyed by its sha256 and analysed once per pack), so
delivery at least once loses nothing and duplicates nothing.

A job names a photo the way the catalog does (source, origin, uri, metadata):
remote photos (Yandex.Disk, VK) are read from anywhere; local files and zip
archives must be at the same path on every worker (shared storage).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from workbench._optional import require
from workbench.errors import ConfigurationError, WorkbenchError, error_line
from workbench.monitoring import metrics as mon
from workbench.redaction import redact_url, redact_value
from workbench.settings import QueueSettings, WorkbenchSettings
from workbench.sources import PhotoRef, open_source, reopen_photo

JOB_VERSION = 1


@dataclass(frozen=True)
class PhotoJob:
    """One photo to analyse, as published on the stream."""

    source: str
    origin: str
    uri: str
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, ref: PhotoRef) -> PhotoJob:
        return cls(ref.source, ref.origin, ref.uri, dict(ref.metadata))

    def to_message(self) -> dict[str, Any]:
        return {
            "v": JOB_VERSION,
            "source": self.source,
            "origin": self.origin,
            "uri": self.uri,
            "meta": redact_value(self.meta),  # the broker stores jobs: no signed URL, no token
        }

    @classmethod
    def from_message(cls, body: Any) -> PhotoJob:
        """The job of a message body, or a `WorkbenchError` saying what is wrong with it."""
        if not isinstance(body, dict):
            raise WorkbenchError(f"a photo job must be a JSON object, got {type(body).__name__}")
        if body.get("v") != JOB_VERSION:
            raise WorkbenchError(
                f"photo job version {body.get('v')!r} is not {JOB_VERSION} (enqueued by another"
                " version of the workbench?)"
            )
        missing = [k for k in ("source", "origin", "uri") if not isinstance(body.get(k), str)]
        if missing:
            raise WorkbenchError(f"photo job without {', '.join(missing)}: {body!r:.200}")
        meta = body.get("meta") or {}
        return cls(body["source"], body["origin"], body["uri"], dict(meta))

    def ref(self, settings: WorkbenchSettings, opened: dict[str, Any]) -> PhotoRef:
        """The photo's reference, to read it here (``opened`` caches sources)."""
        return reopen_photo(self.source, self.origin, self.uri, self.meta, settings, opened)


@dataclass
class EnqueueReport:
    jobs: int = 0
    sources: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "sources": self.sources,
            "errors": [{"source": s, "error": e} for s, e in self.errors],
        }


@dataclass(frozen=True)
class QueueState:
    """Jobs not yet delivered to any worker, and delivered but not yet acknowledged."""

    waiting: int
    pending: int
    consumers: int = 0

    @property
    def depth(self) -> int:
        return self.waiting + self.pending

    @property
    def empty(self) -> bool:
        return self.depth == 0

    def to_dict(self) -> dict[str, int]:
        return {"waiting": self.waiting, "pending": self.pending, "consumers": self.consumers}


def check_broker_url(url: str) -> None:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        scheme = url.split("://", 1)[0] if "://" in url else url
        raise ConfigurationError(
            f"broker URL {redact_url(url)!r}: only Redis (redis://host:6379/0) is supported; "
            f"{scheme!r} is not (RabbitMQ and Kafka need their own acknowledgement and"
            " redelivery handling, not written yet)"
        )


def redis_client(queue: QueueSettings) -> Any:
    """A synchronous redis-py client of the broker (for group set-up and queue depth)."""
    check_broker_url(queue.url)
    redis = require("redis", "workers", "the job queue")
    return redis.Redis.from_url(queue.url, socket_connect_timeout=5, socket_timeout=30)


def ensure_group(client: Any, queue: QueueSettings) -> None:
    """Create the stream and the workers' group from the stream's first entry.

    Made before the first job is published: a group created later (at "$")
    would never deliver the jobs already on the stream.
    """
    try:
        client.xgroup_create(queue.stream, queue.group, id="0", mkstream=True)
    except Exception as e:  # noqa: BLE001 - redis.ResponseError when it exists
        if "BUSYGROUP" not in str(e):
            raise WorkbenchError(
                f"cannot create the job group on {redact_url(queue.url)}: {e}"
            ) from e


def queue_state(queue: QueueSettings, client: Any | None = None) -> QueueState:
    """How many jobs wait and how many are being worked on (or were, by a dead worker)."""
    own = client is None
    client = client or redis_client(queue)
    try:
        if not client.exists(queue.stream):
            return QueueState(0, 0)
        groups = {
            _text(g["name"]): g for g in client.xinfo_groups(queue.stream)
        }  # redis ≥ 7 reports each group's lag
        group = groups.get(queue.group)
        if group is None:
            return QueueState(int(client.xlen(queue.stream)), 0)
        pending = int(group.get("pending") or 0)
        lag = group.get("lag")
        if lag is None:  # redis cannot tell (entries deleted past the group's position)
            lag = max(0, int(client.xlen(queue.stream)) - pending)
        return QueueState(int(lag), pending, int(group.get("consumers") or 0))
    except WorkbenchError:
        raise
    except Exception as e:  # noqa: BLE001 - connection refused, wrong type, ...
        raise WorkbenchError(f"cannot read the job queue at {redact_url(queue.url)}: {e}") from e
    finally:
        if own:
            client.close()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def list_jobs(
    specs: Iterable[str], settings: WorkbenchSettings, source: str | None = None
) -> tuple[list[PhotoJob], list[tuple[str, str]], int]:
    """The photo jobs of these sources, the sources that could not be listed (and why),
    and how many were listed."""
    jobs: list[PhotoJob] = []
    errors: list[tuple[str, str]] = []
    listed = 0
    for spec in specs:
        try:
            refs = list(open_source(spec, settings, source).refs())
        except WorkbenchError as e:
            logger.error("{}: {}", spec, e)
            errors.append((spec, str(e)))
            continue
        listed += 1
        jobs.extend(PhotoJob.of(r) for r in refs)
    return jobs, errors, listed


def enqueue(
    specs: Sequence[str], settings: WorkbenchSettings, source: str | None = None
) -> EnqueueReport:
    """Publish one job per photo of these sources (folders, zips, Yandex.Disk, VK).

    A source that cannot be listed is reported and the others still go.
    """
    jobs, errors, listed = list_jobs(specs, settings, source)
    report = EnqueueReport(jobs=len(jobs), sources=listed, errors=errors)
    if jobs:
        publish(jobs, settings.queue)
    logger.info(
        "enqueued {} photo jobs from {} sources on {}",
        len(jobs),
        listed,
        redact_url(settings.queue.url),
    )
    return report


def publish(jobs: Sequence[PhotoJob], queue: QueueSettings) -> None:
    """Put jobs on the stream through FastStream's Redis broker."""
    client = redis_client(queue)
    try:
        ensure_group(client, queue)
    finally:
        client.close()
    asyncio.run(_publish(jobs, queue))


async def _publish(jobs: Sequence[PhotoJob], queue: QueueSettings) -> None:
    faststream_redis = require("faststream.redis", "workers", "the job queue")
    broker = faststream_redis.RedisBroker(queue.url, logger=None)
    try:
        await broker.connect()
    except Exception as e:  # noqa: BLE001
        raise WorkbenchError(f"cannot reach the broker at {redact_url(queue.url)}: {e}") from e
    try:
        # A few in flight at a time: the client's connection pool is bounded.
        for i in range(0, len(jobs), 32):
            chunk = jobs[i : i + 32]
            await asyncio.gather(
                *(broker.publish(j.to_message(), stream=queue.stream) for j in chunk)
            )
    finally:
        await broker.stop()


class QueuePoller:
    """Sets ``workbench_queue_depth{queue=<stream>}`` from the broker every few seconds.

    Depth as the workers report it (`workbench.ingest.queue.queue_state`): jobs of the
    workers' consumer group waiting plus delivered but not yet acknowledged.
    A polling thread rather than a collector, because the gauge is already
    registered by ``workbench.monitoring.metrics`` and a second family of that name
    would break the exposition.
    """

    def __init__(self, queue: QueueSettings, interval_s: float = 5.0) -> None:
        self.queue, self.interval_s = queue, interval_s
        self._stop = threading.Event()
        self._warned = False

    def poll_once(self) -> None:
        stream = self.queue.stream
        try:
            mon.QUEUE_DEPTH.labels(queue=stream).set(queue_state(self.queue).depth)
            self._warned = False
        except Exception as e:  # noqa: BLE001 — the broker may come and go; keep serving
            if not self._warned:
                logger.warning(
                    "queue depth unavailable: {}",
                    error_line(e).replace(self.queue.url, redact_url(self.queue.url)),
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


__all__ = [
    "QueuePoller",
    "EnqueueReport",
    "PhotoJob",
    "QueueState",
    "enqueue",
    "ensure_group",
    "list_jobs",
    "publish",
    "queue_state",
    "redis_client",
]
