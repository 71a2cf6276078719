"""Search by sample photo: every face in the sample gets its nearest stored faces."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workbench.errors import ImageError, WorkbenchError
from workbench.faces.calibration import Calibration
from workbench.faces.pack import ModelPack
from workbench.imaging.decode import DecodedImage, decode_image
from workbench.monitoring.metrics import timed_search
from workbench.settings import LimitSettings, Metric, WorkbenchSettings
from workbench.store.faces import FaceStore

ImageInput = str | os.PathLike[str] | bytes | NDArray[np.uint8] | DecodedImage
CalibrationOf = Callable[[str, Metric], Calibration]
"""The calibration of a pack's faces compared by a metric (``(pack name, metric)``)."""


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

    def _repr_html_(self) -> str | None:
        """Its matches as a table, for notebooks (`workbench.display.search`)."""
        from workbench.display.search import query_face_repr

        return query_face_repr(self)


def load_sample(image: ImageInput, limits: LimitSettings) -> DecodedImage:
    """The sample photo decoded (a path, its bytes, an RGB array or a decoded image)."""
    if isinstance(image, DecodedImage):
        return image
    if isinstance(image, np.ndarray):
        return DecodedImage(np.ascontiguousarray(image, dtype=np.uint8), "array")
    if isinstance(image, bytes):
        return decode_image(image, limits, limits.analysis_side)
    path = Path(image).expanduser()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read the sample photo ({e.strerror or e})") from e
    try:
        return decode_image(data, limits, limits.analysis_side)
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from e


def search_sample(
    store: FaceStore,
    pack: ModelPack,
    calibration: Calibration,
    settings: WorkbenchSettings,
    image: ImageInput,
    top_k: int | None = None,
    threshold: float | None = None,
    source: str | None = None,
) -> list[QueryFace]:
    """Top-K matches above ``threshold`` % for every face in ``image``, among ``pack``'s faces.

    ``top_k`` defaults to the search settings (10); ``threshold`` is a
    calibrated percentage (default 85, the pack's same-person threshold; the
    user-facing range is 70–95 but any value is accepted). Timed into
    ``workbench_search_seconds`` (decode and embed of the sample included).
    """
    with timed_search():
        top_k = top_k or settings.search.top_k
        threshold = settings.search.resolve_threshold(threshold)
        sample = load_sample(image, settings.limits)
        pack = pack.load()
        faces = pack.analyze(sample.rgb)
        if not faces:
            return []
        queries = np.stack([f.embedding for f in faces]).astype(np.float32)
        collection = store.collection_of(pack.name, pack.collection_name)
        hits = store.index.search(collection, queries, top_k, source=source, pack=pack.name)
        face_rows = store.catalog.faces_by_ids([h.face_id for per in hits for h in per])
        photos = store.catalog.photos_by_ids({f.photo_id for f in face_rows.values()})
        out: list[QueryFace] = []
        for face, per_face in zip(faces, hits, strict=True):
            matches = []
            for h in per_face:
                pct = float(calibration.percent(h.score))
                row = face_rows.get(h.face_id)
                if pct < threshold or row is None:  # None: index ahead of a deleted photo
                    continue
                photo = photos[row.photo_id]
                box = _round(row.box)
                matches.append(
                    Match(photo.uri, photo.source, h.face_id, photo.id, box, pct, h.score)
                )
            found = face.detection.scaled(sample.scale)  # in the sample's own pixels
            out.append(QueryFace(_round(found.box), found.score, matches))
        return out


def search_face(
    store: FaceStore,
    calibration_of: CalibrationOf,
    settings: WorkbenchSettings,
    face_id: int,
    top_k: int | None = None,
    threshold: float | None = None,
) -> list[Match]:
    """Faces of other photos nearest to the stored face ``face_id``, best first.

    Uses the stored vector, so no model runs (a gallery's "find similar"); the
    face's own pack, collection and calibration decide, whichever pack is open.
    ``top_k`` and ``threshold`` as in `search_sample`. Timed into
    ``workbench_search_seconds``.
    """
    with timed_search():
        top_k = top_k or settings.search.top_k
        threshold = settings.search.resolve_threshold(threshold)
        catalog = store.catalog
        face = catalog.faces_by_ids([face_id]).get(face_id)
        if face is None:
            raise WorkbenchError(f"face {face_id} is no longer in the catalog; reopen the photo")
        collection = store.pack_row(face.pack).collection
        cal = calibration_of(face.pack, store.index.index_spec(collection).metric)
        # Other faces of the same photo may come first: ask for a few more.
        own = catalog.photos_by_ids({face.photo_id})[face.photo_id]
        siblings = max(1, own.n_faces)
        query = face.vector()[None, :]
        hits = store.index.search(collection, query, top_k + siblings, pack=face.pack)
        rows = catalog.faces_by_ids([h.face_id for h in hits[0]])
        photos = catalog.photos_by_ids({r.photo_id for r in rows.values()})
        out = []
        for h in hits[0]:
            match = rows.get(h.face_id)
            if match is None or match.photo_id == face.photo_id:
                continue
            pct = float(cal.percent(h.score))
            if pct >= threshold:
                photo = photos[match.photo_id]
                box = _round(match.box)
                out.append(Match(photo.uri, photo.source, h.face_id, photo.id, box, pct, h.score))
        return out[:top_k]


def _round(box: Any) -> list[float]:
    return [round(float(v), 1) for v in box]


__all__ = [
    "CalibrationOf",
    "ImageInput",
    "Match",
    "QueryFace",
    "load_sample",
    "search_face",
    "search_sample",
]
