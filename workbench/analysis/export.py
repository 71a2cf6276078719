"""Export faces, photos or people from the catalog to CSV, JSON or XLSX, streamed.

Rows come from SQL joins in pages of `BATCH_SIZE` (keyset paging on the
id), so a million faces export in constant memory. Only the catalog is read:
no model loads and the vector index stays closed, so an export runs while
another process holds a Milvus Lite file.

>>> from workbench.analysis.export import export, iter_rows
>>> export(wb.catalog, "faces", "faces.csv", source="family")       # doctest: +SKIP
ExportResult(what='faces', format='csv', path=..., rows=1234)
>>> next(iter_rows(wb.catalog, "people"))                           # doctest: +SKIP
{'person_id': 1, 'pack': 'local', 'name': 'Ada', ...}

Writers are registered in `FORMATS` (``csv``, ``json``, ``xlsx``), the row
sources in `TABLES` (``faces``, ``photos``, ``people``); see `iter_rows` for
the columns.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loguru import logger
from sqlalchemy import Select, distinct, func, select

from workbench._optional import require
from workbench.errors import ConfigurationError, WorkbenchError
from workbench.redaction import redact_value
from workbench.registry import Registry
from workbench.store.catalog import Catalog
from workbench.store.models import Face, FacePerson, Person, Photo, as_utc

Row = dict[str, Any]

BATCH_SIZE = 5000
"""Rows fetched per SQL query."""
XLSX_MAX_ROWS = 1_048_576
"""Rows per worksheet in Excel, the header included; longer exports go on to more sheets."""

FACE_COLUMNS = (
    "face_id",
    "photo_id",
    "photo_uri",
    "source",
    "origin",
    "sha256",
    "provenance",
    "x1",
    "y1",
    "x2",
    "y2",
    "landmarks",
    "score",
    "pack",
    "cluster",
    "person_id",
    "person_name",
    "created_at",
    "size",
    "sharpness",
    "yaw",
    "pitch",
    "roll",
)
QUALITY_COLUMNS = FACE_COLUMNS[-5:]
"""The face's quality (`workbench.faces.quality`); empty for faces stored before it."""
PHOTO_COLUMNS = (
    "photo_id",
    "sha256",
    "source",
    "origin",
    "uri",
    "provenance",
    "size_bytes",
    "width",
    "height",
    "format",
    "status",
    "error",
    "pack",
    "n_faces",
    "created_at",
    "people",
    "duplicate_of",
    "copies",
)
PEOPLE_COLUMNS = (
    "person_id",
    "pack",
    "name",
    "hidden",
    "confirmed",
    "faces",
    "photos",
    "created_at",
)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: ``rows`` rows of ``what`` as ``format`` to ``path`` (absolute)."""

    what: str
    format: str
    path: Path
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "format": self.format, "path": str(self.path), "rows": self.rows}

    def summary(self) -> str:
        return f"exported {self.rows} {self.what} to {self.path}"


@dataclass(frozen=True)
class Filters:
    """Which rows to export; ``None`` keeps all.

    ``source``: photos of this source (``photos.source``). ``person``: faces
    of this person, photos showing them, or only that person. ``pack``:
    faces and people of this model pack, photos it analysed.
    """

    source: str | None = None
    person: int | None = None
    pack: str | None = None


@dataclass(frozen=True)
class Table:
    """A kind of row: its columns, in order, and the function that streams them."""

    columns: tuple[str, ...]
    rows: Callable[[Catalog, Filters, int], Iterator[Row]]


class Writer(Protocol):
    """Writes ``rows`` (only ``columns``, in order) to a new file ``path``; returns the count.

    ``title`` names the rows (``faces``, ...) where a format has a place for it.
    """

    def __call__(
        self, rows: Iterable[Row], columns: Sequence[str], path: Path, title: str
    ) -> int: ...


@dataclass(frozen=True)
class ExportFormat:
    """A writer (new file at ``path``, returns the rows written) and the suffixes it is
    inferred from."""

    suffixes: tuple[str, ...]
    write: Writer


TABLES: Registry[Table] = Registry("export table")
FORMATS: Registry[ExportFormat] = Registry("export format")


# ---- rows --------------------------------------------------------------------------
def iter_rows(
    catalog: Catalog,
    what: str,
    *,
    source: str | None = None,
    person: int | None = None,
    pack: str | None = None,
    batch_size: int | None = None,
) -> Iterator[Row]:
    """Rows of ``what`` (``faces``, ``photos`` or ``people``) as plain dicts, in id order.

    Columns (`FACE_COLUMNS`, `PHOTO_COLUMNS`, `PEOPLE_COLUMNS`):

    * faces: face_id, photo_id, photo_uri, source, origin, sha256, provenance
      (the photo's metadata dict), x1, y1, x2, y2, landmarks (10 floats),
      score, pack, cluster (``-1`` noise, ``None`` never clustered),
      person_id, person_name, created_at, and the face's quality: size (px),
      sharpness, yaw, pitch, roll (empty for faces stored before quality was);
    * photos: photo_id, sha256, source, origin, uri, provenance, size_bytes,
      width, height, format, status, error, pack, n_faces, created_at, people
      (sorted ids of the people whose faces are in the photo), duplicate_of
      (for a copy: the photo it copies, status ``duplicate``) and copies (the
      uris of this photo's recorded copies). With ``pack``, pack and n_faces are
      that pack's;
    * people: person_id, pack, name, hidden, confirmed, faces, photos
      (counts; with ``source``, within that source), created_at.

    ``created_at`` is an ISO 8601 string in UTC. Filters (default ``None``:
    all): ``source`` photos.source; ``person`` a person id (faces of the
    person, photos showing them, only that person); ``pack`` a model pack.
    ``batch_size`` rows are read per query [default: `BATCH_SIZE`]. The
    arguments are checked on the call (unknown ``what`` raises
    `ConfigurationError`, an unknown person `WorkbenchError`); rows are read
    as they are consumed. Each page is its own transaction: rows written
    during an export may or may not appear.
    """
    table = TABLES.get(what)
    filters = _filters(catalog, source, person, pack)
    batch = BATCH_SIZE if batch_size is None else batch_size
    if batch < 1:
        raise ConfigurationError(f"batch_size must be at least 1, got {batch}")
    return table.rows(catalog, filters, batch)


def _filters(catalog: Catalog, source: str | None, person: int | None, pack: str | None) -> Filters:
    if person is not None:
        with catalog.session() as s:
            row = s.get(Person, person)
        if row is None:
            raise WorkbenchError(
                f"no person with id {person} in the catalog; "
                "`workbench export --what people` lists the people there are"
            )
        if pack is not None and row.pack != pack:
            raise ConfigurationError(
                f"person {person} is a person of pack {row.pack!r}, not {pack!r}; "
                "leave the pack out or give a person of that pack"
            )
    return Filters(source, person, pack)


def _pages(catalog: Catalog, query: Select[Any], key: Any, batch: int) -> Iterator[list[Any]]:
    """``query`` a page at a time: ``batch`` rows with ``key`` (the first column) ascending."""
    last: int | None = None
    while True:
        q = query if last is None else query.where(key > last)
        with catalog.session() as s:
            rows = list(s.execute(q.order_by(key).limit(batch)))
        if rows:
            yield rows
        if len(rows) < batch:
            return
        last = rows[-1][0]


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


def _face_rows(catalog: Catalog, f: Filters, batch: int) -> Iterator[Row]:
    q = (
        select(
            Face.id,
            Face.photo_id,
            Photo.uri,
            Photo.source,
            Photo.origin,
            Photo.sha256,
            Photo.meta,
            Face.x1,
            Face.y1,
            Face.x2,
            Face.y2,
            Face.landmarks,
            Face.score,
            Face.pack,
            FacePerson.cluster,
            FacePerson.person_id,
            Person.name,
            Face.created_at,
            Face.size,
            Face.sharpness,
            Face.yaw,
            Face.pitch,
            Face.roll,
        )
        .join(Photo, Photo.id == Face.photo_id)
        .outerjoin(FacePerson, FacePerson.face_id == Face.id)
        .outerjoin(Person, Person.id == FacePerson.person_id)
    )
    if f.source is not None:
        q = q.where(Photo.source == f.source)
    if f.pack is not None:
        q = q.where(Face.pack == f.pack)
    if f.person is not None:
        q = q.where(FacePerson.person_id == f.person)
    n = len(FACE_COLUMNS) - len(QUALITY_COLUMNS)
    for page in _pages(catalog, q, Face.id, batch):
        for r in page:
            values = (*r[: n - 1], _iso(r[n - 1]), *r[n:])
            row = dict(zip(FACE_COLUMNS, values, strict=True))
            row["provenance"] = redact_value(row["provenance"])  # catalogs made before scrubbing
            yield row


def _photo_rows(catalog: Catalog, f: Filters, batch: int) -> Iterator[Row]:
    q = select(
        Photo.id,
        Photo.sha256,
        Photo.source,
        Photo.origin,
        Photo.uri,
        Photo.meta,
        Photo.size_bytes,
        Photo.width,
        Photo.height,
        Photo.format,
        Photo.status,
        Photo.error,
        Photo.pack,
        Photo.n_faces,
        Photo.created_at,
        Photo.duplicate_of,
    )
    if f.source is not None:
        q = q.where(Photo.source == f.source)
    if f.pack is not None:
        q = q.where(Catalog.analysed_clause(f.pack))
    if f.person is not None:
        shows = (
            select(FacePerson.face_id)
            .join(Face, Face.id == FacePerson.face_id)
            .where(Face.photo_id == Photo.id, FacePerson.person_id == f.person)
            .exists()
        )
        q = q.where(shows)
    for page in _pages(catalog, q, Photo.id, batch):
        ids = [r[0] for r in page]
        people, counts = _photo_people(catalog, ids, f.pack)
        copies = catalog.copies_of(ids)
        for r in page:
            row = dict(zip(PHOTO_COLUMNS[:-3], (*r[:-2], _iso(r[-2])), strict=True))
            row["provenance"] = redact_value(row["provenance"])  # catalogs made before scrubbing
            if f.pack is not None:
                row["pack"], row["n_faces"] = f.pack, counts.get(r[0], 0)
            row["people"] = people.get(r[0], [])
            row["duplicate_of"] = r[-1]
            row["copies"] = copies.get(r[0], [])
            yield row


def _photo_people(
    catalog: Catalog, ids: list[int], pack: str | None
) -> tuple[dict[int, list[int]], dict[int, int]]:
    """Per photo of a page: its people's ids, and (with ``pack``) that pack's face count."""
    q = (
        select(Face.photo_id, FacePerson.person_id)
        .join(FacePerson, FacePerson.face_id == Face.id)
        .where(Face.photo_id.in_(ids), FacePerson.person_id.is_not(None))
        .distinct()
    )
    counts: dict[int, int] = {}
    with catalog.session() as s:
        if pack is not None:
            q = q.where(Face.pack == pack)
            n = select(Face.photo_id, func.count(Face.id)).where(
                Face.photo_id.in_(ids), Face.pack == pack
            )
            counts = {pid: int(c) for pid, c in s.execute(n.group_by(Face.photo_id))}
        people: dict[int, list[int]] = {}
        for photo_id, person_id in s.execute(q.order_by(Face.photo_id, FacePerson.person_id)):
            people.setdefault(photo_id, []).append(person_id)
    return people, counts


def _people_rows(catalog: Catalog, f: Filters, batch: int) -> Iterator[Row]:
    q = select(
        Person.id, Person.pack, Person.name, Person.hidden, Person.confirmed, Person.created_at
    )
    if f.pack is not None:
        q = q.where(Person.pack == f.pack)
    if f.person is not None:
        q = q.where(Person.id == f.person)
    if f.source is not None:
        in_source = (
            select(FacePerson.face_id)
            .join(Face, Face.id == FacePerson.face_id)
            .join(Photo, Photo.id == Face.photo_id)
            .where(FacePerson.person_id == Person.id, Photo.source == f.source)
            .exists()
        )
        q = q.where(in_source)
    for page in _pages(catalog, q, Person.id, batch):
        counts = _people_counts(catalog, [r[0] for r in page], f.source)
        for r in page:
            faces, photos = counts.get(r[0], (0, 0))
            yield {
                "person_id": r[0],
                "pack": r[1],
                "name": r[2],
                "hidden": bool(r[3]),
                "confirmed": bool(r[4]),
                "faces": faces,
                "photos": photos,
                "created_at": _iso(r[5]),
            }


def _people_counts(
    catalog: Catalog, ids: list[int], source: str | None
) -> dict[int, tuple[int, int]]:
    """Per person of a page: (faces, distinct photos), within ``source`` when given."""
    q = (
        select(FacePerson.person_id, func.count(Face.id), func.count(distinct(Face.photo_id)))
        .join(Face, Face.id == FacePerson.face_id)
        .where(FacePerson.person_id.in_(ids))
        .group_by(FacePerson.person_id)
    )
    if source is not None:
        q = q.join(Photo, Photo.id == Face.photo_id).where(Photo.source == source)
    with catalog.session() as s:
        return {pid: (int(n), int(p)) for pid, n, p in s.execute(q)}


TABLES.register("faces", Table(FACE_COLUMNS, _face_rows))
TABLES.register("photos", Table(PHOTO_COLUMNS, _photo_rows))
TABLES.register("people", Table(PEOPLE_COLUMNS, _people_rows))


# ---- writers -----------------------------------------------------------------------
def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def write_csv(rows: Iterable[Row], columns: Sequence[str], path: Path, title: str) -> int:
    """UTF-8 CSV with a header; lists and dicts as JSON text, booleans as true/false,
    ``None`` as an empty cell, formulas neutralised (`csv_cell`)."""
    n = 0
    with open(path, "x", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(columns)
        for row in rows:
            out.writerow([csv_cell(row[c]) for c in columns])
            n += 1
    return n


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet reads as the start of a formula in a CSV cell (OWASP's list)."""


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: booleans as true/false, lists and dicts as JSON text, and text
    that a spreadsheet would run as a formula (a file name ``=HYPERLINK(...)``, a person
    named ``@SUM(...)``) prefixed with ``'``, as XLSX cells are typed text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        value = _json_text(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_json(rows: Iterable[Row], columns: Sequence[str], path: Path, title: str) -> int:
    """A JSON array of objects, one row per line, written as the rows come."""
    n = 0
    with open(path, "x", encoding="utf-8") as fh:
        fh.write("[")
        for row in rows:
            fh.write(",\n" if n else "\n")
            fh.write(_json_text({c: row[c] for c in columns}))
            n += 1
        fh.write("\n]\n" if n else "]\n")
    return n


def write_xlsx(rows: Iterable[Row], columns: Sequence[str], path: Path, title: str) -> int:
    """An Excel workbook written row by row (openpyxl write-only mode).

    Sheet ``title`` holds the first `XLSX_MAX_ROWS` − 1 rows under a header;
    further rows go on to sheets ``title 2``, ``title 3``, ... Lists and dicts
    are JSON text, ``None`` an empty cell; text is never read as a formula.
    """
    openpyxl = require("openpyxl", "export", "Exporting to XLSX")
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    def cell(ws: Any, value: Any) -> Any:
        if isinstance(value, (list, dict)):
            value = _json_text(value)
        if isinstance(value, str):
            # Control characters make the file unreadable to Excel; an error text may hold them.
            c = WriteOnlyCell(ws, ILLEGAL_CHARACTERS_RE.sub("", value))
            c.data_type = "s"
            return c
        return value

    book = openpyxl.Workbook(write_only=True)
    ws, used, sheets, n = None, XLSX_MAX_ROWS, 0, 0
    try:
        for row in rows:
            if used >= XLSX_MAX_ROWS:
                sheets += 1
                ws = book.create_sheet(title if sheets == 1 else f"{title} {sheets}")
                ws.append(list(columns))
                used = 1
            ws.append([cell(ws, row[c]) for c in columns])  # type: ignore[union-attr]
            used += 1
            n += 1
        if ws is None:
            book.create_sheet(title).append(list(columns))
        with open(path, "xb") as fh:
            book.save(fh)
    except BaseException:
        _discard(book)
        raise
    return n


def _discard(book: Any) -> None:
    """Remove a write-only workbook's per-sheet temporary files (openpyxl only does at exit)."""
    for ws in book.worksheets:
        with contextlib.suppress(Exception):
            if ws._rows is not None:
                ws._rows.close()
            if ws._writer is not None:
                ws._writer.close()
                ws._writer.cleanup()


FORMATS.register("csv", ExportFormat((".csv",), write_csv))
FORMATS.register("json", ExportFormat((".json",), write_json))
FORMATS.register("xlsx", ExportFormat((".xlsx",), write_xlsx))


# ---- export ------------------------------------------------------------------------
def infer_format(path: str | Path) -> str:
    """The format registered for ``path``'s suffix (case-insensitive): .csv, .json, .xlsx."""
    suffix = Path(path).suffix.lower()
    for name in FORMATS:
        if suffix in FORMATS.get(name).suffixes:
            return name
    known = ", ".join(s for name in FORMATS for s in FORMATS.get(name).suffixes)
    raise ConfigurationError(
        f"cannot tell the export format of {str(path)!r} from its suffix {suffix or '(none)'!r}; "
        f"name the file {known} or give the format ({', '.join(FORMATS.names())})"
    )


def export(
    catalog: Catalog,
    what: str,
    out: str | Path,
    fmt: str | None = None,
    *,
    source: str | None = None,
    person: int | None = None,
    pack: str | None = None,
    batch_size: int | None = None,
) -> ExportResult:
    """Write every row of ``what`` (faces, photos, people) to ``out`` as ``fmt``.

    Only the catalog is read (no model, no vector index). ``fmt`` is
    ``csv``, ``json`` or ``xlsx``; ``None`` infers it from the suffix of
    ``out``. Filters and columns as in `iter_rows`. The file is
    written beside ``out`` under a temporary name and renamed at the end,
    so a failed export leaves no partial file (and an existing ``out``
    untouched); missing parent directories are created.
    """
    path = Path(out).expanduser()
    if path.is_dir():
        raise ConfigurationError(f"export target {str(path)!r} is a directory; give a file name")
    name = infer_format(path) if fmt is None else fmt.lower()
    writer = FORMATS.get(name)
    rows = iter_rows(catalog, what, source=source, person=person, pack=pack, batch_size=batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        n = writer.write(rows, TABLES.get(what).columns, tmp, what)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    result = ExportResult(what, name, path.resolve(), n)
    logger.info(result.summary())
    return result
