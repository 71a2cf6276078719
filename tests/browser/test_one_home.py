"""One default home (SQLite + Milvus Lite), many processes at once, as an analyst uses it.

While one `workbench ingest` runs, other processes search (the CLI and a Python
process, as a notebook kernel would), list stats, export and ingest other photos
into the same home, and the dashboards serve a gallery page of it: every one
succeeds with a right answer, and at the end catalog and index agree, with no
photo stored twice. Then the pages' `?home=` is tried: a request to the running
server may open only the served home, and creates nothing anywhere else, and Ctrl-C
stops the dashboards without a traceback.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.browser.conftest import open_app, screenshot, start_dashboards
from tests.conftest import DevPhoto, cli_env, run_cli

NOTEBOOK_KERNEL = """
import json, sys
import workbench
wb = workbench.open(sys.argv[1], pack="local")
faces = wb.search(sys.argv[2], top_k=3, threshold=0)
print(json.dumps([m.photo for f in faces for m in f.matches]))
wb.close()
"""


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _done(proc: subprocess.Popen[str], what: str, timeout: float = 600) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{err[-3000:]}"
    assert "Traceback" not in err, f"{what}:\n{err[-3000:]}"
    return out


def test_one_home_many_processes_and_a_dashboard(
    tmp_path: Path,
    models_dir: Path,
    faces_dev_dir: Path,
    lfw_dir: Path,
    dev_photos: list[DevPhoto],
    page: Any,
) -> None:
    home = tmp_path / "home"
    env = cli_env(home, models_dir)
    # Distinct pictures: the dev set's recorded copy is not a photo of its own in counts.
    identity = [p.path for p in dev_photos if p.category == "identity" and p.copy_of is None]
    seed, later = identity[:30], identity[30:60]
    sample = seed[0]
    first = run_cli(["ingest", *map(str, seed), "--json", "--no-progress"], env)
    assert first.returncode == 0, first.stderr
    lfw = sorted((lfw_dir / "images").glob("*/*.jpg"))[:400]

    server = start_dashboards(home, models_dir, "one-home")
    try:
        base = server.wait()
        long_ingest = _spawn(["ingest", *map(str, lfw), "--json", "--no-progress"], env)
        time.sleep(3)  # it is loading its models and writing its first batches now
        others = {
            "search": _spawn(["search", str(sample), "--json", "--threshold", "0"], env),
            "stats": _spawn(["stats", "--json"], env),
            "export": _spawn(["export", "--out", str(tmp_path / "faces.csv"), "--json"], env),
            "second ingest": _spawn(["ingest", *map(str, later), "--json", "--no-progress"], env),
        }
        kernel = subprocess.Popen(
            [sys.executable, "-c", NOTEBOOK_KERNEL, str(home), str(sample)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        open_app(page, base, "gallery")
        assert page.locator("[data-testid=gallery-grid] .wb-tile").count() > 0
        screenshot(page, "one-home-gallery-during-ingest")

        matches = json.loads(_done(others["search"], "search"))
        assert matches[0]["matches"][0]["photo"] == str(sample.resolve())
        stats = json.loads(_done(others["stats"], "stats"))
        assert stats["photos"] >= len(seed)
        exported = json.loads(_done(others["export"], "export"))
        assert exported["rows"] >= len(seed) and (tmp_path / "faces.csv").is_file()
        second = json.loads(_done(others["second ingest"], "second ingest"))
        assert second["photos"] == len(later) and second["errors"] == 0
        found = json.loads(_done(kernel, "a notebook kernel's search"))
        assert found[0] == str(sample.resolve())
        report = json.loads(_done(long_ingest, "the long ingest", timeout=900))
        assert report["photos"] == len(lfw) and report["errors"] == 0

        after = json.loads(run_cli(["stats", "--json"], env).stdout)
        assert after["agree"], after
        assert after["photos"] == len(seed) + len(later) + len(lfw)
        with sqlite3.connect(home / "catalog.sqlite") as db:
            (dupes,) = db.execute(
                "SELECT COUNT(*) FROM"
                " (SELECT sha256 FROM photos GROUP BY sha256 HAVING COUNT(*) > 1)"
            ).fetchone()
        assert dupes == 0

        # A page may not open, or create, a catalog anywhere but the served home.
        elsewhere = tmp_path / "not-served"
        page.goto(f"{base}/voila/render/gallery.ipynb?home={elsewhere}", wait_until="commit")
        page.wait_for_selector('[data-wb-ready="gallery"]', state="attached", timeout=120_000)
        banner = page.locator("[data-testid=banner]").inner_text()
        assert "this page may open only the served workbench" in banner
        assert "is not allowed, and nothing was opened or made there" in banner
        page.goto(f"{base}/voila/render/gallery.ipynb?home=/etc", wait_until="commit")
        page.wait_for_selector('[data-wb-ready="gallery"]', state="attached", timeout=120_000)
        assert "is not allowed" in page.locator("[data-testid=banner]").inner_text()
        screenshot(page, "one-home-refused-home")
        assert not elsewhere.exists() and not Path("/etc/catalog.sqlite").exists()
    finally:
        status = server.stop()
    # Ctrl-C stops it quietly: no traceback of its kernels' ZMQ sockets.
    assert status == 0, server.text()[-3000:]
    log = server.text()
    assert "Traceback" not in log and "ZMQError" not in log, log[-3000:]
