"""Photo sources: local files, folders and zip archives (remote ones register here too).

A spec with a registered scheme (``yadisk:...``, ``vk:...``) goes to that
source; anything else is a local path.
"""

from __future__ import annotations

from workbench.registry import Registry
from workbench.settings import WorkbenchSettings
from workbench.sources.base import PhotoRef, Source, SourceFactory
from workbench.sources.local import LocalSource, local_source

SOURCES: Registry[SourceFactory] = Registry("source")
SOURCES.register("local", local_source)


def open_source(spec: str, settings: WorkbenchSettings, name: str | None = None) -> Source:
    """Return the source for ``spec`` (``scheme:rest`` or a local path)."""
    scheme, sep, rest = spec.partition(":")
    # A one-letter "scheme" is a Windows drive, not a source.
    if sep and len(scheme) > 1 and scheme in SOURCES:
        return SOURCES.get(scheme)(rest, name, settings)
    return SOURCES.get("local")(spec, name, settings)


__all__ = ["SOURCES", "LocalSource", "PhotoRef", "Source", "open_source"]
