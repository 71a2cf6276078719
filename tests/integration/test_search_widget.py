"""The search-by-sample app's logic on the real dev set, without a browser.

Uploads are fed as ipywidgets 8's ``FileUpload.value`` produces them; the
session's `dev_local` workbench (the dev set ingested with the `local` pack)
is only read; thumbnails go to each test's own folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DevPhoto
from tests.integration.conftest import DevWorkbench
from workbench.imaging.thumbnails import ThumbnailCache
from workbench.widgets.search import THRESHOLD_MAX, THRESHOLD_MIN, SearchBySample
from workbench.widgets.search_results import (
    RESULT_COLUMNS,
    read_uploads,
    result_rows,
    results_csv,
    results_json,
    search_upload,
)

pytestmark = pytest.mark.integration

IDENTITY = "deepface:Angelina"
"""The dev set's largest identity (9 photos): its photos must find each other."""


def upload_value(name: str, data: bytes, mime: str = "image/jpeg") -> dict[str, Any]:
    """One entry of ``FileUpload.value`` exactly as ipywidgets 8 builds it from the browser."""
    return {
        "name": name,
        "type": mime,
        "size": len(data),
        "content": memoryview(data),
        "last_modified": 1_700_000_000_000,
    }


def file_value(path: Path) -> dict[str, Any]:
    return upload_value(path.name, path.read_bytes())


@pytest.fixture
def app(dev_local: DevWorkbench, tmp_path: Path) -> SearchBySample:
    cache = ThumbnailCache(dev_local.wb.settings, root=tmp_path / "thumbs")
    return SearchBySample(dev_local.wb, cache=cache)


def identity_photos(dev_photos: list[DevPhoto], identity: str) -> list[DevPhoto]:
    return [p for p in dev_photos if p.category == "identity" and p.identity == identity]


def test_controls_have_the_issue_ranges(app: SearchBySample) -> None:
    assert (THRESHOLD_MIN, THRESHOLD_MAX) == (70, 95)
    assert (app.threshold.min, app.threshold.max, app.threshold.value) == (70, 95, 85)
    assert app.upload.multiple is True
    assert set(app.upload.accept.split(",")) == {".jpg", ".jpeg", ".png", ".webp"}
    top_ks = dict(app.top_k.options)
    assert app.top_k.value == 10 and top_ks["5"] == 5 and top_ks["50"] == 50
    assert top_ks["all"] == 0  # every match at the threshold, paged
    assert app.source.options[0] == ("all sources", "")
    assert len(app.source.options) >= 2  # the dev set's source


def test_identity_photo_finds_the_same_person(
    app: SearchBySample, dev_photos: list[DevPhoto]
) -> None:
    photos = identity_photos(dev_photos, IDENTITY)
    sample = photos[0]
    others = {p.path.name for p in photos[1:]}
    results = app.set_uploads([file_value(sample.path)])

    assert len(results) == 1 and results[0].message is None, results
    matches = [m for f in results[0].faces for m in f.matches]
    assert all(m.similarity >= 85 for m in matches)
    same = [m for m in matches if Path(m.photo).name in others]
    assert same, f"no other photo of {IDENTITY} at or above 85 %: {matches}"
    # What the browser gets: tiles with the numbers tests read, boxed thumbnails, exports.
    page = app.output.value
    assert page.count('data-testid="match"') == len(matches)
    assert f'data-similarity="{same[0].similarity:.1f}"' in page
    assert "data:image/jpeg;base64," in page
    assert 'data-testid="csv"' in app.exports.value and 'download="search-results.csv"' in (
        app.exports.value
    )
    assert app.messages.value == ""
    assert 'data-state="done"' in app.status.value


def test_export_has_one_row_per_match(app: SearchBySample, dev_photos: list[DevPhoto]) -> None:
    sample = identity_photos(dev_photos, IDENTITY)[1]
    results = app.set_uploads([file_value(sample.path)])
    rows = result_rows(results)
    n = sum(len(f.matches) for f in results[0].faces)
    assert len(rows) == n > 0 and rows == app.rows

    table = list(csv.DictReader(io.StringIO(results_csv(rows))))
    assert tuple(table[0]) == RESULT_COLUMNS
    assert len(table) == n
    first = results[0].faces[0].matches[0]
    assert table[0]["sample_file"] == sample.path.name
    assert table[0]["query_face"] == "1" and table[0]["rank"] == "1"
    assert table[0]["photo_uri"] == first.photo
    assert float(table[0]["similarity_pct"]) == pytest.approx(first.similarity, abs=0.01)
    assert [float(table[0][c]) for c in ("x1", "y1", "x2", "y2")] == first.box
    assert json.loads(table[0]["query_box"]) == results[0].faces[0].box

    objs = json.loads(results_json(rows))
    assert len(objs) == n and tuple(objs[0]) == RESULT_COLUMNS
    assert objs[0]["face_id"] == first.face_id and objs[0]["cosine"] == round(first.cosine, 4)
    assert results_json([]) == "[]\n"


def test_threshold_and_top_k_narrow_the_results(
    app: SearchBySample, dev_photos: list[DevPhoto]
) -> None:
    sample = identity_photos(dev_photos, IDENTITY)[0]
    app.threshold.value = 70
    app.top_k.value = 50
    wide = app.set_uploads([file_value(sample.path)])
    app.threshold.value = 95
    app.top_k.value = 5
    narrow = app.run()
    assert 0 < narrow[0].n_matches <= min(5, wide[0].n_matches)  # the photo itself: 100 %
    assert all(m.similarity >= 95 for f in narrow[0].faces for m in f.matches)


def test_no_face_photo_gives_a_message(app: SearchBySample, dev_photos: list[DevPhoto]) -> None:
    no_face = next(p for p in dev_photos if p.category == "no_face")
    results = app.set_uploads([file_value(no_face.path)])
    assert results[0].faces == [] and results[0].message
    assert f"no face found in {no_face.path.name}" in results[0].message
    assert f"no face found in {no_face.path.name}" in app.messages.value
    assert 'data-testid="message"' in app.messages.value
    assert app.rows == [] and 'data-rows="0"' in app.exports.value


def test_bad_files_give_messages_beside_good_results(
    app: SearchBySample, dev_photos: list[DevPhoto]
) -> None:
    good = identity_photos(dev_photos, IDENTITY)[0]
    gif = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 100, 50)).save(gif, "GIF")
    value = [
        upload_value("x.jpg", os.urandom(4096)),
        upload_value("anim.gif", gif.getvalue(), "image/gif"),
        upload_value("notes.txt", b"just some text, not a photo\n", "text/plain"),
        upload_value("empty.png", b"", "image/png"),
        file_value(good.path),
    ]
    results = app.set_uploads(value)  # never raises
    by_name = {r.name: r for r in results}
    assert "x.jpg: cannot be read" in (by_name["x.jpg"].message or "")
    assert "GIF" in (by_name["anim.gif"].message or "")
    assert "JPG, PNG, WebP" in (by_name["anim.gif"].message or "")
    assert "not an image: looks like a text file" in (by_name["notes.txt"].message or "")
    assert "empty file" in (by_name["empty.png"].message or "")
    assert by_name[good.path.name].message is None and by_name[good.path.name].n_matches > 0
    shown = app.messages.value
    assert shown.count('data-testid="message"') == 4
    assert "Traceback" not in shown and "Traceback" not in app.output.value
    assert 'data-testid="match"' in app.output.value


def test_unexpected_failure_is_a_message(
    dev_local: DevWorkbench, monkeypatch: pytest.MonkeyPatch, dev_photos: list[DevPhoto]
) -> None:
    wb = dev_local.wb

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("index went away")

    monkeypatch.setattr(wb, "search", broken)
    sample = identity_photos(dev_photos, IDENTITY)[0]
    [upload] = read_uploads([file_value(sample.path)])
    result = search_upload(wb, upload, top_k=10, threshold=85)
    assert result.message == f"{sample.path.name}: search failed (RuntimeError: index went away)"


def test_read_uploads_keeps_only_the_file_name() -> None:
    [up] = read_uploads([upload_value("../../etc/passwd.jpg", b"abc")])
    assert up.name == "passwd.jpg" and up.content == b"abc"
