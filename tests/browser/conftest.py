"""Browser harness: real Voila apps in headless Chromium (Debian's ``chromium``) via Playwright.

The contract the app tests use:

* ``browser_home`` (session): a workbench home with the whole dev set ingested
  by the `local` pack, built by the real CLI in a subprocess, so this process
  never opens the Milvus Lite file the dashboards' server will serve.
* ``dashboards_url`` (session): ``workbench dashboards --no-browser`` on a free
  port for ``browser_home``; yields ``http://127.0.0.1:<port>``.
* ``page`` (function): a Playwright page in Chromium, 1400×1000.
* `open_app` (page, base_url, app, **query): open an app and wait for its
  ``[data-wb-ready="<app>"]``.
* `screenshot` (page, name): a PNG under ``$WORKBENCH_TEST_ARTIFACTS/screenshots``
  (default ``<repo>/test-output``).

Chromium or Playwright missing FAILS the tests (never skips): CI must not go
green without a browser having looked at the apps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, cli_env, run_cli

CHROMIUM = Path(os.environ.get("WORKBENCH_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1400, "height": 1000}
READY_TIMEOUT_MS = 120_000
"""Voila runs the whole notebook in a fresh kernel before the page shows (2 slow cores)."""
SERVER_START_TIMEOUT = 120.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/browser is a `browser` test."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


def artifacts_dir() -> Path:
    """Where screenshots go: ``$WORKBENCH_TEST_ARTIFACTS`` or ``<repo>/test-output``."""
    return Path(os.environ.get("WORKBENCH_TEST_ARTIFACTS", REPO / "test-output"))


def screenshot(page: Any, name: str) -> Path:
    """Save the full page as ``<artifacts>/screenshots/<name>.png``; returns the path."""
    path = artifacts_dir() / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def app_url(base_url: str, app: str, **query: Any) -> str:
    """``<base>/voila/render/<app>.ipynb?<query>`` (``None`` values left out)."""
    qs = urllib.parse.urlencode({k: str(v) for k, v in query.items() if v is not None})
    return f"{base_url.rstrip('/')}/voila/render/{app}.ipynb" + (f"?{qs}" if qs else "")


def open_app(page: Any, base_url: str, app: str, **query: Any) -> None:
    """Open ``app`` and wait until it says its first view is drawn (``data-wb-ready``).

    A Voila error page (the notebook failed) fails at once with its text
    instead of waiting out the time-out.
    """
    page.goto(app_url(base_url, app, **query), wait_until="commit", timeout=READY_TIMEOUT_MS)
    ready = f'[data-wb-ready="{app}"]'
    failed = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], .voila-error"
    page.wait_for_selector(f"{ready}, {failed}", state="attached", timeout=READY_TIMEOUT_MS)
    if page.locator(ready).count() == 0:
        text = page.locator(failed).first.inner_text()
        screenshot(page, f"{app}-failed")
        pytest.fail(f"the {app} app failed to start:\n{text[:3000]}", pytrace=False)


def _require_browser() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright for Python is missing: pip install -e '.[dev]' (never run "
            "`playwright install`; the tests drive the system Chromium)",
            pytrace=False,
        )
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's package (`sudo apt-get install "
            "chromium`; `make system-deps` does it as root) or set WORKBENCH_TEST_CHROMIUM",
            pytrace=False,
        )
    return sync_playwright


@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[Any]:
    """One Chromium per test module (a fresh context per test keeps tests apart).

    Not per session: while a sync Playwright is open it leaves an asyncio loop
    marked running in the main thread, and every later test that drives a loop
    of its own (papermill's kernel client, another sync Playwright) then hangs
    or refuses to start. Closing it after each module gives the thread back.
    """
    sync_playwright = _require_browser()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(playwright_browser: Any) -> Iterator[Any]:
    """A fresh browser context and page (its own cookies and storage), 1400×1000."""
    context = playwright_browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    yield pg
    context.close()


# ---- servers ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser_home(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, faces_dev_dir: Path
) -> Path:
    """A workbench with the whole dev set ingested by the local pack (the real CLI)."""
    home = tmp_path_factory.mktemp("browser") / "wb"
    result = run_cli(
        ["ingest", str(faces_dev_dir / "images"), "--no-progress", "--json"],
        cli_env(home, models_dir),
    )
    if result.returncode != 0:
        pytest.fail(f"ingest for the browser tests failed:\n{result.stderr[-3000:]}")
    return home


class DashboardsServer:
    """`workbench dashboards [OPTIONS]` in a subprocess, in its own process group (a
    terminal's foreground job)."""

    def __init__(self, env: dict[str, str], log: Path, *options: str) -> None:
        from workbench.dashboards import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workbench.cli",
                "dashboards",
                "--port",
                str(self.port),
                "--no-browser",
                *options,
            ],
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait(self, timeout: float = SERVER_START_TIMEOUT) -> str:
        from workbench.dashboards import DashboardError, wait_until_serving

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"`workbench dashboards` exited with {self.proc.returncode}:\n"
                    f"{self.log.read_text(errors='replace')[-3000:]}"
                )
            try:
                wait_until_serving(f"{self.url}/", timeout=2)
                return self.url
            except DashboardError:
                continue
        self.stop()
        pytest.fail(
            f"`workbench dashboards` did not answer within {timeout:.0f} s:\n"
            f"{self.log.read_text(errors='replace')[-3000:]}"
        )

    def stop(self) -> int | None:
        """Ctrl-C as a terminal sends it (SIGINT to the whole foreground process group):
        the command stops Voila and its kernels itself. Returns its exit status."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Anything of its process group still running (a kernel) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self._fh.close()
        return self.proc.returncode

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def start_dashboards(
    home: Path, models_dir: Path, log_name: str, *options: str
) -> DashboardsServer:
    """Start `workbench dashboards [OPTIONS]` for ``home`` (log under the artifacts dir)."""
    logs = artifacts_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = cli_env(home, models_dir)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    # Pages of 4 match tiles: a search of the dev set then has more than one to page through.
    env["WORKBENCH_SEARCH__PAGE_SIZE"] = "4"
    return DashboardsServer(env, logs / f"{log_name}.log", *options)


@pytest.fixture(scope="session")
def dashboards_url(
    browser_home: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of `workbench dashboards` serving ``browser_home``; its
    pages may also open the workbenches that tests make under the session's temp root."""
    root = tmp_path_factory.getbasetemp()
    server = start_dashboards(browser_home, models_dir, "dashboards", "--homes-root", str(root))
    try:
        yield server.wait()
    finally:
        server.stop()


__all__ = ["app_url", "artifacts_dir", "open_app", "screenshot", "start_dashboards"]
