"""``workbench evaluate detectors``: face detectors side by side on LFW and the dev set."""

from __future__ import annotations

import click

from workbench.errors import WorkbenchError


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
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
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
    from workbench.cli import _emit, _settings
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
    settings = _settings(ctx)
    names = list(detector_names) or ([ctx.obj["detector"]] if ctx.obj["detector"] else [])
    detectors, skipped = available_detectors(settings, names)
    if not detectors:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped)
        raise WorkbenchError(f"no face detector loads here ({reasons})")

    def done(r: DetectorResult) -> None:
        if not no_progress:  # a full LFW run is long: say what each detector did as it ends
            click.echo(
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
        _emit(doc)
        return
    click.echo(result.summary())
    if saved:
        click.echo(f"saved to {saved}")


__all__ = ["evaluate_detectors_command"]
