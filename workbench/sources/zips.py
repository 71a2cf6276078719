"""Zip archives of a local source, read in memory, never extracted: their photos, a zip
inside a zip among them, each member under the same limits.

A member is named by its archive's path and the member names that lead to it:
``album.zip!2023/a.jpg``, ``album.zip!older.zip!b.jpg`` (a zip inside a zip: at most
`MAX_DEPTH` archives deep). When two members of one archive carry the same name
(zip allows it), the later ones are ``name#2``, ``name#3``: each its own photo.

A member with an unsafe path, encryption, an unsupported compression method or a
size or compression ratio over the limits gets a ``problem`` instead of being read;
an archive whose members overlap (a zip-bomb construction) or that has too many
members is refused whole, and so is an archive nested deeper than `MAX_DEPTH`.
"""

from __future__ import annotations

import io
import os
import stat
import threading
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path, PurePosixPath
from typing import IO, Any

from workbench.errors import SourceError
from workbench.settings import LimitSettings
from workbench.sources.base import IMAGE_SUFFIXES, PhotoRef, not_read, storable_text

ARCHIVE_SUFFIXES = frozenset({".zip"})
MAX_DEPTH = 2
"""Archives deep a photo may be: a zip, and a zip inside it."""

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


@dataclass(frozen=True)
class Step:
    """One member name on the way to a photo, and which of the members so named it is."""

    name: str
    occurrence: int = 1

    @property
    def label(self) -> str:
        return self.name if self.occurrence == 1 else f"{self.name}#{self.occurrence}"


def is_archive(path: Path | str) -> bool:
    return PurePosixPath(str(path)).suffix.lower() in ARCHIVE_SUFFIXES


def is_junk(name: str) -> bool:
    """macOS metadata that rides along in folders and zips: AppleDouble `._x.jpg`, `__MACOSX/`."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return "__MACOSX" in parts or (bool(parts) and parts[-1].startswith("._"))


class Archives:
    """The zip archives one local source reads (opened once, kept a few at a time)."""

    def __init__(self, source: str, limits: LimitSettings) -> None:
        self.source = source
        self.limits = limits
        self._zips: OrderedDict[Path, zipfile.ZipFile] = OrderedDict()
        self._inner: tuple[tuple[Path, tuple[Step, ...]], zipfile.ZipFile] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the archives kept open for reading (reads reopen them)."""
        with self._lock:
            while self._zips:
                self._zips.popitem()[1].close()
            self._inner = None

    # ---- listing ---------------------------------------------------------------
    def refs(self, archive: Path) -> Iterator[PhotoRef]:
        """Every photo of ``archive`` (and of the zips in it), or one refusal saying why."""
        text = storable_text(archive)
        try:
            if not stat.S_ISREG(os.stat(archive).st_mode):  # a FIFO would block the open
                yield self._refused(
                    text, (), "unreadable zip archive: not a regular file (a device or pipe)"
                )
                return
            with self._lock:
                infos = _files(self._zip(archive))
        except zipfile.BadZipFile as e:
            yield self._refused(text, (), f"unreadable zip archive: {e}")
            return
        except OSError as e:
            yield self._refused(text, (), f"unreadable zip archive: {e.strerror or e}")
            return
        except Exception as e:  # noqa: BLE001 - a hostile directory must fail this archive only
            yield self._refused(
                text, (), f"unreadable zip archive: corrupt directory ({type(e).__name__}: {e})"
            )
            return
        yield from self._list(archive, (), infos)

    def _list(
        self, archive: Path, steps: tuple[Step, ...], infos: list[zipfile.ZipInfo]
    ) -> Iterator[PhotoRef]:
        text = storable_text(archive)
        refusal = _archive_problem(infos, self.limits)
        if refusal is not None:
            yield self._refused(text, steps, refusal)
            return
        seen: Counter[str] = Counter()
        for info in sorted(infos, key=lambda i: i.filename):  # stable: duplicates keep order
            seen[info.filename] += 1
            step = Step(info.filename, seen[info.filename])
            if is_junk(info.filename):
                continue
            suffix = PurePosixPath(info.filename).suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                yield self._member(archive, (*steps, step), info)
            elif suffix in ARCHIVE_SUFFIXES:
                yield from self._nested(archive, (*steps, step), info)

    def _nested(
        self, archive: Path, steps: tuple[Step, ...], info: zipfile.ZipInfo
    ) -> Iterator[PhotoRef]:
        text = storable_text(archive)
        if len(steps) >= MAX_DEPTH:
            yield self._refused(
                text,
                steps,
                f"a zip nested {len(steps) + 1} archives deep; photos are read from a zip and "
                "a zip inside it, no deeper (unpack it one level)",
            )
            return
        problem = _member_problem(info, self.limits)
        if problem is not None:
            yield self._refused(text, steps, problem)
            return
        try:
            with self._lock:
                infos = _files(self._open_steps(archive, steps))
        except SourceError as e:
            yield self._refused(text, steps, str(e).split(": ", 1)[-1])
            return
        except Exception as e:  # noqa: BLE001 - a hostile inner archive fails alone
            yield self._refused(text, steps, f"unreadable zip archive inside the zip ({e})")
            return
        yield from self._list(archive, steps, infos)

    def _refused(self, archive: str, steps: tuple[Step, ...], problem: str) -> PhotoRef:
        uri = "!".join([archive, *(s.label for s in steps)])
        return PhotoRef(
            self.source,
            "zip",
            uri,
            read=not_read,
            metadata=_meta(archive, steps),
            problem=problem,
        )

    # ---- reading ------------------------------------------------------------------
    def _zip(self, archive: Path) -> zipfile.ZipFile:
        """The open archive (call with ``_lock`` held); opening parses the whole directory."""
        zf = self._zips.get(archive)
        if zf is not None:
            self._zips.move_to_end(archive)
            return zf
        zf = zipfile.ZipFile(archive)
        self._zips[archive] = zf
        while len(self._zips) > _OPEN_ARCHIVES:
            self._zips.popitem(last=False)[1].close()
        return zf

    def _open_steps(self, archive: Path, steps: tuple[Step, ...]) -> zipfile.ZipFile:
        """The archive the steps lead into (call with ``_lock`` held). An inner zip is read
        whole into memory, once for all its members (they are read in order)."""
        zf = self._zip(archive)
        if not steps:
            return zf
        if self._inner is not None and self._inner[0] == (archive, steps):
            return self._inner[1]
        for depth, step in enumerate(steps, 1):
            info = _find(zf, step)
            label = "!".join([storable_text(archive), *(s.label for s in steps[:depth])])
            problem = _member_problem(info, self.limits)
            if problem is not None:
                raise SourceError(f"{label}: {problem}")
            zf = zipfile.ZipFile(io.BytesIO(_read_bounded(zf, info, self.limits, label)))
        self._inner = ((archive, steps), zf)
        return zf

    def _member(self, archive: Path, steps: tuple[Step, ...], info: zipfile.ZipInfo) -> PhotoRef:
        text = storable_text(archive)
        uri = "!".join([text, *(s.label for s in steps)])
        problem = _member_problem(info, self.limits)

        def read() -> bytes:
            if problem is not None:
                raise SourceError(f"{uri}: {problem}")
            with self._lock:
                zf = self._open_steps(archive, steps[:-1])
                return _read_bounded(zf, info, self.limits, uri)

        return PhotoRef(
            source=self.source,
            origin="zip",
            uri=uri,
            read=read,
            size=info.file_size,
            metadata=_meta(text, steps),
            problem=problem,
        )

    def reopen(self, uri: str, meta: dict[str, Any]) -> PhotoRef:
        """A member registered earlier, from its metadata (or, for old catalogs, its uri)."""
        archive, steps = _steps_of(uri, meta)
        try:
            with self._lock:
                zf = self._open_steps(archive, steps[:-1])
                info = _find(zf, steps[-1])
        except KeyError:
            return self._gone(uri, f"no member {steps[-1].label!r} in {uri} any more")
        except (OSError, zipfile.BadZipFile, SourceError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else e
            return self._gone(uri, f"cannot open archive {storable_text(archive)} ({why})")
        return self._member(archive, steps, info)

    def _gone(self, uri: str, problem: str) -> PhotoRef:
        return PhotoRef(self.source, "zip", uri, read=not_read, problem=problem)


def _meta(archive: str, steps: Sequence[Step]) -> dict[str, Any]:
    meta: dict[str, Any] = {"archive": archive}
    if steps:
        meta["member"] = steps[0].name
    if len(steps) > 1 or any(s.occurrence > 1 for s in steps):
        meta["members"] = [[s.name, s.occurrence] for s in steps]
    return meta


def _steps_of(uri: str, meta: dict[str, Any]) -> tuple[Path, tuple[Step, ...]]:
    if meta.get("members"):
        return Path(meta["archive"]), tuple(Step(n, int(k)) for n, k in meta["members"])
    archive, member = meta.get("archive"), meta.get("member")
    if not archive or not member:
        archive, _, member = uri.rpartition("!")
    return Path(archive), (Step(str(member)),)


def _files(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    return [i for i in zf.infolist() if not i.is_dir()]


def _find(zf: zipfile.ZipFile, step: Step) -> zipfile.ZipInfo:
    """The ``occurrence``-th member called ``name`` (KeyError when there is none)."""
    same = [i for i in zf.infolist() if i.filename == step.name]
    if len(same) < step.occurrence:
        raise KeyError(step.label)
    return same[step.occurrence - 1]


def _read_bounded(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: LimitSettings, uri: str
) -> bytes:
    limit = limits.max_zip_member_bytes
    try:
        # zipfile stops at the declared size (then checks the CRC); reading at most
        # limit + 1 bytes bounds memory regardless.
        fh: IO[bytes]
        with zf.open(info) as fh:
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


def _archive_problem(infos: list[zipfile.ZipInfo], limits: LimitSettings) -> str | None:
    """Why a whole archive is refused: too many members, or members that overlap."""
    if len(infos) > limits.max_zip_members:
        return (
            f"zip archive has {len(infos):,} members, over the limit of {limits.max_zip_members:,}"
        )
    overlap = _overlapping(infos)
    if overlap is not None:
        return (
            f"zip archive members {overlap[0]!r} and {overlap[1]!r} overlap each other "
            "(a zip bomb construction)"
        )
    return None


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


__all__ = ["ARCHIVE_SUFFIXES", "MAX_DEPTH", "Archives", "is_archive", "is_junk"]
