"""Small JPEG thumbnails of catalog photos and of their faces, cached on disk.

The gallery and search apps show photos through these and never send a full
photo to the browser. A thumbnail is keyed by the photo's sha256, so the same
bytes are thumbnailed once whichever source, uri or workbench row they came
from; photos without a sha256 (their bytes could never be read) have none and
raise `ThumbnailError`, as does a photo whose source no longer has it. Every
thumbnail is made from the *upright* decoded photo (`imaging.decode_image`:
EXIF orientation applied, the settings' limits checked), the same pixels the
detector saw, so face boxes stored in the catalog scale onto it by width and
height alone.

Layout under ``<home>/thumbnails/`` (``root``)::

    photos/s256-q85/ab/<sha256>.jpg                     longest side 256, quality 85
    faces/s160-q85-m25/ab/<sha256>-<x1>_<y1>_<x2>_<y2>.jpg   square face crops

Files are written to a temporary name in the same folder and renamed, so a
reader in another kernel (the Voila app beside a notebook) sees either no file
or a whole one, and two writers racing on one key both leave a whole file.

>>> cache = ThumbnailCache(wb.settings)                         # doctest: +SKIP
>>> cache.thumbnail(photo)                                      # doctest: +SKIP
PosixPath('.../thumbnails/photos/s256-q85/3f/3f9c....jpg')
>>> jpeg = cache.boxed(photo, [f.box for f in photo.faces], highlight=0)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from workbench.errors import ConfigurationError, WorkbenchError
from workbench.imaging.decode import DecodedImage, decode_image, sha256, thumbnail
from workbench.settings import WorkbenchSettings, home_file_mode, make_home_dirs
from workbench.sources import reopen_photo

DEFAULT_SIZE = 256
"""Longest side of a photo thumbnail, in pixels."""
DEFAULT_QUALITY = 85
"""JPEG quality of cached thumbnails (a 256 px photo is then ~8–25 KB)."""
FACE_SIZE = 160
"""Side of a square face thumbnail, in pixels."""
FACE_MARGIN = 0.25
"""Context around a face crop: this fraction of the box's longer side on every side."""
MAX_SIZE = 4096
"""Largest thumbnail side accepted: beyond it, a 'thumbnail' is the photo."""
BOX_COLOUR = (0, 255, 0)
"""Colour of face boxes drawn by `draw_boxes`."""
HIGHLIGHT_COLOUR = (255, 0, 0)
"""Colour of the highlighted box (the matched face in a search preview)."""

Box = Sequence[float]
ImageLike = NDArray[np.uint8] | Image.Image | bytes | str | os.PathLike[str]
Colour = tuple[int, int, int]


class ThumbnailError(WorkbenchError):
    """A photo has no thumbnail: its bytes were never read, or cannot be read or decoded now."""


class CatalogPhoto(Protocol):
    """What a thumbnail needs of a photo: a catalog `Photo` row, a gallery item or detail.

    ``width`` and ``height`` are the upright photo's, as the catalog stores
    them; face boxes are in those pixels.
    """

    @property
    def id(self) -> int: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def source(self) -> str: ...
    @property
    def origin(self) -> str: ...
    @property
    def uri(self) -> str: ...
    @property
    def meta(self) -> dict[str, Any]: ...
    @property
    def width(self) -> int | None: ...
    @property
    def height(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...


@dataclass
class CacheStats:
    """What a `ThumbnailCache` did since it was made (tests and benchmarks read it)."""

    hits: int = 0
    """Thumbnails found on disk."""
    made: int = 0
    """Thumbnails written."""
    decodes: int = 0
    """Photos read from their source and decoded (one decode can make several face crops)."""


@dataclass
class ThumbnailBatch:
    """Thumbnails of many photos: a path per photo id, or why there is none."""

    paths: dict[int, Path] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


class ThumbnailCache:
    """Photo and face thumbnails of one workbench, cached under ``<home>/thumbnails/``.

    ``settings`` give the home, the decoding limits and what remote sources
    need to read a photo again; ``root`` puts the cache elsewhere (a shared
    disk, a test's folder); ``quality`` is the JPEG quality (1–95, default 85).
    Safe to share between threads and between processes on one disk.
    """

    def __init__(
        self,
        settings: WorkbenchSettings,
        *,
        root: str | os.PathLike[str] | None = None,
        quality: int = DEFAULT_QUALITY,
    ) -> None:
        if not 1 <= quality <= 95:
            raise ConfigurationError(f"JPEG quality must be 1–95, got {quality}")
        self.settings = settings
        self.root = Path(root) if root is not None else Path(settings.home) / "thumbnails"
        self.quality = quality
        self.stats = CacheStats()

    # ---- paths -------------------------------------------------------------------
    def path_for(self, photo: CatalogPhoto, size: int = DEFAULT_SIZE) -> Path:
        """Where the photo's thumbnail of ``size`` lives (whether or not it exists yet)."""
        return self._photo_path(_sha_of(photo), size)

    def face_path_for(
        self,
        photo: CatalogPhoto,
        box: Box,
        size: int = FACE_SIZE,
        margin: float = FACE_MARGIN,
    ) -> Path:
        """Where the face thumbnail of ``box`` lives; the key holds the box in whole pixels."""
        sha = _sha_of(photo)
        x1, y1, x2, y2 = _pixel_box(box)
        folder = f"s{_check_size(size)}-q{self.quality}-m{round(_check_margin(margin) * 100)}"
        return self.root / "faces" / folder / sha[:2] / f"{sha}-{x1}_{y1}_{x2}_{y2}.jpg"

    # ---- photo thumbnails --------------------------------------------------------
    def thumbnail(self, photo: CatalogPhoto, size: int = DEFAULT_SIZE) -> Path:
        """The photo's thumbnail (longest side ``size`` px, never enlarged), made if missing.

        Raises `ThumbnailError` naming the photo when it has no sha256, when
        its source no longer has it (or has other bytes) and when it does not
        decode.
        """
        path = self.path_for(photo, size)
        if path.is_file():
            self.stats.hits += 1
            return path
        opened: dict[str, Any] = {}
        try:
            self._make_thumbnail(self._decode(photo, opened), size, path)
        finally:
            _close_sources(opened)
        return path

    def thumbnail_bytes(self, photo: CatalogPhoto, size: int = DEFAULT_SIZE) -> bytes:
        """The thumbnail's JPEG bytes (what an ``ipywidgets.Image`` takes)."""
        return self.thumbnail(photo, size).read_bytes()

    def thumbnails(
        self, photos: Sequence[CatalogPhoto], size: int = DEFAULT_SIZE
    ) -> ThumbnailBatch:
        """Thumbnails of a page of photos; a photo that has none is reported, not raised.

        Sources are opened once for the whole batch (a zip archive's
        directory is parsed once, not once per member).
        """
        batch = ThumbnailBatch()
        opened: dict[str, Any] = {}
        try:
            for photo in photos:
                try:
                    path = self.path_for(photo, size)
                    if path.is_file():
                        self.stats.hits += 1
                    else:
                        self._make_thumbnail(self._decode(photo, opened), size, path)
                    batch.paths[photo.id] = path
                except ThumbnailError as e:
                    batch.errors[photo.id] = str(e)
        finally:
            _close_sources(opened)
        return batch

    def put(
        self, sha: str, image: DecodedImage, sizes: Sequence[int] = (DEFAULT_SIZE,)
    ) -> list[Path]:
        """Thumbnails of an image already decoded upright (by `imaging.decode_image`),
        for the bytes with this sha256; sizes already cached are left alone.

        For the ingest, which holds the decoded photo anyway: making the
        thumbnail there costs only the resize and encode (a few ms), where the
        gallery's first view of the photo would read and decode it again.
        """
        if not isinstance(sha, str) or len(sha) != 64:
            raise ConfigurationError(f"sha must be a photo's 64-hex-digit sha256, got {sha!r}")
        paths = []
        for size in sizes:
            path = self._photo_path(sha, size)
            if path.is_file():
                self.stats.hits += 1
            else:
                self._make_thumbnail(image, size, path)
            paths.append(path)
        return paths

    # ---- face thumbnails ---------------------------------------------------------
    def face_thumbnail(
        self,
        photo: CatalogPhoto,
        box: Box,
        size: int = FACE_SIZE,
        margin: float = FACE_MARGIN,
    ) -> Path:
        """A square ``size`` × ``size`` crop around a face box (upright-photo pixels).

        The square's side is the box's longer side plus ``margin`` of it on
        every side, centred on the box and moved (then, if need be, shrunk)
        to stay inside the photo, so it is always square and never padded.
        """
        return self.face_thumbnails(photo, [box], size, margin)[0]

    def face_thumbnails(
        self,
        photo: CatalogPhoto,
        boxes: Sequence[Box],
        size: int = FACE_SIZE,
        margin: float = FACE_MARGIN,
    ) -> list[Path]:
        """`face_thumbnail` of several faces of one photo, decoding the photo at most once."""
        paths = [self.face_path_for(photo, box, size, margin) for box in boxes]
        missing = [i for i, p in enumerate(paths) if not p.is_file()]
        self.stats.hits += len(paths) - len(missing)
        if missing:
            opened: dict[str, Any] = {}
            try:
                img = Image.fromarray(self._decode(photo, opened).rgb)
            finally:
                _close_sources(opened)
            for i in missing:
                crop = _square_crop(img, _pixel_box(boxes[i]), margin)
                crop = crop.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
                self._write(paths[i], _jpeg(crop, self.quality))
        return paths

    # ---- boxes -------------------------------------------------------------------
    def boxed(
        self,
        photo: CatalogPhoto,
        boxes: Sequence[Box],
        labels: Sequence[str | None] | None = None,
        size: int = DEFAULT_SIZE,
        *,
        highlight: int | None = None,
    ) -> bytes:
        """The photo's thumbnail with face boxes drawn (JPEG bytes, not cached).

        ``boxes`` are in upright-photo pixels (as the catalog stores them) and
        are scaled onto the thumbnail; ``highlight`` is the index of the box
        drawn in `HIGHLIGHT_COLOUR` (the matched face of a search).
        """
        if not photo.width or not photo.height:
            raise ThumbnailError(
                f"photo {photo.id} ({photo.uri}) has no recorded width and height, so its "
                "face boxes cannot be placed on the thumbnail"
            )
        path = self.thumbnail(photo, size)
        with Image.open(path) as img:
            img.load()
            scale = (img.width / photo.width, img.height / photo.height)
            return draw_boxes(img, boxes, labels, scale=scale, highlight=highlight)

    # ---- internals ---------------------------------------------------------------
    def _photo_path(self, sha: str, size: int) -> Path:
        folder = f"s{_check_size(size)}-q{self.quality}"
        return self.root / "photos" / folder / sha[:2] / f"{sha}.jpg"

    def _decode(self, photo: CatalogPhoto, opened: dict[str, Any]) -> DecodedImage:
        """Read the photo again from its source, check it is the same bytes, decode it upright."""
        sha = _sha_of(photo)
        where = f"photo {photo.id} ({photo.uri})"
        ref = reopen_photo(
            photo.source, photo.origin, photo.uri, dict(photo.meta or {}), self.settings, opened
        )
        if ref.problem:
            raise ThumbnailError(f"{where}: {_unreadable(photo, ref.problem)}")
        try:
            data = ref.read()
        except WorkbenchError as e:
            raise ThumbnailError(f"{where}: {_unreadable(photo, str(e))}") from e
        except Exception as e:  # noqa: BLE001 - a source's client may raise anything
            why = f"{type(e).__name__}: {e}"
            raise ThumbnailError(f"{where}: {_unreadable(photo, why)}") from e
        if sha256(data) != sha:
            raise ThumbnailError(
                f"{where}: its source now holds other bytes than were ingested "
                f"(sha256 {sha[:12]}… expected); ingest it again to see the new photo"
            )
        try:
            decoded = decode_image(data, self.settings.limits)
        except WorkbenchError as e:
            raise ThumbnailError(f"{where}: cannot be decoded: {e}") from e
        self.stats.decodes += 1
        return decoded

    def _make_thumbnail(self, decoded: DecodedImage, size: int, path: Path) -> None:
        self._write(path, _jpeg(thumbnail(decoded.rgb, size), self.quality))

    def _write(self, path: Path, data: bytes) -> None:
        home = Path(self.settings.home)
        make_home_dirs(path.parent, home)
        _write_atomic(path, data, home_file_mode(home))
        self.stats.made += 1


# ---- drawing -----------------------------------------------------------------------
def draw_boxes(
    image: ImageLike,
    boxes: Sequence[Box],
    labels: Sequence[str | None] | None = None,
    scale: float | tuple[float, float] = 1.0,
    *,
    highlight: int | None = None,
    colour: Colour = BOX_COLOUR,
    highlight_colour: Colour = HIGHLIGHT_COLOUR,
    line_width: int | None = None,
    quality: int = 90,
) -> bytes:
    """JPEG bytes of ``image`` with ``boxes`` (x1, y1, x2, y2) drawn, each ``scale``\\d.

    ``image`` is an RGB array, a PIL image, JPEG/PNG bytes or a file path (a
    cached thumbnail); it is not changed. ``scale`` maps box coordinates onto
    it: one factor, or (x, y) factors (a thumbnail's width and height over the
    photo's). ``labels`` (one per box, ``None`` for none) are written above the
    boxes. ``line_width`` defaults to ~1/128 of the image's shorter side (at
    least 2 px).
    """
    img = _open_image(image)
    sx, sy = (scale, scale) if isinstance(scale, int | float) else scale
    if not (sx > 0 and sy > 0 and math.isfinite(sx) and math.isfinite(sy)):
        raise ConfigurationError(f"scale must be positive and finite, got {scale!r}")
    if labels is not None and len(labels) != len(boxes):
        raise ConfigurationError(f"{len(labels)} labels for {len(boxes)} boxes; give one per box")
    if highlight is not None and not 0 <= highlight < len(boxes):
        raise ConfigurationError(f"highlight {highlight} is not a box index (0–{len(boxes) - 1})")
    width = line_width or max(2, round(min(img.size) / 128))
    draw = ImageDraw.Draw(img)
    font = _font(max(10, round(min(img.size) / 24)))
    # The highlighted box goes last so no other box covers it.
    order = [i for i in range(len(boxes)) if i != highlight] + (
        [highlight] if highlight is not None else []
    )
    for i in order:
        x1, y1, x2, y2 = _check_box(boxes[i])
        rect = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
        c = highlight_colour if i == highlight else colour
        draw.rectangle(rect, outline=c, width=width)
        if labels is not None and labels[i]:
            _label(draw, font, str(labels[i]), rect, c)
    return _jpeg(img, quality, full_colour=True)


def _label(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    text: str,
    rect: tuple[float, float, float, float],
    colour: Colour,
) -> None:
    """Text on a filled tag of the box's colour: above the box, or inside it at the top edge."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 4, bottom - top + 4
    x = rect[0]
    y = rect[1] - h if rect[1] >= h else rect[1]
    draw.rectangle((x, y, x + w, y + h), fill=colour)
    draw.text((x + 2 - left, y + 2 - top), text, fill=(0, 0, 0), font=font)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` px (Pillow 10.0 has only its small bitmap one)."""
    try:
        return ImageFont.load_default(size)
    except TypeError:
        return ImageFont.load_default()


# ---- helpers -----------------------------------------------------------------------
def _sha_of(photo: CatalogPhoto) -> str:
    sha = photo.sha256
    if not sha:
        why = f" ({photo.error})" if photo.error else ""
        raise ThumbnailError(
            f"photo {photo.id} ({photo.uri}) has no thumbnail: its bytes could not be read "
            f"when it was ingested{why}; fix the file and run the ingest with retry_errors"
        )
    return sha


def _unreadable(photo: CatalogPhoto, why: str) -> str:
    if photo.origin in ("local", "zip"):
        hint = (
            "it was moved or deleted after it was ingested; put it back, or remove it "
            f"from the catalog with `workbench delete {photo.id}`"
        )
    else:
        hint = (
            f"the {photo.origin} service no longer serves it or cannot be reached; "
            f"try again later, or remove it with `workbench delete {photo.id}`"
        )
    return f"cannot read it from its source {photo.source!r} ({why}): {hint}"


def _check_size(size: int) -> int:
    if not isinstance(size, int) or not 16 <= size <= MAX_SIZE:
        raise ConfigurationError(f"thumbnail size must be a whole 16–{MAX_SIZE} px, got {size!r}")
    return size


def _check_margin(margin: float) -> float:
    if not 0 <= margin <= 2:
        raise ConfigurationError(f"face margin must be 0–2 (a fraction of the box), got {margin}")
    return float(margin)


def _check_box(box: Box) -> tuple[float, float, float, float]:
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError) as e:
        raise ConfigurationError(f"a box is 4 numbers (x1, y1, x2, y2), got {box!r}") from e
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        raise ConfigurationError(f"a box needs finite x1 < x2 and y1 < y2, got {box!r}")
    return x1, y1, x2, y2


def _pixel_box(box: Box) -> tuple[int, int, int, int]:
    """The box in whole pixels: the cache key, and the crop made under it."""
    x1, y1, x2, y2 = _check_box(box)
    return (
        math.floor(x1),
        math.floor(y1),
        max(math.ceil(x2), math.floor(x1) + 1),
        max(math.ceil(y2), math.floor(y1) + 1),
    )


def _square_crop(img: Image.Image, box: tuple[int, int, int, int], margin: float) -> Image.Image:
    x1, y1, x2, y2 = box
    side = round(max(x2 - x1, y2 - y1) * (1 + 2 * margin))
    side = max(1, min(side, img.width, img.height))
    left = min(max(round((x1 + x2 - side) / 2), 0), img.width - side)
    top = min(max(round((y1 + y2 - side) / 2), 0), img.height - side)
    return img.crop((left, top, left + side, top + side))


def _open_image(image: ImageLike) -> Image.Image:
    """A fresh RGB PIL image to draw on (the caller's image is never changed)."""
    if isinstance(image, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).convert("RGB")
    if isinstance(image, Image.Image):
        return image.convert("RGB")  # convert copies, even RGB to RGB
    try:
        src = io.BytesIO(image) if isinstance(image, bytes) else Path(image)
        with Image.open(src) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as e:
        raise ConfigurationError(f"cannot open the image to draw on ({e})") from e


def _jpeg(img: Image.Image, quality: int, *, full_colour: bool = False) -> bytes:
    """JPEG bytes; ``full_colour`` keeps colour at full resolution (4:4:4), so thin
    coloured box lines stay crisp instead of bleeding into the photo."""
    buf = io.BytesIO()
    extra = {"subsampling": 0} if full_colour else {}
    img.convert("RGB").save(buf, "JPEG", quality=quality, optimize=True, **extra)
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write under a temporary name in the same folder, then rename over ``path``:
    readers in other processes see no file or a whole one, never half of one.
    ``mode``: the permission bits (`workbench.settings.home_file_mode`)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)  # mkstemp makes 0600; the catalog's own bits instead
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _close_sources(opened: dict[str, Any]) -> None:
    """Close the archives a batch kept open (sources without ``close`` hold nothing)."""
    for src in opened.values():
        close = getattr(src, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


__all__ = [
    "BOX_COLOUR",
    "DEFAULT_SIZE",
    "FACE_MARGIN",
    "FACE_SIZE",
    "HIGHLIGHT_COLOUR",
    "CacheStats",
    "CatalogPhoto",
    "ThumbnailBatch",
    "ThumbnailCache",
    "ThumbnailError",
    "draw_boxes",
]
