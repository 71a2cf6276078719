"""One `workbench ingest DIR --json` over a folder of well over 100 hostile and odd cases.

The folder mixes real photos in every format and orientation Pillow reads with what a
probe throws at an ingest: broken and non-image files, bombs, special files, symlink
loops, file names with newlines, escapes and undecodable bytes, and zip archives that
slip, bomb, encrypt, nest, repeat names or hold too many members. One real CLI run
must end with exit 0 and one JSON report, no traceback and no raw control byte on
stderr; every bad case is an error row naming the file and the cause, every good
photo is ingested, and the folder itself is left as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import DevPhoto, cli_env, run_cli

pytestmark = pytest.mark.integration

LINUX = sys.platform.startswith("linux")
MAX_MEMBERS = 5000
"""The run's member limit, so a 10,000-member archive is refused whole."""


@dataclass
class Case:
    """One thing in the folder: its uri (relative; "!" inside archives) and what must
    become of it: ``good`` (ingested: done or no faces) or the words its error holds
    (any one of a tuple of alternatives)."""

    uri: str
    words: tuple[str | tuple[str, ...], ...] = ()
    has_face: bool = False

    @property
    def good(self) -> bool:
        return not self.words


@dataclass
class Folder:
    root: Path
    cases: list[Case] = field(default_factory=list)
    dev: list[Path] = field(default_factory=list)
    _next: int = 0

    def photo(self) -> Image.Image:
        """The next dev identity photo (each good case gets other bytes)."""
        path = self.dev[self._next % len(self.dev)]
        self._next += 1
        with Image.open(path) as im:
            return im.convert("RGB")

    def frames(self) -> tuple[Image.Image, Image.Image]:
        """Two photos of one size (the frames of an animation; the first is shown)."""
        a, b = self.photo(), self.photo()
        return a, b.resize(a.size)

    def put(self, rel: str | bytes, data: bytes) -> Path:
        path = Path(os.fsdecode(os.path.join(os.fsencode(self.root), os.fsencode(rel))))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def good(self, rel: str, data: bytes, has_face: bool = True) -> None:
        self.put(rel, data)
        self.cases.append(Case(rel, has_face=has_face))

    def bad(self, rel: str, data: bytes, *words: str | tuple[str, ...]) -> None:
        self.put(rel, data)
        self.cases.append(Case(rel, words))


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


# EXIF orientation -> what turns the upright photo into the stored one (the inverse of
# what a viewer applies to show it upright).
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _with_orientation(img: Image.Image, orientation: int, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = img.transpose(STORED_AS[orientation]) if orientation in STORED_AS else img
    return _encode(stored, fmt, exif=exif)


def _good_photos(f: Folder) -> None:
    f.good("good/plain.jpg", _encode(f.photo(), "JPEG", quality=90))
    f.good("good/progressive.jpg", _encode(f.photo(), "JPEG", quality=85, progressive=True))
    f.good("good/grey.jpg", _encode(f.photo().convert("L"), "JPEG"))
    f.good("good/cmyk.jpg", _encode(f.photo().convert("CMYK"), "JPEG"))
    f.good("good/photo.png", _encode(f.photo(), "PNG"))
    f.good("good/palette.png", _encode(f.photo().quantize(256), "PNG"))
    rgba = f.photo().convert("RGBA")
    rgba.putalpha(255)
    f.good("good/alpha.png", _encode(rgba, "PNG"))
    f.good("good/grey-alpha.png", _encode(f.photo().convert("LA"), "PNG"))
    sixteen = np.asarray(f.photo().convert("L"), dtype=np.uint16) * 257
    f.good("good/16bit.png", _encode(Image.fromarray(sixteen).convert("I;16"), "PNG"))
    f.good("good/lossy.webp", _encode(f.photo(), "WEBP", quality=90))
    f.good("good/lossless.webp", _encode(f.photo(), "WEBP", lossless=True))
    f.good("good/photo.bmp", _encode(f.photo(), "BMP"))
    f.good("good/photo.tif", _encode(f.photo(), "TIFF", compression="tiff_lzw"))
    f.good("good/palette.gif", _encode(f.photo().quantize(256), "GIF"))
    f.good("good/photo.avif", _encode(f.photo(), "AVIF", quality=80))
    a, b = f.frames()
    f.good("good/two-frames.mpo", _encode(a, "MPO", save_all=True, append_images=[b]))
    a, b = f.frames()
    f.good(
        "good/animated.gif",
        _encode(a.quantize(256), "GIF", save_all=True, append_images=[b.quantize(256)]),
    )
    a, b = f.frames()
    f.good("good/animated.webp", _encode(a, "WEBP", save_all=True, append_images=[b]))
    for o in range(1, 9):
        f.good(f"good/exif/orientation-{o}.jpg", _with_orientation(f.photo(), o, "JPEG"))
        f.good(f"good/exif/orientation-{o}.png", _with_orientation(f.photo(), o, "PNG"))
        f.good(f"good/exif/orientation-{o}.webp", _with_orientation(f.photo(), o, "WEBP"))
    broken_exif = _encode(f.photo(), "JPEG", exif=b"Exif\x00\x00" + b"\xde\xad" * 40)
    f.good("good/broken-exif.jpg", broken_exif)
    big = f.photo()
    scale = 6000 / max(big.size)
    big = big.resize((round(big.width * scale), round(big.height * scale)))
    f.good("good/very-large.jpg", _encode(big, "JPEG", quality=85))
    f.good("good/folder.jpg/inside.jpg", _encode(f.photo(), "JPEG"))
    f.good("good/no-face.png", _encode(Image.new("RGB", (320, 240), (90, 130, 200)), "PNG"), False)


def _odd_names(f: Folder) -> None:
    f.good("names/new\nline.jpg", _encode(f.photo(), "JPEG"))
    f.good("names/\x1b[2J\x1b[31mred.jpg", _encode(f.photo(), "JPEG"))
    f.good("names/\u202egnp.jpg", _encode(f.photo(), "JPEG"))
    f.good("names/tab\tand\rreturn.jpg", _encode(f.photo(), "JPEG"))
    f.good("names/" + "long" * 60 + ".jpg", _encode(f.photo(), "JPEG"))
    f.good("names/émoji-😀-中文.jpg", _encode(f.photo(), "JPEG"))
    if LINUX:
        f.put(b"names/caf\xe9.jpg", _encode(f.photo(), "JPEG"))
        f.cases.append(Case("names/caf\\xe9.jpg", has_face=True))


def _bad_files(f: Folder) -> None:
    rng = np.random.default_rng(7)
    real = _encode(f.photo(), "JPEG", quality=90)
    png = _encode(f.photo(), "PNG")
    webp = _encode(f.photo(), "WEBP")
    f.bad("bad/empty.jpg", b"", "empty", "0 bytes")
    for i, n in enumerate((7, 100, 10_000, 1_000_000)):
        f.bad(f"bad/random-{i}.jpg", rng.integers(0, 256, n, np.uint8).tobytes(), "not an image")
    for frac in (0.05, 0.3, 0.6, 0.9):
        f.bad(f"bad/cut-{frac}.jpg", real[: int(len(real) * frac)], ("truncated", "corrupt"))
        f.bad(f"bad/cut-{frac}.png", png[: int(len(png) * frac)], ("truncated", "corrupt"))
        f.bad(f"bad/cut-{frac}.webp", webp[: int(len(webp) * frac)], ("truncated", "corrupt"))
    garbled = bytearray(png)
    garbled[len(garbled) // 2 : len(garbled) // 2 + 256] = b"\x00" * 256
    f.bad("bad/garbled.png", bytes(garbled), "corrupt")
    f.bad(
        "bad/page.jpg",
        b"<!DOCTYPE html><html><body>not a photo</body></html>\n" * 20,
        "not an image",
        "text",
    )
    f.bad("bad/notes.png", "Заметки: this is text\n".encode() * 40, "not an image", "text")
    f.bad("bad/doc.jpg", b"%PDF-1.7\n" + b"0" * 2000, "not an image", "pdf")
    f.bad(
        "bad/drawing.png",
        b'<svg xmlns="http://www.w3.org/2000/svg"></svg>' * 30,
        "not an image",
        "svg",
    )
    f.bad("bad/archive.jpg", _zip([("a.txt", b"hello")]), "not an image", "zip")
    f.bad("bad/iphone.jpg", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 500, "heic")
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + _png_chunk(b"IEND", b"")
    )
    f.bad("bad/bomb.png", bomb, "decompression bomb")
    f.bad(
        "bad/absurd.png",
        _encode(Image.new("RGB", (1, 50_000), (90, 90, 90)), "PNG"),
        "absurd dimensions",
    )
    f.bad("bad/tiny.png", _encode(Image.new("RGB", (8, 8)), "PNG"), "too small")
    small = _encode(Image.new("RGB", (64, 64)), "PNG")
    text = _png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"y" * (10 * 2**20)))
    f.bad("bad/big-text.png", small[:33] + text + small[33:], "text chunk", "too large")


def _special_files(f: Folder) -> None:
    if os.name != "posix":
        return
    bad = f.root / "special"
    bad.mkdir(parents=True)
    (bad / "loop.jpg").symlink_to("loop.jpg")
    f.cases.append(Case("special/loop.jpg", ("cannot read", "symbolic links")))
    (bad / "a.jpg").symlink_to("b.jpg")
    (bad / "b.jpg").symlink_to("a.jpg")
    f.cases += [
        Case("special/a.jpg", ("symbolic links",)),
        Case("special/b.jpg", ("symbolic links",)),
    ]
    (bad / "dangling.jpg").symlink_to(f.root / "nowhere" / "gone.jpg")
    f.cases.append(Case("special/dangling.jpg", ("dangling.jpg", "does not exist")))
    os.mkfifo(bad / "pipe.jpg")
    f.cases.append(Case("special/pipe.jpg", ("not a regular file",)))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(bad / "socket.jpg"))
    f.cases.append(Case("special/socket.jpg", ("not a regular file",)))
    if Path("/dev/zero").exists():
        (bad / "zero.jpg").symlink_to("/dev/zero")
        f.cases.append(Case("special/zero.jpg", ("not a regular file",)))
    if Path("/proc/self/environ").exists():
        (bad / "environ.jpg").symlink_to("/proc/self/environ")
        f.cases.append(Case("special/environ.jpg", ("not a regular file",)))


def _patch_central(data: bytes, member: str, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite a field of ``member``'s central directory entry (what zipfile trusts)."""
    out = bytearray(data)
    name = member.encode()
    pos = out.index(b"PK\x01\x02")
    while out[pos + 46 : pos + 46 + struct.unpack_from("<H", out, pos + 28)[0]] != name:
        pos = out.index(b"PK\x01\x02", pos + 4)
    struct.pack_into(fmt, out, pos + offset, value)
    return bytes(out)


def _archives(f: Folder) -> None:
    jpeg: Callable[[], bytes] = lambda: _encode(f.photo(), "JPEG")  # noqa: E731
    f.put("zips/good.zip", _zip([
        ("a.jpg", jpeg()), ("sub/b.png", _encode(f.photo(), "PNG")), ("notes.txt", b"skipped"),
        ("__MACOSX/._a.jpg", b"junk"), ("new\nline.jpg", jpeg()),
    ]))  # fmt: skip
    f.cases += [
        Case("zips/good.zip!a.jpg", has_face=True),
        Case("zips/good.zip!sub/b.png", has_face=True),
        Case("zips/good.zip!new\nline.jpg", has_face=True),
    ]
    f.put(
        "zips/slip.zip",
        _zip([("../evil.jpg", jpeg()), ("/etc/abs.jpg", jpeg()), ("C:/win.jpg", jpeg())]),
    )
    f.cases += [
        Case("zips/slip.zip!../evil.jpg", ("unsafe path",)),
        Case("zips/slip.zip!/etc/abs.jpg", ("unsafe path",)),
        Case("zips/slip.zip!C:/win.jpg", ("unsafe path",)),
    ]
    f.put("zips/bomb.zip", _zip([("bomb.jpg", b"\x00" * (50 * 2**20))]))
    f.cases.append(Case("zips/bomb.zip!bomb.jpg", ("zip bomb",)))
    plain = _zip([("locked.jpg", jpeg())])
    f.put("zips/encrypted.zip", _patch_central(plain, "locked.jpg", 8, "<H", 0x1))
    f.cases.append(Case("zips/encrypted.zip!locked.jpg", ("encrypted",)))
    f.put("zips/bzip2.zip", _zip([("squeezed.jpg", jpeg())], zipfile.ZIP_BZIP2))
    f.cases.append(Case("zips/bzip2.zip!squeezed.jpg", ("bzip2",)))
    data = bytearray(_zip([("broken.jpg", jpeg())], zipfile.ZIP_STORED))
    start = data.index(b"\xff\xd8\xff")
    data[start + 100 : start + 400] = b"\x13" * 300  # stored bytes that fail the CRC
    f.put("zips/corrupt-member.zip", bytes(data))
    f.cases.append(Case("zips/corrupt-member.zip!broken.jpg", ("corrupt",)))
    whole = _zip([("x.jpg", jpeg())])
    f.bad("zips/truncated.zip", whole[: len(whole) // 2], "unreadable zip archive")
    f.bad("zips/not-a-zip.zip", b"just text, no archive\n" * 20, "unreadable zip archive")
    inner = _zip([("c.jpg", jpeg())])
    f.put("zips/nested.zip", _zip([("inner.zip", inner), ("top.jpg", jpeg())]))
    f.cases += [
        Case("zips/nested.zip!inner.zip!c.jpg", has_face=True),
        Case("zips/nested.zip!top.jpg", has_face=True),
    ]
    deep = _zip([("l2.zip", _zip([("l3.zip", _zip([("d.jpg", jpeg())]))]))])
    f.put("zips/deep.zip", deep)
    f.cases.append(Case("zips/deep.zip!l2.zip!l3.zip", ("nested 3 archives deep",)))
    with pytest.warns(UserWarning, match="Duplicate name"):
        dup = _zip([("dup.jpg", jpeg()), ("dup.jpg", jpeg())])
    f.put("zips/duplicates.zip", dup)
    f.cases += [
        Case("zips/duplicates.zip!dup.jpg", has_face=True),
        Case("zips/duplicates.zip!dup.jpg#2", has_face=True),
    ]
    tiny = _encode(Image.new("RGB", (4, 4)), "PNG")
    many = _zip([(f"m/{i:05d}.png", tiny) for i in range(10_000)], zipfile.ZIP_STORED)
    f.bad("zips/many.zip", many, "10,000 members", "over the limit")
    a, b = jpeg(), jpeg()
    both = bytearray(_zip([("first.jpg", a), ("second.jpg", b)], zipfile.ZIP_STORED))
    overlap = _patch_central(bytes(both), "second.jpg", 42, "<I", 0)  # points into first.jpg
    f.bad("zips/overlap.zip", overlap, "overlap")


def build(root: Path, dev_photos: list[DevPhoto]) -> Folder:
    # Distinct pictures only: the dev set's recorded copy would be a duplicate here too.
    distinct = [p.path for p in dev_photos if p.category == "identity" and p.copy_of is None]
    f = Folder(root, dev=distinct)
    _good_photos(f)
    _odd_names(f)
    _bad_files(f)
    _special_files(f)
    _archives(f)
    return f


def _tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` and what it is (a file's content hash)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            kind = (
                f"file {hashlib.sha256(Path(os.fsdecode(path)).read_bytes()).hexdigest()}"
                if os.path.isfile(path) and not os.path.islink(path)
                else f"link {os.readlink(path)!r}"
                if os.path.islink(path)
                else f"mode {st.st_mode:o}"
            )
            out[os.fsdecode(os.path.relpath(path, os.fsencode(root)))] = kind
    return out


def test_one_ingest_of_over_a_hundred_hostile_cases(
    tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto]
) -> None:
    import sqlite3

    folder = build(tmp_path / "incoming", dev_photos)
    assert len(folder.cases) >= 100, len(folder.cases)
    before = _tree(folder.root)
    home = tmp_path / "home"
    env = cli_env(home, models_dir)
    env["WORKBENCH_LIMITS__MAX_ZIP_MEMBERS"] = str(MAX_MEMBERS)

    proc = run_cli(["ingest", str(folder.root), "--json", "--no-progress"], env)

    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert set(report) == {"photos", "faces", "no_faces", "errors", "skipped"}
    assert "Traceback" not in proc.stderr
    raw = {c for c in proc.stderr if (ord(c) < 32 and c not in "\n") or 0x7F <= ord(c) < 0xA0}
    assert not raw, f"raw control characters on stderr: {sorted(map(hex, map(ord, raw)))}"
    assert "\u202e" not in proc.stderr

    root = str(folder.root.resolve())
    with sqlite3.connect(home / "catalog.sqlite") as db:
        rows = {
            uri.removeprefix(root + "/"): (status, error or "", n_faces)
            for uri, status, error, n_faces in db.execute(
                "SELECT uri, status, error, n_faces FROM photos"
            )
        }
    wanted = {c.uri for c in folder.cases}
    assert set(rows) == wanted, (sorted(set(rows) - wanted), sorted(wanted - set(rows)))
    problems = []
    for case in folder.cases:
        status, error, n_faces = rows[case.uri]
        if case.good:
            if status not in ("done", "no_faces"):
                problems.append(f"{case.uri!r}: {status} {error}")
            elif case.has_face and n_faces < 1:
                problems.append(f"{case.uri!r}: no face found")
            continue
        if status != "error":
            problems.append(f"{case.uri!r}: {status}, expected an error")
            continue
        for w in case.words:
            alternatives = (w,) if isinstance(w, str) else w
            if not any(a.lower() in error.lower() for a in alternatives):
                problems.append(f"{case.uri!r}: {error!r} lacks {w!r}")
    assert not problems, "\n".join(problems)
    bad = [c for c in folder.cases if not c.good]
    assert report["errors"] == len(bad) and report["photos"] == len(folder.cases)
    assert report["skipped"] == 0
    # Every error line names its file, escaped.
    from workbench.redaction import printable

    shown = proc.stderr
    assert all(printable(c.uri.split("!")[0].split("/")[-1]) in shown for c in bad[:20])
    # The folder was read, never changed; the home holds the workbench only.
    assert _tree(folder.root) == before
    assert {p.name for p in home.iterdir()} <= {
        "catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm", "vectors.db",
        "vectors.db.server", "thumbnails", "cache",
    }  # fmt: skip

    # Run again: every case is known (the refused ones too, /proc and /dev behind links
    # included): nothing is recorded twice, nothing is read again.
    again = run_cli(["ingest", str(folder.root), "--json", "--no-progress"], env)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(again.stdout)
    with sqlite3.connect(home / "catalog.sqlite") as db:
        (n_rows,) = db.execute("SELECT COUNT(*) FROM photos").fetchone()
    assert n_rows == len(rows)
    assert second["skipped"] == len(folder.cases), second
    assert second["photos"] == second["errors"] == 0, second
