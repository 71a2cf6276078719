"""Safe photo decoding: limits checked before pixels are allocated, EXIF applied."""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from workbench.errors import ImageError
from workbench.settings import LimitSettings

# Our own limits (LimitSettings) are checked right after the header is parsed;
# Pillow's global bomb guard stays on as a second line of defence at its
# default (it raises at twice this many pixels, inside `Image.open`).
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 89_478_485)

# Pillow identifies some 40 formats, a few of which are risky (EPS runs
# Ghostscript) or not photos at all; only these plugins may open a photo.
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")

# Magic numbers of things people put among photos, for a message that says what
# a file is when Pillow cannot open it (offset, signature, name, photo format).
_SIGNATURES: tuple[tuple[int, bytes, str, bool], ...] = (
    (0, b"\xff\xd8\xff", "JPEG", True),
    (0, b"\x89PNG\r\n\x1a\n", "PNG", True),
    (0, b"GIF87a", "GIF", True),
    (0, b"GIF89a", "GIF", True),
    (0, b"BM", "BMP", True),
    (0, b"II*\x00", "TIFF", True),
    (0, b"MM\x00*", "TIFF", True),
    (8, b"WEBP", "WebP", True),
    (4, b"ftypavif", "AVIF", True),
    (4, b"ftypheic", "HEIC (needs the pillow-heif plugin)", True),
    (4, b"ftypheix", "HEIC (needs the pillow-heif plugin)", True),
    (4, b"ftypmif1", "HEIF (needs the pillow-heif plugin)", True),
    (0, b"%PDF", "PDF document", False),
    (0, b"%!PS", "PostScript/EPS document", False),
    (0, b"\xc5\xd0\xd3\xc6", "EPS document", False),
    (0, b"PK\x03\x04", "zip archive", False),
    (0, b"\x1f\x8b", "gzip archive", False),
    (0, b"<svg", "SVG drawing", False),
    (0, b"<?xml", "XML/SVG document", False),
)


@dataclass(frozen=True)
class DecodedImage:
    """An RGB photo, upright (EXIF orientation applied).

    ``scale`` is the photo's own size over the decoded pixels' (2.0 for a JPEG decoded
    at half its size, see `decode_image`'s ``max_side``): multiply coordinates found
    in ``rgb`` by it to have them in the photo's pixels.
    """

    rgb: NDArray[np.uint8]
    format: str
    scale: float = 1.0

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """The photo's own width and height (upright), whatever scale it was decoded at."""
        return round(self.width * self.scale), round(self.height * self.scale)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(
    data: bytes, limits: LimitSettings | None = None, max_side: int | None = None
) -> DecodedImage:
    """Decode photo bytes into an upright RGB ``uint8`` array (height × width × 3).

    With ``max_side``, a JPEG whose longest side is larger is decoded at the smallest
    of JPEG's own reduced scales (1/2, 1/4, 1/8) that keeps that side at least
    ``max_side`` (libjpeg skips the work, so time and memory shrink with it);
    `DecodedImage.scale` says by how much. Other formats decode in full.

    Accepts the formats in `ACCEPTED_FORMATS` that this Pillow can read. Raises
    `ImageError` naming the cause for empty, non-image, truncated or corrupt
    data and for dimensions outside ``limits`` (default `LimitSettings()`);
    decompression bombs are refused from the header, before any pixel is
    decoded. Any failure inside Pillow becomes an `ImageError`, never another
    exception, so one hostile file cannot stop a batch.
    """
    limits = limits or LimitSettings()
    if not data:
        raise ImageError("empty file (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise ImageError(
            f"file is {len(data):,} bytes, over the limit of {limits.max_file_bytes:,}"
        )
    try:
        img = Image.open(io.BytesIO(data), formats=_open_formats())
        fmt = img.format or "unknown"
        w, h = img.size
        _check_dimensions(w, h, limits)
        if max_side and fmt == "JPEG" and max(w, h) > max_side:
            ratio = max_side / max(w, h)
            img.draft("RGB", (max(1, round(w * ratio)), max(1, round(h * ratio))))
        img.load()
        scale = w / img.size[0]
    except ImageError:
        raise
    except UnidentifiedImageError as e:
        raise ImageError(_describe_unreadable(data)) from e
    except Image.DecompressionBombError as e:
        raise ImageError(f"decompression bomb refused: {e}") from e
    except MemoryError as e:
        raise ImageError("image needs more memory than is available to decode") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow's MAX_TEXT_CHUNK / MAX_TEXT_MEMORY guard a PNG's metadata, not its pixels.
        if any(w in str(e).lower() for w in ("text_chunk", "text chunk", "text memory")):
            raise ImageError(
                f"a text chunk of the PNG is too large to read safely ({e}): its metadata, "
                "not its pixels, is over the limit; re-save the image without it"
            ) from e
        raise ImageError(f"truncated or corrupt image data ({e})") from e
    except Exception as e:  # noqa: BLE001 - fuzzed files make Pillow raise anything
        raise ImageError(f"corrupt image data ({type(e).__name__}: {e})") from e
    with contextlib.suppress(Exception):  # broken EXIF must not lose an otherwise good photo
        img = ImageOps.exif_transpose(img) or img
    try:
        rgb = _to_rgb(img)
    except MemoryError as e:
        raise ImageError("image needs more memory than is available to convert") from e
    except Exception as e:  # noqa: BLE001 - an odd mode must fail this photo only
        raise ImageError(f"cannot convert {fmt} image in mode {img.mode} to RGB ({e})") from e
    return DecodedImage(rgb=np.ascontiguousarray(rgb), format=fmt, scale=scale)


def _open_formats() -> tuple[str, ...]:
    """The accepted formats this Pillow has a plugin for (HEIF only with pillow-heif)."""
    Image.init()
    return tuple(f for f in ACCEPTED_FORMATS if f in Image.OPEN)


def _to_rgb(img: Image.Image) -> NDArray[np.uint8]:
    """RGB uint8 pixels of any Pillow mode; transparency composited on white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow's convert() clips these to 0..255 (a 16-bit photo turns white);
        # scale them instead.
        a = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            a = a / 257.0
        else:
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            if lo < 0 or hi > 255:
                a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        gray = np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def _describe_unreadable(data: bytes) -> str:
    """Why Pillow could not identify ``data``: what it looks like instead."""
    for offset, magic, name, photo in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if photo:
                return (
                    f"corrupt or unsupported {name} data: the header cannot be parsed "
                    f"(accepted formats: {', '.join(_open_formats())})"
                )
            return f"not an image: looks like a {name}"
    head = data[:4096]
    try:
        head.decode("utf-8")
        is_text = True
    except UnicodeDecodeError as e:
        # A multi-byte character cut at the 4096th byte is still text.
        is_text = len(data) > len(head) and e.start >= len(head) - 3
    if is_text and b"\x00" not in head:
        return "not an image: looks like a text file"
    return (
        f"not an image: unknown format (first bytes {data[:8].hex(' ')}; "
        f"accepted formats: {', '.join(_open_formats())})"
    )


def _check_dimensions(w: int, h: int, limits: LimitSettings) -> None:
    if w <= 0 or h <= 0:
        raise ImageError(f"image has no pixels ({w}×{h})")
    if max(w, h) > limits.max_side:
        raise ImageError(
            f"absurd dimensions: image is {w}×{h}, a side over the limit of {limits.max_side:,} px"
        )
    if w * h > limits.max_pixels:
        raise ImageError(
            f"decompression bomb refused: image is {w}×{h} = {w * h:,} pixels, over the limit "
            f"of {limits.max_pixels:,}"
        )
    if min(w, h) < limits.min_side:
        raise ImageError(
            f"absurd dimensions: image is {w}×{h}, too small to hold a face "
            f"(min side {limits.min_side} px)"
        )


def thumbnail(rgb: NDArray[np.uint8], max_side: int = 256) -> Image.Image:
    """A small RGB PIL image of the photo, aspect ratio kept."""
    img = Image.fromarray(rgb)
    img.thumbnail((max_side, max_side))
    return img
