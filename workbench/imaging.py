"""Safe photo decoding: limits checked before pixels are allocated, EXIF applied."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from workbench.errors import ImageError
from workbench.settings import LimitSettings

# Our own limits (LimitSettings) are checked before decoding; Pillow's global
# bomb guard stays on as a second line of defence at its default.
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 89_478_485)


@dataclass(frozen=True)
class DecodedImage:
    """An RGB photo, upright (EXIF orientation applied)."""

    rgb: NDArray[np.uint8]
    format: str

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, limits: LimitSettings | None = None) -> DecodedImage:
    """Decode photo bytes into an upright RGB array.

    Raises `ImageError` with the cause for empty, non-image, truncated or
    corrupt data and for dimensions outside ``limits`` (decompression bombs
    are refused from the header, before any pixel is decoded).
    """
    limits = limits or LimitSettings()
    if not data:
        raise ImageError("empty file (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise ImageError(f"file is {len(data):,} bytes, over the limit of {limits.max_file_bytes:,}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            w, h = img.size
            _check_dimensions(w, h, limits)
            img.load()
    except ImageError:
        raise
    except UnidentifiedImageError as e:
        raise ImageError("not an image Pillow can read (unknown or unsupported format)") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"decompression bomb refused: {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"truncated or corrupt image data ({e})") from e
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - broken EXIF must not lose an otherwise good photo
        pass
    try:
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise ImageError(f"cannot convert {fmt} image to RGB ({e})") from e
    return DecodedImage(rgb=np.ascontiguousarray(rgb), format=fmt)


def _check_dimensions(w: int, h: int, limits: LimitSettings) -> None:
    if w <= 0 or h <= 0:
        raise ImageError(f"image has no pixels ({w}×{h})")
    if max(w, h) > limits.max_side:
        raise ImageError(f"image is {w}×{h}, a side over the limit of {limits.max_side:,} px")
    if w * h > limits.max_pixels:
        raise ImageError(
            f"image is {w}×{h} = {w * h:,} pixels, over the limit of {limits.max_pixels:,} "
            "(decompression bomb?)"
        )
    if min(w, h) < limits.min_side:
        raise ImageError(f"image is {w}×{h}, too small to hold a face (min side {limits.min_side})")


def thumbnail(rgb: NDArray[np.uint8], max_side: int = 256) -> Image.Image:
    """A small RGB PIL image of the photo, aspect ratio kept."""
    img = Image.fromarray(rgb)
    img.thumbnail((max_side, max_side))
    return img
