"""`workbench.analysis.gallery` on a real 20,000-photo SQLite catalog, and
`workbench.imaging.thumbnails` on generated photos (register-only ingests: no model is loaded).

The catalog is synthetic but written with the catalog's own tables, and every
expectation is computed in Python from the same generated rows.
`build_synthetic_catalog` is also what `benchmarks/bench_gallery_data.py` times.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql

from workbench.analysis.gallery import (
    GalleryFilter,
    GalleryItem,
    _conditions,
    _item_query,
    facets,
    gallery_page,
    photo_day,
    photo_detail,
)
from workbench.analysis.gallery_sql import STATUS_CATEGORIES
from workbench.analysis.people import People
from workbench.errors import ConfigurationError, WorkbenchError
from workbench.imaging.thumbnails import (
    BOX_COLOUR,
    HIGHLIGHT_COLOUR,
    ThumbnailCache,
    ThumbnailError,
    draw_boxes,
)
from workbench.settings import WorkbenchSettings
from workbench.store.catalog import Catalog
from workbench.store.models import Analysis, Face, FacePerson, Person, Photo

pytestmark = pytest.mark.unit

N_PHOTOS = 20_000
SOURCES = (
    ("family", "local"),
    ("archive", "zip"),
    ("yadisk:https://disk.yandex.ru/d/KEY", "yadisk"),
    ("vk:album/-1_2", "vk"),
)
STATUSES = ("done", "no_faces", "error", "pending")
CATEGORY = {"done": "faces", "no_faces": "no_faces", "error": "errors", "pending": "pending"}
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
MSK = dt.timezone(dt.timedelta(hours=3))
N_PEOPLE = 50
DLIB_PERSON = N_PEOPLE + 1


# ---- the synthetic catalog ---------------------------------------------------------
@dataclass
class SynthPhoto:
    id: int
    source: str
    origin: str
    status: str
    n_faces: int
    day: dt.date
    people: set[int] = field(default_factory=set)
    dlib: str = "pending"
    """The photo's category for the `dlib` pack."""
    dlib_faces: int = 0


@dataclass
class Synthetic:
    catalog: Catalog
    photos: list[SynthPhoto]

    def ids(self, keep: Callable[[SynthPhoto], bool]) -> set[int]:
        return {p.id for p in self.photos if keep(p)}


def build_synthetic_catalog(
    path: Path | None, n: int = N_PHOTOS, seed: int = 0, url: str | None = None
) -> Synthetic:
    """A catalog of ``n`` photos across the four origins and every status: a SQLite
    file at ``path``, or an empty database at ``url`` (PostgreSQL, say).

    Pack ``local`` analysed every done / no-faces photo (1–3 faces on done
    ones); pack ``dlib`` analysed every fifth of them and found one face in
    every tenth. 50 people of ``local`` hold the first face of the done
    photos with three faces (the first face of those with one is noise);
    person 51 (``dlib``) the dlib faces of every twentieth photo.
    Remote photos carry a metadata date (+03:00) nine times in ten; the rest
    are dated by ``created_at`` (37 minutes apart from 2025-01-01 UTC).
    """
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, len(SOURCES), n)
    statuses = rng.choice(len(STATUSES), n, p=[0.6, 0.2, 0.1, 0.1])
    unreadable = rng.random(n) < 0.5
    dated = rng.random(n) < 0.9
    hours = rng.integers(0, 3 * 365 * 24, n)
    photo_rows: list[dict[str, Any]] = []
    face_rows: list[dict[str, Any]] = []
    analysis_rows: list[dict[str, Any]] = []
    face_people: list[dict[str, Any]] = []
    photos: list[SynthPhoto] = []
    face_id = 0
    for k in range(n):
        i = k + 1
        source, origin = SOURCES[kinds[k]]
        status = STATUSES[statuses[k]]
        sha = None if status == "error" and unreadable[k] else f"{i:064x}"
        created = T0 + dt.timedelta(minutes=37 * i)
        uri, meta = _uri_meta(i, origin)
        if origin in ("yadisk", "vk") and dated[k]:
            meta["date"] = (
                dt.datetime(2019, 1, 1, tzinfo=MSK) + dt.timedelta(hours=int(hours[k]))
            ).isoformat()
        analysed = status in ("done", "no_faces")
        n_faces = 1 + i % 3 if status == "done" else 0
        photo_rows.append(
            {
                "id": i,
                "sha256": sha,
                "source": source,
                "origin": origin,
                "uri": uri,
                "size_bytes": None if sha is None else 1000 + i,
                "width": None if sha is None else 1600,
                "height": None if sha is None else 1200,
                "format": None if sha is None else "JPEG",
                "status": status,
                "error": f"cannot read: broken {i}" if status == "error" else None,
                "pack": "local" if analysed else None,
                "n_faces": n_faces,
                "meta": meta,
                "created_at": created,
                "updated_at": created,
            }
        )
        sp = SynthPhoto(i, source, origin, status, n_faces, photo_day(meta, created))
        sp.dlib = "errors" if status == "error" else "pending"
        if analysed:
            analysis_rows.append({"photo_id": i, "pack": "local", "n_faces": n_faces})
        for j in range(n_faces):
            face_id += 1
            face_rows.append(_face(face_id, i, "local", j))
            if j == 0 and i % 3 == 2:
                person = (i // 3) % N_PEOPLE + 1
                face_people.append(_assign(face_id, "local", person - 1, person))
                sp.people.add(person)
            elif j == 0 and i % 3 == 0:
                face_people.append(_assign(face_id, "local", -1, None))
        if analysed and i % 5 == 0:
            sp.dlib_faces = 1 if i % 10 == 0 else 0
            sp.dlib = "faces" if sp.dlib_faces else "no_faces"
            analysis_rows.append({"photo_id": i, "pack": "dlib", "n_faces": sp.dlib_faces})
            if sp.dlib_faces:
                face_id += 1
                face_rows.append(_face(face_id, i, "dlib", 0))
                if i % 20 == 0:
                    face_people.append(_assign(face_id, "dlib", 0, DLIB_PERSON))
                    sp.people.add(DLIB_PERSON)
        photos.append(sp)
    catalog = Catalog(url or f"sqlite:///{path}")
    people = [{"id": p, "pack": "local", "name": None} for p in range(1, N_PEOPLE + 1)]
    people.append({"id": DLIB_PERSON, "pack": "dlib", "name": "Dee Lib"})
    # ORM bulk inserts: rows keyed by attribute (``meta`` is the ``metadata`` column).
    with catalog.session.begin() as s:
        for table, rows in (
            (Photo, photo_rows),
            (Analysis, analysis_rows),
            (Face, face_rows),
            (Person, people),
            (FacePerson, face_people),
        ):
            s.execute(insert(table), rows)
    return Synthetic(catalog, photos)


def _uri_meta(i: int, origin: str) -> tuple[str, dict[str, Any]]:
    name = f"img_{i:05d}.jpg"
    if origin == "local":
        return f"/photos/family/{name}", {"path": f"/photos/family/{name}"}
    if origin == "zip":
        return f"/photos/archive.zip!{name}", {"archive": "/photos/archive.zip", "member": name}
    if origin == "yadisk":
        url = f"https://disk.yandex.ru/d/KEY/{name}"
        return url, {"service": "yadisk", "public_key": "https://disk.yandex.ru/d/KEY"}
    return f"https://vk.com/photo-1_{i}", {"service": "vk", "service_id": f"-1_{i}"}


def _face(face_id: int, photo_id: int, pack: str, j: int) -> dict[str, Any]:
    return {
        "id": face_id,
        "photo_id": photo_id,
        "pack": pack,
        "x1": 100.0 * j + 10,
        "y1": 50.0,
        "x2": 100.0 * j + 90,
        "y2": 150.0,
        "landmarks": [float(v) for v in range(10)],
        "score": 0.9 - j / 10,
        "embedding": bytes(16),
        "indexed": True,
    }


def _assign(face_id: int, pack: str, cluster: int, person: int | None) -> dict[str, Any]:
    return {"face_id": face_id, "pack": pack, "cluster": cluster, "person_id": person}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthetic]:
    data = build_synthetic_catalog(tmp_path_factory.mktemp("gallery") / "catalog.sqlite")
    People(data.catalog, "local").name(1, "Ada Lovelace")  # the catalog's own correction path
    yield data
    data.catalog.close()


def all_ids(catalog: Catalog, flt: GalleryFilter) -> list[int]:
    """Every id the filter pages through, page after page (1000 a page)."""
    out: list[int] = []
    page = 1
    while True:
        got = gallery_page(catalog, flt, page, page_size=1000)
        out.extend(item.id for item in got.items)
        if page >= got.pages:
            return out
        page += 1


# ---- paging ------------------------------------------------------------------------
def test_first_page_is_the_newest_photos(synth: Synthetic) -> None:
    page = gallery_page(synth.catalog, GalleryFilter())
    assert (page.total, page.page, page.page_size) == (N_PHOTOS, 1, 48)
    assert page.pages == math.ceil(N_PHOTOS / 48) == 417
    assert [i.id for i in page.items] == list(range(N_PHOTOS, N_PHOTOS - 48, -1))


def test_last_partial_page_and_beyond(synth: Synthetic) -> None:
    last = gallery_page(synth.catalog, GalleryFilter(), page=417)
    assert len(last.items) == N_PHOTOS - 416 * 48 == 32
    assert [i.id for i in last.items] == list(range(32, 0, -1))
    beyond = gallery_page(synth.catalog, GalleryFilter(), page=418)
    assert (beyond.items, beyond.total, beyond.pages, beyond.page) == ([], N_PHOTOS, 417, 418)


def test_exact_pages_have_no_empty_tail(synth: Synthetic) -> None:
    page = gallery_page(synth.catalog, GalleryFilter(), page=20, page_size=1000)
    assert (page.pages, len(page.items), page.items[-1].id) == (20, 1000, 1)


def test_empty_result(synth: Synthetic) -> None:
    page = gallery_page(synth.catalog, GalleryFilter(source="nowhere"))
    assert (page.items, page.total, page.pages) == ([], 0, 0)
    assert facets(synth.catalog, GalleryFilter(source="nowhere")).total == 0


def test_pages_cover_every_photo_once(synth: Synthetic) -> None:
    ids = all_ids(synth.catalog, GalleryFilter())
    assert ids == sorted(ids, reverse=True)
    assert set(ids) == {p.id for p in synth.photos} and len(ids) == N_PHOTOS


@pytest.mark.parametrize(("page", "size"), [(0, 48), (-1, 48), (1, 0), (1, 1001), (1.5, 48)])
def test_bad_paging_is_refused(synth: Synthetic, page: Any, size: Any) -> None:
    with pytest.raises(ConfigurationError):
        gallery_page(synth.catalog, GalleryFilter(), page, size)


def test_empty_catalog(tmp_path: Path) -> None:
    cat = Catalog(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    try:
        page = gallery_page(cat, GalleryFilter(status="faces"))
        assert (page.items, page.total, page.pages) == ([], 0, 0)
        f = facets(cat)
        assert f.status == dict.fromkeys(STATUS_CATEGORIES, 0)
        assert (f.source, f.origin, f.total) == ({}, {}, 0)
    finally:
        cat.close()


# ---- filters -----------------------------------------------------------------------
@pytest.mark.parametrize("status", ["faces", "no_faces", "errors", "pending"])
def test_status_category_is_exactly_its_photos(synth: Synthetic, status: str) -> None:
    want = synth.ids(lambda p: CATEGORY[p.status] == status)
    got = all_ids(synth.catalog, GalleryFilter(status=status))  # type: ignore[arg-type]
    assert len(got) == len(set(got)) and set(got) == want


def test_no_face_items_say_so(synth: Synthetic) -> None:
    page = gallery_page(synth.catalog, GalleryFilter(status="no_faces"), page_size=200)
    assert {(i.status, i.category, i.n_faces) for i in page.items} == {("no_faces", "no_faces", 0)}


def test_categories_partition_the_photos(synth: Synthetic) -> None:
    totals = [
        gallery_page(synth.catalog, GalleryFilter(status=s)).total  # type: ignore[arg-type]
        for s in ("faces", "no_faces", "errors", "pending")
    ]
    assert sum(totals) == N_PHOTOS and min(totals) > 0


@pytest.mark.parametrize(("source", "origin"), SOURCES)
def test_source_and_origin(synth: Synthetic, source: str, origin: str) -> None:
    want = synth.ids(lambda p: p.source == source)
    assert set(all_ids(synth.catalog, GalleryFilter(source=source))) == want
    assert set(all_ids(synth.catalog, GalleryFilter(origin=origin))) == want
    page = gallery_page(synth.catalog, GalleryFilter(origin=origin, status="faces"))
    assert page.total == len(synth.ids(lambda p: p.origin == origin and p.status == "done"))
    assert {(i.source, i.origin, i.status) for i in page.items} == {(source, origin, "done")}


@pytest.mark.parametrize("person", [1, 7, N_PEOPLE, DLIB_PERSON])
def test_person(synth: Synthetic, person: int) -> None:
    want = synth.ids(lambda p: person in p.people)
    assert want
    assert set(all_ids(synth.catalog, GalleryFilter(person_id=person))) == want


def test_person_with_other_filters(synth: Synthetic) -> None:
    flt = GalleryFilter(person_id=3, origin="vk", status="faces")
    want = synth.ids(lambda p: 3 in p.people and p.origin == "vk")
    assert set(all_ids(synth.catalog, flt)) == want


def test_unknown_person_and_person_of_another_pack(synth: Synthetic) -> None:
    with pytest.raises(WorkbenchError, match="no person with id 9999"):
        gallery_page(synth.catalog, GalleryFilter(person_id=9999))
    with pytest.raises(ConfigurationError, match="pack 'dlib', not 'local'"):
        gallery_page(synth.catalog, GalleryFilter(person_id=DLIB_PERSON, pack="local"))


@pytest.mark.parametrize("status", ["faces", "no_faces", "errors", "pending"])
def test_pack_scopes_the_verdicts(synth: Synthetic, status: str) -> None:
    flt = GalleryFilter(status=status, pack="dlib")  # type: ignore[arg-type]
    want = synth.ids(lambda p: p.dlib == status)
    assert set(all_ids(synth.catalog, flt)) == want
    page = gallery_page(synth.catalog, flt, page_size=100)
    by_id = {p.id: p for p in synth.photos}
    assert all(i.category == status for i in page.items)
    assert [i.n_faces for i in page.items] == [by_id[i.id].dlib_faces for i in page.items]


def test_local_pack_agrees_with_the_photo_status(synth: Synthetic) -> None:
    """`local` analysed last everywhere: its verdicts are the photos' own statuses."""
    assert facets(synth.catalog, GalleryFilter(pack="local")) == facets(synth.catalog)
    for status in ("no_faces", "pending"):
        plain = GalleryFilter(status=status)  # type: ignore[arg-type]
        scoped = GalleryFilter(status=status, pack="local")  # type: ignore[arg-type]
        assert all_ids(synth.catalog, plain) == all_ids(synth.catalog, scoped)


def test_catalogs_older_than_the_analyses_table(tmp_path: Path) -> None:
    """Without verdict rows a pack's verdict comes from its faces and the photo's last pack."""
    cat = Catalog(f"sqlite:///{tmp_path / 'old.sqlite'}")
    rows = [
        ("done", "old", 1),  # faces of the old pack, no verdict row
        ("no_faces", "old", 0),  # the old pack was the last to look, found none
        ("no_faces", "new", 0),  # only the new pack looked (it left a verdict row)
        ("error", "old", 0),
        ("pending", None, 0),
    ]
    try:
        with cat.session.begin() as s:
            for i, (status, pack, n) in enumerate(rows, 1):
                s.add(
                    Photo(
                        id=i,
                        sha256=f"{i:064x}",
                        source="s",
                        origin="local",
                        uri=f"/{i}",
                        status=status,
                        pack=pack,
                        n_faces=n,
                    )
                )
            s.flush()
            s.add(Face(**_face(1, 1, "old", 0)))
            s.add(Analysis(photo_id=3, pack="new", n_faces=0))
        got = {
            i.id: i.category
            for i in gallery_page(cat, GalleryFilter(pack="old"), page_size=10).items
        }
        assert got == {1: "faces", 2: "no_faces", 3: "pending", 4: "errors", 5: "pending"}
        f = facets(cat, GalleryFilter(pack="old"))
        assert f.status == {"all": 5, "faces": 1, "no_faces": 1, "errors": 1, "pending": 2}
        assert all_ids(cat, GalleryFilter(pack="old", status="pending")) == [5, 3]
    finally:
        cat.close()


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (dt.date(2020, 3, 1), dt.date(2020, 3, 31)),  # metadata dates only
        (dt.date(2025, 6, 1), dt.date(2025, 6, 1)),  # one day, created_at only
        (None, dt.date(2019, 1, 5)),
        (dt.date(2026, 5, 1), None),
    ],
)
def test_date_range(synth: Synthetic, start: dt.date | None, end: dt.date | None) -> None:
    want = synth.ids(lambda p: (start is None or p.day >= start) and (end is None or p.day <= end))
    assert want
    got = all_ids(synth.catalog, GalleryFilter(date_from=start, date_to=end))
    assert set(got) == want


def test_dates_come_from_metadata_else_created_at(synth: Synthetic) -> None:
    by_id = {p.id: p for p in synth.photos}
    items = gallery_page(synth.catalog, GalleryFilter(), page_size=400).items
    assert all(i.date == by_id[i.id].day for i in items)
    remote = [i for i in items if "date" in i.meta]
    assert remote and all(i.date == dt.date.fromisoformat(i.meta["date"][:10]) for i in remote)


def test_metadata_day_is_the_day_as_written() -> None:
    late = {"date": "2021-03-04T23:30:00+03:00"}  # 20:30 UTC the same day; written day wins
    assert photo_day(late, T0) == dt.date(2021, 3, 4)
    assert photo_day({}, dt.datetime(2025, 1, 1, 23, 59)) == dt.date(2025, 1, 1)
    tokyo = dt.timezone(dt.timedelta(hours=9))  # PostgreSQL answers in the session's zone
    assert photo_day({}, dt.datetime(2025, 1, 2, 3, 0, tzinfo=tokyo)) == dt.date(2025, 1, 1)
    assert photo_day({"date": "not a date"}, T0) is None


def test_filter_validation() -> None:
    with pytest.raises(ConfigurationError, match="status 'face'"):
        GalleryFilter(status="face")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="origin 'dropbox'"):
        GalleryFilter(origin="dropbox")
    with pytest.raises(ConfigurationError, match="swap"):
        GalleryFilter(date_from=dt.date(2024, 2, 1), date_to=dt.date(2024, 1, 1))
    with pytest.raises(ConfigurationError, match="datetime.date"):
        GalleryFilter(date_from="2024-01-01")  # type: ignore[arg-type]


# ---- facets ------------------------------------------------------------------------
def test_facets_without_filters(synth: Synthetic) -> None:
    f = facets(synth.catalog)
    counts = Counter(CATEGORY[p.status] for p in synth.photos)
    assert f.status == {"all": N_PHOTOS, **{k: counts[k] for k in STATUS_CATEGORIES[1:]}}
    assert list(f.status) == list(STATUS_CATEGORIES)
    assert f.source == dict(sorted(Counter(p.source for p in synth.photos).items()))
    assert f.origin == dict(sorted(Counter(p.origin for p in synth.photos).items()))
    assert f.total == N_PHOTOS


def test_each_facet_ignores_its_own_filter(synth: Synthetic) -> None:
    flt = GalleryFilter(origin="zip", status="no_faces", person_id=None)
    f = facets(synth.catalog, flt)
    zips = [p for p in synth.photos if p.origin == "zip"]
    no_face = [p for p in synth.photos if p.status == "no_faces"]
    assert f.status["no_faces"] == sum(p.status == "no_faces" for p in zips)
    assert f.status["all"] == len(zips)
    assert f.origin == dict(sorted(Counter(p.origin for p in no_face).items()))
    assert f.source == {"archive": sum(p.origin == "zip" for p in no_face)}
    assert f.total == gallery_page(synth.catalog, flt).total == f.status["no_faces"]


def test_facets_for_a_pack(synth: Synthetic) -> None:
    f = facets(synth.catalog, GalleryFilter(pack="dlib", source="family"))
    family = Counter(p.dlib for p in synth.photos if p.source == "family")
    assert f.status == {
        "all": sum(family.values()),
        **{k: family[k] for k in STATUS_CATEGORIES[1:]},
    }


def test_facets_with_person_and_dates(synth: Synthetic) -> None:
    start, end = dt.date(2020, 1, 1), dt.date(2021, 12, 31)
    flt = GalleryFilter(person_id=5, date_from=start, date_to=end)
    f = facets(synth.catalog, flt)
    want = [p for p in synth.photos if 5 in p.people and start <= p.day <= end]
    assert f.total == len(want) == gallery_page(synth.catalog, flt).total
    assert f.origin == dict(sorted(Counter(p.origin for p in want).items()))


# ---- detail ------------------------------------------------------------------------
def test_photo_detail_faces_and_people(synth: Synthetic) -> None:
    photo = next(p for p in synth.photos if p.n_faces == 3 and 1 in p.people)
    d = photo_detail(synth.catalog, photo.id)
    assert (d.id, d.pack, d.status, len(d.faces)) == (photo.id, "local", "done", 3)
    assert d.boxes[0] == [10.0, 50.0, 90.0, 150.0] and d.faces[0].score == pytest.approx(0.9)
    assert [f.person_id for f in d.faces] == [1, None, None]
    assert [f.label for f in d.faces] == ["Ada Lovelace", None, None]
    assert d.faces[0].landmarks == [float(v) for v in range(10)] and d.faces[0].cluster == 0
    assert d.date == photo.day
    assert ("dlib" in d.packs) == (photo.dlib == "faces")


def test_photo_detail_of_another_pack(synth: Synthetic) -> None:
    photo = next(p for p in synth.photos if DLIB_PERSON in p.people and p.status == "done")
    d = photo_detail(synth.catalog, photo.id, pack="dlib")
    assert d.pack == "dlib" and d.packs == ["dlib", "local"]
    assert [(f.person_id, f.label) for f in d.faces] == [(DLIB_PERSON, "Dee Lib")]


def test_photo_detail_without_faces(synth: Synthetic) -> None:
    pending = next(p for p in synth.photos if p.status == "pending")
    d = photo_detail(synth.catalog, pending.id)
    assert (d.pack, d.packs, d.faces) == (None, [], [])
    broken = next(p for p in synth.photos if p.status == "error")
    assert photo_detail(synth.catalog, broken.id).error == f"cannot read: broken {broken.id}"
    with pytest.raises(WorkbenchError, match="no photo with id 999999"):
        photo_detail(synth.catalog, 999_999)


def test_everything_is_json_ready(synth: Synthetic) -> None:
    flt = GalleryFilter(origin="vk", date_from=dt.date(2019, 1, 1), pack="local")
    page = gallery_page(synth.catalog, flt, page=2)
    text = json.dumps(
        {
            "page": page.to_dict(),
            "facets": facets(synth.catalog, flt).to_dict(),
            "detail": photo_detail(synth.catalog, page.items[0].id).to_dict(),
        }
    )
    back = json.loads(text)
    assert back["page"]["filter"]["date_from"] == "2019-01-01"
    item = back["page"]["items"][0]
    assert set(item) >= {"id", "uri", "source", "origin", "status", "n_faces", "width"}
    assert set(item) >= {"height", "error", "date", "provenance", "name", "category"}
    assert back["detail"]["created_at"].endswith("+00:00")


def test_item_names() -> None:
    def item(uri: str) -> GalleryItem:
        return GalleryItem(1, None, uri, "s", "zip", "done", "faces", 1, 1, 1, None, None)

    assert item("/a/b.zip!dir/c.jpg").name == "c.jpg"
    assert item("/photos/x.jpg").name == "x.jpg"
    assert item("https://vk.com/photo-1_2").name == "photo-1_2"


def test_sql_is_portable_to_postgresql() -> None:
    flt = GalleryFilter(pack="local", status="no_faces", person_id=1, date_from=dt.date(2020, 1, 1))
    sql = str(_item_query(flt).where(*_conditions(flt)).compile(dialect=postgresql.dialect()))
    assert "json_extract" not in sql.lower() and "->>" in sql
    assert "AT TIME ZONE 'UTC'" in sql


# ---- thumbnails --------------------------------------------------------------------
def quadrants(w: int, h: int) -> np.ndarray:
    """Red, green, blue and white quadrants: orientation is visible in every corner."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)
    a[: h // 2, w // 2 :] = (0, 255, 0)
    a[h // 2 :, : w // 2] = (0, 0, 255)
    a[h // 2 :, w // 2 :] = (255, 255, 255)
    return a


def jpeg(a: np.ndarray, **kw: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


@dataclass
class Registered:
    settings: WorkbenchSettings
    catalog: Catalog
    folder: Path

    def photo(self, name: str) -> Photo:
        with self.catalog.session() as s:
            return s.scalars(select(Photo).where(Photo.uri.endswith(name))).one()


@pytest.fixture
def registered(tmp_path: Path) -> Iterator[Registered]:
    """A register-only ingest (no models) of generated photos: a big landscape one, a
    portrait one stored sideways with EXIF orientation 6, and a zip holding a third (a
    mirrored picture: the same picture smaller would be recorded as a copy of the first)."""
    from workbench.core import Workbench

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "wide.jpg").write_bytes(jpeg(quadrants(1200, 800)))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise: upright 600 × 900
    (folder / "turned.jpg").write_bytes(jpeg(quadrants(900, 600), exif=exif))
    with zipfile.ZipFile(folder / "album.zip", "w") as zf:
        zf.writestr("inner/member.jpg", jpeg(quadrants(400, 300)[::-1, ::-1].copy()))
    settings = WorkbenchSettings(home=tmp_path / "wb")
    wb = Workbench(settings)
    report = wb.ingest([folder], progress=False, register_only=True)
    assert (report.pending, report.errors) == (3, 0)
    # The ingest cached each photo's thumbnail; these tests make them on demand.
    cached = settings.home / "thumbnails"
    assert len(list(cached.rglob("*.jpg"))) == 3
    shutil.rmtree(cached)
    yield Registered(settings, wb.catalog, folder)
    wb.close()


def test_thumbnail_is_small_upright_and_cached(registered: Registered) -> None:
    cache = ThumbnailCache(registered.settings)
    photo = registered.photo("turned.jpg")
    assert (photo.width, photo.height) == (600, 900)  # the catalog stores upright pixels
    path = cache.thumbnail(photo)
    assert path.is_relative_to(registered.settings.home / "thumbnails")
    assert photo.sha256 in path.name
    with Image.open(path) as img:
        assert (img.format, img.size) == ("JPEG", (171, 256))
        a = np.asarray(img.convert("RGB")).astype(int)
    # Rotated 90° clockwise: blue is now top left, red top right, white bottom left.
    assert np.abs(a[10, 10] - (0, 0, 255)).max() < 40
    assert np.abs(a[10, -10] - (255, 0, 0)).max() < 40
    assert np.abs(a[-10, 10] - (255, 255, 255)).max() < 40
    mtime = path.stat().st_mtime_ns
    assert cache.thumbnail(photo) == path and path.stat().st_mtime_ns == mtime
    assert (cache.stats.decodes, cache.stats.made, cache.stats.hits) == (1, 1, 1)
    assert cache.thumbnail_bytes(photo) == path.read_bytes()


def test_sizes_are_cached_apart(registered: Registered) -> None:
    cache = ThumbnailCache(registered.settings)
    photo = registered.photo("wide.jpg")
    small, big = cache.thumbnail(photo, 64), cache.thumbnail(photo, 512)
    assert small != big
    assert Image.open(small).size == (64, 43) and Image.open(big).size == (512, 341)
    with pytest.raises(ConfigurationError, match="thumbnail size"):
        cache.thumbnail(photo, 8)


def test_zip_member_thumbnail(registered: Registered) -> None:
    cache = ThumbnailCache(registered.settings)
    photo = registered.photo("inner/member.jpg")
    assert photo.origin == "zip"
    assert Image.open(cache.thumbnail(photo)).size == (256, 192)


def test_vanished_file_names_the_photo(registered: Registered) -> None:
    cache = ThumbnailCache(registered.settings)
    photo = registered.photo("wide.jpg")
    (registered.folder / "wide.jpg").unlink()
    with pytest.raises(ThumbnailError) as e:
        cache.thumbnail(photo)
    msg = str(e.value)
    assert f"photo {photo.id} ({photo.uri})" in msg and "No such file" in msg
    assert f"workbench delete {photo.id}" in msg


def test_vanished_zip_member_names_the_photo(registered: Registered) -> None:
    photo = registered.photo("inner/member.jpg")
    with zipfile.ZipFile(registered.folder / "album.zip", "w") as zf:
        zf.writestr("other.jpg", b"x")
    with pytest.raises(ThumbnailError, match=r"photo \d+ .*no member 'inner/member.jpg'"):
        ThumbnailCache(registered.settings).thumbnail(photo)


def test_changed_file_is_not_thumbnailed_as_the_old_photo(registered: Registered) -> None:
    photo = registered.photo("wide.jpg")
    (registered.folder / "wide.jpg").write_bytes(jpeg(quadrants(640, 480)))
    with pytest.raises(ThumbnailError, match="other bytes than were ingested"):
        ThumbnailCache(registered.settings).thumbnail(photo)


def test_unreadable_photo_has_no_thumbnail(registered: Registered) -> None:
    broken = Photo(id=77, sha256=None, source="local", origin="local", uri="/x/bad.jpg", meta={})
    broken.error = "cannot read: permission denied"
    with pytest.raises(ThumbnailError, match=r"photo 77 \(/x/bad.jpg\).*permission denied"):
        ThumbnailCache(registered.settings).thumbnail(broken)


def test_batch_reports_the_photos_it_cannot_show(registered: Registered) -> None:
    cache = ThumbnailCache(registered.settings)
    photos = [registered.photo(n) for n in ("wide.jpg", "turned.jpg", "inner/member.jpg")]
    (registered.folder / "turned.jpg").unlink()
    batch = cache.thumbnails(photos)
    assert set(batch.paths) == {photos[0].id, photos[2].id}
    assert list(batch.errors) == [photos[1].id] and "turned.jpg" in batch.errors[photos[1].id]


def test_writes_are_atomic(registered: Registered, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ThumbnailCache(registered.settings)
    photo = registered.photo("wide.jpg")

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        cache.thumbnail(photo)
    monkeypatch.undo()
    assert not list(cache.root.rglob("*.jpg")) and not list(cache.root.rglob("*.tmp"))
    with ThreadPoolExecutor(4) as pool:  # racing writers of one key all end with a whole file
        paths = set(
            pool.map(lambda _: ThumbnailCache(registered.settings).thumbnail(photo), range(4))
        )
    (path,) = paths
    assert Image.open(path).size == (256, 171) and not list(cache.root.rglob("*.tmp"))


def test_face_thumbnails_are_square(registered: Registered) -> None:
    cache = ThumbnailCache(registered.settings)
    photo = registered.photo("wide.jpg")  # 1200 × 800: red | green over blue | white
    boxes = [(100.0, 100.0, 200.0, 260.0), (1150.5, 700.2, 1199.9, 799.0), (0, 0, 1200, 800)]
    paths = cache.face_thumbnails(photo, boxes, size=96)
    assert len(set(paths)) == 3 and cache.stats.decodes == 1
    for p in paths:
        assert Image.open(p).size == (96, 96)
    centre = np.asarray(Image.open(paths[0]).convert("RGB"))[48, 48].astype(int)
    assert np.abs(centre - (255, 0, 0)).max() < 40  # the face's quadrant
    assert cache.face_thumbnail(photo, boxes[1], size=96) == paths[1]
    assert cache.stats.decodes == 1 and "1150_700_1200_799" in paths[1].name
    with pytest.raises(ConfigurationError, match="x1 < x2"):
        cache.face_thumbnail(photo, (10, 10, 5, 20))


def red_mask(jpeg_bytes: bytes) -> np.ndarray:
    a = np.asarray(Image.open(io.BytesIO(jpeg_bytes)).convert("RGB")).astype(int)
    return (a[..., 0] > 180) & (a[..., 1] < 90) & (a[..., 2] < 90)


def test_draw_boxes_scales_onto_the_image() -> None:
    grey = np.full((200, 300, 3), 128, np.uint8)
    box = (400.0, 100.0, 800.0, 300.0)  # in a 1200 × 800 photo; the image is its quarter
    out = draw_boxes(grey, [box], scale=0.25, colour=(255, 0, 0), line_width=3)
    mask = red_mask(out)
    ys, xs = np.nonzero(mask)
    assert abs(xs.min() - 100) <= 2 and abs(xs.max() - 200) <= 2
    assert abs(ys.min() - 25) <= 2 and abs(ys.max() - 75) <= 2
    assert mask[50, 100] and mask[50, 200] and mask[25, 150] and mask[75, 150]
    assert not mask[50, 150]  # inside the box: untouched
    assert (grey == 128).all()  # the caller's image is not drawn on


def test_draw_boxes_highlight_labels_and_inputs(tmp_path: Path) -> None:
    img = Image.fromarray(np.full((100, 100, 3), 128, np.uint8))
    path = tmp_path / "t.jpg"
    img.save(path)
    boxes = [(10, 30, 40, 60), (50, 30, 90, 60)]
    for src in (img, path, path.read_bytes(), np.asarray(img)):
        out = draw_boxes(src, boxes, ["Ada", None], highlight=1)
        a = np.asarray(Image.open(io.BytesIO(out)).convert("RGB")).astype(int)
        assert np.abs(a[45, 89] - HIGHLIGHT_COLOUR).max() < 60  # lines are 2 px, drawn inward
        assert np.abs(a[45, 11] - BOX_COLOUR).max() < 60
        assert np.abs(a[25, 12] - BOX_COLOUR).max() < 60  # the label's tag above the box
    with pytest.raises(ConfigurationError, match="2 labels for 1 boxes"):
        draw_boxes(img, boxes[:1], ["a", "b"])
    with pytest.raises(ConfigurationError, match="highlight 2"):
        draw_boxes(img, boxes, highlight=2)
    with pytest.raises(ConfigurationError, match="scale"):
        draw_boxes(img, boxes, scale=0)


def test_boxed_thumbnail_puts_boxes_on_the_faces(registered: Registered) -> None:
    cache = ThumbnailCache(registered.settings)
    photo = registered.photo("turned.jpg")  # upright 600 × 900, thumbnail 171 × 256
    box = (0.0, 450.0, 300.0, 900.0)  # the bottom-left (white) quadrant of the upright photo
    out = cache.boxed(photo, [box], highlight=0)
    # Red pixels the drawing added (the top-right quadrant is red already).
    ys, xs = np.nonzero(red_mask(out) & ~red_mask(cache.thumbnail_bytes(photo)))
    assert xs.min() <= 2 and abs(xs.max() - 85) <= 3
    assert abs(ys.min() - 128) <= 3 and ys.max() >= 252


def test_put_thumbnails_what_the_ingest_decoded(registered: Registered) -> None:
    from workbench.imaging.decode import decode_image

    cache = ThumbnailCache(registered.settings)
    photo = registered.photo("turned.jpg")
    decoded = decode_image((registered.folder / "turned.jpg").read_bytes())
    (small, big) = cache.put(photo.sha256 or "", decoded, sizes=(64, 256))
    assert big == cache.path_for(photo) and small == cache.path_for(photo, 64)
    assert cache.thumbnail(photo) == big and cache.stats.decodes == 0
    assert Image.open(big).size == (171, 256)
    with pytest.raises(ConfigurationError, match="sha256"):
        cache.put("abc", decoded)
