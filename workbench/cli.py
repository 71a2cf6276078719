"""The ``workbench`` command: the same operations as the notebooks.

``--json`` prints exactly one JSON document on stdout; logs and progress
bars go to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from workbench.errors import WorkbenchError
from workbench.monitoring import configure_logging


def _settings(ctx: click.Context) -> Any:
    from workbench.settings import WorkbenchSettings

    values: dict[str, Any] = {}
    if ctx.obj["home"] is not None:
        values["home"] = Path(ctx.obj["home"])
    if ctx.obj["pack"] is not None:
        values["pack"] = ctx.obj["pack"]
    return WorkbenchSettings(**values)


def _open(ctx: click.Context) -> Any:
    from workbench.core import Workbench

    return Workbench(_settings(ctx))


def _emit(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


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
    help="Model pack name or model directory [default: $WORKBENCH_PACK, else local].",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.pass_context
def cli(ctx: click.Context, home: str | None, pack: str | None, verbose: int, quiet: bool) -> None:
    """Find, group and search faces in photo collections."""
    level = "WARNING" if quiet else ("DEBUG" if verbose > 1 else "INFO" if verbose else "WARNING")
    configure_logging(level)
    ctx.obj = {"home": home, "pack": pack}


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--source", default=None, help="Source label stored with the photos [default: local / zip]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON document.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option(
    "--retry-errors",
    is_flag=True,
    help="Try photos recorded as errors again instead of skipping them.",
)
@click.pass_context
def ingest(
    ctx: click.Context,
    paths: tuple[str, ...],
    source: str | None,
    as_json: bool,
    no_progress: bool,
    retry_errors: bool,
) -> None:
    """Detect, embed and store every face in PATHS (files, folders, zip archives)."""
    with _open(ctx) as wb:
        report = wb.ingest(
            paths, source=source, progress=not no_progress, retry_errors=retry_errors
        )
    if as_json:
        _emit(report.counts())
        return
    c = report.counts()
    click.echo(
        f"{c['photos']} photos ingested: {c['faces']} faces, {c['no_faces']} without faces, "
        f"{c['errors']} errors, {c['skipped']} already in the catalog "
        f"({report.seconds:.1f} s, {report.photos_per_second:.2f} photos/s)"
    )
    for uri, reason in report.error_details[:20]:
        click.echo(f"  error: {uri}: {reason}", err=True)
    if len(report.error_details) > 20:
        click.echo(
            f"  ... and {len(report.error_details) - 20} more errors (workbench stats)", err=True
        )


@cli.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option(
    "--top-k", type=click.IntRange(1, 16384), default=None, help="Matches per face [default: 10]."
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Minimum similarity in percent [default: 85 = the pack's same-person threshold].",
)
@click.option("--source", default=None, help="Only match photos from this source.")
@click.option("--json", "as_json", is_flag=True, help="Print the matches as one JSON document.")
@click.pass_context
def search(
    ctx: click.Context,
    image: str,
    top_k: int | None,
    threshold: float | None,
    source: str | None,
    as_json: bool,
) -> None:
    """Find the people of a sample IMAGE among the stored faces."""
    with _open(ctx) as wb:
        results = wb.search(image, top_k=top_k, threshold=threshold, source=source)
        thr = wb.settings.search.threshold if threshold is None else threshold
    if as_json:
        _emit([r.to_dict() for r in results])
        return
    if not results:
        click.echo(f"no face found in {image}")
        return
    for i, face in enumerate(results, 1):
        box = ", ".join(f"{v:.0f}" for v in face.box)
        click.echo(f"face {i} at [{box}]: {len(face.matches)} matches ≥ {thr:g}%")
        for m in face.matches:
            mbox = ", ".join(f"{v:.0f}" for v in m.box)
            click.echo(
                f"  {m.similarity:5.1f}%  cos {m.cosine:.2f}  {m.photo}  [{mbox}]  "
                f"({m.source}, face {m.face_id})"
            )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON document.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Photo counts per source and status; whether catalog and index agree."""
    with _open(ctx) as wb:
        st = wb.stats()
    if as_json:
        _emit(st.to_dict())
        return
    click.echo(f"{st.photos} photos, {st.faces} faces in {wb.home}")
    for row in st.by_source_status:
        click.echo(f"  {row['source']:<20} {row['status']:<9} {row['photos']:>8}")
    for p in st.packs:
        verdict = "agree" if p.agree else "DISAGREE (run `workbench reindex`)"
        click.echo(
            f"  pack {p.pack}: catalog {p.catalog_faces} faces, "
            f"index {p.index_vectors} vectors: {verdict}"
        )


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reindex(ctx: click.Context, as_json: bool) -> None:
    """Rebuild the pack's vector collection from the catalog (no models run)."""
    with _open(ctx) as wb:
        n = wb.reindex()
        name = wb.pack.name
    if as_json:
        _emit({"pack": name, "vectors": n})
    else:
        click.echo(f"reindexed {n} faces of pack {name}")


@cli.command()
@click.argument("photos", nargs=-1, required=True)
@click.pass_context
def delete(ctx: click.Context, photos: tuple[str, ...]) -> None:
    """Remove PHOTOS (id, sha256 or uri) and their faces from catalog and index."""
    with _open(ctx) as wb:
        for ref in photos:
            n = wb.delete_photo(ref)
            click.echo(f"deleted {ref} ({n} faces)")


@cli.command()
def packs() -> None:
    """List the registered model packs."""
    from workbench.faces import builtin  # noqa: F401
    from workbench.faces.packs import PACKS

    for name in PACKS.names():
        click.echo(name)


@cli.command()
@click.option(
    "--lfw",
    "lfw_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="LFW directory: images/<Name>/<Name>_0001.jpg and the pairs files.",
)
@click.option(
    "--pairs",
    default="pairsDevTrain.txt",
    show_default=True,
    help="Pairs the calibration is fitted on (a name in the LFW directory, or a path).",
)
@click.option(
    "--check",
    default="pairsDevTest.txt",
    show_default=True,
    help="Held-out pairs the fitted threshold is checked on.",
)
@click.option("--no-check", is_flag=True, help="Skip the check on held-out pairs.")
@click.option(
    "--write",
    type=click.Choice(["home", "package", "none"]),
    default="home",
    show_default=True,
    help="Where the calibration goes: the workbench home's calibration.json, the shipped "
    "workbench/faces/calibration.json (maintainers), or nowhere.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
@click.pass_context
def calibrate(
    ctx: click.Context,
    lfw_dir: str,
    pairs: str,
    check: str,
    no_check: bool,
    write: str,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Measure the pack's same-person threshold on LFW (read as 85 % similarity)."""
    from workbench.evaluation.lfw import calibrate_on_lfw, write_calibration

    with _open(ctx) as wb:
        result = calibrate_on_lfw(
            wb.pack,
            lfw_dir,
            pairs,
            None if no_check else check,
            limits=wb.settings.limits,
            progress=not no_progress,
        )
        result = write_calibration(result, write, wb.home)
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo(result.summary())


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="workbench", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except WorkbenchError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted; re-run the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
