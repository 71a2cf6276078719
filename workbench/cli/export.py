"""``workbench export``: faces, photos or people to CSV, JSON or XLSX (catalog only)."""

from __future__ import annotations

from typing import Any

import click

from workbench.cli._common import emit, global_option, say, settings_from
from workbench.errors import WorkbenchError


@click.command("export")
@click.option(
    "--what",
    default="faces",
    show_default=True,
    help="One row per: faces, photos or people.",
)
@click.option(
    "--format",
    "fmt",
    default=None,
    help="csv, json or xlsx [default: from the --out suffix].",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="File to write (replaced at the end; missing directories are created).",
)
@click.option("--source", default=None, help="Only photos of this source (and their faces).")
@click.option(
    "--person",
    type=int,
    default=None,
    help="Only this person id: their faces, the photos they appear in, or that person.",
)
@click.option("--json", "as_json", is_flag=True, help="Print {what, format, path, rows}.")
@click.pass_context
def export_command(
    ctx: click.Context,
    what: str,
    fmt: str | None,
    out: str,
    source: str | None,
    person: int | None,
    as_json: bool,
) -> None:
    """Write faces, photos or people to a CSV, JSON or XLSX file.

    Rows carry ids, photo uri, source and provenance, box, landmarks, score,
    pack, cluster and person; they stream in id order, a page at a time.
    Only the catalog is read (no model, no vector index), so it runs beside
    an ingest or a notebook. The global --pack, when given, keeps that pack's
    faces and people and the photos it analysed.
    """
    from workbench.analysis.export import export
    from workbench.store.catalog import Catalog

    settings = settings_from(ctx)
    db = settings.home / "catalog.sqlite"
    if settings.storage.catalog_url is None and not db.is_file():
        raise WorkbenchError(
            f"no workbench at {settings.home} ({db} does not exist); "
            "give --home or set WORKBENCH_HOME to a workbench with photos in it"
        )
    catalog = Catalog(settings.catalog_url)
    try:
        pack = _recorded_pack(ctx, catalog)
        result = export(catalog, what, out, fmt, source=source, person=person, pack=pack)
    finally:
        catalog.close()
    if as_json:
        emit(result.to_dict())
    else:
        say(f"exported {result.rows} {result.what} to {out}")


def _recorded_pack(ctx: click.Context, catalog: Any) -> str | None:
    """The pack the global --pack / --detector / --embedder name, as its faces record it
    (``--pack local`` or ``--pack DIR`` is ``local:<detector>+<recognizer>``); None
    when none was given (every pack)."""
    spec = global_option(ctx, "pack")
    swapped = global_option(ctx, "detector") or global_option(ctx, "embedder")
    if spec is None and not swapped:
        return None
    if spec is not None and not swapped and spec in {p.name for p in catalog.packs()}:
        return str(spec)
    from workbench.faces.registry import open_pack

    settings = settings_from(ctx)
    return open_pack(settings.pack, settings).name  # named, not loaded: no model runs


COMMANDS = [export_command]
