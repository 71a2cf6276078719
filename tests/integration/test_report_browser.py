"""The report notebook's HTML opens in a real browser, offline, and draws its charts.

Headless Chromium (the system's /usr/bin/chromium, driven by Playwright; no
`playwright install`) loads the report rendered by the notebook pipeline of
test_notebooks.py with every network request refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_notebooks import Pipeline, notebook_pipeline  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def test_report_html_shows_its_charts_offline(notebook_pipeline: Pipeline) -> None:  # noqa: F811
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: install Chromium (apt-get install chromium); "
            "browser tests never skip without it",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    html = notebook_pipeline.runs["report"].html  # type: ignore[attr-defined]
    page_errors: list[str] = []
    refused: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: page_errors.append(str(e)))

            def refuse(route: object) -> None:
                refused.append(route.request.url)  # type: ignore[attr-defined]
                route.abort()  # type: ignore[attr-defined]

            page.route("http*://**", refuse)
            page.goto(html.as_uri(), wait_until="load")
            figures = page.locator(".plotly-graph-div")
            assert figures.count() == 3  # counts, speed per run, ROC
            page.wait_for_function(
                "() => [...document.querySelectorAll('.plotly-graph-div')]"
                ".every(d => d.classList.contains('js-plotly-plot')"
                " && d.querySelector('.main-svg'))",
                timeout=20_000,
            )
            for i in range(figures.count()):
                fig = figures.nth(i)
                assert fig.locator(".main-svg").count() >= 1
                marks = ".main-svg .bars path, .main-svg .point, .main-svg .scatterlayer .js-line"
                assert fig.locator(marks).count() >= 1
                box = fig.bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 200
            assert page.locator("text=Photos per source and status").count() >= 1
        finally:
            browser.close()
    assert page_errors == []
    # Only MathJax is asked for over the network (no formula needs it); never plotly.js.
    assert not [u for u in refused if "plot" in u], refused
