"""The search app's pure parts: export table, CSV/JSON, download links, controls, renderers.

No model loads: results are built by hand and the workbench is an empty one.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import pytest

from workbench.analysis.search import Match, QueryFace
from workbench.core import Workbench
from workbench.settings import WorkbenchSettings
from workbench.widgets.search import EVERY_MATCH, SearchBySample
from workbench.widgets.search_results import (
    RESULT_COLUMNS,
    SampleResult,
    download_link,
    exports_html,
    match_tile_html,
    message_html,
    read_uploads,
    result_rows,
    results_csv,
    results_json,
)

pytestmark = pytest.mark.unit


def match(i: int, sim: float) -> Match:
    return Match(f"/photos/p{i}.jpg", "family", 10 + i, 100 + i, [1.0, 2.0, 30.5, 40.0], sim, 0.5)


RESULTS = [
    SampleResult(
        "a.jpg",
        [
            QueryFace([5.0, 6.0, 50.0, 60.0], 0.9, [match(1, 97.25), match(2, 88.0)]),
            QueryFace([70.0, 6.0, 90.0, 30.0], 0.8, []),
        ],
        [b"x", b"y"],
    ),
    SampleResult("b.png", message="no face found in b.png"),
    SampleResult("c.webp", [QueryFace([0.0, 0.0, 9.0, 9.0], 0.7, [match(3, 85.0)])], [b"z"]),
]


def test_rows_one_per_match_in_order() -> None:
    rows = result_rows(RESULTS)
    assert [(r["sample_file"], r["query_face"], r["rank"]) for r in rows] == [
        ("a.jpg", 1, 1),
        ("a.jpg", 1, 2),
        ("c.webp", 1, 1),
    ]
    assert tuple(rows[0]) == RESULT_COLUMNS
    assert rows[0]["query_box"] == [5.0, 6.0, 50.0, 60.0]
    assert (rows[0]["x1"], rows[0]["y2"], rows[0]["similarity_pct"]) == (1.0, 40.0, 97.25)


def test_csv_and_json_round_trip() -> None:
    rows = result_rows(RESULTS)
    table = list(csv.DictReader(io.StringIO(results_csv(rows))))
    assert len(table) == 3 and tuple(table[0]) == RESULT_COLUMNS
    assert json.loads(table[0]["query_box"]) == [5.0, 6.0, 50.0, 60.0]
    assert table[2]["photo_uri"] == "/photos/p3.jpg" and table[2]["similarity_pct"] == "85.0"
    assert json.loads(results_json(rows)) == [{c: r[c] for c in RESULT_COLUMNS} for r in rows]
    assert results_csv([]) == ",".join(RESULT_COLUMNS) + "\n"


def test_download_link_carries_the_text() -> None:
    link = download_link("a,b\n1,ü\n", "r.csv", "text/csv", "CSV", "csv")
    assert 'download="r.csv"' in link and 'data-testid="csv"' in link
    data = link.split("base64,", 1)[1].split('"', 1)[0]
    assert base64.b64decode(data).decode("utf-8") == "a,b\n1,ü\n"
    html = exports_html(result_rows(RESULTS))
    assert 'data-rows="3"' in html and 'data-testid="json"' in html
    assert 'data-rows="0"' in exports_html([])


def test_renderers_escape_what_users_name() -> None:
    assert "&lt;script&gt;" in message_html("<script>x.jpg")
    tile = match_tile_html(match(1, 91.234), b"jpeg")
    assert 'data-similarity="91.2"' in tile and 'data-photo="/photos/p1.jpg"' in tile
    assert "box [1, 2, 30, 40]" in tile or "box [1, 2, 31, 40]" in tile
    assert "no thumbnail: gone" in match_tile_html(match(1, 90), None, "no thumbnail: gone")


def test_uploads_keep_bytes_and_base_name() -> None:
    value = ({"name": "dir/x.jpg", "type": "image/jpeg", "size": 3, "content": memoryview(b"abc")},)
    assert [(u.name, u.content) for u in read_uploads(value)] == [("x.jpg", b"abc")]


def test_controls_on_an_empty_workbench(tmp_path: Path) -> None:
    with Workbench(WorkbenchSettings(home=tmp_path / "wb")) as wb:
        app = SearchBySample(wb)
        assert (app.threshold.min, app.threshold.max, app.threshold.value) == (70, 95, 85)
        assert app.top_k.value == 10
        assert [v for _label, v in app.top_k.options] == [5, 10, 20, 50, EVERY_MATCH]
        assert app.source.options == (("all sources", ""),)
        assert app.upload.multiple and app.upload.accept == ".jpg,.jpeg,.png,.webp"
        assert app.search_button.disabled
        assert app.run() == [] and 'data-state="idle"' in app.status.value


def test_similarity_is_never_shown_as_a_certain_100_percent() -> None:
    from workbench.widgets.common import format_similarity

    assert format_similarity(85.04) == "85.0 %"
    assert format_similarity(99.94) == "99.9 %"
    assert format_similarity(99.95) == format_similarity(100.0) == "> 99.9 %"
