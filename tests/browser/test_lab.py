"""The explore notebook in a real JupyterLab (`workbench lab`), run in headless Chromium.

One `workbench lab` for the session, on a free port, over a small workbench of its own
built from the dev set by the real CLI (16 photos of 4 people, clustered: the shared
dev home stays unclustered for the other browser tests). Its notebooks folder is a
copy, so JupyterLab's saves never touch the repository, with the explore notebook's
``projection`` set to ``pca`` as papermill would inject it (UMAP's first JIT costs a
minute here). The test opens the notebook from the URL the command printed, runs
all cells, and sees each surface draw: the stats and search displays, the gallery's
thumbnails and *Find similar*, the search app's match tiles after an upload, the
people map drawn by plotly, a person's cover. Screenshots go where the others go.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import artifacts_dir, screenshot
from tests.conftest import DevPhoto, cli_env, run_cli
from tests.integration.test_people_widget import IDENTITIES, PER_IDENTITY, small_set

START_TIMEOUT = 120.0
RUN_TIMEOUT_MS = 240_000
"""All cells on 2 slow cores: a kernel, the pack for the search, the map."""
NOTEBOOK = "explore.ipynb"


class LabServer:
    """`workbench lab` in a subprocess, in its own process group (a terminal's job)."""

    def __init__(self, home: Path, models_dir: Path, folder: Path, jupyter_dir: Path) -> None:
        from workbench.dashboards import free_port

        self.port = free_port()
        logs = artifacts_dir() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log = logs / "jupyterlab.log"
        env = cli_env(home, models_dir)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        # JupyterLab's own state (settings, workspaces, runtime files) in the test's folder;
        # the news prompt off, so no toast covers the page.
        for var, sub in [
            ("JUPYTER_CONFIG_DIR", "config"),
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("JUPYTERLAB_SETTINGS_DIR", "settings"),
            ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
            ("IPYTHONDIR", "ipython"),
        ]:
            env[var] = str(jupyter_dir / sub)
        news = jupyter_dir / "settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True)
        (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        self._fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        command = ["lab", "--port", str(self.port), "--no-browser", "--dir", str(folder)]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI runs as root
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._fh,
            text=True,
            start_new_session=True,
        )

    def url(self) -> str:
        """The URL the command printed, once JupyterLab answers on it."""
        from workbench.dashboards import DashboardError, wait_until_serving

        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # printed before JupyterLab starts
        pattern = rf"http://127\.0\.0\.1:{self.port}/lab/tree/{NOTEBOOK}\?token=\w{{32,}}"
        if not re.fullmatch(pattern, line):
            self.stop()
            pytest.fail(f"`workbench lab` printed {line!r}:\n{self.text()[-3000:]}")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"`workbench lab` exited with {self.proc.returncode}:\n{self.text()}")
            try:
                wait_until_serving(line, timeout=2)
                return line
            except DashboardError:
                continue
        self.stop()
        pytest.fail(f"JupyterLab did not answer within {START_TIMEOUT:.0f} s:\n{self.text()}")

    def stop(self) -> None:
        """Ctrl-C as a terminal sends it; the command stops JupyterLab and its kernels."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self._fh.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def lab_home(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, dev_photos: list[DevPhoto]
) -> Path:
    """16 dev photos of 4 people, ingested and clustered by the real CLI."""
    root = tmp_path_factory.mktemp("lab")
    home = root / "wb"
    env = cli_env(home, models_dir)
    photos = small_set(dev_photos, root / "photos")
    for args in (["ingest", str(photos), "--no-progress", "--json"], ["cluster"]):
        result = run_cli(args, env)
        if result.returncode != 0:
            pytest.fail(f"`workbench {args[0]}` for the lab failed:\n{result.stderr[-3000:]}")
    return home


@pytest.fixture(scope="session")
def lab_url(
    lab_home: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The tokenised URL of the session's `workbench lab`, serving a copy of notebooks/."""
    from tests.conftest import REPO

    root = tmp_path_factory.mktemp("lab-server")
    folder = root / "notebooks"
    shutil.copytree(REPO / "notebooks", folder)
    nb = json.loads((folder / NOTEBOOK).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    source = "".join(cell["source"])
    assert 'projection = "auto"' in source
    cell["source"] = source.replace('projection = "auto"', 'projection = "pca"')
    (folder / NOTEBOOK).write_text(json.dumps(nb))
    server = LabServer(lab_home, models_dir, folder, root / "jupyter")
    try:
        yield server.url()
    finally:
        server.stop()


def _all_loaded(page: Any, images: str, timeout: int = 60_000) -> int:
    """Wait until every image under ``images`` has loaded; return how many there are."""
    page.wait_for_function(
        """(sel) => {
          const imgs = [...document.querySelectorAll(sel)];
          return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=images,
        timeout=timeout,
    )
    return page.locator(images).count()


def _run_all(page: Any) -> None:
    """Run → Run All Cells once the kernel is connected, and wait until every code cell
    ran ("[n]:" prompts, none "[*]:" or "[ ]:")."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    # The status bar says "Idle" once the new kernel is connected; the notebook's own
    # indicator says idle before that, and a Run All sent then is dropped.
    page.locator("#jp-main-statusbar", has_text="Idle").wait_for(timeout=RUN_TIMEOUT_MS)
    prompts = ".jp-CodeCell .jp-InputArea-prompt"
    for _ in range(3):
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        try:
            page.wait_for_function(  # the first cell is queued or ran
                "(sel) => document.querySelector(sel)?.textContent.trim() !== '[ ]:'",
                arg=prompts,
                timeout=15_000,
            )
            break
        except PlaywrightTimeout:
            continue
    try:
        page.wait_for_function(
            """(sel) => {
              const p = [...document.querySelectorAll(sel)];
              return p.length > 0 && p.every(x => /^\\[\\d+\\]:$/.test(x.textContent.trim()));
            }""",
            arg=prompts,
            timeout=RUN_TIMEOUT_MS,
        )
    except PlaywrightTimeout:
        shot = screenshot(page, "lab-failed")
        seen = page.locator(prompts).all_inner_texts()
        pytest.fail(f"the explore notebook did not finish: {seen} (see {shot})", pytrace=False)


def _show(page: Any, selector: str, name: str) -> None:
    """Scroll ``selector`` into JupyterLab's notebook view and save the view."""
    page.locator(selector).first.scroll_into_view_if_needed()
    page.wait_for_timeout(300)  # plotly and anywidget finish drawing after the scroll
    screenshot(page, name)


def test_explore_notebook_runs_in_jupyterlab(
    page: Any, lab_url: str, lab_home: Path, dev_photos: list[DevPhoto]
) -> None:
    started = time.monotonic()
    page.goto(lab_url, timeout=RUN_TIMEOUT_MS)
    _run_all(page)
    outputs = " ".join(page.locator(".jp-OutputArea").all_inner_texts())
    assert "Traceback" not in outputs and "Error displaying widget" not in outputs, outputs[:3000]
    n_photos = len(IDENTITIES) * PER_IDENTITY

    # The stats draw themselves.
    stats = page.locator('[data-wb-repr="stats"]')
    assert stats.get_attribute("data-photos") == str(n_photos)
    assert stats.get_attribute("data-agree") == "true"

    # The gallery (an anywidget grid): every photo's thumbnail, at most 256 px.
    grid = "[data-testid=gallery-grid] img.wb-thumb"
    page.locator(grid).first.scroll_into_view_if_needed()
    assert _all_loaded(page, grid) == n_photos
    sizes = page.locator(grid).evaluate_all(
        "imgs => imgs.map(i => Math.max(i.naturalWidth, i.naturalHeight))"
    )
    assert max(sizes) <= 256
    _show(page, "[data-testid=gallery-grid]", "lab-gallery")

    # wb.search(...) draws itself: the boxed sample, its face, every match as a thumbnail.
    search = '[data-wb-repr="search"]'
    page.locator(search).scroll_into_view_if_needed()
    tiles = page.locator(f'{search} [data-testid="repr-match"]')
    n_matches = int(page.locator(search).get_attribute("data-matches") or 0)
    assert n_matches >= PER_IDENTITY - 1 and tiles.count() == n_matches
    images = _all_loaded(page, f"{search} img[data-testid=repr-image]")
    assert images == 2 + n_matches
    assert all("%" in t for t in tiles.all_inner_texts())
    _show(page, search, "lab-search-display")

    # The people map: a plotly FigureWidget, one trace per person, every face a point.
    map_traces = ".wb-face-map .js-plotly-plot .scatterlayer .trace"
    page.locator(map_traces).first.wait_for(state="attached", timeout=RUN_TIMEOUT_MS)
    assert page.locator(map_traces).count() >= len(IDENTITIES)
    assert page.locator(".wb-face-map .scatterlayer path.point").count() >= n_photos
    _show(page, ".wb-face-map", "lab-people-map")
    person = '[data-wb-repr="person"]'
    assert _all_loaded(page, f"{person} img") == 1
    assert int(page.locator(person).get_attribute("data-faces") or 0) >= 2

    # The search app: a photo of the first person, uploaded, finds the others.
    sample = [p for p in dev_photos if p.identity == IDENTITIES[0]][PER_IDENTITY]
    page.locator(".wb-upload").first.scroll_into_view_if_needed()
    with page.expect_file_chooser() as chooser:
        page.locator(".wb-upload").first.click()
    chooser.value.set_files(str(sample.path))
    match_tiles = '.wb-search [data-testid="match"]'
    page.locator(match_tiles).first.wait_for(state="attached", timeout=RUN_TIMEOUT_MS)
    assert _all_loaded(page, f"{match_tiles} img") >= PER_IDENTITY - 1
    _show(page, ".wb-search .wb-sample", "lab-search-app")

    # The gallery: open a photo, *Find similar* answers in words.
    page.locator("[data-testid=gallery-grid] .wb-tile").first.click()
    page.locator("[data-testid=detail]").wait_for(state="attached", timeout=60_000)
    page.locator(".wb-find-similar").scroll_into_view_if_needed()
    page.locator(".wb-find-similar").click()
    answer = page.locator("[data-testid=similar-summary], [data-testid=similar-error]")
    answer.first.wait_for(state="attached", timeout=60_000)
    _show(page, "[data-testid=similar-summary], [data-testid=similar-error]", "lab-find-similar")
    found = page.locator("[data-testid=similar-summary]")
    assert found.count() == 1, answer.first.inner_text()
    assert re.match(r"^\d+ similar faces? ", found.inner_text())
    assert page.locator('tr[data-testid=run-row][data-kind="ingest"]').count() == 1  # monitor
    print(f"explore in JupyterLab: {time.monotonic() - started:.1f} s from opening the URL")
