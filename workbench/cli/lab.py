"""``workbench lab``: JupyterLab on ``notebooks/`` for the workbench of the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from workbench.cli._common import say, settings_from
from workbench.lab import DEFAULT_PORT


@click.command("lab")
@click.option(
    "--port",
    type=int,
    default=DEFAULT_PORT,
    show_default=True,
    help="Port of JupyterLab, on 127.0.0.1 (from elsewhere: ssh -L PORT:127.0.0.1:PORT host).",
)
@click.option("--no-browser", is_flag=True, help="Do not open a browser tab.")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Folder JupyterLab opens [default: $WORKBENCH_NOTEBOOKS_DIR, else the repository's "
    "notebooks/].",
)
@click.option(
    "--allow-root",
    is_flag=True,
    help="Run as root anyway (a container or CI, where root is the only user).",
)
@click.pass_context
def lab_command(
    ctx: click.Context, port: int, no_browser: bool, folder: Path | None, allow_root: bool
) -> None:
    """Open JupyterLab on notebooks/ for this workbench, until Ctrl-C.

    JupyterLab listens on 127.0.0.1 only, with a fresh token: the URL printed
    (on stdout) carries it, and opens explore.ipynb. Every notebook's kernel gets
    the global --home / --pack as WORKBENCH_HOME / WORKBENCH_PACK, which the
    notebooks' parameters left at None read. The home's vector server is held
    while JupyterLab runs, as `workbench dashboards` does.
    """
    from workbench.lab import check_lab, lab_path, lab_url, new_token, serve

    settings = settings_from(ctx)
    folder = check_lab(port, folder, allow_root)
    token = new_token()
    say(
        f"JupyterLab on {folder} for workbench {settings.home} (pack {settings.pack}); "
        "open (Ctrl-C stops it):",
        err=True,
    )
    say(lab_url(port, token, lab_path(folder)))
    sys.stdout.flush()
    code = serve(
        settings, folder, token, port=port, open_browser=not no_browser, allow_root=allow_root
    )
    sys.exit(code)


COMMANDS = [lab_command]
