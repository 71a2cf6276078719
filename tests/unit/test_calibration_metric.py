"""Calibrations are fitted for a metric; L2 fits make the same decisions as cosine ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workbench.evaluation.calibrate import fit_calibration, save_calibration
from workbench.faces.calibration import (
    Calibration,
    calibration_key,
    cosine_to_l2,
    load_calibration,
)


@pytest.fixture
def pairs() -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of same-person pairs around 0.6 and of strangers around 0.1."""
    rng = np.random.default_rng(7)
    same = np.clip(rng.normal(0.6, 0.12, 400), -1, 1)
    other = np.clip(rng.normal(0.1, 0.12, 400), -1, 1)
    return np.concatenate([same, other]), np.r_[np.ones(400, bool), np.zeros(400, bool)]


def test_l2_fit_has_a_distance_threshold_and_the_cosine_fits_decisions(pairs: tuple) -> None:
    scores, labels = pairs
    cos = fit_calibration("p", scores, labels)
    l2 = fit_calibration("p", scores, labels, metric="l2")
    assert (cos.metric, l2.metric) == ("cosine", "l2")
    # a distance between unit vectors, about √(2 − 2·cos) of the cosine threshold
    assert 0 < l2.threshold < 2
    assert l2.threshold == pytest.approx(float(cosine_to_l2(cos.threshold)), abs=0.02)
    assert l2.cosine_threshold == pytest.approx(cos.threshold, abs=0.02)
    assert l2.accuracy == pytest.approx(cos.accuracy)
    assert l2.slope > 0  # closer reads higher
    # The similarity % is a false-match rate of the cosine: the same whatever the metric.
    grid = np.linspace(-0.5, 1.0, 301)
    l2_pct, cos_pct = np.asarray(l2.percent(grid)), np.asarray(cos.percent(grid))
    assert np.all(np.diff(l2_pct) >= 0)  # higher cosine, higher similarity
    assert np.array_equal(l2_pct, cos_pct)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_cosine_at_inverts_percent(metric: str) -> None:
    cal = Calibration("p", 0.4 if metric == "cosine" else 1.1, 20.0, metric=metric)  # type: ignore[arg-type]
    for pct in (50.0, 70.0, 85.0, 95.0, 99.9):
        assert cal.percent(cal.cosine_at(pct)) == pytest.approx(pct, abs=1e-6)


def test_a_cosine_fit_converts_to_l2_with_the_same_threshold_and_steepness() -> None:
    cos = Calibration("p", 0.3, 30.0)
    l2 = cos.as_l2()
    assert l2.metric == "l2" and "converted from cosine" in l2.protocol
    assert l2.threshold == pytest.approx(np.sqrt(2 - 2 * 0.3))
    assert l2.cosine_threshold == pytest.approx(0.3)
    for c in (0.29, 0.3, 0.31):  # the same reading near the threshold
        assert l2.percent(c) == pytest.approx(cos.percent(c), abs=0.5)


def test_fits_for_each_metric_are_stored_side_by_side(tmp_path: Path, pairs: tuple) -> None:
    scores, labels = pairs
    home = tmp_path / "home"
    path = home / "calibration.json"
    save_calibration(fit_calibration("mine", scores, labels), path)
    save_calibration(fit_calibration("mine", scores, labels, metric="l2"), path)
    data = json.loads(path.read_text())
    assert set(data) == {"mine", calibration_key("mine", "l2")} == {"mine", "mine@l2"}
    cos = load_calibration("mine", home)
    l2 = load_calibration("mine", home, "l2")
    assert (cos.metric, l2.metric) == ("cosine", "l2")
    assert l2.threshold == data["mine@l2"]["threshold"]
    assert "converted" not in l2.protocol  # its own fit, not a conversion


def test_l2_without_its_own_fit_converts_the_cosine_one(tmp_path: Path) -> None:
    save_calibration(Calibration("only-cos", 0.5, 25.0), tmp_path / "calibration.json")
    l2 = load_calibration("only-cos", tmp_path, "l2")
    assert l2.calibrated and l2.metric == "l2"
    assert l2.cosine_threshold == pytest.approx(0.5)


def test_a_new_detector_borrows_its_embedders_fit(tmp_path: Path) -> None:
    fit = Calibration("local:det_500m+mobilefacenet", 0.31, 30.0, cluster_method="dbscan")
    save_calibration(fit, tmp_path / "calibration.json")
    cal = load_calibration("mtcnn+mobilefacenet", tmp_path, embedder="mobilefacenet")
    assert cal.calibrated and cal.pack == "mtcnn+mobilefacenet"
    assert cal.threshold == pytest.approx(0.31)
    assert "fitted for pack local:det_500m+mobilefacenet" in cal.protocol
    # another embedder's fit is never borrowed
    other = load_calibration("mtcnn+arcface", tmp_path, embedder="arcface")
    assert not other.calibrated


def test_shipped_dlib_fit_serves_l2() -> None:
    """dlib collections are L2 by default; its shipped calibration answers for L2."""
    cal = load_calibration("dlib", None, "l2")
    assert cal.calibrated and cal.metric == "l2"
    assert 0.8 < cal.cosine_threshold < 0.95
