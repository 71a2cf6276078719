"""LFW View 2 (`workbench.evaluation.lfw_view2`) on a tiny fake LFW with a stand-in pack.

The fake LFW has seven people, sixteen small JPEGs and a three-fold
``pairs.txt``. `TablePack` knows every image by the hash of its decoded pixels
and answers from a table written with the images: one detected face (or two,
or one below the normal score, or none) and an embedding that is the person's
axis plus a little noise. So every number the evaluation reports can be
worked out here by hand.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from workbench.evaluation.lfw import (
    RETRY_MIN_FACE_SIZE,
    RETRY_MIN_SCORE,
    EmbeddedImage,
    LfwError,
    LfwPair,
    image_path,
    parse_pairs,
)
from workbench.evaluation.lfw_view2 import LfwReport, evaluate_lfw, slice_pairs
from workbench.evaluation.metrics import Roc, best_threshold, confusion, roc
from workbench.faces.pack import ModelPack
from workbench.faces.types import DetectedFace
from workbench.imaging.decode import decode_image
from workbench.settings import DetectionSettings

pytestmark = pytest.mark.unit

DIM = 16
SIZE = (250, 250)
PEOPLE = {  # name → (index, images)
    "Alice_Able": (0, 4),
    "Bob_Brown": (1, 3),
    "Carol_Cruz": (2, 3),
    "Dan_Dunn": (3, 2),
    "Eve_Evans": (4, 2),
    "Frank_Fox": (5, 1),
    "Grace_Gray": (6, 1),
}
LOW = ("Bob_Brown", 2)
"""Its face scores 0.2: below the default min_score, found by the lenient retry."""
NONE = ("Carol_Cruz", 3)
"""No face at any setting: the centre fallback embeds it."""
TWO = ("Alice_Able", 4)
"""Two faces: a confident one in the corner and the (chosen) centred one."""
OTHER_SIZE = ("Grace_Gray", 1)
"""200 × 200, with its face far off: the centre fallback must not learn from it."""
DECOY_BOX = (2.0, 2.0, 42.0, 42.0)

# Three folds of 2 matched + 2 mismatched pairs. The no-face images touch two
# matched pairs (Bob 1-2 in fold 1, Carol 2-3 in fold 2) and one mismatched
# pair (Carol 3 / Frank 1 in fold 3).
PAIRS_TXT = """3\t2
Alice_Able\t1\t2
Bob_Brown\t1\t2
Alice_Able\t3\tBob_Brown\t3
Carol_Cruz\t1\tDan_Dunn\t1
Carol_Cruz\t2\t3
Dan_Dunn\t1\t2
Alice_Able\t4\tEve_Evans\t1
Bob_Brown\t1\tFrank_Fox\t1
Eve_Evans\t1\t2
Alice_Able\t1\t3
Carol_Cruz\t3\tFrank_Fox\t1
Dan_Dunn\t2\tGrace_Gray\t1
"""
TOUCHING_NO_FACE = (2, 5, 11)
"""1-based pair indices (file order) of the pairs with a no-face image."""


@dataclass(frozen=True)
class Spec:
    """What `TablePack` reports for one image."""

    person: int
    faces: tuple[DetectedFace, ...]
    embedding: NDArray[np.float32]


@dataclass(frozen=True)
class FakeLfw:
    root: Path
    images: Path
    specs: dict[str, Spec]
    """Keyed by `fingerprint` of the decoded image."""
    paths: dict[tuple[str, int], Path]


def fingerprint(rgb: NDArray[np.uint8]) -> str:
    return hashlib.sha1(rgb.tobytes() + repr(rgb.shape).encode()).hexdigest()


def _unit(v: NDArray[np.float64]) -> NDArray[np.float32]:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _face(rng: np.random.Generator, size: tuple[int, int], score: float) -> DetectedFace:
    w, h = size
    if (w, h) != SIZE:  # the other-size image: a face in the corner
        cx, cy, side = 40.0, 40.0, 50.0
    else:
        cx, cy = w / 2 + rng.uniform(-20, 20), h / 2 + rng.uniform(-20, 20)
        side = rng.uniform(90, 120)
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    unit = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
    marks = np.array(box[:2]) + side * unit + rng.normal(0, 2, size=(5, 2))
    return DetectedFace(tuple(float(v) for v in box), marks.astype(np.float32), score)  # type: ignore[arg-type]


@pytest.fixture
def fake_lfw(tmp_path: Path) -> FakeLfw:
    from PIL import Image

    images = tmp_path / "lfw" / "images"
    specs: dict[str, Spec] = {}
    paths: dict[tuple[str, int], Path] = {}
    for name, (person, count) in PEOPLE.items():
        (images / name).mkdir(parents=True)
        colour = np.array([40 + 30 * person, 200 - 25 * person, 90 + 20 * (person % 3)])
        for n in range(1, count + 1):
            rng = np.random.default_rng(100 * person + n)
            size = (200, 200) if (name, n) == OTHER_SIZE else SIZE
            noise = rng.integers(-12, 13, size=(size[1], size[0], 3))
            pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
            path = image_path(images, name, n)
            Image.fromarray(pixels).save(path, quality=90)
            rgb = decode_image(path.read_bytes()).rgb
            face = _face(rng, size, 0.2 if (name, n) == LOW else 0.9)
            faces: tuple[DetectedFace, ...] = (face,)
            if (name, n) == NONE:
                faces = ()
            elif (name, n) == TWO:
                faces = (DetectedFace(DECOY_BOX, face.landmarks, 0.99), face)
            vec = _unit(np.eye(DIM)[person] + 0.08 * rng.normal(size=DIM))
            specs[fingerprint(rgb)] = Spec(person, faces, vec)
            paths[(name, n)] = path
    (tmp_path / "lfw" / "pairs.txt").write_text(PAIRS_TXT)
    return FakeLfw(tmp_path / "lfw", images, specs, paths)


class TablePack(ModelPack):
    """Detections and embeddings looked up by the image's pixels (see `FakeLfw.specs`)."""

    name = "table"
    embedding_dim = DIM

    def __init__(self, specs: dict[str, Spec]) -> None:
        super().__init__(DetectionSettings())
        self.specs = specs
        self.detect_calls = 0
        self.placed: list[tuple[tuple[int, ...], DetectedFace]] = []
        """(image shape, face) of every `embed_at` call."""

    def _load(self) -> None:
        pass

    def _spec(self, rgb: NDArray[np.uint8]) -> Spec:
        return self.specs[fingerprint(rgb)]  # an unknown image is a broken test: KeyError

    def _detect(self, rgb: NDArray[np.uint8]) -> list[DetectedFace]:
        self.detect_calls += 1
        return list(self._spec(rgb).faces)

    def _embed(self, rgb: NDArray[np.uint8], faces: Sequence[DetectedFace]) -> NDArray[np.float32]:
        spec = self._spec(rgb)
        decoy = _unit(np.eye(DIM)[DIM - 1] + 0.5 * np.eye(DIM)[spec.person])
        return np.stack([decoy if f.box == DECOY_BOX else spec.embedding for f in faces])

    def embed_at(self, rgb: NDArray[np.uint8], face: DetectedFace) -> NDArray[np.float32]:
        self.placed.append((rgb.shape, face))
        return super().embed_at(rgb, face)


def _run(
    fake: FakeLfw, policy: str, **kw: object
) -> tuple[LfwReport, TablePack, dict[Path, EmbeddedImage]]:
    pack = TablePack(fake.specs)
    cache: dict[Path, EmbeddedImage] = {}
    report = evaluate_lfw(pack, fake.root, no_face=policy, cache=cache, progress=False, **kw)  # type: ignore[arg-type]
    return report, pack, cache


# ---- slicing -----------------------------------------------------------------------
def test_slice_pairs_keeps_the_first_of_each_kind_per_fold(tmp_path: Path) -> None:
    lines = ["3\t3"]
    for f in range(3):
        lines += [f"P{f}\t{k}\t{k + 1}" for k in range(1, 4)]
        lines += [f"P{f}\t{k}\tQ{f}\t{k}" for k in range(1, 4)]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    pairs = parse_pairs(tmp_path / "pairs.txt")

    sliced = slice_pairs(pairs, 2)
    expected = [p for p in pairs if (p.line - 2) % 6 in (0, 1, 3, 4)]
    assert sliced == expected
    assert [(p.fold, p.same) for p in sliced] == [
        (f, same) for f in range(3) for same in (True, True, False, False)
    ]
    assert [p.line for p in sliced] == sorted(p.line for p in sliced)
    assert slice_pairs(pairs, 3) == pairs
    assert slice_pairs(pairs, 10) == pairs


def test_slice_pairs_ignores_the_order_of_kinds_within_a_fold() -> None:
    pairs = [
        LfwPair("A", 1, "B", 1, False, 0, 1),
        LfwPair("A", 1, "A", 2, True, 0, 2),
        LfwPair("C", 1, "D", 1, False, 0, 3),
        LfwPair("C", 1, "C", 2, True, 0, 4),
        LfwPair("E", 1, "E", 2, True, 1, 5),
        LfwPair("E", 1, "F", 1, False, 1, 6),
    ]
    assert [p.line for p in slice_pairs(pairs, 1)] == [2, 1, 5, 6]


def test_per_fold_slice_in_evaluate_lfw(fake_lfw: FakeLfw) -> None:
    report, _, _ = _run(fake_lfw, "fallback", per_fold=1)
    d = report.to_dict()
    assert d["pairs"] == d["pairs_used"] == 6
    assert d["protocol"] == "LFW View 2 pairs.txt (first 1 + 1 per fold)"
    assert [p.line for p in report.scores.pairs] == [2, 4, 6, 8, 10, 12]


# ---- the fallback policy (the default) -------------------------------------------
def test_fallback_scores_every_pair_and_counts_what_it_did(fake_lfw: FakeLfw) -> None:
    report, pack, cache = _run(fake_lfw, "fallback")
    d = report.to_dict()
    low, none = fake_lfw.paths[LOW], fake_lfw.paths[NONE]
    assert d["no_face"] == {
        "policy": "fallback",
        "images": 2,
        "retried": 1,
        "centre": 1,
        "excluded_pairs": 0,
        "forced_wrong_pairs": 0,
        "files": [str(low), str(none)],  # first-use order
    }
    assert d["pairs"] == d["pairs_used"] == 12
    assert np.isfinite(report.scores.scores).all()
    assert d["images"] == report.images == 16
    assert d["detection_rate"] == pytest.approx(1 - 2 / 16) == report.detection_rate
    # 13 images with one face, the two-face image, none for the two no-face images.
    assert d["faces_detected"] == 15
    assert d["multi_face_images"] == 1 and d["off_first_choice"] == 1
    assert cache[low].how == "retry" and cache[none].how == "centre"
    assert cache[fake_lfw.paths[TWO]].chosen == 1  # the centred face, not the corner one
    assert {e.how for p, e in cache.items() if p not in (low, none)} == {"detected"}
    # The retry's lenient settings were undone.
    assert pack.detection == DetectionSettings()
    assert RETRY_MIN_SCORE < 0.2 < pack.detection.min_score

    # Every face is its person's: matched pairs read high, mismatched low, all right.
    s, y = report.scores.scores, report.scores.labels
    assert (s[y] > 0.8).all() and (s[~y] < 0.5).all()
    assert d["accuracy"] == {"mean": 1.0, "std": 0.0}
    assert report.accuracy == 1.0
    assert d["roc_auc"] == pytest.approx(1.0)


def test_centre_fallback_embeds_at_the_median_face_of_that_size(fake_lfw: FakeLfw) -> None:
    _, pack, cache = _run(fake_lfw, "fallback")
    none = fake_lfw.paths[NONE]
    learnt = [
        e.face
        for p, e in cache.items()
        if p != none and p != fake_lfw.paths[OTHER_SIZE] and e.face is not None
    ]
    assert len(learnt) == 14  # the retried face counts; the 200 × 200 one does not
    box = np.median([f.box for f in learnt], axis=0)
    marks = np.median([f.landmarks for f in learnt], axis=0)
    everything = np.median([e.face.box for p, e in cache.items() if p != none], axis=0)
    assert not np.allclose(box, everything), "the other-size face should move the median"

    assert len(pack.placed) == 1
    shape, face = pack.placed[0]
    assert shape == (SIZE[1], SIZE[0], 3)
    np.testing.assert_allclose(face.box, box, rtol=0, atol=1e-9)
    np.testing.assert_allclose(face.landmarks, marks, rtol=0, atol=1e-4)
    assert face.score == 0.0
    assert cache[none].face == face and cache[none].faces == 0
    assert cache[none].size == SIZE


def test_fold_thresholds_come_from_the_other_folds(fake_lfw: FakeLfw) -> None:
    report, _, _ = _run(fake_lfw, "fallback")
    d = report.to_dict()
    s, y = report.scores.scores, report.scores.labels
    folds = np.array([p.fold for p in report.scores.pairs])
    assert folds.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert d["folds"] == 3 and len(d["per_fold"]) == 3
    thresholds = []
    for k, row in enumerate(d["per_fold"]):
        thr, _ = best_threshold(s[folds != k], y[folds != k])
        c = confusion(s[folds == k], y[folds == k], thr)
        assert row["fold"] == k + 1
        assert row["threshold"] == thr
        assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (c.tp, c.fp, c.tn, c.fn)
        assert row["accuracy"] == c.accuracy
        thresholds.append(thr)
    # Not one threshold fitted on all the pairs and copied into each fold.
    assert any(thr != best_threshold(s, y)[0] for thr in thresholds)
    assert set(d["accuracy"]) == {"mean", "std"}
    assert d["threshold"]["mean"] == pytest.approx(np.mean(thresholds))
    assert d["threshold"]["std"] == pytest.approx(np.std(thresholds))
    for key in ("precision", "recall", "f1"):
        assert set(d[key]) == {"mean", "std"}
    assert d["tar_at_far"] == {"far": 1e-3, "tar": pytest.approx(1.0)}


def test_roc_in_to_dict_spans_the_square(fake_lfw: FakeLfw) -> None:
    report, _, _ = _run(fake_lfw, "fallback")
    r = report.to_dict()["roc"]
    assert set(r) == {"fpr", "tpr"}
    assert len(r["fpr"]) == len(r["tpr"]) >= 2
    assert (r["fpr"][0], r["tpr"][0]) == (0.0, 0.0)
    assert (r["fpr"][-1], r["tpr"][-1]) == (1.0, 1.0)
    assert np.all(np.diff(r["fpr"]) >= 0) and np.all(np.diff(r["tpr"]) >= 0)
    exact = roc(report.scores.scores, report.scores.labels)
    assert r["fpr"] == pytest.approx(exact.fpr.tolist(), abs=1e-6)
    assert r["tpr"] == pytest.approx(exact.tpr.tolist(), abs=1e-6)


def test_summary_states_the_policy_and_counts(fake_lfw: FakeLfw) -> None:
    report, _, _ = _run(fake_lfw, "fallback")
    text = report.summary()
    assert text.startswith("table on LFW View 2 pairs.txt: accuracy 100.00%")
    assert "(3 folds, 12 pairs)" in text
    assert "no face in 2 of 16 images, policy fallback (retried 1, centre 1" in text


# ---- the other policies ------------------------------------------------------------
def test_exclude_leaves_out_the_pairs_touching_a_no_face_image(fake_lfw: FakeLfw) -> None:
    report, pack, cache = _run(fake_lfw, "exclude")
    d = report.to_dict()
    assert d["pairs"] == 12
    assert d["pairs_used"] == 12 - len(TOUCHING_NO_FACE)
    assert d["no_face"]["excluded_pairs"] == d["pairs"] - d["pairs_used"] == 3
    assert {k: d["no_face"][k] for k in ("images", "retried", "centre", "forced_wrong_pairs")} == {
        "images": 2,
        "retried": 0,
        "centre": 0,
        "forced_wrong_pairs": 0,
    }
    assert d["no_face"]["policy"] == "exclude"
    missing = np.flatnonzero(np.isnan(report.scores.scores)) + 1
    assert tuple(missing.tolist()) == TOUCHING_NO_FACE
    judged = sum(r["tp"] + r["fp"] + r["tn"] + r["fn"] for r in d["per_fold"])
    assert judged == d["pairs_used"]
    assert d["accuracy"] == {"mean": 1.0, "std": 0.0}
    # No retry and no placed face without the fallback.
    assert pack.placed == []
    assert cache[fake_lfw.paths[LOW]].how == cache[fake_lfw.paths[NONE]].how == "none"
    assert d["detection_rate"] == pytest.approx(1 - 2 / 16)


def test_wrong_counts_those_pairs_as_errors(fake_lfw: FakeLfw) -> None:
    fallback, _, _ = _run(fake_lfw, "fallback")
    report, pack, _ = _run(fake_lfw, "wrong")
    d = report.to_dict()
    assert d["no_face"]["forced_wrong_pairs"] == report.forced_wrong_pairs == 3
    assert d["no_face"]["excluded_pairs"] == 0
    assert d["no_face"]["retried"] == d["no_face"]["centre"] == 0
    assert d["pairs"] == d["pairs_used"] == 12
    assert pack.placed == []
    # Two matched pairs become false rejections, one mismatched a false accept.
    rows = d["per_fold"]
    assert [(r["fn"], r["fp"]) for r in rows] == [(1, 0), (1, 0), (0, 1)]
    assert sum(r["tp"] + r["fp"] + r["tn"] + r["fn"] for r in rows) == 12
    assert d["accuracy"]["mean"] == pytest.approx(np.mean([3 / 4, 3 / 4, 3 / 4]))
    assert d["accuracy"]["mean"] < fallback.accuracy == 1.0
    assert d["roc_auc"] < 1.0


# ---- errors ------------------------------------------------------------------------
def test_unknown_policy(fake_lfw: FakeLfw) -> None:
    pack = TablePack(fake_lfw.specs)
    with pytest.raises(LfwError, match="no-face policy 'skip' is not one of fallback, exclude"):
        evaluate_lfw(pack, fake_lfw.root, no_face="skip", progress=False)  # type: ignore[arg-type]
    assert pack.detect_calls == 0


def test_one_fold_is_not_a_kfold_protocol(fake_lfw: FakeLfw) -> None:
    one = fake_lfw.root / "one_fold.txt"
    one.write_text("\n".join(PAIRS_TXT.splitlines()[:5]).replace("3\t2", "1\t2", 1) + "\n")
    assert {p.fold for p in parse_pairs(one)} == {0}
    with pytest.raises(LfwError, match="needs at least two folds") as e:
        evaluate_lfw(TablePack(fake_lfw.specs), fake_lfw.root, one.name, progress=False)
    assert str(one) in str(e.value)


def test_a_missing_image_is_named_before_anything_is_embedded(fake_lfw: FakeLfw) -> None:
    fake_lfw.paths[("Dan_Dunn", 2)].unlink()
    pack = TablePack(fake_lfw.specs)
    with pytest.raises(LfwError) as e:
        evaluate_lfw(pack, fake_lfw.root, progress=False)
    message = str(e.value)
    assert str(fake_lfw.images / "Dan_Dunn" / "Dan_Dunn_0002.jpg") in message
    assert "does not exist" in message
    assert "pairs.txt, line 7" in message  # the first pair that uses it
    assert pack.detect_calls == 0


def test_a_missing_lfw_dir(tmp_path: Path) -> None:
    with pytest.raises(LfwError, match="LFW directory .*nowhere does not exist"):
        evaluate_lfw(TablePack({}), tmp_path / "nowhere", progress=False)


def test_fallback_after_a_cache_warmed_without_it(fake_lfw: FakeLfw) -> None:
    cache: dict[Path, EmbeddedImage] = {}
    pack = TablePack(fake_lfw.specs)
    evaluate_lfw(pack, fake_lfw.root, no_face="exclude", cache=cache, progress=False)
    report = evaluate_lfw(pack, fake_lfw.root, no_face="fallback", cache=cache, progress=False)
    assert report.forced_wrong_pairs == 0
    assert report.to_dict()["no_face"]["centre"] == 1


# ---- ROC thinning ------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_roc() -> Roc:
    rng = np.random.default_rng(11)
    y = rng.random(10_000) < 0.5
    s = rng.normal(size=10_000) + 1.2 * y
    curve = roc(s, y)
    assert len(curve.fpr) > 9_000
    return curve


def test_thinned_roc_keeps_the_shape(big_roc: Roc) -> None:
    t = big_roc.thinned(max_points=50)
    fpr, tpr = np.array(t["fpr"]), np.array(t["tpr"])
    assert 2 <= len(fpr) == len(tpr) <= 50
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert fpr[0] == 0.0
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    # The log-spaced FAR axis keeps the low-FAR end: several points below 1 %.
    assert (fpr[(fpr > 0)] < 0.01).sum() >= 5
    # The JSON values are rounded to 6 decimals: read each FAR up to that rounding.
    for f in (1e-4, 1e-3, 3e-3, 1e-2, 0.1, 0.5):
        thinned = tpr[fpr <= f].max()
        assert thinned <= big_roc.tar_at_far(f + 1e-6) + 1e-6
    # Every kept point after the first is the best TAR at its own FAR.
    for f, t_kept in zip(fpr[1:], tpr[1:], strict=True):
        assert t_kept == pytest.approx(big_roc.tar_at_far(f + 1e-6), abs=1e-6)
    lower = [tpr[fpr <= f].max() < big_roc.tar_at_far(f) - 1e-3 for f in (0.05, 0.3, 0.6)]
    assert all(lower), "between kept points the thinned curve reads lower than the exact one"


def test_short_roc_is_not_thinned() -> None:
    small = roc([0.9, 0.8, 0.4, 0.3], [True, False, True, False])
    assert small.thinned(max_points=50) == {
        "fpr": [0.0, 0.0, 0.5, 0.5, 1.0],
        "tpr": [0.0, 0.5, 0.5, 1.0, 1.0],
    }


def test_thinned_roc_starts_at_the_origin(big_roc: Roc) -> None:
    t = big_roc.thinned(max_points=50)
    assert (t["fpr"][0], t["tpr"][0]) == (0.0, 0.0)
    assert len(t["fpr"]) <= 50


# ---- detection settings ------------------------------------------------------------
def test_detection_settings_are_restored_after_the_block() -> None:
    pack = TablePack({})
    before = pack.detection
    with pack.detection_settings(min_score=RETRY_MIN_SCORE, min_face_size=RETRY_MIN_FACE_SIZE):
        assert pack.detection.min_score == RETRY_MIN_SCORE
        assert pack.detection.min_face_size == RETRY_MIN_FACE_SIZE
        assert pack.detection.input_size == before.input_size
    assert pack.detection is before


def test_detection_settings_are_restored_on_an_exception() -> None:
    pack = TablePack({})
    before = pack.detection

    class Boom(Exception):
        pass

    with pytest.raises(Boom), pack.detection_settings(min_score=0.01):
        assert pack.detection.min_score == 0.01
        raise Boom
    assert pack.detection is before
    assert pack.detection.min_score == 0.5


def test_lenient_settings_let_the_low_face_through(fake_lfw: FakeLfw) -> None:
    pack = TablePack(fake_lfw.specs)
    rgb = decode_image(fake_lfw.paths[LOW].read_bytes()).rgb
    assert pack.detect(rgb) == []
    with pack.detection_settings(min_score=RETRY_MIN_SCORE):
        assert len(pack.detect(rgb)) == 1
    assert pack.detect(rgb) == []
