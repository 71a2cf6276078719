"""The monitor app in-process on the dev workbench: the numbers it renders are the catalog's."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter

from tests.integration.conftest import DevWorkbench


def test_monitor_shows_runs_counts_errors_agreement_and_metrics(dev_local: DevWorkbench) -> None:
    from workbench.widgets.monitor import Monitor, speed_table

    wb = dev_local.wb
    app = Monitor(wb)  # type: ignore[arg-type]
    assert app.marker.app == "monitor"
    assert app.banner.value == ""

    # The dev ingest is a run with every photo, and a speed above zero.
    table = speed_table(wb)  # type: ignore[arg-type]
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
    stats = wb.stats()  # type: ignore[attr-defined]
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

    # Metrics: the package registers none yet, so the process's are shown, and it says so.
    assert 'data-package-metrics="false"' in app.metrics.value
    assert "registers no Prometheus metrics yet" in app.metrics.value
    assert "process_" in app.metrics.value or "python_" in app.metrics.value

    app.refresh()
    assert app.banner.value == ""


def test_package_metrics_are_preferred_when_registered() -> None:
    from workbench.widgets.monitor import metrics_html, prometheus_samples

    registry = CollectorRegistry()
    Counter("workbench_photos", "Photos processed", registry=registry).inc(3)
    samples, own = prometheus_samples(registry)
    assert own and {s.name for s in samples} >= {"workbench_photos_total"}
    page = metrics_html(samples, own)
    assert 'data-package-metrics="true"' in page and "workbench_photos_total" in page
