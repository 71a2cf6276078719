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

from workbench.cli_dashboards import dashboards_command
from workbench.cli_db import db_group
from workbench.cli_detectors import evaluate_detectors_command
from workbench.cli_export import export_command
from workbench.cli_metrics import serve_metrics
from workbench.cli_milvus import milvus_group
from workbench.cli_notebooks import run_notebook
from workbench.cli_people import cluster_command, people_group
from workbench.cli_workers import enqueue_command, worker_command
from workbench.errors import WorkbenchError
from workbench.monitoring import configure_logging
from workbench.sources.tokens import ask_missing_tokens


def _settings(ctx: click.Context) -> Any:
    from workbench.settings import WorkbenchSettings

    values: dict[str, Any] = {}
    if ctx.obj["home"] is not None:
        values["home"] = Path(ctx.obj["home"])
    for key in ("pack", "detector", "embedder"):
        if ctx.obj[key] is not None:
            values[key] = ctx.obj[key]
    return WorkbenchSettings(**values)


def _open(ctx: click.Context) -> Any:
    from workbench.core import Workbench

    return Workbench(_settings(ctx))


def _emit(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def _show(result: Any, as_json: bool) -> None:
    """A result with ``to_dict`` and ``summary``: one JSON document, or its text summary."""
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo(result.summary())


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
@click.option(
    "--register-only",
    is_flag=True,
    help="Only read, hash and decode photos (status pending, no models); `workbench embed` "
    "analyses them later.",
)
@click.pass_context
def ingest(
    ctx: click.Context,
    paths: tuple[str, ...],
    source: str | None,
    as_json: bool,
    no_progress: bool,
    retry_errors: bool,
    register_only: bool,
) -> None:
    """Detect, embed and store every face in PATHS.

    PATHS are files, folders and zip archives, Yandex.Disk links
    (yadisk:https://disk.yandex.ru/d/KEY, or yadisk:/disk/Photos with
    WORKBENCH_YADISK_TOKEN) and VK albums (vk:album/OWNER_ALBUM, vk:user/ID,
    vk:group/ID, with WORKBENCH_VK_TOKEN). A token not set is asked for when
    run in a terminal. Re-running a source downloads only photos not yet in
    the catalog.
    """
    with _open(ctx) as wb:
        if sys.stdin.isatty():
            ask_missing_tokens(paths, wb.settings)
        report = wb.ingest(
            paths,
            source=source,
            progress=not no_progress,
            retry_errors=retry_errors,
            embed=not register_only,
        )
    _print_report(report, as_json)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON document.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.pass_context
def embed(ctx: click.Context, as_json: bool, no_progress: bool) -> None:
    """Detect and embed every catalog photo the pack has not analysed yet.

    That is photos registered with `ingest --register-only`, and photos
    another pack analysed. Each is read again from where it was registered.
    """
    with _open(ctx) as wb:
        report = wb.embed(progress=not no_progress)
    _print_report(report, as_json)


def _print_report(report: Any, as_json: bool) -> None:
    c = report.counts()
    if as_json:
        _emit(c if report.kind == "ingest" else {**c, "pending": report.pending})
        return
    verb = {"ingest": "ingested", "register": "registered", "embed": "embedded"}[report.kind]
    pending = f", {report.pending} pending" if report.kind == "register" else ""
    click.echo(
        f"{c['photos']} photos {verb}: {c['faces']} faces, {c['no_faces']} without faces, "
        f"{c['errors']} errors{pending}, {c['skipped']} already in the catalog "
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
@click.option(
    "--index",
    "--index-type",
    "index_type",
    type=click.Choice(["FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "AUTOINDEX"]),
    default=None,
    help="Build this Milvus index instead of the settings' (searches read it back).",
)
@click.option("--metric", type=click.Choice(["cosine", "l2"]), default=None, help="Vector metric.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reindex(ctx: click.Context, index_type: str | None, metric: str | None, as_json: bool) -> None:
    """Rebuild the pack's vector collection from the catalog (no models run)."""
    with _open(ctx) as wb:
        n = wb.reindex(index_type=index_type, metric=metric, progress=not as_json)  # type: ignore[arg-type]
        name = wb.pack.name
        spec = wb.index_spec()
    if as_json:
        _emit({"pack": name, "vectors": n, "index_type": spec.index_type, "metric": spec.metric})
    else:
        click.echo(f"reindexed {n} faces of pack {name} ({spec.index_type}, {spec.metric})")


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
    """List the registered model packs, detectors and embedders (any detector + any embedder
    makes a pack: --pack mtcnn+mobilefacenet, or --detector / --embedder)."""
    from workbench.faces import builtin  # noqa: F401
    from workbench.faces.packs import DETECTORS, EMBEDDERS, PACKS

    for name in PACKS.names():
        click.echo(name)
    click.echo(f"detectors: {', '.join(DETECTORS.names())}, or a detector ONNX file")
    click.echo(
        f"embedders: {', '.join(EMBEDDERS.names())}, a recognizer of the local models dir "
        "by file name, or a recognizer ONNX file"
    )


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
    "--metric",
    type=click.Choice(["cosine", "l2"]),
    default=None,
    help="Metric the threshold is fitted for [default: the one the pack's faces are indexed "
    "with, else the embedder's own].",
)
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
    metric: str | None,
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
            metric=metric or wb.metric,  # type: ignore[arg-type]
        )
        result = write_calibration(result, write, wb.home)
    _show(result, as_json)


@cli.group()
def evaluate() -> None:
    """Measure packs on LFW (k-fold View 2) or a CelebA-format folder."""


evaluate.add_command(evaluate_detectors_command)


@evaluate.command("lfw")
@click.option(
    "--lfw-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="LFW directory: images/<Name>/<Name>_0001.jpg and pairs.txt.",
)
@click.option(
    "--pack",
    "pack_names",
    multiple=True,
    help="Pack to evaluate (repeatable) [default: every pack that loads here].",
)
@click.option("--pairs", default="pairs.txt", show_default=True, help="Pairs file (View 2).")
@click.option(
    "--no-face",
    type=click.Choice(["fallback", "exclude", "wrong"]),
    default="fallback",
    show_default=True,
    help="Images without a detected face: retry leniently, then embed at the centre face; "
    "leave their pairs out; or count their pairs as wrong. Always counted.",
)
@click.option(
    "--per-fold",
    type=click.IntRange(1),
    default=None,
    help="Only the first N matched + N mismatched pairs of each fold (a quick slice).",
)
@click.option(
    "--dev-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="A dev set with labels.csv: also count detected vs labelled faces on its group photos.",
)
@click.option(
    "--save/--no-save",
    default=True,
    show_default=True,
    help="Keep the JSON document in <home>/evaluations/ (the report notebook shows it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
@click.pass_context
def evaluate_lfw_cmd(
    ctx: click.Context,
    lfw_dir: str,
    pack_names: tuple[str, ...],
    pairs: str,
    no_face: str,
    per_fold: int | None,
    dev_dir: str | None,
    save: bool,
    as_json: bool,
    no_progress: bool,
) -> None:
    """LFW verification, 10 folds, every pack side by side (accuracy, F1, ROC AUC, speed)."""
    from workbench.evaluation.compare import available_packs, compare_packs
    from workbench.evaluation.lfw import images_root, pairs_path

    # Check the data before loading (possibly several) packs.
    images_root(lfw_dir)
    pairs_path(lfw_dir, pairs)
    settings = _settings(ctx)
    names = list(pack_names) or ([ctx.obj["pack"]] if ctx.obj["pack"] else [])
    packs, skipped = available_packs(settings, names)
    if not packs:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped)
        raise WorkbenchError(f"no model pack loads here ({reasons})")
    result = compare_packs(
        packs,
        lfw_dir,
        pairs,
        dev_dir=dev_dir,
        no_face=no_face,  # type: ignore[arg-type]
        per_fold=per_fold,
        skipped=skipped,
        progress=not no_progress,
    )
    saved = result.save(settings.home) if save else None
    if as_json:
        doc = result.to_dict()
        doc["saved"] = str(saved) if saved else None
        _emit(doc)
        return
    for r in result.results:
        click.echo(r.lfw.summary())
        if r.groups is not None:
            g = r.groups
            click.echo(
                f"  dev group photos: {g.detected} of {g.labelled} labelled faces detected, "
                f"{g.exact} of {g.photos} photos exact"
            )
    for name, reason in result.skipped:
        click.echo(f"{name}: skipped ({reason})")
    if saved:
        click.echo(f"saved to {saved}")


@evaluate.command("celeba")
@click.option(
    "--celeba-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="CelebA root (img_align_celeba/ and identity_CelebA.txt) or an image folder.",
)
@click.option(
    "--identities",
    type=click.Path(dir_okay=False),
    default=None,
    help="identity_CelebA.txt ('<image> <identity id>' per line) [default: in --celeba-dir].",
)
@click.option("--max-images", type=click.IntRange(1), default=None, help="Seeded subset size.")
@click.option("--pairs", "n_pairs", type=click.IntRange(2), default=3000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
@click.pass_context
def evaluate_celeba_cmd(
    ctx: click.Context,
    celeba_dir: str,
    identities: str | None,
    max_images: int | None,
    n_pairs: int,
    seed: int,
    as_json: bool,
    no_progress: bool,
) -> None:
    """CelebA identities: retrieval precision@1 and mAP, verification F1 on seeded pairs."""
    from workbench.evaluation.celeba import evaluate_celeba

    with _open(ctx) as wb:
        report = evaluate_celeba(
            wb.pack,
            celeba_dir,
            identities,
            max_images=max_images,
            pairs=n_pairs,
            seed=seed,
            home=wb.home,
            limits=wb.settings.limits,
            progress=not no_progress,
        )
    _show(report, as_json)


cli.add_command(run_notebook)
cli.add_command(export_command)
cli.add_command(cluster_command)
cli.add_command(people_group)
cli.add_command(dashboards_command)
cli.add_command(enqueue_command)
cli.add_command(worker_command)
cli.add_command(db_group)
cli.add_command(serve_metrics)
cli.add_command(milvus_group)


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
