"""The monitor app against the dev workbench, in headless Chromium: the numbers on the page."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import open_app, screenshot
from tests.conftest import DevPhoto


def test_monitor_shows_runs_counts_agreement_and_metrics(
    page: Any, dashboards_url: str, dev_photos: list[DevPhoto]
) -> None:
    open_app(page, dashboards_url, "monitor")
    n = len(dev_photos)

    # The dev ingest: every photo, at a speed above zero, in the table and the chart.
    row = page.locator('tr[data-testid=run-row][data-kind="ingest"]').first
    row.wait_for(timeout=30_000)
    assert row.get_attribute("data-photos") == str(n) == "100"
    assert float(row.get_attribute("data-photos-per-second") or 0) > 0
    assert str(n) in row.inner_text()
    page.locator(".wb-speed-chart .js-plotly-plot .scatterlayer .trace").first.wait_for(
        timeout=60_000
    )
    assert page.locator(".wb-speed-chart .scatterlayer .trace").count() == 2
    legend = page.locator(".wb-speed-chart .legendtext")
    assert legend.evaluate_all("els => els.map(e => e.textContent)") == [
        "photos / s",
        "faces / s",
    ]

    # Counts per source and status add up to every photo.
    counts = page.locator("table[data-testid=status-counts]")
    assert counts.get_attribute("data-total") == str(n)
    total = page.locator("tr[data-testid=total-row] td[data-status=total]")
    assert total.inner_text().strip() == str(n)

    # Catalog and index agree, in words, for the local pack.
    agreement = page.locator("table[data-testid=agreement]")
    assert agreement.get_attribute("data-agree") == "true"
    local = page.locator("tr[data-testid=agreement-row]").first  # the local pack's (only) one
    assert local.get_attribute("data-catalog-faces") == local.get_attribute("data-index-vectors")
    assert int(local.get_attribute("data-catalog-faces") or 0) > 0
    assert "agree" in local.inner_text() and "differ" not in local.inner_text()

    # Errors section in words (a table of reasons, or that there are none).
    errors = page.locator("[data-testid=errors]")
    assert errors.count() == 1
    assert "Traceback" not in page.content()

    # Prometheus: the workbench's own metrics, as the page's process has them.
    metrics = page.locator("[data-testid=metrics]")
    assert metrics.get_attribute("data-package-metrics") == "true"
    assert "workbench metrics" in metrics.inner_text()
    names = {
        r.get_attribute("data-metric") for r in page.locator("tr[data-testid=metric-row]").all()
    }
    # (labelled counters show once counted; the known stages and error kinds start at 0)
    assert {"workbench_errors_total", "workbench_stage_seconds"} <= names, names
    screenshot(page, "monitor")

    # Refresh reads again and draws the same numbers.
    stamp = page.locator("[data-testid=updated]").inner_text()
    page.wait_for_timeout(1100)
    page.locator(".wb-refresh").click()
    page.wait_for_function(
        "(s) => document.querySelector('[data-testid=updated]')?.textContent !== s",
        arg=stamp,
        timeout=30_000,
    )
    assert counts.get_attribute("data-total") == str(n)
    screenshot(page, "monitor-refreshed")
