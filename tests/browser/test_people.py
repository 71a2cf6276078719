"""The people app in headless Chromium, on a small workbench of its own (clustering the
shared dev home would change what the other browser tests see): nothing clustered yet,
*Cluster now*, the map, a person's faces, naming one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import open_app, screenshot
from tests.conftest import DevPhoto, cli_env, run_cli
from tests.integration.test_people_widget import small_set

ROWS = "tr[data-testid=person-row]"
FACES = "[data-testid=person-faces]"


@pytest.fixture
def people_home(tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto]) -> Path:
    """~16 photos of 4 people ingested by the real CLI, under the temp root the
    dashboards may open homes from (`dashboards_url`)."""
    home = tmp_path / "people-home"
    photos = small_set(dev_photos, tmp_path / "photos")
    result = run_cli(["ingest", str(photos), "--no-progress", "--json"], cli_env(home, models_dir))
    if result.returncode != 0:
        pytest.fail(f"ingest failed:\n{result.stderr[-3000:]}")
    return home


def test_people_cluster_map_faces_and_name(
    page: Any, dashboards_url: str, people_home: Path
) -> None:
    open_app(page, dashboards_url, "people", home=str(people_home), pack="local")
    empty = page.locator("[data-testid=no-people]")
    empty.wait_for(timeout=30_000)
    assert "No people yet" in empty.inner_text()
    screenshot(page, "people-empty")

    page.locator(".wb-cluster-now").click()
    page.locator(ROWS).first.wait_for(timeout=180_000)
    result = page.locator("[data-testid=result]", has_text="Clustered ")
    result.wait_for(timeout=180_000)  # clustering and the UMAP map, in a fresh kernel
    n_people = page.locator(ROWS).count()
    assert n_people >= 2
    counts = [int(c) for c in page.locator(ROWS).evaluate_all("r => r.map(x => x.dataset.faces)")]
    assert counts == sorted(counts, reverse=True) and counts[0] >= 2
    summary = page.locator("[data-testid=people-summary]")
    assert summary.get_attribute("data-people") == str(n_people)

    # The map: one trace per person (plus "no person"), points drawn in SVG.
    page.locator(".wb-face-map .js-plotly-plot .scatterlayer .trace").first.wait_for(
        timeout=120_000
    )
    assert page.locator(".wb-face-map .scatterlayer .trace").count() >= n_people
    assert page.locator(".wb-face-map .scatterlayer path.point").count() >= sum(counts)

    # The largest person is shown: its faces as tiles.
    grid = page.locator(FACES)
    page.wait_for_function(
        "([sel, n]) => document.querySelector(sel)?.dataset.count === String(n)",
        arg=[FACES, counts[0]],
        timeout=60_000,
    )
    assert page.locator(f"{FACES} img.wb-thumb").count() == counts[0]
    screenshot(page, "people-clustered")

    # Choose the second person from the dropdown: its faces replace the first's.
    second = page.locator(ROWS).nth(1)
    second_id = second.get_attribute("data-person-id")
    page.locator(".wb-person-select select").select_option(value=None, index=2)
    page.locator(f'{ROWS}[data-current=true][data-person-id="{second_id}"]').wait_for(
        timeout=60_000
    )
    page.wait_for_function(  # the grid's key starts with the person shown
        "([sel, id]) => (document.querySelector(sel)?.dataset.key || '').startsWith(id + ':')",
        arg=[FACES, second_id],
        timeout=60_000,
    )
    assert grid.locator(".wb-tile").count() == counts[1]

    # Name it: the list says the name.
    page.locator(".wb-name-text input").fill("Scarlett J.")
    page.locator(".wb-name").click()
    named = page.locator(f'{ROWS}[data-name="Scarlett J."]')
    named.wait_for(timeout=60_000)
    assert named.get_attribute("data-person-id") == second_id
    result = page.locator("[data-testid=result]", has_text="Named Scarlett J.")
    result.wait_for(timeout=30_000)  # the one line comes after the list is redrawn
    assert result.inner_text().startswith(f"Named Scarlett J.: {counts[1]} faces")
    assert "Traceback" not in page.content()
    screenshot(page, "people-named")
