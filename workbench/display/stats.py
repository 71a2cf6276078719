"""`Stats` in a notebook: photos per source and status as a small table, and whether the
catalog and each pack's vector index agree."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workbench.display.html import MUTED, Markup, frame, number, rendered, table

STATUS_ORDER: tuple[str, ...] = ("done", "no_faces", "pending", "error")
"""Columns in this order; statuses the catalog has beyond these follow, sorted."""


def stats_html(doc: Mapping[str, Any]) -> str:
    """HTML of `Stats.to_dict()` (the ``stats --json`` document)."""
    rows = list(doc.get("by_source_status") or [])
    statuses = [s for s in STATUS_ORDER if any(r["status"] == s for r in rows)]
    statuses += sorted({str(r["status"]) for r in rows} - set(statuses))
    sources = sorted({str(r["source"]) for r in rows})
    counts = {(str(r["source"]), str(r["status"])): int(r["photos"]) for r in rows}
    per_source = [
        [src, *(number(counts.get((src, st), 0)) for st in statuses)]
        + [number(sum(counts.get((src, st), 0) for st in statuses))]
        for src in sources
    ]
    totals = [number(sum(counts.get((src, st), 0) for src in sources)) for st in statuses]
    body = (
        table(
            ["source", *statuses, "photos"],
            [*per_source, ["all sources", *totals, number(int(doc.get("photos", 0)))]],
            testid="stats-sources",
            row_data=[{"source": s} for s in sources] + [{"source": None, "total": "true"}],
        )
        if rows
        else Markup(f'<div style="{MUTED}">No photos yet: run an ingest.</div>')
    )
    packs = list(doc.get("packs") or [])
    if packs:
        body += table(
            ["pack", "collection", "catalog faces", "index vectors", "catalog and index"],
            [
                [
                    p["pack"],
                    p["collection"],
                    number(p["catalog_faces"]),
                    number(p["index_vectors"]),
                    "agree" if p["agree"] else "differ: run workbench reindex",
                ]
                for p in packs
            ],
            testid="stats-packs",
            row_data=[{"pack": p["pack"], "agree": str(bool(p["agree"])).lower()} for p in packs],
        )
    agree = bool(doc.get("agree", True))
    title = (
        f"{number(int(doc.get('photos', 0)))} photos, {number(int(doc.get('faces', 0)))} faces"
        + ("" if agree else " — catalog and index differ")
    )
    return frame(
        "stats",
        title,
        body,
        photos=doc.get("photos"),
        faces=doc.get("faces"),
        agree=str(agree).lower(),
    )


def stats_repr(stats: Any) -> str | None:
    """``Stats._repr_html_``."""
    return rendered(lambda: stats_html(stats.to_dict()), "the workbench's stats")


__all__ = ["STATUS_ORDER", "stats_html", "stats_repr"]
