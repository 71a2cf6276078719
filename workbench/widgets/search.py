"""Search by sample: the Voila app's component, also usable in a notebook.

>>> from workbench.widgets.search import SearchBySample
>>> SearchBySample(wb)                                  # doctest: +SKIP

The user uploads one or several photos (the picker, or dropped onto the drop
zone); every face found in each photo gets a row of its matches at or above
the threshold, each a thumbnail of the matched photo with the matched face
boxed, its similarity % and box. The current results download as CSV or JSON
from links built when the results change (data: URIs), so the export needs no
server endpoint beside Voila. A bad upload (no face, corrupt, not JPG/PNG/WebP)
gives a message naming the file, never a traceback.

The work is in pure functions (`read_uploads`, `search_upload`, `result_rows`,
`results_csv`, `results_json`, the ``*_html`` renderers), so tests drive the
logic without a browser; `SearchBySample` only wires widgets to them. Only
thumbnails (JPEG, longest side `THUMB_SIZE`) and face crops reach the browser.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Final

import anywidget
import ipywidgets as w
import numpy as np
import traitlets
from loguru import logger
from numpy.typing import NDArray
from PIL import Image

from workbench.errors import WorkbenchError
from workbench.gallery import facets, photo_detail
from workbench.imaging import DecodedImage, decode_image
from workbench.search import Match, QueryFace
from workbench.thumbnails import ThumbnailCache
from workbench.widgets.common import (
    Banner,
    ReadyMarker,
    data_uri,
    format_similarity,
    open_app_workbench,
)

if TYPE_CHECKING:
    from workbench.core import Workbench

ACCEPT: Final = ".jpg,.jpeg,.png,.webp"
"""What the picker offers (the browser's filter only; the content is checked after)."""
ACCEPTED_FORMATS: Final[dict[str, str]] = {"JPEG": "JPG", "PNG": "PNG", "WEBP": "WebP"}
"""Pillow format → the name users know. The workbench decodes more (GIF, BMP, TIFF),
but the app promises these three, so the others are refused with a message."""
THRESHOLD_MIN: Final = 70
THRESHOLD_MAX: Final = 95
TOP_K_CHOICES: Final = (5, 10, 20, 50)
THUMB_SIZE: Final = 256
"""Longest side of a match thumbnail: the cached size, so only the boxes are drawn per search."""
FACE_CROP_SIZE: Final = 112
ALL_SOURCES: Final = ""
"""Source dropdown value meaning every source (ipywidgets' Dropdown reads ``None`` as unset)."""

RESULT_COLUMNS: Final = (
    "sample_file",
    "query_face",
    "query_box",
    "rank",
    "photo_uri",
    "source",
    "face_id",
    "photo_id",
    "x1",
    "y1",
    "x2",
    "y2",
    "similarity_pct",
    "cosine",
)
"""Columns of the CSV / JSON export, one row per match (`result_rows`)."""


# ---- uploads -----------------------------------------------------------------------
@dataclass(frozen=True)
class Upload:
    """One uploaded file: its name as the user's browser gave it, and its bytes."""

    name: str
    content: bytes


def read_uploads(value: Iterable[Mapping[str, Any]]) -> list[Upload]:
    """`Upload`\\s from a ``FileUpload.value`` of ipywidgets 8 (a tuple of dicts with
    ``name`` and ``content``, a memoryview) or the drop zone's equivalent."""
    out = []
    for item in value:
        content = item.get("content", b"")
        name = PurePath(str(item.get("name") or "upload")).name  # never a client's path
        out.append(Upload(name, bytes(content)))
    return out


# ---- searching ---------------------------------------------------------------------
@dataclass(frozen=True)
class SampleResult:
    """What one uploaded photo gave: its faces with their matches, or why nothing.

    ``message`` is set when the photo gave no face to search with (no face,
    unreadable, refused format, failed search); ``faces`` is then empty.
    ``crops`` are JPEG crops of the sample's faces, one per face.
    """

    name: str
    faces: list[QueryFace] = field(default_factory=list)
    crops: list[bytes] = field(default_factory=list)
    message: str | None = None

    @property
    def n_matches(self) -> int:
        return sum(len(f.matches) for f in self.faces)


def search_upload(
    wb: Workbench,
    upload: Upload,
    top_k: int,
    threshold: float,
    source: str | None = None,
) -> SampleResult:
    """Search the workbench with every face of one uploaded photo.

    Never raises for a bad photo: a refused or unreadable file, a photo with
    no face and an unexpected failure come back as `SampleResult.message`
    naming the file (the unexpected one is logged with its traceback, which
    the app does not show).
    """
    name = upload.name
    try:
        sample = decode_image(upload.content, wb.settings.limits)
    except WorkbenchError as e:
        return SampleResult(name, message=f"{name}: cannot be read: {e}")
    if sample.format not in ACCEPTED_FORMATS:
        accepted = ", ".join(ACCEPTED_FORMATS.values())
        return SampleResult(
            name,
            message=f"{name}: is a {sample.format} image; the search accepts {accepted} — "
            "convert it to one of these and upload it again",
        )
    try:
        faces = wb.search(sample, top_k=top_k, threshold=threshold, source=source or None)
    except WorkbenchError as e:
        return SampleResult(name, message=f"{name}: search failed: {e}")
    except Exception as e:  # noqa: BLE001 - the app must show a message, never a traceback
        logger.exception("search by sample failed for {}", name)
        return SampleResult(name, message=f"{name}: search failed ({type(e).__name__}: {e})")
    if not faces:
        return SampleResult(
            name, message=f"no face found in {name}: upload a photo where a face is clearly visible"
        )
    return SampleResult(name, faces, [face_crop(sample, f.box) for f in faces])


def face_crop(sample: DecodedImage, box: Sequence[float], size: int = FACE_CROP_SIZE) -> bytes:
    """A square JPEG crop around a face of the sample, with some context around the box."""
    rgb: NDArray[np.uint8] = sample.rgb
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * 1.5
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    h, w_ = rgb.shape[:2]
    left, top = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    right, bottom = min(w_, round(cx + side / 2)), min(h, round(cy + side / 2))
    img = Image.fromarray(rgb[top : max(bottom, top + 1), left : max(right, left + 1)])
    img.thumbnail((size, size))
    return _jpeg(img)


# ---- export ------------------------------------------------------------------------
def result_rows(results: Sequence[SampleResult]) -> list[dict[str, Any]]:
    """One row per match, best first within each face, in `RESULT_COLUMNS` order.

    ``query_face`` counts from 1 per sample; ``query_box`` is ``[x1, y1, x2, y2]``
    in the sample's pixels; ``similarity_pct`` is the calibrated percentage.
    """
    rows = []
    for r in results:
        for qi, face in enumerate(r.faces, 1):
            for rank, m in enumerate(face.matches, 1):
                x1, y1, x2, y2 = m.box
                rows.append(
                    {
                        "sample_file": r.name,
                        "query_face": qi,
                        "query_box": list(face.box),
                        "rank": rank,
                        "photo_uri": m.photo,
                        "source": m.source,
                        "face_id": m.face_id,
                        "photo_id": m.photo_id,
                        "x1": x1,
                        "y1": y1,
                        "x2": x2,
                        "y2": y2,
                        "similarity_pct": round(m.similarity, 2),
                        "cosine": round(m.cosine, 4),
                    }
                )
    return rows


def results_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text with a header; ``query_box`` as JSON text (as `workbench.export` writes lists)."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(RESULT_COLUMNS)
    for row in rows:
        out.writerow(
            [json.dumps(row[c]) if isinstance(row[c], list) else row[c] for c in RESULT_COLUMNS]
        )
    return buf.getvalue()


def results_json(rows: Sequence[Mapping[str, Any]]) -> str:
    """A JSON array of row objects, one per line (as `workbench.export` writes JSON)."""
    lines = [json.dumps({c: row[c] for c in RESULT_COLUMNS}, ensure_ascii=False) for row in rows]
    return "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n"


def download_link(text: str, filename: str, mime: str, label: str, testid: str) -> str:
    """An anchor that downloads ``text`` as ``filename`` from a data: URI, with no server."""
    data = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return (
        f'<a class="wb-download" data-testid="{testid}" download="{html.escape(filename)}" '
        f'href="data:{mime};charset=utf-8;base64,{data}">{html.escape(label)}</a>'
    )


def exports_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """The one-click CSV and JSON download links of ``rows`` (a note when there are none)."""
    if not rows:
        return '<div class="wb-exports" data-testid="exports" data-rows="0"></div>'
    links = " ".join(
        [
            download_link(results_csv(rows), "search-results.csv", "text/csv", "⬇ CSV", "csv"),
            download_link(
                results_json(rows), "search-results.json", "application/json", "⬇ JSON", "json"
            ),
        ]
    )
    return (
        f'<div class="wb-exports" data-testid="exports" data-rows="{len(rows)}">'
        f"Export {len(rows)} match{'es' if len(rows) != 1 else ''}: {links}</div>"
    )


# ---- rendering ---------------------------------------------------------------------
CSS: Final = """
<style>
.wb-search .wb-drop{border:2px dashed #999;border-radius:6px;padding:10px 16px;color:#555;
  min-width:260px;text-align:center}
.wb-search .wb-drop.wb-over{border-color:#1976d2;background:#e3f2fd}
.wb-search .wb-message{padding:6px 10px;margin:4px 0;border-radius:4px;background:#fdecea;
  color:#611a15;border-left:4px solid #f44336}
.wb-search .wb-sample{margin:10px 0;border-top:1px solid #ddd;padding-top:6px}
.wb-search .wb-qface{display:flex;gap:10px;align-items:flex-start;margin:6px 0}
.wb-search .wb-qcrop{flex:none;text-align:center;font-size:12px}
.wb-search .wb-matches{display:flex;flex-wrap:wrap;gap:8px}
.wb-search .wb-tile{width:200px;font-size:12px;line-height:1.3}
.wb-search .wb-tile img{max-width:200px;max-height:200px;display:block}
.wb-search .wb-sim{font-weight:bold;font-size:14px}
.wb-search .wb-none{color:#666;font-style:italic}
.wb-search .wb-download{margin:0 6px;padding:2px 8px;border:1px solid #1976d2;border-radius:4px;
  text-decoration:none}
</style>
"""


def _img(jpeg: bytes, alt: str) -> str:
    return f'<img src="{data_uri(jpeg)}" alt="{html.escape(alt)}">'


def _box_text(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in box) + "]"


def message_html(text: str) -> str:
    """A message shown in the app: escaped, one line, findable by tests."""
    return f'<div class="wb-message" data-testid="message">{html.escape(text)}</div>'


def match_tile_html(m: Match, thumb: bytes | None, why: str | None = None) -> str:
    """One match: the boxed thumbnail (or why there is none), similarity %, file, box."""
    name = PurePath(m.photo).name or m.photo
    picture = _img(thumb, name) if thumb else f'<div class="wb-none">{html.escape(why or "")}</div>'
    return (
        f'<div class="wb-tile" data-testid="match" data-similarity="{m.similarity:.1f}" '
        f'data-cosine="{m.cosine:.4f}" data-photo="{html.escape(m.photo)}" '
        f'data-face-id="{m.face_id}" '
        f'data-box="{html.escape(json.dumps(m.box))}">{picture}'
        f'<div class="wb-sim">{format_similarity(m.similarity)} '
        f"<small>cos {m.cosine:.3f}</small></div>"
        f'<div class="wb-name" title="{html.escape(m.photo)}">{html.escape(name)}</div>'
        f'<div class="wb-box">box {_box_text(m.box)} · {html.escape(m.source)}</div></div>'
    )


def sample_html(result: SampleResult, tiles: Sequence[Sequence[str]], threshold: float) -> str:
    """A sample's section: per face, its crop and its match tiles (pre-rendered)."""
    name = html.escape(result.name)
    parts = [
        f'<div class="wb-sample" data-testid="sample" data-name="{name}" '
        f'data-faces="{len(result.faces)}" data-matches="{result.n_matches}">'
        f"<b>{name}</b>: {len(result.faces)} face{'s' if len(result.faces) != 1 else ''}, "
        f"{result.n_matches} match{'es' if result.n_matches != 1 else ''} at or above "
        f"{threshold:g} %"
    ]
    for i, (face, crop, face_tiles) in enumerate(
        zip(result.faces, result.crops, tiles, strict=True), 1
    ):
        inner = "".join(face_tiles) or (
            f'<div class="wb-none" data-testid="no-match">no stored face at or above '
            f"{threshold:g} %</div>"
        )
        parts.append(
            f'<div class="wb-qface" data-testid="query-face" data-index="{i}">'
            f'<div class="wb-qcrop">{_img(crop, f"face {i}")}<br>face {i}<br>'
            f"{_box_text(face.box)}</div>"
            f'<div class="wb-matches">{inner}</div></div>'
        )
    parts.append("</div>")
    return "".join(parts)


# ---- drag and drop -----------------------------------------------------------------
class DropZone(anywidget.AnyWidget):  # type: ignore[misc]
    """A box photos can be dropped on; ipywidgets' FileUpload only has a picker.

    Dropped files reach Python as one custom message with their bytes as
    binary buffers; `on_files` callbacks get them in ``FileUpload.value``'s
    shape, so one handler serves both.
    """

    _esm = """
    function render({ model, el }) {
      el.classList.add("wb-drop");
      el.dataset.testid = "dropzone";
      el.textContent = model.get("text");
      model.on("change:text", () => { el.textContent = model.get("text"); });
      el.addEventListener("dragover", (e) => { e.preventDefault(); el.classList.add("wb-over"); });
      el.addEventListener("dragleave", () => el.classList.remove("wb-over"));
      el.addEventListener("drop", async (e) => {
        e.preventDefault();
        el.classList.remove("wb-over");
        const files = Array.from((e.dataTransfer && e.dataTransfer.files) || []);
        if (!files.length) return;
        const buffers = await Promise.all(files.map((f) => f.arrayBuffer()));
        const meta = files.map((f) => ({
          name: f.name, type: f.type, size: f.size, last_modified: f.lastModified }));
        model.send({ kind: "files", files: meta }, undefined, buffers);
      });
    }
    export default { render };
    """
    text = traitlets.Unicode("or drop JPG, PNG or WebP photos here").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._callbacks: list[Any] = []
        self.on_msg(self._on_msg)

    def on_files(self, callback: Any) -> None:
        """Call ``callback(files)`` with a tuple of upload dicts when files are dropped."""
        self._callbacks.append(callback)

    def _on_msg(self, _widget: Any, content: Any, buffers: Sequence[Any]) -> None:
        if not isinstance(content, dict) or content.get("kind") != "files":
            return
        files = tuple(
            {**meta, "content": memoryview(buf)}
            for meta, buf in zip(content.get("files", []), buffers, strict=False)
        )
        for cb in self._callbacks:
            cb(files)


# ---- the component -----------------------------------------------------------------
class SearchBySample(w.VBox):  # type: ignore[misc]
    """The search-by-sample app: upload, threshold, top-K, source, results, export.

    ``cache`` is the thumbnail cache to draw matches from (default: the
    workbench's own, under ``<home>/thumbnails``). Uploading runs the search;
    the Search button runs it again with the current settings. After a search,
    ``results`` holds the `SampleResult`\\s and ``rows`` the export rows.
    """

    def __init__(self, wb: Workbench, *, cache: ThumbnailCache | None = None) -> None:
        self.wb = wb
        self.cache = cache or ThumbnailCache(wb.settings)
        self.results: list[SampleResult] = []
        self.rows: list[dict[str, Any]] = []
        self._uploads: list[Upload] = []
        self._clearing = False

        self.upload = w.FileUpload(
            accept=ACCEPT, multiple=True, description="Choose photos", icon="upload"
        )
        self.upload.add_class("wb-upload")
        self.drop = DropZone()
        default_threshold = round(wb.settings.search.threshold)
        self.threshold = w.IntSlider(
            value=min(max(default_threshold, THRESHOLD_MIN), THRESHOLD_MAX),
            min=THRESHOLD_MIN,
            max=THRESHOLD_MAX,
            step=1,
            description="Threshold %",
            continuous_update=False,
            style={"description_width": "initial"},
        )
        self.threshold.add_class("wb-threshold")
        top_k = wb.settings.search.top_k
        choices = sorted({*TOP_K_CHOICES, top_k})
        self.top_k = w.Dropdown(options=choices, value=top_k, description="Top K")
        self.top_k.add_class("wb-topk")
        self.source = w.Dropdown(options=self._source_options(), value=ALL_SOURCES)
        self.source.description = "Source"
        self.source.add_class("wb-source")
        self.search_button = w.Button(
            description="Search", icon="search", button_style="primary", disabled=True
        )
        self.search_button.add_class("wb-search-button")
        self.status = w.HTML(self._status_html("idle", "Upload one or several photos to search."))
        self.banner = Banner()
        self.messages = w.HTML("")
        self.exports = w.HTML(exports_html([]))
        self.output = w.HTML("")

        self.upload.observe(self._on_upload, names="value")
        self.drop.on_files(self._on_files)
        self.search_button.on_click(lambda _b: self.run())

        controls = w.HBox([self.upload, self.drop], layout=w.Layout(align_items="center"))
        options = w.HBox([self.threshold, self.top_k, self.source, self.search_button])
        super().__init__(
            [
                w.HTML(CSS),
                controls,
                options,
                self.status,
                self.banner,
                self.messages,
                self.exports,
                self.output,
                # Last, so the marker appears once the controls above it are drawn.
                ReadyMarker(app="search"),
            ]
        )
        self.add_class("wb-search")

    # ---- actions -------------------------------------------------------------------
    def set_uploads(self, value: Iterable[Mapping[str, Any]]) -> list[SampleResult]:
        """Take uploads (``FileUpload.value``'s shape) and search them: what an upload does."""
        self._uploads = read_uploads(value)
        self.search_button.disabled = not self._uploads
        return self.run()

    def run(self) -> list[SampleResult]:
        """Search every current upload with the current settings and show the results."""
        if not self._uploads:
            self._show([], "Upload one or several photos to search.")
            return []
        self.status.value = self._status_html(
            "searching", f"Searching {len(self._uploads)} photo(s)…"
        )
        self.search_button.disabled = True
        try:
            results = [
                search_upload(
                    self.wb,
                    up,
                    top_k=int(self.top_k.value),
                    threshold=float(self.threshold.value),
                    source=self.source.value or None,
                )
                for up in self._uploads
            ]
            n = sum(r.n_matches for r in results)
            faces = sum(len(r.faces) for r in results)
            self._show(
                results,
                f"{len(results)} photo(s), {faces} face(s), {n} match(es) at or above "
                f"{self.threshold.value} %.",
            )
        except Exception as e:  # noqa: BLE001 - drawing must not leave a traceback on the page
            logger.exception("search app failed to show its results")
            self.banner.show_error(e, "the results cannot be shown")
            self.status.value = self._status_html("error", "Search failed.")
            results = []
        finally:
            self.search_button.disabled = not self._uploads
        return results

    # ---- internals -----------------------------------------------------------------
    def _on_upload(self, change: Mapping[str, Any]) -> None:
        if self._clearing or not change["new"]:
            return
        self.set_uploads(change["new"])
        # Clearing lets the same files be chosen again (an equal value fires no change).
        self._clearing = True
        try:
            self.upload.value = ()
        finally:
            self._clearing = False

    def _on_files(self, files: Sequence[Mapping[str, Any]]) -> None:
        self.set_uploads(files)

    def _source_options(self) -> list[tuple[str, str]]:
        try:
            sources = facets(self.wb.catalog).source
        except WorkbenchError as e:
            logger.warning("search app cannot list the sources: {}", e)
            sources = {}
        return [("all sources", ALL_SOURCES)] + [
            (f"{name} ({n})", name) for name, n in sources.items()
        ]

    def _show(self, results: list[SampleResult], summary: str) -> None:
        self.banner.clear()
        self.results = results
        self.rows = result_rows(results)
        threshold = float(self.threshold.value)
        self.messages.value = "".join(message_html(r.message) for r in results if r.message)
        self.output.value = "".join(
            sample_html(r, [self._tiles(q) for q in r.faces], threshold)
            for r in results
            if not r.message
        )
        self.exports.value = exports_html(self.rows)
        self.status.value = self._status_html("done" if results else "idle", summary)

    def _tiles(self, face: QueryFace) -> list[str]:
        return [self._tile(m) for m in face.matches]

    def _tile(self, m: Match) -> str:
        """A match tile whose thumbnail has every face of the photo boxed, the match in red."""
        try:
            detail = photo_detail(self.wb.catalog, m.photo_id, pack=self.wb.pack.name)
            ids = [f.id for f in detail.faces]
            if m.face_id in ids:
                boxes, hi = detail.boxes, ids.index(m.face_id)
            else:
                boxes, hi = [m.box], 0
            thumb = self.cache.boxed(detail, boxes, size=THUMB_SIZE, highlight=hi)
            return match_tile_html(m, thumb)
        except WorkbenchError as e:
            return match_tile_html(m, None, f"no thumbnail: {e}")

    @staticmethod
    def _status_html(state: str, text: str) -> str:
        return (
            f'<div class="wb-status" data-testid="status" data-state="{state}">'
            f"{html.escape(text)}</div>"
        )


def search_app(
    home: str | None = None, pack: str | None = None, query: str | None = None
) -> w.Widget:
    """The app page's one call: `SearchBySample` over the page's workbench (the notebook's
    parameters, Voila's query string, ``WORKBENCH_*``; see `common.app_settings`).

    A workbench that cannot be opened gives a banner saying why (and the ready
    marker, so the page is done), never a traceback.
    """
    try:
        wb = open_app_workbench(home, pack, query)
        return SearchBySample(wb)
    except Exception as e:  # noqa: BLE001 - a Voila page shows words, not a traceback
        logger.exception("search app cannot open its workbench")
        banner = Banner()
        banner.show_error(e, "the search app cannot open its workbench")
        return w.VBox([banner, ReadyMarker(app="search")])


def _jpeg(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


__all__ = [
    "ACCEPT",
    "RESULT_COLUMNS",
    "THRESHOLD_MAX",
    "THRESHOLD_MIN",
    "TOP_K_CHOICES",
    "DropZone",
    "SampleResult",
    "SearchBySample",
    "Upload",
    "read_uploads",
    "result_rows",
    "results_csv",
    "results_json",
    "search_app",
    "search_upload",
]
