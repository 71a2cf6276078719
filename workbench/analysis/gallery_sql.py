"""The SQL the gallery's queries are made of: a photo's day (`day_expr`, compiled per
dialect), its status category with or without a pack (`category_expr`), the condition for
one category (`status_condition`). Portable between SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, String, case, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from workbench.store.models import Analysis, Face, Photo

StatusCategory = Literal["all", "faces", "no_faces", "errors", "pending"]


STATUS_CATEGORIES: tuple[str, ...] = get_args(StatusCategory)


CATEGORY_OF_STATUS: dict[str, str] = {
    "done": "faces",
    "no_faces": "no_faces",
    "error": "errors",
    "pending": "pending",
}
"""Catalog photo status → gallery category."""


STATUS_OF_CATEGORY: dict[str, str] = {v: k for k, v in CATEGORY_OF_STATUS.items()}


# ---- SQL pieces --------------------------------------------------------------------
class UtcDay(FunctionElement[str]):
    """``YYYY-MM-DD`` of a timestamp column, in UTC, as text (compiled per dialect)."""

    type = String()
    inherit_cache = True
    name = "utc_day"


@compiles(UtcDay)
def _utc_day_default(element: UtcDay, compiler: Any, **kw: Any) -> str:
    return f"substr(CAST({compiler.process(element.clauses, **kw)} AS VARCHAR(40)), 1, 10)"


@compiles(UtcDay, "sqlite")
def _utc_day_sqlite(element: UtcDay, compiler: Any, **kw: Any) -> str:
    # SQLAlchemy stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' (the catalog's are UTC).
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(UtcDay, "postgresql")
def _utc_day_postgresql(element: UtcDay, compiler: Any, **kw: Any) -> str:
    # A timestamptz printed as text follows the session's time zone; the day must not.
    arg = compiler.process(element.clauses, **kw)
    return f"to_char(({arg}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def day_expr() -> ColumnElement[str]:
    """SQL for the photo's day as ``YYYY-MM-DD`` text (see `photo_day`)."""
    meta_day = func.substr(Photo.meta["date"].as_string(), 1, 10)
    return func.coalesce(meta_day, UtcDay(Photo.created_at))


def has_faces(pack: str) -> ColumnElement[bool]:
    return select(Face.id).where(Face.photo_id == Photo.id, Face.pack == pack).exists()


def category_expr(pack: str | None) -> ColumnElement[str]:
    """The photo's category: the raw status without a pack (mapped in Python, so the
    status index serves it), the pack's own verdict with one (module notes).

    The verdict is the pack's row in ``analyses`` (one primary-key lookup a
    photo); only photos without one (not analysed by the pack, or catalogs
    older than that table) fall back to their faces and last pack, as
    `Catalog.analysed_clause` does. COALESCE evaluates the fallback only then.
    """
    if pack is None:
        return Photo.status
    verdict = (
        select(case((Analysis.n_faces > 0, "faces"), else_="no_faces"))
        .where(Analysis.photo_id == Photo.id, Analysis.pack == pack)
        .scalar_subquery()
    )
    fallback = case(
        (has_faces(pack), "faces"),
        ((Photo.pack == pack) & Photo.status.in_(["done", "no_faces"]), "no_faces"),
        else_="pending",
    )
    return case((Photo.status == "error", "errors"), else_=func.coalesce(verdict, fallback))


def status_condition(category: str, pack: str | None) -> ColumnElement[bool]:
    if pack is None:
        return Photo.status == STATUS_OF_CATEGORY[category]
    if category == "errors":
        return Photo.status == "error"
    return (Photo.status != "error") & (category_expr(pack) == category)


__all__ = [
    "CATEGORY_OF_STATUS",
    "STATUS_CATEGORIES",
    "STATUS_OF_CATEGORY",
    "StatusCategory",
    "UtcDay",
    "category_expr",
    "day_expr",
    "has_faces",
    "status_condition",
]
