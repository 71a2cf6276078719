"""Pieces every app shares: a thumbnail grid, a message banner, a ready marker, settings.

Why an anywidget grid rather than a box of ``ipywidgets.Image``: a page of
48 thumbnails is then ONE widget update (a list of ``data:`` URIs of the
cached 256-px JPEGs) instead of 48 widget models created, synced and laid
out one by one, and a click is one message back. Class names and
``data-testid`` attributes are stable for the browser tests:

* ``[data-testid=<testid>]`` the grid, with ``data-key`` (changes per page),
  ``data-count`` (tiles) and, once drawn with ``ready`` set, ``data-wb-ready``;
* ``.wb-tile`` each tile (``data-id``, ``data-caption``), ``.wb-thumb`` its ``<img>``,
  ``.wb-caption`` its caption, ``.wb-badge`` its badge.
"""

from __future__ import annotations

import base64
import html
import os
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as widgets
import traitlets
from loguru import logger

from workbench.dashboards import settings_from_query
from workbench.display.html import format_similarity
from workbench.errors import WorkbenchError
from workbench.redaction import printable
from workbench.settings import WorkbenchSettings

_GRID_ESM = r"""
function draw(model, el) {
  const items = model.get("items") || [];
  const root = document.createElement("div");
  root.className = "wb-grid";
  root.dataset.testid = model.get("testid");
  root.dataset.key = model.get("key");
  root.dataset.count = String(items.length);
  root.style.gridTemplateColumns =
    `repeat(auto-fill, minmax(${model.get("tile_size")}px, 1fr))`;
  if (!items.length) {
    const empty = document.createElement("div");
    empty.className = "wb-empty";
    empty.textContent = model.get("empty_text");
    root.appendChild(empty);
  }
  for (const it of items) {
    const tile = document.createElement("figure");
    tile.className = "wb-tile";
    tile.dataset.id = String(it.id);
    tile.dataset.testid = "tile";
    tile.dataset.caption = it.caption || "";
    tile.title = it.title || it.caption || "";
    if (it.src) {
      const img = document.createElement("img");
      img.className = "wb-thumb";
      img.alt = it.caption || "";
      img.src = it.src;
      tile.appendChild(img);
    } else {
      const ph = document.createElement("div");
      ph.className = "wb-thumb wb-missing";
      ph.textContent = it.missing || "no thumbnail";
      tile.appendChild(ph);
    }
    const cap = document.createElement("figcaption");
    cap.className = "wb-caption";
    cap.textContent = it.caption || "";
    if (it.badge) {
      const b = document.createElement("span");
      b.className = "wb-badge wb-badge-" + (it.kind || "info");
      b.textContent = it.badge;
      cap.appendChild(b);
    }
    tile.appendChild(cap);
    tile.addEventListener("click", () => {
      model.set("selected", it.id);
      model.save_changes();
      model.send({ event: "click", id: it.id });
    });
    root.appendChild(tile);
  }
  el.replaceChildren(root);
  const ready = model.get("ready");
  if (ready) { root.dataset.wbReady = ready; }
}
function render({ model, el }) {
  draw(model, el);
  for (const name of ["items", "key", "ready", "empty_text", "tile_size"]) {
    model.on(`change:${name}`, () => draw(model, el));
  }
}
export default { render };
"""

_GRID_CSS = """
.wb-grid { display: grid; gap: 8px; width: 100%; }
.wb-tile { margin: 0; cursor: pointer; border: 1px solid #ddd; border-radius: 4px;
  padding: 4px; background: #fafafa; display: flex; flex-direction: column; }
.wb-tile:hover { border-color: #1976d2; }
.wb-thumb { width: 100%; aspect-ratio: 1 / 1; object-fit: contain; background: #eee; }
.wb-missing { display: flex; align-items: center; justify-content: center; color: #888;
  font-size: 12px; text-align: center; }
.wb-caption { font-size: 11px; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; display: flex; justify-content: space-between; gap: 4px; }
.wb-badge { border-radius: 3px; padding: 0 4px; color: #fff; background: #607d8b; }
.wb-badge-faces { background: #2e7d32; } .wb-badge-error { background: #c62828; }
.wb-badge-none { background: #9e9e9e; }
.wb-empty { color: #666; padding: 24px; }
"""

_MARKER_ESM = r"""
function render({ model, el }) {
  const draw = () => {
    el.replaceChildren();
    const app = model.get("app");
    if (app) {
      const s = document.createElement("span");
      s.dataset.wbReady = app;
      s.style.display = "none";
      el.appendChild(s);
    }
  };
  draw();
  model.on("change:app", draw);
}
export default { render };
"""


class ThumbGrid(anywidget.AnyWidget):  # type: ignore[misc]
    """A CSS grid of thumbnails; a click sets ``selected`` and calls `on_click` handlers.

    ``items``: dicts with ``id`` (int), ``src`` (a ``data:`` URI, see `data_uri`;
    empty for none), ``caption``, and optionally ``badge``, ``kind`` (``faces``,
    ``none``, ``error``: the badge's colour), ``title`` (hover text) and
    ``missing`` (the text shown without a thumbnail). Set ``items`` and
    ``key`` together under ``hold_sync()`` so a page is one update.
    """

    _esm = _GRID_ESM
    _css = _GRID_CSS
    items = traitlets.List(traitlets.Dict()).tag(sync=True)
    key = traitlets.Unicode("").tag(sync=True)
    selected = traitlets.Int(None, allow_none=True).tag(sync=True)
    ready = traitlets.Unicode("").tag(sync=True)
    testid = traitlets.Unicode("thumb-grid").tag(sync=True)
    empty_text = traitlets.Unicode("Nothing to show.").tag(sync=True)
    tile_size = traitlets.Int(150).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._click_handlers: list[Callable[[int], None]] = []
        self.on_msg(self._on_msg)

    def on_click(self, handler: Callable[[int], None]) -> None:
        """Call ``handler(id)`` on every click on a tile (also a second click on the same)."""
        self._click_handlers.append(handler)

    def _on_msg(self, _widget: Any, content: Mapping[str, Any], _buffers: Any) -> None:
        if content.get("event") == "click":
            for handler in self._click_handlers:
                handler(int(content["id"]))


class ReadyMarker(anywidget.AnyWidget):  # type: ignore[misc]
    """Renders ``<span data-wb-ready="<app>">`` once ``app`` is set: the signal browser
    tests wait for (an app sets it when its first view is drawn)."""

    _esm = _MARKER_ESM
    app = traitlets.Unicode("").tag(sync=True)


class Banner(widgets.HTML):  # type: ignore[misc]
    """A one-line message above an app: errors in words, never a traceback.

    ``show_error(e)`` shows a `WorkbenchError`'s own message (it says what to
    do) and, for anything else, the exception's type and text only.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("wb-banner")

    def show(self, text: str, kind: str = "info") -> None:
        """Show ``text`` (plain text, escaped); kind is info, warning or error."""
        colours = {"info": "#e3f2fd", "warning": "#fff8e1", "error": "#ffebee"}
        self.value = (
            f'<div data-testid="banner" data-kind="{kind}" style="padding:6px 10px;'
            f'border-radius:4px;background:{colours.get(kind, "#eee")}">'
            f"{html.escape(printable(text))}</div>"
        )

    def show_error(self, e: BaseException, doing: str = "") -> None:
        what = str(e) if isinstance(e, WorkbenchError) else f"{type(e).__name__}: {e}"
        self.show(f"{doing}: {what}" if doing else what, "error")

    def clear(self) -> None:
        self.value = ""


def data_uri(jpeg: bytes | Path, mime: str = "image/jpeg") -> str:
    """A ``data:`` URI of a JPEG (bytes or a cached file): what `ThumbGrid` tiles show."""
    data = jpeg.read_bytes() if isinstance(jpeg, Path) else jpeg
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def wait_for_page_request() -> None:
    """In a pre-heated Voila kernel, block until a browser asks for the page (then its
    query string is in ``QUERY_STRING``); anywhere else, return at once.

    `workbench dashboards` pre-heats kernels: each app's imports and kernel start
    happen before anyone asks for it, and only what follows this call runs
    per page view. So an app reads its settings (`app_settings` calls this)
    and opens its workbench after it, never before.
    """
    if os.environ.get("VOILA_PREHEAT", "False") == "False":
        return
    from voila.utils import wait_for_request

    wait_for_request()


def app_settings(
    home: str | Path | None = None, pack: str | None = None, query: str | None = None
) -> WorkbenchSettings:
    """Settings of an app page: ``WORKBENCH_*`` from the environment `workbench dashboards`
    set, then Voila's query string (``?home=...&pack=...``), then the notebook's own
    parameters when not ``None`` (a notebook run by hand names its workbench there).

    Without ``query``, waits for the page's request first (`wait_for_page_request`).
    """
    if query is None:
        wait_for_page_request()
    return settings_from_query(query, home=str(home) if home is not None else None, pack=pack)


def open_app_workbench(
    home: str | Path | None = None, pack: str | None = None, query: str | None = None
) -> Any:
    """`Workbench` of an app page (see `app_settings`); no model is loaded."""
    from workbench.core import Workbench

    return Workbench(app_settings(home, pack, query))


def app_page(
    component: Callable[[Any], widgets.Widget],
    app: str,
    home: str | Path | None = None,
    pack: str | None = None,
    query: str | None = None,
) -> widgets.Widget:
    """An app page's one call: ``component`` over the page's workbench (`app_settings`).

    A workbench that cannot be opened (a refused ``?home=``, a catalog that
    cannot be read) gives a banner saying why, and the ready marker so the page
    is done, never a traceback.
    """
    try:
        return component(open_app_workbench(home, pack, query))
    except Exception as e:  # noqa: BLE001 - a Voila page shows words, not a traceback
        logger.exception("the {} app cannot open its workbench", app)
        banner = Banner()
        banner.show_error(e, f"the {app} app cannot open its workbench")
        return widgets.VBox([banner, ReadyMarker(app=app)])


class AppModule(types.ModuleType):
    """The module of an app, callable as the app: ``workbench.widgets.gallery(wb)``.

    The design names the apps' one call ``workbench.widgets.gallery(wb)``, and
    ``gallery`` is also the app's module: Python binds the module to that name once
    it is imported, so a function of that name in the package would be replaced
    by it. The module itself answers the call instead (`app_module`), and
    ``from workbench.widgets.gallery import Gallery`` works as before.
    """

    def __call__(self, wb: Any, **options: Any) -> widgets.Widget:
        """The app over ``wb`` (a `Workbench`); ``options`` go to the app's class."""
        return self.__dict__["APP"](wb, **options)


def app_module(name: str, app: Callable[..., widgets.Widget]) -> None:
    """Make the module ``name`` call ``app`` when called (`AppModule`)."""
    module = sys.modules[name]
    module.APP = app  # type: ignore[attr-defined]
    module.__class__ = AppModule


__all__ = [
    "AppModule",
    "Banner",
    "ReadyMarker",
    "ThumbGrid",
    "app_module",
    "app_page",
    "app_settings",
    "data_uri",
    "format_similarity",
    "open_app_workbench",
    "wait_for_page_request",
]
