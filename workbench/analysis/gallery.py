"""The gallery's queries: pages of photos under filters, facet counts, one photo's faces.

What the gallery app (and anything that pages through photos) calls; it
returns plain dataclasses with ``to_dict()`` and never a widget. Every query
is SQLAlchemy 2 Core over the catalog and portable between SQLite and
PostgreSQL (the one dialect-specific expression, a timestamp's UTC day, is
compiled per dialect).

>>> from workbench.analysis.gallery import GalleryFilter, facets, gallery_page, photo_detail
>>> page = gallery_page(wb.catalog, GalleryFilter(status="faces", origin="vk"), page=1)
>>> page.total, page.pages, [item.uri for item in page.items][:2]   # doctest: +SKIP
>>> facets(wb.catalog, GalleryFilter(origin="vk")).status          # doctest: +SKIP
{'all': 812, 'faces': 640, 'no_faces': 150, 'errors': 2, 'pending': 20}
>>> photo_detail(wb.catalog, page.items[0].id).faces[0].person_name  # doctest: +SKIP

Conventions:

* **Order**: newest registered first (photo id descending). Ids only grow
  (the table never reuses one), the primary key serves the order, and a page
  stays where it was while older photos are re-analysed. Sorting by date would
  need a scan and a sort of every matching row on each page change.
* **Pages** are numbered from 1. A page past the end is empty (``total`` and
  ``pages`` still say what there is); ``pages`` is 0 when nothing matches.
* **Status categories** split the photos in four, with no overlap:
  ``faces`` (catalog status ``done``), ``no_faces`` (``no_faces``),
  ``errors`` (``error``: unreadable or undecodable) and ``pending``
  (``pending``: registered, not yet analysed); ``all`` is their union.
  Without a pack these are the photo's own status, the verdict of the last
  pack that analysed it. With ``pack``, they are that pack's verdict:
  ``faces`` = the pack has faces in the photo, ``no_faces`` = it analysed the
  photo and found none, ``pending`` = it has not analysed the photo yet;
  ``errors`` stay photo-level (an unreadable photo is unreadable for every
  pack), and an error takes precedence over an older verdict.
* **Date** is the day the photo was taken as its source recorded it (the
  ``date`` the Yandex.Disk and VK sources write into the metadata: EXIF date
  taken, else the service's photo date; the day as written there, in the
  photo's own time zone), else the UTC day it was registered (``created_at``):
  local files and zip members carry no date today.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from workbench.analysis.gallery_sql import (
    CATEGORY_OF_STATUS,
    STATUS_CATEGORIES,
    StatusCategory,
    category_expr,
    day_expr,
    status_condition,
)
from workbench.errors import ConfigurationError, NotFoundError
from workbench.faces.quality import reasons
from workbench.redaction import redact_value
from workbench.settings import QualitySettings
from workbench.store.catalog import Catalog
from workbench.store.models import Face, FacePerson, Person, Photo, as_utc

ORIGINS: tuple[str, ...] = ("local", "zip", "yadisk", "vk")
"""Origins the sources write: local files, zip members, Yandex.Disk, VK."""
DEFAULT_PAGE_SIZE = 48
MAX_PAGE_SIZE = 1000


# ---- filters -----------------------------------------------------------------------
@dataclass(frozen=True)
class GalleryFilter:
    """Which photos a gallery shows; ``None`` (and ``status="all"``) keeps all.

    ``source``: the source name (``photos.source``: ``local``, ``family``,
    ``vk:album/-1_2``, ...). ``origin``: one of `ORIGINS`. ``status``: one of
    `STATUS_CATEGORIES` (see the module notes). ``person_id``: photos with a
    face assigned to that person (people belong to one pack). ``pack``: whose
    verdicts the status categories and face counts are. ``date_from`` /
    ``date_to``: the photo's day (module notes), both ends included.
    """

    source: str | None = None
    origin: str | None = None
    status: StatusCategory = "all"
    person_id: int | None = None
    pack: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUS_CATEGORIES:
            raise ConfigurationError(
                f"status {self.status!r} is not one of {', '.join(STATUS_CATEGORIES)}"
            )
        if self.origin is not None and self.origin not in ORIGINS:
            raise ConfigurationError(
                f"origin {self.origin!r} is not one of {', '.join(ORIGINS)} (the source's kind; "
                "filter by `source` for a source's name)"
            )
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dt.date):
                raise ConfigurationError(f"{name} must be a datetime.date, got {value!r}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ConfigurationError(
                f"date_from {self.date_from} is after date_to {self.date_to}; swap them"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("date_from", "date_to"):
            d[name] = d[name].isoformat() if d[name] else None
        return d


# ---- results -----------------------------------------------------------------------
@dataclass(frozen=True)
class GalleryItem:
    """One photo of a gallery page (a `thumbnails.CatalogPhoto`: it can be thumbnailed).

    ``status`` is the catalog's (``done``, ``no_faces``, ``error``,
    ``pending``); ``category`` the gallery's (for the filter's pack, if any);
    ``n_faces`` counts the filter pack's faces (else the last verdict's).
    """

    id: int
    sha256: str | None
    uri: str
    source: str
    origin: str
    status: str
    category: str
    n_faces: int
    width: int | None
    height: int | None
    error: str | None
    date: dt.date | None
    meta: dict[str, Any] = field(default_factory=dict)
    """Provenance the source recorded (path or archive member, album, original URL, ...)."""

    @property
    def name(self) -> str:
        """The last part of the uri (file, archive member or page), for captions."""
        return _short_name(self.uri)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["date"] = self.date.isoformat() if self.date else None
        d["provenance"] = d.pop("meta")
        d["name"] = self.name
        return d


@dataclass(frozen=True)
class GalleryPage:
    """One page of a filtered gallery: ``items`` of ``total`` photos, page ``page`` of ``pages``."""

    items: list[GalleryItem]
    total: int
    page: int
    pages: int
    page_size: int
    filter: GalleryFilter

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [i.to_dict() for i in self.items],
            "total": self.total,
            "page": self.page,
            "pages": self.pages,
            "page_size": self.page_size,
            "filter": self.filter.to_dict(),
        }


@dataclass(frozen=True)
class Facets:
    """Photo counts for the filter dropdowns.

    Each facet counts under every filter but its own (``status`` ignores the
    filter's status, ``source`` its source, ``origin`` its origin), so each
    option shows how many photos choosing it would give. ``status`` always has
    every category of `STATUS_CATEGORIES` (``all`` is their sum); ``source``
    and ``origin`` only values that have photos, by name. ``total``: photos
    under the whole filter (what `gallery_page` would count).
    """

    status: dict[str, int]
    source: dict[str, int]
    origin: dict[str, int]
    total: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FaceDetail:
    """One face of a photo: box and landmarks in upright-photo pixels, and its person."""

    id: int
    box: list[float]
    score: float
    landmarks: list[float]
    person_id: int | None
    person_name: str | None
    cluster: int | None
    """Cluster of the last clustering run (``-1`` noise, ``None`` never clustered)."""
    quality: dict[str, float] | None = None
    """size, sharpness, yaw, pitch, roll (None: measured before quality was)."""
    below_gate: list[str] = field(default_factory=list)
    """Why the face is left out of search and clustering (empty: it is not)."""

    @property
    def label(self) -> str | None:
        """What to write beside the box: the name, else ``person N``, else nothing."""
        if self.person_id is None:
            return None
        return self.person_name or f"person {self.person_id}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PhotoDetail:
    """One photo with every face a pack found in it (a `thumbnails.CatalogPhoto`).

    ``pack`` is the pack whose faces these are (the asked one, else the last
    pack that analysed the photo; ``None`` for a photo no pack analysed);
    ``packs`` every pack with faces in the photo.
    """

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
    date: dt.date | None
    created_at: dt.datetime
    pack: str | None
    packs: list[str]
    faces: list[FaceDetail]
    meta: dict[str, Any] = field(default_factory=dict)
    copies: list[str] = field(default_factory=list)
    """Uris of the photo's recorded copies (resized or re-encoded), shown as "also at"."""
    duplicate_of: int | None = None
    """The photo this one is a copy of (its faces are that photo's)."""

    @property
    def name(self) -> str:
        return _short_name(self.uri)

    @property
    def boxes(self) -> list[list[float]]:
        return [f.box for f in self.faces]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["date"] = self.date.isoformat() if self.date else None
        d["created_at"] = as_utc(self.created_at).isoformat()
        d["provenance"] = d.pop("meta")
        d["name"] = self.name
        d["faces"] = [f.to_dict() for f in self.faces]
        return d


# ---- queries -----------------------------------------------------------------------
def gallery_page(
    catalog: Catalog,
    flt: GalleryFilter | None = None,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> GalleryPage:
    """Page ``page`` (from 1) of the photos matching ``flt``, newest registered first.

    One count query and one page query, in one transaction (the two agree);
    a page past the end is empty and costs only the count. ``page_size`` is
    1–1000 (default 48). Raises `WorkbenchError` for an unknown person and
    `ConfigurationError` for a person of another pack than ``flt.pack``.
    """
    flt = flt or GalleryFilter()
    if not isinstance(page, int) or page < 1:
        raise ConfigurationError(f"page must be a whole number from 1, got {page!r}")
    if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ConfigurationError(f"page_size must be 1–{MAX_PAGE_SIZE}, got {page_size!r}")
    offset = (page - 1) * page_size
    with catalog.session() as s:
        _check_person(s, flt)
        where = _conditions(flt)
        total = int(s.scalar(select(func.count()).select_from(Photo).where(*where)) or 0)
        rows = []
        if offset < total:
            q = _item_query(flt).where(*where).order_by(Photo.id.desc())
            rows = s.execute(q.offset(offset).limit(page_size)).all()
    return GalleryPage(
        items=[_item(r, flt.pack) for r in rows],
        total=total,
        page=page,
        pages=math.ceil(total / page_size),
        page_size=page_size,
        filter=flt,
    )


def facets(catalog: Catalog, flt: GalleryFilter | None = None) -> Facets:
    """Counts per status category, source and origin under ``flt`` (see `Facets`).

    One GROUP BY query (category × source × origin, under the filters that
    are no facet: person, pack, dates) in one scan; each facet is then summed
    from its groups in Python, leaving out its own filter.
    """
    flt = flt or GalleryFilter()
    with catalog.session() as s:
        _check_person(s, flt)
        category = category_expr(flt.pack)
        groups = s.execute(
            select(category, Photo.source, Photo.origin, func.count())
            .select_from(Photo)
            .where(*_conditions(flt, skip=("status", "source", "origin")))
            .group_by(category, Photo.source, Photo.origin)
        ).all()
    status = dict.fromkeys(STATUS_CATEGORIES, 0)
    source: dict[str, int] = {}
    origin: dict[str, int] = {}
    for cat, src, org, n in groups:
        key = CATEGORY_OF_STATUS.get(cat, cat) if flt.pack is None else cat
        ok_status = flt.status == "all" or key == flt.status
        ok_source = flt.source is None or src == flt.source
        ok_origin = flt.origin is None or org == flt.origin
        if ok_source and ok_origin:
            status[key] = status.get(key, 0) + int(n)
        if ok_status and ok_origin:
            source[src] = source.get(src, 0) + int(n)
        if ok_status and ok_source:
            origin[org] = origin.get(org, 0) + int(n)
    status["all"] = sum(n for k, n in status.items() if k != "all")
    return Facets(
        status=status,
        source=dict(sorted(source.items())),
        origin=dict(sorted(origin.items())),
        total=status[flt.status],
    )


def photo_detail(
    catalog: Catalog,
    photo_id: int,
    pack: str | None = None,
    gate: QualitySettings | None = None,
) -> PhotoDetail:
    """The photo and every face of ``pack`` in it (default: the last pack that analysed it),
    each with its person, quality and — under ``gate`` — why it is left out of search;
    faces in id order. Raises `WorkbenchError` for an unknown id."""
    with catalog.session() as s:
        photo = s.get(Photo, photo_id)
        if photo is None:
            raise NotFoundError(
                f"no photo with id {photo_id} in the catalog; a gallery page lists the ids"
            )
        used = pack or photo.pack
        packs = list(
            s.scalars(
                select(Face.pack).where(Face.photo_id == photo_id).distinct().order_by(Face.pack)
            )
        )
        rows = []
        if used is not None:
            rows = s.execute(
                select(
                    Face.id,
                    Face.x1,
                    Face.y1,
                    Face.x2,
                    Face.y2,
                    Face.score,
                    Face.landmarks,
                    FacePerson.person_id,
                    Person.name,
                    FacePerson.cluster,
                    Face.size,
                    Face.sharpness,
                    Face.yaw,
                    Face.pitch,
                    Face.roll,
                )
                .outerjoin(FacePerson, FacePerson.face_id == Face.id)
                .outerjoin(Person, Person.id == FacePerson.person_id)
                .where(Face.photo_id == photo_id, Face.pack == used)
                .order_by(Face.id)
            ).all()
    faces = [
        FaceDetail(
            id=r.id,
            box=[float(r.x1), float(r.y1), float(r.x2), float(r.y2)],
            score=float(r.score),
            landmarks=[float(v) for v in r.landmarks or []],
            person_id=r.person_id,
            person_name=r.name,
            cluster=r.cluster,
            quality=None
            if r.size is None
            else {k: getattr(r, k) for k in ("size", "sharpness", "yaw", "pitch", "roll")},
            below_gate=[] if gate is None else reasons(r, gate),
        )
        for r in rows
    ]
    copies = catalog.copies_of([photo_id]).get(photo_id, [])
    return PhotoDetail(
        id=photo.id,
        sha256=photo.sha256,
        uri=photo.uri,
        source=photo.source,
        origin=photo.origin,
        status=photo.status,
        error=photo.error,
        width=photo.width,
        height=photo.height,
        format=photo.format,
        size_bytes=photo.size_bytes,
        date=photo_day(photo.meta, photo.created_at),
        created_at=as_utc(photo.created_at),
        pack=used,
        packs=packs,
        faces=faces,
        meta=redact_value(dict(photo.meta or {})),
        copies=copies,
        duplicate_of=photo.duplicate_of,
    )


def photo_day(meta: dict[str, Any] | None, created_at: dt.datetime | None) -> dt.date | None:
    """The photo's day as the gallery filters it: metadata ``date`` as written, else the
    UTC day of ``created_at`` (the same rule as the SQL of `gallery_page`)."""
    text = (meta or {}).get("date")
    if isinstance(text, str) and text:
        return _parse_day(text[:10])
    return as_utc(created_at).date() if created_at is not None else None


def _conditions(flt: GalleryFilter, skip: tuple[str, ...] = ()) -> list[ColumnElement[bool]]:
    """WHERE clauses of ``flt``, leaving out the facets in ``skip`` (status, source, origin)."""
    # A photo's copies are shown once, with it ("also at"), never as photos of their own.
    where: list[ColumnElement[bool]] = [Photo.status != "duplicate"]
    if flt.source is not None and "source" not in skip:
        where.append(Photo.source == flt.source)
    if flt.origin is not None and "origin" not in skip:
        where.append(Photo.origin == flt.origin)
    if flt.status != "all" and "status" not in skip:
        where.append(status_condition(flt.status, flt.pack))
    if flt.person_id is not None:
        with_person = (
            select(Face.photo_id)
            .join(FacePerson, FacePerson.face_id == Face.id)
            .where(FacePerson.person_id == flt.person_id)
        )
        where.append(Photo.id.in_(with_person))
    if flt.date_from is not None or flt.date_to is not None:
        day = day_expr()
        if flt.date_from is not None:
            where.append(day >= flt.date_from.isoformat())
        if flt.date_to is not None:
            where.append(day <= flt.date_to.isoformat())
    return where


def _item_query(flt: GalleryFilter) -> Any:
    if flt.pack is None:
        n_faces: Any = Photo.n_faces
    else:
        n_faces = (
            select(func.count(Face.id))
            .where(Face.photo_id == Photo.id, Face.pack == flt.pack)
            .scalar_subquery()
        )
    return select(
        Photo.id,
        Photo.sha256,
        Photo.uri,
        Photo.source,
        Photo.origin,
        Photo.status,
        category_expr(flt.pack).label("category"),
        n_faces.label("n_faces"),
        Photo.width,
        Photo.height,
        Photo.error,
        day_expr().label("day"),
        Photo.meta,
    )


def _item(r: Any, pack: str | None) -> GalleryItem:
    return GalleryItem(
        id=r.id,
        sha256=r.sha256,
        uri=r.uri,
        source=r.source,
        origin=r.origin,
        status=r.status,
        category=CATEGORY_OF_STATUS.get(r.category, r.category) if pack is None else r.category,
        n_faces=int(r.n_faces or 0),
        width=r.width,
        height=r.height,
        error=r.error,
        date=_parse_day(r.day),
        meta=redact_value(dict(r.meta or {})),
    )


def _check_person(s: Session, flt: GalleryFilter) -> None:
    """An unknown person, or one of another pack, is a mistake to say, not an empty page."""
    if flt.person_id is None:
        return
    person = s.get(Person, flt.person_id)
    if person is None:
        raise NotFoundError(
            f"no person with id {flt.person_id} in the catalog; `workbench people list` "
            "shows the people there are"
        )
    if flt.pack is not None and person.pack != flt.pack:
        raise ConfigurationError(
            f"person {flt.person_id} is a person of pack {person.pack!r}, not {flt.pack!r}; "
            "leave the pack out or choose a person of that pack"
        )


# ---- small helpers -----------------------------------------------------------------
def _parse_day(text: str | None) -> dt.date | None:
    """A ``YYYY-MM-DD`` day, or None for anything else (a malformed metadata date)."""
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None


def _short_name(uri: str) -> str:
    tail = uri.rsplit("!", 1)[-1].rstrip("/")
    return tail.rsplit("/", 1)[-1] or uri


__all__ = [
    "ORIGINS",
    "STATUS_CATEGORIES",
    "FaceDetail",
    "Facets",
    "GalleryFilter",
    "GalleryItem",
    "GalleryPage",
    "PhotoDetail",
    "StatusCategory",
    "day_expr",
    "facets",
    "gallery_page",
    "photo_day",
    "photo_detail",
]
