"""Pictures for the notebook displays of a workbench's results (`workbench.display`).

A result knows ids and boxes; `Pictures` turns them into the small JPEGs a display
inlines, from the workbench's thumbnail cache (`imaging.thumbnails`), so a display
never reads a photo at full size and never shows one: a match is its photo's cached
thumbnail with the pack's faces boxed (the matched one in red, as in the search
app), a face or a person's cover is a square face crop.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Final

from PIL import Image

from workbench.analysis.search import Match
from workbench.errors import NotFoundError
from workbench.imaging.decode import DecodedImage, thumbnail
from workbench.imaging.thumbnails import DEFAULT_SIZE, ThumbnailCache, draw_boxes
from workbench.store.catalog import Catalog

SAMPLE_CROP_SIZE: Final = 112
"""Side of a sample face's crop, in pixels."""


class Pictures:
    """Thumbnails of one workbench's matches, faces and people, as JPEG bytes.

    ``pack`` is whose faces are boxed on a match's photo (the searching pack's).
    Missing pictures raise `WorkbenchError` in words (`ThumbnailError`: the
    photo's source no longer has it, its bytes changed, ...).
    """

    def __init__(self, catalog: Catalog, cache: ThumbnailCache, pack: str | None) -> None:
        self.catalog = catalog
        self.cache = cache
        self.pack = pack

    def match(self, m: Match, size: int = DEFAULT_SIZE) -> bytes:
        """The matched photo's thumbnail (longest side ``size``), every face of the pack
        boxed, the match in red."""
        # Here, not at the top: the facade imports this module, and a search on the
        # command line should not load the gallery's queries it never shows.
        from workbench.analysis.gallery import photo_detail

        detail = photo_detail(self.catalog, m.photo_id, pack=self.pack)
        ids = [f.id for f in detail.faces]
        if m.face_id in ids:
            boxes, highlight = detail.boxes, ids.index(m.face_id)
        else:  # the face left the catalog since the search: box what the search saw
            boxes, highlight = [m.box], 0
        return self.cache.boxed(detail, boxes, size=size, highlight=highlight)

    def face(self, face_id: int) -> bytes:
        """A stored face as a square crop (`ThumbnailCache.face_thumbnail`)."""
        face = self.catalog.faces_by_ids([face_id]).get(face_id)
        if face is None:
            raise NotFoundError(f"face {face_id} is no longer in the catalog")
        photo = self.catalog.photos_by_ids([face.photo_id])[face.photo_id]
        return self.cache.face_thumbnail(photo, face.box).read_bytes()

    def cover(self, person_id: int) -> bytes:
        """The face that stands for a person (`People.cover_face`), as a square crop."""
        from workbench.analysis.people import People  # with its clustering (scipy): on use

        face_id = People(self.catalog, self.pack or "").cover_face(person_id)
        if face_id is None:
            raise NotFoundError(f"person {person_id} has no faces")
        return self.face(face_id)


def boxed_sample(sample: DecodedImage, boxes: Sequence[Sequence[float]]) -> bytes:
    """A thumbnail of the sample photo with its faces boxed and numbered from 1 (boxes in
    the photo's own pixels, as a search reports them)."""
    small = thumbnail(sample.rgb, DEFAULT_SIZE)
    scale = small.width / sample.size[0]
    return draw_boxes(small, boxes, [str(i) for i in range(1, len(boxes) + 1)], scale=scale)


def face_crop(sample: DecodedImage, box: Sequence[float], size: int = SAMPLE_CROP_SIZE) -> bytes:
    """A square-ish JPEG crop around a face of a sample (``box`` in the photo's own pixels),
    with half the box's size as context around it."""
    x1, y1, x2, y2 = (float(v) / sample.scale for v in box)
    side = max(x2 - x1, y2 - y1) * 1.5
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    h, w = sample.rgb.shape[:2]
    left, top = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    right, bottom = min(w, round(cx + side / 2)), min(h, round(cy + side / 2))
    img = Image.fromarray(sample.rgb[top : max(bottom, top + 1), left : max(right, left + 1)])
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=85)
    return buf.getvalue()


__all__ = ["SAMPLE_CROP_SIZE", "Pictures", "boxed_sample", "face_crop"]
