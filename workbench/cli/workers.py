"""``workbench enqueue`` and ``workbench worker``: distributed processing over a broker."""

from __future__ import annotations

import sys
from typing import Any

import click

from workbench.cli._common import emit, say, settings_from
from workbench.redaction import printable


def _queue_settings(ctx: click.Context, broker: str | None, batch: int | None = None) -> Any:

    settings = settings_from(ctx)
    updates: dict[str, Any] = {}
    if broker is not None:
        updates["url"] = broker
    if batch is not None:
        updates["batch"] = batch
    if updates:
        settings = settings.model_copy(update={"queue": settings.queue.model_copy(update=updates)})
    return settings


_BROKER = click.option(
    "--broker",
    default=None,
    metavar="URL",
    help="Broker URL [default: $WORKBENCH_QUEUE__URL, else redis://127.0.0.1:6379/0].",
)


@click.command("enqueue")
@click.argument("sources", nargs=-1, required=True)
@click.option("--source", "name", default=None, help="Source label stored with the photos.")
@_BROKER
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON document.")
@click.pass_context
def enqueue_command(
    ctx: click.Context,
    sources: tuple[str, ...],
    name: str | None,
    broker: str | None,
    as_json: bool,
) -> None:
    """Publish one job per photo of SOURCES for `workbench worker`s to analyse.

    SOURCES are what `workbench ingest` takes. Local files and archives must
    be at the same path on every worker machine (shared storage); Yandex.Disk
    and VK photos are downloaded by the worker.
    """
    from workbench.ingest.queue import enqueue
    from workbench.redaction import redact_url

    settings = _queue_settings(ctx, broker)
    report = enqueue(list(sources), settings, name)
    if as_json:
        emit(report.to_dict())
    else:
        say(
            f"enqueued {report.jobs} photos from {report.sources} sources on "
            f"{redact_url(settings.queue.url)}"
        )
        for spec, err in report.errors:
            say(f"  {printable(spec)}: {printable(err)}", err=True)
    if report.errors and not report.jobs:
        sys.exit(1)


@click.command("worker")
@click.option("--name", default=None, help="Consumer name [default: HOST-PID].")
@_BROKER
@click.option("--batch", type=int, default=None, help="Jobs taken at once [default: 16].")
@click.option(
    "--until-empty",
    is_flag=True,
    help="Exit once no job waits and none is being worked on (a batch run).",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve Prometheus metrics on this port (0: any free port) [default: off].",
)
@click.option("--json", "as_json", is_flag=True, help="On exit, print the counts as JSON.")
@click.pass_context
def worker_command(
    ctx: click.Context,
    name: str | None,
    broker: str | None,
    batch: int | None,
    until_empty: bool,
    metrics_port: int | None,
    as_json: bool,
) -> None:
    """Analyse photo jobs from the broker into the workbench's catalog and vectors.

    Run any number, on any machine, with the same catalog URL (PostgreSQL) and
    Milvus URI (a server): a Milvus Lite file and a SQLite catalog serve one
    worker on one machine. Stops on Ctrl-C / SIGTERM after the batch in hand.
    """
    from workbench.ingest.worker import WorkerOptions, default_worker_name, run_worker

    settings = _queue_settings(ctx, broker, batch)
    options = WorkerOptions(
        name=name or default_worker_name(), until_empty=until_empty, metrics_port=metrics_port
    )
    report = run_worker(settings, options)
    if as_json:
        doc = {"worker": options.name, **report.counts(), "seconds": round(report.seconds, 3)}
        emit(doc)
    else:
        say(
            f"worker {options.name}: {report.photos} photos, {report.faces} faces, "
            f"{report.errors} errors, {report.skipped} skipped in {report.seconds:.1f} s"
        )


COMMANDS = [enqueue_command, worker_command]
