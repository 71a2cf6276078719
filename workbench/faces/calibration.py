"""Per-pack calibration: a similarity percentage that means the same for every model.

``percent = 100 · σ(slope · (cos − threshold) + logit(0.85))``: the pack's
same-person threshold (best accuracy on LFW View 1, pairsDevTrain.txt) reads
as 85 % for every pack, and ``slope`` (Platt scaling on the same pairs)
spreads the rest so that equal percentages mean equal odds of a match.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ANCHOR_PERCENT = 85.0
_ANCHOR_LOGIT = math.log(ANCHOR_PERCENT / (100.0 - ANCHOR_PERCENT))
CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class Calibration:
    pack: str
    threshold: float
    """Cosine similarity at which two faces are judged the same person (reads as 85 %)."""
    slope: float
    calibrated: bool = True
    protocol: str = "LFW View 1 pairsDevTrain.txt"
    accuracy: float | None = None
    """Accuracy of ``threshold`` on the pairs it was fitted on."""
    pairs: int | None = None
    """Pairs the fit used (pairs touching an image without a detected face are left out)."""
    excluded_pairs: int | None = None
    """Pairs of the fitting file left out because an image had no detected face."""
    check_protocol: str | None = None
    """Held-out pairs ``threshold`` was checked on (LFW View 1 pairsDevTest.txt)."""
    check_accuracy: float | None = None
    check_pairs: int | None = None
    check_excluded_pairs: int | None = None
    cluster_method: str | None = None
    """The clustering method that groups this pack's faces best (measured on all of LFW by
    ``evaluation/lfw_cluster.py``); ``None``: DBSCAN."""

    def percent(self, cosine: float | NDArray[np.floating]) -> NDArray[np.float64] | float:
        z = self.slope * (np.asarray(cosine, dtype=np.float64) - self.threshold) + _ANCHOR_LOGIT
        out = 100.0 / (1.0 + np.exp(-z))
        return float(out) if np.ndim(out) == 0 else out

    def cosine_at(self, percent: float) -> float:
        """The cosine similarity that reads as ``percent`` (inverse of `percent`)."""
        p = min(max(percent, 1e-6), 100.0 - 1e-6) / 100.0
        return self.threshold + (math.log(p / (1.0 - p)) - _ANCHOR_LOGIT) / self.slope


# A cautious guess for packs nobody calibrated: ArcFace-style models put
# same-person pairs mostly above 0.35 cosine.
UNCALIBRATED_THRESHOLD = 0.35
UNCALIBRATED_SLOPE = 12.0


def _read(path: Path | None) -> dict[str, dict]:
    if path is not None:
        return json.loads(path.read_text()) if path.is_file() else {}
    text = resources.files("workbench.faces").joinpath(CALIBRATION_FILE).read_text()
    return json.loads(text)


def package_calibration_path() -> Path:
    """The calibration file shipped with the package (written by maintainers)."""
    return Path(__file__).resolve().parent / CALIBRATION_FILE


def home_calibration_path(home: Path) -> Path:
    """A workbench home's own calibration file; its entries win over the shipped ones."""
    return Path(home).expanduser() / CALIBRATION_FILE


_FIELDS = frozenset(f.name for f in fields(Calibration))


def load_calibration(pack: str, home: Path | None = None) -> Calibration:
    """The pack's calibration: the workbench home's own file first, then the shipped one."""
    tables = ([_read(home_calibration_path(home))] if home is not None else []) + [_read(None)]
    for table in tables:
        entry = table.get(pack)
        if entry:
            # Keys this version does not know (written by a newer one) are ignored.
            known = {k: v for k, v in entry.items() if k in _FIELDS}
            return Calibration(**{**known, "pack": pack})
    return Calibration(
        pack, UNCALIBRATED_THRESHOLD, UNCALIBRATED_SLOPE, calibrated=False, protocol="none"
    )


def save_calibration(cal: Calibration, path: Path) -> None:
    data = _read(path) if path.is_file() else {}
    # Keys a new fit does not set (the pack's clustering method) are kept.
    fresh = {k: v for k, v in asdict(cal).items() if k != "pack" and v is not None}
    data[cal.pack] = {**data.get(cal.pack, {}), **fresh}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def platt_slope(scores: NDArray[np.floating], same: NDArray[np.bool_], iters: int = 50) -> float:
    """Slope of a logistic fit P(same | cos) = σ(a·cos + b), by Newton's method."""
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same, dtype=np.float64)
    a, b = 10.0, -10.0 * float(np.median(x))
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(a * x + b)))
        w = np.clip(p * (1 - p), 1e-9, None)
        g = np.array([((p - y) * x).sum(), (p - y).sum()])
        h = np.array([[(w * x * x).sum(), (w * x).sum()], [(w * x).sum(), w.sum()]])
        h += np.eye(2) * 1e-6
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-8:
            break
    return float(a)


def fit_calibration(
    pack: str, scores: NDArray[np.floating], same: NDArray[np.bool_]
) -> Calibration:
    # Imported here: the evaluation package imports this module.
    from workbench.evaluation.metrics import best_threshold

    threshold, accuracy = best_threshold(scores, same)
    slope = platt_slope(scores, same)
    return Calibration(pack, threshold, slope, accuracy=accuracy, pairs=int(len(scores)))
