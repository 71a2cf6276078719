"""Search by sample, without widgets: uploads, searching them, their results as rows, CSV,
JSON and HTML fragments. `workbench.widgets.search.SearchBySample` wires widgets to these,
so tests drive the logic without a browser. Only thumbnails (JPEG, longest side
`THUMB_SIZE`) and face crops reach the browser.
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

from loguru import logger

from workbench.analysis.export import csv_cell
from workbench.analysis.pictures import face_crop as crop_sample_face
from workbench.analysis.search import Match, QueryFace
from workbench.errors import WorkbenchError
from workbench.imaging.decode import DecodedImage, decode_image
from workbench.widgets.common import data_uri, format_similarity

if TYPE_CHECKING:
    from workbench.core import Workbench

ACCEPTED_FORMATS: Final[dict[str, str]] = {"JPEG": "JPG", "PNG": "PNG", "WEBP": "WebP"}
"""Pillow format → the name users know. The workbench decodes more (GIF, BMP, TIFF),
but the app promises these three, so the others are refused with a message."""
THUMB_SIZE: Final = 256
"""Longest side of a match thumbnail: the cached size, so only the boxes are drawn per search."""
FACE_CROP_SIZE: Final = 112

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
    "person_id",
    "person",
    "also_at",
)
"""Columns of the CSV / JSON export, one row per match (`result_rows`)."""
PAGE_SIZE: Final = 24
"""Match tiles shown per face at a time; the app pages through the rest."""


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
    top_k: int | None,
    threshold: float,
    source: str | None = None,
) -> SampleResult:
    """Search the workbench with every face of one uploaded photo (``top_k`` None: every
    match above the threshold).

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
    return crop_sample_face(sample, box, size)


# ---- export ------------------------------------------------------------------------
def result_rows(results: Sequence[SampleResult]) -> list[dict[str, Any]]:
    """One row per match, best first within each face, in `RESULT_COLUMNS` order.

    ``query_face`` counts from 1 per sample; ``query_box`` is ``[x1, y1, x2, y2]``
    in the sample's pixels; ``similarity_pct`` is the calibrated percentage.
    """
    rows = []
    for r in results:
        for qi, face in enumerate(r.faces, 1):
            for rank, m in enumerate(grouped(face), 1):
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
                        "person_id": m.person_id,
                        "person": m.person,
                        "also_at": list(m.also_at),
                    }
                )
    return rows


def grouped(face: QueryFace) -> list[Match]:
    """A face's matches as the app shows them: each named or confirmed person's together
    (most similar person first), then the loose faces, best first."""
    by_id = {m.face_id: m for m in face.matches}
    out = [by_id[f] for g in face.people for f in g.face_ids]
    return out + face.loose


def results_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text with a header; cells as the catalog export writes them (`csv_cell`)."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(RESULT_COLUMNS)
    for row in rows:
        out.writerow([csv_cell(row[c]) for c in RESULT_COLUMNS])
    return buf.getvalue()


def results_json(rows: Sequence[Mapping[str, Any]]) -> str:
    """A JSON array of row objects, one per line (as `workbench.analysis.export` writes JSON)."""
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
        f'<div class="wb-box">box {_box_text(m.box)} · {html.escape(m.source)}</div>'
        f"{_also_at_html(m)}</div>"
    )


def _also_at_html(m: Match) -> str:
    if not m.also_at:
        return ""
    names = ", ".join(PurePath(u).name or u for u in m.also_at)
    return (
        f'<div class="wb-also" data-testid="also-at" data-copies="{len(m.also_at)}" '
        f'title="{html.escape(" | ".join(m.also_at))}">also at {html.escape(names)}</div>'
    )


def expected_html(face: QueryFace) -> str:
    """How big the gallery searched was and how many strangers to expect among the matches."""
    n = face.expected_strangers
    expect = f"{n:.2g}" if n < 10 else f"{n:,.0f}"
    return (
        f'<div class="wb-expected" data-testid="expected-strangers" '
        f'data-expected="{n:.6g}" data-gallery="{face.gallery}">'
        f"{face.gallery:,} faces searched · about {expect} stranger"
        f"{'' if n == 1 else 's'} expected among matches at {face.threshold:g} %</div>"
    )


def pager_text(face: QueryFace, page: int, size: int = PAGE_SIZE) -> str:
    """Which of a face's matches a page shows, and whether they are all there are."""
    total = len(face.matches)
    if total <= size:
        return ""
    first, last = page * size + 1, min(total, (page + 1) * size)
    every = "all" if face.complete else "the best"
    return f"showing {first}–{last} of {total} ({every} matches)"


def sample_html(
    result: SampleResult,
    tiles: Sequence[Sequence[str]],
    threshold: float,
    page: int = 0,
    size: int = PAGE_SIZE,
) -> str:
    """A sample's section: per face, its crop, the gallery and strangers expected, and one
    page of its match tiles (``tiles``: that page's, pre-rendered in `grouped` order),
    under their people's names."""
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
        inner = _page_html(face, face_tiles, page, size) or (
            f'<div class="wb-none" data-testid="no-match">no stored face at or above '
            f"{threshold:g} %</div>"
        )
        paging = pager_text(face, page, size)
        parts.append(
            f'<div class="wb-qface" data-testid="query-face" data-index="{i}" '
            f'data-total="{len(face.matches)}">'
            f'<div class="wb-qcrop">{_img(crop, f"face {i}")}<br>face {i}<br>'
            f"{_box_text(face.box)}</div><div>{expected_html(face)}"
            + (f'<div class="wb-page" data-testid="page">{paging}</div>' if paging else "")
            + f'<div class="wb-matches">{inner}</div></div></div>'
        )
    parts.append("</div>")
    return "".join(parts)


def page_of(face: QueryFace, page: int, size: int = PAGE_SIZE) -> list[Match]:
    """The matches a page shows, in `grouped` order."""
    return grouped(face)[page * size : (page + 1) * size]


def _page_html(face: QueryFace, tiles: Sequence[str], page: int, size: int) -> str:
    """One page of a face's tiles (in `grouped` order), each person's under its name."""
    person_of = {g.person_id: g for g in face.people}
    out, current = [], -1
    for m, tile in zip(page_of(face, page, size), tiles, strict=True):
        key = m.person_id if m.person_id is not None else 0
        if key != current:
            current = key
            g = person_of.get(m.person_id) if m.person_id is not None else None
            label = (
                f"{html.escape(g.label)} — {g.photos} photo{'s' if g.photos != 1 else ''}"
                if g is not None
                else "other faces"
            )
            if face.people:
                out.append(
                    f'<div class="wb-person" data-testid="person-group" '
                    f'data-person="{"" if g is None else g.person_id}">{label}</div>'
                )
        out.append(tile)
    return "".join(out)


__all__ = [
    "PAGE_SIZE",
    "RESULT_COLUMNS",
    "expected_html",
    "grouped",
    "page_of",
    "pager_text",
    "SampleResult",
    "Upload",
    "read_uploads",
    "result_rows",
    "results_csv",
    "results_json",
    "search_upload",
]
