"""Photo sources: local files, folders and zip archives, Yandex.Disk, VK albums.

A spec with a registered scheme (``yadisk:...``, ``vk:...``) goes to that
source; anything else is a local path.
"""

from __future__ import annotations

from typing import Any

from workbench.errors import WorkbenchError
from workbench.registry import Registry
from workbench.settings import WorkbenchSettings
from workbench.sources.base import PhotoRef, Source, SourceKind, check_source_label, not_read
from workbench.sources.local import LocalSource, local_source
from workbench.sources.vk import vk_source
from workbench.sources.yadisk import yadisk_source

SOURCES: Registry[SourceKind] = Registry("source")
# A local source reads recorded photos by their own path or archive member.
SOURCES.register("local", SourceKind(local_source, ("local", "zip"), lambda meta: "."))
# Remote photos are read again from what their metadata recorded: a public link
# or the disk (Yandex.Disk), the largest size's URL (VK).
SOURCES.register(
    "yadisk",
    SourceKind(yadisk_source, ("yadisk",), lambda meta: meta.get("public_key") or "disk:/"),
)
SOURCES.register("vk", SourceKind(vk_source, ("vk",), lambda meta: "album/0_0"))


def open_source(spec: str, settings: WorkbenchSettings, name: str | None = None) -> Source:
    """Return the source for ``spec`` (``scheme:rest`` or a local path), labelled ``name``
    (a label with control characters, or too long to search by, is refused)."""
    check_source_label(name)
    scheme, sep, rest = spec.partition(":")
    # A one-letter "scheme" is a Windows drive, not a source.
    if sep and len(scheme) > 1 and scheme in SOURCES:
        source = SOURCES.get(scheme).open(rest, name, settings)
    else:
        source = SOURCES.get("local").open(spec, name, settings)
    check_source_label(source.name)
    return source


def is_local_spec(spec: str) -> bool:
    """Whether `open_source` reads ``spec`` from this machine's files (a path, a zip)
    rather than from a remote service (``yadisk:...``, ``vk:...``)."""
    scheme, sep, _rest = spec.partition(":")
    return not (sep and len(scheme) > 1 and scheme in SOURCES and scheme != "local")


def _kind_of(origin: str) -> SourceKind | None:
    return next((k for k in map(SOURCES.get, SOURCES) if origin in k.origins), None)


def reopen_photo(
    source: str,
    origin: str,
    uri: str,
    meta: dict[str, Any],
    settings: WorkbenchSettings,
    opened: dict[str, Any] | None = None,
) -> PhotoRef:
    """The reference of a photo the catalog registered earlier, to read it again.

    ``opened`` caches sources between calls (a zip archive's directory is
    parsed once per run, not once per photo).
    """
    opened = {} if opened is None else opened
    kind = _kind_of(origin)
    if kind is None:
        problem = f"photos from {origin!r} sources cannot be read again here"
        return PhotoRef(source, origin, uri, read=not_read, problem=problem)
    spec = kind.reopen_spec(meta)
    key = f"{origin}\0{source}\0{spec}"
    try:
        src = opened.get(key)
        if src is None:
            src = opened[key] = kind.open(spec, source, settings)
        return src.reopen(origin, uri, meta)
    except WorkbenchError as e:
        return PhotoRef(source, origin, uri, read=not_read, problem=str(e))


__all__ = [
    "SOURCES",
    "LocalSource",
    "PhotoRef",
    "Source",
    "SourceKind",
    "is_local_spec",
    "check_source_label",
    "open_source",
    "reopen_photo",
]
