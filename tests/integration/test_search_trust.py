"""Search you can trust (issue 22) on real photos, real models, real SQLite and Milvus Lite:
every match above the threshold, the strangers to expect, the quality gate, copies of a
photo shown once, answers grouped by person, faces in tight crops."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from tests.conftest import cli_env, local_pack_settings, run_cli
from tests.integration.conftest import DevWorkbench

pytestmark = pytest.mark.integration

ANGELINA = ["dev_0010.jpg", "dev_0012.jpg", "dev_0022.jpg", "dev_0070.jpg", "dev_0087.jpg"]
SCARLETT = ["dev_0025.jpg", "dev_0027.jpg", "dev_0046.jpg", "dev_0083.jpg", "dev_0086.jpg"]


def _copy(src: Path, dst: Path, scale: float = 1.0, quality: int = 95, blur: float = 0.0) -> Path:
    img = Image.open(src).convert("RGB")
    if scale != 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)))
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    img.save(dst, "JPEG", quality=quality)
    return dst


def _exact_matches(wb: object, vector: np.ndarray, min_cos: float, gated: set[int]) -> list[int]:
    """Every searchable face at or above ``min_cos``, best first, by numpy over the catalog."""
    ids, _, X = wb.catalog.face_vectors(wb.pack.name)  # type: ignore[attr-defined]
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    sims = X @ (vector / np.linalg.norm(vector))
    keep = [(float(s), int(i)) for i, s in zip(ids, sims, strict=True) if s >= min_cos]
    return [i for s, i in sorted(keep, key=lambda t: (-t[0], t[1])) if i not in gated]


# ---- every match, and the strangers to expect ---------------------------------------------
def test_search_all_returns_every_match_above_the_threshold(dev_local: DevWorkbench) -> None:
    wb = dev_local.wb
    sample = dev_local.photos[0].path.parent / ANGELINA[0]
    gated = wb.catalog.gated_face_ids(wb.pack.name, wb.settings.quality)
    (face,) = [f for f in wb.search(sample, top_k=None, threshold=70) if f.matches]
    assert face.complete and face.threshold == 70
    (query,) = wb.pack.analyze(np.asarray(Image.open(sample).convert("RGB")))[:1]
    exact = _exact_matches(wb, query.embedding, wb.calibration.cosine_at(70), gated)
    assert [m.face_id for m in face.matches] == exact
    assert len(exact) > 10  # more than a top-10 would show
    # The top K are the first K of them.
    top = wb.search(sample, top_k=3, threshold=70)[0]
    assert [m.face_id for m in top.matches] == exact[:3] and not top.complete
    # Every answer says the gallery searched and the strangers to expect in it.
    gallery = wb.catalog.count_searchable(wb.pack.name, gate=wb.settings.quality)
    assert face.gallery == gallery > 0
    assert face.expected_strangers == pytest.approx(1e-2 * gallery)  # 70 % is FMR 1e-2
    default = wb.search(sample)[0]
    assert default.threshold == 85 and default.expected_strangers == pytest.approx(1e-5 * gallery)


def test_find_similar_every_match(dev_local: DevWorkbench) -> None:
    wb = dev_local.wb
    photo = wb.catalog.find_photo(str((dev_local.photos[0].path.parent / ANGELINA[1]).resolve()))
    assert photo is not None
    face_id = min(wb.catalog.face_ids(wb.pack.name) & {f.id for f in _faces(wb, photo.id)})
    every = wb.search_face(face_id, top_k=None, threshold=70)
    assert every and all(m.photo_id != photo.id for m in every)
    sims = [m.similarity for m in every]
    assert sims == sorted(sims, reverse=True) and min(sims) >= 70
    assert [m.face_id for m in wb.search_face(face_id, top_k=2, threshold=70)] == [
        m.face_id for m in every[:2]
    ]


def _faces(wb: object, photo_id: int) -> list:
    from sqlalchemy import select

    from workbench.store.models import Face

    with wb.catalog.session() as s:  # type: ignore[attr-defined]
        return list(s.scalars(select(Face).where(Face.photo_id == photo_id)))


def test_range_search_pages_through_milvus_lite_and_the_catalog(dev_local: DevWorkbench) -> None:
    from workbench.store.catalog_vectors import CatalogVectors

    wb = dev_local.wb
    ids, _, X = wb.catalog.face_vectors(wb.pack.name)
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    queries = X[:5]
    sims = queries @ X.T
    collection = wb.collection
    # Small pages: each ends where the next starts, so paging is exercised many times.
    lite = wb.index.search_range(collection, queries, 0.2, pack=wb.pack.name, page=7)
    exact = CatalogVectors(Path(wb.settings.milvus_uri), wb.settings.storage, wb.catalog)
    from_catalog = exact.search_range(collection, queries, 0.2, pack=wb.pack.name)
    for q, (a, b) in enumerate(zip(lite, from_catalog, strict=True)):
        want = {int(i) for i, s in zip(ids, sims[q], strict=True) if s >= 0.2}
        assert {h.face_id for h in a} == want == {h.face_id for h in b}
        assert [h.score for h in a] == sorted((h.score for h in a), reverse=True)


def test_cli_search_all_json_keeps_the_contract_and_adds_fields(
    dev_local: DevWorkbench, models_dir: Path
) -> None:
    sample = dev_local.photos[0].path.parent / ANGELINA[2]
    proc = run_cli(
        ["search", str(sample), "--all", "--threshold", "75", "--json"],
        cli_env(dev_local.wb.home, models_dir),
    )
    assert proc.returncode == 0, proc.stderr
    (face,) = [f for f in json.loads(proc.stdout) if f["matches"]]
    for key in ("box", "score", "matches", "gallery", "expected_strangers", "threshold"):
        assert key in face
    assert face["complete"] is True and face["threshold"] == 75
    for m in face["matches"]:
        assert {"photo", "source", "face_id", "photo_id", "box", "similarity", "cosine"} <= set(m)
        assert m["similarity"] >= 75 and isinstance(m["also_at"], list)
    text = run_cli(["search", str(sample)], cli_env(dev_local.wb.home, models_dir))
    assert text.returncode == 0, text.stderr
    assert "faces searched" in text.stdout and "strangers expected" in text.stdout
    both = run_cli(["search", str(sample), "--all", "--top-k", "3"], cli_env(Path("x"), models_dir))
    assert both.returncode == 2 and "--top-k or --all" in both.stderr


# ---- copies of a photo -----------------------------------------------------------------
def test_the_dev_sets_near_duplicate_is_recorded_once(dev_local: DevWorkbench) -> None:
    from workbench.analysis.gallery import GalleryFilter, gallery_page

    wb = dev_local.wb
    folder = dev_local.photos[0].path.parent
    original = wb.catalog.find_photo(str((folder / "dev_0031.jpg").resolve()))
    copy = wb.catalog.find_photo(str((folder / "dev_0032.png").resolve()))
    assert original is not None and copy is not None
    assert (copy.status, copy.duplicate_of, copy.n_faces) == ("duplicate", original.id, 0)
    assert dev_local.report.duplicates == 1
    uris = {it.uri for it in gallery_page(wb.catalog, GalleryFilter(), page_size=1000).items}
    assert original.uri in uris and copy.uri not in uris
    (face,) = wb.search(folder / "dev_0032.png", top_k=3)
    top = face.matches[0]
    assert top.photo == original.uri and top.also_at == (copy.uri,)


def test_resized_and_reencoded_copies_are_shown_once(
    tmp_path: Path, models_dir: Path, faces_dev_dir: Path
) -> None:
    from workbench.analysis.export import iter_rows
    from workbench.core import Workbench

    src = faces_dev_dir / "images"
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    for name in SCARLETT[:3]:
        _copy(src / name, first / name)
    _copy(src / SCARLETT[0], first / "zz_small.jpg", scale=0.5, quality=70)  # same batch
    _copy(src / SCARLETT[0], second / "recompressed.jpg", quality=40)  # a later run
    with Workbench(local_pack_settings(tmp_path / "wb", models_dir)) as wb:
        one = wb.ingest([first], progress=False)
        two = wb.ingest([second], progress=False)
        assert (one.photos, one.duplicates, two.photos, two.duplicates) == (4, 1, 1, 1)
        original = wb.catalog.find_photo(str((first / SCARLETT[0]).resolve()))
        assert original is not None
        copies = [
            str((first / "zz_small.jpg").resolve()),
            str((second / "recompressed.jpg").resolve()),
        ]
        (face,) = wb.search(src / SCARLETT[0], threshold=0)
        assert [m.photo for m in face.matches].count(original.uri) == 1
        assert all(m.photo not in copies for m in face.matches)
        assert next(m for m in face.matches if m.photo == original.uri).also_at == tuple(copies)
        rows = {r["uri"]: r for r in iter_rows(wb.catalog, "photos")}
        assert rows[original.uri]["copies"] == copies
        assert {rows[c]["duplicate_of"] for c in copies} == {original.id}
        # Ingesting a copy again changes nothing; deleting the original hands its first copy
        # back to the analysis, standing in for it, and the other copies follow that one.
        assert wb.ingest([second], progress=False).skipped == 1
        wb.delete_photo(original.id)
        stand_in, other = (wb.catalog.find_photo(c) for c in copies)
        assert stand_in is not None and other is not None
        assert (stand_in.status, stand_in.duplicate_of) == ("pending", None)
        assert (other.status, other.duplicate_of) == ("duplicate", stand_in.id)
        wb.embed(progress=False)
        assert wb.catalog.find_photo(copies[0]).status == "done"  # type: ignore[union-attr]
        (face,) = wb.search(src / SCARLETT[0], threshold=0)
        assert next(m for m in face.matches if m.photo == copies[0]).also_at == (copies[1],)


# ---- the quality gate -------------------------------------------------------------------
@pytest.fixture(scope="module")
def gated_home(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, faces_dev_dir: Path
) -> Iterator[object]:
    """Angelina's photos, one of them blurred past recognition (sharpness < 0.12)."""
    from workbench.core import Workbench

    folder = tmp_path_factory.mktemp("gated-photos")
    src = faces_dev_dir / "images"
    for name in ANGELINA[:4]:
        _copy(src / name, folder / name)
    # Shrunk so the face is about 100 px, then blurred as LFW's sigma 4 (sharpness ~0.08).
    _copy(src / ANGELINA[4], folder / "blurred.jpg", scale=0.3, blur=4.0)
    wb = Workbench(local_pack_settings(tmp_path_factory.mktemp("gated") / "wb", models_dir))
    report = wb.ingest([folder], progress=False)
    assert report.faces >= 5, report.counts()
    yield wb, folder
    wb.close()


def _blurred_face(wb: object, folder: Path) -> int:
    photo = wb.catalog.find_photo(str((folder / "blurred.jpg").resolve()))  # type: ignore[attr-defined]
    assert photo is not None and photo.n_faces >= 1, "the blurred face must still be detected"
    return max(_faces(wb, photo.id), key=lambda f: f.x2 - f.x1).id


def test_a_face_below_the_gate_stays_but_is_not_searched(gated_home: tuple) -> None:
    from workbench.analysis.gallery import photo_detail

    wb, folder = gated_home
    blurred = _blurred_face(wb, folder)
    row = wb.catalog.faces_by_ids([blurred])[blurred]
    assert row.sharpness is not None and row.sharpness < wb.settings.quality.min_sharpness
    assert blurred in wb.catalog.gated_face_ids(wb.pack.name, wb.settings.quality)
    sample = folder / ANGELINA[0]
    (face,) = wb.search(sample, top_k=None, threshold=0)
    assert blurred not in {m.face_id for m in face.matches}
    (every,) = wb.search(sample, top_k=None, threshold=0, include_low_quality=True)
    assert blurred in {m.face_id for m in every.matches}
    assert every.gallery == face.gallery + 1
    # In the gallery, with its reason.
    detail = photo_detail(wb.catalog, row.photo_id, gate=wb.settings.quality)
    mine = next(f for f in detail.faces if f.id == blurred)
    assert "blurry" in mine.below_gate and mine.quality is not None
    # Clustering leaves it in no person, unless asked.
    wb.cluster()
    assert wb.people.person_of([blurred])[blurred] is None
    assert wb.search_face(blurred, top_k=None, threshold=0)  # it can still be searched with


def test_quality_backfill_measures_old_faces(gated_home: tuple, models_dir: Path) -> None:
    from sqlalchemy import update

    from workbench.store.models import Face

    wb, folder = gated_home
    before = {
        f.id: f for f in wb.catalog.faces_by_ids(sorted(wb.catalog.face_ids(wb.pack.name))).values()
    }
    with wb.catalog.session.begin() as s:  # as a catalog made before quality was measured
        s.execute(update(Face).values(size=None, sharpness=None, yaw=None, pitch=None, roll=None))
    assert not wb.catalog.gated_face_ids(wb.pack.name, wb.settings.quality)  # unmeasured passes
    proc = run_cli(["quality", "--json"], cli_env(wb.home, models_dir))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["faces"] == len(before) and report["unread"] == 0
    after = wb.catalog.faces_by_ids(sorted(before))
    for fid, old in before.items():
        new = after[fid]
        assert new.size == pytest.approx(old.size, abs=0.5)
        assert new.sharpness == pytest.approx(old.sharpness, rel=0.05)
        assert new.yaw == pytest.approx(old.yaw, abs=0.5)
    assert _blurred_face(wb, folder) in wb.catalog.gated_face_ids(wb.pack.name, wb.settings.quality)
    assert (
        json.loads(run_cli(["quality", "--json"], cli_env(wb.home, models_dir)).stdout)["faces"]
        == 0
    )


# ---- answers by person -----------------------------------------------------------------
def test_answers_are_grouped_by_named_person(
    tmp_path: Path, models_dir: Path, faces_dev_dir: Path
) -> None:
    from workbench.core import Workbench

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ANGELINA + SCARLETT[:2]:
        _copy(faces_dev_dir / "images" / name, folder / name)
    with Workbench(local_pack_settings(tmp_path / "wb", models_dir)) as wb:
        wb.ingest([folder], progress=False)
        wb.cluster()
        (face,) = wb.search(folder / ANGELINA[0], top_k=None, threshold=70)
        # Nobody named or confirmed yet: nothing to group, every match is loose.
        assert not face.people and face.loose == face.matches
        of = wb.people.person_of([m.face_id for m in face.matches[:3]])
        person = next((p for p in of.values() if p is not None), None)
        assert person is not None, "clustering put Angelina's best matches in no person"
        wb.people.name(person, "Angelina")
        (face,) = wb.search(folder / ANGELINA[0], top_k=None, threshold=70)
        (group,) = face.people
        assert (group.person_id, group.name) == (person, "Angelina") and group.photos >= 3
        assert all(m.person == "Angelina" for m in face.matches if m.face_id in group.face_ids)
        assert {m.face_id for m in face.loose}.isdisjoint(group.face_ids)
        doc = face.to_dict()
        assert doc["people"][0]["name"] == "Angelina"
    text = run_cli(
        ["search", str(folder / ANGELINA[0]), "--all", "--threshold", "70"],
        cli_env(tmp_path / "wb", models_dir),
    )
    assert text.returncode == 0, text.stderr
    assert f"Angelina — {group.photos} photos" in text.stdout


# ---- faces in crops ---------------------------------------------------------------------
def _chips(dev_photos: list, pack: object, side: int, margin: float = 0.1) -> list[np.ndarray]:
    """Tight square chips (the face box and a small margin) of the dev identity photos."""
    from workbench.imaging.decode import decode_image

    out = []
    for p in dev_photos:
        if p.category != "identity":
            continue
        rgb = decode_image(p.path.read_bytes()).rgb
        faces = pack.analyze(rgb)  # type: ignore[attr-defined]
        if not faces:
            continue
        f = max(faces, key=lambda f: f.detection.width * f.detection.height).detection
        x1, y1, x2, y2 = f.box
        m = margin * max(x2 - x1, y2 - y1)
        crop = Image.fromarray(rgb).crop((int(x1 - m), int(y1 - m), int(x2 + m), int(y2 + m)))
        out.append(np.asarray(crop.resize((side, side))))
    return out


def test_tight_chips_of_the_dev_identity_photos_all_give_their_face(
    dev_local: DevWorkbench, dev_photos: list
) -> None:
    pack = dev_local.wb.pack
    chips = _chips(dev_photos, pack, 150)
    assert len(chips) >= 85
    no_face = [i for i, chip in enumerate(chips) if not pack.analyze(chip)]
    assert no_face == [], f"{len(no_face)} of {len(chips)} chips gave no face"
    with pack.detection_settings(pad_retry=False):  # what the retry is for
        assert sum(not pack.analyze(chip) for chip in chips[:10]) >= 5


@pytest.mark.parametrize("detector", ["dlib-hog", "mtcnn"])
def test_every_detector_finds_the_face_of_a_chip(
    detector: str, dev_photos: list, tmp_path: Path, models_dir: Path
) -> None:
    from workbench.faces.registry import open_pack

    settings = local_pack_settings(tmp_path, models_dir, detector=detector)
    pack = open_pack(settings.pack, settings).load()
    chips = _chips(dev_photos[:40], pack, 112, margin=0.05)
    assert len(chips) >= 10
    found = sum(bool(pack.analyze(chip)) for chip in chips[:10])
    assert found >= 9, f"{detector}: {found} of 10 chips"


# ---- 1:N evaluation on a labelled folder ----------------------------------------------------
def test_evaluate_search_on_the_dev_labels(
    tmp_path: Path, models_dir: Path, faces_dev_dir: Path
) -> None:
    home = tmp_path / "wb"
    proc = run_cli(
        [
            "evaluate",
            "search",
            "--labels",
            str(faces_dev_dir / "labels.csv"),
            "--json",
            "--no-progress",
        ],
        cli_env(home, models_dir),
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "search" and Path(doc["saved"]).is_file()
    assert doc["queries"] >= 60 and doc["rank1"] >= 0.9
    rows = {r["percent"]: r for r in doc["thresholds"]}
    assert set(rows) == {70.0, 80.0, 85.0, 90.0, 95.0} and rows[85.0]["default"]
    assert rows[70.0]["recall"] >= rows[95.0]["recall"]
    assert rows[85.0]["predicted_strangers_per_query"] == pytest.approx(
        1e-5 * (doc["gallery_faces"] - doc["excluded_faces"]), rel=0.2
    )
    for size in ("10000", "100000", "1000000"):
        assert size in rows[85.0]["expected_strangers"]
    # The report notebook's tables read it back.
    from workbench.analysis import reports

    latest = reports.latest_evaluation(home, "search")
    assert latest is not None and latest[1]["created"] == doc["created"]
    table = reports.search_evaluation_table(latest[1])
    assert list(table["similarity %"]) == [70.0, 80.0, 85.0, 90.0, 95.0]
    assert reports.latest_evaluation(home, "lfw") is None
    bad = run_cli(["evaluate", "search"], cli_env(home, models_dir))
    assert bad.returncode == 2 and "--lfw-dir" in bad.stderr and "--labels" in bad.stderr


def test_search_results_export_carries_people_and_copies() -> None:
    from workbench.analysis.search import Match, PersonMatches, QueryFace
    from workbench.widgets.search_results import SampleResult, result_rows, results_csv

    a = Match("/a.jpg", "s", 1, 1, [0, 0, 1, 1], 97.0, 0.7, person_id=5, person="Ann")
    b = Match("/b.jpg", "s", 2, 2, [0, 0, 1, 1], 99.0, 0.8, also_at=("/b copy.jpg",))
    face = QueryFace([0, 0, 1, 1], 0.9, [b, a], people=(PersonMatches(5, "Ann", (1,), 1, 97.0),))
    rows = result_rows([SampleResult("x.jpg", [face], [b"x"])])
    assert [r["face_id"] for r in rows] == [1, 2]  # the named person's first
    table = list(csv.DictReader(io.StringIO(results_csv(rows))))
    assert table[0]["person"] == "Ann" and json.loads(table[1]["also_at"]) == ["/b copy.jpg"]
