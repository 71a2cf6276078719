"""``workbench milvus start|stop|status``: a real Milvus server on this machine.

The server (PyPI ``milvus`` 2.3.5, the ``server`` extra) runs detached with
its data, config and log in one directory (default ``<home>/milvus-server``),
every component bound to 127.0.0.1. Point a workbench at it with
``WORKBENCH_STORAGE__MILVUS_URI``; `workbench reindex` moves the vectors
there from the catalog without running any model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from workbench.cli._common import emit, say, settings_from


def _data_dir(ctx: click.Context, data: Path | None) -> Path:
    if data is not None:
        return data

    return Path(settings_from(ctx).home) / "milvus-server"


def _server(
    ctx: click.Context, data: Path | None, port: int | None = None, free_ports: bool = False
) -> Any:
    from workbench.store.milvus_server import MilvusServer, pick_ports

    folder = _data_dir(ctx, data)
    ports = pick_ports(folder) if free_ports else None
    server = MilvusServer(folder, port=port or 19530, ports=ports)
    if port is None:  # stop/status: the ports it was started with
        server.adopt_recorded_ports()
    return server


_DATA = click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the server's data, config and log [default: <home>/milvus-server].",
)


@click.group("milvus")
def milvus_group() -> None:
    """Run a local Milvus server (standalone, embedded etcd; no Docker)."""


@milvus_group.command("start")
@_DATA
@click.option("--port", type=int, default=19530, show_default=True, help="Port clients connect to.")
@click.option(
    "--timeout", type=float, default=120, show_default=True, help="Seconds to wait for it."
)
@click.option(
    "--free-ports",
    is_flag=True,
    help="Run etcd, metrics and the components on free ports (the ones this data dir used "
    "before, when free) instead of Milvus's defaults 2379, 2380, 9091, 53100, 19529, ...: "
    "for a second server beside another Milvus.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def start(
    ctx: click.Context,
    data: Path | None,
    port: int,
    timeout: float,
    free_ports: bool,
    as_json: bool,
) -> None:
    """Start the server in the background (or report the one already running there).

    Every component binds 127.0.0.1; its data, config and log (logs/milvus.log)
    stay in the data directory, and it keeps running after this command.
    """
    server = _server(ctx, data, port, free_ports)
    was_running = server.running()
    uri = server.start(timeout=timeout)
    doc = {
        "uri": uri,
        "data_dir": str(server.data_dir),
        "pid": server.pid(),
        "log": str(server.log_file),
        "already_running": was_running,
    }
    if as_json:
        emit(doc)
        return
    state = "already running" if was_running else "started"
    say(f"Milvus {state} at {uri} (pid {doc['pid']}, data {server.data_dir})")
    say(f"export WORKBENCH_STORAGE__MILVUS_URI={uri}")


@milvus_group.command("stop")
@_DATA
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Seconds to exit on SIGTERM before SIGKILL [default: 10].",
)
@click.pass_context
def stop(ctx: click.Context, data: Path | None, timeout: float | None) -> None:
    """Stop the server started from the data directory."""
    server = _server(ctx, data)
    if server.stop() if timeout is None else server.stop(timeout=timeout):
        say(f"Milvus at {server.uri} stopped (data {server.data_dir})")
    else:
        say(f"no Milvus server running from {server.data_dir}")


@milvus_group.command("status")
@_DATA
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def status(ctx: click.Context, data: Path | None, as_json: bool) -> None:
    """Whether the server of the data directory runs, and its URI."""
    server = _server(ctx, data)
    pid = server.pid()
    doc = {
        "running": pid is not None,
        "uri": server.uri if pid is not None else None,
        "pid": pid,
        "data_dir": str(server.data_dir),
        "log": str(server.log_file),
    }
    if as_json:
        emit(doc)
    elif pid is not None:
        say(f"Milvus running at {server.uri} (pid {pid}, data {server.data_dir})")
    else:
        say(f"no Milvus server running from {server.data_dir}")


COMMANDS = [milvus_group]
