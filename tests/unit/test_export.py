"""`workbench.analysis.export` on a real SQLite catalog: every table in every format, read back."""

from __future__ import annotations

import csv
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import event, select

from workbench.analysis import export as ex
from workbench.cli import main
from workbench.errors import ConfigurationError, UnknownNameError, WorkbenchError
from workbench.store.catalog import Catalog
from workbench.store.models import Analysis, Face, FacePerson, Person, Photo

pytestmark = pytest.mark.unit

WHATS = ("faces", "photos", "people")
FORMATS = ("csv", "json", "xlsx")
COLUMNS = {"faces": ex.FACE_COLUMNS, "photos": ex.PHOTO_COLUMNS, "people": ex.PEOPLE_COLUMNS}
INTS = {"face_id", "photo_id", "cluster", "person_id", "size_bytes", "width", "height"}
INTS |= {"n_faces", "faces", "photos", "duplicate_of"}
FLOATS = {"x1", "y1", "x2", "y2", "score", "size", "sharpness", "yaw", "pitch", "roll"}
JSONS = {"provenance", "landmarks", "people", "copies"}
BOOLS = {"hidden", "confirmed"}
ODD_URI = '/photos/Zoë, "the cat".jpg'


def _landmarks(k: int) -> list[float]:
    return [k + i / 4 for i in range(10)]


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    """Five photos (one odd uri, one without faces, one error, one a copy of the first),
    four faces of two packs (one with its quality measured), three people (one without
    faces)."""
    cat = Catalog(f"sqlite:///{tmp_path / 'wb' / 'catalog.sqlite'}")
    with cat.session.begin() as s:
        p1 = Photo(
            sha256="1" * 64,
            source="family",
            origin="file",
            uri=ODD_URI,
            size_bytes=1234,
            width=640,
            height=480,
            format="JPEG",
            status="done",
            pack="local",
            n_faces=2,
            meta={"path": ODD_URI, "album": "Été 2023 — 夏"},
        )
        p2 = Photo(
            sha256="2" * 64,
            source="trip",
            origin="zip",
            uri="trip.zip!/a.png",
            size_bytes=99,
            width=32,
            height=32,
            format="PNG",
            status="done",
            pack="local",
            n_faces=1,
            meta={"archive": "trip.zip", "member": "a.png"},
        )
        p3 = Photo(
            sha256="3" * 64,
            source="family",
            origin="file",
            uri="/photos/empty.jpg",
            status="no_faces",
            pack="local",
            n_faces=0,
            meta={},
        )
        p4 = Photo(
            sha256=None, source="family", origin="file", uri="/photos/bad.jpg", status="error"
        )
        p4.error = "cannot decode: truncated"
        s.add_all([p1, p2, p3, p4])
        s.flush()
        copy = Photo(
            sha256="5" * 64,
            source="family",
            origin="file",
            uri="/photos/copy of Zoë.jpg",
            status="duplicate",
            duplicate_of=p1.id,
            meta={},
        )
        s.add(copy)
        s.add_all([Analysis(photo_id=p.id, pack="local", n_faces=p.n_faces) for p in (p1, p2, p3)])
        s.add(Analysis(photo_id=p1.id, pack="dlib", n_faces=1))
        faces = [
            Face(photo_id=p1.id, pack="local", x1=1.5, y1=2.0, x2=30.25, y2=40.0, score=0.875),
            Face(photo_id=p1.id, pack="local", x1=100.0, y1=2.5, x2=130.0, y2=41.0, score=0.5),
            Face(photo_id=p2.id, pack="local", x1=0.0, y1=0.0, x2=31.0, y2=31.0, score=0.625),
            Face(photo_id=p1.id, pack="dlib", x1=2.0, y1=3.0, x2=29.0, y2=39.0, score=0.25),
        ]
        for k, f in enumerate(faces):
            f.landmarks, f.embedding = _landmarks(k), bytes(16)
        faces[0].size, faces[0].sharpness = 28.75, 0.375
        faces[0].yaw, faces[0].pitch, faces[0].roll = -12.5, 4.0, 1.5
        s.add_all(faces)
        zoe = Person(pack="local", name='Zoë, "Z"', confirmed=True)
        li = Person(pack="local", name="李雷")
        nobody = Person(pack="local", name=None, hidden=True)
        s.add_all([zoe, li, nobody])
        s.flush()
        s.add_all(
            [
                FacePerson(face_id=faces[0].id, pack="local", cluster=0, person_id=zoe.id),
                FacePerson(face_id=faces[1].id, pack="local", cluster=1, person_id=li.id),
                FacePerson(face_id=faces[2].id, pack="local", cluster=0, person_id=zoe.id),
            ]
        )
    yield cat
    cat.close()


# ---- the expected rows, read from the ORM objects ----------------------------------------
def _iso(value: dt.datetime) -> str:
    return value.replace(tzinfo=dt.timezone.utc).isoformat()


def _links(s: Any) -> dict[int, FacePerson]:
    return {fp.face_id: fp for fp in s.scalars(select(FacePerson))}


def expected_rows(cat: Catalog, what: str) -> list[dict[str, Any]]:
    with cat.session() as s:
        links = _links(s)
        people = {p.id: p for p in s.scalars(select(Person))}
        faces = list(s.scalars(select(Face).order_by(Face.id)))
        photos = {p.id: p for p in s.scalars(select(Photo).order_by(Photo.id))}
    if what == "faces":
        rows = []
        for f in faces:
            p, link = photos[f.photo_id], links.get(f.id)
            person = people.get(link.person_id) if link and link.person_id else None
            rows.append(
                {
                    "face_id": f.id,
                    "photo_id": p.id,
                    "photo_uri": p.uri,
                    "source": p.source,
                    "origin": p.origin,
                    "sha256": p.sha256,
                    "provenance": p.meta,
                    "x1": f.x1,
                    "y1": f.y1,
                    "x2": f.x2,
                    "y2": f.y2,
                    "landmarks": f.landmarks,
                    "score": f.score,
                    "pack": f.pack,
                    "cluster": link.cluster if link else None,
                    "person_id": person.id if person else None,
                    "person_name": person.name if person else None,
                    "created_at": _iso(f.created_at),
                    "size": f.size,
                    "sharpness": f.sharpness,
                    "yaw": f.yaw,
                    "pitch": f.pitch,
                    "roll": f.roll,
                }
            )
        return rows
    if what == "photos":
        in_photo: dict[int, set[int]] = {}
        for f in faces:
            if f.id in links and links[f.id].person_id is not None:
                in_photo.setdefault(f.photo_id, set()).add(links[f.id].person_id)  # type: ignore[arg-type]
        return [
            {
                "photo_id": p.id,
                "sha256": p.sha256,
                "source": p.source,
                "origin": p.origin,
                "uri": p.uri,
                "provenance": p.meta,
                "size_bytes": p.size_bytes,
                "width": p.width,
                "height": p.height,
                "format": p.format,
                "status": p.status,
                "error": p.error,
                "pack": p.pack,
                "n_faces": p.n_faces,
                "created_at": _iso(p.created_at),
                "people": sorted(in_photo.get(p.id, ())),
                "duplicate_of": p.duplicate_of,
                "copies": [c.uri for c in photos.values() if c.duplicate_of == p.id],
            }
            for p in photos.values()
        ]
    rows = []
    for person in sorted(people.values(), key=lambda p: p.id):
        mine = [f for f in faces if f.id in links and links[f.id].person_id == person.id]
        rows.append(
            {
                "person_id": person.id,
                "pack": person.pack,
                "name": person.name,
                "hidden": person.hidden,
                "confirmed": person.confirmed,
                "faces": len(mine),
                "photos": len({f.photo_id for f in mine}),
                "created_at": _iso(person.created_at),
            }
        )
    return rows


# ---- reading exports back ------------------------------------------------------------------
def _decode(column: str, value: Any) -> Any:
    """A CSV or XLSX cell as the value `iter_rows` gave."""
    if value is None or value == "":
        return None
    if column in JSONS:
        return json.loads(value)
    if column in BOOLS:
        return value if isinstance(value, bool) else {"true": True, "false": False}[value]
    if column in INTS:
        return int(value)
    if column in FLOATS:
        return float(value)
    return value


def read_back(path: Path, fmt: str, what: str) -> list[dict[str, Any]]:
    if fmt == "json":
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)  # type: ignore[no-any-return]
    if fmt == "csv":
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            assert tuple(reader.fieldnames or ()) == COLUMNS[what]
            return [{k: _decode(k, v) for k, v in row.items()} for row in reader]
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        rows: list[dict[str, Any]] = []
        for ws in book.worksheets:
            header, *body = ws.iter_rows(values_only=True)
            assert header == COLUMNS[what]
            # Trailing empty cells are not stored: a short row ends in empty columns.
            body = [(*r, *(None,) * (len(header) - len(r))) for r in body]
            rows += [{k: _decode(k, v) for k, v in zip(header, r, strict=True)} for r in body]
        return rows
    finally:
        book.close()


# ---- tests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("what", WHATS)
def test_iter_rows_equal_the_catalog(catalog: Catalog, what: str) -> None:
    rows = list(ex.iter_rows(catalog, what))
    assert rows == expected_rows(catalog, what)
    assert all(tuple(r) == COLUMNS[what] for r in rows)


def test_rows_cover_the_odd_cases(catalog: Catalog) -> None:
    photos = {r["uri"]: r for r in ex.iter_rows(catalog, "photos")}
    assert (
        photos["/photos/empty.jpg"]["n_faces"] == 0 and photos["/photos/empty.jpg"]["people"] == []
    )
    bad = photos["/photos/bad.jpg"]
    assert bad["status"] == "error" and bad["sha256"] is None and bad["error"].startswith("cannot")
    assert photos[ODD_URI]["people"] == [1, 2]
    faces = list(ex.iter_rows(catalog, "faces"))
    assert [(f["cluster"], f["person_name"]) for f in faces] == [
        (0, 'Zoë, "Z"'),
        (1, "李雷"),
        (0, 'Zoë, "Z"'),
        (None, None),
    ]
    assert faces[0]["created_at"].endswith("+00:00")
    people = list(ex.iter_rows(catalog, "people"))
    assert [(p["faces"], p["photos"]) for p in people] == [(2, 2), (1, 1), (0, 0)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("what", WHATS)
def test_export_round_trips(catalog: Catalog, tmp_path: Path, what: str, fmt: str) -> None:
    out = tmp_path / "exports" / "deeper" / f"{what}.{fmt}"
    result = ex.export(catalog, what, out, fmt)
    expected = expected_rows(catalog, what)
    assert result == ex.ExportResult(what, fmt, out.resolve(), len(expected))
    assert result.to_dict() == {
        "what": what,
        "format": fmt,
        "path": str(out.resolve()),
        "rows": len(expected),
    }
    assert read_back(out, fmt, what) == expected
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp file left


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_export_has_the_header(tmp_path: Path, fmt: str) -> None:
    cat = Catalog(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    try:
        out = tmp_path / f"faces.{fmt}"
        assert ex.export(cat, "faces", out, None).rows == 0
        assert read_back(out, fmt, "faces") == []
    finally:
        cat.close()
    if fmt == "json":
        assert json.loads(out.read_text()) == []


def test_filters(catalog: Catalog) -> None:
    def ids(what: str, **filters: Any) -> list[int]:
        key = {"faces": "face_id", "photos": "photo_id", "people": "person_id"}[what]
        return [r[key] for r in ex.iter_rows(catalog, what, **filters)]

    assert ids("faces", source="family") == [1, 2, 4]
    assert ids("faces", source="trip") == [3]
    assert ids("faces", source="nowhere") == []
    assert ids("faces", person=1) == [1, 3]
    assert ids("faces", pack="dlib") == [4]
    assert ids("faces", source="trip", person=2) == []
    assert ids("photos", source="family") == [1, 3, 4, 5]
    assert ids("photos", person=2) == [1]
    assert ids("photos", person=3) == []
    assert ids("photos", pack="local") == [1, 2, 3]
    assert ids("people", person=2) == [2]
    assert ids("people", source="trip") == [1]
    assert ids("people", pack="dlib") == []

    dlib = list(ex.iter_rows(catalog, "photos", pack="dlib"))
    assert [(p["photo_id"], p["pack"], p["n_faces"], p["people"]) for p in dlib] == [
        (1, "dlib", 1, [])
    ]
    (zoe,) = ex.iter_rows(catalog, "people", source="trip")
    assert (zoe["faces"], zoe["photos"]) == (1, 1)


def test_unknown_person_and_wrong_pack(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="no person with id 99"):
        ex.iter_rows(catalog, "faces", person=99)  # raised on the call, not on the first row
    with pytest.raises(
        ConfigurationError, match="person 1 is a person of pack 'local', not 'dlib'"
    ):
        ex.export(catalog, "faces", tmp_path / "x.csv", "csv", person=1, pack="dlib")
    assert not (tmp_path / "x.csv").exists()


def test_unknown_what_and_format(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(
        UnknownNameError, match="unknown export table 'cats'; available: faces, people, photos"
    ):
        ex.iter_rows(catalog, "cats")
    with pytest.raises(ConfigurationError, match="available: csv, json, xlsx"):
        ex.export(catalog, "faces", tmp_path / "x.parquet", "parquet")
    with pytest.raises(ConfigurationError, match=r"suffix '\.txt'.*\.csv, \.json, \.xlsx"):
        ex.export(catalog, "faces", tmp_path / "x.txt", None)
    with pytest.raises(ConfigurationError, match="is a directory"):
        ex.export(catalog, "faces", tmp_path, "csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wb"]
    assert ex.export(catalog, "faces", tmp_path / "x.txt", "CSV").format == "csv"
    assert ex.export(catalog, "people", tmp_path / "P.JSON", None).format == "json"


def test_rows_stream_in_pages(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    pages: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "LIMIT" in statement:
            pages.append(statement)

    event.listen(catalog.engine, "before_cursor_execute", count)
    monkeypatch.setattr(ex, "BATCH_SIZE", 2)
    for what, n in (("faces", 4), ("photos", 4), ("people", 3)):
        pages.clear()
        rows = ex.iter_rows(catalog, what)
        first = next(rows)
        assert len(pages) == 1  # one page read, not the table
        rows_all = [first, *rows]
        assert rows_all == expected_rows(catalog, what)
        assert len(pages) == n // 2 + 1  # full pages, then the short (or empty) last one
    pages.clear()
    assert len(list(ex.iter_rows(catalog, "faces", batch_size=1))) == 4 and len(pages) == 5
    with pytest.raises(ConfigurationError, match="batch_size"):
        ex.iter_rows(catalog, "faces", batch_size=0)


def test_failed_export_leaves_the_old_file(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(cat: Catalog, f: ex.Filters, batch: int) -> Iterator[dict[str, Any]]:
        yield from ex._face_rows(cat, f, batch)
        raise OSError("disk full")

    monkeypatch.setitem(ex.TABLES._items, "faces", ex.Table(ex.FACE_COLUMNS, failing))
    out = tmp_path / "faces.json"
    out.write_text("old")
    for fmt in FORMATS:
        with pytest.raises(OSError, match="disk full"):
            ex.export(catalog, "faces", out, fmt)
        assert out.read_text() == "old"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.json", "wb"]


def test_xlsx_keeps_text_as_text_and_splits_sheets(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with catalog.session.begin() as s:
        s.get(Person, 3).name = '=HYPERLINK("x")\x07'  # type: ignore[union-attr]
    monkeypatch.setattr(ex, "XLSX_MAX_ROWS", 3)  # a header and two rows per sheet
    out = tmp_path / "people.xlsx"
    assert ex.export(catalog, "people", out, None).rows == 3
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["people", "people 2"]
    assert book["people 2"]["C2"].data_type == "s"
    assert book["people 2"]["C2"].value == '=HYPERLINK("x")'
    expected = expected_rows(catalog, "people")
    expected[2]["name"] = '=HYPERLINK("x")'
    assert read_back(out, "xlsx", "people") == expected


def test_cli_export(catalog: Catalog, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "wb"
    out = tmp_path / "out" / "faces.csv"
    main(["--home", str(home), "export", "--out", str(out)])
    assert capsys.readouterr().out == f"exported 4 faces to {out}\n"
    assert read_back(out, "csv", "faces") == expected_rows(catalog, "faces")

    js = tmp_path / "zoe.xlsx"
    main(
        [
            "--home",
            str(home),
            "export",
            "--what",
            "photos",
            "--person",
            "1",
            "--out",
            str(js),
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"what": "photos", "format": "xlsx", "path": str(js.resolve()), "rows": 2}
    assert [r["photo_id"] for r in read_back(js, "xlsx", "photos")] == [1, 2]

    dlib = tmp_path / "dlib.out"
    main(["--home", str(home), "--pack", "dlib", "export", "--format", "json", "--out", str(dlib)])
    assert [r["face_id"] for r in read_back(dlib, "json", "faces")] == [4]
    capsys.readouterr()

    for args, message in (
        (["--person", "99"], "error: no person with id 99"),
        (
            ["--what", "cats"],
            "error: unknown export table 'cats'; available: faces, people, photos",
        ),
        (["--format", "pdf"], "error: unknown export format 'pdf'; available: csv, json, xlsx"),
    ):
        with pytest.raises(SystemExit) as info:
            main(["--home", str(home), "export", "--out", str(tmp_path / "x.csv"), *args])
        assert info.value.code == 2
        assert capsys.readouterr().err.startswith(message)
    with pytest.raises(SystemExit) as info:
        main(["--home", str(tmp_path / "nope"), "export", "--out", str(tmp_path / "x.csv")])
    assert info.value.code == 2 and "no workbench at" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists() and not (tmp_path / "x.csv").exists()


def test_cli_export_opens_no_index_and_no_model(catalog: Catalog, tmp_path: Path) -> None:
    """Export reads the catalog only, so it runs while another process holds Milvus Lite."""
    code = f"""
import json, sys
from workbench.cli import main
main(["--home", {str(tmp_path / "wb")!r}, "export", "--out", {str(tmp_path / "f.xlsx")!r}])
heavy = ("pymilvus", "milvus_lite", "onnxruntime", "torch", "dlib", "insightface", "cv2")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert not (tmp_path / "wb" / "vectors.db").exists()
    assert read_back(tmp_path / "f.xlsx", "xlsx", "faces") == expected_rows(catalog, "faces")


def test_export_takes_a_workbench(catalog: Catalog, tmp_path: Path) -> None:
    from workbench.core import Workbench
    from workbench.settings import WorkbenchSettings

    with Workbench(WorkbenchSettings(home=tmp_path / "wb")) as wb:
        result = wb.export("photos", tmp_path / "p.json", "json", source="trip")
        assert wb._index is None  # the vector index was never opened
    trip = [r for r in expected_rows(catalog, "photos") if r["source"] == "trip"]
    assert result.rows == 1 and read_back(result.path, "json", "photos") == trip
