"""A person in a notebook: the cover face beside the person's name and counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from workbench.display.html import MUTED, Images, Markup, esc, frame, number, rendered
from workbench.errors import WorkbenchError

COVER_WIDTH: Final = 112


def person_html(doc: Mapping[str, Any], cover: bytes | None, why: str = "") -> str:
    """HTML of `PersonInfo.to_dict()` with its cover face (``why``: why there is none)."""
    label = doc.get("name") or f"person {doc['id']}"
    flags = [
        "confirmed" if doc.get("confirmed") else "proposed by clustering",
        *(["hidden"] if doc.get("hidden") else []),
    ]
    body = Markup(
        '<div style="display:flex;gap:12px;align-items:center">'
        f'<div data-testid="repr-cover">'
        f"{Images().tag(cover, f'{label}: cover face', width=COVER_WIDTH, why=why or 'no face')}"
        "</div>"
        f"<div><div>{number(int(doc['faces']))} faces in {number(int(doc['photos']))} photos</div>"
        f'<div style="{MUTED}">id {esc(doc["id"])} · {esc(", ".join(flags))}</div></div></div>'
    )
    return frame(
        "person",
        str(label),
        body,
        person_id=doc["id"],
        faces=doc["faces"],
        photos=doc["photos"],
    )


def person_repr(person: Any) -> str | None:
    """``PersonInfo._repr_html_``: the cover from the person's ``pictures`` (the ones of the
    workbench that listed it), or why there is none."""

    def render() -> str:
        pictures = getattr(person, "pictures", None)
        if pictures is None:
            why = "list people through a Workbench to see faces"
            return person_html(person.to_dict(), None, why)
        try:
            return person_html(person.to_dict(), pictures.cover(person.id))
        except WorkbenchError as e:
            return person_html(person.to_dict(), None, f"no cover face: {e}")

    return rendered(render, f"person {getattr(person, 'id', '?')}")


__all__ = ["person_html", "person_repr"]
