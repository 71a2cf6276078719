"""``workbench calibrate`` and ``workbench evaluate lfw|celeba|detectors``: measuring packs."""

from __future__ import annotations

import click

from workbench.cli._common import (
    emit,
    global_option,
    json_option,
    no_progress_option,
    open_workbench,
    say,
    settings_from,
    show,
)
from workbench.errors import WorkbenchError


@click.command()
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
    "--impostor-images",
    type=click.IntRange(0),
    default=None,
    help="LFW images whose faces measure the false-match rates: N evenly spaced ones, 0 "
    "for none (the similarity % then keeps the shipped curve) [default: every image].",
)
@click.option(
    "--write",
    type=click.Choice(["home", "package", "none"]),
    default="home",
    show_default=True,
    help="Where the calibration goes: the workbench home's calibration.json, the shipped "
    "workbench/faces/calibration.json (maintainers), or nowhere.",
)
@json_option()
@no_progress_option()
@click.pass_context
def calibrate(
    ctx: click.Context,
    lfw_dir: str,
    pairs: str,
    check: str,
    no_check: bool,
    metric: str | None,
    impostor_images: int | None,
    write: str,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Measure the pack's false-match rates and same-person threshold on LFW.

    The false-match rates (every LFW image's faces against other people's) set what
    a similarity % means for this pack: 85 % lets one stranger in 100,000 through.
    The same-person threshold is fitted on View 1's training pairs and checked on
    its test pairs.
    """
    from workbench.evaluation.calibrate import calibrate_on_lfw, write_calibration

    with open_workbench(ctx) as wb:
        result = calibrate_on_lfw(
            wb.pack,
            lfw_dir,
            pairs,
            None if no_check else check,
            limits=wb.settings.limits,
            progress=not no_progress,
            metric=metric or wb.metric,  # type: ignore[arg-type]
            impostor_images=impostor_images,
        )
        result = write_calibration(result, write, wb.home)
    show(result, as_json)


@click.group()
def evaluate() -> None:
    """Measure packs: LFW (k-fold View 2), 1:N search, or a CelebA-format folder."""


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
@json_option()
@no_progress_option()
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
    settings = settings_from(ctx)
    pack = global_option(ctx, "pack")
    names = list(pack_names) or ([pack] if pack else [])
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
        emit(doc)
        return
    for r in result.results:
        say(r.lfw.summary())
        if r.groups is not None:
            g = r.groups
            say(
                f"  dev group photos: {g.detected} of {g.labelled} labelled faces detected, "
                f"{g.exact} of {g.photos} photos exact"
            )
    for name, reason in result.skipped:
        say(f"{name}: skipped ({reason})")
    if saved:
        say(f"saved to {saved}")


@evaluate.command("search")
@click.option(
    "--lfw-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="LFW directory (images/<Name>/<Name>_0001.jpg): the folder names the person.",
)
@click.option(
    "--labels",
    "labels_csv",
    type=click.Path(dir_okay=False),
    default=None,
    help="A CSV of path,identity (paths relative to it) for any labelled folder.",
)
@click.option(
    "--ingest/--no-ingest",
    default=True,
    show_default=True,
    help="Ingest the labelled photos into the home first (those already there are skipped).",
)
@click.option(
    "--include-low-quality",
    is_flag=True,
    help="Search faces below the quality gate too (default: left out, as a search does).",
)
@click.option(
    "--save/--no-save",
    default=True,
    show_default=True,
    help="Keep the JSON document in <home>/evaluations/search-<time>.json.",
)
@json_option()
@no_progress_option()
@click.pass_context
def evaluate_search_cmd(
    ctx: click.Context,
    lfw_dir: str | None,
    labels_csv: str | None,
    ingest: bool,
    include_low_quality: bool,
    save: bool,
    as_json: bool,
    no_progress: bool,
) -> None:
    """1:N search as users search: every labelled photo against all the others.

    Every photo of a person with two or more photos is a query against every other
    face of the home (bystanders included), at the default threshold and at 70, 80,
    90 and 95 %: rank-1, precision, recall, strangers per query, the pair false-match
    rate, the strangers to expect in archives of 10k, 100k and 1M faces, and what the
    calibration predicted for this gallery.
    """
    from workbench.evaluation.archive_search import photo_folder

    photo_folder(lfw_dir, labels_csv)  # checked before any model loads
    with open_workbench(ctx) as wb:
        result = wb.evaluate_search(
            lfw_dir,
            labels_csv,
            ingest=ingest,
            include_low_quality=include_low_quality,
            progress=not no_progress,
        )
        saved = result.save(wb.home) if save else None
    if as_json:
        emit({**result.to_dict(), "saved": str(saved) if saved else None})
        return
    say(result.summary())
    if saved:
        say(f"saved to {saved}")


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
@json_option()
@no_progress_option()
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

    with open_workbench(ctx) as wb:
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
    show(report, as_json)


@click.command("detectors")
@click.option(
    "--lfw-dir",
    "--lfw",
    "lfw_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="LFW directory: images/<Name>/<Name>_0001.jpg (250×250, the person centred).",
)
@click.option(
    "--dev-dir",
    "--dev",
    "dev_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="A dev set with labels.csv: its 'group' photos (n_faces) and 'no_face' photos.",
)
@click.option(
    "--detector",
    "detector_names",
    multiple=True,
    help="Detector to compare (repeatable): scrfd, yunet, mtcnn, dlib-hog or an ONNX file "
    "[default: scrfd, mtcnn and dlib-hog, each that loads here].",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=None,
    help="Only N LFW images, evenly spaced over the sorted list (the same ones every run).",
)
@click.option(
    "--save/--no-save",
    default=True,
    show_default=True,
    help="Keep the JSON document in <home>/evaluations/detectors-<time>.json.",
)
@json_option()
@no_progress_option()
@click.pass_context
def evaluate_detectors_command(
    ctx: click.Context,
    lfw_dir: str,
    dev_dir: str,
    detector_names: tuple[str, ...],
    limit: int | None,
    save: bool,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Detection rate on LFW, faces on the dev group and no-face photos, ms per photo.

    Every detector gets the same photos and the same detection settings
    (WORKBENCH_DETECTION__MIN_SCORE, ...); faces are kept as the packs keep
    them. The table has one row per detector; one that cannot load is listed
    as skipped with the reason, unless it was named with --detector.
    """
    from workbench.evaluation.compare import group_photos
    from workbench.evaluation.detectors import (
        DetectorResult,
        available_detectors,
        compare_detectors,
        lfw_images,
        no_face_photos,
    )

    # Check the data before loading (possibly several) detectors.
    lfw_images(lfw_dir, limit)
    group_photos(dev_dir)
    no_face_photos(dev_dir)
    settings = settings_from(ctx)
    detector = global_option(ctx, "detector")
    names = list(detector_names) or ([detector] if detector else [])
    detectors, skipped = available_detectors(settings, names)
    if not detectors:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped)
        raise WorkbenchError(f"no face detector loads here ({reasons})")

    def done(r: DetectorResult) -> None:
        if not no_progress:  # a full LFW run is long: say what each detector did as it ends
            say(
                f"{r.detector}: LFW {r.lfw.found}/{r.lfw.images} found, dev "
                f"{r.dev.detected}/{r.dev.labelled} group faces, "
                f"{r.dev.false_positives} false positives",
                err=True,
            )

    result = compare_detectors(
        detectors,
        lfw_dir,
        dev_dir,
        settings.detection,
        limit=limit,
        progress=not no_progress,
        skipped=skipped,
        limits=settings.limits,
        on_result=done,
    )
    saved = result.save(settings.home) if save else None
    if as_json:
        doc = result.to_dict()
        doc["saved"] = str(saved) if saved else None
        emit(doc)
        return
    say(result.summary())
    if saved:
        say(f"saved to {saved}")


__all__ = ["evaluate_detectors_command"]


evaluate.add_command(evaluate_detectors_command)

COMMANDS = [calibrate, evaluate]
