"""The people app in-process on a small workbench of its own (the session's dev one stays
untouched): cluster, name, merge, hide, split and "not this person" through the widget."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DevPhoto, local_pack_settings

IDENTITIES = ("deepface:Angelina", "deepface:Scarlett", "deepface:Mark", "face_recognition:obama")
PER_IDENTITY = 4


def small_set(dev_photos: list[DevPhoto], target: Path) -> Path:
    """16 single-face photos of 4 identities copied to ``target`` (distinct pictures: the
    dev set's recorded copy would be shown once)."""
    target.mkdir(parents=True, exist_ok=True)
    for identity in IDENTITIES:
        distinct = [p for p in dev_photos if p.identity == identity and p.copy_of is None]
        for p in distinct[:PER_IDENTITY]:
            shutil.copy(p.path, target / p.path.name)
    return target


@pytest.fixture
def small_wb(tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto]) -> Iterator[Any]:
    from workbench.core import Workbench

    wb = Workbench(local_pack_settings(tmp_path / "wb", models_dir))
    wb.ingest([small_set(dev_photos, tmp_path / "photos")], progress=False)
    yield wb
    wb.close()


def _rows(app: Any) -> dict[int, tuple[str, int]]:
    return {p.id: (p.label, p.faces) for p in app.people}


def test_people_app_cluster_and_corrections(small_wb: Any) -> None:
    from workbench.widgets.people import PeopleApp

    app = PeopleApp(small_wb, projection="pca")
    assert app.marker.app == "people"
    assert 'data-testid="no-people"' in app.empty.value
    assert app.main_box.layout.display == "none"

    app.cluster_now()
    assert app.banner.value == "", app.banner.value
    assert app.main_box.layout.display == "flex"
    assert len(app.people) >= 2, app.people
    assert 'data-testid="person-row"' in app.list_html.value
    assert app.figure is not None and len(app.figure.data) >= 2
    assert app.current == app.people[0].id
    assert len(app.grid.items) == app.people[0].faces and app.grid.items[0]["src"]
    assert "Clustered" in app.result.value

    # Name: the name shows in the list.
    first = app.people[0].id
    app.name_text.value = "Alice"
    app.name_person()
    assert _rows(app)[first][0] == "Alice"
    assert 'data-name="Alice"' in app.list_html.value
    assert "Named Alice" in app.result.value

    # Merge: one person fewer, the faces add up.
    before = _rows(app)
    other = next(pid for pid in before if pid != first)
    app.merge_with.value = other
    app.merge_person()
    after = _rows(app)
    assert len(after) == len(before) - 1 and other not in after
    assert after[first][1] == before[first][1] + before[other][1]

    # Not this person: the selected face leaves the person.
    faces = list(app.shown_faces)
    assert app.current == first and len(faces) >= 2
    app._toggle_face(faces[0])
    assert app.selected_faces == {faces[0]} and app.grid.items[0]["badge"] == "selected"
    app.reject_selected()
    assert faces[0] not in small_wb.people.faces(first)
    assert faces[0] not in app.shown_faces
    assert "Took 1 of 1 faces" in app.result.value

    # Split: the selected face becomes a person of its own.
    app._toggle_face(app.shown_faces[0])
    moved = next(iter(app.selected_faces))
    n_people = len(app.people)
    app.split_selected()
    assert len(app.people) == n_people + 1
    assert small_wb.people.person_of([moved])[moved] not in (None, first)

    # Hide: gone from the list.
    app.hide_person()
    assert first not in _rows(app)
    assert f'data-person-id="{first}"' not in app.list_html.value
    assert app.banner.value == ""


def test_people_app_errors_in_words(small_wb: Any) -> None:
    from workbench.widgets.people import PeopleApp

    small_wb.cluster()
    app = PeopleApp(small_wb, projection="pca")
    app.split_button.click()  # nothing selected
    assert "select faces first" in app.banner.value
    assert "Traceback" not in app.banner.value
