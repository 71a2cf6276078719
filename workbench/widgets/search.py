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

The work is in pure functions (`workbench.widgets.search_results`: reading
uploads, searching them, result rows, CSV / JSON, the ``*_html`` renderers),
so tests drive the logic without a browser; `SearchBySample` only wires
widgets to them.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import anywidget
import ipywidgets as w
import traitlets
from loguru import logger

from workbench.analysis.gallery import facets
from workbench.analysis.pictures import Pictures
from workbench.analysis.search import Match, QueryFace
from workbench.errors import WorkbenchError
from workbench.imaging.thumbnails import ThumbnailCache
from workbench.widgets.common import Banner, ReadyMarker, app_module
from workbench.widgets.search_results import (
    THUMB_SIZE,
    SampleResult,
    Upload,
    exports_html,
    match_tile_html,
    message_html,
    page_of,
    read_uploads,
    result_rows,
    sample_html,
    search_upload,
)

if TYPE_CHECKING:
    from workbench.core import Workbench

ACCEPT: Final = ".jpg,.jpeg,.png,.webp"
"""What the picker offers (the browser's filter only; the content is checked after)."""
THRESHOLD_MIN: Final = 70
THRESHOLD_MAX: Final = 95
TOP_K_CHOICES: Final = (5, 10, 20, 50)
EVERY_MATCH: Final = 0
"""Top-K dropdown value for every match above the threshold."""
ALL_SOURCES: Final = ""
"""Source dropdown value meaning every source (ipywidgets' Dropdown reads ``None`` as unset)."""


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
.wb-search .wb-person{flex-basis:100%;font-weight:bold;margin-top:4px}
.wb-search .wb-expected{font-size:12px;color:#444;margin-bottom:4px}
.wb-search .wb-page{font-size:12px;color:#444}
.wb-search .wb-also{color:#555;font-style:italic}
.wb-search .wb-download{margin:0 6px;padding:2px 8px;border:1px solid #1976d2;border-radius:4px;
  text-decoration:none}
</style>
"""


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
        choices = [(str(k), k) for k in sorted({*TOP_K_CHOICES, top_k})]
        self.top_k = w.Dropdown(
            options=[*choices, ("all", EVERY_MATCH)], value=top_k, description="Top K"
        )
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
        self.page = 0
        self.page_size = wb.settings.search.page_size
        self.prev_button = w.Button(description="◀ Previous", disabled=True)
        self.prev_button.add_class("wb-prev")
        self.next_button = w.Button(description="Next ▶", disabled=True)
        self.next_button.add_class("wb-next")
        self.prev_button.on_click(lambda _b: self.show_page(self.page - 1))
        self.next_button.on_click(lambda _b: self.show_page(self.page + 1))

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
                w.HBox([self.prev_button, self.next_button]),
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
                    top_k=int(self.top_k.value) or None,
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
        self.messages.value = "".join(message_html(r.message) for r in results if r.message)
        self.exports.value = exports_html(self.rows)
        self.show_page(0)
        self.status.value = self._status_html("done" if results else "idle", summary)

    @property
    def pages(self) -> int:
        """Pages of match tiles: enough for the face with the most matches."""
        most = max((len(q.matches) for r in self.results for q in r.faces), default=0)
        return max(1, -(-most // self.page_size))

    def show_page(self, page: int) -> None:
        """Show page ``page`` (from 0) of every face's matches; thumbnails for it only."""
        self.page = min(max(0, page), self.pages - 1)
        threshold = float(self.threshold.value)
        self.output.value = "".join(
            sample_html(r, [self._tiles(q) for q in r.faces], threshold, self.page, self.page_size)
            for r in self.results
            if not r.message
        )
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.pages - 1

    def _tiles(self, face: QueryFace) -> list[str]:
        return [self._tile(m) for m in page_of(face, self.page, self.page_size)]

    def _tile(self, m: Match) -> str:
        """A match tile whose thumbnail has every face of the photo boxed, the match in red."""
        try:
            thumb = Pictures(self.wb.catalog, self.cache, self.wb.pack.name).match(m, THUMB_SIZE)
            return match_tile_html(m, thumb)
        except WorkbenchError as e:
            return match_tile_html(m, None, f"no thumbnail: {e}")

    @staticmethod
    def _status_html(state: str, text: str) -> str:
        return (
            f'<div class="wb-status" data-testid="status" data-state="{state}">'
            f"{html.escape(text)}</div>"
        )


app_module(__name__, SearchBySample)  # `workbench.widgets.search(wb)` is `SearchBySample(wb)`

__all__ = [
    "ACCEPT",
    "EVERY_MATCH",
    "THRESHOLD_MAX",
    "THRESHOLD_MIN",
    "TOP_K_CHOICES",
    "DropZone",
    "SearchBySample",
]
