"""``workbench dashboards``: serve the Voila apps (gallery, search, ...) on this machine."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from workbench.cli._common import say, settings_from
from workbench.dashboards import DEFAULT_HOST, DEFAULT_PORT


@click.command("dashboards")
@click.option(
    "--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port of the Voila server."
)
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="Address to bind. Anything but loopback shows the photos to the network, without a "
    "login: see dashboards/README.md for an SSH tunnel or an authenticating proxy instead.",
)
@click.option("--no-browser", is_flag=True, help="Do not open a browser tab.")
@click.option(
    "--preheat/--no-preheat",
    default=True,
    show_default=True,
    help="Keep one kernel per app started ahead, with its imports done (pages show in ~1 s; "
    "costs one idle kernel process per app).",
)
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Folder of the app notebooks [default: $WORKBENCH_DASHBOARDS_DIR, else the "
    "repository's dashboards/].",
)
@click.option(
    "--homes-root",
    "homes_roots",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Let pages open any existing workbench under this folder with ?home=DIR "
    "(repeatable) [default: only the served home].",
)
@click.pass_context
def dashboards_command(
    ctx: click.Context,
    port: int,
    host: str,
    no_browser: bool,
    preheat: bool,
    folder: Path | None,
    homes_roots: tuple[Path, ...],
) -> None:
    """Serve the Voila apps of dashboards/ until Ctrl-C.

    Every app reads the workbench from the global --home / --pack (or
    WORKBENCH_*); a page may name another pack with ?pack=NAME, and another
    existing workbench under a --homes-root with ?home=DIR. The apps share the
    home's vectors with every other process using the home (a notebook, a CLI
    command) through its vector server, which this command holds while it runs.
    """
    from workbench.dashboards import dashboards_dir, host_warning, list_apps, serve

    warning = host_warning(host)
    if warning:
        click.secho(warning, fg="yellow", err=True)
    settings = settings_from(ctx)
    folder = folder or dashboards_dir()
    shown = "localhost" if host == DEFAULT_HOST else host
    apps = ", ".join(f"http://{shown}:{port}/voila/render/{a}.ipynb" for a in list_apps(folder))
    say(f"workbench {settings.home} (pack {settings.pack}); apps: {apps}", err=True)
    code = serve(
        settings,
        host=host,
        port=port,
        open_browser=not no_browser,
        folder=folder,
        preheat=preheat,
        homes_roots=list(homes_roots),
    )
    sys.exit(code)


COMMANDS = [dashboards_command]
