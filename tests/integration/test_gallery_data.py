"""The gallery's data layer on the real dev set: categories, thumbnails, boxes, vanished files.

Uses the session's `dev_local` workbench (the whole dev set ingested with the
`local` pack) read-only; thumbnails go to each test's own folder. The category
and detail tests run on SQLite and on PostgreSQL (`dev_local_pg`, the same
ingest into a catalog on the session's PostgreSQL; ``server`` mark).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import DevPhoto
from tests.integration.conftest import DevWorkbench
from workbench.analysis.gallery import (
    GalleryFilter,
    GalleryItem,
    facets,
    gallery_page,
    photo_detail,
)
from workbench.imaging.thumbnails import ThumbnailCache, ThumbnailError, draw_boxes

pytestmark = pytest.mark.integration

MAGENTA = (255, 0, 255)


def items(dw: DevWorkbench, flt: GalleryFilter) -> list[GalleryItem]:
    page = gallery_page(dw.wb.catalog, flt, page_size=1000)
    assert page.pages <= 1
    return page.items


def magenta(jpeg: bytes) -> np.ndarray:
    a = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    return (a[..., 0] > 180) & (a[..., 1] < 90) & (a[..., 2] > 180)


@pytest.fixture
def cache(dev_local: DevWorkbench, tmp_path: Path) -> ThumbnailCache:
    return ThumbnailCache(dev_local.wb.settings, root=tmp_path / "thumbnails")


# ---- categories --------------------------------------------------------------------
@pytest.mark.parametrize("scoped", [False, True])
def test_no_face_category_is_the_no_face_photos(
    dev_any: DevWorkbench, dev_photos: list[DevPhoto], scoped: bool
) -> None:
    pack = dev_any.wb.pack.name if scoped else None
    got = {Path(i.uri) for i in items(dev_any, GalleryFilter(status="no_faces", pack=pack))}
    want = {p.path.resolve() for p in dev_photos if p.category == "no_face"}
    assert len(want) == 4 and got == want


def test_facets_of_the_dev_set(dev_any: DevWorkbench, dev_photos: list[DevPhoto]) -> None:
    f = facets(dev_any.wb.catalog)
    # A recorded copy (dev_0032.png of dev_0031.jpg) is shown once, on its original.
    n = len(dev_photos) - sum(1 for p in dev_photos if p.copy_of is not None)
    assert n == len(dev_photos) - 1
    assert f.status == {"all": n, "faces": n - 4, "no_faces": 4, "errors": 0, "pending": 0}
    assert f.origin == {"local": n} and f.total == n
    pack = dev_any.wb.pack.name
    with_faces = items(dev_any, GalleryFilter(status="faces", pack=pack))
    assert len(with_faces) == n - 4 and all(i.n_faces >= 1 for i in with_faces)


def test_detail_of_a_group_photo(dev_any: DevWorkbench, dev_photos: list[DevPhoto]) -> None:
    group = next(p for p in dev_photos if p.category == "group")
    (item,) = [i for i in items(dev_any, GalleryFilter()) if Path(i.uri) == group.path.resolve()]
    d = photo_detail(dev_any.wb.catalog, item.id)
    assert d.pack == dev_any.wb.pack.name
    assert len(d.faces) == item.n_faces >= 2
    for f in d.faces:
        x1, y1, x2, y2 = f.box
        assert 0 <= f.score <= 1 and x1 < x2 and y1 < y2 and len(f.landmarks) == 10
        assert -x1 < 0.2 * (x2 - x1) and x2 < d.width * 1.1  # type: ignore[operator]


@pytest.mark.server
def test_sqlite_and_postgresql_catalogs_agree(
    dev_local: DevWorkbench,
    dev_local_pg: DevWorkbench,  # noqa: F811
) -> None:
    """The same ingest on both databases: the same facets and the same pages."""
    pack = dev_local.wb.pack.name
    filters = [
        GalleryFilter(),
        GalleryFilter(status="faces", pack=pack),
        GalleryFilter(status="no_faces"),
        GalleryFilter(source="local", origin="local"),
    ]
    for flt in filters:
        assert facets(dev_local.wb.catalog, flt) == facets(dev_local_pg.wb.catalog, flt)
        got = [
            sorted((i.sha256, i.uri, i.category, i.n_faces, i.width, i.date) for i in items(d, flt))
            for d in (dev_local, dev_local_pg)
        ]
        assert got[0] == got[1] and got[0]


# ---- thumbnails --------------------------------------------------------------------
def test_thumbnails_are_small_jpegs(dev_local: DevWorkbench, cache: ThumbnailCache) -> None:
    page = gallery_page(dev_local.wb.catalog, GalleryFilter(), page_size=12)
    biggest = max(items(dev_local, GalleryFilter()), key=lambda i: (i.width or 0) * (i.height or 0))
    photos = [*page.items, biggest]
    batch = cache.thumbnails(photos)
    assert batch.errors == {} and cache.stats.decodes == len(photos)
    for p in photos:
        path = batch.paths[p.id]
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            w, h = img.size
        assert max(w, h) == min(256, max(p.width, p.height))  # type: ignore[arg-type]
        assert abs(w / h - p.width / p.height) < 0.02  # type: ignore[operator]
        assert 2_000 <= path.stat().st_size <= 60_000, (p.name, path.stat().st_size)


def test_thumbnails_are_cached(dev_local: DevWorkbench, cache: ThumbnailCache) -> None:
    photo = items(dev_local, GalleryFilter(status="faces"))[0]
    path = cache.thumbnail(photo)
    mtime, decodes = path.stat().st_mtime_ns, cache.stats.decodes
    again = ThumbnailCache(dev_local.wb.settings, root=cache.root)
    assert again.thumbnail(photo) == path == cache.thumbnail(photo)
    assert path.stat().st_mtime_ns == mtime
    assert (again.stats.decodes, cache.stats.decodes) == (0, decodes)
    assert (again.stats.hits, cache.stats.hits) == (1, 1)


def test_boxes_scale_onto_the_thumbnail(dev_local: DevWorkbench, cache: ThumbnailCache) -> None:
    catalog = dev_local.wb.catalog
    photo = max(
        items(dev_local, GalleryFilter(status="faces")), key=lambda i: (i.width or 0) * i.n_faces
    )
    d = photo_detail(catalog, photo.id)
    path = cache.thumbnail(d)
    with Image.open(path) as img:
        tw, th = img.size
    sx, sy = tw / d.width, th / d.height  # type: ignore[operator]
    assert max(d.width, d.height) > 1000  # type: ignore[type-var]  # a real scale-down
    plain = path.read_bytes()
    for face in d.faces:
        drawn = draw_boxes(path, [face.box], scale=(sx, sy), colour=MAGENTA, line_width=2)
        added = magenta(drawn) & ~magenta(plain)
        x1, y1, x2, y2 = face.box
        ex1, ey1 = max(0, round(x1 * sx)), max(0, round(y1 * sy))
        ex2, ey2 = min(tw - 1, round(x2 * sx)), min(th - 1, round(y2 * sy))
        ys, xs = np.nonzero(added)
        assert len(xs) > 2 * ((ex2 - ex1) + (ey2 - ey1))  # the whole outline is there
        assert abs(xs.min() - ex1) <= 2 and abs(xs.max() - ex2) <= 2
        assert abs(ys.min() - ey1) <= 2 and abs(ys.max() - ey2) <= 2
        # Every added pixel lies on the outline (within the line width and JPEG blur).
        on_edge = (
            (np.abs(xs - ex1) <= 3)
            | (np.abs(xs - ex2) <= 3)
            | (np.abs(ys - ey1) <= 3)
            | (np.abs(ys - ey2) <= 3)
        )
        assert on_edge.mean() > 0.97
    boxed = cache.boxed(d, d.boxes, [f.label for f in d.faces], highlight=0)
    assert Image.open(io.BytesIO(boxed)).size == (tw, th)


def test_face_thumbnails_are_square(dev_local: DevWorkbench, cache: ThumbnailCache) -> None:
    photo = max(items(dev_local, GalleryFilter(status="faces")), key=lambda i: i.n_faces)
    d = photo_detail(dev_local.wb.catalog, photo.id)
    paths = cache.face_thumbnails(d, d.boxes)
    assert len(set(paths)) == len(d.faces) >= 2 and cache.stats.decodes == 1
    for p in paths:
        with Image.open(p) as img:
            assert img.size == (160, 160) and img.format == "JPEG"
    assert Image.open(cache.face_thumbnail(d, d.boxes[0], size=64)).size == (64, 64)


# ---- a photo whose file is gone ------------------------------------------------------
def test_vanished_source_file_names_the_photo(
    tmp_path: Path, dev_photos: list[DevPhoto], dev_local: DevWorkbench
) -> None:
    """Registered (no models) from a copy, then the copy is deleted: the error says which
    photo and what to do, and a page of thumbnails still shows the others."""
    from workbench.core import Workbench

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in dev_photos[:3]:
        shutil.copy(p.path, folder / p.path.name)
    settings = dev_local.wb.settings.model_copy(update={"home": tmp_path / "wb"})
    with Workbench(settings) as wb:
        assert wb.ingest([folder], progress=False, register_only=True).pending == 3
        page = gallery_page(wb.catalog, GalleryFilter(status="pending"))
        gone = page.items[0]
        Path(gone.uri).unlink()
        shutil.rmtree(settings.home / "thumbnails")  # cached by the ingest: make them again
        cache = ThumbnailCache(settings)
        with pytest.raises(ThumbnailError) as e:
            cache.thumbnail(gone)
        msg = str(e.value)
        assert f"photo {gone.id} ({gone.uri})" in msg and "No such file or directory" in msg
        assert "moved or deleted" in msg
        batch = cache.thumbnails(page.items)
        assert list(batch.errors) == [gone.id] and len(batch.paths) == 2
