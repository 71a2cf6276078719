"""Serving JupyterLab on ``notebooks/`` for one workbench: `workbench lab` is a thin shell
over `serve`. Why the pieces are as they are:

* **This machine only, with a token.** JupyterLab runs code as the user: it binds
  ``127.0.0.1`` (there is no option for another address; use an SSH tunnel), and
  its token is made here and handed over in the environment (``JUPYTER_TOKEN``),
  not on the command line, where any user of the machine reads it in ``ps``. The
  URL printed carries it.
* **The command line's workbench.** Kernels inherit ``WORKBENCH_HOME`` and
  ``WORKBENCH_PACK`` (`workbench.dashboards.kernel_env`), which every notebook's
  parameters cell reads when its ``home`` and ``pack`` are left at ``None``: after
  ``workbench --home X --pack P lab``, each notebook opens X with P.
* **Offline.** JupyterLab asks PyPI for updates and fetches a news feed unless told
  not to, and its extension manager installs from PyPI: none of that here (the
  workbench runs without a network, and photos are private).
* **A busy port is refused** (`check_port_free`) instead of JupyterLab quietly
  taking the next one, which would leave the URL printed pointing elsewhere.
* **Not as root, unless asked.** JupyterLab refuses to run as root (its terminals and
  kernels would be root's); `check_lab` says so in words before anything starts,
  and ``allow_root`` (``--allow-root``: a container, CI) passes JupyterLab's own
  switch.
* **One home, many kernels**: the command holds the home's vector server while
  JupyterLab runs (`workbench.dashboards.run_server`), as `workbench dashboards` does.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from workbench._optional import available
from workbench.dashboards import DashboardError, check_port_free, kernel_env, run_server
from workbench.errors import MissingDependencyError, WorkbenchError
from workbench.notebooks import NOTEBOOKS_DIR
from workbench.settings import WorkbenchSettings

HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8888
NOTEBOOKS_DIR_ENV: Final = "WORKBENCH_NOTEBOOKS_DIR"
"""Where the notebooks are, for an installed package without the repository."""
FIRST_NOTEBOOK: Final = "explore.ipynb"
"""The notebook the URL opens, when the folder has it."""


class LabError(WorkbenchError):
    """JupyterLab cannot be started here (a busy port, no notebooks folder, root)."""


def notebooks_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder JupyterLab opens: ``$WORKBENCH_NOTEBOOKS_DIR``, else ``notebooks/``
    beside the package (a source checkout or an editable install)."""
    env = os.environ if env is None else env
    given = env.get(NOTEBOOKS_DIR_ENV)
    folder = Path(given).expanduser() if given else NOTEBOOKS_DIR
    if not folder.is_dir():
        raise LabError(
            f"no notebooks folder at {folder}: run from a checkout of the repository, or set "
            f"{NOTEBOOKS_DIR_ENV} (or --dir) to a folder of notebooks"
        )
    return folder


def lab_path(folder: Path) -> str:
    """The page the URL opens: the explore notebook when ``folder`` has it, else the lab."""
    return f"/lab/tree/{FIRST_NOTEBOOK}" if (folder / FIRST_NOTEBOOK).is_file() else "/lab"


def lab_url(port: int, token: str, path: str = "/lab") -> str:
    """``http://127.0.0.1:<port><path>?token=<token>``: what to open in a browser."""
    return f"http://{HOST}:{port}{path}?token={token}"


def lab_command(folder: Path, port: int, open_browser: bool, allow_root: bool = False) -> list[str]:
    """JupyterLab serving ``folder`` on 127.0.0.1:``port``, no port hopping, nothing fetched."""
    return [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.ip={HOST}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={folder}",
        f"--ServerApp.default_url={lab_path(folder)}",
        f"--ServerApp.open_browser={open_browser}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",
        *(["--ServerApp.allow_root=True"] if allow_root else []),
    ]


def new_token() -> str:
    """A fresh token (192 random bits, as Jupyter makes its own)."""
    return secrets.token_hex(24)


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def check_lab(port: int, folder: Path | None = None, allow_root: bool = False) -> Path:
    """Refuse in words what would stop JupyterLab (the extra missing, no folder, root
    without ``allow_root``, a busy port) before anything starts; returns the folder."""
    # Found, not imported: JupyterLab's import alone takes seconds, and the server imports it.
    if not available("jupyterlab"):
        raise MissingDependencyError("jupyterlab", "notebooks", "`workbench lab` (JupyterLab)")
    folder = folder or notebooks_dir()
    if running_as_root() and not allow_root:
        raise LabError(
            "JupyterLab will not run as root (its kernels and terminals would be root's): "
            "run `workbench lab` as a normal user, or pass --allow-root where root is the "
            "only user (a container, CI)"
        )
    try:
        check_port_free(HOST, port)
    except DashboardError as e:
        raise LabError(f"JupyterLab cannot start: {e}") from e
    return folder


def serve(
    settings: WorkbenchSettings,
    folder: Path,
    token: str,
    port: int = DEFAULT_PORT,
    open_browser: bool = True,
    allow_root: bool = False,
) -> int:
    """Run JupyterLab on ``folder`` until Ctrl-C (call `check_lab` first); returns its exit
    code. Kernels get the workbench's ``WORKBENCH_*`` settings and JupyterLab the token."""
    env = {**kernel_env(settings), "JUPYTER_TOKEN": token}
    command = lab_command(folder, port, open_browser, allow_root)
    return run_server(settings, command, env, "jupyterlab")


__all__ = [
    "DEFAULT_PORT",
    "FIRST_NOTEBOOK",
    "HOST",
    "NOTEBOOKS_DIR_ENV",
    "LabError",
    "check_lab",
    "lab_command",
    "lab_path",
    "lab_url",
    "new_token",
    "notebooks_dir",
    "running_as_root",
    "serve",
]
