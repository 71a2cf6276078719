"""The monitor app in-process on the dev workbench: the numbers it renders are the catalog's."""

from __future__ import annotations

import math
import re

from prometheus_client import CollectorRegistry, Counter, Histogram

from tests.integration.conftest import DevWorkbench


def test_monitor_shows_runs_counts_errors_agreement_and_metrics(dev_local: DevWorkbench) -> None:
    from workbench.widgets.monitor import Monitor, speed_table

    wb = dev_local.wb
    app = Monitor(wb)
    assert app.marker.app == "monitor"
    assert app.banner.value == ""

    # The dev ingest is a run with every photo, and a speed above zero.
    table = speed_table(wb)
    ingest = table[table["kind"] == "ingest"].iloc[0]
    n = len(dev_local.photos)
    assert ingest["photos"] == n
    assert ingest["photos_per_second"] > 0 and ingest["faces_per_second"] > 0
    row = re.search(r'<tr data-testid="run-row" data-run="(\d+)" data-kind="ingest" '
                    r'data-photos="(\d+)" data-faces="(\d+)" data-photos-per-second="([\d.]+)"',
                    app.runs.value)  # fmt: skip
    assert row is not None and int(row.group(2)) == n and float(row.group(4)) > 0
    assert app._figure is not None  # the FigureWidget chart was built
    assert len(app._figure.data) == 2 and list(app._figure.data[0].y)[0] > 0

    # Counts per status: the same numbers as the catalog's own stats.
    stats = wb.stats()
    assert f'data-total="{stats.photos}"' in app.counts.value
    total_row = app.counts.value.split('data-testid="total-row"')[1]
    for status in {r["status"] for r in stats.by_source_status}:
        expected = sum(r["photos"] for r in stats.by_source_status if r["status"] == status)
        assert f'data-status="{status}"><b>{expected}</b>' in total_row

    # Catalog and index agree, in words and numbers.
    assert 'data-testid="agreement" data-agree="true"' in app.agreement.value
    assert ">agree<" in app.agreement.value and ">differ<" not in app.agreement.value
    assert f'data-catalog-faces="{stats.faces}" data-index-vectors="{stats.faces}"' in (
        app.agreement.value
    )

    # Errors: each photo in error with its reason (the dev set may have none).
    n_errors = sum(r["photos"] for r in stats.by_source_status if r["status"] == "error")
    if n_errors:
        assert 'data-testid="error-row"' in app.errors.value
    else:
        assert "No photos in error." in app.errors.value

    # Metrics: the workbench's own, from this process (the dev ingest ran here).
    page = app.metrics.value
    assert 'data-package-metrics="true"' in page
    assert "python_gc" not in page and "_created" not in page
    photos = sum(
        s.value
        for s in _samples()
        if s.name == "workbench_photos_processed_total" and f"pack={wb.pack.name}" in s.labels
    )
    assert photos >= n  # this process ingested the dev set (other tests may have added more)
    decode = re.search(
        r'data-metric="workbench_stage_seconds" data-p50="([\d.]+)" data-p95="([\d.]+)">'
        r"(?:<td[^>]*>[^<]*</td>){2}<td[^>]*>stage=decode</td>",
        page,
    )
    assert decode is not None, page[:2000]
    assert 0 < float(decode.group(1)) <= float(decode.group(2)) < 60
    for stage in ("detect", "embed", "store"):
        assert f"stage={stage}" in page
    assert "workbench_process_resident_memory_bytes" in page
    assert "workbench_errors_total" in page and "workbench_search_seconds" in page

    app.refresh()
    assert app.banner.value == ""


def _samples() -> list:  # type: ignore[type-arg]
    from workbench.widgets.monitor import prometheus_samples

    samples, own = prometheus_samples()
    assert own
    return samples


def test_histograms_are_summarised_with_quantiles() -> None:
    from workbench.widgets.monitor import histogram_quantile, metrics_html, prometheus_samples

    registry = CollectorRegistry()
    h = Histogram("workbench_x_seconds", "x", ["stage"], buckets=(0.1, 1.0), registry=registry)
    for v in (0.05, 0.05, 0.5, 0.5):
        h.labels(stage="a").observe(v)
    h.labels(stage="b")
    samples, own = prometheus_samples(registry)
    by = {s.labels: s for s in samples}
    assert own and set(by) == {"stage=a", "stage=b"}
    a = by["stage=a"]
    assert a.kind == "histogram" and a.value == 4 and abs(a.mean - 0.275) < 1e-9
    assert abs(a.p50 - 0.1) < 1e-9 and abs(a.p95 - (0.1 + 0.9 * 1.8 / 2)) < 1e-9
    assert math.isnan(by["stage=b"].p50)
    page = metrics_html(samples, own)
    assert page.count('data-testid="metric-row"') == 2 and "no observations yet" in page
    # PromQL's rules: a quantile in +Inf is the highest finite bound; empty is NaN.
    assert histogram_quantile(0.99, [(1.0, 1.0), (math.inf, 10.0)]) == 1.0
    assert math.isnan(histogram_quantile(0.5, []))


def test_package_metrics_are_preferred_when_registered() -> None:
    from workbench.widgets.monitor import metrics_html, prometheus_samples

    registry = CollectorRegistry()
    Counter("workbench_photos", "Photos processed", registry=registry).inc(3)
    samples, own = prometheus_samples(registry)
    assert own and {s.name for s in samples} >= {"workbench_photos_total"}
    page = metrics_html(samples, own)
    assert 'data-package-metrics="true"' in page and "workbench_photos_total" in page
