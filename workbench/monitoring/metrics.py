"""Prometheus metrics (prometheus-client) of the pipeline and search, and their HTTP endpoint.

Metrics are process-wide singletons in ``prometheus_client.REGISTRY``:

>>> from workbench.monitoring import metrics as mon
>>> mon.PHOTOS_PROCESSED.labels(pack="local", status="done").inc()   # doctest: +SKIP
>>> with mon.stage("decode"):                                        # doctest: +SKIP
...     image = decode(data)
>>> mon.serve_metrics(9464)                                          # doctest: +SKIP

Every name the package registers starts with ``workbench_``; :data:`METRIC_NAMES`
lists them (the Grafana dashboard in ``dashboards/grafana`` uses only those).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from loguru import logger
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from workbench.errors import ConfigurationError
from workbench.monitoring.system import SYSTEM_METRIC_NAMES, register_system_collector

Stage = Literal["decode", "detect", "embed", "store"]
STAGES: tuple[str, ...] = ("decode", "detect", "embed", "store")
PhotoStatus = Literal["done", "no_faces", "error", "skipped", "pending"]
ErrorKind = Literal["source", "read", "decode", "analysis", "store", "poison"]
ERROR_KINDS: tuple[str, ...] = ("source", "read", "decode", "analysis", "store", "poison")

# 1 ms (a small decode) to 60 s (a large batch on CPU); roughly x2.5 per step.
STAGE_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
# A search is one embed (when given a photo) plus one index query: 1 ms to 30 s.
SEARCH_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

_M = TypeVar("_M")
_lock = threading.Lock()


def _metric(factory: Callable[..., _M], name: str, documentation: str, **kwargs: Any) -> _M:
    """The collector called ``name`` in the default registry, created on first use.

    A module imported twice (``importlib.reload``, a notebook's autoreload)
    gets the existing collector instead of a ``Duplicated timeseries`` error.
    """
    with _lock:
        # prometheus_client keeps no public lookup by name; the private map is
        # stable since 0.4 and the fallback below still registers correctly.
        existing = getattr(REGISTRY, "_names_to_collectors", {}).get(name)
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        return factory(name, documentation, **kwargs)


PHOTOS_PROCESSED: Counter = _metric(
    Counter,
    "workbench_photos_processed",
    "Photos the pipeline finished, by model pack and outcome "
    "(done, no_faces, error, skipped, pending).",
    labelnames=("pack", "status"),
)
FACES_PROCESSED: Counter = _metric(
    Counter,
    "workbench_faces_processed",
    "Faces detected and embedded, by model pack.",
    labelnames=("pack",),
)
ERRORS: Counter = _metric(
    Counter,
    "workbench_errors",
    "Errors by kind (source, read, decode, analysis, store, poison).",
    labelnames=("kind",),
)
STAGE_SECONDS: Histogram = _metric(
    Histogram,
    "workbench_stage_seconds",
    "Time spent in one pipeline stage call (decode, detect, embed, store), in seconds.",
    labelnames=("stage",),
    buckets=STAGE_BUCKETS,
)
QUEUE_DEPTH: Gauge = _metric(
    Gauge,
    "workbench_queue_depth",
    "Messages waiting in a work queue, by queue name.",
    labelnames=("queue",),
)
SEARCH_SECONDS: Histogram = _metric(
    Histogram,
    "workbench_search_seconds",
    "Time of one face search (embedding the sample included), in seconds.",
    buckets=SEARCH_BUCKETS,
)

API_REQUEST_SECONDS: Histogram = _metric(
    Histogram,
    "workbench_api_request_seconds",
    "Time the HTTP API took to answer a request, by route template, method and status code.",
    labelnames=("route", "method", "status"),
    buckets=SEARCH_BUCKETS,
)

# Known label values exist from the start, so a dashboard shows 0 rather than
# "no data" and rate() has a first sample to start from.
for _stage in STAGES:
    STAGE_SECONDS.labels(stage=_stage)
for _kind in ERROR_KINDS:
    ERRORS.labels(kind=_kind)


@contextmanager
def stage(name: Stage | str) -> Iterator[None]:
    """Time the block into ``workbench_stage_seconds{stage=name}``.

    ``name`` is one of decode, detect, embed, store. The time is recorded
    when the block raises too (a failed decode still cost its time).
    """
    start = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(stage=name).observe(time.perf_counter() - start)


def observe_stage(name: Stage | str, seconds: float) -> None:
    """Record ``seconds`` for stage ``name``, measured by the caller (e.g. split per photo)."""
    STAGE_SECONDS.labels(stage=name).observe(max(0.0, float(seconds)))


@contextmanager
def timed_search() -> Iterator[None]:
    """Time the block into ``workbench_search_seconds``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        SEARCH_SECONDS.observe(time.perf_counter() - start)


# CPU, memory and GPU figures come with every process's metrics.
SYSTEM_COLLECTOR = register_system_collector()

METRIC_NAMES: tuple[str, ...] = (
    "workbench_photos_processed_total",
    "workbench_faces_processed_total",
    "workbench_errors_total",
    "workbench_stage_seconds",
    "workbench_queue_depth",
    "workbench_search_seconds",
    *SYSTEM_METRIC_NAMES,
)
"""Metric names this module registers (histograms by base name: add _bucket/_sum/_count)."""


# --- HTTP endpoint --------------------------------------------------------------------------

_server: dict[str, Any] = {}


def serve_metrics(port: int, host: str = "127.0.0.1") -> int:
    """Serve ``/metrics`` over HTTP from a daemon thread; return the bound port.

    Once per process: a second call returns the port already served (and
    logs a warning if it asked for another one). ``port=0`` picks a free
    port. ``host`` defaults to localhost; ``0.0.0.0`` exposes the metrics to
    the network (they hold no secrets, but say what the machine is doing).
    A port in use raises :class:`~workbench.errors.ConfigurationError`.
    """
    from prometheus_client import start_http_server

    with _lock:
        if _server:
            bound = int(_server["port"])
            if port not in (0, bound) or host != _server["host"]:
                logger.warning(
                    "metrics already served on {}:{}; not starting another on {}:{}",
                    _server["host"],
                    bound,
                    host,
                    port,
                )
            return bound
        try:
            httpd, thread = start_http_server(port, addr=host)
        except OSError as e:
            raise ConfigurationError(
                f"cannot serve metrics on {host}:{port}: {e.strerror or e}. "
                "Choose another port (--port, or 0 for any free one) or stop the process using it."
            ) from e
        bound = int(httpd.server_address[1])
        _server.update(port=bound, host=host, httpd=httpd, thread=thread)
    logger.info("metrics on http://{}:{}/metrics", host, bound)
    return bound
