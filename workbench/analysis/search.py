"""Search by sample photo: every face in the sample gets its matches in the archive.

An answer says what a user needs to trust it (issue: search you can trust in a
100k-face archive):

* matches at or above a **similarity %** anchored on false matches (85 %: one
  stranger in 100,000 faces searched), the top K or **every one** (``top_k=None``);
* the **gallery** searched (its faces) and the **strangers expected** among the
  matches at that threshold in that gallery;
* matches of a named or confirmed **person grouped** ("Angelina — 12 photos") before
  the loose faces;
* a photo's recorded **copies** as "also at" (copies are never answers of their own);
* faces below the **quality gate** left out (``include_low_quality`` brings them back).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workbench.errors import ImageError, WorkbenchError
from workbench.faces.calibration import Calibration
from workbench.faces.pack import ModelPack
from workbench.faces.quality import reasons
from workbench.faces.types import FaceQuality
from workbench.imaging.decode import DecodedImage, decode_image
from workbench.monitoring.metrics import timed_search
from workbench.settings import LimitSettings, Metric, QualitySettings, WorkbenchSettings
from workbench.store.faces import FaceStore
from workbench.store.models import Face
from workbench.store.vectors import VectorHit

ImageInput = str | os.PathLike[str] | bytes | NDArray[np.uint8] | DecodedImage
CalibrationOf = Callable[[str, Metric], Calibration]
"""The calibration of a pack's faces compared by a metric (``(pack name, metric)``)."""


class _Setting(enum.Enum):
    TOP_K = "the settings' search.top_k"


SETTINGS_TOP_K = _Setting.TOP_K
"""``top_k`` default: the settings' ``search.top_k`` (``None`` asks for every match)."""
TopK = int | None | _Setting
MAX_FETCH = 16384
"""Milvus answers at most this many nearest faces per query."""


@dataclass(frozen=True)
class Match:
    photo: str
    """URI of the matched photo."""
    source: str
    face_id: int
    photo_id: int
    box: list[float]
    similarity: float
    """Similarity in percent: 85 lets one stranger in 100,000 faces through."""
    cosine: float
    person_id: int | None = None
    """The named or confirmed person the face belongs to, if any."""
    person: str | None = None
    """That person's name (None when unnamed)."""
    also_at: tuple[str, ...] = ()
    """URIs of the photo's recorded copies (resized or re-encoded)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "photo": self.photo,
            "source": self.source,
            "face_id": self.face_id,
            "photo_id": self.photo_id,
            "box": self.box,
            "similarity": round(self.similarity, 2),
            "cosine": round(self.cosine, 4),
            "person_id": self.person_id,
            "person": self.person,
            "also_at": list(self.also_at),
        }


@dataclass(frozen=True)
class PersonMatches:
    """The matches of one named or confirmed person, best first."""

    person_id: int
    name: str | None
    face_ids: tuple[int, ...]
    photos: int
    best: float
    """The best match's similarity %."""

    @property
    def label(self) -> str:
        return self.name or f"person {self.person_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "photos": self.photos,
            "faces": len(self.face_ids),
            "best_similarity": round(self.best, 2),
            "face_ids": list(self.face_ids),
        }


@dataclass(frozen=True)
class QueryFace:
    """One face of the sample photo and its matches, best first."""

    box: list[float]
    score: float
    matches: list[Match] = field(default_factory=list)
    quality: FaceQuality | None = None
    """How usable the sample's face is (a blurred or tiny one matches poorly)."""
    gallery: int = 0
    """Faces searched (of the pack, of the source asked for, that pass the quality gate)."""
    threshold: float = 85.0
    expected_strangers: float = 0.0
    """Strangers expected among the matches at ``threshold`` in a gallery this size."""
    people: tuple[PersonMatches, ...] = ()
    """Matches of named or confirmed people, grouped, most similar person first."""
    complete: bool = False
    """Every match at or above the threshold is here (not only the top K)."""

    @property
    def loose(self) -> list[Match]:
        """Matches that belong to no named or confirmed person."""
        return [m for m in self.matches if m.person_id is None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": self.box,
            "score": round(self.score, 4),
            "matches": [m.to_dict() for m in self.matches],
            "quality": None if self.quality is None else self.quality.to_dict(),
            "gallery": self.gallery,
            "threshold": self.threshold,
            "expected_strangers": round(self.expected_strangers, 4),
            "complete": self.complete,
            "people": [p.to_dict() for p in self.people],
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


def resolve_top_k(top_k: TopK, settings: WorkbenchSettings) -> int | None:
    """The number of matches per face asked for (None: every one)."""
    if isinstance(top_k, _Setting):
        return settings.search.top_k
    if top_k is not None and not 1 <= top_k <= MAX_FETCH:
        raise WorkbenchError(
            f"top_k {top_k} is out of range: ask for 1 to {MAX_FETCH} matches, or None for "
            "every match above the threshold"
        )
    return top_k


class _Answers:
    """Turns index hits into matches: catalog rows, the gate, copies, people."""

    def __init__(
        self, store: FaceStore, pack: str, gate: QualitySettings | None, threshold: float
    ) -> None:
        self.store, self.pack, self.gate, self.threshold = store, pack, gate, threshold

    def searchable(self, row: Face) -> bool:
        return self.gate is None or not reasons(row, self.gate)

    def fetch(
        self,
        collection: str,
        queries: NDArray[np.float32],
        top_k: int | None,
        min_cosine: float,
        source: str | None,
        exclude_photo: int | None = None,
    ) -> list[tuple[list[tuple[VectorHit, Face]], bool]]:
        """Per query: the (hit, row) pairs that pass, best first, and whether they are all."""
        index = self.store.searcher(collection)
        if top_k is None:
            hits = index.search_range(
                collection, queries, min_cosine, source=source, pack=self.pack
            )
            return [(self._keep(h, min_cosine, exclude_photo), True) for h in hits]
        out = []
        for q in queries:
            want = top_k + (16 if self.gate is not None or exclude_photo is not None else 0)
            while True:
                hits = index.search(
                    collection, q[None, :], min(want, MAX_FETCH), source=source, pack=self.pack
                )[0]
                kept = self._keep(hits, min_cosine, exclude_photo)
                exhausted = len(hits) < min(want, MAX_FETCH) or (
                    bool(hits) and hits[-1].score < min_cosine
                )
                if len(kept) >= top_k or exhausted or want >= MAX_FETCH:
                    out.append((kept[:top_k], exhausted and len(kept) <= top_k))
                    break
                want *= 4
        return out

    def _keep(
        self, hits: Sequence[VectorHit], min_cosine: float, exclude_photo: int | None
    ) -> list[tuple[VectorHit, Face]]:
        rows = self.store.catalog.faces_by_ids([h.face_id for h in hits])
        kept = []
        for h in hits:
            row = rows.get(h.face_id)  # None: the index is ahead of a deleted photo
            if row is None or h.score < min_cosine or row.photo_id == exclude_photo:
                continue
            if self.searchable(row):
                kept.append((h, row))
        return kept

    def matches(
        self, found: list[tuple[VectorHit, Face]], calibration: Calibration
    ) -> tuple[list[Match], tuple[PersonMatches, ...]]:
        """Matches of one query face, and its people."""
        catalog = self.store.catalog
        photo_ids = {row.photo_id for _, row in found}
        photos = catalog.photos_by_ids(sorted(photo_ids))
        copies = catalog.copies_of(sorted(photo_ids))
        people = _people_of(self.store, self.pack, [row.id for _, row in found])
        out = []
        for h, row in found:
            photo = photos[row.photo_id]
            person = people.get(row.id)
            out.append(
                Match(
                    photo.uri,
                    photo.source,
                    h.face_id,
                    photo.id,
                    _round(row.box),
                    float(calibration.percent(h.score)),
                    h.score,
                    person_id=None if person is None else person[0],
                    person=None if person is None else person[1],
                    also_at=tuple(copies.get(photo.id, ())),
                )
            )
        return out, _group(out)


def _people_of(
    store: FaceStore, pack: str, face_ids: list[int]
) -> dict[int, tuple[int, str | None]]:
    """Face id → (person id, name) for faces of named or confirmed, visible people."""
    if not face_ids:
        return {}
    from workbench.analysis.people import People

    people = People(store.catalog, pack)
    of = {f: p for f, p in people.person_of(face_ids).items() if p is not None}
    if not of:
        return {}
    shown = {p.id: p for p in people.infos(sorted(set(of.values())))}
    return {
        f: (p, shown[p].name)
        for f, p in of.items()
        if p in shown and not shown[p].hidden and (shown[p].name or shown[p].confirmed)
    }


def _group(matches: list[Match]) -> tuple[PersonMatches, ...]:
    groups: dict[int, list[Match]] = {}
    for m in matches:
        if m.person_id is not None:
            groups.setdefault(m.person_id, []).append(m)
    out = [
        PersonMatches(
            pid,
            ms[0].person,
            tuple(m.face_id for m in ms),
            len({m.photo_id for m in ms}),
            max(m.similarity for m in ms),
        )
        for pid, ms in groups.items()
    ]
    return tuple(sorted(out, key=lambda g: (-g.best, g.person_id)))


def gallery_size(
    store: FaceStore, pack: str, source: str | None, gate: QualitySettings | None
) -> int:
    """Faces a search of ``pack`` looks at: of ``source`` when given, passing ``gate``.

    A count over every face of the pack (0.12 s at 100k faces, most of a search), so
    an embedded home keeps it until the catalog changes (`ExactIndex.memo`)."""

    def count() -> int:
        return store.catalog.count_searchable(pack, source, gate)

    if store.exact is None:
        return count()
    key = ("gallery_size", pack, source, None if gate is None else gate.model_dump_json())
    return int(store.exact.memo(key, count))


def search_sample(
    store: FaceStore,
    pack: ModelPack,
    calibration: Calibration,
    settings: WorkbenchSettings,
    image: ImageInput,
    top_k: TopK = SETTINGS_TOP_K,
    threshold: float | None = None,
    source: str | None = None,
    include_low_quality: bool = False,
) -> list[QueryFace]:
    """Matches at or above ``threshold`` % for every face in ``image``, among ``pack``'s faces.

    ``top_k``: matches per face (default: the settings' ``search.top_k``, 10); None for
    every match above the threshold. ``threshold``: the similarity % (default 85: one
    stranger in 100,000 faces; the search app's slider covers 70–95). Faces below the
    quality gate are left out unless ``include_low_quality``. Timed into
    ``workbench_search_seconds`` (decode and embed of the sample included).
    """
    with timed_search():
        k = resolve_top_k(top_k, settings)
        threshold = settings.search.resolve_threshold(threshold)
        sample = load_sample(image, settings.limits)
        pack = pack.load()
        faces = pack.analyze(sample.rgb)
        if not faces:
            return []
        gate = None if include_low_quality else settings.quality
        answers = _Answers(store, pack.name, gate, threshold)
        queries = np.stack([f.embedding for f in faces]).astype(np.float32)
        collection = store.collection_of(pack.name, pack.collection_name)
        min_cos = calibration.cosine_at(threshold)
        found = answers.fetch(collection, queries, k, min_cos, source)
        gallery = gallery_size(store, pack.name, source, gate)
        expected = calibration.expected_strangers(threshold, gallery)
        out: list[QueryFace] = []
        for face, (kept, complete) in zip(faces, found, strict=True):
            matches, people = answers.matches(kept, calibration)
            shown = face.scaled(sample.scale)  # in the sample's own pixels
            out.append(
                QueryFace(
                    _round(shown.detection.box),
                    shown.detection.score,
                    matches,
                    shown.quality,
                    gallery,
                    threshold,
                    expected,
                    people,
                    complete,
                )
            )
        return out


def search_face(
    store: FaceStore,
    calibration_of: CalibrationOf,
    settings: WorkbenchSettings,
    face_id: int,
    top_k: TopK = SETTINGS_TOP_K,
    threshold: float | None = None,
    include_low_quality: bool = False,
) -> list[Match]:
    """Faces of other photos matching the stored face ``face_id``, best first.

    Uses the stored vector, so no model runs (a gallery's "find similar"); the
    face's own pack, collection and calibration decide, whichever pack is open.
    ``top_k`` and ``threshold`` as in `search_sample`. Timed into
    ``workbench_search_seconds``.
    """
    with timed_search():
        k = resolve_top_k(top_k, settings)
        threshold = settings.search.resolve_threshold(threshold)
        face = store.catalog.faces_by_ids([face_id]).get(face_id)
        if face is None:
            raise WorkbenchError(f"face {face_id} is no longer in the catalog; reopen the photo")
        collection = store.pack_row(face.pack).collection
        cal = calibration_of(face.pack, store.index.index_spec(collection).metric)
        gate = None if include_low_quality else settings.quality
        answers = _Answers(store, face.pack, gate, threshold)
        found = answers.fetch(
            collection, face.vector()[None, :], k, cal.cosine_at(threshold), None, face.photo_id
        )
        matches, _ = answers.matches(found[0][0], cal)
        return matches


def _round(box: Any) -> list[float]:
    return [round(float(v), 1) for v in box]


__all__ = [
    "SETTINGS_TOP_K",
    "CalibrationOf",
    "ImageInput",
    "Match",
    "PersonMatches",
    "QueryFace",
    "TopK",
    "gallery_size",
    "load_sample",
    "resolve_top_k",
    "search_face",
    "search_sample",
]
