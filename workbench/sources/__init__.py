"""Photo sources: local files, folders and zip archives, Yandex.Disk, VK albums.

A spec with a registered scheme (``yadisk:...``, ``vk:...``) goes to that
source; anything else is a local path.
"""

from __future__ import annotations

from typing import Any

from workbench.errors import WorkbenchError
from workbench.registry import Registry
from workbench.settings import WorkbenchSettings
from workbench.sources.base import PhotoRef, Source, SourceFactory, not_read
from workbench.sources.local import LocalSource, local_source
from workbench.sources.vk import vk_source
from workbench.sources.yadisk import yadisk_source

SOURCES: Registry[SourceFactory] = Registry("source")
SOURCES.register("local", local_source)
SOURCES.register("yadisk", yadisk_source)
SOURCES.register("vk", vk_source)


def open_source(spec: str, settings: WorkbenchSettings, name: str | None = None) -> Source:
    """Return the source for ``spec`` (``scheme:rest`` or a local path)."""
    scheme, sep, rest = spec.partition(":")
    # A one-letter "scheme" is a Windows drive, not a source.
    if sep and len(scheme) > 1 and scheme in SOURCES:
        return SOURCES.get(scheme)(rest, name, settings)
    return SOURCES.get("local")(spec, name, settings)


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
    if origin in ("local", "zip"):
        src = opened.get(source)
        if src is None:
            src = opened[source] = LocalSource(uri, source, settings.limits)
        return src.reopen(origin, uri, meta)
    if origin in ("yadisk", "vk"):
        # Remote photos are read again from what their metadata recorded: a
        # public link or the disk (for Yandex.Disk), the largest size's URL (VK).
        spec = (meta.get("public_key") or "disk:/") if origin == "yadisk" else "album/0_0"
        key = f"{origin}\0{source}\0{spec}"
        try:
            src = opened.get(key)
            if src is None:
                src = opened[key] = SOURCES.get(origin)(spec, source, settings)
            return src.reopen(origin, uri, meta)  # type: ignore[attr-defined,no-any-return]
        except WorkbenchError as e:
            return PhotoRef(source, origin, uri, read=not_read, problem=str(e))
    return PhotoRef(
        source,
        origin,
        uri,
        read=not_read,
        problem=f"photos from {origin!r} sources cannot be read again here",
    )


__all__ = ["SOURCES", "LocalSource", "PhotoRef", "Source", "open_source", "reopen_photo"]
