"""Local files, folders (recursive) and zip archives, read without extracting."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workbench.errors import SourceError
from workbench.settings import LimitSettings, WorkbenchSettings
from workbench.sources.base import IMAGE_SUFFIXES, PhotoRef, not_read, refusing, storable_text
from workbench.sources.zips import Archives, is_archive


def _resolve(path: Path) -> Path:
    """The absolute, symlink-free path; a symlink loop keeps its own name (reading it fails)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: "Symlink loop" before Python 3.13
        path = Path(os.path.abspath(path))
        return path if path.parent == path else _resolve(path.parent) / path.name


def _broken_link(path: Path) -> str | None:
    """Why a symbolic link leads nowhere (a loop, a missing target); None for no link."""
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except RuntimeError:  # "Symlink loop" before Python 3.13
        return "a loop of symbolic links (it leads back to itself)"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a loop of symbolic links (it leads back to itself)"
        return f"a symbolic link to {storable_text(os.readlink(path))}, which does not exist"
    return None


def _link_problem(path: Path) -> str | None:
    """Why a photo behind a symbolic link is refused before reading: a broken link, or one
    to something that is not a regular file (a device, a FIFO, a /proc file)."""
    if not path.is_symlink():
        return None
    name = storable_text(Path(os.path.abspath(path)))
    broken = _broken_link(path)
    if broken is not None:
        return f"cannot read {name}: cannot open it, {broken}"
    try:
        target = path.resolve(strict=True)
        mode = target.stat().st_mode
    except OSError as e:
        return f"cannot read {name}: cannot follow the symbolic link ({e.strerror or e})"
    if not stat.S_ISREG(mode) or target.parts[1:2] in (("proc",), ("sys",), ("dev",)):
        return (
            f"cannot read {name}: a symbolic link to {storable_text(target)}, not a regular file "
            "(a device, pipe, socket or system file)"
        )
    return None


def _read_file(path: Path, limit: int) -> bytes:
    """Read a regular file of at most ``limit`` bytes.

    Opened non-blocking and checked with fstat, so a FIFO, a device
    (``x.jpg -> /dev/zero``) or a file that grows after listing cannot hang or
    exhaust memory.
    """
    name = storable_text(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        with contextlib.suppress(OSError):  # a socket cannot be opened at all: say what it is
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise SourceError(f"{name}: not a regular file (a device, pipe or socket)") from e
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

    Zip archives (and a zip inside a zip) are read in memory, never extracted,
    under the same limits (`workbench.sources.zips`).
    """

    def __init__(self, path: str | os.PathLike[str], name: str | None, limits: LimitSettings):
        self.path = Path(path).expanduser()
        self.name = name or ("zip" if is_archive(self.path) else "local")
        self.limits = limits
        self.archives = Archives(self.name, limits)

    def refs(self) -> Iterator[PhotoRef]:
        if not self.path.exists():
            broken = _broken_link(self.path)
            raise SourceError(f"{storable_text(self.path)}: {broken or 'no such file or folder'}")
        if self.path.is_dir():
            yield from self._walk(self.path)
        elif is_archive(self.path):
            yield from self.archives.refs(_resolve(self.path))
        else:
            yield self._file(self.path)

    def reopen(self, origin: str, uri: str, meta: dict[str, Any]) -> PhotoRef:
        """The reference of a photo registered earlier (``origin`` ``local`` or ``zip``)."""
        if origin == "zip":
            return self.archives.reopen(uri, meta)
        return self._file(Path(meta.get("path") or uri))

    def close(self) -> None:
        """Close the archives kept open for reading (reads reopen them)."""
        self.archives.close()

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
                if is_archive(p):
                    yield from self.archives.refs(_resolve(p))
                elif suffix in IMAGE_SUFFIXES:
                    yield self._file(p)
        yield from self._listing_problems(errors)

    def _listing_problems(self, errors: list[OSError]) -> Iterator[PhotoRef]:
        while errors:
            e = errors.pop(0)
            where = storable_text(_resolve(Path(e.filename)) if e.filename else self.path)
            yield PhotoRef(
                self.name,
                "local",
                where,
                read=not_read,
                metadata={"path": where},
                problem=f"cannot list folder: {e.strerror or e}",
            )

    def _file(self, p: Path) -> PhotoRef:
        problem = _link_problem(p)
        if problem is not None:
            # Named by the link: its target is missing, a loop, or a device or a /proc file
            # (whose resolved path would change from run to run).
            own = storable_text(Path(os.path.abspath(p)))
            return PhotoRef(
                self.name,
                "local",
                own,
                read=refusing(problem),
                metadata={"path": own},
                problem=problem,
            )
        resolved = _resolve(p)
        limit = self.limits.max_file_bytes
        try:
            size: int | None = resolved.stat().st_size
        except OSError:
            size = None
        return PhotoRef(
            source=self.name,
            origin="local",
            uri=storable_text(resolved),
            read=lambda: _read_file(resolved, limit),
            size=size,
            metadata={"path": storable_text(resolved)},
        )


def local_source(spec: str, name: str | None, settings: WorkbenchSettings) -> LocalSource:
    return LocalSource(spec, name, settings.limits)
