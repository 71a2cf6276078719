"""``workbench serve-metrics``: this process's metrics plus catalog figures for Prometheus."""

from __future__ import annotations

import threading

import click

from workbench.cli._common import say, settings_from
from workbench.errors import WorkbenchError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@click.command("serve-metrics")
@click.option("--port", type=int, default=9464, show_default=True, help="TCP port (0: any free).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 exposes the metrics to the network.",
)
@click.option(
    "--queue-depth/--no-queue-depth",
    default=False,
    show_default=True,
    help="Also report the broker queue's depth (settings queue.url, stream and group, "
    "i.e. WORKBENCH_QUEUE__URL ...); needs the redis package.",
)
@click.pass_context
def serve_metrics(ctx: click.Context, port: int, host: str, queue_depth: bool) -> None:
    """Serve Prometheus metrics: this process, the catalog's counts and the queue depth.

    Scrape http://HOST:PORT/metrics. Catalog figures (workbench_catalog_*)
    are read on each scrape; no model and no vector index is opened, so it
    runs beside an ingest, the workers and the notebooks. Stops on Ctrl-C.
    """
    from workbench.ingest.queue import QueuePoller
    from workbench.monitoring import metrics as mon
    from workbench.monitoring.catalog import register_catalog_collector

    settings = settings_from(ctx)
    if host not in LOCAL_HOSTS:
        say(
            f"warning: serving metrics on {host}, reachable from other machines; "
            "use --host 127.0.0.1 unless Prometheus scrapes from elsewhere",
            err=True,
        )
    register_catalog_collector(settings)
    try:
        bound = mon.serve_metrics(port, host)
    except WorkbenchError as e:
        raise click.ClickException(str(e)) from e
    poller = None
    if queue_depth:
        poller = QueuePoller(settings.queue)
        poller.start()
    shown = f"[{host}]" if ":" in host else host
    say(f"serving metrics on http://{shown}:{bound}/metrics (Ctrl-C stops)", err=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if poller is not None:
            poller.stop()


COMMANDS = [serve_metrics]
