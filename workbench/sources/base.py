"""What every photo source yields: references to photos, read lazily."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from workbench.settings import WorkbenchSettings


@dataclass(frozen=True)
class PhotoRef:
    """One photo a source can deliver.

    ``problem`` is set when the source already knows the photo is unusable
    (an unsafe archive member, say): the pipeline records it as an error
    without reading it.
    """

    source: str
    origin: str
    uri: str
    read: Callable[[], bytes] = field(repr=False, compare=False)
    size: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    problem: str | None = None


class Source(Protocol):
    """A place photos come from (folder, archive, remote album)."""

    name: str

    def refs(self) -> Iterator[PhotoRef]:
        """Yield every photo reference, in a stable order."""
        ...


SourceFactory = Callable[[str, str | None, WorkbenchSettings], Source]
