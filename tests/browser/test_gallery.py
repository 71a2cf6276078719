"""The gallery app against a workbench of the whole dev set, in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.browser.conftest import open_app, screenshot
from tests.conftest import DevPhoto, cli_env, run_cli

GRID = "[data-testid=gallery-grid]"
SUMMARY = "[data-testid=gallery-summary]"

# Share of a boxed detail image's pixels that are the box colour (pure green, after JPEG).
_GREEN_PIXELS_JS = """
(img) => {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let green = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 1] > 200 && d[i] < 90 && d[i + 2] < 90) green++;
  }
  return { green, total: d.length / 4, width: c.width, height: c.height };
}
"""


def _captions(page: Any) -> list[str]:
    return page.locator(f"{GRID} .wb-tile").evaluate_all(
        "tiles => tiles.map(t => t.dataset.caption)"
    )


def _wait_tiles_loaded(page: Any) -> None:
    page.wait_for_function(
        """(sel) => {
          const imgs = [...document.querySelectorAll(sel + ' img.wb-thumb')];
          return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=GRID,
        timeout=30_000,
    )


def test_gallery_pages_filters_and_shows_boxes(
    page: Any, dashboards_url: str, dev_photos: list[DevPhoto]
) -> None:
    open_app(page, dashboards_url, "gallery")
    _wait_tiles_loaded(page)
    summary = page.locator(SUMMARY)
    # A recorded copy (dev_0032.png of dev_0031.jpg) is shown once, on its original.
    shown = [p for p in dev_photos if p.copy_of is None]
    assert len(shown) == len(dev_photos) - 1
    assert summary.get_attribute("data-total") == str(len(shown))
    assert summary.get_attribute("data-page") == "1"
    assert page.locator(f"{GRID} .wb-tile").count() == min(48, len(shown))
    # Thumbnails only: every tile is a small cached JPEG, never the full photo.
    sizes = page.locator(f"{GRID} img.wb-thumb").evaluate_all(
        "imgs => imgs.map(i => Math.max(i.naturalWidth, i.naturalHeight))"
    )
    assert sizes and max(sizes) <= 256
    screenshot(page, "gallery-grid")

    # 'No faces': exactly the dev set's no-face photos.
    expected = sorted(p.path.name for p in dev_photos if p.category == "no_face")
    page.get_by_role("button", name=re.compile(r"^No faces")).click()
    page.wait_for_function(
        "([sel, n]) => document.querySelector(sel)?.dataset.count === String(n)",
        arg=[GRID, len(expected)],
        timeout=30_000,
    )
    _wait_tiles_loaded(page)
    assert sorted(_captions(page)) == expected
    assert summary.get_attribute("data-total") == str(len(expected))
    assert page.locator(f"{GRID} .wb-badge").all_inner_texts() == ["no faces"] * len(expected)
    screenshot(page, "gallery-no-faces")

    # Back to every photo; open a group photo: its boxes, scores and the faces table.
    page.get_by_role("button", name=re.compile(r"^All")).click()
    page.wait_for_function(
        "([sel, n]) => document.querySelector(sel)?.dataset.total === String(n)",
        arg=[SUMMARY, len(shown)],
        timeout=30_000,
    )
    group = next(p for p in dev_photos if p.path.name == "dev_0009.jpg")  # 3 labelled faces
    tile = page.locator(f'{GRID} .wb-tile[data-caption="{group.path.name}"]')
    if tile.count() == 0:  # on page 2 (newest first)
        page.locator(".wb-next").click()
        tile.wait_for(timeout=30_000)
    tile.click()
    detail = page.locator("[data-testid=detail]")
    detail.wait_for(timeout=30_000)
    n_faces = int(detail.get_attribute("data-faces") or 0)
    rows = page.locator("tr[data-testid=face-row]")
    assert rows.count() == n_faces
    assert group.n_faces is not None and 2 <= n_faces <= group.n_faces + 1
    scores = [float(t) for t in rows.locator("td:nth-child(3)").all_inner_texts()]
    assert all(0.0 < s <= 1.0 for s in scores)
    img = page.locator("img[data-testid=detail-image]")
    img.wait_for(timeout=30_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('img[data-testid=detail-image]');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=30_000,
    )
    pixels = img.evaluate(_GREEN_PIXELS_JS)
    assert max(pixels["width"], pixels["height"]) == 720
    # Three boxes of >= 2 px lines: well over a few hundred box-coloured pixels.
    assert pixels["green"] > 300, pixels
    shot: Path = screenshot(page, "gallery-detail")
    assert shot.stat().st_size > 10_000

    # 'Find similar' answers through the dashboards' Milvus Lite server, in words.
    page.locator(".wb-find-similar").click()
    page.locator("[data-testid=similar-summary], [data-testid=similar-error]").wait_for(
        timeout=60_000
    )
    screenshot(page, "gallery-similar")
    found = page.locator("[data-testid=similar-summary]")
    assert found.count() == 1, page.locator("[data-testid=similar-error]").inner_text()
    assert re.match(r"^\d+ similar faces? ", found.inner_text())


def test_query_string_names_another_workbench(
    page: Any, dashboards_url: str, tmp_path: Path, models_dir: Path
) -> None:
    """``?home=`` reaches the app's kernel (pre-heated: read after the request arrives):
    an existing workbench under the server's ``--homes-root`` opens; a folder that is no
    workbench is refused in words and left as it was."""
    other = tmp_path / "other-home"
    assert run_cli(["stats", "--json"], cli_env(other, models_dir)).returncode == 0
    open_app(page, dashboards_url, "gallery", home=str(other), pack="local")
    summary = page.locator(SUMMARY)
    assert summary.get_attribute("data-total") == "0"
    assert page.locator(f"{GRID} .wb-empty").inner_text() == "No photos match these filters."
    screenshot(page, "gallery-other-home")

    nothing = tmp_path / "not-a-workbench"
    nothing.mkdir()
    open_app(page, dashboards_url, "gallery", home=str(nothing), pack="local")
    assert "is not allowed" in page.locator("[data-testid=banner]").inner_text()
    assert list(nothing.iterdir()) == []
