"""Serving the Voila apps of ``dashboards/``: the folder, the host policy, the servers.

`workbench dashboards` (`workbench.cli.dashboards`) is a thin shell over `serve`.
Why the pieces are here and not in the CLI:

* **Private photos.** Voila binds ``127.0.0.1`` unless told otherwise; any
  other host gets `host_warning` (the apps show every photo of the catalog
  to whoever reaches the port, without a login).
* **One home, many kernels.** Every Voila page is its own kernel process; each
  attaches to the home's shared vector server (`workbench.store.lite_server`),
  as a notebook or a CLI command on the same home does. `serve` holds it for
  as long as the apps run, so pages do not wait for it to start.
* **Home and pack per page.** Kernels inherit the environment (``WORKBENCH_*``)
  and Voila puts the page's query string in ``QUERY_STRING``;
  `settings_from_query` merges the two. A page may name only the served home,
  or an existing workbench under a root the server was started with
  (``--homes-root``), and only a registered pack: an unauthenticated request
  never opens (or creates) a catalog elsewhere.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from workbench.errors import ConfigurationError, WorkbenchError
from workbench.settings import WorkbenchSettings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8866
APPS: tuple[str, ...] = ("gallery", "search", "people", "monitor")
"""The apps the design names ("people" is its clusters app); `list_apps` says which are present."""
QUERY_KEYS: tuple[str, ...] = ("home", "pack")
"""Settings a page's query string may set."""
SERVED_HOME_ENV = "WORKBENCH_DASHBOARDS_HOME"
"""The home `serve` serves: the one a page's ``?home=`` may always name."""
HOMES_ROOTS_ENV = "WORKBENCH_DASHBOARDS_HOMES_ROOTS"
"""Folders (``os.pathsep``-separated) under which a page's ``?home=`` may name a workbench."""
DASHBOARDS_DIR_ENV = "WORKBENCH_DASHBOARDS_DIR"
"""Where the app notebooks are, for an installed package without the repository."""


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
        # As the server will: a port left in TIME_WAIT by the last run is free to listen on
        # (on Linux SO_REUSEADDR still refuses a port something listens on).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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

    The query string comes from whoever can reach the page: its ``home`` must be the
    served home or an existing workbench under one of the served roots, and its
    ``pack`` a registered pack (`check_page_choice`); anything else is refused in
    words, before anything is opened.
    """
    query = os.environ.get("QUERY_STRING", "") if query is None else query
    page = parse_query(query)
    given = {k: v for k, v in overrides.items() if v is not None}
    check_page_choice({k: v for k, v in page.items() if k not in given})
    return WorkbenchSettings(**{**page, **given})


class PageRefused(WorkbenchError):
    """A page's query string names a workbench or pack the dashboards do not serve."""


def served_homes(env: Mapping[str, str] | None = None) -> tuple[Path | None, list[Path]]:
    """The home `serve` serves, and the roots under which pages may name others."""
    env = os.environ if env is None else env
    served = env.get(SERVED_HOME_ENV)
    roots = [Path(r).resolve() for r in env.get(HOMES_ROOTS_ENV, "").split(os.pathsep) if r]
    return (Path(served).resolve() if served else None), roots


def check_page_choice(page: Mapping[str, str], env: Mapping[str, str] | None = None) -> None:
    """Refuse a page's ``home`` / ``pack`` the dashboards do not serve (see
    `settings_from_query`); nothing is opened or created to decide."""
    served, roots = served_homes(env)
    home = page.get("home")
    if home is not None:
        path = Path(home).expanduser().resolve()
        under_root = any(path.is_relative_to(r) for r in roots)
        if path != served and not (under_root and (path / "catalog.sqlite").is_file()):
            if served is None:
                allowed = "no workbench named in its address (none is served)"
            else:
                allowed = f"only the served workbench {served}"
            also = f" or an existing one under {', '.join(map(str, roots))}" if roots else ""
            raise PageRefused(
                f"this page may open {allowed}{also}; ?home={home} is not allowed, and "
                "nothing was opened or made there (`workbench dashboards --homes-root DIR` "
                "serves the workbenches under DIR)"
            )
    pack = page.get("pack")
    if pack is not None:
        from workbench.faces.registry import PACKS, split_spec

        served_pack = (env or os.environ).get("WORKBENCH_PACK")
        parts = split_spec(pack)
        # Named parts only: a page never points a pack at a file or folder.
        named = parts is not None and not any(
            "/" in x or "\\" in x or x.lower().endswith(".onnx") for x in parts
        )
        if pack not in PACKS and pack != served_pack and not named:
            raise PageRefused(
                f"pack={pack!r} is not a pack these dashboards serve; use one of "
                f"{', '.join(PACKS.names())} (a model directory is set by the server, not a page)"
            )


# ---- servers -----------------------------------------------------------------------
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


def kernel_env(settings: WorkbenchSettings) -> dict[str, str]:
    """``WORKBENCH_*`` variables that make a kernel's `WorkbenchSettings` this workbench's:
    its home, pack, and the detector or embedder the command line chose."""
    env = {"WORKBENCH_HOME": str(Path(settings.home).resolve()), "WORKBENCH_PACK": settings.pack}
    for key in ("detector", "embedder"):
        value = getattr(settings, key)
        if value is not None:
            env[f"WORKBENCH_{key.upper()}"] = str(value)
    return env


def settings_env(
    settings: WorkbenchSettings, homes_roots: list[Path] | None = None
) -> dict[str, str]:
    """`kernel_env`, and what tells the pages which homes they may name
    (`check_page_choice`)."""
    env = kernel_env(settings)
    env[SERVED_HOME_ENV] = env["WORKBENCH_HOME"]
    if homes_roots:
        env[HOMES_ROOTS_ENV] = os.pathsep.join(str(Path(r).resolve()) for r in homes_roots)
    return env


def serve(
    settings: WorkbenchSettings,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    open_browser: bool = True,
    folder: Path | None = None,
    preheat: bool = True,
    homes_roots: list[Path] | None = None,
) -> int:
    """Serve the apps until Voila exits (Ctrl-C); returns Voila's exit code.

    Holds the home's shared vector server while the apps run (`run_server`).
    """
    _require_voila()
    folder = folder or dashboards_dir()
    check_port_free(host, port)
    command = voila_command(folder, host, port, open_browser, preheat)
    return run_server(settings, command, settings_env(settings, homes_roots), "voila")


def run_server(
    settings: WorkbenchSettings, command: list[str], env: Mapping[str, str], name: str
) -> int:
    """Run ``command`` (a Voila or Jupyter server) with ``env`` added to this process's
    environment until it exits or Ctrl-C; returns its exit code.

    Holds the home's shared vector server meanwhile (unless the settings name a
    Milvus server), so kernels find it started. The server's output (its
    kernels' too) goes to stderr, control characters escaped, until it is
    stopping; then to the debug log as ``<name>: ...``.
    """
    from workbench.store.catalog_vectors import writable
    from workbench.store.lite_server import attach
    from workbench.store.vectors import is_lite_uri

    with contextlib.ExitStack() as stack:
        _exit_on_sigterm(stack)
        uri = settings.milvus_uri
        if is_lite_uri(uri) and writable(Path(uri)):
            storage = settings.storage
            stack.enter_context(
                attach(Path(uri), idle_s=storage.lite_idle_s, wait_s=storage.wait_s)
            )
        full_env = {**os.environ, **env}
        full_env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # kernels share cores with Milvus
        proc = subprocess.Popen(
            command,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in the terminal reaches this process only, which then
            # stops the server, and the server its kernels.
            start_new_session=True,
        )
        relay = _Relay(proc, name)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            # A kernel stopped in the middle of a reply prints a ZMQ traceback: what the
            # server and its kernels say while stopping goes to the debug log (-v).
            relay.quiet = True
            _stop(proc)
            relay.join(5)


class _Relay(threading.Thread):
    """Copies a server's output (its kernels' too) to stderr, control characters escaped;
    once ``quiet``, to the debug log only."""

    def __init__(self, proc: subprocess.Popen[bytes], name: str) -> None:
        super().__init__(name=f"{name}-output", daemon=True)
        assert proc.stdout is not None
        self._out = proc.stdout
        self.label = name
        self.quiet = False
        self.start()

    def run(self) -> None:
        from loguru import logger

        from workbench.redaction import printable

        for raw in self._out:
            line = printable(raw.decode("utf-8", "replace").rstrip("\r\n"), keep="\t")
            if self.quiet:
                logger.debug("{}: {}", self.label, line)
            else:
                print(line, file=sys.stderr, flush=True)


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
    "kernel_env",
    "list_apps",
    "PageRefused",
    "check_page_choice",
    "parse_query",
    "run_server",
    "serve",
    "settings_from_query",
    "voila_command",
    "wait_until_serving",
]
