"""Search by sample photo: every face in the sample gets its nearest stored faces."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from workbench.errors import ImageError, WorkbenchError
from workbench.imaging import DecodedImage, decode_image
from workbench.monitoring import timed_search

if TYPE_CHECKING:
    from workbench.core import Workbench

ImageInput = str | os.PathLike[str] | bytes | NDArray[np.uint8] | DecodedImage


@dataclass(frozen=True)
class Match:
    photo: str
    """URI of the matched photo."""
    source: str
    face_id: int
    photo_id: int
    box: list[float]
    similarity: float
    """Calibrated similarity in percent (85 = the pack's same-person threshold)."""
    cosine: float


@dataclass(frozen=True)
class QueryFace:
    """One face of the sample photo and its matches, best first."""

    box: list[float]
    score: float
    matches: list[Match] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": self.box,
            "score": round(self.score, 4),
            "matches": [
                {
                    "photo": m.photo,
                    "source": m.source,
                    "face_id": m.face_id,
                    "photo_id": m.photo_id,
                    "box": m.box,
                    "similarity": round(m.similarity, 2),
                    "cosine": round(m.cosine, 4),
                }
                for m in self.matches
            ],
        }


def load_sample(image: ImageInput, wb: Workbench) -> DecodedImage:
    if isinstance(image, DecodedImage):
        return image
    if isinstance(image, np.ndarray):
        return DecodedImage(np.ascontiguousarray(image, dtype=np.uint8), "array")
    if isinstance(image, bytes):
        return decode_image(image, wb.settings.limits)
    path = Path(image).expanduser()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read the sample photo ({e.strerror or e})") from e
    try:
        return decode_image(data, wb.settings.limits)
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from e


def search_sample(
    wb: Workbench,
    image: ImageInput,
    top_k: int | None = None,
    threshold: float | None = None,
    source: str | None = None,
) -> list[QueryFace]:
    """Top-K matches above ``threshold`` % for every face in ``image``.

    ``top_k`` defaults to the search settings (10); ``threshold`` is a
    calibrated percentage (default 85, the pack's same-person threshold; the
    user-facing range is 70–95 but any value is accepted). Timed into
    ``workbench_search_seconds`` (decode and embed of the sample included).
    """
    with timed_search():
        return _search_sample(wb, image, top_k, threshold, source)


def _search_sample(
    wb: Workbench,
    image: ImageInput,
    top_k: int | None,
    threshold: float | None,
    source: str | None,
) -> list[QueryFace]:
    top_k = top_k or wb.settings.search.top_k
    threshold = wb.settings.search.threshold if threshold is None else threshold
    sample = load_sample(image, wb)
    pack = wb.pack.load()
    faces = pack.analyze(sample.rgb)
    if not faces:
        return []
    cal = wb.calibration
    queries = np.stack([f.embedding for f in faces]).astype(np.float32)
    hits = wb.index.search(wb.collection, queries, top_k, source=source, pack=pack.name)
    face_rows = wb.catalog.faces_by_ids([h.face_id for per in hits for h in per])
    photos = wb.catalog.photos_by_ids({f.photo_id for f in face_rows.values()})
    out: list[QueryFace] = []
    for face, per_face in zip(faces, hits, strict=True):
        matches = []
        for h in per_face:
            pct = float(cal.percent(h.score))
            row = face_rows.get(h.face_id)
            if pct < threshold or row is None:  # row is None: index ahead of a deleted photo
                continue
            photo = photos[row.photo_id]
            matches.append(
                Match(photo.uri, photo.source, h.face_id, photo.id, _round(row.box), pct, h.score)
            )
        out.append(QueryFace(_round(face.detection.box), face.detection.score, matches))
    return out


def search_face(
    wb: Workbench, face_id: int, top_k: int | None = None, threshold: float | None = None
) -> list[Match]:
    """Faces of other photos nearest to the stored face ``face_id``, best first.

    Uses the stored vector, so no model runs (a gallery's "find similar"); the
    face's own pack, collection and calibration decide, whichever pack the
    workbench has open. ``top_k`` and ``threshold`` as in `search_sample`.
    Timed into ``workbench_search_seconds``.
    """
    with timed_search():
        return _search_face(wb, face_id, top_k, threshold)


def _search_face(
    wb: Workbench, face_id: int, top_k: int | None, threshold: float | None
) -> list[Match]:
    from workbench.faces.calibration import load_calibration

    top_k = top_k or wb.settings.search.top_k
    threshold = wb.settings.search.threshold if threshold is None else threshold
    face = wb.catalog.faces_by_ids([face_id]).get(face_id)
    if face is None:
        raise WorkbenchError(f"face {face_id} is no longer in the catalog; reopen the photo")
    row = next(p for p in wb.catalog.packs() if p.name == face.pack)
    if face.pack == wb.pack.name:
        cal = wb.calibration
    else:
        cal = load_calibration(face.pack, wb.home, wb.index.index_spec(row.collection).metric)
    # Other faces of the same photo may come first: ask for a few more.
    own = wb.catalog.photos_by_ids({face.photo_id})[face.photo_id]
    siblings = max(1, own.n_faces)
    hits = wb.index.search(row.collection, face.vector()[None, :], top_k + siblings, pack=face.pack)
    rows = wb.catalog.faces_by_ids([h.face_id for h in hits[0]])
    photos = wb.catalog.photos_by_ids({r.photo_id for r in rows.values()})
    out = []
    for h in hits[0]:
        match = rows.get(h.face_id)
        if match is None or match.photo_id == face.photo_id:
            continue
        pct = float(cal.percent(h.score))
        if pct >= threshold:
            photo = photos[match.photo_id]
            out.append(
                Match(photo.uri, photo.source, h.face_id, photo.id, _round(match.box), pct, h.score)
            )
    return out[:top_k]


def _round(box: Any) -> list[float]:
    return [round(float(v), 1) for v in box]


__all__ = ["Match", "QueryFace", "search_face", "search_sample"]
