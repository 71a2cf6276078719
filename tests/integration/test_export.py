"""Exports of the ingested dev set read back equal to the catalog, from the API and the CLI.

On SQLite (`dev_local`) and on PostgreSQL (`dev_local_pg`, ``server`` mark).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import cli_env, run_cli
from tests.integration.conftest import DevWorkbench
from workbench.analysis.export import FACE_COLUMNS, PHOTO_COLUMNS, export
from workbench.store.models import Face, Photo

pytestmark = pytest.mark.integration


FLOATS = {"x1", "y1", "x2", "y2", "score"}
INTS = {"face_id", "photo_id", "size_bytes", "width", "height", "n_faces", "cluster", "person_id"}


def read_back(path: Path, fmt: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """JSON as written; CSV cells decoded (JSON text, numbers, empty = None)."""
    if fmt == "json":
        return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == columns
        return [{k: _cell(k, v) for k, v in row.items()} for row in reader]


def _cell(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in {"provenance", "landmarks", "people"}:
        return json.loads(text)
    if column in FLOATS:
        return float(text)
    if column in INTS:
        return int(text)
    return text


def catalog_faces(wb: Any) -> list[dict[str, Any]]:
    with wb.catalog.session() as s:
        pairs = s.execute(
            select(Face, Photo).join(Photo, Photo.id == Face.photo_id).order_by(Face.id)
        ).all()
    return [
        {
            "face_id": f.id,
            "photo_id": p.id,
            "photo_uri": p.uri,
            "source": p.source,
            "origin": p.origin,
            "sha256": p.sha256,
            "provenance": p.meta,
            "box": [f.x1, f.y1, f.x2, f.y2],
            "landmarks": f.landmarks,
            "score": f.score,
            "pack": f.pack,
        }
        for f, p in pairs
    ]


def catalog_photos(wb: Any) -> list[dict[str, Any]]:
    with wb.catalog.session() as s:
        photos = list(s.scalars(select(Photo).order_by(Photo.id)))
    keys = ("id", "sha256", "source", "origin", "uri", "size_bytes", "width", "height")
    keys += ("format", "status", "error", "pack", "n_faces")
    return [
        {"photo_id" if k == "id" else k: getattr(p, k) for k in keys} | {"provenance": p.meta}
        for p in photos
    ]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_faces_round_trip(dev_any: DevWorkbench, tmp_path: Path, fmt: str) -> None:
    wb = dev_any.wb
    out = tmp_path / f"faces.{fmt}"
    result = export(wb.catalog, "faces", out, None)
    rows = read_back(out, fmt, FACE_COLUMNS)
    expected = catalog_faces(wb)
    assert result.rows == len(rows) == len(expected) == wb.stats().faces > 0
    got = [
        {k: r[k] for k in expected[0] if k != "box"} | {"box": [r["x1"], r["y1"], r["x2"], r["y2"]]}
        for r in rows
    ]
    assert got == expected
    assert all(len(r["landmarks"]) == 10 for r in rows)
    assert all(r["cluster"] is None and r["person_id"] is None for r in rows)  # never clustered
    assert all(r["created_at"].endswith("+00:00") for r in rows)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_photos_round_trip(dev_any: DevWorkbench, tmp_path: Path, fmt: str) -> None:
    wb = dev_any.wb
    out = tmp_path / "sub" / f"photos.{fmt}"
    assert export(wb.catalog, "photos", out, fmt).rows == len(dev_any.photos)
    rows = read_back(out, fmt, PHOTO_COLUMNS)
    expected = catalog_photos(wb)
    assert [{k: r[k] for k in expected[0]} for r in rows] == expected
    stats = wb.stats()
    assert len(rows) == stats.photos
    by = Counter((r["source"], r["status"]) for r in rows)
    assert by == {(d["source"], d["status"]): d["photos"] for d in stats.by_source_status}
    assert sum(r["n_faces"] for r in rows) == stats.faces
    assert all(r["people"] == [] for r in rows)


def test_cli_exports_while_the_index_is_open(
    dev_any: DevWorkbench, tmp_path: Path, models_dir: Path
) -> None:
    """This process holds the Milvus Lite file; the CLI reads only the catalog."""
    wb = dev_any.wb
    faces = wb.stats().faces  # opens the vector index here
    out = tmp_path / "cli" / "faces.csv"
    env = cli_env(wb.home, models_dir)
    if wb.settings.storage.catalog_url:
        env["WORKBENCH_STORAGE__CATALOG_URL"] = wb.settings.storage.catalog_url
    proc = run_cli(["export", "--what", "faces", "--out", str(out), "--json"], env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "what": "faces",
        "format": "csv",
        "path": str(out.resolve()),
        "rows": faces,
    }
    mine = tmp_path / "api.csv"
    export(wb.catalog, "faces", mine, "csv")
    assert out.read_bytes() == mine.read_bytes()

    proc = run_cli(
        ["export", "--what", "people", "--person", "1", "--out", str(tmp_path / "p.xlsx")], env
    )
    assert proc.returncode == 2 and "error: no person with id 1" in proc.stderr
    assert not (tmp_path / "p.xlsx").exists()
