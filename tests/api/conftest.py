"""A real `workbench serve-api` process over a real home, and a real HTTP client (httpx).

`api_home` is the dev set ingested and clustered by the CLI, once per session;
`api_server` serves it on a free port (SIGINT on teardown, as Ctrl-C would).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/api is an `api` test (and an integration test: real models)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.api)
            item.add_marker(pytest.mark.integration)


@dataclass
class ApiServer:
    url: str
    key: str
    revoked: str
    home: Path
    env: dict[str, str]
    roots: Path
    log: Path

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-Key": key or self.key}


def make_key(env: dict[str, str], name: str) -> str:
    made = run_cli(["api-key", "create", name, "--json"], env)
    assert made.returncode == 0, made.stderr
    return str(json.loads(made.stdout)["key"])


def start_api(env: dict[str, str], log: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """`workbench serve-api` on a free port; returns once /healthz answers."""
    import httpx

    from workbench.dashboards import free_port

    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", "serve-api", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve-api exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"serve-api did not answer in 120 s:\n{log.read_text()}")


def stop_api(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()
    return proc.returncode


@pytest.fixture(scope="session")
def api_home(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, faces_dev_dir: Path
) -> tuple[Path, dict[str, str]]:
    """The dev set ingested and clustered into people by the CLI."""
    home = tmp_path_factory.mktemp("api") / "wb"
    env = cli_env(home, models_dir)
    env["WORKBENCH_STORAGE__LITE_IDLE_S"] = "2"
    done = run_cli(["ingest", str(faces_dev_dir / "images"), "--json", "--no-progress"], env)
    assert done.returncode == 0, done.stderr
    clustered = run_cli(["cluster", "--json"], env)
    assert clustered.returncode == 0, clustered.stderr
    return home, env


@pytest.fixture(scope="module")
def api_server(
    api_home: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    home, env = api_home
    roots = tmp_path_factory.mktemp("api-roots")
    env = {
        **env,
        "WORKBENCH_API__MAX_UPLOAD_BYTES": str(3 * 2**20),
        "WORKBENCH_API__MAX_UPLOAD_PIXELS": str(30_000_000),
        "WORKBENCH_API__PAGE_SIZE": "20",
        # Generated requests may name remote sources: let them fail here, not on the internet.
        "WORKBENCH_REMOTE__VK_API_URL": "http://127.0.0.1:9",
        "WORKBENCH_REMOTE__YADISK_API_URL": "http://127.0.0.1:9",
        "WORKBENCH_REMOTE__RETRIES": "0",
    }
    key = make_key(env, "tests")
    revoked = make_key(env, "revoked")
    gone = run_cli(["api-key", "revoke", revoked[:12]], env)
    assert gone.returncode == 0, gone.stderr
    log = tmp_path_factory.mktemp("api-log") / "serve-api.log"
    proc, url = start_api(env, log, "--root", str(roots))
    try:
        yield ApiServer(url, key, revoked, home, env, roots, log)
    finally:
        code = stop_api(proc)
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, text
        assert code == 0, text
