"""The gallery's speed on a workbench of 20,000 photos, measured in the browser.

Acceptance: the first page renders in <= 3 s and a page change takes <= 1 s.
The catalog is synthetic (rows pointing at the dev and LFW photos, each row
its own sha256 so the catalog's uniqueness holds); the thumbnails are made
once per distinct image with `ThumbnailCache.put`, as the ingest does, and
hard-linked under every row's sha256 (a real 20k ingest would have written
20k of them the same way).

Measured and printed:

* ``total``: navigation start → every tile of page 1 loaded. `workbench
  dashboards` pre-heats one kernel per app (started, imports done, waiting
  for a request), so this is the request's share of the notebook plus the
  browser's work; without pre-heating Voila also starts a kernel and imports
  the package per page (measured ~2.2 s more on 2 cores, 3.3 s in total).
* ``server``: navigation start → the page's HTML fully received (the notebook
  run after the request, before the browser can draw anything).
* ``app``: the gallery's own first page: the `Gallery` constructor in the
  kernel (queries, thumbnails, widget) + the browser's drawing from the HTML
  received to every tile loaded (<= 3 s); ``total`` is bounded by 3 s too
  (`TOTAL_BOUND_S`).
* ``page change``: click 'Next' → every new tile loaded, median of 5 (<= 1 s).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.browser.conftest import open_app, screenshot, start_dashboards
from tests.conftest import DevPhoto, local_pack_settings

# A timing acceptance (first page <= 3 s, page change <= 1 s): it belongs with
# the long tier, which CI runs alone on its machine, not in the default suite
# that developers run beside other work (it failed at 3.46 s there under load).
pytestmark = pytest.mark.slow

N_PHOTOS = 20_000
N_LFW = 300
FIRST_PAGE_BOUND_S = 3.0
PAGE_CHANGE_BOUND_S = 1.0
TOTAL_BOUND_S = float(os.environ.get("WORKBENCH_TEST_GALLERY_TOTAL_BOUND", "3") or 0)
"""Bound of navigation → first page with the pre-heated kernel `workbench dashboards` keeps
(seconds; 0 turns it off, for a `--no-preheat` measurement)."""
REFILL_S = 8.0
"""Time Voila needs to heat the next pooled kernel after a page took one (2 cores)."""
GRID = "[data-testid=gallery-grid]"

_PAGE_CHANGE_JS = """
async () => {
  const grid = document.querySelector('[data-testid=gallery-grid]');
  const before = grid.dataset.key;
  const t0 = performance.now();
  document.querySelector('.wb-next button, button.wb-next').click();
  while (true) {
    await new Promise(r => requestAnimationFrame(r));
    const g = document.querySelector('[data-testid=gallery-grid]');
    if (!g || g.dataset.key === before) continue;
    const imgs = [...g.querySelectorAll('img.wb-thumb')];
    if (imgs.length && imgs.every(i => i.complete && i.naturalWidth > 0)) {
      return { ms: performance.now() - t0, key: g.dataset.key, n: imgs.length };
    }
  }
}
"""

_FIRST_PAGE_JS = """
() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const s = document.querySelector('[data-testid=gallery-summary]');
  return {
    loaded: performance.now(),
    responseEnd: nav.responseEnd,
    responseStart: nav.responseStart,
    domContentLoaded: nav.domContentLoadedEventEnd,
    buildMs: parseFloat(s.dataset.buildMs),
    total: parseInt(s.dataset.total),
  };
}
"""


def _images(dev_photos: list[DevPhoto], lfw_dir: Path) -> list[Path]:
    lfw = sorted((lfw_dir / "images").glob("*/*.jpg"))
    rng = random.Random(7)
    return [p.path for p in dev_photos] + rng.sample(lfw, min(N_LFW, len(lfw)))


def build_catalog(home: Path, models_dir: Path, images: list[Path], n: int) -> int:
    """``n`` catalog rows over ``images`` (row i shows image i mod len), thumbnails cached."""
    from sqlalchemy import insert

    from workbench.imaging.decode import decode_image
    from workbench.imaging.thumbnails import ThumbnailCache
    from workbench.store.catalog import Catalog
    from workbench.store.models import Photo

    settings = local_pack_settings(home, models_dir)
    cache = ThumbnailCache(settings)  # type: ignore[arg-type]
    thumbs: list[tuple[Path, int, int]] = []
    for path in images:
        image = decode_image(path.read_bytes(), settings.limits)  # type: ignore[attr-defined]
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        (thumb,) = cache.put(sha, image)
        h, w = image.rgb.shape[:2]
        thumbs.append((thumb, w, h))
    rng = random.Random(11)
    statuses = ["done"] * 80 + ["no_faces"] * 15 + ["error"] * 5
    origins = [("local", "local"), ("zip", "zip"), ("family", "yadisk"), ("vk:album/1", "vk")]
    rows = []
    day0 = dt.date(2020, 1, 1)
    for i in range(n):
        path = images[i % len(images)]
        thumb, w, h = thumbs[i % len(images)]
        sha = hashlib.sha256(f"synthetic-{i}".encode()).hexdigest()
        link = cache.path_for(SimpleNamespace(id=i, sha256=sha, uri=str(path), error=None))
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            os.link(thumb, link)
        status = rng.choice(statuses)
        source, origin = rng.choice(origins)
        rows.append(
            {
                "sha256": sha,
                "source": source,
                "origin": origin,
                "uri": str(path),
                "size_bytes": 1000,
                "width": w,
                "height": h,
                "format": "JPEG",
                "status": status,
                "error": "synthetic error" if status == "error" else None,
                "pack": "local",
                "n_faces": rng.randint(1, 4) if status == "done" else 0,
                "meta": {"date": (day0 + dt.timedelta(days=i % 1500)).isoformat()},
            }
        )
    catalog = Catalog(settings.catalog_url)  # type: ignore[attr-defined]
    try:
        with catalog.session() as s, s.begin():
            s.execute(insert(Photo), rows)
    finally:
        catalog.close()
    return n


@pytest.fixture(scope="module")
def url_20k(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    dev_photos: list[DevPhoto],
    lfw_dir: Path,
) -> Iterator[str]:
    home = tmp_path_factory.mktemp("gallery-20k") / "wb"
    build_catalog(home, models_dir, _images(dev_photos, lfw_dir), N_PHOTOS)
    server = start_dashboards(home, models_dir, "dashboards-20k")
    try:
        yield server.wait()
    finally:
        server.stop()


def _wait_tiles(page: Any) -> None:
    page.wait_for_function(
        """(sel) => {
          const imgs = [...document.querySelectorAll(sel + ' img.wb-thumb')];
          return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=GRID,
        timeout=120_000,
        polling="raf",
    )


def test_gallery_20k_first_page_and_page_change(page: Any, url_20k: str) -> None:
    # A first visit warms what any later visit finds warm (Python's bytecode, the
    # OS file cache); the measured visit is the second, once Voila has heated the
    # next pooled kernel (the steady state a user meets).
    open_app(page, url_20k, "gallery")
    _wait_tiles(page)
    page.context.clear_cookies()
    page.goto("about:blank")
    time.sleep(REFILL_S)

    open_app(page, url_20k, "gallery")
    _wait_tiles(page)
    first = page.evaluate(_FIRST_PAGE_JS)
    assert first["total"] == N_PHOTOS
    assert page.locator(f"{GRID} .wb-tile").count() == 48
    screenshot(page, "gallery-20k-first-page")
    total_s = first["loaded"] / 1000
    server_s = first["responseEnd"] / 1000
    client_s = (first["loaded"] - first["responseEnd"]) / 1000
    app_s = first["buildMs"] / 1000 + client_s

    changes = []
    for _ in range(5):
        r = page.evaluate(_PAGE_CHANGE_JS)
        assert r["n"] == 48
        changes.append(r["ms"] / 1000)
    screenshot(page, "gallery-20k-page-6")
    assert page.locator("[data-testid=gallery-summary]").get_attribute("data-page") == "6"
    median_change = statistics.median(changes)

    print(
        f"\n20k gallery: first page total {total_s:.2f} s (navigation → tiles; HTML received "
        f"after {server_s:.2f} s), app's own first page {app_s:.2f} s "
        f"(Gallery() {first['buildMs'] / 1000:.2f} s in the kernel + {client_s:.2f} s drawing); "
        f"page change median {median_change:.3f} s (runs: "
        f"{', '.join(f'{c:.3f}' for c in changes)})"
    )
    assert app_s <= FIRST_PAGE_BOUND_S, f"first page took {app_s:.2f} s in the app"
    if TOTAL_BOUND_S:
        assert total_s <= TOTAL_BOUND_S, f"first page took {total_s:.2f} s from navigation"
    assert median_change <= PAGE_CHANGE_BOUND_S, f"page change median {median_change:.3f} s"
