"""A search by sample in a notebook: the sample with its faces boxed, then per face its
crop and its matches as thumbnails (the matched face boxed in red) with their %.

The renderer asks for each match's thumbnail through a callable, and only for the
tiles it shows (`MAX_MATCHES_SHOWN` per face, `MAX_FACES_SHOWN` faces), so a large
``top_k`` costs no more pictures than a small one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Protocol

from workbench.display.html import (
    MUTED,
    ROW,
    TILE,
    Images,
    Markup,
    esc,
    format_similarity,
    frame,
    name_of,
    rendered,
    table,
)
from workbench.errors import WorkbenchError

MAX_MATCHES_SHOWN: Final = 12
"""Match tiles drawn per face; the rest are counted."""
MAX_FACES_SHOWN: Final = 12
"""Faces of the sample drawn; the rest are counted."""
TILE_WIDTH: Final = 150
CROP_WIDTH: Final = 96
SAMPLE_WIDTH: Final = 220


class MatchLike(Protocol):
    """What a display needs of a `Match` (duck-typed: this room imports no stage)."""

    @property
    def photo(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def face_id(self) -> int: ...
    @property
    def photo_id(self) -> int: ...
    @property
    def box(self) -> Sequence[float]: ...
    @property
    def similarity(self) -> float: ...
    @property
    def cosine(self) -> float: ...


class FaceLike(Protocol):
    """What a display needs of a `QueryFace`."""

    @property
    def box(self) -> Sequence[float]: ...
    @property
    def score(self) -> float: ...
    @property
    def matches(self) -> Sequence[MatchLike]: ...


def box_text(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{float(v):.0f}" for v in box) + "]"


def match_tile(m: MatchLike, picture: Markup) -> Markup:
    """One match: its thumbnail (or why none), %, cosine, file name, box and source; the
    photo's own uri is the hover title."""
    return Markup(
        f'<figure data-testid="repr-match" data-similarity="{m.similarity:.2f}" '
        f'data-face-id="{m.face_id}" data-photo-id="{m.photo_id}" title="{esc(m.photo)}" '
        f'style="{TILE};width:{TILE_WIDTH + 10}px">{picture}'
        f'<figcaption style="text-align:center"><b>{format_similarity(m.similarity)}</b> '
        f'<span style="{MUTED}">cos {m.cosine:.3f}</span><br>{esc(name_of(m.photo))}<br>'
        f'<span style="{MUTED}">box {box_text(m.box)} · {esc(m.source)}</span></figcaption>'
        "</figure>"
    )


def search_html(
    faces: Sequence[FaceLike],
    *,
    sample_name: str,
    sample_jpeg: bytes | None,
    sample_why: str,
    crops: Sequence[bytes | None],
    threshold: float,
    thumbnail: Callable[[MatchLike], bytes],
    images: Images | None = None,
) -> str:
    """HTML of a search result. ``sample_jpeg``: the sample's thumbnail with its faces boxed
    and numbered (``sample_why`` says why there is none); ``crops``: one per face;
    ``thumbnail(match)``: the match's boxed thumbnail, raising `WorkbenchError` in words."""
    images = images or Images()
    n_matches = sum(len(f.matches) for f in faces)
    title = (
        f"{sample_name}: {len(faces)} face{'s' if len(faces) != 1 else ''}, {n_matches} "
        f"match{'es' if n_matches != 1 else ''} at or above {threshold:g} %"
    )
    if not faces:
        body = Markup(f'<div style="{MUTED}">No face found in the sample.</div>')
        return frame("search", title, body, faces=0, matches=0, threshold=threshold)
    parts = [
        f'<div data-testid="repr-sample" style="margin-bottom:6px">'
        f"{images.tag(sample_jpeg, sample_name, width=SAMPLE_WIDTH, why=sample_why)}</div>"
    ]
    for i, face in enumerate(faces[:MAX_FACES_SHOWN], 1):
        crop = crops[i - 1] if i - 1 < len(crops) else None
        tiles = []
        for m in face.matches[:MAX_MATCHES_SHOWN]:
            try:
                picture = images.tag(thumbnail(m), name_of(m.photo), width=TILE_WIDTH)
            except WorkbenchError as e:
                picture = images.tag(None, "", width=TILE_WIDTH, why=f"no thumbnail: {e}")
            tiles.append(match_tile(m, picture))
        more = len(face.matches) - MAX_MATCHES_SHOWN
        if more > 0:
            tiles.append(f'<div style="{MUTED};align-self:center">+{more} more</div>')
        if not face.matches:
            tiles.append(
                f'<div data-testid="repr-no-match" style="{MUTED};align-self:center">'
                f"no stored face at or above {threshold:g} %</div>"
            )
        gallery = getattr(face, "gallery", 0)
        if gallery:  # the strangers to expect among these matches, in this archive
            expected = float(getattr(face, "expected_strangers", 0.0))
            tiles.insert(
                0,
                f'<div data-testid="repr-expected" style="{MUTED};flex-basis:100%">'
                f"{gallery:,} faces searched · about {expected:.2g} strangers expected "
                f"among matches at {threshold:g} %</div>",
            )
        parts.append(
            f'<div data-testid="repr-face" data-index="{i}" data-matches="{len(face.matches)}" '
            f'style="display:flex;gap:10px;align-items:flex-start;margin:6px 0;'
            f'border-top:1px solid #eee;padding-top:6px">'
            f'<figure style="{TILE};width:{CROP_WIDTH + 10}px;flex:none">'
            f"{images.tag(crop, f'face {i}', width=CROP_WIDTH, why='no crop')}"
            f"<figcaption>face {i}<br>score {face.score:.2f}<br>"
            f'<span style="{MUTED}">{box_text(face.box)}</span></figcaption></figure>'
            f'<div style="{ROW}">{"".join(tiles)}</div></div>'
        )
    if len(faces) > MAX_FACES_SHOWN:
        parts.append(f'<div style="{MUTED}">+{len(faces) - MAX_FACES_SHOWN} more faces</div>')
    if images.left_out:
        parts.append(
            f'<div style="{MUTED}">{images.left_out} thumbnails left out: a display inlines '
            f"at most {images.budget / 1e6:g} MB of images (the result holds every match)</div>"
        )
    return frame(
        "search",
        title,
        Markup("".join(parts)),
        faces=len(faces),
        matches=n_matches,
        threshold=threshold,
    )


def query_face_html(face: FaceLike) -> str:
    """One face of a search on its own: its matches as a table (no pictures: a `QueryFace`
    does not know its workbench; the whole result of `Workbench.search` shows them)."""
    rows = [
        [
            format_similarity(m.similarity),
            f"{m.cosine:.3f}",
            name_of(m.photo),
            m.source,
            box_text(m.box),
        ]
        for m in face.matches
    ]
    body = (
        table(
            ["similarity", "cosine", "photo", "source", "box"],
            rows,
            testid="repr-matches",
            row_data=[{"face_id": m.face_id, "photo_id": m.photo_id} for m in face.matches],
        )
        if rows
        else Markup(f'<div style="{MUTED}">no match at or above the threshold</div>')
    )
    title = (
        f"face {box_text(face.box)}, score {face.score:.2f}: {len(face.matches)} "
        f"match{'es' if len(face.matches) != 1 else ''}"
    )
    return frame("query-face", title, body, matches=len(face.matches))


def query_face_repr(face: FaceLike) -> str | None:
    """``QueryFace._repr_html_``."""
    return rendered(lambda: query_face_html(face), "a face of a search")


__all__ = [
    "MAX_FACES_SHOWN",
    "MAX_MATCHES_SHOWN",
    "FaceLike",
    "MatchLike",
    "match_tile",
    "query_face_html",
    "query_face_repr",
    "search_html",
]
