"""The ``workbench`` command: the same operations as the notebooks.

``--json`` prints exactly one JSON document on stdout; logs and progress bars
go to stderr. This root holds the global options and the table of the command
modules (one per group: photos, evaluate, people, export, db, milvus, workers,
metrics, notebooks, lab, dashboards, api), which share `workbench.cli._common`; a
module is imported when one of its commands runs.
"""

from __future__ import annotations

import importlib
import sys

import click

from workbench.errors import WorkbenchError

#: Every command: the module of `workbench.cli` that defines it (with its siblings, in the
#: module's ``COMMANDS``) and the first paragraph of its help, which is what
#: `workbench --help` lists. The listing reads this table, so it imports no command
#: module (`--help` in ~0.1 s instead of 0.8); a command's module is imported when the
#: command runs. `tests/unit/test_cli_table.py` checks the table against the commands.
COMMAND_TABLE: dict[str, tuple[str, str]] = {
    "api-key": ("api", "Make, list and revoke the HTTP API's keys (only their hashes are stored)."),
    "calibrate": (
        "evaluate",
        "Measure the pack's false-match rates and same-person threshold on LFW.",
    ),
    "cluster": (
        "people",
        "Group faces into people (full re-cluster keeps names, merges, splits and rejections).",
    ),
    "dashboards": ("dashboards", "Serve the Voila apps of dashboards/ until Ctrl-C."),
    "db": ("db", "The catalog database: schema revision and upgrade (SQLite or PostgreSQL)."),
    "delete": (
        "photos",
        "Remove PHOTOS (id, sha256 or uri) and their faces from catalog and index.",
    ),
    "embed": ("photos", "Detect and embed every catalog photo the pack has not analysed yet."),
    "enqueue": (
        "workers",
        "Publish one job per photo of SOURCES for `workbench worker`s to analyse.",
    ),
    "evaluate": (
        "evaluate",
        "Measure packs: LFW (k-fold View 2), 1:N search, or a CelebA-format folder.",
    ),
    "export": ("export", "Write faces, photos or people to a CSV, JSON or XLSX file."),
    "ingest": ("photos", "Detect, embed and store every face in PATHS."),
    "lab": ("lab", "Open JupyterLab on notebooks/ for this workbench, until Ctrl-C."),
    "milvus": ("milvus", "Run a local Milvus server (standalone, embedded etcd; no Docker)."),
    "packs": (
        "photos",
        "List the registered model packs, detectors and embedders (any detector + any "
        "embedder makes a pack: --pack mtcnn+mobilefacenet, or --detector / --embedder).",
    ),
    "people": ("people", "List and correct people: name, merge, split, hide, reject faces."),
    "quality": ("photos", "Measure size, sharpness and pose of faces stored without them."),
    "reindex": (
        "photos",
        "Rebuild the pack's vector collection from the catalog (no models run).",
    ),
    "run-notebook": ("notebooks", "Run a parameterized notebook with papermill."),
    "search": ("photos", "Find the people of a sample IMAGE among the stored faces."),
    "serve-api": (
        "api",
        "Serve the HTTP API (FastAPI; docs at /docs, schema at /openapi.json) until Ctrl-C.",
    ),
    "serve-metrics": (
        "metrics",
        "Serve Prometheus metrics: this process, the catalog's counts and the queue depth.",
    ),
    "stats": ("photos", "Photo counts per source and status; whether catalog and index agree."),
    "worker": (
        "workers",
        "Analyse photo jobs from the broker into the workbench's catalog and vectors.",
    ),
}


class _LazyGroup(click.Group):
    """The root group: lists the commands of `COMMAND_TABLE`, imports a command's module on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMAND_TABLE, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_TABLE:
            module = importlib.import_module(f"workbench.cli.{COMMAND_TABLE[cmd_name][0]}")
            for command in module.COMMANDS:
                self.commands.setdefault(command.name or "", command)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own listing, over stand-ins that carry each help's first paragraph.
        commands = [
            (name, self.commands.get(name) or click.Command(name, help=COMMAND_TABLE[name][1]))
            for name in self.list_commands(ctx)
        ]
        commands = [(name, c) for name, c in commands if not c.hidden]
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            with formatter.section("Commands"):
                formatter.write_dl([(name, c.get_short_help_str(limit)) for name, c in commands])


def configure_logging(level: str, json: bool) -> None:
    """`workbench.monitoring.logs.configure_logging`, imported when a command runs."""
    from workbench.monitoring.logs import configure_logging as configure

    configure(level, json=json)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def say(message: str, err: bool = False) -> None:
    """`workbench.cli._common.say`, imported only when there is something to say."""
    from workbench.cli._common import say as say_it

    say_it(message, err=err)


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
