"""Ingest of a folder mixing real photos with unreadable and hostile input.

Every bad item gets a catalog row with status ``error`` and a reason; the good
photos (JPEG, WebP, PNG, EXIF-rotated, inside a zip) are analysed; a second
ingest adds nothing; what was stored before is kept; catalog and index agree.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from workbench.core import Workbench
from workbench.store.models import Face, Photo

pytestmark = pytest.mark.integration

FACE = "images/dev_0001.jpg"  # identity photo
NO_FACE = "images/dev_0036.jpg"  # labels.csv: no_face
IN_ZIP = "images/dev_0004.jpg"
AS_WEBP = "images/dev_0005.jpg"
AS_PNG = "images/dev_0011.jpg"
ROTATED = "images/dev_0017.jpg"  # 740 × 418, stored sideways with EXIF Orientation 6
STORED_BEFORE = "images/dev_0002.jpg"
# A file name that is not UTF-8 (Linux allows any bytes): stored with the byte escaped.
ODD_NAME = "images/dev_0007.jpg"
ODD_NAME_OK = sys.platform.startswith("linux")

# Hostile items: name (relative to the folder, "!" for zip members) -> words the error must contain.
HOSTILE = {
    "bad/truncated.jpg": ["truncated"],
    "bad/corrupt.png": ["corrupt"],
    "bad/empty.jpg": ["empty", "0 bytes"],
    "bad/notes.jpg": ["not an image", "text"],
    "bad/bomb.png": ["decompression bomb"],
    "bad/absurd.png": ["absurd dimensions"],
    "archive.zip!../evil.jpg": ["unsafe path"],
    "archive.zip!bomb.jpg": ["zip bomb"],
}
# Files that cannot even be read (POSIX only): the error says so and names the file.
UNREADABLE = {
    "bad/loop.jpg": ["cannot read", "loop.jpg", "symbolic links"],
    "bad/pipe.jpg": ["cannot read", "pipe.jpg", "not a regular file"],
}
if os.name == "posix":
    HOSTILE.update(UNREADABLE)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _build_folder(root: Path, dev: Path) -> None:
    def put(rel: str, data: bytes) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)

    put("good/face.jpg", (dev / FACE).read_bytes())
    if ODD_NAME_OK:
        (root / "good").mkdir(parents=True, exist_ok=True)
        odd = os.path.join(os.fsencode(root / "good"), b"caf\xe9.jpg")
        with open(odd, "wb") as fh:
            fh.write((dev / ODD_NAME).read_bytes())
    put("good/no_face.jpg", (dev / NO_FACE).read_bytes())
    with Image.open(dev / AS_WEBP) as im:
        put("good/converted/face.webp", _encode(im.convert("RGB"), "WEBP", quality=92))
    with Image.open(dev / AS_PNG) as im:
        put("good/converted/face.png", _encode(im.convert("RGB"), "PNG"))
    with Image.open(dev / ROTATED) as im:
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90° clockwise to display": store it turned the other way
        sideways = im.convert("RGB").transpose(Image.Transpose.ROTATE_90)
        put("good/rotated.jpg", _encode(sideways, "JPEG", quality=92, exif=exif))

    real = (dev / FACE).read_bytes()
    put("bad/truncated.jpg", real[: len(real) // 2])
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), np.uint8)
    corrupt = bytearray(_encode(Image.fromarray(noise), "PNG"))
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 512] = b"\x00" * 512
    put("bad/corrupt.png", bytes(corrupt))
    put("bad/empty.jpg", b"")
    put("bad/notes.jpg", b"Remember: this is not a photo.\n" * 50)
    put(
        "bad/bomb.png",
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + _png_chunk(b"IEND", b""),
    )
    put("bad/absurd.png", _encode(Image.new("RGB", (1, 50_000), (90, 90, 90)), "PNG"))
    put("bad/readme.txt", b"skipped: not an image suffix inside a folder")
    if os.name == "posix":
        (root / "bad/loop.jpg").symlink_to("loop.jpg")
        os.mkfifo(root / "bad/pipe.jpg")

    with zipfile.ZipFile(root / "archive.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("../evil.jpg", (dev / FACE).read_bytes())
        zf.writestr("bomb.jpg", b"\x00" * (50 * 2**20))
        zf.writestr("album/lennon.jpg", (dev / IN_ZIP).read_bytes())


def test_hostile_folder(local_settings: object, faces_dev_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    _build_folder(folder, faces_dev_dir)
    before_dir = tmp_path / "before"
    before_dir.mkdir()
    (before_dir / "kept.jpg").write_bytes((faces_dev_dir / STORED_BEFORE).read_bytes())

    with Workbench(local_settings) as wb:  # type: ignore[arg-type]
        first = wb.ingest([before_dir], progress=False)
        assert first.photos == 1 and first.faces >= 1 and first.errors == 0
        with wb.catalog.session() as s:
            kept_faces = sorted(s.scalars(select(Face.id)))

        report = wb.ingest([folder], progress=False)

        good = {
            "good/face.jpg": "done",
            "good/no_face.jpg": "no_faces",
            "good/converted/face.webp": "done",
            "good/converted/face.png": "done",
            "good/rotated.jpg": "done",
            "archive.zip!album/lennon.jpg": "done",
        }
        if ODD_NAME_OK:
            good["good/caf\\xe9.jpg"] = "done"
        assert report.errors == len(HOSTILE), report.error_details
        assert report.photos == len(good) + len(HOSTILE)
        assert report.no_faces == 1
        assert report.skipped == 0

        root = str(folder.resolve())
        with wb.catalog.session() as s:
            rows = {p.uri: p for p in s.scalars(select(Photo).where(Photo.uri.startswith(root)))}
            by_name = {Path(uri).relative_to(root).as_posix(): p for uri, p in rows.items()}
            assert set(by_name) == set(good) | set(HOSTILE), sorted(by_name)

            for name, words in HOSTILE.items():
                p = by_name[name]
                assert p.status == "error", f"{name}: {p.status}"
                assert p.n_faces == 0 and not p.faces
                assert p.error, f"{name}: no error text"
                for w in words:
                    assert w in p.error.lower(), f"{name}: {p.error!r} lacks {w!r}"
                assert (p.uri, p.error) in report.error_details

            n_faces = 0
            for name, status in good.items():
                p = by_name[name]
                assert p.status == status, f"{name}: {p.status} {p.error}"
                assert p.error is None
                if status == "done":
                    assert p.n_faces >= 1 and len(p.faces) == p.n_faces, name
                else:
                    assert p.n_faces == 0 and not p.faces
                n_faces += p.n_faces
            assert report.faces == n_faces

            assert by_name["good/converted/face.webp"].format == "WEBP"
            assert by_name["good/converted/face.png"].format == "PNG"
            rotated = by_name["good/rotated.jpg"]
            assert (rotated.width, rotated.height) == (740, 418)  # upright, EXIF applied
            assert by_name["archive.zip!album/lennon.jpg"].origin == "zip"

            # Nothing stored before was lost.
            assert sorted(s.scalars(select(Face.id).where(Face.id.in_(kept_faces)))) == kept_faces
            kept_uri = str((before_dir / "kept.jpg").resolve())
            kept = s.scalar(select(Photo).where(Photo.uri == kept_uri))
            assert kept is not None and kept.status == "done" and kept.n_faces == first.faces

        stats = wb.stats()
        assert stats.photos == 1 + len(good) + len(HOSTILE)
        assert stats.faces == first.faces + report.faces
        assert stats.agree

        again = wb.ingest([folder, before_dir], progress=False)
        assert again.counts() == {
            "photos": 0,
            "faces": 0,
            "no_faces": 0,
            "errors": 0,
            "skipped": len(good) + len(HOSTILE) + 1,
        }
        after = wb.stats()
        assert (after.photos, after.faces) == (stats.photos, stats.faces)
        assert after.agree
