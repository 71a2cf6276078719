"""The HTTP API's request and response bodies: what `/openapi.json` publishes.

Each response model has the shape the same result's ``to_dict()`` gives the CLI's
``--json`` (a search answers exactly what ``workbench search --json`` prints), so
the models describe those documents rather than define new ones.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_ID = 2**62
"""Largest id a request may name (a catalog's integers are 64-bit)."""
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- search --------------------------------------------------------------------------
class SearchMatch(_Model):
    photo: str = Field(description="uri of the matched photo")
    source: str
    face_id: int
    photo_id: int
    box: list[float] = Field(description="x1, y1, x2, y2 in the photo's pixels")
    similarity: float = Field(
        description="similarity, %: 85 lets one stranger in 100,000 faces through, each 5 "
        "points between 70 and 95 a factor of ten"
    )
    cosine: float
    person_id: int | None = Field(description="the named or confirmed person of the face")
    person: str | None = Field(description="that person's name, if named")
    also_at: list[str] = Field(description="uris of the photo's recorded copies")


class FaceQualityOut(_Model):
    size: float = Field(description="shorter side of the face box, px")
    score: float
    sharpness: float
    yaw: float
    pitch: float
    roll: float


class PersonGroup(_Model):
    person_id: int
    name: str | None
    photos: int
    faces: int
    best_similarity: float
    face_ids: list[int] = Field(description="the person's matches, best first")


class SearchFace(_Model):
    box: list[float] = Field(description="the face in the sample, x1, y1, x2, y2")
    score: float = Field(description="detector confidence")
    matches: list[SearchMatch]
    quality: FaceQualityOut | None = Field(description="how usable the sample's face is")
    gallery: int = Field(description="faces searched")
    threshold: float = Field(description="the similarity % used")
    expected_strangers: float = Field(
        description="strangers expected among the matches at this threshold in this gallery"
    )
    complete: bool = Field(description="every match at or above the threshold is listed")
    people: list[PersonGroup] = Field(description="matches of named or confirmed people")


# ---- photos --------------------------------------------------------------------------
class PhotoFilter(_Model):
    source: str | None
    origin: str | None
    status: str
    person_id: int | None
    pack: str | None
    date_from: str | None
    date_to: str | None


class PhotoItem(_Model):
    id: int
    sha256: str | None
    uri: str
    source: str
    origin: str
    status: str = Field(description="the catalog's: done, no_faces, error, pending, duplicate")
    category: str = Field(description="the gallery's: faces, no_faces, errors, pending")
    n_faces: int
    width: int | None
    height: int | None
    error: str | None
    date: str | None
    provenance: dict[str, Any]
    name: str


class PhotoPage(_Model):
    items: list[PhotoItem]
    total: int
    page: int
    pages: int
    page_size: int
    filter: PhotoFilter


class FaceInPhoto(_Model):
    id: int
    box: list[float]
    score: float
    landmarks: list[float]
    person_id: int | None
    person_name: str | None
    cluster: int | None
    quality: dict[str, float] | None = Field(
        description="size (px), sharpness, yaw, pitch, roll; null if measured before quality was"
    )
    below_gate: list[str] = Field(
        description="why the face is left out of search and clustering (empty: it is not)"
    )


class PhotoDetail(_Model):
    id: int
    sha256: str | None
    uri: str
    source: str
    origin: str
    status: str
    error: str | None
    width: int | None
    height: int | None
    format: str | None
    size_bytes: int | None
    date: str | None
    created_at: str
    pack: str | None
    packs: list[str]
    faces: list[FaceInPhoto]
    provenance: dict[str, Any]
    name: str
    copies: list[str] = Field(description="uris of the photo's recorded copies (also at)")
    duplicate_of: int | None = Field(description="for a copy: the photo it copies")


# ---- people --------------------------------------------------------------------------
class Person(_Model):
    id: int
    name: str | None
    faces: int
    photos: int
    hidden: bool
    confirmed: bool


class PersonDetail(Person):
    face_ids: list[int]


class PeoplePage(_Model):
    items: list[Person]
    total: int
    page: int
    pages: int
    page_size: int


class NameRequest(_Model):
    name: str | None = Field(max_length=300, description="the name; null or empty un-names")


class MergeRequest(_Model):
    people: list[Id] = Field(
        min_length=1, max_length=1000, description="people merged into this one"
    )
    name: str | None = Field(None, max_length=300, description="the result's name")


class HideRequest(_Model):
    hidden: bool = True


# ---- ingest jobs ---------------------------------------------------------------------
class IngestRequest(_Model):
    sources: list[str] = Field(
        min_length=1,
        max_length=100,
        description="files, folders and zip archives under the API's roots "
        "(WORKBENCH_API__ROOTS), Yandex.Disk links (yadisk:...) and VK albums (vk:...)",
    )
    source: str | None = Field(None, description="source label stored with the photos")


class JobProgress(_Model):
    done: int
    total: int | None = Field(description="photos listed; null until the sources are listed")


class JobError(_Model):
    uri: str
    error: str


class Job(_Model):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    where: Literal["process", "broker"]
    sources: list[str]
    source: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: JobProgress
    counts: dict[str, int]
    errors: list[JobError]
    error: str | None
    run_id: int | None


# ---- stats and health ------------------------------------------------------------------
class SourceStatusCount(_Model):
    source: str
    status: str
    photos: int


class PackState(_Model):
    pack: str
    collection: str
    catalog_faces: int
    index_vectors: int
    agree: bool


class Stats(_Model):
    photos: int
    faces: int
    by_source_status: list[SourceStatusCount]
    packs: list[PackState]
    agree: bool


class Health(_Model):
    status: Literal["ok"]
    version: str


class Problem(BaseModel):
    """An error, as RFC 9457 ``application/problem+json``."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        None, description="for a request that failed validation: what was wrong, field by field"
    )


__all__ = [
    "HideRequest",
    "IngestRequest",
    "Job",
    "MergeRequest",
    "NameRequest",
    "PeoplePage",
    "Person",
    "PersonDetail",
    "PhotoDetail",
    "PhotoPage",
    "Problem",
    "SearchFace",
    "Stats",
]
