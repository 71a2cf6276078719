"""decode_image on generated photos: formats, EXIF, modes, and every kind of hostile input."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, features

from workbench.errors import ImageError
from workbench.imaging.decode import DecodedImage, decode_image, sha256, thumbnail
from workbench.settings import LimitSettings

pytestmark = pytest.mark.unit

W, H = 96, 64


def _quadrants(w: int = W, h: int = H) -> np.ndarray:
    """An asymmetric picture: red, green, blue and white quadrants (flat, JPEG-friendly)."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)
    a[: h // 2, w // 2 :] = (0, 255, 0)
    a[h // 2 :, : w // 2] = (0, 0, 255)
    a[h // 2 :, w // 2 :] = (255, 255, 255)
    return a


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _noise_jpeg(w: int = 320, h: int = 240) -> bytes:
    rng = np.random.default_rng(1)
    return _encode(Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)), "JPEG", quality=90)


def _noise_png(seed: int, side: int = 200) -> bytes:
    rng = np.random.default_rng(seed)
    return _encode(Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8)), "PNG")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with_header(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w×h (valid CRCs) with a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _decode_error(data: bytes, limits: LimitSettings | None = None) -> str:
    with pytest.raises(ImageError) as info:
        decode_image(data, limits)
    return str(info.value).lower()


def _close(a: np.ndarray, b: np.ndarray, tol: float = 12.0) -> bool:
    return a.shape == b.shape and float(np.abs(a.astype(int) - b.astype(int)).mean()) < tol


# ---- good photos -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "kw", "name", "exact"),
    [
        ("JPEG", {"quality": 95}, "JPEG", False),
        ("PNG", {}, "PNG", True),
        ("WEBP", {"lossless": True}, "WEBP", True),
        ("WEBP", {"quality": 90}, "WEBP", False),
        ("GIF", {}, "GIF", True),
        ("BMP", {}, "BMP", True),
        ("TIFF", {}, "TIFF", True),
        pytest.param(
            "AVIF",
            {"quality": 90},
            "AVIF",
            False,
            marks=pytest.mark.skipif(not features.check("avif"), reason="Pillow without AVIF"),
        ),
    ],
)
def test_round_trip(fmt: str, kw: dict[str, object], name: str, exact: bool) -> None:
    src = _quadrants()
    out = decode_image(_encode(Image.fromarray(src), fmt, **kw))
    assert isinstance(out, DecodedImage)
    assert out.format == name
    assert out.rgb.dtype == np.uint8 and out.rgb.shape == (H, W, 3)
    assert (out.width, out.height) == (W, H)
    assert out.rgb.flags["C_CONTIGUOUS"]
    if exact:
        np.testing.assert_array_equal(out.rgb, src)
    else:
        assert _close(out.rgb, src)


def test_mpo_phone_photo_first_picture() -> None:
    first, second = Image.fromarray(_quadrants()), Image.new("RGB", (W, H), (0, 0, 0))
    buf = io.BytesIO()
    first.save(buf, "MPO", save_all=True, append_images=[second], quality=95)
    out = decode_image(buf.getvalue())
    assert out.format == "MPO" and _close(out.rgb, _quadrants())


@pytest.mark.parametrize(("orientation", "k"), [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_exif_orientation_applied(orientation: int, k: int) -> None:
    src = _quadrants()
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(Image.fromarray(src), "JPEG", quality=95, exif=exif)
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == orientation
    out = decode_image(data)
    expected = np.rot90(src, k=k)  # k=-1: clockwise, as orientation 6 asks
    assert out.rgb.shape == expected.shape
    assert _close(out.rgb, expected)
    if orientation in (6, 8):
        assert (out.width, out.height) == (H, W)


def test_broken_exif_keeps_the_photo() -> None:
    data = _encode(Image.fromarray(_quadrants()), "JPEG", quality=95, exif=b"Exif\x00\x00garbage!")
    out = decode_image(data)
    assert out.rgb.shape == (H, W, 3)


def test_palette_converts_to_rgb() -> None:
    src = _quadrants()
    pal = Image.fromarray(src).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    assert pal.mode == "P"
    out = decode_image(_encode(pal, "PNG"))
    assert out.rgb.shape == (H, W, 3)
    np.testing.assert_array_equal(out.rgb, src)


def test_transparency_composited_on_white() -> None:
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[: H // 2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    out = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG")).rgb
    assert out.shape == (H, W, 3)
    np.testing.assert_array_equal(out[0, 0], (200, 0, 0))
    np.testing.assert_array_equal(out[-1, -1], (255, 255, 255))

    pal = Image.new("P", (W, H), 0)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.paste(1, (0, 0, W, H // 2))
    pal.info["transparency"] = 0
    out = decode_image(_encode(pal, "PNG", transparency=0)).rgb
    np.testing.assert_array_equal(out[0, 0], (10, 20, 30))
    np.testing.assert_array_equal(out[-1, -1], (255, 255, 255))

    la_pixels = np.stack([np.full((H, W), 90, np.uint8), np.full((H, W), 255, np.uint8)], -1)
    la = Image.fromarray(la_pixels, "LA")
    np.testing.assert_array_equal(decode_image(_encode(la, "PNG")).rgb[5, 5], (90, 90, 90))


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grayscale_converts_to_rgb(mode: str) -> None:
    gray = Image.fromarray(_quadrants()).convert("L").convert(mode)
    out = decode_image(_encode(gray, "PNG")).rgb
    assert out.shape == (H, W, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    expected = np.asarray(gray.convert("L"))
    np.testing.assert_array_equal(out[..., 0], expected)


def test_cmyk_jpeg_converts_to_rgb() -> None:
    src = _quadrants()
    cmyk = Image.fromarray(src).convert("CMYK")
    out = decode_image(_encode(cmyk, "JPEG", quality=95))
    assert out.rgb.shape == (H, W, 3)
    assert _close(out.rgb, src, tol=20)


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, W * H).reshape(H, W).astype(np.uint16)
    img = Image.fromarray(ramp)
    assert img.mode.startswith("I;16")
    out = decode_image(_encode(img, "PNG")).rgb
    assert out.shape == (H, W, 3)
    # Pillow's own convert() clips to 255 and returns an almost white picture.
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert 120 < out.mean() < 135
    np.testing.assert_allclose(out[..., 0], ramp / 257.0, atol=1)


def test_16_bit_rgb_png_reads_as_rgb() -> None:
    # Pillow reduces 48-bit PNG to 8 bits per channel: hand-write one.
    rows = b"".join(
        b"\x00" + struct.pack(">" + "H" * (3 * W), *([0xFFFF, 0x8000, 0x0000] * W))
        for _ in range(H)
    )
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 16, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )
    out = decode_image(data).rgb
    assert out.shape == (H, W, 3)
    np.testing.assert_allclose(out[3, 3], (255, 128, 0), atol=1)


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32_bit_tiff_is_scaled(mode: str) -> None:
    ramp = np.linspace(-1000, 100_000, W * H).reshape(H, W)
    img = Image.fromarray(ramp.astype(np.int32 if mode == "I" else np.float32), mode)
    out = decode_image(_encode(img, "TIFF")).rgb
    assert out.shape == (H, W, 3)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


def test_animated_gif_first_frame() -> None:
    frames = [Image.fromarray(np.full((H, W, 3), v, np.uint8)) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buf.getvalue()).rgb
    assert out.shape == (H, W, 3) and abs(int(out.mean()) - 10) <= 2


def test_sha256_and_thumbnail() -> None:
    assert sha256(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    thumb = thumbnail(np.zeros((1000, 500, 3), np.uint8), 100)
    assert thumb.size == (50, 100)


# ---- unreadable and hostile input ----------------------------------------------


def test_empty_file() -> None:
    assert "empty" in _decode_error(b"") and "0 bytes" in _decode_error(b"")


def test_random_bytes() -> None:
    msg = _decode_error(np.random.default_rng(2).bytes(10_000))
    assert "not an image" in msg and "unknown format" in msg


def test_text_file() -> None:
    msg = _decode_error("Привет, this is a shopping list, not a photo.\n".encode() * 200)
    assert "not an image" in msg and "text" in msg


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "pdf"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n", "eps"),
        (b"PK\x03\x04" + b"\x00" * 60, "zip"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>', "svg"),
    ],
)
def test_documents_are_not_photos(data: bytes, what: str) -> None:
    msg = _decode_error(data)
    assert "not an image" in msg and what in msg


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "PCX"])
def test_formats_outside_the_allowlist_are_refused(fmt: str) -> None:
    data = _encode(Image.fromarray(_quadrants()), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow itself would read it
    assert "not an image" in _decode_error(data) or "unsupported" in _decode_error(data)


def test_truncated_jpeg() -> None:
    data = _noise_jpeg()
    msg = _decode_error(data[: len(data) // 2])
    assert "truncated" in msg


def test_truncated_png() -> None:
    data = _noise_png(3)
    assert "truncated" in _decode_error(data[: len(data) // 2])


def test_header_only_jpeg() -> None:
    data = _noise_jpeg()
    sos = data.index(b"\xff\xda")
    assert "truncated" in _decode_error(data[: sos + 12])


def test_corrupt_png_middle_bytes() -> None:
    data = bytearray(_noise_png(4))
    mid = len(data) // 2
    data[mid : mid + 256] = b"\x00" * 256
    msg = _decode_error(bytes(data))
    assert "corrupt" in msg


def test_corrupt_jpeg_header_bytes() -> None:
    data = bytearray(_noise_jpeg())
    data[20:400] = b"\xff" * 380  # quantisation and Huffman tables destroyed
    msg = _decode_error(bytes(data))
    assert "corrupt" in msg and "jpeg" in msg


def test_corrupt_jpeg_scan_data_never_escapes_as_another_exception() -> None:
    # libjpeg repairs damaged entropy-coded data silently (browsers show such
    # photos too): the result is a picture of the right size or an ImageError.
    data = bytearray(_noise_jpeg())
    mid = len(data) // 2
    data[mid : mid + 500] = np.random.default_rng(5).bytes(500)
    try:
        out = decode_image(bytes(data))
    except ImageError:
        return
    assert out.rgb.shape == (240, 320, 3)


def test_decompression_bomb_header() -> None:
    # 100000 × 100000 RGB = 30 GB of pixels from a 100-byte file.
    data = _png_with_header(100_000, 100_000)
    assert len(data) < 200
    msg = _decode_error(data)
    assert "decompression bomb" in msg


def test_decompression_bomb_over_configured_max_pixels() -> None:
    big = Image.new("RGB", (2000, 1500), (0, 0, 0))  # 3 Mpx that compress to a few KB
    data = _encode(big, "PNG", optimize=True)
    assert len(data) < 50_000
    assert decode_image(data).rgb.shape == (1500, 2000, 3)
    msg = _decode_error(data, LimitSettings(max_pixels=1_000_000))
    assert "decompression bomb" in msg and "3,000,000" in msg and "1,000,000" in msg


def test_decompression_bomb_just_over_default_limit() -> None:
    # 9000 × 9000 = 81 Mpx: over the default max_pixels (80 M), under Pillow's own guard.
    msg = _decode_error(_png_with_header(9000, 9000))
    assert "decompression bomb" in msg and "80,000,000" in msg


@pytest.mark.parametrize(("w", "h"), [(1, 50_000), (50_000, 20), (40_000, 40_000)])
def test_absurd_dimensions_side_too_long(w: int, h: int) -> None:
    msg = _decode_error(_png_with_header(w, h))
    assert "absurd dimensions" in msg or "decompression bomb" in msg
    if w * h < 89_000_000:
        assert "absurd dimensions" in msg and "30,000" in msg


@pytest.mark.parametrize(("w", "h"), [(2000, 8), (1, 1), (15, 500)])
def test_absurd_dimensions_too_small(w: int, h: int) -> None:
    data = _encode(Image.new("RGB", (w, h), (128, 128, 128)), "PNG")
    msg = _decode_error(data)
    assert "absurd dimensions" in msg and "too small" in msg


def test_dimension_limits_follow_settings() -> None:
    data = _encode(Image.new("RGB", (400, 300), (128, 128, 128)), "PNG")
    assert "300 px" in _decode_error(data, LimitSettings(max_side=300))
    assert "min side 301" in _decode_error(data, LimitSettings(min_side=301))
    assert decode_image(data, LimitSettings(max_side=400, min_side=300)).rgb.shape == (300, 400, 3)


def test_file_over_max_bytes() -> None:
    data = _noise_jpeg()
    msg = _decode_error(data, LimitSettings(max_file_bytes=len(data) - 1))
    assert "over the limit" in msg


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about broken TIFF tags
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP"])
def test_mutated_files_only_raise_image_error(fmt: str) -> None:
    """A small fuzz: flipped, cut and spliced bytes give a picture or an ImageError only."""
    rng = np.random.default_rng(sum(map(ord, fmt)))
    src = rng.integers(0, 256, (48, 64, 3), np.uint8)
    good = _encode(Image.fromarray(src), fmt)
    outcomes = {"ok": 0, "error": 0}
    for i in range(150):
        data = bytearray(good)
        if i % 3 == 0:
            for pos in rng.integers(0, len(data), 1 + i % 7):
                data[pos] = int(rng.integers(0, 256))
        elif i % 3 == 1:
            data = data[: int(rng.integers(1, len(data)))]
        else:
            a = int(rng.integers(0, len(data)))
            data[a : a + 16] = rng.bytes(16)
        try:
            out = decode_image(bytes(data))
        except ImageError as e:
            assert str(e)
            outcomes["error"] += 1
        else:
            assert out.rgb.dtype == np.uint8 and out.rgb.ndim == 3 and out.rgb.shape[2] == 3
            outcomes["ok"] += 1
    assert outcomes["error"] > 0
