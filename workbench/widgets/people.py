"""`PeopleApp`: the face map, the people list, their faces, and the user's corrections.

>>> from workbench.widgets.people import PeopleApp
>>> PeopleApp(wb)                                       # doctest: +SKIP

Clustering proposes, the user decides (see `workbench.analysis.people`): this app is
where they decide. The map is a plotly ``FigureWidget`` (anywidget-based in
plotly >= 6, so it renders in Voila with nothing else installed) whose
box / lasso selection comes back to Python: the selected points' faces show
in the grid. Picking a person (the dropdown or a row of the list) shows that
person's faces instead. A click on a face tile toggles it for *Split* and
*Not this person*; every action goes through `Workbench.people`, then the
list and the map are drawn again and one line says what happened.

Stable hooks for tests: ``[data-testid=no-people]`` (nothing clustered yet, with
the ``.wb-cluster-now`` button); ``[data-testid=people-list]`` with rows
``tr[data-testid=person-row]`` (``data-person-id``, ``data-name``,
``data-faces``); ``.wb-face-map`` the map; ``[data-testid=person-faces]`` the
face grid (a `ThumbGrid`); ``[data-testid=people-summary]`` (``data-people``,
``data-faces``); ``[data-testid=result]`` the last action's one line; buttons
``.wb-name``, ``.wb-merge``, ``.wb-split``, ``.wb-hide``, ``.wb-reject``.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import ipywidgets as widgets
from loguru import logger

from workbench.analysis.facemap import ColorBy, FaceMap, Projection, face_map_figure
from workbench.analysis.people import PersonInfo
from workbench.errors import WorkbenchError
from workbench.imaging.thumbnails import ThumbnailCache
from workbench.widgets.common import Banner, ReadyMarker, ThumbGrid, app_module, data_uri

if TYPE_CHECKING:
    from workbench.core import Workbench

MAX_FACES: Final = 120
"""Face tiles shown at once (a person's or a selection's first ones, by face id)."""
WEBGL_ABOVE: Final = 20_000
"""Faces above which the map keeps WebGL markers; below, SVG ones, which draw in every
browser (headless Chromium without a GPU shows WebGL plots empty)."""
_NONE: Final = -1
"""Dropdown value for "no person chosen" (ipywidgets reads ``None`` as unset)."""


class PeopleApp(widgets.VBox):  # type: ignore[misc]
    """The people app for one workbench's pack: map, list, faces, actions.

    ``projection`` is the map's (``auto``: UMAP when installed, else PCA; the
    coordinates are cached per set of faces, so only the first drawing pays).
    ``ready_name`` is what the page's ``data-wb-ready`` marker says once the
    first view is drawn. Errors appear in words in the banner.
    """

    def __init__(
        self,
        wb: Workbench,
        projection: Projection = "auto",
        ready_name: str = "people",
        **kwargs: Any,
    ) -> None:
        self.wb = wb
        self.projection: Projection = projection
        self.cache = ThumbnailCache(wb.settings)
        self.people: list[PersonInfo] = []
        self.fmap: FaceMap | None = None
        self.figure: Any = None
        self.shown_faces: list[int] = []
        self.selected_faces: set[int] = set()
        self._from_map = False
        self._quiet = False

        self.banner = Banner()
        self.marker = ReadyMarker()
        self.empty = widgets.HTML()
        self.cluster_button = widgets.Button(description="Cluster now", button_style="primary")
        self.cluster_button.add_class("wb-cluster-now")
        self.cluster_button.on_click(lambda _b: self.cluster_now())
        self.empty_box = widgets.VBox([self.empty, self.cluster_button])

        self.summary = widgets.HTML()
        self.color_by = widgets.ToggleButtons(
            options=[("By person", "person"), ("By cluster", "cluster")], value="person"
        )
        self.color_by.style.button_width = "auto"
        self.color_by.observe(lambda _c: self._draw_map(), names="value")
        self.map_box = widgets.Box(layout={"width": "100%", "min_height": "420px"})
        self.map_box.add_class("wb-face-map")
        self.list_html = widgets.HTML()
        self.person = widgets.Dropdown(description="Person", layout={"width": "320px"})
        self.person.add_class("wb-person-select")
        self.person.observe(self._on_person, names="value")
        self.faces_title = widgets.HTML()
        self.grid = ThumbGrid(
            testid="person-faces", tile_size=96, empty_text="Pick a person or select points."
        )
        self.grid.on_click(self._toggle_face)
        self.result = widgets.HTML()

        self.name_text = widgets.Text(placeholder="Name", layout={"width": "200px"})
        self.name_text.add_class("wb-name-text")
        self.name_button = _button("Name", "wb-name", lambda: self.name_person(), self.banner)
        self.merge_with = widgets.Dropdown(description="Merge with", layout={"width": "320px"})
        self.merge_with.add_class("wb-merge-with")
        self.merge_button = _button(
            "Merge into this", "wb-merge", lambda: self.merge_person(), self.banner
        )
        self.split_button = _button(
            "Split selected into new person", "wb-split", lambda: self.split_selected(), self.banner
        )
        self.hide_button = _button(
            "Hide person", "wb-hide", lambda: self.hide_person(), self.banner
        )
        self.reject_button = _button(
            "Not this person (selected)", "wb-reject", lambda: self.reject_selected(), self.banner
        )
        self.reject_button.button_style = "warning"

        actions = widgets.VBox(
            [
                widgets.HBox([self.name_text, self.name_button, self.hide_button]),
                widgets.HBox([self.merge_with, self.merge_button]),
                widgets.HBox([self.split_button, self.reject_button]),
                self.result,
            ]
        )
        side = widgets.VBox(
            [self.person, actions, self.faces_title, self.grid],
            layout={"flex": "1 1 0", "min_width": "380px"},
        )
        left = widgets.VBox(
            [self.color_by, self.map_box, self.list_html],
            layout={"flex": "1 1 0", "min_width": "0"},
        )
        self.main_box = widgets.HBox([left, side], layout={"width": "100%"})
        super().__init__([self.banner, self.summary, self.empty_box, self.main_box], **kwargs)
        self.add_class("wb-people")
        try:
            self.refresh()
        except Exception as e:  # noqa: BLE001 - in words; the page still shows
            logger.opt(exception=e).warning("people app: first view failed")
            self.banner.show_error(e, "Could not read the people")
        self.marker.app = ready_name
        self.children = (*self.children, self.marker)

    # ---- views -----------------------------------------------------------------------
    @property
    def current(self) -> int | None:
        """The chosen person's id, or None."""
        value = self.person.value
        return None if value in (None, _NONE) else int(value)

    def refresh(self, keep: int | None = None) -> None:
        """Read the people again, redraw list, dropdowns and map; show ``keep`` (or the
        chosen person when still listed, else the largest one)."""
        people = self.wb.people
        self.people = people.list()
        has_people = self.wb.catalog.has_people(people.pack)
        n_faces = self.wb.catalog.count_faces(people.pack)
        self.summary.value = (
            f'<div data-testid="people-summary" data-people="{len(self.people)}" '
            f'data-faces="{n_faces}">{len(self.people)} people, {n_faces} faces '
            f"({html.escape(people.pack)})</div>"
        )
        if not has_people:
            self.empty.value = (
                f'<p data-testid="no-people">No people yet for pack {html.escape(people.pack)}: '
                f"its {n_faces} faces have not been grouped. <b>Cluster now</b> groups them "
                "into people (names, merges and corrections made later survive a re-cluster)."
                "</p>"
            )
            self.cluster_button.disabled = n_faces == 0
            self.empty_box.layout.display = "flex"
            self.main_box.layout.display = "none"
            return
        self.empty_box.layout.display = "none"
        self.main_box.layout.display = "flex"
        self.list_html.value = _people_html(self.people, self.current)
        want = keep if keep is not None else self.current
        ids = [p.id for p in self.people]
        options = [(f"{p.label} ({p.faces} faces)", p.id) for p in self.people]
        self._quiet = True
        try:
            self.person.options = [("— choose —", _NONE), *options]
            self.person.value = want if want in ids else (ids[0] if ids else _NONE)
        finally:
            self._quiet = False
        self._draw_map()
        self._show_person()

    def cluster_now(self) -> None:
        """Group the pack's faces into people (`Workbench.cluster`), then show them."""
        self.cluster_button.disabled = True
        self.empty.value = '<p data-testid="clustering">Clustering… (this can take a minute)</p>'
        try:
            outcome = self.wb.cluster()
        except Exception as e:  # noqa: BLE001 - in words; the button comes back
            logger.opt(exception=e).warning("people app: clustering failed")
            self.banner.show_error(e, "Clustering failed")
            self.cluster_button.disabled = False
            return
        # Said first: drawing the map (UMAP) can take a while in a fresh kernel.
        self._say(
            f"Clustered {outcome.faces} faces into {outcome.people} people "
            f"({outcome.noise} faces in no person)."
        )
        self.fmap = None
        self.refresh()

    def show_faces(self, face_ids: Sequence[int], title: str) -> None:
        """Show these faces as tiles (the first `MAX_FACES`), none selected."""
        self.shown_faces = list(face_ids)
        self.selected_faces = set()
        self.faces_title.value = (
            f'<div data-testid="faces-title" data-count="{len(face_ids)}">'
            f"<b>{html.escape(title)}</b> — click faces to select them for Split or "
            "Not this person</div>"
        )
        self._draw_tiles()

    def _show_person(self) -> None:
        pid = self.current
        self._from_map = False
        self.list_html.value = _people_html(self.people, pid)
        others = [(f"{p.label} ({p.faces})", p.id) for p in self.people if p.id != pid]
        self.merge_with.options = others or [("— nobody else —", _NONE)]
        self.merge_with.value = (others or [("", _NONE)])[0][1]
        for b in (self.name_button, self.hide_button, self.merge_button):
            b.disabled = pid is None
        self.merge_button.disabled = pid is None or not others
        if pid is None:
            self.show_faces([], "No person chosen")
            return
        info = next((p for p in self.people if p.id == pid), None)
        self.name_text.value = (info.name or "") if info else ""
        label = info.label if info else f"person {pid}"
        self.show_faces(self.wb.people.faces(pid), f"{label}: {info.faces if info else 0} faces")

    def _draw_tiles(self) -> None:
        ids = self.shown_faces[:MAX_FACES]
        faces = self.wb.catalog.faces_by_ids(ids)
        photos = self.wb.catalog.photos_by_ids({f.photo_id for f in faces.values()})
        items = []
        for fid in ids:
            face = faces.get(fid)
            if face is None:
                continue
            photo = photos[face.photo_id]
            try:
                src = data_uri(self.cache.face_thumbnail(photo, face.box))
            except Exception:  # noqa: BLE001 - a face without a crop still lists
                src = ""
            chosen = fid in self.selected_faces
            items.append(
                {
                    "id": fid,
                    "src": src,
                    "caption": photo.uri.replace("\\", "/").rsplit("/", 1)[-1],
                    "title": f"face {fid} in {photo.uri}",
                    "badge": "selected" if chosen else "",
                    "kind": "error" if chosen else "info",
                }
            )
        with self.grid.hold_sync():
            self.grid.items = items
            self.grid.key = f"{self.current}:{len(self.shown_faces)}:{len(self.selected_faces)}"
        n = len(self.selected_faces)
        self.split_button.disabled = self.reject_button.disabled = n == 0
        self.split_button.description = f"Split {n} selected into new person"
        self.reject_button.description = f"Not this person ({n} selected)"

    def _draw_map(self) -> None:
        try:
            # Coordinates are cached per set of faces: only people and names are read again.
            self.fmap = self.wb.face_map(method=self.projection)
            fig = _svg_markers(face_map_figure(self.fmap, _color(self.color_by.value)))
            fig.update_layout(
                dragmode="select", height=440, width=640, margin={"l": 10, "r": 10, "t": 40}
            )
            import plotly.graph_objects as go

            self.figure = go.FigureWidget(fig)
            for trace in self.figure.data:
                trace.on_selection(self._on_map_selection)
            self.map_box.children = [self.figure]
        except Exception as e:  # noqa: BLE001 - the list and the faces still work
            logger.opt(exception=e).warning("people app: map not drawn")
            text = str(e) if isinstance(e, WorkbenchError) else f"{type(e).__name__}: {e}"
            self.map_box.children = [
                widgets.HTML(
                    f'<p data-testid="map-error">The map is not available here: '
                    f"{html.escape(text)}. Pick people from the list instead.</p>"
                )
            ]

    # ---- events ----------------------------------------------------------------------
    def _on_person(self, _change: Any) -> None:
        if not self._quiet:
            self._run("Showing the person", self._show_person)

    def _on_map_selection(self, trace: Any, points: Any, _selector: Any) -> None:
        """A box / lasso selection: plotly calls this once per trace; gather them all."""
        if self.figure is None:
            return
        chosen: list[int] = []
        for t in self.figure.data:
            idx = list(t.selectedpoints or []) if t is not trace else list(points.point_inds)
            data = t.customdata
            chosen += [int(data[i][0]) for i in idx if data is not None and i < len(data)]
        if not chosen:
            return
        self._from_map = True
        self.show_faces(sorted(set(chosen)), f"{len(set(chosen))} faces selected on the map")
        self.selected_faces = set(self.shown_faces)
        self._draw_tiles()

    def _toggle_face(self, face_id: int) -> None:
        self.selected_faces ^= {face_id}
        self._draw_tiles()

    # ---- actions ---------------------------------------------------------------------
    def name_person(self, name: str | None = None) -> None:
        """Name the chosen person (the text box's value by default; empty un-names)."""
        pid = self._need_person()
        text = self.name_text.value if name is None else name
        self._act(lambda: self.wb.people.name(pid, text or None), "Named", keep=pid)

    def merge_person(self, other: int | None = None) -> None:
        """Merge ``other`` (the dropdown's by default) into the chosen person."""
        pid = self._need_person()
        other = other if other is not None else self.merge_with.value
        if other in (None, _NONE):
            self.banner.show("Choose the person to merge with first.", "warning")
            return
        self._act(lambda: self.wb.people.merge([pid, int(other)]), "Merged into", keep=pid)

    def split_selected(self) -> None:
        """Move the selected faces into a new person."""
        faces = self._need_faces()
        self._act(lambda: self.wb.people.move(faces, None), "Split into new", keep=self.current)

    def hide_person(self) -> None:
        """Hide the chosen person from the list and the map (its faces stay with it)."""
        pid = self._need_person()
        self._act(lambda: self.wb.people.hide(pid), "Hidden")

    def reject_selected(self) -> None:
        """ "Not this person": take the selected faces out of their person for good."""
        faces = self._need_faces()
        pid = None if self._from_map else self.current
        n_faces = len(faces)

        def do() -> str:
            n = self.wb.people.reject(faces, pid)
            return f"Took {n} of {n_faces} faces out of their person; they will not come back"

        self._act(do, "", keep=self.current)

    def _need_person(self) -> int:
        pid = self.current
        if pid is None:
            raise WorkbenchError("choose a person first")
        return pid

    def _need_faces(self) -> list[int]:
        if not self.selected_faces:
            raise WorkbenchError("select faces first: click their tiles (or select points)")
        return sorted(self.selected_faces)

    def _act(self, action: Callable[[], Any], verb: str, keep: int | None = None) -> None:
        """Run an action, redraw, and say in one line what happened (or why not)."""
        self.banner.clear()
        try:
            out = action()
        except Exception as e:  # noqa: BLE001 - in words, the app stays usable
            logger.opt(exception=e).warning("people app: {} failed", verb or "action")
            self.banner.show_error(e, f"{verb or 'Action'} failed")
            return
        if isinstance(out, PersonInfo):
            message = f"{verb} {out.label}: {out.faces} faces"
        else:
            message = str(out)
        self.fmap = None
        try:
            self.refresh(keep=keep)
        except Exception as e:  # noqa: BLE001
            self.banner.show_error(e, "Could not redraw")
        self._say(message)

    def _run(self, doing: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - in words
            logger.opt(exception=e).warning("people app: {} failed", doing)
            self.banner.show_error(e, doing)

    def _say(self, text: str) -> None:
        self.result.value = f'<div data-testid="result">{html.escape(text)}</div>'


# ---- helpers -------------------------------------------------------------------------
def _button(text: str, cls: str, fn: Callable[[], None], banner: Banner) -> widgets.Button:
    """A button whose failure shows in ``banner`` in words (a callback's exception would
    otherwise reach the page as a traceback)."""
    b = widgets.Button(description=text, layout={"width": "auto"})
    b.add_class(cls)

    def click(_b: Any) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - in words
            logger.opt(exception=e).warning("people app: {} failed", text)
            banner.show_error(e, text)

    b.on_click(click)
    return b


def _color(value: str) -> ColorBy:
    return "cluster" if value == "cluster" else "person"


def _svg_markers(fig: Any) -> Any:
    """The same figure with SVG ``scatter`` traces instead of ``scattergl`` for small maps."""
    import plotly.graph_objects as go

    n = sum(len(t.x) for t in fig.data if t.x is not None)
    if n > WEBGL_ABOVE:
        return fig
    out = go.Figure(layout=fig.layout)
    for t in fig.data:
        spec = t.to_plotly_json()
        spec.pop("type", None)
        out.add_trace(go.Scatter(**spec))
    return out


def _people_html(people: list[PersonInfo], current: int | None) -> str:
    if not people:
        return '<p data-testid="people-list" data-count="0">No people shown (all hidden).</p>'
    rows = "".join(
        f'<tr data-testid="person-row" data-person-id="{p.id}" '
        f'data-name="{html.escape(p.name or "")}" data-faces="{p.faces}"'
        + (' data-current="true" style="background:#e3f2fd"' if p.id == current else "")
        + f"><td style='padding:2px 8px'>{html.escape(p.label)}</td>"
        f"<td style='padding:2px 8px'>{p.faces}</td><td style='padding:2px 8px'>{p.photos}</td>"
        f"<td style='padding:2px 8px'>{'yes' if p.confirmed else ''}</td></tr>"
        for p in people
    )
    return (
        f'<table data-testid="people-list" data-count="{len(people)}" '
        'style="font-size:12px;border-collapse:collapse"><thead><tr>'
        "<th style='text-align:left;padding:2px 8px'>Person</th><th>Faces</th><th>Photos</th>"
        f"<th>Confirmed</th></tr></thead><tbody>{rows}</tbody></table>"
    )


app_module(__name__, PeopleApp)  # `workbench.widgets.people(wb)` is `PeopleApp(wb)`

__all__ = ["MAX_FACES", "PeopleApp"]
