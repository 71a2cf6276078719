"""What every photo source yields: references to photos, read lazily."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from workbench.errors import SourceError
from workbench.redaction import printable
from workbench.settings import WorkbenchSettings

IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".mpo",
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
"""File suffixes taken as photos inside folders and archives (a file named explicitly
is always tried)."""

SOURCE_LENGTH = 512
"""The longest source label: the catalog's ``photos.source`` and the vector index's field."""


def storable_text(path: Path | str) -> str:
    """``path`` as storable text: a name that is not valid UTF-8 (Python keeps its
    bytes as lone surrogates, which the catalog cannot store) shows them escaped
    (``bad\\xff.jpg``); the file itself is still read by its real name."""
    s = str(path)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(s).decode("utf-8", "backslashreplace")
    return s


def named(spec: str, reason: str) -> str:
    """``reason`` prefixed with the source it is about, unless it names it already."""
    return reason if spec in reason else f"{spec}: {reason}"


def check_source_label(label: str | None) -> None:
    """Refuse a source label the gallery and ``search --source`` could not find again: one
    with control characters (a newline), or longer than `SOURCE_LENGTH`."""
    if label is None:
        return
    if printable(label) != label:
        raise SourceError(
            f"source label {printable(label)!r} has control characters (a newline, a tab, "
            "an escape); give one without"
        )
    if len(label) > SOURCE_LENGTH:
        raise SourceError(
            f"source label {printable(label[:40])}… is {len(label)} characters long, over the "
            f"{SOURCE_LENGTH} the catalog and the vector index keep; give a shorter --source"
        )


@dataclass(frozen=True)
class PhotoRef:
    """One photo a source can deliver.

    ``problem`` is set when the source already knows the photo is unusable
    (an unsafe archive member, say): the pipeline records it as an error
    without reading it. ``metadata`` is stored with the photo: where it came
    from (for remote photos: service, album, original URL, owner, date, the
    largest size's URL).
    """

    source: str
    origin: str
    uri: str
    read: Callable[[], bytes] = field(repr=False, compare=False)
    size: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    problem: str | None = None
    sha256: str | None = None
    """The hash the service published for these bytes (checked after download, and
    used to skip a photo the catalog has without downloading it)."""
    stable_uri: bool = False
    """The uri names these exact bytes for good (a VK photo id): a photo the catalog
    has under it is not downloaded again."""
    remote: bool = False
    """Read over the network: a few are read at a time."""


def refusing(problem: str) -> Callable[[], bytes]:
    """A reader that raises ``problem`` (for a reference that carries it)."""

    def read() -> bytes:
        raise SourceError(problem)

    return read


def not_read() -> bytes:
    """The reader of a reference that has a ``problem``: the pipeline records the
    problem instead of calling it."""
    raise SourceError("this photo has a problem and is not read")


class Source(Protocol):
    """A place photos come from (folder, archive, remote album)."""

    name: str

    def refs(self) -> Iterator[PhotoRef]:
        """Yield every photo reference, in a stable order."""
        ...

    def reopen(self, origin: str, uri: str, meta: dict[str, Any]) -> PhotoRef:
        """The reference of a photo this kind of source registered earlier, from what the
        catalog recorded of it (``origin``, ``uri``, metadata), to read it again."""
        ...


SourceFactory = Callable[[str, str | None, WorkbenchSettings], Source]


@dataclass(frozen=True)
class SourceKind:
    """A registered kind of source: how to open one, and how to read its photos again."""

    open: SourceFactory
    """``(spec, name, settings)`` to a `Source`."""
    origins: tuple[str, ...]
    """The origins its photos are recorded with (``local`` sources: ``local`` and ``zip``)."""
    reopen_spec: Callable[[dict[str, Any]], str]
    """The spec of a source that reads a recorded photo again, from the photo's metadata
    (the photo itself is then named to its `Source.reopen`)."""
