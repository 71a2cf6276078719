"""Calibration maths, files and LFW pairs parsing, without models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.evaluation.calibrate import (
    fit_calibration,
    fit_fmr_curve,
    fit_impostors,
    histogram_edges,
    platt_slope,
    save_calibration,
)
from workbench.evaluation.lfw import (
    LfwError,
    choose_face,
    image_path,
    images_root,
    pairs_path,
    parse_pairs,
    resolve_images,
)
from workbench.faces.calibration import (
    CALIBRATION_FILE,
    UNCALIBRATED_CURVE,
    UNCALIBRATED_THRESHOLD,
    Calibration,
    load_calibration,
    package_calibration_path,
)
from workbench.faces.false_match import (
    FmrCurve,
    decades_of_percent,
    fmr_of_percent,
    log10_normal_tail,
    normal_tail_point,
    percent_of_decades,
)
from workbench.faces.types import AnalyzedFace, DetectedFace

pytestmark = pytest.mark.unit


# ---- maths ------------------------------------------------------------------------
def test_platt_slope_recovers_logistic() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.2, 0.9, 20000)
    a, b = 14.0, -14.0 * 0.4
    y = rng.random(len(x)) < 1 / (1 + np.exp(-(a * x + b)))
    assert platt_slope(x, y) == pytest.approx(a, rel=0.1)


def test_fit_calibration_on_synthetic_scores() -> None:
    rng = np.random.default_rng(2)
    pos = rng.normal(0.6, 0.1, 500)
    neg = rng.normal(0.1, 0.1, 500)
    scores = np.concatenate([pos, neg])
    same = np.concatenate([np.ones(500, bool), np.zeros(500, bool)])
    cal = fit_calibration("synthetic", scores, same)
    assert cal.calibrated and cal.pairs == 1000
    assert 0.3 < cal.threshold < 0.4  # equal spreads: the cut is near the midpoint 0.35
    assert cal.accuracy is not None and cal.accuracy > 0.95
    assert cal.slope > 10


CURVE = FmrCurve.normal(0.0, 0.1, "synthetic strangers ~ N(0, 0.1)")


def test_the_scale_is_ten_times_fewer_strangers_every_5_points() -> None:
    for pct, fmr in ((70, 1e-2), (75, 1e-3), (80, 1e-4), (85, 1e-5), (90, 1e-6), (95, 1e-7)):
        assert fmr_of_percent(pct) == pytest.approx(fmr, rel=1e-9)
        assert float(percent_of_decades(-math.log10(fmr))) == pytest.approx(pct)
    # Below 70 % it runs linearly to 0 % at FMR 1; above 95 % two decades halve the rest.
    assert float(percent_of_decades(0.0)) == 0.0 and float(percent_of_decades(1.0)) == 35.0
    assert float(percent_of_decades(9.0)) == pytest.approx(97.5)
    assert float(percent_of_decades(11.0)) == pytest.approx(98.75)
    grid = np.linspace(0, 40, 4001)
    p = percent_of_decades(grid)
    assert np.all(np.diff(p) > 0) and p[-1] < 100.0
    for pct in (0.0, 12.0, 70.0, 84.0, 95.0, 99.0, 99.99):
        assert float(percent_of_decades(decades_of_percent(pct))) == pytest.approx(pct, abs=1e-9)


def test_normal_tail_is_accurate_far_out() -> None:
    assert 10 ** log10_normal_tail(0.0) == pytest.approx(0.5)
    assert 10 ** log10_normal_tail(4.264890794) == pytest.approx(1e-5, rel=1e-6)
    assert log10_normal_tail(40.0) < -300  # past where erfc underflows
    for v in (-0.3, -5.0, -7.0, -12.0):
        assert log10_normal_tail(normal_tail_point(v)) == pytest.approx(v, abs=1e-8)


def test_percent_reads_the_false_match_rate() -> None:
    cal = Calibration("p", threshold=0.31, slope=17.0, false_match=CURVE)
    at = {pct: 0.1 * normal_tail_point(math.log10(fmr_of_percent(pct))) for pct in (70, 85, 95)}
    for pct, cos in at.items():
        assert cal.percent(cos) == pytest.approx(pct, abs=1e-6)
        assert cal.false_match_rate(cos) == pytest.approx(fmr_of_percent(pct), rel=1e-6)
    arr = cal.percent(np.array([-0.5, 0.31, 1.0]))
    assert isinstance(arr, np.ndarray) and arr.shape == (3,)
    assert np.all(np.diff(arr) > 0) and np.all((arr >= 0) & (arr < 100))
    # Strangers expected in a gallery: the rate times the faces searched.
    assert cal.expected_strangers(85.0, 100_000) == pytest.approx(1.0)
    assert cal.expected_strangers(90.0, 1_000_000) == pytest.approx(1.0)


@pytest.mark.parametrize("pct", [1.0, 50.0, 70.0, 85.0, 95.0, 99.9])
def test_cosine_at_inverts_percent(pct: float) -> None:
    cal = Calibration("p", threshold=0.27, slope=23.5, false_match=CURVE)
    assert cal.percent(cal.cosine_at(pct)) == pytest.approx(pct, abs=1e-6)


def test_cosine_at_clamps_extremes() -> None:
    cal = Calibration("p", threshold=0.3, slope=10.0, false_match=CURVE)
    assert math.isfinite(cal.cosine_at(0.0)) and math.isfinite(cal.cosine_at(100.0))
    assert cal.cosine_at(0.0) < cal.cosine_at(85.0) < cal.cosine_at(100.0)


def test_fmr_curve_fit_recovers_a_normal_distribution() -> None:
    edges = histogram_edges()
    from statistics import NormalDist

    cdf = np.array([NormalDist(0.02, 0.11).cdf(float(e)) for e in edges])
    counts = np.round(np.diff(cdf) * 1e9).astype(np.int64)  # a billion pairs, exactly normal
    curve = fit_fmr_curve(edges, counts, "synthetic")
    assert curve.log10_fmr[-1] == -5.0  # 1e4 pairs at 1e-5: enough for every knot
    assert curve.tail_std == pytest.approx(0.11, rel=0.01)
    for v in (-1.0, -3.0, -5.0, -7.0, -9.0):
        want = 0.02 + 0.11 * normal_tail_point(v)
        assert curve.cosine_at(v) == pytest.approx(want, abs=2e-3)


def test_fmr_curve_needs_enough_pairs() -> None:
    edges = histogram_edges()
    counts = np.zeros(len(edges) - 1, np.int64)
    counts[10000] = 1000
    with pytest.raises(WorkbenchError, match="too few"):
        fit_fmr_curve(edges, counts)


def test_impostors_are_other_peoples_faces_bystanders_included() -> None:
    rng = np.random.default_rng(3)
    people = 300
    base = rng.normal(size=(people, 32))
    vectors, photos, names = [], [], []
    for p in range(people):
        for k in range(2):  # two photos each: the person, and one bystander in the second
            vectors.append(base[p] + 0.3 * rng.normal(size=32))
            photos.append(2 * p + k)
            names.append(f"person{p}")
            if k == 1:
                vectors.append(rng.normal(size=32))
                photos.append(2 * p + k)
                names.append(None)
    curve = fit_impostors(np.array(vectors), np.array(photos), names)
    labelled, faces = 2 * people, 3 * people
    # Each labelled face meets every face of other photos except its own person's other one.
    assert curve.pairs == labelled * (faces - 1) - labelled - people
    # Random 32-d vectors: strangers' cosines spread about 1/sqrt(32).
    assert curve.tail_std == pytest.approx(1 / math.sqrt(32), rel=0.15)


# ---- files ------------------------------------------------------------------------
@pytest.fixture
def shipped(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    """A stand-in for the shipped calibration.json (the real one is checked in integration)."""
    from workbench.faces import calibration

    table = {"shipped-pack": {"threshold": 0.31, "slope": 20.0, "accuracy": 0.98, "pairs": 2200}}
    real_read = calibration.read_calibrations
    monkeypatch.setattr(
        calibration, "read_calibrations", lambda path: table if path is None else real_read(path)
    )
    return table


def test_home_file_overrides_package_file(tmp_path: Path, shipped: dict) -> None:
    assert load_calibration("shipped-pack", tmp_path).threshold == 0.31
    assert load_calibration("shipped-pack", tmp_path).calibrated

    mine = Calibration("shipped-pack", threshold=0.123, slope=4.5, protocol="mine")
    save_calibration(mine, tmp_path / CALIBRATION_FILE)
    assert load_calibration("shipped-pack", tmp_path) == mine
    # Without the home, the shipped entry is what counts.
    assert load_calibration("shipped-pack").threshold == 0.31


def test_home_file_falls_back_to_package_for_other_packs(tmp_path: Path, shipped: dict) -> None:
    save_calibration(Calibration("someone-else", 0.5, 9.0), tmp_path / CALIBRATION_FILE)
    assert load_calibration("shipped-pack", tmp_path).threshold == 0.31
    assert load_calibration("someone-else", tmp_path).threshold == 0.5


def test_package_file_is_the_shipped_resource() -> None:
    from importlib import resources

    shipped_text = resources.files("workbench.faces").joinpath(CALIBRATION_FILE).read_text()
    assert package_calibration_path().read_text() == shipped_text
    assert isinstance(json.loads(shipped_text), dict)


def test_uncalibrated_pack_is_flagged(tmp_path: Path) -> None:
    cal = load_calibration("no-such-pack:never-calibrated", tmp_path)
    assert cal.calibrated is False
    assert cal.protocol == "none"
    assert cal.threshold == UNCALIBRATED_THRESHOLD
    assert cal.false_match is None and cal.curve is UNCALIBRATED_CURVE
    assert cal.percent(cal.cosine_at(85.0)) == pytest.approx(85.0)


def test_a_curve_roundtrips_and_an_older_entry_borrows_the_shipped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench.faces import calibration

    shipped = {"p": {"threshold": 0.31, "slope": 20.0, "false_match": CURVE.to_dict()}}
    real_read = calibration.read_calibrations
    monkeypatch.setattr(
        calibration, "read_calibrations", lambda path: shipped if path is None else real_read(path)
    )
    got = load_calibration("p")
    assert got.false_match == FmrCurve.from_dict(CURVE.to_dict()) and got.version == 2
    # A home fit made before the false-match scale keeps its threshold, takes the curve.
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"p": {"threshold": 0.2, "slope": 5.0}}))
    old = load_calibration("p", tmp_path)
    assert old.threshold == 0.2 and old.false_match == got.false_match
    # A new fit writes its curve and the scale's version.
    fitted = Calibration("q", 0.3, 12.0, false_match=CURVE, version=2)
    save_calibration(fitted, tmp_path / CALIBRATION_FILE)
    data = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    assert data["q"]["version"] == 2 and data["q"]["false_match"]["tail_std"] == 0.1
    assert load_calibration("q", tmp_path).percent(0.3) == pytest.approx(
        fitted.percent(0.3), abs=1e-3
    )


def test_save_merges_and_roundtrips_new_fields(tmp_path: Path) -> None:
    path = tmp_path / "sub" / CALIBRATION_FILE
    a = Calibration(
        "a",
        0.3,
        12.0,
        accuracy=0.97,
        pairs=2190,
        excluded_pairs=10,
        check_protocol="LFW View 1 pairsDevTest.txt",
        check_accuracy=0.96,
        check_pairs=1000,
        check_excluded_pairs=0,
    )
    save_calibration(a, path)
    save_calibration(Calibration("b", 0.4, 8.0), path)
    data = json.loads(path.read_text())
    assert set(data) == {"a", "b"}
    assert "check_accuracy" not in data["b"]  # unset fields are not written
    assert load_calibration("a", tmp_path / "sub") == a


def test_a_new_fit_keeps_the_packs_clustering_method(tmp_path: Path) -> None:
    path = tmp_path / CALIBRATION_FILE
    save_calibration(Calibration("d", 0.9, 180.0, cluster_method="hdbscan"), path)
    save_calibration(Calibration("d", 0.91, 170.0, accuracy=0.99), path)  # a re-calibration
    again = load_calibration("d", tmp_path)
    assert (again.threshold, again.cluster_method) == (0.91, "hdbscan")
    assert load_calibration("dlib").cluster_method == "hdbscan"  # the shipped default


def test_load_ignores_unknown_and_accepts_old_entries(tmp_path: Path) -> None:
    (tmp_path / CALIBRATION_FILE).write_text(
        json.dumps(
            {
                "old": {"threshold": 0.3, "slope": 10.0},
                "newer": {"threshold": 0.2, "slope": 5.0, "made_by": "workbench 9.9"},
            }
        )
    )
    old = load_calibration("old", tmp_path)
    assert old.calibrated and old.check_accuracy is None and old.excluded_pairs is None
    assert load_calibration("newer", tmp_path).threshold == 0.2


# ---- LFW pairs files ---------------------------------------------------------------
VIEW1 = """2
Alice\t1\t2
Bob\t3\t4
Alice\t1\tBob\t2
Carol\t5\tDave\t1
"""

VIEW2 = """2\t1
Alice\t1\t2
Alice\t1\tBob\t2
Bob 3 4
Carol 5 Dave 1
"""


def test_parse_view1(tmp_path: Path) -> None:
    f = tmp_path / "pairsDevTrain.txt"
    f.write_text(VIEW1)
    pairs = parse_pairs(f)
    assert [p.same for p in pairs] == [True, True, False, False]
    assert pairs[0].images == (("Alice", 1), ("Alice", 2))
    assert pairs[3].images == (("Carol", 5), ("Dave", 1))
    assert {p.fold for p in pairs} == {0}
    assert pairs[2].line == 4


def test_parse_view2_folds(tmp_path: Path) -> None:
    f = tmp_path / "pairs.txt"
    f.write_text(VIEW2)
    pairs = parse_pairs(f)
    assert [(p.fold, p.same) for p in pairs] == [(0, True), (0, False), (1, True), (1, False)]
    assert pairs[2].images == (("Bob", 3), ("Bob", 4))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("2 1 7\nA 1 2\n", "header"),
        ("x\nA 1 2\n", "not a whole number"),
        ("2\nA 1 2\nB 1 2\nA 1 B 2\n", "3 pair lines"),
        ("1\nA 1 2\nB 1 2\n", "2 matched and 0 mismatched"),
        ("1\nA 1 2 3 4 5\nA 1 B 2\n", "line 2"),
        ("1\nA one 2\nA 1 B 2\n", "'one'"),
        ("2 1\nA 1 2\nB 1 C 2\nA 3 4\nA 5 6\n", "fold 2"),
    ],
)
def test_parse_errors_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(LfwError, match=message) as err:
        parse_pairs(f)
    assert "bad.txt" in str(err.value)


def test_missing_pairs_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(LfwError, match="nope.txt"):
        pairs_path(tmp_path, "nope.txt")
    with pytest.raises(LfwError, match="does not exist"):
        images_root(tmp_path / "absent")


def test_image_paths_and_missing_image_named(tmp_path: Path) -> None:
    (tmp_path / "images" / "Alice").mkdir(parents=True)
    for n in (1, 2):
        (tmp_path / "images" / "Alice" / f"Alice_{n:04d}.jpg").write_bytes(b"x")
    f = tmp_path / "pairsDevTrain.txt"
    f.write_text(VIEW1)
    assert pairs_path(tmp_path, "pairsDevTrain.txt") == f
    root = images_root(tmp_path)
    assert root == tmp_path / "images"
    assert image_path(root, "Bob", 3) == root / "Bob" / "Bob_0003.jpg"
    pairs = parse_pairs(f)
    alice = [root / "Alice" / "Alice_0001.jpg", root / "Alice" / "Alice_0002.jpg"]
    assert resolve_images(root, pairs[:1]) == alice
    with pytest.raises(LfwError, match=r"Bob_0003\.jpg.*line 3"):
        resolve_images(root, pairs, f)


def _face(box: tuple[float, float, float, float], score: float) -> AnalyzedFace:
    detection = DetectedFace(box, np.zeros((5, 2), np.float32), score)
    return AnalyzedFace(detection, np.zeros(4, np.float32))


def test_choose_face_prefers_the_centred_subject() -> None:
    # A sharper face in the corner (ranked first by the detector) loses to the centred one.
    corner, centre = _face((0, 0, 60, 60), 0.95), _face((90, 80, 160, 170), 0.7)
    assert choose_face([corner, centre], 250, 250) == 1
    # Between two centred faces, the score decides.
    sharp, soft = _face((95, 85, 155, 165), 0.9), _face((90, 80, 160, 170), 0.6)
    assert choose_face([sharp, soft], 250, 250) == 0
