"""The commands on photos and faces: ingest, embed, search, stats, reindex, delete, packs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from workbench.cli._common import emit, json_option, no_progress_option, open_workbench, say
from workbench.redaction import printable
from workbench.sources.base import named
from workbench.sources.tokens import ask_missing_tokens

if TYPE_CHECKING:
    from workbench.analysis.search import Match, QueryFace


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--source", default=None, help="Source label stored with the photos [default: local / zip]."
)
@json_option("Print the counts as one JSON document.")
@no_progress_option("Hide the progress bar.")
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
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 when any photo is recorded as an error [default: exit 0; the errors are listed].",
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
    strict: bool,
) -> None:
    """Detect, embed and store every face in PATHS.

    PATHS are files, folders and zip archives, Yandex.Disk links
    (yadisk:https://disk.yandex.ru/d/KEY, or yadisk:/disk/Photos with
    WORKBENCH_YADISK_TOKEN) and VK albums (vk:album/OWNER_ALBUM, vk:user/ID,
    vk:group/ID, with WORKBENCH_VK_TOKEN). A token not set is asked for when
    run in a terminal. Re-running a source downloads only photos not yet in
    the catalog.

    Exit status: 0 when every source was read (photos that could not be
    read or decoded are recorded as errors and listed); 2 when a source
    given cannot be read at all (a missing folder, a wrong link); 1 with
    --strict when any photo is an error; 130 when interrupted (re-run to go on).
    """
    from workbench.sources import check_source_label

    check_source_label(source)  # before a model loads
    with open_workbench(ctx) as wb:
        if sys.stdin.isatty():
            ask_missing_tokens(paths, wb.settings)
        report = _run_report(
            lambda: wb.ingest(
                paths,
                source=source,
                progress=not no_progress,
                retry_errors=retry_errors,
                register_only=register_only,
            ),
            as_json,
        )
    _finish(report, as_json, strict)


@click.command()
@json_option("Print the counts as one JSON document.")
@no_progress_option("Hide the progress bar.")
@click.pass_context
def embed(ctx: click.Context, as_json: bool, no_progress: bool) -> None:
    """Detect and embed every catalog photo the pack has not analysed yet.

    That is photos registered with `ingest --register-only`, and photos
    another pack analysed. Each is read again from where it was registered.
    """
    with open_workbench(ctx) as wb:
        report = _run_report(lambda: wb.embed(progress=not no_progress), as_json)
    _finish(report, as_json, strict=False)


def _run_report(run: Callable[[], Any], as_json: bool) -> Any:
    """Run an ingest; on Ctrl-C print what it did by then and exit 130 (all of it is
    stored: running it again goes on from there)."""
    from workbench.ingest.pipeline import IngestInterrupted

    try:
        return run()
    except IngestInterrupted as e:
        _print_report(e.report, as_json)
        say("interrupted; re-run the same command to continue", err=True)
        sys.exit(130)


def _finish(report: Any, as_json: bool, strict: bool) -> None:
    _print_report(report, as_json)
    for spec, reason in report.source_errors:
        say(f"error: {printable(named(spec, reason))}", err=True)
    if report.source_errors:
        sys.exit(2)
    if strict and report.errors:
        sys.exit(1)


def _print_report(report: Any, as_json: bool) -> None:
    c = report.counts()
    if as_json:
        emit(c if report.kind == "ingest" else {**c, "pending": report.pending})
        return
    sources = set(report.source_errors)
    verb = {"ingest": "ingested", "register": "registered", "embed": "embedded"}[report.kind]
    pending = f", {report.pending} pending" if report.kind == "register" else ""
    copies = f", {report.duplicates} copies of photos already here" if report.duplicates else ""
    say(
        f"{c['photos']} photos {verb}: {c['faces']} faces, {c['no_faces']} without faces, "
        f"{c['errors']} errors{pending}, {c['skipped']} already in the catalog"
        f"{copies} "
        f"({report.seconds:.1f} s, {report.photos_per_second:.2f} photos/s)"
    )
    photo_errors = [d for d in report.error_details if d not in sources]
    for uri, reason in photo_errors[:20]:
        say(f"  error: {printable(uri)}: {printable(reason)}", err=True)
    if len(photo_errors) > 20:
        say(f"  ... and {len(photo_errors) - 20} more errors (workbench stats)", err=True)


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option(
    "--top-k", type=click.IntRange(1, 16384), default=None, help="Matches per face [default: 10]."
)
@click.option(
    "--all",
    "every",
    is_flag=True,
    help="Every match at or above the threshold, however many (instead of the top K).",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Minimum similarity in percent [default: 85 = one stranger in 100,000 faces; each "
    "5 points between 70 and 95 a factor of ten].",
)
@click.option("--source", default=None, help="Only match photos from this source.")
@click.option(
    "--include-low-quality",
    is_flag=True,
    help="Also match faces below the quality gate (tiny, blurred, turned away).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the matches as one JSON document.")
@click.pass_context
def search(
    ctx: click.Context,
    image: str,
    top_k: int | None,
    every: bool,
    threshold: float | None,
    source: str | None,
    include_low_quality: bool,
    as_json: bool,
) -> None:
    """Find the people of a sample IMAGE among the stored faces.

    Each face of the sample gets its matches, those of named or confirmed people
    grouped first, and how many strangers to expect among them in this archive.
    """
    from workbench.analysis.search import SETTINGS_TOP_K

    if every and top_k is not None:
        raise click.UsageError("give --top-k or --all, not both")
    with open_workbench(ctx) as wb:
        results = wb.search(
            image,
            top_k=None if every else (top_k or SETTINGS_TOP_K),
            threshold=threshold,
            source=source,
            include_low_quality=include_low_quality,
        )
    if as_json:
        emit([r.to_dict() for r in results])
        return
    if not results:
        say(f"no face found in {printable(image)}")
        return
    for i, face in enumerate(results, 1):
        say_query_face(i, face)


def say_query_face(i: int, face: QueryFace) -> None:
    """One face of a sample and its answer: people first, then the loose faces."""
    box = ", ".join(f"{v:.0f}" for v in face.box)
    shown = "" if face.complete else " (the best; --all for every one)"
    say(
        f"face {i} at [{box}]: {len(face.matches)} matches ≥ {face.threshold:g}%{shown}; "
        f"{face.gallery:,} faces searched, {face.expected_strangers:.2g} strangers expected "
        "among the matches"
    )
    by_id = {m.face_id: m for m in face.matches}
    for group in face.people:
        photos = "photo" if group.photos == 1 else "photos"
        say(f"  {printable(group.label)} — {group.photos} {photos} (best {group.best:.1f}%)")
        for fid in group.face_ids:
            _say_match(by_id[fid], "    ")
    if face.people and face.loose:
        say("  other faces:")
    for m in face.loose:
        _say_match(m, "  ")


def _say_match(m: Match, indent: str) -> None:
    mbox = ", ".join(f"{v:.0f}" for v in m.box)
    also = f"; also at {', '.join(printable(u) for u in m.also_at)}" if m.also_at else ""
    say(
        f"{indent}{m.similarity:5.1f}%  cos {m.cosine:.2f}  {printable(m.photo)}  [{mbox}]  "
        f"({printable(m.source)}, face {m.face_id}{also})"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON document.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Photo counts per source and status; whether catalog and index agree."""
    with open_workbench(ctx) as wb:
        st = wb.stats()
    if as_json:
        emit(st.to_dict())
        return
    say(f"{st.photos} photos, {st.faces} faces in {wb.home}")
    for row in st.by_source_status:
        say(f"  {printable(row['source']):<20} {row['status']:<9} {row['photos']:>8}")
    for p in st.packs:
        verdict = "agree" if p.agree else "DISAGREE (run `workbench reindex`)"
        say(
            f"  pack {p.pack}: catalog {p.catalog_faces} faces, "
            f"index {p.index_vectors} vectors: {verdict}"
        )


@click.command()
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
    with open_workbench(ctx) as wb:
        n = wb.reindex(index_type=index_type, metric=metric, progress=not as_json)  # type: ignore[arg-type]
        name = wb.pack.name
        spec = wb.index_spec()
    if as_json:
        emit({"pack": name, "vectors": n, "index_type": spec.index_type, "metric": spec.metric})
    else:
        say(f"reindexed {n} faces of pack {name} ({spec.index_type}, {spec.metric})")


@click.command()
@click.argument("photos", nargs=-1, required=True)
@click.pass_context
def delete(ctx: click.Context, photos: tuple[str, ...]) -> None:
    """Remove PHOTOS (id, sha256 or uri) and their faces from catalog and index."""
    with open_workbench(ctx) as wb:
        for ref in photos:
            n = wb.delete_photo(ref)
            say(f"deleted {printable(ref)} ({n} faces)")


@click.command()
def packs() -> None:
    """List the registered model packs, detectors and embedders (any detector + any embedder
    makes a pack: --pack mtcnn+mobilefacenet, or --detector / --embedder)."""
    from workbench.faces.registry import DETECTORS, EMBEDDERS, PACKS

    for name in PACKS.names():
        say(name)
    say(f"detectors: {', '.join(DETECTORS.names())}, or a detector ONNX file")
    say(
        f"embedders: {', '.join(EMBEDDERS.names())}, a recognizer of the local models dir "
        "by file name, or a recognizer ONNX file"
    )


@click.command()
@click.option("--all-packs", is_flag=True, help="Faces of every pack, not only the open one.")
@json_option("Print the counts as one JSON document.")
@no_progress_option()
@click.pass_context
def quality(ctx: click.Context, all_packs: bool, as_json: bool, no_progress: bool) -> None:
    """Measure size, sharpness and pose of faces stored without them.

    Faces ingested before quality was measured get it here (their photos are read
    again for sharpness); new faces get it when they are analysed. Faces below the
    quality gate (WORKBENCH_QUALITY__*) stay in the catalog and the gallery but are
    left out of search answers and clustering.
    """
    with open_workbench(ctx) as wb:
        report = wb.measure_quality(every_pack=all_packs, progress=not no_progress)
    if as_json:
        emit(report.to_dict())
        return
    say(
        f"{report.faces} faces of {report.photos} photos measured"
        f" ({report.unread} photos could not be read again: size and pose only)"
        if report.unread
        else f"{report.faces} faces of {report.photos} photos measured"
    )
    for uri, reason in report.errors[:20]:
        say(f"  {printable(uri)}: {printable(reason)}", err=True)


COMMANDS = [ingest, embed, search, stats, reindex, delete, packs, quality]
