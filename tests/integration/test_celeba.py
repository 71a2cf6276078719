"""The CelebA identity protocol on a CelebA-format folder built from the real dev photos.

CelebA itself is not shipped with the test data, so the dev set's identity
photos are copied to ``img_align_celeba/000001.jpg ...`` with an
``identity_CelebA.txt`` beside them, plus one photo without a face under an
identity of its own. The real `local` pack embeds them once for the module;
every evaluation after the first reuses that cache.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DevPhoto, local_pack_settings
from workbench.evaluation.celeba import (
    CELEBA_IDENTITIES,
    CelebaError,
    CelebaReport,
    evaluate_celeba,
    parse_identities,
    select_images,
)
from workbench.evaluation.lfw import EmbeddedImage
from workbench.faces.calibration import load_calibration
from workbench.faces.pack import ModelPack
from workbench.faces.types import DetectedFace
from workbench.settings import DetectionSettings

pytestmark = pytest.mark.integration

NO_FACE_IDENTITY = 9999


@dataclass(frozen=True)
class CelebaFolder:
    root: Path
    images: Path
    identity_file: Path
    identity_of: dict[str, int]
    """Image name → integer identity, as written to the identity file."""
    no_face_name: str


@dataclass
class Embedded:
    cache: dict[Path, EmbeddedImage]
    everything: CelebaReport
    """All images of the folder (``min_per_identity=1``), the no-face photo included."""


@pytest.fixture(scope="module")
def celeba(tmp_path_factory: pytest.TempPathFactory, dev_photos: list[DevPhoto]) -> CelebaFolder:
    root = tmp_path_factory.mktemp("celeba")
    images = root / "img_align_celeba"
    images.mkdir()
    ids: dict[str, int] = {}
    identity_of: dict[str, int] = {}
    k = 0
    for photo in dev_photos:
        if photo.category != "identity":
            continue
        k += 1
        name = f"{k:06d}.jpg"
        shutil.copyfile(photo.path, images / name)
        identity_of[name] = ids.setdefault(photo.identity, len(ids) + 1)
    no_face = next(p for p in dev_photos if p.category == "no_face")
    no_face_name = f"{k + 1:06d}{no_face.path.suffix}"
    shutil.copyfile(no_face.path, images / no_face_name)
    identity_of[no_face_name] = NO_FACE_IDENTITY
    identity_file = root / CELEBA_IDENTITIES
    identity_file.write_text("".join(f"{n} {i}\n" for n, i in identity_of.items()))
    return CelebaFolder(root, images, identity_file, identity_of, no_face_name)


@pytest.fixture(scope="module")
def local_pack(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> ModelPack:
    """One loaded `local` pack for the module (the dev workbench's would cost a full ingest)."""
    from workbench.faces.registry import open_pack

    settings = local_pack_settings(tmp_path_factory.mktemp("celeba-home"), models_dir)
    return open_pack("local", settings).load()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def embedded(local_pack: ModelPack, celeba: CelebaFolder) -> Embedded:
    cache: dict[Path, EmbeddedImage] = {}
    report = evaluate_celeba(
        local_pack, celeba.root, min_per_identity=1, cache=cache, progress=False
    )
    return Embedded(cache, report)


@pytest.fixture(scope="module")
def report(local_pack: ModelPack, celeba: CelebaFolder, embedded: Embedded) -> CelebaReport:
    """The default protocol: identities with at least two images, 3000 pairs asked, seed 0."""
    return evaluate_celeba(local_pack, celeba.root, cache=embedded.cache, progress=False)


def _repeated(identity_of: dict[str, int]) -> dict[int, int]:
    counts = Counter(identity_of.values())
    return {i: c for i, c in counts.items() if c >= 2}


# ---- the real numbers ------------------------------------------------------------
def test_selection_and_counts(report: CelebaReport, celeba: CelebaFolder) -> None:
    repeated = _repeated(celeba.identity_of)
    assert report.images == sum(repeated.values()) == 82
    assert report.identities == len(repeated) == 20
    assert report.images_dir == celeba.images
    assert report.identities_file == celeba.identity_file
    assert set(report.image_names) == {n for n, i in celeba.identity_of.items() if i in repeated}
    # The local pack finds a face in every dev identity photo.
    assert report.no_face_images == ()
    assert report.embedded == report.images
    assert report.queries == report.embedded
    assert report.embedded_now == 0 and report.ms_per_image is None  # all from the cache


def test_retrieval_is_accurate(report: CelebaReport) -> None:
    # Measured with the local pack (det_500m + MobileFaceNet): precision@1 1.000, mAP 1.000.
    assert report.precision_at_1 >= 0.95
    assert 0.9 <= report.mean_average_precision <= 1.0


def test_verification_pairs(report: CelebaReport, celeba: CelebaFolder) -> None:
    possible_same = sum(c * (c - 1) // 2 for c in _repeated(celeba.identity_of).values())
    same = int(report.labels.sum())
    # 1500 same-identity pairs were asked; the dev identities only have 173.
    assert same == possible_same == 173
    assert len(report.labels) - same == 1500
    assert report.labels[:same].all() and not report.labels[same:].any()
    keys = {frozenset(p) for p in report.pair_images}
    assert len(keys) == len(report.pair_images), "a pair was drawn twice"
    assert all(len(k) == 2 for k in keys)
    for (a, b), label in zip(report.pair_images, report.labels, strict=True):
        assert (celeba.identity_of[a] == celeba.identity_of[b]) == label

    assert report.threshold_source == "calibration"
    assert report.threshold == load_calibration(report.pack).threshold
    c = report.at_threshold
    assert c.tp + c.fp + c.tn + c.fn == len(report.labels)
    # Measured: accuracy 0.994, precision 0.945, recall 1.000, F1 0.972, AUC 1.000,
    # best threshold 0.429 (accuracy 1.000), 10-fold accuracy 1.000 ± 0.000.
    assert c.accuracy >= 0.98
    assert c.recall >= 0.97
    assert c.f1 >= 0.94
    assert report.roc.auc >= 0.995
    assert report.threshold < report.best_threshold < 0.8
    assert report.best_accuracy >= 0.99
    assert report.kfold.accuracy["mean"] >= 0.98
    assert len(report.kfold.folds) == 10


def test_to_dict_is_one_json_document(report: CelebaReport) -> None:
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["pack"] == report.pack == "local:det_500m+mobilefacenet"
    assert (d["images"], d["identities"], d["embedded"], d["queries"]) == (82, 20, 82, 82)
    assert d["no_face_policy"] == "excluded"
    assert d["no_face_images"] == {"count": 0, "names": []}
    assert d["precision_at_1"] == report.precision_at_1
    assert d["map"] == report.mean_average_precision
    v = d["verification"]
    assert (v["pairs"], v["same"], v["different"]) == (1673, 173, 1500)
    assert v["threshold_source"] == "calibration"
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "best_threshold"):
        assert 0.0 <= v[key] <= 1.0, key
    assert v["roc_auc"] == report.roc.auc
    assert set(v["kfold_accuracy"]) == {"mean", "std"}
    assert d["seconds"] >= 0


def test_no_face_photo_is_counted_and_excluded(embedded: Embedded, celeba: CelebaFolder) -> None:
    r = embedded.everything
    assert r.images == len(celeba.identity_of) == 89
    assert r.no_face_images == (celeba.no_face_name,)
    assert r.embedded == r.images - 1
    d = r.to_dict()
    assert d["no_face_images"] == {"count": 1, "names": [celeba.no_face_name]}
    assert d["no_face_policy"] == "excluded"
    assert all(celeba.no_face_name not in p for p in r.pair_images)
    # Queries: the 82 images of repeated identities; the six single-image identities
    # are gallery distractors only.
    assert r.queries == 82
    # Measured: precision@1 1.000, mAP 1.000 with the distractors in the gallery.
    assert r.precision_at_1 >= 0.95 and r.mean_average_precision >= 0.9
    assert r.embedded_now == 89 and r.ms_per_image is not None and r.ms_per_image > 0


def test_given_threshold(
    local_pack: ModelPack, celeba: CelebaFolder, embedded: Embedded, report: CelebaReport
) -> None:
    r = evaluate_celeba(
        local_pack, celeba.root, threshold=0.6, cache=embedded.cache, progress=False
    )
    assert r.threshold == 0.6 and r.threshold_source == "given"
    assert r.to_dict()["verification"]["threshold_source"] == "given"
    assert r.at_threshold.tp == int((r.scores[r.labels] > 0.6).sum())
    # A stricter threshold than the calibrated one trades recall for precision.
    assert r.at_threshold.recall < report.at_threshold.recall
    assert r.at_threshold.precision >= report.at_threshold.precision
    with pytest.raises(CelebaError, match="finite"):
        evaluate_celeba(
            local_pack, celeba.root, threshold=float("nan"), cache=embedded.cache, progress=False
        )


# ---- determinism -------------------------------------------------------------------
def _comparable(r: CelebaReport) -> dict:
    d = r.to_dict()
    del d["seconds"], d["ms_per_image"]
    return d


def test_same_seed_same_report(
    local_pack: ModelPack, celeba: CelebaFolder, embedded: Embedded
) -> None:
    runs = [
        evaluate_celeba(
            local_pack, celeba.root, max_images=40, seed=1, cache=embedded.cache, progress=False
        )
        for _ in range(2)
    ]
    a, b = runs
    assert a.image_names == b.image_names
    assert a.pair_images == b.pair_images
    np.testing.assert_array_equal(a.scores, b.scores)
    assert _comparable(a) == _comparable(b)
    assert 2 * a.identities <= a.images <= 40


def test_other_seed_other_subset(
    local_pack: ModelPack, celeba: CelebaFolder, embedded: Embedded
) -> None:
    a, b = (
        evaluate_celeba(
            local_pack, celeba.root, max_images=40, seed=s, cache=embedded.cache, progress=False
        )
        for s in (1, 2)
    )
    assert set(a.image_names) != set(b.image_names)
    per_identity = Counter(celeba.identity_of.values())
    for r in (a, b):
        assert r.images <= 40
        taken = Counter(celeba.identity_of[n] for n in r.image_names)
        # Whole identities, but for the last one, cut to the room left.
        cut = [i for i, c in taken.items() if c < per_identity[i]]
        assert len(cut) <= 1 and all(taken[i] >= 2 for i in taken)


def test_seed_draws_other_pairs_of_the_same_images(
    local_pack: ModelPack, celeba: CelebaFolder, embedded: Embedded, report: CelebaReport
) -> None:
    other = evaluate_celeba(
        local_pack, celeba.root, seed=7, pairs=200, cache=embedded.cache, progress=False
    )
    assert other.image_names == report.image_names
    assert other.precision_at_1 == report.precision_at_1
    assert (int(other.labels.sum()), int((~other.labels).sum())) == (100, 100)
    assert set(other.pair_images) != set(report.pair_images[:100])


# ---- the arithmetic, checked by brute force on a pack with known vectors -----------
class VectorPack(ModelPack):
    """Each image's embedding is a row of ``vectors``, picked by the image's red/green pixel."""

    name = "vectors"
    embedding_dim = 8

    def __init__(self, vectors: np.ndarray) -> None:
        super().__init__(DetectionSettings())
        self.vectors = vectors

    def _load(self) -> None:
        pass

    def _detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        if rgb[0, 0, 2] == 0:  # blue 0: a photo without a face
            return []
        h, w = rgb.shape[:2]
        return [DetectedFace((0.0, 0.0, float(w), float(h)), np.zeros((5, 2), np.float32), 0.9)]

    def _embed(self, rgb: np.ndarray, faces: object) -> np.ndarray:
        k = int(rgb[0, 0, 0]) + 256 * int(rgb[0, 0, 1])
        return self.vectors[k][None, :]


def _brute_force(vectors: np.ndarray, ids: list[int]) -> tuple[int, float, float]:
    n, hits, aps = len(ids), 0, []
    for q in range(n):
        relevant = [j for j in range(n) if j != q and ids[j] == ids[q]]
        if not relevant:
            continue
        sims = vectors @ vectors[q]
        ranked = sorted((j for j in range(n) if j != q), key=lambda j: (-sims[j], j))
        hits += ids[ranked[0]] == ids[q]
        found, ap = 0, 0.0
        for rank, j in enumerate(ranked, 1):
            if ids[j] == ids[q]:
                found += 1
                ap += found / rank
        aps.append(ap / len(relevant))
    return len(aps), hits / len(aps), float(np.mean(aps))


def test_metrics_match_brute_force(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(5)
    ids = [int(i) for i in rng.integers(1, 9, size=60)]
    no_face = {3, 17}
    centres = rng.normal(size=(10, 8))
    vectors = centres[ids] + 1.2 * rng.normal(size=(60, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    images = tmp_path / "img_celeba"
    images.mkdir()
    lines = []
    for k, identity in enumerate(ids):
        colour = (k % 256, k // 256, 0 if k in no_face else 255)
        Image.new("RGB", (32, 32), colour).save(images / f"{k + 1:06d}.png")
        lines.append(f"{k + 1:06d}.png {identity}")
    (tmp_path / CELEBA_IDENTITIES).write_text("\n".join(lines) + "\n")

    r = evaluate_celeba(VectorPack(vectors), tmp_path, min_per_identity=1, progress=False)
    kept = [k for k in range(60) if k not in no_face]
    queries, p_at_1, mean_ap = _brute_force(vectors[kept], [ids[k] for k in kept])
    assert r.images_dir == images
    assert r.no_face_images == ("000004.png", "000018.png")
    assert r.queries == queries
    assert r.precision_at_1 == pytest.approx(p_at_1)
    assert r.mean_average_precision == pytest.approx(mean_ap)
    assert 0.2 < mean_ap < 0.9, "the vectors should make a ranking with mistakes in it"
    assert r.threshold_source == "calibration" and not r.calibrated  # an uncalibrated pack

    index = {f"{k + 1:06d}.png": k for k in range(60)}
    kept_ids = Counter(ids[k] for k in kept)
    possible_same = sum(c * (c - 1) // 2 for c in kept_ids.values())
    possible = len(kept) * (len(kept) - 1) // 2
    assert int(r.labels.sum()) == min(1500, possible_same)
    assert len(r.labels) - int(r.labels.sum()) == min(1500, possible - possible_same)
    for (a, b), score, label in zip(r.pair_images, r.scores, r.labels, strict=True):
        # The pack's embeddings are float32.
        assert score == pytest.approx(float(vectors[index[a]] @ vectors[index[b]]), abs=1e-6)
        assert label == (ids[index[a]] == ids[index[b]])

    # Every same-identity pair there is, each once.
    everything = {
        frozenset(p)
        for i in kept_ids
        for p in combinations([f"{k + 1:06d}.png" for k in kept if ids[k] == i], 2)
    }
    same = {frozenset(p) for p, y in zip(r.pair_images, r.labels, strict=True) if y}
    assert same == everything


# ---- errors ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line3", "says"),
    [
        ("000003.jpg", "is not '<image file name> <identity id>'"),
        ("000003.jpg 1 2", "is not '<image file name> <identity id>'"),
        ("000003.jpg one", "is not a whole number"),
        ("000003.jpg -4", "is negative"),
        ("../000003.jpg 1", "not a file name inside the image folder"),
        ("000001.jpg 1", "listed again (first on line 1)"),
    ],
)
def test_malformed_identity_file_names_the_line(
    local_pack: ModelPack, celeba: CelebaFolder, tmp_path: Path, line3: str, says: str
) -> None:
    bad = tmp_path / "identity_bad.txt"
    bad.write_text(f"000001.jpg 1\n000002.jpg 1\n{line3}\n000004.jpg 2\n")
    with pytest.raises(CelebaError) as e:
        evaluate_celeba(local_pack, celeba.root, bad, progress=False)
    assert f"{bad}, line 3:" in str(e.value)
    assert says in str(e.value)


def test_empty_identity_file(tmp_path: Path) -> None:
    empty = tmp_path / CELEBA_IDENTITIES
    empty.write_text("\n  \n")
    with pytest.raises(CelebaError, match=f"{empty} is empty"):
        parse_identities(empty)


def test_parse_identities_keeps_file_order(celeba: CelebaFolder) -> None:
    table = parse_identities(celeba.identity_file)
    assert table == celeba.identity_of
    assert list(table) == list(celeba.identity_of)


def test_missing_images_are_named_before_any_embedding(
    local_pack: ModelPack, celeba: CelebaFolder, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("000001.jpg 1\n000002.jpg 1\n999998.jpg 2\n999999.jpg 2\n")
    cache: dict[Path, EmbeddedImage] = {}
    with pytest.raises(CelebaError) as e:
        evaluate_celeba(local_pack, celeba.root, ids, cache=cache, progress=False)
    message = str(e.value)
    assert str(celeba.images / "999998.jpg") in message
    assert "1 more images are missing" in message
    assert str(ids) in message
    assert cache == {}


def test_missing_directory_and_identity_file(local_pack: ModelPack, tmp_path: Path) -> None:
    with pytest.raises(CelebaError, match="identity file not found"):
        evaluate_celeba(local_pack, tmp_path, progress=False)
    (tmp_path / CELEBA_IDENTITIES).write_text("000001.jpg 1\n000002.jpg 1\n")
    with pytest.raises(CelebaError, match="does not exist"):
        evaluate_celeba(local_pack, tmp_path / "nowhere", tmp_path / CELEBA_IDENTITIES)


def test_bad_arguments(local_pack: ModelPack, celeba: CelebaFolder) -> None:
    table = {"a.jpg": 1, "b.jpg": 1, "c.jpg": 2}
    with pytest.raises(CelebaError, match="max_images is 0"):
        select_images(table, max_images=0)
    with pytest.raises(CelebaError, match="min_per_identity is 0"):
        select_images(table, min_per_identity=0)
    with pytest.raises(CelebaError, match="no identity has 3 or more images"):
        select_images(table, min_per_identity=3)
    assert select_images(table) == ["a.jpg", "b.jpg"]
    with pytest.raises(CelebaError, match="pairs is 1"):
        evaluate_celeba(local_pack, celeba.root, pairs=1, progress=False)
