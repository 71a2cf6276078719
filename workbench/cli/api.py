"""``workbench serve-api`` and ``workbench api-key``: the HTTP API and its keys."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from workbench.cli._common import emit, json_option, say, settings_from
from workbench.redaction import printable


@click.command("serve-api")
@click.option("--host", default=None, help="Address to bind [default: 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port [default: 8000].")
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A folder whose files `POST /v1/ingest` may name (repeatable) "
    "[default: $WORKBENCH_API__ROOTS, else none: uploads and remote sources only].",
)
@click.pass_context
def serve_api(
    ctx: click.Context, host: str | None, port: int | None, roots: tuple[Path, ...]
) -> None:
    """Serve the HTTP API (FastAPI; docs at /docs, schema at /openapi.json) until Ctrl-C.

    Every route but /healthz needs a key of `workbench api-key create`. The API
    shares the home with notebooks, the dashboards and CLI commands at once.
    """
    import uvicorn

    from workbench.api.app import create_app
    from workbench.dashboards import check_port_free, is_loopback

    settings = settings_from(ctx)
    api = settings.api
    updates: dict[str, object] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if roots:
        updates["roots"] = [*api.roots, *roots]
    if updates:
        settings = settings.model_copy(update={"api": api.model_copy(update=updates)})
        api = settings.api
    if not is_loopback(api.host):
        click.secho(
            f"WARNING: serving the API on {api.host}: anyone who can reach this port and holds "
            "a key can search and read every photo of the workbench, over plain HTTP. Prefer "
            "the default 127.0.0.1 and an SSH tunnel, or a reverse proxy with TLS.",
            fg="yellow",
            err=True,
        )
    if api.port:
        check_port_free(api.host, api.port)
    from workbench.api.keys import ApiKeys
    from workbench.store.catalog import Catalog

    catalog = Catalog(settings.catalog_url)
    try:
        if not any(k.active for k in ApiKeys(catalog).list()):
            say(
                "no API key yet: every request will be refused; `workbench api-key create NAME`",
                err=True,
            )
    finally:
        catalog.close()
    shown = "localhost" if api.host == "127.0.0.1" else api.host
    say(f"workbench {settings.home}: API on http://{shown}:{api.port} (docs /docs)", err=True)
    config = uvicorn.Config(
        create_app(settings),
        host=api.host,
        port=api.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    # uvicorn shuts down on Ctrl-C, then raises it again: for a server, the way to stop it.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run()
    say("API stopped", err=True)


@click.group("api-key")
def api_key() -> None:
    """Make, list and revoke the HTTP API's keys (only their hashes are stored)."""


def _keys(ctx: click.Context):  # type: ignore[no-untyped-def]
    from workbench.api.keys import ApiKeys
    from workbench.store.catalog import Catalog

    return ApiKeys(Catalog(settings_from(ctx).catalog_url))


@api_key.command("create")
@click.argument("name")
@json_option("Print the key and its record as one JSON document.")
@click.pass_context
def create(ctx: click.Context, name: str, as_json: bool) -> None:
    """Make a key for NAME (who or what uses it); the key is printed this once."""
    keys = _keys(ctx)
    try:
        made = keys.create(name)
    finally:
        keys.catalog.close()
    if as_json:
        emit({**made.info.to_dict(), "key": made.key})
        return
    say(made.key)
    say(
        f"key {made.info.id} ({printable(made.info.name)}): keep it now, it is not shown again",
        err=True,
    )


@api_key.command("list")
@json_option("Print the keys (never the keys themselves) as one JSON document.")
@click.pass_context
def list_keys(ctx: click.Context, as_json: bool) -> None:
    """The keys: id, prefix, name, when made, last used and revoked."""
    keys = _keys(ctx)
    try:
        infos = keys.list()
    finally:
        keys.catalog.close()
    if as_json:
        emit([k.to_dict() for k in infos])
        return
    if not infos:
        say("no API keys; `workbench api-key create NAME` makes one")
    for k in infos:
        d = k.to_dict()
        state = f"revoked {d['revoked_at']}" if d["revoked_at"] else "active"
        used = d["last_used_at"] or "never used"
        say(f"{k.id:>4}  {k.prefix}…  {printable(k.name)}  made {d['created_at']}, {used}, {state}")


@api_key.command("revoke")
@click.argument("key")
@click.pass_context
def revoke(ctx: click.Context, key: str) -> None:
    """Revoke KEY (its id or the prefix `list` shows): requests with it are refused at once."""
    keys = _keys(ctx)
    try:
        info = keys.revoke(key)
    finally:
        keys.catalog.close()
    say(f"revoked key {info.id} ({printable(info.name)}, {info.prefix}…)")


COMMANDS = [serve_api, api_key]
