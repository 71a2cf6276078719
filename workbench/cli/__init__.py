"""The ``workbench`` command: the same operations as the notebooks.

``--json`` prints exactly one JSON document on stdout; logs and progress bars
go to stderr. This root holds the global options and registers the command
modules (one per group: photos, evaluate, people, export, db, milvus, workers,
metrics, notebooks, dashboards, api), which share `workbench.cli._common`.
"""

from __future__ import annotations

import sys

import click

from workbench.cli import (
    api,
    dashboards,
    db,
    evaluate,
    export,
    metrics,
    milvus,
    notebooks,
    people,
    photos,
    workers,
)
from workbench.cli._common import say
from workbench.errors import WorkbenchError
from workbench.monitoring.logs import configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="Workbench directory [default: $WORKBENCH_HOME, else ./workbench-data].",
)
@click.option(
    "--pack",
    default=None,
    help="Model pack name, model directory, or DETECTOR+EMBEDDER "
    "[default: $WORKBENCH_PACK, else local].",
)
@click.option(
    "--detector",
    default=None,
    help="Replace the pack's detector: scrfd, yunet, mtcnn, dlib-hog or an ONNX file "
    "[default: $WORKBENCH_DETECTOR].",
)
@click.option(
    "--embedder",
    default=None,
    help="Replace the pack's embedder: facenet, dlib, a recognizer of the local models dir "
    "by file name (e.g. mobilefacenet) or an ONNX file [default: $WORKBENCH_EMBEDDER].",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.option(
    "--log-json",
    is_flag=True,
    help="Logs as JSON lines on stderr, with the photo as a field [default: $WORKBENCH_LOG_JSON].",
)
@click.pass_context
def cli(
    ctx: click.Context,
    home: str | None,
    pack: str | None,
    detector: str | None,
    embedder: str | None,
    verbose: int,
    quiet: bool,
    log_json: bool,
) -> None:
    """Find, group and search faces in photo collections."""
    level = "WARNING" if quiet else ("DEBUG" if verbose > 1 else "INFO" if verbose else "WARNING")
    configure_logging(level, json=log_json)
    ctx.obj = {"home": home, "pack": pack, "detector": detector, "embedder": embedder}


COMMAND_MODULES = (
    photos,
    evaluate,
    notebooks,
    export,
    people,
    dashboards,
    workers,
    db,
    metrics,
    milvus,
    api,
)
for _module in COMMAND_MODULES:
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="workbench", standalone_mode=False)
    except click.exceptions.Abort:  # click's word for Ctrl-C
        say("interrupted; re-run the same command to continue", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except WorkbenchError as e:
        say(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        say("interrupted; re-run the same command to continue", err=True)
        sys.exit(130)
    except Exception as e:
        # A full disk or a read-only home says so in one line; anything else is a bug
        # and keeps its traceback.
        from workbench.store.schema import storage_failure

        failure = storage_failure(e, getattr(e, "filename", None) or "the workbench")
        if failure is None:
            raise
        say(f"error: {failure}", err=True)
        sys.exit(2)
