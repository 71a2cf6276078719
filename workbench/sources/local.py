"""Local files, folders (recursive) and zip archives, read without extracting."""

from __future__ import annotations

import os
import stat
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path, PurePosixPath
from typing import Any

from workbench.errors import SourceError
from workbench.settings import LimitSettings, WorkbenchSettings
from workbench.sources.base import PhotoRef, not_read

IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".avif",
        ".heic",
        ".heif",
    }
)
ARCHIVE_SUFFIXES = frozenset({".zip"})

# Compression methods read from archives. bzip2 and LZMA members are refused:
# zipfile decompresses each of their chunks without an output bound, so a
# member whose declared size lies could expand to gigabytes in one call.
_SAFE_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_COMPRESSION_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 9: "deflate64"}

# Fixed part of a zip local file header (before name and extra field).
_LOCAL_HEADER_SIZE = 30

# Archives kept open between reads of their members (members are read in
# archive order, so a few suffice; each costs one file descriptor).
_OPEN_ARCHIVES = 4


def _is_junk(name: str) -> bool:
    """macOS metadata that rides along in folders and zips: AppleDouble `._x.jpg`, `__MACOSX/`."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return "__MACOSX" in parts or (bool(parts) and parts[-1].startswith("._"))


def _text(path: Path | str) -> str:
    """``path`` as storable text: a name that is not valid UTF-8 (Python keeps its
    bytes as lone surrogates, which the catalog cannot store) shows them escaped
    (``bad\\xff.jpg``); the file itself is still read by its real name."""
    s = str(path)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(s).decode("utf-8", "backslashreplace")
    return s


def _resolve(path: Path) -> Path:
    """The absolute, symlink-free path; a symlink loop keeps its own name (reading it fails)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: "Symlink loop" before Python 3.13
        path = Path(os.path.abspath(path))
        return path if path.parent == path else _resolve(path.parent) / path.name


def _read_file(path: Path, limit: int) -> bytes:
    """Read a regular file of at most ``limit`` bytes.

    Opened non-blocking and checked with fstat, so a FIFO, a device
    (``x.jpg -> /dev/zero``) or a file that grows after listing cannot hang or
    exhaust memory.
    """
    name = _text(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise SourceError(f"{name}: cannot open ({e.strerror or e})") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(f"{name}: not a regular file (a device, pipe or socket)")
        if st.st_size > limit:
            raise SourceError(f"{name}: file is {st.st_size:,} bytes, over the limit of {limit:,}")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise SourceError(f"{name}: file grew past the limit of {limit:,} bytes while read")
        return b"".join(chunks)
    except OSError as e:
        raise SourceError(f"{name}: cannot read ({e.strerror or e})") from e
    finally:
        os.close(fd)


class LocalSource:
    """Files, folders and zip archives on this machine.

    Folders are walked recursively in sorted order (symlinked folders are not
    followed); inside folders only files with image or zip suffixes are taken,
    and macOS metadata files (``._x.jpg``, ``__MACOSX/``) are skipped. A file
    named explicitly is always tried, whatever its suffix, so a mislabelled
    photo still gets a verdict.

    Zip members are read in memory, never extracted. A member with an unsafe
    path, encryption, an unsupported compression method or a size or
    compression ratio over ``limits`` gets a ``problem`` instead of being read;
    an archive whose members overlap (a zip-bomb construction) or that has too
    many members is refused whole.
    """

    def __init__(self, path: str | os.PathLike[str], name: str | None, limits: LimitSettings):
        self.path = Path(path).expanduser()
        self.name = name or ("zip" if self.path.suffix.lower() in ARCHIVE_SUFFIXES else "local")
        self.limits = limits
        self._zips: OrderedDict[Path, zipfile.ZipFile] = OrderedDict()
        self._zip_lock = threading.Lock()

    def refs(self) -> Iterator[PhotoRef]:
        if not self.path.exists():
            raise SourceError(f"{_text(self.path)}: no such file or folder")
        if self.path.is_dir():
            yield from self._walk(self.path)
        elif self.path.suffix.lower() in ARCHIVE_SUFFIXES:
            yield from self._archive(self.path)
        else:
            yield self._file(self.path)

    def reopen(self, origin: str, uri: str, meta: dict[str, Any]) -> PhotoRef:
        """The reference of a photo registered earlier (``origin`` ``local`` or ``zip``)."""
        if origin == "zip":
            archive, member = Path(meta.get("archive", "")), meta.get("member")
            if not member:
                archive_text, _, member = uri.rpartition("!")
                archive = Path(archive_text)
            try:
                with self._zip_lock:
                    info = self._zip(archive).getinfo(member)
            except KeyError:
                return self._gone(origin, uri, f"no member {member!r} in {_text(archive)} any more")
            except (OSError, zipfile.BadZipFile) as e:
                why = e.strerror if isinstance(e, OSError) and e.strerror else e
                return self._gone(origin, uri, f"cannot open archive {_text(archive)} ({why})")
            return self._member(archive, info)
        return self._file(Path(meta.get("path") or uri))

    def _gone(self, origin: str, uri: str, problem: str) -> PhotoRef:
        return PhotoRef(self.name, origin, uri, read=not_read, problem=problem)

    def close(self) -> None:
        """Close the archives kept open for reading (reads reopen them)."""
        with self._zip_lock:
            while self._zips:
                self._zips.popitem()[1].close()

    # ---- folders -------------------------------------------------------------
    def _walk(self, top: Path) -> Iterator[PhotoRef]:
        errors: list[OSError] = []
        for root, dirs, files in os.walk(top, onerror=errors.append):
            yield from self._listing_problems(errors)
            dirs[:] = sorted(d for d in dirs if d != "__MACOSX")
            for fname in sorted(files):
                if fname.startswith("._"):
                    continue
                p = Path(root) / fname
                suffix = p.suffix.lower()
                if suffix in ARCHIVE_SUFFIXES:
                    yield from self._archive(p)
                elif suffix in IMAGE_SUFFIXES:
                    yield self._file(p)
        yield from self._listing_problems(errors)

    def _listing_problems(self, errors: list[OSError]) -> Iterator[PhotoRef]:
        while errors:
            e = errors.pop(0)
            where = _text(_resolve(Path(e.filename)) if e.filename else self.path)
            yield PhotoRef(
                self.name,
                "local",
                where,
                read=not_read,
                metadata={"path": where},
                problem=f"cannot list folder: {e.strerror or e}",
            )

    def _file(self, p: Path) -> PhotoRef:
        resolved = _resolve(p)
        limit = self.limits.max_file_bytes
        try:
            size: int | None = resolved.stat().st_size
        except OSError:
            size = None
        return PhotoRef(
            source=self.name,
            origin="local",
            uri=_text(resolved),
            read=lambda: _read_file(resolved, limit),
            size=size,
            metadata={"path": _text(resolved)},
        )

    # ---- zip archives --------------------------------------------------------
    def _zip(self, archive: Path) -> zipfile.ZipFile:
        """The open archive (call with ``_zip_lock`` held); opening parses the whole directory."""
        zf = self._zips.get(archive)
        if zf is not None:
            self._zips.move_to_end(archive)
            return zf
        zf = zipfile.ZipFile(archive)
        self._zips[archive] = zf
        while len(self._zips) > _OPEN_ARCHIVES:
            self._zips.popitem(last=False)[1].close()
        return zf

    def _archive(self, archive: Path) -> Iterator[PhotoRef]:
        archive = _resolve(archive)

        def refused(problem: str) -> PhotoRef:
            return PhotoRef(
                self.name,
                "zip",
                _text(archive),
                read=not_read,
                metadata={"archive": _text(archive)},
                problem=problem,
            )

        try:
            if not stat.S_ISREG(os.stat(archive).st_mode):  # a FIFO would block the open
                yield refused("unreadable zip archive: not a regular file (a device or pipe)")
                return
            with self._zip_lock:
                infos = [i for i in self._zip(archive).infolist() if not i.is_dir()]
        except zipfile.BadZipFile as e:
            yield refused(f"unreadable zip archive: {e}")
            return
        except OSError as e:
            yield refused(f"unreadable zip archive: {e.strerror or e}")
            return
        except Exception as e:  # noqa: BLE001 - a hostile directory must fail this archive only
            yield refused(f"unreadable zip archive: corrupt directory ({type(e).__name__}: {e})")
            return
        if len(infos) > self.limits.max_zip_members:
            yield refused(
                f"zip archive has {len(infos):,} members, over the limit of "
                f"{self.limits.max_zip_members:,}"
            )
            return
        overlap = _overlapping(infos)
        if overlap is not None:
            yield refused(
                f"zip archive members {overlap[0]!r} and {overlap[1]!r} overlap each other "
                "(a zip bomb construction)"
            )
            return
        for info in sorted(infos, key=lambda i: i.filename):
            if _is_junk(info.filename):
                continue
            if PurePosixPath(info.filename).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            yield self._member(archive, info)

    def _member(self, archive: Path, info: zipfile.ZipInfo) -> PhotoRef:
        uri = f"{_text(archive)}!{info.filename}"
        problem = _member_problem(info, self.limits)
        limit = self.limits.max_zip_member_bytes

        def read() -> bytes:
            if problem is not None:
                raise SourceError(f"{uri}: {problem}")
            try:
                # zipfile stops at the declared size (then checks the CRC);
                # reading at most limit + 1 bytes bounds memory regardless.
                with self._zip_lock, self._zip(archive).open(info) as fh:
                    data = fh.read(limit + 1)
            except zipfile.BadZipFile as e:
                raise SourceError(f"{uri}: corrupt zip member ({e})") from e
            except OSError as e:
                raise SourceError(f"{uri}: cannot read zip member ({e.strerror or e})") from e
            except Exception as e:  # noqa: BLE001 - zlib.error, EOFError, RuntimeError, ...
                raise SourceError(f"{uri}: corrupt zip member ({type(e).__name__}: {e})") from e
            if len(data) > limit:
                raise SourceError(
                    f"{uri}: expands past {limit:,} bytes although it declares "
                    f"{info.file_size:,} (zip bomb)"
                )
            return data

        return PhotoRef(
            source=self.name,
            origin="zip",
            uri=uri,
            read=read,
            size=info.file_size,
            metadata={"archive": _text(archive), "member": info.filename},
            problem=problem,
        )


def _member_problem(info: zipfile.ZipInfo, limits: LimitSettings) -> str | None:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        return f"unsafe path in zip archive ({info.filename!r} points outside the archive)"
    if info.flag_bits & 0x1:
        return "encrypted zip member (password-protected archives are not supported)"
    if info.compress_type not in _SAFE_COMPRESSION:
        method = _COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
        return (
            f"zip member uses {method} compression; only stored and deflated members are read "
            "(re-create the archive with ordinary zip compression)"
        )
    if info.file_size > limits.max_zip_member_bytes:
        return (
            f"zip member expands to {info.file_size:,} bytes, over the limit of "
            f"{limits.max_zip_member_bytes:,} (zip bomb?)"
        )
    if info.file_size and not info.compress_size:
        return f"corrupt zip member: declares {info.file_size:,} bytes stored in 0 (zip bomb?)"
    if info.compress_size and info.file_size / info.compress_size > limits.max_zip_ratio:
        return (
            f"zip member compresses {info.file_size / info.compress_size:,.0f}:1, over the "
            f"limit of {limits.max_zip_ratio:,.0f}:1 (zip bomb?)"
        )
    return None


def _overlapping(infos: list[zipfile.ZipInfo]) -> tuple[str, str] | None:
    """Two members whose data overlap (a non-recursive zip bomb reuses one
    compressed kernel for many entries), or None."""
    by_offset = sorted(infos, key=lambda i: i.header_offset)
    for a, b in pairwise(by_offset):
        if b.header_offset < a.header_offset + _LOCAL_HEADER_SIZE + a.compress_size:
            return a.filename, b.filename
    return None


def local_source(spec: str, name: str | None, settings: WorkbenchSettings) -> LocalSource:
    return LocalSource(spec, name, settings.limits)
