"""Face detectors side by side: LFW detection rate, dev group photos, false positives, speed.

`compare_detectors` is what ``workbench evaluate detectors`` runs. Packs are
compared on what their embeddings do (`workbench.evaluation.compare`); this
compares only the detector half, the part every pack can swap
(``--detector``), on the questions that decide which one to use:

* LFW: does it find the face at all, and is a found face the labelled
  person? LFW images are 250×250 with that person centred, so a kept face
  whose box contains the image centre counts as a centre hit.
* dev group photos: labelled against detected faces per photo.
* dev no-face photos (textures, a rocket, a cat): every face found there is
  a false positive.
* speed: detection only (decoding is not timed), as total seconds over
  photos, separately for LFW (small, equal sizes, batched) and the dev photos
  (large, one at a time), because the two differ by an order of magnitude.

Faces count as the packs count them: each detector's candidates filtered by
`keep_faces` with the same `DetectionSettings`. A detector that cannot load
here is listed with the reason instead of failing the comparison, unless it
was asked for by name.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workbench.errors import WorkbenchError
from workbench.evaluation.compare import group_photos, save_evaluation
from workbench.evaluation.lfw import images_root, lfw_images
from workbench.faces.pack import keep_faces
from workbench.faces.types import DetectedFace, Detector
from workbench.imaging.decode import decode_image
from workbench.monitoring.logs import progress_bar
from workbench.settings import DetectionSettings, LimitSettings, WorkbenchSettings

DEFAULT_DETECTORS: tuple[str, ...] = ("scrfd", "mtcnn", "dlib-hog")
"""Compared when none is named: the detectors of the built-in packs."""

LFW_BATCH = 16
"""LFW images per `Detector.detect_many` call: MTCNN runs equal-size photos together."""

PhotoError = tuple[str, str]
"""(photo, why it could not be read)."""


# ---- results -------------------------------------------------------------------------
@dataclass(frozen=True)
class LfwDetection:
    """One detector on (a subset of) the LFW images."""

    images: int
    """Images read and detected (unreadable ones are in ``errors``, not here)."""
    found: int
    """Images with at least one kept face."""
    centre: int
    """Images with a kept face whose box contains the image centre (the labelled person)."""
    faces: int
    """Kept faces over all images (LFW shows bystanders too, so > ``found`` is normal)."""
    errors: tuple[PhotoError, ...] = ()
    seconds: float = 0.0
    """Detection time only."""

    @property
    def detection_rate(self) -> float | None:
        return self.found / self.images if self.images else None

    @property
    def centre_rate(self) -> float | None:
        return self.centre / self.images if self.images else None

    @property
    def ms_per_photo(self) -> float | None:
        return 1000.0 * self.seconds / self.images if self.images else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "found": self.found,
            "detection_rate": _round(self.detection_rate, 4),
            "centre_found": self.centre,
            "centre_rate": _round(self.centre_rate, 4),
            "faces": self.faces,
            "errors": [{"photo": p, "error": e} for p, e in self.errors],
            "seconds": round(self.seconds, 2),
            "ms_per_photo": _round(self.ms_per_photo, 2),
        }


@dataclass(frozen=True)
class DevDetection:
    """One detector on the dev set's labelled group photos and its no-face photos."""

    groups: tuple[tuple[str, int, int], ...]
    """(photo, labelled, detected) per group photo."""
    no_face: tuple[tuple[str, int], ...]
    """(photo, faces found) per no-face photo; every one of those faces is a false positive."""
    errors: tuple[PhotoError, ...] = ()
    seconds: float = 0.0
    """Detection time over the group and no-face photos together."""

    @property
    def photos(self) -> int:
        return len(self.groups) + len(self.no_face)

    @property
    def labelled(self) -> int:
        return sum(n for _, n, _ in self.groups)

    @property
    def detected(self) -> int:
        return sum(d for _, _, d in self.groups)

    @property
    def within_one(self) -> int:
        """Group photos with at most one labelled face missed (detected >= labelled - 1).

        Labels count faces a person sees, some of them cut by the frame or
        turned away; missing one of those is forgivable, missing two is not.
        """
        return sum(d >= n - 1 for _, n, d in self.groups)

    @property
    def exact(self) -> int:
        return sum(d == n for _, n, d in self.groups)

    @property
    def false_positives(self) -> int:
        return sum(d for _, d in self.no_face)

    @property
    def false_positive_photos(self) -> int:
        return sum(d > 0 for _, d in self.no_face)

    @property
    def ms_per_photo(self) -> float | None:
        return 1000.0 * self.seconds / self.photos if self.photos else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_photos": len(self.groups),
            "labelled_faces": self.labelled,
            "detected_faces": self.detected,
            "within_one_photos": self.within_one,
            "exact_photos": self.exact,
            "per_photo": [{"photo": p, "labelled": n, "detected": d} for p, n, d in self.groups],
            "no_face_photos": len(self.no_face),
            "false_positives": self.false_positives,
            "false_positive_photos": self.false_positive_photos,
            "no_face_per_photo": [{"photo": p, "detected": d} for p, d in self.no_face],
            "errors": [{"photo": p, "error": e} for p, e in self.errors],
            "seconds": round(self.seconds, 2),
            "ms_per_photo": _round(self.ms_per_photo, 1),
        }


@dataclass(frozen=True)
class DetectorResult:
    detector: str
    """The name it was asked for by (``scrfd``)."""
    model: str
    """`Detector.name` (``det_500m`` for the SCRFD file of the local models dir)."""
    device: str
    lfw: LfwDetection
    dev: DevDetection

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "model": self.model,
            "device": self.device,
            "lfw": self.lfw.to_dict(),
            "dev": self.dev.to_dict(),
        }


@dataclass(frozen=True)
class DetectorComparison:
    """The result of one ``evaluate detectors`` run."""

    lfw_dir: str
    dev_dir: str
    detection: DetectionSettings
    results: tuple[DetectorResult, ...]
    limit: int | None = None
    skipped: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    created: str = field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "detectors",
            "created": self.created,
            "lfw_dir": self.lfw_dir,
            "dev_dir": self.dev_dir,
            "limit": self.limit,
            "detection": self.detection.model_dump(),
            "detectors": [r.to_dict() for r in self.results],
            "skipped": [{"detector": d, "reason": r} for d, r in self.skipped],
            "seconds": round(self.seconds, 1),
        }

    def summary(self) -> str:
        """One row per detector in aligned columns, then what the rows cannot show."""
        head = (
            "detector",
            "model",
            "device",
            "LFW found",
            "centre",
            "ms/LFW",
            "group faces",
            ">=n-1",
            "exact",
            "FP faces",
            "FP photos",
            "ms/dev",
        )
        rows = [head]
        for r in self.results:
            lfw, dev = r.lfw, r.dev
            n = len(dev.groups)
            rows.append(
                (
                    r.detector,
                    r.model,
                    r.device,
                    _pct(lfw.detection_rate),
                    _pct(lfw.centre_rate),
                    _ms(lfw.ms_per_photo),
                    f"{dev.detected}/{dev.labelled}",
                    f"{dev.within_one}/{n}",
                    f"{dev.exact}/{n}",
                    str(dev.false_positives),
                    f"{dev.false_positive_photos}/{len(dev.no_face)}",
                    _ms(dev.ms_per_photo),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = [_aligned(row, widths, names=3) for row in rows]
        images = self.results[0].lfw.images if self.results else 0
        s = self.detection
        lines.insert(
            0,
            f"Face detectors on {images} LFW images"
            + (f" (an even subset, --limit {self.limit})" if self.limit else "")
            + f" and the dev set {self.dev_dir} (min_score {s.min_score:g}, "
            f"min_face_size {s.min_face_size}, input_size {s.input_size}); ms = detection only",
        )
        for r in self.results:
            off = [f"{p} {d} of {n}" for p, n, d in r.dev.groups if d != n]
            if off:
                lines.append(f"{r.detector}: group photos not exact: {', '.join(off)}")
            fp = [f"{p} {d}" for p, d in r.dev.no_face if d]
            if fp:
                lines.append(f"{r.detector}: faces found on no-face photos: {', '.join(fp)}")
            for p, e in (*r.lfw.errors, *r.dev.errors):
                lines.append(f"{r.detector}: unreadable {p}: {e}")
        lines += [f"{d}: skipped ({reason})" for d, reason in self.skipped]
        lines.append(f"{self.seconds:.1f} s in all")
        return "\n".join(lines)

    def save(self, home: Path) -> Path:
        """Write the JSON document to ``<home>/evaluations/`` beside the pack comparisons."""
        return save_evaluation(self.to_dict(), home, "detectors", self.created)


def _aligned(row: Sequence[str], widths: Sequence[int], names: int) -> str:
    """The first ``names`` cells left-aligned, numbers right-aligned, as a reader scans them."""
    cells = (
        c.ljust(w) if i < names else c.rjust(w)
        for i, (c, w) in enumerate(zip(row, widths, strict=True))
    )
    return "  ".join(cells).rstrip()


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None else round(v, digits)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


# ---- data ------------------------------------------------------------------------------
def no_face_photos(dev_dir: str | Path) -> list[Path]:
    """The dev set's photos labelled ``no_face`` (``labels.csv``, read as `group_photos` does)."""
    dev_dir = Path(dev_dir).expanduser()
    labels = dev_dir / "labels.csv"
    try:
        with open(labels, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as e:
        raise WorkbenchError(f"cannot read the dev labels {labels} ({e.strerror or e})") from e
    out = [dev_dir / row["path"] for row in rows if row.get("category") == "no_face"]
    if not out:
        raise WorkbenchError(f"{labels} lists no no-face photos (category 'no_face')")
    return out


def _read(path: Path, limits: LimitSettings) -> NDArray[np.uint8] | str:
    """The upright RGB pixels, or why the photo cannot be read (counted, never fatal)."""
    try:
        return decode_image(path.read_bytes(), limits).rgb
    except (OSError, WorkbenchError) as e:
        return str(e)


def covers_centre(face: DetectedFace, rgb: NDArray[np.uint8]) -> bool:
    """Whether the face's box contains the photo's centre (where LFW puts its person)."""
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = face.box
    return x1 <= w / 2 <= x2 and y1 <= h / 2 <= y2


# ---- measuring ---------------------------------------------------------------------------
def _timed(
    detector: Detector, images: Sequence[NDArray[np.uint8]], detection: DetectionSettings
) -> tuple[list[list[DetectedFace]], float]:
    """Kept faces per photo and the seconds `Detector.detect_many` took."""
    start = time.perf_counter()
    found = detector.detect_many(images, detection)
    seconds = time.perf_counter() - start
    return [keep_faces(faces, detection) for faces in found], seconds


def detect_lfw(
    detector: Detector,
    paths: Sequence[Path],
    root: Path,
    detection: DetectionSettings,
    *,
    limits: LimitSettings | None = None,
    progress: bool = True,
    label: str = "",
) -> LfwDetection:
    """Detection rate and centre hits over LFW images, detected in equal-size batches."""
    limits = limits or LimitSettings()
    found = centre = faces = 0
    errors: list[PhotoError] = []
    seconds = 0.0
    images = 0
    with progress_bar(
        total=len(paths), desc=f"{label or detector.name} LFW", enabled=progress
    ) as bar:
        for start in range(0, len(paths), LFW_BATCH):
            chunk = paths[start : start + LFW_BATCH]
            by_shape: dict[tuple[int, ...], list[NDArray[np.uint8]]] = {}
            for path in chunk:
                rgb = _read(path, limits)
                if isinstance(rgb, str):
                    errors.append((str(path.relative_to(root)), rgb))
                else:
                    by_shape.setdefault(rgb.shape, []).append(rgb)
            for batch in by_shape.values():
                kept, took = _timed(detector, batch, detection)
                seconds += took
                images += len(batch)
                for rgb, fs in zip(batch, kept, strict=True):
                    faces += len(fs)
                    found += bool(fs)
                    centre += any(covers_centre(f, rgb) for f in fs)
            bar.update(len(chunk))
    return LfwDetection(images, found, centre, faces, tuple(errors), seconds)


def detect_dev(
    detector: Detector,
    dev_dir: str | Path,
    detection: DetectionSettings,
    *,
    limits: LimitSettings | None = None,
) -> DevDetection:
    """Faces found on the labelled group photos and on the no-face photos, one photo a call."""
    limits = limits or LimitSettings()
    groups: list[tuple[str, int, int]] = []
    no_face: list[tuple[str, int]] = []
    errors: list[PhotoError] = []
    seconds = 0.0

    def count(path: Path) -> int | None:
        nonlocal seconds
        rgb = _read(path, limits)
        if isinstance(rgb, str):
            errors.append((path.name, rgb))
            return None
        kept, took = _timed(detector, [rgb], detection)
        seconds += took
        return len(kept[0])

    for path, labelled in group_photos(dev_dir):
        if (n := count(path)) is not None:
            groups.append((path.name, labelled, n))
    for path in no_face_photos(dev_dir):
        if (n := count(path)) is not None:
            no_face.append((path.name, n))
    return DevDetection(tuple(groups), tuple(no_face), tuple(errors), seconds)


def warm_up(detector: Detector, detection: DetectionSettings) -> None:
    """Load the detector and run it once on a blank LFW-sized photo, untimed.

    First calls pay for lazy allocations (onnxruntime's arenas, torch's
    kernels); on a 40-image subset that would be billed to the first photos.
    """
    detector.load(detection)
    detector.detect_many([np.full((250, 250, 3), 127, np.uint8)], detection)


def available_detectors(
    settings: WorkbenchSettings, names: Sequence[str] | None = None
) -> tuple[list[tuple[str, Detector]], list[tuple[str, str]]]:
    """Detectors that load here (`DEFAULT_DETECTORS` unless ``names``), and why others don't.

    Named detectors raise their error (an unknown name lists the known ones):
    asked for by name, the failure is the answer.
    """
    from workbench.faces.registry import open_detector

    if not names:  # "whatever is here" must not start downloading weights
        settings = settings.model_copy(update={"allow_download": False})
    loaded: list[tuple[str, Detector]] = []
    skipped: list[tuple[str, str]] = []
    for name in names or DEFAULT_DETECTORS:
        try:
            detector = open_detector(name, settings)
            detector.load(settings.detection)
        except WorkbenchError as e:
            if names:
                raise
            skipped.append((name, str(e)))
        else:
            loaded.append((name, detector))
    return loaded, skipped


def compare_detectors(
    detectors: Sequence[tuple[str, Detector]],
    lfw_dir: str | Path,
    dev_dir: str | Path,
    detection: DetectionSettings,
    *,
    limit: int | None = None,
    progress: bool = True,
    skipped: Sequence[tuple[str, str]] = (),
    limits: LimitSettings | None = None,
    on_result: Callable[[DetectorResult], None] | None = None,
) -> DetectorComparison:
    """Each (name, detector) on the same LFW images and dev photos with the same settings.

    ``on_result`` sees each detector's result as soon as it is measured (a
    full LFW run takes a while per detector).
    """
    start = time.perf_counter()
    root = images_root(lfw_dir)
    paths = lfw_images(lfw_dir, limit)
    group_photos(dev_dir)  # bad labels fail before any detector has run
    no_face_photos(dev_dir)
    results = []
    for name, detector in detectors:
        warm_up(detector, detection)
        lfw = detect_lfw(
            detector, paths, root, detection, limits=limits, progress=progress, label=name
        )
        dev = detect_dev(detector, dev_dir, detection, limits=limits)
        result = DetectorResult(name, detector.name, detector.device_used, lfw, dev)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return DetectorComparison(
        str(lfw_dir),
        str(dev_dir),
        detection,
        tuple(results),
        limit=limit,
        skipped=tuple(skipped),
        seconds=time.perf_counter() - start,
    )


__all__ = [
    "DEFAULT_DETECTORS",
    "DetectorComparison",
    "DetectorResult",
    "DevDetection",
    "LfwDetection",
    "available_detectors",
    "compare_detectors",
    "covers_centre",
    "detect_dev",
    "detect_lfw",
    "lfw_images",
    "no_face_photos",
    "warm_up",
]
