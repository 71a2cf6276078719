"""Serving the Voila apps of ``dashboards/``: the folder, the host policy, the servers.

`workbench dashboards` (`workbench.cli.dashboards`) is a thin shell over `serve`.
Why the pieces are here and not in the CLI:

* **Private photos.** Voila binds ``127.0.0.1`` unless told otherwise; any
  other host gets `host_warning` (the apps show every photo of the catalog
  to whoever reaches the port, without a login).
* **One Milvus Lite file, many kernels.** Every Voila page is its own kernel
  process, and a Milvus Lite file can be opened by one process at a time
  (``DataDirLockedError``). So `serve` starts one ``milvus-lite server`` on the
  home's ``vectors.db`` and hands kernels its URI through
  ``WORKBENCH_STORAGE__MILVUS_URI``; settings that already name a Milvus
  server are passed on as they are.
* **Home and pack per page.** Kernels inherit the environment (``WORKBENCH_*``)
  and Voila puts the page's query string in ``QUERY_STRING``;
  `settings_from_query` merges the two (``?home=...&pack=...`` wins).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from loguru import logger

from workbench.errors import ConfigurationError, WorkbenchError
from workbench.settings import WorkbenchSettings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8866
APPS: tuple[str, ...] = ("gallery", "search", "people", "monitor")
"""The apps the design names ("people" is its clusters app); `list_apps` says which are present."""
QUERY_KEYS: tuple[str, ...] = ("home", "pack")
"""Settings a page's query string may set."""
SERVED_HOME_ENV = "WORKBENCH_DASHBOARDS_HOME"
"""The home whose vectors the dashboards' Milvus Lite server serves (set by `serve`)."""
DASHBOARDS_DIR_ENV = "WORKBENCH_DASHBOARDS_DIR"
"""Where the app notebooks are, for an installed package without the repository."""
SERVER_URI_PREFIXES = ("http://", "https://", "tcp://", "unix:")


class DashboardError(WorkbenchError):
    """The dashboards cannot be served (busy port, missing folder or extra)."""


# ---- where the apps are ------------------------------------------------------------
def dashboards_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder of the app notebooks: ``$WORKBENCH_DASHBOARDS_DIR``, else ``dashboards/``
    beside the package (a source checkout or an editable install).

    A wheel does not carry the notebooks; point ``WORKBENCH_DASHBOARDS_DIR``
    at a copy of the repository's ``dashboards/`` folder.
    """
    env = os.environ if env is None else env
    given = env.get(DASHBOARDS_DIR_ENV)
    repo = Path(__file__).resolve().parents[1]
    folder = Path(given).expanduser() if given else repo / "dashboards"
    if not folder.is_dir() or not any(folder.glob("*.ipynb")):
        raise DashboardError(
            f"no dashboard notebooks in {folder}: run from a checkout of the repository, or set "
            f"{DASHBOARDS_DIR_ENV} to a folder holding gallery.ipynb and the other apps"
        )
    return folder


def list_apps(folder: Path | None = None) -> list[str]:
    """Names of the apps in ``folder`` (notebook stems), sorted."""
    return sorted(p.stem for p in (folder or dashboards_dir()).glob("*.ipynb"))


# ---- host and port -----------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_warning(host: str) -> str | None:
    """What to tell the user before binding ``host``; ``None`` for a loopback host."""
    if is_loopback(host):
        return None
    return (
        f"WARNING: serving the dashboards on {host}: anyone who can reach this port sees every "
        "photo of the workbench and can search it, with no login. Photos are often private. "
        f"Prefer the default {DEFAULT_HOST} and an SSH tunnel (ssh -L 8866:127.0.0.1:8866 "
        "host) or a reverse proxy with authentication and TLS (see dashboards/README.md)."
    )


def check_port_free(host: str, port: int) -> None:
    """Raise `DashboardError` when ``port`` on ``host`` is taken (Voila would quietly pick
    another port, and the URL the user was given would show someone else's server)."""
    if not 1 <= port <= 65535:
        raise DashboardError(f"port must be 1–65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host.strip("[]"), port))
        except OSError as e:
            raise DashboardError(
                f"port {port} on {host} is already in use ({e.strerror or e}); choose another "
                "with --port, or stop what is listening there"
            ) from e


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port the OS says is free now (for the Milvus Lite server and tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_for_port(host: str, port: int, proc: subprocess.Popen[Any], what: str, t: float) -> None:
    deadline = time.monotonic() + t
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DashboardError(f"{what} exited with code {proc.returncode} before it listened")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.2)
    raise DashboardError(f"{what} did not listen on {host}:{port} within {t:.0f} s")


# ---- settings of a page ------------------------------------------------------------
def parse_query(query: str | None) -> dict[str, str]:
    """The known keys (`QUERY_KEYS`) of a query string, last value wins; others ignored.

    >>> parse_query("home=%2Fdata%2Fwb&pack=facenet&x=1")
    {'home': '/data/wb', 'pack': 'facenet'}
    """
    values = parse_qs((query or "").lstrip("?"), keep_blank_values=False)
    return {k: values[k][-1] for k in QUERY_KEYS if values.get(k)}


def settings_from_query(query: str | None = None, **overrides: Any) -> WorkbenchSettings:
    """Settings of one app page: ``WORKBENCH_*`` from the kernel's environment, then the
    page's query string (default: ``$QUERY_STRING``, which Voila sets), then ``overrides``
    (a notebook's parameters, where not ``None``).

    When the page names another home than the one `serve` started a Milvus Lite
    server for, the server URI it inherited is dropped: that home's own
    ``vectors.db`` is used instead.
    """
    query = os.environ.get("QUERY_STRING", "") if query is None else query
    given = {k: v for k, v in overrides.items() if v is not None}
    values: dict[str, Any] = {**parse_query(query), **given}
    settings = WorkbenchSettings(**values)
    served = os.environ.get(SERVED_HOME_ENV)
    if served and "home" in values and not _same_path(served, settings.home):
        storage = settings.storage.model_copy(update={"milvus_uri": None})
        settings = settings.model_copy(update={"storage": storage})
    return settings


def _same_path(a: str | Path, b: str | Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


# ---- servers -----------------------------------------------------------------------
def is_server_uri(uri: str) -> bool:
    """True when a Milvus URI names a server (any process may connect), not a Lite file."""
    return uri.startswith(SERVER_URI_PREFIXES)


@contextlib.contextmanager
def milvus_lite_server(
    data_dir: Path, host: str = DEFAULT_HOST, port: int | None = None, timeout: float = 60.0
) -> Iterator[str]:
    """A ``milvus-lite server`` on ``data_dir`` (a Lite ``vectors.db``) for the duration;
    yields its URI. Bound to ``host`` (loopback by default: it serves every face vector)."""
    exe = shutil.which("milvus-lite", path=str(Path(sys.executable).parent)) or shutil.which(
        "milvus-lite"
    )
    if exe is None:
        raise DashboardError(
            "the milvus-lite command is missing; install it with `pip install milvus-lite` "
            "(a dependency of face-workbench) so the apps can share the vector index"
        )
    port = port or free_port(host)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "server", "--data-dir", str(data_dir), "--host", host, "--port", str(port)]
    logger.info("starting the Milvus Lite server: {}", " ".join(cmd))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    try:
        _wait_for_port(host, port, proc, "the Milvus Lite server", timeout)
        yield f"http://{host}:{port}"
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def voila_command(
    folder: Path, host: str, port: int, open_browser: bool, preheat: bool = True
) -> list[str]:
    """Voila serving every notebook of ``folder``: no port hopping, no tracebacks shown,
    idle kernels culled (each open page holds a kernel process).

    ``preheat`` keeps one kernel per app started with the app's imports done
    (the apps wait for the request before they read the query string and open
    the workbench: `workbench.widgets.common.wait_for_page_request`), so a page
    shows in about a second instead of a kernel start and imports later.
    """
    return [
        sys.executable,
        "-m",
        "voila",
        str(folder),
        f"--Voila.ip={host}",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",
        f"--Voila.open_browser={open_browser}",
        "--VoilaConfiguration.show_tracebacks=False",
        "--MappingKernelManager.cull_idle_timeout=1800",
        "--MappingKernelManager.cull_interval=300",
        f"--VoilaConfiguration.preheat_kernel={preheat}",
    ]


def settings_env(settings: WorkbenchSettings, milvus_uri: str | None) -> dict[str, str]:
    """``WORKBENCH_*`` variables that make a kernel's `WorkbenchSettings` this workbench's."""
    env = {
        "WORKBENCH_HOME": str(Path(settings.home).resolve()),
        "WORKBENCH_PACK": settings.pack,
    }
    for key in ("detector", "embedder"):
        value = getattr(settings, key)
        if value is not None:
            env[f"WORKBENCH_{key.upper()}"] = str(value)
    if milvus_uri is not None:  # the Lite server `serve` started for this home
        env["WORKBENCH_STORAGE__MILVUS_URI"] = milvus_uri
        env[SERVED_HOME_ENV] = env["WORKBENCH_HOME"]
    return env


def serve(
    settings: WorkbenchSettings,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    open_browser: bool = True,
    folder: Path | None = None,
    preheat: bool = True,
) -> int:
    """Serve the apps until Voila exits (Ctrl-C); returns Voila's exit code.

    Starts a Milvus Lite server for the home's vectors unless the settings name
    a Milvus server already, and stops it on the way out.
    """
    _require_voila()
    folder = folder or dashboards_dir()
    check_port_free(host, port)
    with contextlib.ExitStack() as stack:
        _exit_on_sigterm(stack)
        uri = settings.milvus_uri
        served_uri = (
            None
            if is_server_uri(uri)
            else stack.enter_context(milvus_lite_server(Path(uri), DEFAULT_HOST))
        )
        env = {**os.environ, **settings_env(settings, served_uri)}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # kernels share cores with Milvus
        proc = subprocess.Popen(
            voila_command(folder, host, port, open_browser, preheat),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        try:
            return proc.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            _stop(proc)


def _exit_on_sigterm(stack: contextlib.ExitStack) -> None:
    """Turn SIGTERM (a service manager's stop) into SystemExit, so the servers started
    are stopped on the way out instead of left running without a parent."""
    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    stack.callback(signal.signal, signal.SIGTERM, previous)


def _require_voila() -> None:
    try:
        import voila  # noqa: F401
    except ImportError as e:
        raise ConfigurationError(
            "the dashboards need Voila and ipywidgets: pip install 'face-workbench[dashboards]'"
        ) from e


def wait_until_serving(url: str, timeout: float = 120.0) -> None:
    """Block until ``url`` answers HTTP (a test or a script starting `serve` elsewhere)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - local URL
                if r.status < 500:
                    return
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return
            last = e
        except OSError as e:
            last = e
        time.sleep(0.5)
    raise DashboardError(f"{url} did not answer within {timeout:.0f} s ({last})")


__all__ = [
    "APPS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DashboardError",
    "check_port_free",
    "dashboards_dir",
    "free_port",
    "host_warning",
    "is_loopback",
    "list_apps",
    "milvus_lite_server",
    "parse_query",
    "serve",
    "settings_from_query",
    "voila_command",
    "wait_until_serving",
]
