"""`SearchResult`: what `Workbench.search` returns, a list that draws itself in a notebook.

It is the ``list[QueryFace]`` searches always returned (iterate it, index it,
``to_dict()`` its faces, compare it with a list), and it keeps what a display needs
and a plain list does not have: the sample, the threshold, and the workbench's
`Pictures`. In a terminal it prints as the list it is; in a notebook it shows the
sample with its faces boxed, then each face's matches as thumbnails with their %
(`workbench.display.search`). The pictures are made when it is shown, not when the
search runs, so the command line and the API pay nothing for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePath

from workbench.analysis.pictures import Pictures, boxed_sample, face_crop
from workbench.analysis.search import ImageInput, Match, QueryFace, load_sample
from workbench.display.html import rendered
from workbench.display.search import MatchLike, search_html
from workbench.errors import WorkbenchError
from workbench.settings import LimitSettings


class SearchResult(list[QueryFace]):
    """The faces of a sample photo, each with its matches, best first (a list of `QueryFace`).

    ``sample`` is what was searched with (a path, bytes, an array or a decoded
    image; read again only to be shown), ``threshold`` the calibrated % the
    matches passed, ``pictures`` where match thumbnails come from, ``limits``
    the decoding limits to read the sample with.
    """

    def __init__(
        self,
        faces: Iterable[QueryFace] = (),
        *,
        sample: ImageInput | None = None,
        threshold: float,
        pictures: Pictures | None = None,
        limits: LimitSettings | None = None,
    ) -> None:
        super().__init__(faces)
        self.sample = sample
        self.threshold = threshold
        self.pictures = pictures
        self.limits = limits or LimitSettings()

    @property
    def sample_name(self) -> str:
        """The sample's file name, or ``the sample`` for bytes and arrays."""
        if isinstance(self.sample, str | os.PathLike):
            return PurePath(os.fspath(self.sample)).name or "the sample"
        return "the sample"

    def _repr_html_(self) -> str | None:
        return rendered(self.html, f"the search result of {self.sample_name}")

    def html(self) -> str:
        """The notebook display: the sample boxed, then per face its crop and match tiles."""
        sample_jpeg, why, crops = None, "", [None] * len(self)
        if self.sample is None:
            why = "the sample is not kept"
        else:
            try:
                decoded = load_sample(self.sample, self.limits)
                sample_jpeg = boxed_sample(decoded, [f.box for f in self])
                crops = [face_crop(decoded, f.box) for f in self]
            except WorkbenchError as e:
                why = f"the sample cannot be read again: {self._named(str(e))}"
        return search_html(
            self,
            sample_name=self.sample_name,
            sample_jpeg=sample_jpeg,
            sample_why=why,
            crops=crops,
            threshold=self.threshold,
            thumbnail=self._thumbnail,
        )

    def _named(self, text: str) -> str:
        """``text`` with the sample's path cut to its file name (a display shows no folders)."""
        if isinstance(self.sample, str | os.PathLike):
            path = str(Path(os.fspath(self.sample)).expanduser())
            return text.replace(path, self.sample_name)
        return text

    def _thumbnail(self, m: MatchLike) -> bytes:
        if self.pictures is None:
            raise WorkbenchError("this result was made without its workbench's pictures")
        if not isinstance(m, Match):
            raise WorkbenchError(f"not a match of this search: {m!r}")
        return self.pictures.match(m)


__all__ = ["SearchResult"]
