"""`Gallery`: a paged grid of photo thumbnails with filters and a detail view per photo.

Built on `workbench.analysis.gallery` (pages, facets, one photo's faces) and
`workbench.imaging.thumbnails` (cached JPEGs); it never sends a full photo to the
browser: the grid gets the cached 256-px thumbnails, the detail view one
720-px thumbnail with the boxes drawn. A page change is one count query, one
page query, up to 48 small file reads and one update of the grid widget.

Stable hooks for tests: the grid is ``[data-testid=gallery-grid]``; the
summary ``[data-testid=gallery-summary]`` carries ``data-total``,
``data-page`` and ``data-pages``; the detail view ``[data-testid=detail]``
carries ``data-photo-id`` and ``data-faces``, its boxed image is
``img[data-testid=detail-image]`` and its faces table rows ``tr[data-testid=face-row]``;
the similar faces are ``[data-testid=similar-grid]``.
"""

from __future__ import annotations

import datetime as dt
import html
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

# People (and the clustering it imports, with scipy) load with the module, not in
# the first Gallery(): `workbench dashboards` pre-heats a kernel by importing the
# app's module, so a page's own time is the queries, not 0.4 s of imports.
import workbench.analysis.people  # noqa: F401
from workbench.analysis.gallery import (
    DEFAULT_PAGE_SIZE,
    FaceDetail,
    Facets,
    GalleryFilter,
    GalleryItem,
    PhotoDetail,
    facets,
    gallery_page,
    photo_detail,
)
from workbench.imaging.thumbnails import DEFAULT_SIZE, ThumbnailCache, ThumbnailError
from workbench.widgets.common import Banner, ThumbGrid, app_module, data_uri, format_similarity

if TYPE_CHECKING:
    from workbench.core import Workbench

DETAIL_SIZE = 720
"""Longest side of the detail view's boxed photo, in pixels."""
ORIGIN_LABELS: dict[str, str] = {
    "local": "Local files",
    "zip": "Zip archives",
    "yadisk": "Yandex.Disk",
    "vk": "VK",
}
STATUS_LABELS: dict[str, str] = {
    "all": "All",
    "faces": "With faces",
    "no_faces": "No faces",
    "errors": "Errors",
    "pending": "Pending",
}
_ANY = "__any__"


class Gallery(widgets.VBox):  # type: ignore[misc]
    """The gallery app for one workbench: filters, pager, grid, detail view.

    ``page_size`` is thumbnails per page (default 48); ``ready_name`` is what the
    grid's ``data-wb-ready`` says once the first page is drawn (the browser
    tests wait for it). Errors appear in words in the banner, never as a
    traceback.
    """

    def __init__(
        self,
        wb: Workbench,
        page_size: int = DEFAULT_PAGE_SIZE,
        ready_name: str = "gallery",
        **kwargs: Any,
    ) -> None:
        started = time.perf_counter()
        self.wb = wb
        self.page_size = page_size
        self.build_ms: float | None = None
        """Milliseconds from the constructor's start to the first page's widget update."""
        self.page_ms: float | None = None
        """Milliseconds the last page took in Python (queries, thumbnails, update)."""
        self.cache = ThumbnailCache(wb.settings)
        self.page = 1
        self.pages = 0
        self.total = 0
        self._quiet = False
        self._detail: PhotoDetail | None = None

        self.banner = Banner()
        self.origin = widgets.Dropdown(description="Source type", layout={"width": "230px"})
        self.source = widgets.Dropdown(description="Source", layout={"width": "260px"})
        self.status = widgets.ToggleButtons(
            options=[(v, k) for k, v in STATUS_LABELS.items()], value="all"
        )
        self.status.style.button_width = "auto"
        self.status.add_class("wb-status")
        self.person = widgets.Dropdown(description="Person", layout={"width": "260px"})
        self.date_from = widgets.DatePicker(description="From", layout={"width": "230px"})
        self.date_to = widgets.DatePicker(description="To", layout={"width": "230px"})
        self.prev_button = widgets.Button(description="‹ Prev", layout={"width": "90px"})
        self.next_button = widgets.Button(description="Next ›", layout={"width": "90px"})
        self.prev_button.add_class("wb-prev")
        self.next_button.add_class("wb-next")
        self.summary = widgets.HTML()
        self.grid = ThumbGrid(testid="gallery-grid", empty_text="No photos match these filters.")
        self.detail = _DetailView(self)

        self._fill_people()
        self._refresh_facets()
        for w in (self.origin, self.source, self.status, self.person, self.date_from, self.date_to):
            w.observe(self._on_filter, names="value")
        self.prev_button.on_click(lambda _b: self.show_page(self.page - 1))
        self.next_button.on_click(lambda _b: self.show_page(self.page + 1))
        self.grid.on_click(self.open_detail)

        filters = widgets.VBox(
            [
                widgets.HBox([self.origin, self.source, self.person]),
                widgets.HBox([self.date_from, self.date_to]),
                self.status,
            ]
        )
        pager = widgets.HBox(
            [self.prev_button, self.summary, self.next_button],
            layout={"align_items": "center", "justify_content": "flex-start"},
        )
        body = widgets.HBox(
            [
                widgets.VBox([self.grid], layout={"flex": "3 1 0", "min_width": "0"}),
                self.detail,
            ],
            layout={"width": "100%"},
        )
        super().__init__([self.banner, filters, pager, body], **kwargs)
        self.add_class("wb-gallery")
        self.show_page(1)
        self.build_ms = (time.perf_counter() - started) * 1000
        self._show_summary()
        self.grid.ready = ready_name

    # ---- the filter --------------------------------------------------------------
    @property
    def filter(self) -> GalleryFilter:
        """The filter the controls describe now."""
        return GalleryFilter(
            source=None if self.source.value in (None, _ANY) else self.source.value,
            origin=None if self.origin.value in (None, _ANY) else self.origin.value,
            status=self.status.value,
            person_id=None if self.person.value in (None, _ANY) else int(self.person.value),
            date_from=self.date_from.value,
            date_to=self.date_to.value,
        )

    def _on_filter(self, _change: Any) -> None:
        if self._quiet:
            return
        if _dates_swapped(self.date_from.value, self.date_to.value):
            self.banner.show("'From' is after 'To': no photo can match; swap the dates", "warning")
            return
        self._refresh_facets()
        self.show_page(1)

    def _fill_people(self) -> None:
        options: list[tuple[str, Any]] = [("Anyone", _ANY)]
        try:
            people = self.wb.people.list()
            options += [(f"{p.label} ({p.photos})", p.id) for p in people]
        except Exception as e:  # noqa: BLE001 - the gallery works without people
            self.banner.show_error(e, "people are not available")
        self.person.options = options
        self.person.value = _ANY

    def _refresh_facets(self) -> None:
        """Counts beside each choice, under the other filters (one GROUP BY query)."""
        try:
            f = facets(self.wb.catalog, self.filter)
        except Exception as e:  # noqa: BLE001 - shown in words, the app stays usable
            self.banner.show_error(e, "cannot count the photos")
            return
        self._quiet = True
        try:
            _set_options(self.status, _status_options(f), self.status.value)
            _set_options(
                self.origin,
                [("Any", _ANY)]
                + [(f"{ORIGIN_LABELS.get(o, o)} ({n})", o) for o, n in f.origin.items()],
                self.origin.value or _ANY,
            )
            _set_options(
                self.source,
                [("Any", _ANY)] + [(f"{s} ({n})", s) for s, n in f.source.items()],
                self.source.value or _ANY,
            )
        finally:
            self._quiet = False

    # ---- pages -------------------------------------------------------------------
    def show_page(self, page: int) -> None:
        """Show page ``page`` (clamped to 1–pages) of the current filter."""
        started = time.perf_counter()
        try:
            flt = self.filter
            result = gallery_page(self.wb.catalog, flt, max(1, page), self.page_size)
            if result.pages and page > result.pages:
                result = gallery_page(self.wb.catalog, flt, result.pages, self.page_size)
        except Exception as e:  # noqa: BLE001 - shown in words, the app stays usable
            self.banner.show_error(e, "cannot show this page")
            return
        self.banner.clear()
        self.page, self.pages, self.total = result.page, result.pages, result.total
        items = self._tiles(result.items)
        key = f"{result.page}/{result.pages}/{result.total}/{hash(flt)}"
        with self.grid.hold_sync():
            self.grid.items = items
            self.grid.key = key
        self.prev_button.disabled = self.page <= 1
        self.next_button.disabled = self.page >= self.pages
        self.page_ms = (time.perf_counter() - started) * 1000
        self._show_summary()

    def _show_summary(self) -> None:
        """'Page x of y · N photos'; the data attributes are for tests and timing."""
        shown = f"Page {self.page} of {max(self.pages, 1)}"
        timing = f'data-page-ms="{self.page_ms or 0:.1f}"'
        if self.build_ms is not None:
            timing += f' data-build-ms="{self.build_ms:.1f}"'
        self.summary.value = (
            f'<span data-testid="gallery-summary" data-total="{self.total}" '
            f'data-page="{self.page}" data-pages="{self.pages}" {timing}>{shown} · '
            f"<b>{self.total}</b> photo{'s' if self.total != 1 else ''}</span>"
        )

    def _tiles(self, items: list[GalleryItem]) -> list[dict[str, Any]]:
        batch = self.cache.thumbnails(items)
        tiles = []
        for it in items:
            path = batch.paths.get(it.id)
            tiles.append(
                {
                    "id": it.id,
                    "src": data_uri(path) if path is not None else "",
                    "caption": it.name,
                    "title": f"{it.uri}\n{it.source} · {it.status}"
                    + (f"\n{it.error}" if it.error else ""),
                    "missing": batch.errors.get(it.id, "no thumbnail")[:120],
                    **_badge(it),
                }
            )
        return tiles

    # ---- detail ------------------------------------------------------------------
    def open_detail(self, photo_id: int) -> None:
        """Show one photo with its faces' boxes, scores and people."""
        try:
            self.detail.show(photo_detail(self.wb.catalog, photo_id, gate=self.wb.settings.quality))
        except Exception as e:  # noqa: BLE001 - shown in words, the app stays usable
            self.banner.show_error(e, f"cannot open photo {photo_id}")


class _DetailView(widgets.VBox):  # type: ignore[misc]
    """The clicked photo: boxed image, faces table, 'find similar' for a chosen face."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self.photo: PhotoDetail | None = None
        self.header = widgets.HTML(layout={"width": "100%"})
        self.faces = widgets.HTML()
        self.face_choice = widgets.Dropdown(description="Face", layout={"width": "200px"})
        self.similar_button = widgets.Button(description="Find similar", icon="search")
        self.similar_button.add_class("wb-find-similar")
        self.close_button = widgets.Button(description="Close", layout={"width": "80px"})
        self.similar_status = widgets.HTML()
        self.similar = ThumbGrid(testid="similar-grid", empty_text="", tile_size=110)
        self.similar_button.on_click(lambda _b: self.find_similar())
        self.close_button.on_click(lambda _b: self.hide())
        self.similar.on_click(self.gallery.open_detail)
        super().__init__(
            [
                self.close_button,
                self.header,
                self.faces,
                widgets.HBox([self.face_choice, self.similar_button]),
                self.similar_status,
                self.similar,
            ],
            layout={"flex": "2 1 0", "display": "none", "min_width": "0"},
        )
        self.add_class("wb-detail")

    def hide(self) -> None:
        self.layout.display = "none"
        self.photo = None

    def show(self, photo: PhotoDetail) -> None:
        self.photo = photo
        cache = self.gallery.cache
        labels = [f"{i}" + (f" {f.label}" if f.label else "") for i, f in enumerate(photo.faces, 1)]
        try:
            jpeg = _detail_jpeg(cache, photo, labels)
            image = (
                f'<img data-testid="detail-image" src="{data_uri(jpeg)}" '
                f'alt="{html.escape(photo.name)}" style="max-width:100%;height:auto">'
            )
        except Exception as e:  # noqa: BLE001 - the facts still show without the image
            image = (
                f'<p data-testid="detail-no-image" style="color:#c62828">'
                f"No image: {html.escape(str(e))}</p>"
            )
        facts = [
            ("Source", f"{photo.source} ({ORIGIN_LABELS.get(photo.origin, photo.origin)})"),
            ("Status", STATUS_LABELS.get(_category(photo.status), photo.status)),
            ("Date", photo.date.isoformat() if photo.date else "—"),
            ("Size", f"{photo.width}×{photo.height}" if photo.width else "—"),
            ("Pack", photo.pack or "—"),
        ]
        if photo.error:
            facts.append(("Error", photo.error))
        if photo.copies:
            facts.append(("Also at", " | ".join(photo.copies)))
        rows = "".join(
            f"<tr><th style='text-align:left;padding-right:8px'>{k}</th>"
            f"<td>{html.escape(str(v))}</td></tr>"
            for k, v in facts
        )
        self.header.value = (
            f'<div data-testid="detail" data-photo-id="{photo.id}" '
            f'data-faces="{len(photo.faces)}"><h3 style="margin:4px 0">'
            f"{html.escape(photo.name)}</h3>{image}<div style='font-size:11px;color:#555'>"
            f"{html.escape(photo.uri)}</div><table style='font-size:12px'>{rows}</table></div>"
        )
        self.faces.value = _faces_table(photo)
        choices = [(f"#{i} ({f.score:.2f})", f.id) for i, f in enumerate(photo.faces, 1)]
        self.face_choice.options = choices
        self.face_choice.value = choices[0][1] if choices else None
        self.face_choice.disabled = self.similar_button.disabled = not photo.faces
        self.similar_status.value = ""
        self.similar.items = []
        self.layout.display = "flex"

    def find_similar(self) -> None:
        """Nearest stored faces of the chosen face, by its stored vector (no model run)."""
        face_id = self.face_choice.value
        if self.photo is None or face_id is None:
            return
        self.similar_status.value = "<i>Searching…</i>"
        try:
            wb = self.gallery.wb
            matches = wb.search_face(int(face_id))
            photos = wb.catalog.photos_by_ids({m.photo_id for m in matches})
        except Exception as e:  # noqa: BLE001 - shown in words, the app stays usable
            self.similar_status.value = (
                f"<span data-testid='similar-error' style='color:#c62828'>"
                f"Search failed: {html.escape(str(e))}</span>"
            )
            return
        cache = self.gallery.cache
        tiles = []
        for m in matches:
            try:
                src = data_uri(cache.face_thumbnail(photos[m.photo_id], m.box))
            except Exception:  # noqa: BLE001 - a face without a crop still lists
                src = ""
            tiles.append(
                {
                    "id": m.photo_id,
                    "src": src,
                    "caption": f"{format_similarity(m.similarity)} {m.photo.rsplit('/', 1)[-1]}",
                    "title": m.photo,
                }
            )
        self.similar_status.value = (
            f'<span data-testid="similar-summary" data-count="{len(tiles)}">'
            f"{len(tiles)} similar face{'s' if len(tiles) != 1 else ''} (other photos)</span>"
        )
        self.similar.items = tiles


# ---- helpers -----------------------------------------------------------------------
def _detail_jpeg(cache: ThumbnailCache, photo: PhotoDetail, labels: list[str]) -> bytes:
    """The photo at `DETAIL_SIZE` with its boxes; when the photo cannot be read again
    (moved, offline source), the gallery's cached thumbnail with the boxes instead."""
    try:
        return _boxed(cache, photo, labels, DETAIL_SIZE)
    except ThumbnailError:
        if not cache.path_for(photo, DEFAULT_SIZE).is_file():
            raise
        return _boxed(cache, photo, labels, DEFAULT_SIZE)


def _boxed(cache: ThumbnailCache, photo: PhotoDetail, labels: list[str], size: int) -> bytes:
    if photo.faces:
        return cache.boxed(photo, photo.boxes, labels, size)
    return cache.thumbnail_bytes(photo, size)


def _status_options(f: Facets) -> list[tuple[str, str]]:
    return [(f"{label} ({f.status.get(k, 0)})", k) for k, label in STATUS_LABELS.items()]


def _set_options(w: widgets.DOMWidget, options: list[Any], value: Any) -> None:
    """New options keeping the chosen value (or the first option when it is gone)."""
    values = [v for _label, v in options]
    if list(w.options) == options:
        return
    w.options = options
    w.value = value if value in values else values[0]


def _category(status: str) -> str:
    from workbench.analysis.gallery_sql import CATEGORY_OF_STATUS

    return CATEGORY_OF_STATUS.get(status, status)


def _badge(it: GalleryItem) -> dict[str, str]:
    if it.category == "faces":
        return {"badge": f"{it.n_faces} face{'s' if it.n_faces != 1 else ''}", "kind": "faces"}
    if it.category == "no_faces":
        return {"badge": "no faces", "kind": "none"}
    if it.category == "errors":
        return {"badge": "error", "kind": "error"}
    return {"badge": it.category, "kind": "info"}


def _faces_table(photo: PhotoDetail) -> str:
    if not photo.faces:
        return '<p data-testid="no-faces">No faces found in this photo.</p>'
    rows = "".join(
        f'<tr data-testid="face-row" data-face-id="{f.id}" '
        f'data-below-gate="{html.escape(",".join(f.below_gate))}"><td>{i + 1}</td>'
        f"<td>{', '.join(f'{v:.0f}' for v in f.box)}</td><td>{f.score:.3f}</td>"
        f"<td>{html.escape(f.label or '—')}</td><td>{_quality_text(f)}</td></tr>"
        for i, f in enumerate(photo.faces)
    )
    return (
        '<table data-testid="faces-table" style="font-size:12px;border-collapse:collapse">'
        "<thead><tr><th>#</th><th>Box (x1, y1, x2, y2)</th><th>Score</th><th>Person</th>"
        f"<th>Quality</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _quality_text(f: FaceDetail) -> str:
    """Size, sharpness and turn; and why the face is left out of search, if it is."""
    if f.quality is None:
        return "—"
    q = f.quality
    text = f"{q['size']:.0f} px, sharp {q['sharpness']:.2f}, yaw {q['yaw']:+.0f}°"
    if f.below_gate:
        text += f" · <b style='color:#c62828'>not searched: {', '.join(f.below_gate)}</b>"
    return text


def _dates_swapped(a: dt.date | None, b: dt.date | None) -> bool:
    return a is not None and b is not None and a > b


app_module(__name__, Gallery)  # `workbench.widgets.gallery(wb)` is `Gallery(wb)`

__all__ = ["DETAIL_SIZE", "Gallery"]
