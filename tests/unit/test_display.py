"""The rich notebook displays (`workbench.display`): well-formed HTML, capped inline images,
no folders leaked, plain reprs kept. The search and person displays over a real
workbench (real pack, real thumbnails) are in tests/integration/test_display_workbench.py."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.analysis.people import PersonInfo
from workbench.analysis.search import Match, QueryFace
from workbench.analysis.search_result import SearchResult
from workbench.display.evaluation import comparison_html, lfw_html
from workbench.display.html import (
    MAX_BYTES,
    MAX_SIDE,
    MAX_TOTAL_BYTES,
    Images,
    capped_jpeg,
    rendered,
)
from workbench.display.search import MAX_MATCHES_SHOWN, search_html
from workbench.errors import WorkbenchError
from workbench.evaluation.metrics import kfold_verification
from workbench.faces.calibration import load_calibration
from workbench.store.faces import PackIndexState, Stats

pytestmark = pytest.mark.unit

VOID = {"img", "br", "hr", "meta", "input", "link", "area", "base", "col", "wbr", "source"}
DATA_URI = re.compile(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)")
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/(?:[\w.\-]+/)+[\w.\-]*")


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def well_formed(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """Assert every element of ``html`` closes in order, no script; return its tags."""
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert not checker.errors, checker.errors[:5]
    assert not checker.stack, f"left open: {checker.stack}"
    assert not any(tag in ("script", "style", "iframe") for tag, _ in checker.tags)
    assert not any(k.startswith("on") for _, attrs in checker.tags for k in attrs)
    return checker.tags


def inline_images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in DATA_URI.findall(html)]


def assert_capped(html: str) -> list[bytes]:
    """Every inlined image is a JPEG within `MAX_SIDE` and `MAX_BYTES`; all within the
    display's budget. Returns them."""
    images = inline_images(html)
    for data in images:
        assert len(data) <= MAX_BYTES
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "JPEG" and max(img.size) <= MAX_SIDE, (img.format, img.size)
    assert sum(len(d) for d in images) <= MAX_TOTAL_BYTES
    return images


def paths_in(html: str) -> set[str]:
    """Absolute paths written in ``html`` (data URIs and URLs left out)."""
    text = DATA_URI.sub("", html)
    text = re.sub(r"https?://\S+", "", text)
    return set(ABSOLUTE_PATH.findall(text))


def jpeg(width: int, height: int, noise: bool = True, seed: int = 0) -> bytes:
    """A JPEG: random noise (compresses badly, the worst case for the byte cap)."""
    rng = np.random.default_rng(seed)
    shape = (height, width, 3)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8) if noise else np.full(shape, 128, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


# ---- pieces ------------------------------------------------------------------------
def test_capped_jpeg_keeps_small_jpegs_and_shrinks_the_rest() -> None:
    small = jpeg(200, 150, noise=False)
    assert capped_jpeg(small) is small  # already within both caps: untouched
    for data in (jpeg(2400, 1600), jpeg(300, 300)):  # too wide; noisy and too heavy
        out = capped_jpeg(data)
        assert len(out) <= MAX_BYTES
        with Image.open(io.BytesIO(out)) as img:
            assert img.format == "JPEG" and max(img.size) <= MAX_SIDE
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, "PNG")
    with Image.open(io.BytesIO(capped_jpeg(png.getvalue()))) as img:
        assert img.format == "JPEG"


def test_images_stop_inlining_at_the_budget_and_say_so() -> None:
    images = Images(budget=3 * MAX_BYTES)
    tags = [images.tag(jpeg(400, 400, seed=i), f"tile {i}", width=100) for i in range(8)]
    inlined = [t for t in tags if "data:image/jpeg" in t]
    assert 1 <= len(inlined) <= 3 and images.left_out == 8 - len(inlined)
    assert "capped" in tags[-1]
    assert "no thumbnail: gone" in images.tag(None, "x", width=50, why="no thumbnail: gone")


def test_rendered_gives_none_instead_of_raising() -> None:
    def broken() -> str:
        raise RuntimeError("boom")

    assert rendered(broken, "a test") is None
    assert rendered(lambda: "<b>x</b>", "a test") == "<b>x</b>"


# ---- stats -------------------------------------------------------------------------
def test_stats_shows_a_table_per_source_and_status_and_keeps_its_repr() -> None:
    stats = Stats(
        photos=7,
        faces=9,
        by_source_status=[
            {"source": "family", "status": "done", "photos": 4},
            {"source": "family", "status": "error", "photos": 1},
            {"source": "vk:album/-1_2", "status": "no_faces", "photos": 2},
        ],
        packs=[PackIndexState("local", "faces_x", 9, 8)],
    )
    html = stats._repr_html_()
    assert html is not None
    tag, attrs = well_formed(html)[0]
    assert tag == "div" and attrs["class"] == "wb-repr" and attrs["data-wb-repr"] == "stats"
    assert 'data-agree="false"' in html and "differ: run workbench reindex" in html
    rows = re.findall(r'data-testid="stats-sources-row"([^>]*)>(.*?)</tr>', html)
    cells = {}
    for row_attrs, row in rows:
        source = re.search(r'data-source="([^"]+)"', row_attrs)
        cells[source.group(1) if source else "total"] = re.findall(r"<td[^>]*>(.*?)</td>", row)
    # columns: source, done, no_faces, error, photos
    assert cells["family"] == ["family", "4", "0", "1", "5"]
    assert cells["vk:album/-1_2"] == ["vk:album/-1_2", "0", "2", "0", "2"]
    assert cells["total"] == ["all sources", "4", "2", "1", "7"]
    assert repr(stats).startswith("Stats(photos=7, faces=9")  # the terminal's text
    assert not inline_images(html) and not paths_in(html)


def test_an_empty_workbench_says_so() -> None:
    html = Stats(photos=0, faces=0)._repr_html_()
    assert html is not None and "No photos yet" in html
    well_formed(html)


# ---- search ------------------------------------------------------------------------
def _match(i: int, uri: str) -> Match:
    return Match(uri, "family", 100 + i, 10 + i, [10.0, 20.0, 110.0, 140.0], 99.0 - i, 0.7)


def test_search_html_caps_tiles_and_images_and_names_only_the_photos(tmp_path: Path) -> None:
    uris = [f"/archive/family/IMG_{i:04d}.jpg" for i in range(MAX_MATCHES_SHOWN + 3)]
    faces = [
        QueryFace([5.0, 5.0, 80.0, 90.0], 0.91, [_match(i, u) for i, u in enumerate(uris)]),
        QueryFace([200.0, 5.0, 260.0, 70.0], 0.55, []),
    ]
    asked: list[int] = []

    def thumbnail(m: object) -> bytes:
        assert isinstance(m, Match)
        asked.append(m.face_id)
        if m.face_id == 101:
            raise WorkbenchError(f"photo {m.photo_id} ({m.photo}): its source no longer has it")
        return jpeg(1600, 1200, seed=m.face_id)  # a photo-sized picture: must be shrunk

    html = search_html(
        faces,
        sample_name="sample.jpg",
        sample_jpeg=jpeg(900, 600),
        sample_why="",
        crops=[jpeg(300, 300), None],
        threshold=85.0,
        thumbnail=thumbnail,
    )
    well_formed(html)
    assert 'data-wb-repr="search"' in html and 'data-matches="15"' in html
    assert len(asked) == MAX_MATCHES_SHOWN  # only the tiles shown ask for pictures
    assert html.count('data-testid="repr-match"') == MAX_MATCHES_SHOWN
    assert "+3 more" in html
    assert "no thumbnail: photo 11 (/archive/family/IMG_0001.jpg)" in html
    assert "no stored face at or above 85 %" in html  # the second face
    images = assert_capped(html)
    assert len(images) == 1 + 1 + MAX_MATCHES_SHOWN - 1  # sample, a crop, tiles but one
    assert paths_in(html) <= set(uris)  # a photo's own uri, nothing else


def test_search_result_is_the_list_it_was_and_hides_the_samples_folder(tmp_path: Path) -> None:
    faces = [QueryFace([1.0, 2.0, 3.0, 4.0], 0.8, [_match(0, "/photos/a.jpg")])]
    gone = tmp_path / "private" / "folder" / "sample.jpg"  # never written: cannot be read

    class Pictures:
        def match(self, m: Match) -> bytes:
            return jpeg(256, 200, noise=False)

    result = SearchResult(faces, sample=gone, threshold=85.0, pictures=Pictures())  # type: ignore[arg-type]
    assert result == faces and isinstance(result, list) and repr(result) == repr(faces)
    assert [f.to_dict() for f in result] == [f.to_dict() for f in faces]
    html = result._repr_html_()
    assert html is not None
    well_formed(html)
    assert "sample.jpg: 1 face, 1 match at or above 85 %" in html
    assert "the sample cannot be read again" in html
    assert str(tmp_path) not in html and "private/folder" not in html
    assert paths_in(html) <= {"/photos/a.jpg"}
    assert len(assert_capped(html)) == 1  # the match; no sample, no crop

    bare = SearchResult(faces, threshold=85.0)  # made without its workbench
    html = bare._repr_html_()
    assert html is not None and "without its workbench" in html
    assert SearchResult([], sample=b"", threshold=70.0)._repr_html_() is not None


def test_a_query_face_shows_its_matches_as_a_table() -> None:
    face = QueryFace([1.0, 2.0, 3.0, 4.0], 0.8, [_match(0, "/p/a.jpg"), _match(1, "/p/b.jpg")])
    html = face._repr_html_()
    assert html is not None
    well_formed(html)
    assert html.count('data-testid="repr-matches-row"') == 2 and "a.jpg" in html
    assert "/p/a.jpg" not in html  # file names only: a face alone has no tiles to title
    assert repr(face).startswith("QueryFace(box=")


# ---- people ------------------------------------------------------------------------
def test_a_person_shows_its_cover_and_counts() -> None:
    class Covers:
        def cover(self, person_id: int) -> bytes:
            assert person_id == 7
            return jpeg(1000, 1000)

    person = PersonInfo(7, "Ann <b>", 12, 9, False, True, pictures=Covers())
    html = person._repr_html_()
    assert html is not None
    well_formed(html)
    assert "Ann &lt;b&gt;" in html and "12 faces in 9 photos" in html and "confirmed" in html
    assert len(assert_capped(html)) == 1
    assert person == PersonInfo(7, "Ann <b>", 12, 9, False, True)  # pictures is not compared
    assert "pictures" not in repr(person) and "pictures" not in person.to_dict()

    class NoFaces:
        def cover(self, person_id: int) -> bytes:
            raise WorkbenchError(f"person {person_id} has no faces")

    html = PersonInfo(7, None, 0, 0, True, False, pictures=NoFaces())._repr_html_()
    assert html is not None and "no cover face: person 7 has no faces" in html
    assert "person 7" in html and "hidden" in html
    assert not inline_images(html)


# ---- evaluations -------------------------------------------------------------------
def _lfw_doc(pack: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    same = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    scores = np.where(same, rng.normal(0.6, 0.1, 600), rng.normal(0.1, 0.1, 600))
    report = kfold_verification(scores, same, np.arange(600) % 10)
    return {
        "pack": pack,
        "protocol": "LFW View 2 pairs.txt",
        "pairs": 600,
        "pairs_used": 600,
        **report.summary(),
        "detection_rate": 0.99,
        "no_face": {"policy": "fallback", "images": 3, "files": ["/data/lfw/images/x.jpg"]},
        "seconds": 12.5,
        "ms_per_image": 9.1,
        "roc": report.roc.thinned(),
    }


def test_an_lfw_evaluation_shows_headline_numbers_and_its_roc() -> None:
    doc = _lfw_doc("local", 0)
    html = lfw_html(doc)
    well_formed(html)
    assert f"accuracy {100 * doc['accuracy']['mean']:.2f} %" in html
    assert "ROC AUC" in html and "TAR at FAR 0.001" in html
    assert re.search(r'<svg data-testid="roc"', html)
    line = re.search(r'data-testid="roc-line" data-name="local" points="([^"]+)"', html)
    assert line is not None and len(line.group(1).split()) > 10
    assert not paths_in(html)  # the no-face files are not listed


def test_a_comparison_shows_a_row_and_a_curve_per_pack() -> None:
    packs = [_lfw_doc("local", 1), _lfw_doc("dlib", 2)]
    doc = {
        "kind": "lfw",
        "lfw_dir": "/data/sets/lfw",
        "pairs_file": "/data/sets/lfw/pairs.txt",
        "packs": [
            {
                "pack": p["pack"],
                "accuracy": p["accuracy"],
                "detection_rate": 0.99,
                "ms_per_image": 8.0,
                "lfw": p,
            }
            for p in packs
        ],
        "skipped": [{"pack": "buffalo_l", "reason": "no files in /home/me/.insightface/models"}],
        "seconds": 40.0,
    }
    html = comparison_html(doc)
    well_formed(html)
    assert html.count('data-testid="repr-packs-row"') == 2
    assert html.count('data-testid="roc-line"') == 2
    assert "on lfw/pairs.txt" in html and "skipped: buffalo_l" in html
    assert not paths_in(html) and "insightface" not in html


def test_a_calibration_shows_its_threshold_at_85_percent() -> None:
    cal = load_calibration("local:det_500m+mobilefacenet")
    html = cal._repr_html_()
    assert html is not None
    well_formed(html)
    assert f"{cal.threshold:.4f}" in html and 'data-testid="calibration-curve"' in html
    assert repr(cal).startswith("Calibration(pack=")
