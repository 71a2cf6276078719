"""workbench.monitoring (metrics, system, logs): the metric registry, stage and search timers,
system collector, metrics endpoint, log formats; the Grafana dashboard names only metrics
that exist."""

from __future__ import annotations

import importlib
import json
import re
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from prometheus_client import REGISTRY, generate_latest

from workbench.errors import ConfigurationError
from workbench.monitoring import logs, system
from workbench.monitoring import metrics as mon

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboards" / "grafana" / "workbench.json"


def _value(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_counters_are_process_wide_singletons_across_reloads() -> None:
    before = _value("workbench_photos_processed_total", {"pack": "t-reload", "status": "done"})
    mon.PHOTOS_PROCESSED.labels(pack="t-reload", status="done").inc()
    reloaded = importlib.reload(mon)  # would raise "Duplicated timeseries" if re-registered
    assert reloaded.PHOTOS_PROCESSED is mon.PHOTOS_PROCESSED
    assert reloaded.SYSTEM_COLLECTOR is mon.SYSTEM_COLLECTOR
    reloaded.PHOTOS_PROCESSED.labels(pack="t-reload", status="done").inc()
    after = _value("workbench_photos_processed_total", {"pack": "t-reload", "status": "done"})
    assert after == before + 2
    text = generate_latest().decode()
    assert text.count("# TYPE workbench_process_cpu_percent gauge") == 1


def test_contract_names_labels_and_known_series() -> None:
    mon.FACES_PROCESSED.labels(pack="t-contract").inc(3)
    mon.ERRORS.labels(kind="decode").inc()
    mon.QUEUE_DEPTH.labels(queue="t-queue").set(7)
    assert _value("workbench_faces_processed_total", {"pack": "t-contract"}) >= 3
    assert _value("workbench_queue_depth", {"queue": "t-queue"}) == 7
    # Known stages and error kinds exist from the start (0, not "no data").
    for stage in mon.STAGES:
        assert (
            REGISTRY.get_sample_value("workbench_stage_seconds_count", {"stage": stage}) is not None
        )
    for kind in mon.ERROR_KINDS:
        assert REGISTRY.get_sample_value("workbench_errors_total", {"kind": kind}) is not None
    assert mon.STAGE_BUCKETS[0] == 0.001 and mon.STAGE_BUCKETS[-1] == 60.0


def test_stage_times_the_block_even_when_it_raises() -> None:
    labels = {"stage": "decode"}
    count = _value("workbench_stage_seconds_count", labels)
    total = _value("workbench_stage_seconds_sum", labels)
    with mon.stage("decode"):
        time.sleep(0.02)
    with pytest.raises(ValueError), mon.stage("decode"):
        raise ValueError("bad photo")
    assert _value("workbench_stage_seconds_count", labels) == count + 2
    assert _value("workbench_stage_seconds_sum", labels) - total >= 0.02
    fast = _value("workbench_stage_seconds_bucket", {"stage": "detect", "le": "0.005"})
    mon.observe_stage("detect", 0.003)
    assert _value("workbench_stage_seconds_bucket", {"stage": "detect", "le": "0.005"}) == fast + 1


def test_observe_per_photo_splits_a_batch() -> None:
    from workbench.faces.pack import observe_per_photo

    labels = {"stage": "embed"}
    count = _value("workbench_stage_seconds_count", labels)
    total = _value("workbench_stage_seconds_sum", labels)
    observe_per_photo("embed", 0.8, 4)
    observe_per_photo("embed", 1.0, 0)  # a batch without faces embeds nothing
    assert _value("workbench_stage_seconds_count", labels) == count + 4
    assert abs(_value("workbench_stage_seconds_sum", labels) - total - 0.8) < 1e-9


def test_timed_search() -> None:
    count = _value("workbench_search_seconds_count")
    with mon.timed_search():
        time.sleep(0.01)
    assert _value("workbench_search_seconds_count") == count + 1
    assert _value("workbench_search_seconds_sum") >= 0.01


def test_system_collector_without_gpu() -> None:
    families = {f.name: f for f in mon.SYSTEM_COLLECTOR.collect()}
    for name in (
        "workbench_process_cpu_percent",
        "workbench_process_resident_memory_bytes",
        "workbench_system_cpu_percent",
        "workbench_system_memory_used_bytes",
        "workbench_system_memory_total_bytes",
    ):
        assert name in families, name
    rss = families["workbench_process_resident_memory_bytes"].samples[0].value
    total = families["workbench_system_memory_total_bytes"].samples[0].value
    assert 1e6 < rss < total
    # This machine has no GPU: the GPU metrics are absent, not zero, and nothing failed.
    assert not any(n.startswith("workbench_gpu_") for n in families)
    assert set(families) <= set(system.SYSTEM_METRIC_NAMES)


def test_system_collector_reads_nvml_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    class Nvml:
        def nvmlInit(self) -> None: ...
        def nvmlDeviceGetCount(self) -> int:
            return 1

        def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
            return i

        def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
            return type("M", (), {"used": 2e9, "total": 8e9})()

        def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
            return type("U", (), {"gpu": 42})()

    monkeypatch.setitem(sys.modules, "pynvml", Nvml())
    collector = system.SystemCollector()
    families = {f.name: f for f in collector.collect()}
    assert families["workbench_gpu_utilization_percent"].samples[0].value == 42
    assert families["workbench_gpu_utilization_percent"].samples[0].labels == {"gpu": "0"}
    assert families["workbench_gpu_memory_used_bytes"].samples[0].value == 2e9
    assert families["workbench_gpu_memory_total_bytes"].samples[0].value == 8e9


def test_scrape_does_not_import_torch() -> None:
    import subprocess

    code = (
        "import sys; from prometheus_client import generate_latest; import workbench;"
        "generate_latest(); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_metrics_once_per_process_and_busy_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mon, "_server", {})
    port = mon.serve_metrics(0)
    first = dict(mon._server)
    try:
        assert port > 0
        assert mon.serve_metrics(0) == port  # once per process
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            body = r.read().decode()
        assert "workbench_stage_seconds_bucket" in body
        assert "workbench_process_resident_memory_bytes" in body
        # Another port in this process: the existing one is returned.
        assert mon.serve_metrics(_free_port()) == port
        # A port someone else holds: a clear refusal.
        monkeypatch.setattr(mon, "_server", {})
        with pytest.raises(ConfigurationError, match=rf"cannot serve metrics on 127.0.0.1:{port}"):
            mon.serve_metrics(port)
    finally:
        first["httpd"].shutdown()
        first["httpd"].server_close()


# ---- logs -------------------------------------------------------------------------------
@pytest.fixture
def stderr_lines(capsys: pytest.CaptureFixture[str]) -> Any:
    def read() -> list[str]:
        return [line for line in capsys.readouterr().err.splitlines() if line.strip()]

    yield read
    logs.configure_logging("WARNING")


def test_json_lines_carry_the_photo_and_extras(stderr_lines: Any) -> None:
    logs.configure_logging("DEBUG", json=True)
    logger.bind(photo=123, run=7).info("decoded {} px", 640)
    with logger.contextualize(photo="/data/a b.jpg"):
        logger.warning('quote " and {braces}')
    logger.info("no photo here")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.bind(photo=5).exception("failed")
    records = [json.loads(line) for line in stderr_lines()]
    assert [r.get("photo") for r in records] == [123, "/data/a b.jpg", None, 5]
    first = records[0]
    assert first["message"] == "decoded 640 px" and first["level"] == "INFO"
    assert first["run"] == 7 and first["logger"] == __name__
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+[+-]\d\d:\d\d$", first["time"])
    assert records[1]["message"] == 'quote " and {braces}'
    assert "RuntimeError: boom" in records[3]["exception"]
    assert not any("_json" in r for r in records)


def test_json_lines_redact_tokens_in_bound_fields(stderr_lines: Any) -> None:
    logs.configure_logging("INFO", json=True)
    logger.bind(photo=1, url="https://api.example/x?access_token=abcdef123456").info("fetched")
    (line,) = stderr_lines()
    assert "abcdef123456" not in line and json.loads(line)["photo"] == 1


def test_text_lines_prefix_the_photo(stderr_lines: Any) -> None:
    logs.configure_logging("INFO")
    logger.bind(photo=42).info("3 faces")
    logger.info("run done")
    first, second = stderr_lines()
    assert re.search(r"INFO +photo=42 3 faces$", first)
    assert "photo=" not in second and second.endswith("run done")


def test_log_json_from_environment(monkeypatch: pytest.MonkeyPatch, stderr_lines: Any) -> None:
    monkeypatch.setenv("WORKBENCH_LOG_JSON", "1")
    monkeypatch.setattr(logs, "_configured", False)
    logs.ensure_logging()
    logger.bind(photo=9).info("hello")
    (line,) = stderr_lines()
    assert json.loads(line)["photo"] == 9


def test_cli_log_json_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import workbench.cli
    from workbench.cli import cli

    calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(
        workbench.cli, "configure_logging", lambda lv, json: calls.append((lv, json))
    )
    result = CliRunner().invoke(cli, ["--log-json", "-v", "serve-metrics", "--help"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["serve-metrics", "--help"])
    assert calls == [("INFO", True), ("WARNING", False)]


# ---- the Grafana dashboard ----------------------------------------------------------------
def _registered_names() -> set[str]:
    from workbench.monitoring.catalog import CATALOG_METRIC_NAMES

    names = set(CATALOG_METRIC_NAMES)
    for name in mon.METRIC_NAMES:
        names.add(name)
        if name in ("workbench_stage_seconds", "workbench_search_seconds"):
            names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_metric_names_are_exported() -> None:
    """Every name in METRIC_NAMES appears in a scrape of this process (GPU ones aside)."""
    text = generate_latest().decode()
    for name in mon.METRIC_NAMES:
        if not name.startswith("workbench_gpu_"):
            assert f"# TYPE {name.removesuffix('_total')}" in text, name


def test_grafana_dashboard_is_importable_and_uses_registered_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    known = _registered_names()
    panels = [p for p in _panels(dashboard) if p["type"] != "row"]
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    exprs = []
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            exprs.append(expr)
            used = set(re.findall(r"\bworkbench_[a-z0-9_]+", expr))
            assert used, f"{panel['title']}: {expr} names no workbench metric"
            assert used <= known, f"{panel['title']}: unknown {used - known}"
    text = " ".join(exprs)
    for needed in (
        "rate(workbench_photos_processed_total",
        "rate(workbench_faces_processed_total",
        "workbench_errors_total",
        "histogram_quantile(0.95, sum by (le, stage) (rate(workbench_stage_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(workbench_search_seconds_bucket",
        "workbench_queue_depth",
        "workbench_process_cpu_percent",
        "workbench_process_resident_memory_bytes",
        "workbench_gpu_utilization_percent",
    ):
        assert needed in text, needed
