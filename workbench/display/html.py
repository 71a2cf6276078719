"""The pieces every rich display is made of: escaped text, tables, capped thumbnails, a curve.

Rules the displays keep, and why:

* **Thumbnails only, capped.** An image is inlined as a ``data:`` URI of a JPEG of at
  most `MAX_SIDE` px and `MAX_BYTES` bytes (re-encoded smaller when it is larger), and
  one display stops inlining once it has spent `MAX_TOTAL_BYTES` (`Images`): an
  executed notebook stays small enough to save and share, and never carries a photo.
* **No paths.** A display shows file names; a photo's own uri appears only as its
  tile's hover title. The home, the thumbnail cache and model folders never appear.
* **Inline styles, no scripts.** JupyterLab sanitises the HTML of a notebook it does
  not trust (one opened from disk): ``style`` attributes survive that, ``<style>``
  blocks and scripts do not.
* **Hooks for tests**: ``data-wb-repr="<kind>"`` on the outer element and
  ``data-testid`` on its parts.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Final

from loguru import logger

from workbench.redaction import printable

MAX_SIDE: Final = 256
"""Longest side of an inlined image, in pixels (the cached thumbnails' size)."""
MAX_BYTES: Final = 40_000
"""Largest inlined JPEG; a larger one is re-encoded at a lower quality, then smaller."""
MAX_TOTAL_BYTES: Final = 2_000_000
"""Image bytes one display inlines at most; past it, tiles say why they have no image."""
COLOURS: Final = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")

FRAME: Final = (
    "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;"
    "line-height:1.35;border:1px solid #ddd;border-radius:6px;padding:8px 10px;"
    "margin:4px 0;display:inline-block;max-width:100%;overflow-x:auto;background:#fff;color:#222"
)
TITLE: Final = "font-weight:600;font-size:14px;margin-bottom:6px"
MUTED: Final = "color:#666"
CELL: Final = "padding:2px 8px;border-bottom:1px solid #eee;text-align:left"
NUMBER: Final = "padding:2px 8px;border-bottom:1px solid #eee;text-align:right"
TILE: Final = (
    "margin:0;padding:4px;border:1px solid #ddd;border-radius:4px;background:#fafafa;"
    "font-size:12px;display:flex;flex-direction:column;align-items:center;gap:2px"
)
ROW: Final = "display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start"


class Markup(str):
    """Text that is HTML already: `table` and `frame` insert it as it is."""

    __slots__ = ()


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML: control characters and escapes made inert."""
    if isinstance(value, Markup):
        return str(value)
    return html.escape(printable(str(value)))


def name_of(uri: str) -> str:
    """The last part of a photo's uri or a file's path: what a display names it by."""
    tail = PurePath(str(uri).replace("\\", "/").split("!")[-1]).name
    return tail or str(uri)


def percent(value: float | None, digits: int = 2) -> str:
    """A share (0–1) as a percentage; ``—`` for none."""
    return "—" if value is None else f"{100.0 * value:.{digits}f} %"


def number(value: float | int | None, digits: int = 4) -> str:
    """A number for a table: integers as they are, floats to ``digits``; ``—`` for none."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def format_similarity(value: float) -> str:
    """A calibrated similarity for people to read: one decimal, but never "100.0 %".

    Near-identical faces (the same photo again, cosine 0.99) read 99.9 % and more,
    and a rounded 100 % would claim a certainty no face match has.
    """
    return "> 99.9 %" if value >= 99.95 else f"{value:.1f} %"


def data_attrs(values: dict[str, Any]) -> str:
    """``data-*`` attributes (``_`` in a key becomes ``-``), values escaped; ``None`` left out."""
    return "".join(
        f' data-{k.replace("_", "-")}="{esc(v)}"' for k, v in values.items() if v is not None
    )


def frame(kind: str, title: str | Markup, body: str, **data: Any) -> Markup:
    """The outer box of a display: ``data-wb-repr=kind`` and ``data-*`` from ``data``."""
    return Markup(
        f'<div class="wb-repr" data-wb-repr="{esc(kind)}"{data_attrs(data)} style="{FRAME}">'
        f'<div data-testid="repr-title" style="{TITLE}">{esc(title)}</div>{body}</div>'
    )


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    testid: str,
    row_data: Iterable[dict[str, Any]] | None = None,
) -> Markup:
    """A small table; numbers align right. ``row_data``: ``data-*`` of each row."""
    rows = [list(r) for r in rows]
    extra = list(row_data) if row_data is not None else [{} for _ in rows]
    th = "".join(f'<th style="{CELL};border-bottom:1px solid #999">{esc(h)}</th>' for h in head)
    body = "".join(
        f'<tr data-testid="{esc(testid)}-row"{data_attrs(d)}>'
        + "".join(f'<td style="{NUMBER if _numeric(c) else CELL}">{esc(c)}</td>' for c in row)
        + "</tr>"
        for row, d in zip(rows, extra, strict=True)
    )
    return Markup(
        f'<table data-testid="{esc(testid)}" style="border-collapse:collapse;margin:4px 0">'
        f"<thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"
    )


def _numeric(cell: Any) -> bool:
    text = str(cell).replace(",", "").replace(" %", "").replace("—", "")
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---- images ------------------------------------------------------------------------
def capped_jpeg(data: bytes, max_side: int = MAX_SIDE, max_bytes: int = MAX_BYTES) -> bytes:
    """``data`` (an image's bytes) as a JPEG within both caps: unchanged when it is one
    already, else resized to ``max_side`` and encoded at falling quality, then smaller."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        if img.format == "JPEG" and max(img.size) <= max_side and len(data) <= max_bytes:
            return data
        rgb = img.convert("RGB")
    side = max_side
    while True:
        small = rgb.copy()
        small.thumbnail((side, side))
        for quality in (85, 70, 55, 40):
            buf = io.BytesIO()
            small.save(buf, "JPEG", quality=quality)
            if buf.tell() <= max_bytes:
                return buf.getvalue()
        if side <= 32:  # ~1 KB at quality 40: only an absurdly small cap gets here
            return buf.getvalue()
        side //= 2


@dataclass
class Images:
    """Inlines one display's thumbnails within the caps and its byte budget.

    ``left_out`` counts images not inlined because the budget was spent.
    """

    max_side: int = MAX_SIDE
    max_bytes: int = MAX_BYTES
    budget: int = MAX_TOTAL_BYTES
    spent: int = 0
    left_out: int = 0

    def tag(self, jpeg: bytes | None, alt: str, *, width: int, why: str = "") -> Markup:
        """An ``<img>`` of ``jpeg`` shown ``width`` px wide, or a box saying why there is none."""
        if jpeg is None:
            return placeholder(why or "no thumbnail", width)
        data = capped_jpeg(jpeg, self.max_side, self.max_bytes)
        if self.spent + len(data) > self.budget:
            self.left_out += 1
            return placeholder("not shown: this display's images are capped", width)
        self.spent += len(data)
        uri = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        return Markup(
            f'<img src="{uri}" alt="{esc(alt)}" data-testid="repr-image" '
            f'style="width:{width}px;max-width:{width}px;height:auto;display:block">'
        )


def placeholder(text: str, width: int) -> Markup:
    """The grey box a tile shows in place of a thumbnail, with the reason."""
    return Markup(
        f'<div data-testid="repr-no-image" style="width:{width}px;min-height:{width // 2}px;'
        f"background:#eee;{MUTED};font-size:11px;display:flex;align-items:center;"
        f'justify-content:center;text-align:center">{esc(text)}</div>'
    )


# ---- curves ------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """One line of a `curve_svg`: its name and points."""

    name: str
    x: Sequence[float]
    y: Sequence[float]


def curve_svg(
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    log_x: bool = False,
    marks: Sequence[tuple[float, float, str]] = (),
    testid: str = "curve",
    width: int = 360,
    height: int = 240,
) -> Markup:
    """A line chart as inline SVG (no plotly.js, no script: it survives sanitising).

    ``log_x`` draws x on a log scale (a ROC's false accept rate, where the useful
    part is below 1 %); ``marks`` are labelled points (a threshold).
    """
    left, right, top, bottom = 46, 10, 8, 34
    x0, x1 = x_range
    y0, y1 = y_range

    def fx(v: float) -> float:
        if log_x:
            v, lo, hi = math.log10(max(v, x0)), math.log10(x0), math.log10(x1)
        else:
            lo, hi = x0, x1
        return left + (width - left - right) * (min(max(v, lo), hi) - lo) / (hi - lo)

    def fy(v: float) -> float:
        return top + (height - top - bottom) * (1 - (min(max(v, y0), y1) - y0) / (y1 - y0))

    parts = [
        f'<rect x="{left}" y="{top}" width="{width - left - right}" '
        f'height="{height - top - bottom}" fill="none" stroke="#999"/>'
    ]
    ticks_x = (
        [10.0**e for e in range(math.ceil(math.log10(x0)), math.floor(math.log10(x1)) + 1)]
        if log_x
        else [x0 + (x1 - x0) * i / 4 for i in range(5)]
    )
    for t in ticks_x:
        label = f"{t:g}" if log_x else f"{t:.2g}"
        parts.append(
            f'<text x="{fx(t):.1f}" y="{height - bottom + 13}" font-size="10" '
            f'text-anchor="middle" fill="#555">{esc(label)}</text>'
        )
    for i in range(5):
        t = y0 + (y1 - y0) * i / 4
        parts.append(
            f'<text x="{left - 4}" y="{fy(t) + 3:.1f}" font-size="10" text-anchor="end" '
            f'fill="#555">{t:.3g}</text>'
        )
    parts.append(
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 4}" font-size="11" '
        f'text-anchor="middle">{esc(x_label)}</text>'
        f'<text x="12" y="{(top + height - bottom) / 2:.0f}" font-size="11" '
        f'text-anchor="middle" transform="rotate(-90 12 {(top + height - bottom) / 2:.0f})">'
        f"{esc(y_label)}</text>"
    )
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        points = " ".join(
            f"{fx(float(a)):.1f},{fy(float(b)):.1f}"
            for a, b in zip(s.x, s.y, strict=True)
            if not log_x or a > 0
        )
        parts.append(
            f'<polyline data-testid="{esc(testid)}-line" data-name="{esc(s.name)}" '
            f'points="{points}" fill="none" stroke="{colour}" stroke-width="1.8"/>'
        )
        if len(series) > 1:
            y = top + 12 + 13 * i
            parts.append(
                f'<line x1="{width - right - 110}" x2="{width - right - 96}" y1="{y - 4}" '
                f'y2="{y - 4}" stroke="{colour}" stroke-width="2"/>'
                f'<text x="{width - right - 92}" y="{y}" font-size="10">{esc(s.name)}</text>'
            )
    for mx, my, text in marks:
        parts.append(
            f'<circle cx="{fx(mx):.1f}" cy="{fy(my):.1f}" r="3.5" fill="#000"/>'
            f'<text x="{fx(mx) + 6:.1f}" y="{fy(my) + 12:.1f}" font-size="10">{esc(text)}</text>'
        )
    return Markup(
        f'<svg data-testid="{esc(testid)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img">{"".join(parts)}</svg>'
    )


# ---- the hook ----------------------------------------------------------------------
def rendered(render: Callable[[], str], what: str) -> str | None:
    """``render()``, or ``None`` when it fails: Jupyter then shows the plain repr instead
    of a traceback in the middle of the user's output (the failure goes to the log)."""
    try:
        return render()
    except Exception as e:  # noqa: BLE001 - a display must never break a notebook cell
        logger.opt(exception=e).warning("the rich display of {} failed: {}", what, e)
        return None


__all__ = [
    "MAX_BYTES",
    "MAX_SIDE",
    "MAX_TOTAL_BYTES",
    "Images",
    "Markup",
    "Series",
    "capped_jpeg",
    "curve_svg",
    "data_attrs",
    "esc",
    "format_similarity",
    "frame",
    "name_of",
    "number",
    "percent",
    "placeholder",
    "rendered",
    "table",
]
