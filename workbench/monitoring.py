"""Prometheus metrics (prometheus-client), loguru logging set-up and progress bars.

Metrics are process-wide singletons in ``prometheus_client.REGISTRY``:

>>> from workbench import monitoring as mon
>>> mon.PHOTOS_PROCESSED.labels(pack="local", status="done").inc()   # doctest: +SKIP
>>> with mon.stage("decode"):                                        # doctest: +SKIP
...     image = decode(data)
>>> mon.serve_metrics(9464)                                          # doctest: +SKIP

Every name the package registers starts with ``workbench_``; :data:`METRIC_NAMES`
lists them (the Grafana dashboard in ``dashboards/grafana`` uses only those).
"""

from __future__ import annotations

import json as _json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from loguru import logger
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from workbench.errors import ConfigurationError
from workbench.redaction import redact

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


# --- system metrics -------------------------------------------------------------------------


class SystemCollector(Collector):
    """CPU, memory and (when present) GPU figures, read on each scrape.

    CPU percentages are averages since the previous scrape (psutil's
    non-blocking mode), so a scrape never sleeps. GPU figures come from NVML
    (``pynvml``) when it is installed and finds a device, else from
    ``torch.cuda`` if torch is already imported; without either the GPU
    metrics are simply absent.
    """

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process()
        # The first non-blocking call only sets the reference point.
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)
        self._nvml: Any = None
        self._nvml_tried = False

    def describe(self) -> Iterable[Any]:
        # Registration must not run collect() (which reads NVML); names are fixed.
        return []

    def collect(self) -> Iterable[Any]:
        psutil = self._psutil
        yield _gauge(
            "workbench_process_cpu_percent",
            "CPU used by this process since the previous scrape, in percent of one core.",
            self._process.cpu_percent(None),
        )
        yield _gauge(
            "workbench_process_resident_memory_bytes",
            "Resident memory of this process, in bytes.",
            self._process.memory_info().rss,
        )
        yield _gauge(
            "workbench_system_cpu_percent",
            "CPU used by the whole machine since the previous scrape, in percent of all cores.",
            psutil.cpu_percent(None),
        )
        yield _gauge("workbench_system_cpu_count", "Logical CPUs of the machine.", os.cpu_count())
        memory = psutil.virtual_memory()
        yield _gauge(
            "workbench_system_memory_used_bytes",
            "Memory in use on the machine (total minus available), in bytes.",
            memory.total - memory.available,
        )
        yield _gauge(
            "workbench_system_memory_total_bytes", "Memory of the machine, in bytes.", memory.total
        )
        yield from self._gpu()

    def _gpu(self) -> Iterator[GaugeMetricFamily]:
        devices = self._nvml_devices()
        if devices is None:
            devices = _torch_devices()
        if not devices:
            return
        util = GaugeMetricFamily(
            "workbench_gpu_utilization_percent",
            "GPU utilisation, in percent (NVML only).",
            labels=["gpu"],
        )
        used = GaugeMetricFamily(
            "workbench_gpu_memory_used_bytes", "GPU memory in use, in bytes.", labels=["gpu"]
        )
        total = GaugeMetricFamily(
            "workbench_gpu_memory_total_bytes", "GPU memory, in bytes.", labels=["gpu"]
        )
        for index, utilisation, mem_used, mem_total in devices:
            if utilisation is not None:
                util.add_metric([str(index)], utilisation)
            used.add_metric([str(index)], mem_used)
            total.add_metric([str(index)], mem_total)
        yield from (m for m in (util, used, total) if m.samples)

    def _nvml_devices(self) -> list[tuple[int, float | None, float, float]] | None:
        if not self._nvml_tried:
            self._nvml_tried = True
            try:
                import pynvml  # type: ignore[import-not-found]

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception:  # noqa: BLE001 — no library, no driver or no device: no GPU metrics
                self._nvml = None
        if self._nvml is None:
            return None
        nvml = self._nvml
        try:
            out = []
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                out.append((index, float(rates.gpu), float(memory.used), float(memory.total)))
            return out
        except Exception:  # noqa: BLE001 — a driver hiccup must not fail the scrape
            logger.opt(exception=True).debug("NVML read failed; GPU metrics skipped")
            return None


def _torch_devices() -> list[tuple[int, float | None, float, float]]:
    # Only a torch the process already imported: a scrape must not load torch.
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return []
        out: list[tuple[int, float | None, float, float]] = []
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            out.append((index, None, float(total - free), float(total)))
        return out
    except Exception:  # noqa: BLE001 — a broken CUDA set-up must not fail the scrape
        return []


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value or 0))


SYSTEM_METRIC_NAMES: tuple[str, ...] = (
    "workbench_process_cpu_percent",
    "workbench_process_resident_memory_bytes",
    "workbench_system_cpu_percent",
    "workbench_system_cpu_count",
    "workbench_system_memory_used_bytes",
    "workbench_system_memory_total_bytes",
    "workbench_gpu_utilization_percent",
    "workbench_gpu_memory_used_bytes",
    "workbench_gpu_memory_total_bytes",
)


def _register_system_collector() -> SystemCollector:
    with _lock:
        # Kept on the registry, not in this module, so a reloaded module finds it.
        existing = getattr(REGISTRY, "_workbench_system_collector", None)
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        collector = SystemCollector()
        REGISTRY.register(collector)
        REGISTRY._workbench_system_collector = collector  # type: ignore[attr-defined]
        return collector


SYSTEM_COLLECTOR: SystemCollector = _register_system_collector()

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


# --- logging --------------------------------------------------------------------------------

_configured = False
_TRUE = {"1", "true", "yes", "on"}


def ensure_logging() -> None:
    """Replace loguru's default DEBUG sink once, unless the application configured logging.

    Level from ``WORKBENCH_LOG_LEVEL`` (default INFO); JSON lines when
    ``WORKBENCH_LOG_JSON`` is 1/true/yes/on.
    """
    if not _configured:
        configure_logging(os.environ.get("WORKBENCH_LOG_LEVEL", "INFO"))


def _json_from_env() -> bool:
    return os.environ.get("WORKBENCH_LOG_JSON", "").strip().lower() in _TRUE


def _text_format(record: Any) -> str:
    photo = "photo={extra[photo]} " if "photo" in record["extra"] else ""
    return (
        "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> "
        + photo
        + "{message}\n{exception}"
    )


def json_line(record: Any) -> str:
    """One compact JSON object for a loguru record.

    Fields: ``time`` (ISO 8601 with offset), ``level``, ``message``, ``logger``
    (module), ``function``, ``line``, then every bound extra field (``photo``
    first-class among them), and ``exception`` (the formatted traceback) when
    there is one. Values JSON cannot hold are written with ``str``.
    """
    doc: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "message": record["message"],
        "logger": record["name"],
        "function": record["function"],
        "line": record["line"],
    }
    for key, value in record["extra"].items():
        if not key.startswith("_"):
            doc.setdefault(key, value)
    if record["exception"] is not None:
        kind, value, tb = record["exception"]
        doc["exception"] = "".join(traceback.format_exception(kind, value, tb)).rstrip()
    # Bound fields are not covered by the message patcher; a URL may hold a token.
    return redact(_json.dumps(doc, ensure_ascii=False, default=str))


def _json_format(record: Any) -> str:
    # loguru formats the returned template with the record; the JSON text goes
    # through an extra field so its braces are not read as placeholders.
    record["extra"]["_json"] = json_line(record)
    return "{extra[_json]}\n"


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    """Send workbench logs to stderr (stdout stays free for ``--json`` output).

    ``level``: DEBUG, INFO, WARNING, ERROR. ``json=True`` (or
    ``WORKBENCH_LOG_JSON=1``) writes one JSON object per line (see
    :func:`json_line`); text lines show ``photo=<id>`` when a photo is bound
    (``logger.bind(photo=...)`` / ``logger.contextualize(photo=...)``).
    """
    global _configured
    as_json = json or _json_from_env()
    logger.remove()
    logger.add(
        sys.stderr,
        level=level.upper(),
        format=_json_format if as_json else _text_format,
        colorize=False if as_json else None,
        # Tracebacks without local variables: a variable may hold an access token.
        diagnose=False,
    )
    _configured = True


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar: a notebook widget where one can be drawn, text otherwise, nothing if off.

    A disabled bar comes from plain tqdm, so a notebook without ipywidgets
    gets no "IProgress not found" warning for a bar nobody asked for.
    """
    if not enabled:
        from tqdm import tqdm

        return tqdm(iterable, disable=True, **kwargs)
    from tqdm.auto import tqdm as auto_tqdm

    return auto_tqdm(iterable, **kwargs)
