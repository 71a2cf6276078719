"""LocalSource: folder walks, explicit files, zip archives read in memory, hostile archives."""

from __future__ import annotations

import io
import os
import struct
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.errors import SourceError
from workbench.settings import LimitSettings, WorkbenchSettings
from workbench.sources import LocalSource, PhotoRef, open_source

pytestmark = pytest.mark.unit


def _jpeg(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _refs(path: Path, limits: LimitSettings | None = None) -> list[PhotoRef]:
    return list(LocalSource(path, None, limits or LimitSettings()).refs())


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name) if name.endswith("/") else name, data)
    return path


def _patch_central(path: Path, member: str, offset: int, fmt: str, value: int) -> None:
    """Overwrite a field of ``member``'s central directory entry (what zipfile trusts)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    pos = data.index(b"PK\x01\x02")
    while True:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + name_len] == name:
            break
        pos = data.index(b"PK\x01\x02", pos + 4)
    struct.pack_into(fmt, data, pos + offset, value)
    path.write_bytes(bytes(data))


def _finishes(fn: Callable[[], object], seconds: float = 10.0) -> BaseException | object:
    """Run ``fn`` in a thread; fail the test if it hangs (a FIFO read would)."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "read() hung"
    return box[0]


# ---- folders and files ---------------------------------------------------------


def test_folder_walk_is_recursive_sorted_and_skips_non_images(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for rel in ["b.jpg", "a.PNG", "sub/z.jpg", "sub/deeper/y.webp", "aa/x.jpeg", "aa/w.tiff"]:
        _write(root / rel, _jpeg())
    for rel in ["notes.txt", "clip.mp4", "sub/raw.json", "noext", "aa/._x.jpeg", "__MACOSX/q.jpg"]:
        _write(root / rel, b"not a photo")
    refs = _refs(root)
    rels = [Path(r.uri).relative_to(root.resolve()).as_posix() for r in refs]
    assert rels == ["a.PNG", "b.jpg", "aa/w.tiff", "aa/x.jpeg", "sub/z.jpg", "sub/deeper/y.webp"]
    assert all(r.source == "local" and r.origin == "local" and r.problem is None for r in refs)
    assert refs[0].size == len(_jpeg())
    assert refs[0].metadata["path"] == refs[0].uri
    assert refs[1].read() == _jpeg()
    assert _refs(root) == refs  # stable order


def test_explicit_file_is_always_tried(tmp_path: Path) -> None:
    text = _write(tmp_path / "notes.txt", b"hello")
    refs = _refs(text)
    assert len(refs) == 1 and refs[0].read() == b"hello" and refs[0].problem is None
    noext = _write(tmp_path / "IMG_0001", _jpeg())
    assert _refs(noext)[0].read() == _jpeg()


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file or folder"):
        _refs(tmp_path / "nope")


def test_open_source_and_names(tmp_path: Path) -> None:
    photo = _write(tmp_path / "p.jpg", _jpeg())
    settings = WorkbenchSettings(home=tmp_path / "wb")
    src = open_source(str(photo), settings)
    assert isinstance(src, LocalSource) and src.name == "local"
    assert open_source(str(photo), settings, name="holiday").name == "holiday"
    assert open_source(str(_zip(tmp_path / "a.zip", {"p.jpg": _jpeg()})), settings).name == "zip"


def test_file_over_size_limit_is_refused_on_read(tmp_path: Path) -> None:
    photo = _write(tmp_path / "big.jpg", _jpeg())
    (ref,) = _refs(photo, LimitSettings(max_file_bytes=100))
    with pytest.raises(SourceError, match="over the limit of 100"):
        ref.read()


def test_file_that_vanished_gives_a_source_error(tmp_path: Path) -> None:
    photo = _write(tmp_path / "gone.jpg", _jpeg())
    (ref,) = _refs(tmp_path)
    photo.unlink()
    with pytest.raises(SourceError, match="gone.jpg.*cannot open"):
        ref.read()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_named_jpg_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    os.mkfifo(tmp_path / "pipe.zip")
    refs = _finishes(lambda: _refs(tmp_path))
    assert isinstance(refs, list) and len(refs) == 2
    assert "not a regular file" in (refs[1].problem or "")
    err = _finishes(refs[0].read)
    assert isinstance(err, SourceError) and "not a regular file" in str(err)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_symlink_to_device_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (ref,) = _refs(tmp_path)
    err = _finishes(ref.read)
    assert isinstance(err, SourceError) and "not a regular file" in str(err)


@pytest.mark.skipif(os.name != "posix", reason="needs symlinks")
def test_symlink_loops_give_source_errors(tmp_path: Path) -> None:
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    (tmp_path / "a.jpg").symlink_to("b.jpg")
    (tmp_path / "b.jpg").symlink_to("a.jpg")
    (tmp_path / "loop.zip").symlink_to("loop.zip")
    _write(tmp_path / "ok.jpg", _jpeg())
    refs = {Path(r.uri).name: r for r in _refs(tmp_path)}
    assert sorted(refs) == ["a.jpg", "b.jpg", "loop.jpg", "loop.zip", "ok.jpg"]
    assert "unreadable zip archive" in (refs["loop.zip"].problem or "")
    for name in ("a.jpg", "b.jpg", "loop.jpg"):
        with pytest.raises(SourceError, match="cannot open"):
            refs[name].read()
    assert refs["ok.jpg"].read() == _jpeg()


def test_unlistable_subfolder_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "ok.jpg", _jpeg())
    _write(tmp_path / "locked" / "hidden.jpg", _jpeg())
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:
        if Path(str(path)).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    refs = _refs(tmp_path)
    assert [Path(r.uri).name for r in refs] == ["ok.jpg", "locked"]
    assert refs[0].problem is None
    assert refs[1].problem == "cannot list folder: Permission denied"
    with pytest.raises(SourceError):
        refs[1].read()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs byte file names")
def test_non_utf8_names_become_storable_text(tmp_path: Path) -> None:
    folder = os.fsencode(tmp_path)
    with open(os.path.join(folder, b"caf\xe9.jpg"), "wb") as fh:
        fh.write(_jpeg(1))
    with zipfile.ZipFile(os.fsdecode(os.path.join(folder, b"alb\xfcm.zip")), "w") as zf:
        zf.writestr("p.jpg", _jpeg(2))
    refs = _refs(tmp_path)
    assert [Path(r.uri).name for r in refs] == ["alb\\xfcm.zip!p.jpg", "caf\\xe9.jpg"]
    for r in refs:
        r.uri.encode("utf-8")  # no lone surrogates: the catalog can store it
        assert all(v.encode("utf-8") for v in r.metadata.values())
    assert [r.read() for r in refs] == [_jpeg(2), _jpeg(1)]
    os.remove(os.path.join(folder, b"caf\xe9.jpg"))
    with pytest.raises(SourceError, match=r"caf\\xe9\.jpg: cannot open") as info:
        refs[1].read()
    str(info.value).encode("utf-8")


# ---- zip archives ------------------------------------------------------------


def test_zip_members_read_in_memory(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path / "in" / "album.ZIP",
        {
            "b/2.jpg": _jpeg(2),
            "a.jpg": _jpeg(1),
            "readme.txt": b"hi",
            "empty/": b"",
            "__MACOSX/._a.jpg": b"\x00\x05\x16\x07",
            "b/._2.jpg": b"\x00\x05\x16\x07",
        },
    )
    before = sorted(p.name for p in tmp_path.rglob("*"))
    refs = _refs(tmp_path / "in")
    assert [r.metadata["member"] for r in refs] == ["a.jpg", "b/2.jpg"]
    assert [r.uri for r in refs] == [f"{archive.resolve()}!a.jpg", f"{archive.resolve()}!b/2.jpg"]
    assert all(r.origin == "zip" and r.problem is None for r in refs)
    assert refs[0].metadata["archive"] == str(archive.resolve())
    assert refs[0].size == len(_jpeg(1))
    assert refs[0].read() == _jpeg(1) and refs[1].read() == _jpeg(2)
    assert refs[0].read() == _jpeg(1)  # again, from the archive kept open
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing extracted


def test_zip_given_directly(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"x.png": _jpeg(3)})
    (ref,) = _refs(archive)
    assert ref.source == "zip" and ref.read() == _jpeg(3)


def test_many_archives_read_after_listing(tmp_path: Path) -> None:
    for i in range(9):
        _zip(tmp_path / f"z{i}.zip", {"p.jpg": _jpeg(i)})
    src = LocalSource(tmp_path, None, LimitSettings())
    refs = list(src.refs())
    assert [r.read() for r in refs] == [_jpeg(i) for i in range(9)]
    assert [r.read() for r in reversed(refs)] == [_jpeg(i) for i in reversed(range(9))]
    src.close()
    assert refs[0].read() == _jpeg(0)


@pytest.mark.parametrize(
    "name",
    ["../evil.jpg", "/abs.jpg", "a/../../evil.jpg", "..\\win.jpg", "C:\\win.jpg", "c:/x.jpg"],
)
def test_zip_path_traversal_is_flagged(tmp_path: Path, name: str) -> None:
    archive = _zip(tmp_path / "t.zip", {name: _jpeg(), "good.jpg": _jpeg(1)})
    refs = {r.metadata["member"]: r for r in _refs(archive)}
    assert refs["good.jpg"].problem is None
    bad = refs[name]
    assert bad.problem is not None and "unsafe path" in bad.problem
    with pytest.raises(SourceError, match="unsafe path"):
        bad.read()
    assert not (tmp_path.parent / "evil.jpg").exists()


def test_zip_bomb_member_is_flagged(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"bomb.jpg": b"\x00" * (50 * 2**20), "ok.jpg": _jpeg()})
    assert archive.stat().st_size < 200_000
    refs = {r.metadata["member"]: r for r in _refs(archive)}
    assert refs["ok.jpg"].problem is None
    problem = refs["bomb.jpg"].problem
    assert problem is not None and "zip bomb" in problem and "compresses" in problem
    with pytest.raises(SourceError, match="zip bomb"):
        refs["bomb.jpg"].read()


def test_zip_member_over_size_limit(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(5000)
    archive = _zip(tmp_path / "big.zip", {"big.jpg": data}, zipfile.ZIP_STORED)
    (ref,) = _refs(archive, LimitSettings(max_zip_member_bytes=1000))
    assert ref.problem is not None and "over the limit of 1,000" in ref.problem
    with pytest.raises(SourceError, match="over the limit"):
        ref.read()
    (ok,) = _refs(archive, LimitSettings(max_zip_member_bytes=5000))
    assert ok.problem is None and ok.read() == data


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_member_whose_declared_size_lies_is_stopped(tmp_path: Path, compression: int) -> None:
    data = np.random.default_rng(1).bytes(5000)
    archive = _zip(tmp_path / "liar.zip", {"liar.jpg": data}, compression)
    _patch_central(archive, "liar.jpg", 24, "<I", 100)  # declares 100 bytes, holds 5000
    (ref,) = _refs(archive, LimitSettings(max_zip_member_bytes=1000))
    assert ref.size == 100 and ref.problem is None
    with pytest.raises(SourceError, match="corrupt zip member"):
        ref.read()


def test_zip_member_declaring_nothing_compressed(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "zero.zip", {"z.jpg": _jpeg()})
    _patch_central(archive, "z.jpg", 20, "<I", 0)  # compressed size 0, file size kept
    (ref,) = _refs(archive)
    assert ref.problem is not None and "zip bomb" in ref.problem


def test_corrupt_zip_archive(tmp_path: Path) -> None:
    bad = _write(tmp_path / "junk.zip", b"PK" + np.random.default_rng(2).bytes(3000))
    (ref,) = _refs(bad)
    assert ref.uri == str(bad.resolve()) and ref.origin == "zip"
    assert ref.problem is not None and "unreadable zip archive" in ref.problem
    with pytest.raises(SourceError):
        ref.read()


def test_truncated_zip_archive(tmp_path: Path) -> None:
    good = _zip(tmp_path / "full.zip", {f"{i}.jpg": _jpeg(i) for i in range(4)})
    cut = _write(tmp_path / "cut" / "cut.zip", good.read_bytes()[: good.stat().st_size // 2])
    (ref,) = _refs(cut)
    assert ref.problem is not None and "unreadable zip archive" in ref.problem


def test_corrupt_zip_member_data_gives_a_source_error(tmp_path: Path) -> None:
    payload = np.random.default_rng(3).integers(0, 4, 50_000, np.uint8).tobytes()
    archive = _zip(tmp_path / "c.zip", {"c.jpg": payload})
    data = bytearray(archive.read_bytes())
    start = 30 + len("c.jpg")
    data[start + 200 : start + 260] = b"\xff" * 60  # inside the deflate stream
    archive.write_bytes(bytes(data))
    (ref,) = _refs(archive)
    assert ref.problem is None
    with pytest.raises(SourceError, match="corrupt zip member"):
        ref.read()


def test_encrypted_member_is_flagged(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "e.zip", {"secret.jpg": _jpeg(), "open.jpg": _jpeg(1)})
    _patch_central(archive, "secret.jpg", 8, "<H", 0x1)  # general purpose flag: encrypted
    refs = {r.metadata["member"]: r for r in _refs(archive)}
    assert refs["open.jpg"].problem is None and refs["open.jpg"].read() == _jpeg(1)
    problem = refs["secret.jpg"].problem
    assert problem is not None and "encrypted" in problem


@pytest.mark.parametrize(
    ("compression", "word"), [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")]
)
def test_unbounded_compression_methods_are_refused(
    tmp_path: Path, compression: int, word: str
) -> None:
    archive = _zip(tmp_path / "m.zip", {"m.jpg": _jpeg()}, compression)
    (ref,) = _refs(archive)
    assert ref.problem is not None and word in ref.problem


def test_overlapping_members_refuse_the_archive(tmp_path: Path) -> None:
    """Two directory entries pointing at one compressed kernel (a non-recursive zip bomb)."""
    archive = _zip(tmp_path / "o.zip", {"a.jpg": b"\x00" * 10_000})
    data = archive.read_bytes()
    cd = data.index(b"PK\x01\x02")
    eocd = data.index(b"PK\x05\x06")
    entry = data[cd:eocd]
    twin = bytearray(entry)
    twin[46:51] = b"b.jpg"
    entries = entry + bytes(twin)
    count, cd_size, cd_offset = 2, len(entries), cd
    tail = bytearray(data[eocd:])
    struct.pack_into("<HHII", tail, 8, count, count, cd_size, cd_offset)
    archive.write_bytes(data[:cd] + entries + bytes(tail))
    with zipfile.ZipFile(archive) as zf:
        assert [i.header_offset for i in zf.infolist()] == [0, 0]
    (ref,) = _refs(archive, LimitSettings(max_zip_ratio=1e9))
    assert ref.uri == str(archive.resolve())
    assert ref.problem is not None and "overlap" in ref.problem and "zip bomb" in ref.problem


def test_too_many_members_refuse_the_archive(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "many.zip", {f"{i}.jpg": b"x" for i in range(20)})
    (ref,) = _refs(archive, LimitSettings(max_zip_members=10))
    assert ref.problem is not None and "20 members" in ref.problem
    assert len(_refs(archive)) == 20
