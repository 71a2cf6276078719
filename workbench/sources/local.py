"""Local files, folders (recursive) and zip archives, read without extracting."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from workbench.errors import SourceError
from workbench.settings import LimitSettings, WorkbenchSettings
from workbench.sources.base import PhotoRef

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif"}
)
ARCHIVE_SUFFIXES = frozenset({".zip"})


def _read_file(path: Path, limit: int) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise SourceError(f"{path}: file is {size:,} bytes, over the limit of {limit:,}")
    return path.read_bytes()


class LocalSource:
    """Files, folders and zip archives on this machine.

    Folders are walked recursively in sorted order; inside folders only files
    with image or zip suffixes are taken. A file named explicitly is always
    tried, whatever its suffix, so a mislabelled photo still gets a verdict.
    """

    def __init__(self, path: str | os.PathLike[str], name: str | None, limits: LimitSettings):
        self.path = Path(path).expanduser()
        self.name = name or ("zip" if self.path.suffix.lower() in ARCHIVE_SUFFIXES else "local")
        self.limits = limits

    def refs(self) -> Iterator[PhotoRef]:
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file or folder")
        if self.path.is_dir():
            for root, dirs, files in os.walk(self.path):
                dirs.sort()
                for fname in sorted(files):
                    p = Path(root) / fname
                    suffix = p.suffix.lower()
                    if suffix in ARCHIVE_SUFFIXES:
                        yield from self._archive(p)
                    elif suffix in IMAGE_SUFFIXES:
                        yield self._file(p)
        elif self.path.suffix.lower() in ARCHIVE_SUFFIXES:
            yield from self._archive(self.path)
        else:
            yield self._file(self.path)

    def _file(self, p: Path) -> PhotoRef:
        resolved = p.resolve()
        limit = self.limits.max_file_bytes
        try:
            size: int | None = resolved.stat().st_size
        except OSError:
            size = None
        return PhotoRef(
            source=self.name,
            origin="local",
            uri=str(resolved),
            read=lambda: _read_file(resolved, limit),
            size=size,
            metadata={"path": str(resolved)},
        )

    def _archive(self, archive: Path) -> Iterator[PhotoRef]:
        archive = archive.resolve()
        try:
            zf = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as e:
            yield PhotoRef(
                self.name, "zip", str(archive), read=_never, problem=f"unreadable zip archive: {e}"
            )
            return
        with zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > self.limits.max_zip_members:
            yield PhotoRef(
                self.name,
                "zip",
                str(archive),
                read=_never,
                problem=f"zip archive has {len(infos):,} members, over the limit of "
                f"{self.limits.max_zip_members:,}",
            )
            return
        for info in sorted(infos, key=lambda i: i.filename):
            if PurePosixPath(info.filename).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            yield self._member(archive, info)

    def _member(self, archive: Path, info: zipfile.ZipInfo) -> PhotoRef:
        uri = f"{archive}!{info.filename}"
        problem = _member_problem(info, self.limits)
        limit = self.limits.max_zip_member_bytes

        def read() -> bytes:
            # The declared size may lie: read at most limit + 1 bytes.
            with zipfile.ZipFile(archive) as zf, zf.open(info) as fh:
                data = fh.read(limit + 1)
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
            metadata={"archive": str(archive), "member": info.filename},
            problem=problem,
        )


def _member_problem(info: zipfile.ZipInfo, limits: LimitSettings) -> str | None:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        return f"unsafe path in zip archive ({info.filename!r} points outside the archive)"
    if info.flag_bits & 0x1:
        return "encrypted zip member (password-protected archives are not supported)"
    if info.file_size > limits.max_zip_member_bytes:
        return (
            f"zip member expands to {info.file_size:,} bytes, over the limit of "
            f"{limits.max_zip_member_bytes:,} (zip bomb?)"
        )
    if info.compress_size and info.file_size / info.compress_size > limits.max_zip_ratio:
        return (
            f"zip member compresses {info.file_size / info.compress_size:,.0f}:1, over the "
            f"limit of {limits.max_zip_ratio:,.0f}:1 (zip bomb?)"
        )
    return None


def _never() -> bytes:
    raise SourceError("this reference has a problem and is not read")


def local_source(spec: str, name: str | None, settings: WorkbenchSettings) -> LocalSource:
    return LocalSource(spec, name, settings.limits)
