"""CPU, memory and GPU figures of the process and the machine, as Prometheus gauges."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from loguru import logger
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_lock = threading.Lock()


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


def register_system_collector() -> SystemCollector:
    """The process's one `SystemCollector` in the default registry (made on first call)."""
    with _lock:
        # Kept on the registry, not in this module, so a reloaded module finds it.
        existing = getattr(REGISTRY, "_workbench_system_collector", None)
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        collector = SystemCollector()
        REGISTRY.register(collector)
        REGISTRY._workbench_system_collector = collector  # type: ignore[attr-defined]
        return collector
