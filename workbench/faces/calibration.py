"""Per-pack calibration: a similarity percentage that means the same for every model.

``percent = 100 · σ(slope · (cos − threshold) + logit(0.85))``: the pack's
same-person threshold (best accuracy on LFW View 1, pairsDevTrain.txt) reads
as 85 % for every pack, and ``slope`` (Platt scaling on the same pairs)
spreads the rest so that equal percentages mean equal odds of a match.

A calibration is fitted for one metric. For ``l2`` the threshold is a
Euclidean distance between unit vectors (``d = √(2 − 2·cos)``), fitted on
distances, and closer reads higher: ``σ(slope · (threshold − d) + …)``. The
shipped file keys L2 fits ``<pack>@l2``; a pack with only a cosine fit gets
it converted (the same decisions; the slope matched at the threshold).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from workbench.settings import Metric

ANCHOR_PERCENT = 85.0
_ANCHOR_LOGIT = math.log(ANCHOR_PERCENT / (100.0 - ANCHOR_PERCENT))
CALIBRATION_FILE = "calibration.json"


def cosine_to_l2(cosine: float | NDArray[np.floating]) -> NDArray[np.float64] | float:
    """Euclidean distance of two unit vectors with this cosine similarity."""
    d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * np.asarray(cosine, dtype=np.float64)))
    return float(d) if np.ndim(d) == 0 else d


def l2_to_cosine(distance: float) -> float:
    return 1.0 - distance * distance / 2.0


@dataclass(frozen=True)
class Calibration:
    pack: str
    threshold: float
    """Where two faces are judged the same person (reads as 85 %): a cosine similarity,
    or for ``metric == "l2"`` a Euclidean distance between the unit vectors."""
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
    metric: Metric = "cosine"
    """What ``threshold`` and ``slope`` were fitted on."""

    @property
    def cosine_threshold(self) -> float:
        """The same-person threshold as a cosine similarity, whatever the metric."""
        return self.threshold if self.metric == "cosine" else l2_to_cosine(self.threshold)

    def _closeness(self, cosine: float | NDArray[np.floating]) -> NDArray[np.float64]:
        """How far past the threshold, in the metric's units (positive: more alike)."""
        c = np.asarray(cosine, dtype=np.float64)
        if self.metric == "l2":
            return self.threshold - np.asarray(cosine_to_l2(c))
        return c - self.threshold

    def percent(self, cosine: float | NDArray[np.floating]) -> NDArray[np.float64] | float:
        """Calibrated similarity of faces with this cosine similarity (any metric)."""
        z = self.slope * self._closeness(cosine) + _ANCHOR_LOGIT
        out = 100.0 / (1.0 + np.exp(-z))
        return float(out) if np.ndim(out) == 0 else out

    def cosine_at(self, percent: float) -> float:
        """The cosine similarity that reads as ``percent`` (inverse of `percent`)."""
        p = min(max(percent, 1e-6), 100.0 - 1e-6) / 100.0
        past = (math.log(p / (1.0 - p)) - _ANCHOR_LOGIT) / self.slope
        if self.metric == "l2":
            return l2_to_cosine(max(0.0, self.threshold - past))
        return self.threshold + past

    def as_l2(self) -> Calibration:
        """This cosine fit expressed for L2: the same threshold, the slope matched there."""
        if self.metric == "l2":
            return self
        d = float(cosine_to_l2(self.threshold))
        # dcos/dd = -d at the threshold, so σ keeps its steepness there
        return replace(
            self,
            metric="l2",
            threshold=d,
            slope=self.slope * d,
            protocol=f"{self.protocol}, converted from cosine",
        )


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


def calibration_key(pack: str, metric: Metric = "cosine") -> str:
    """The key of a pack's fit for ``metric`` in a calibration file."""
    return pack if metric == "cosine" else f"{pack}@{metric}"


def load_calibration(
    pack: str, home: Path | None = None, metric: Metric = "cosine", embedder: str | None = None
) -> Calibration:
    """The pack's calibration for ``metric``: the workbench home's own file first, then the
    shipped one; for L2, a cosine fit converted when there is no L2 fit.

    A pack nobody calibrated whose ``embedder`` another pack's fit used (a new
    detector with a calibrated embedder) borrows that fit: the threshold is
    the embedder's, the detector only moves the landmarks it aligns from.
    """
    tables = ([_read(home_calibration_path(home))] if home is not None else []) + [_read(None)]
    names = [pack]
    if embedder is not None:
        names += sorted(
            {
                key.split("@")[0]
                for table in tables
                for key in table
                if key.split("@")[0] != pack
                and (key.split("@")[0] == embedder or key.split("@")[0].endswith(f"+{embedder}"))
            }
        )
    for name in names:
        for key in [calibration_key(name, metric)] + ([name] if metric != "cosine" else []):
            for table in tables:
                entry = table.get(key)
                if not entry:
                    continue
                # Keys this version does not know (written by a newer one) are ignored.
                known = {k: v for k, v in entry.items() if k in _FIELDS}
                cal = Calibration(**{**known, "pack": pack})
                if name != pack:
                    cal = replace(cal, protocol=f"{cal.protocol}, fitted for pack {name}")
                if cal.metric != metric:
                    return cal.as_l2()
                if cal.cluster_method is None and key != name:
                    # an L2 fit's own cluster method is rarely measured: the cosine one holds
                    cal = replace(cal, cluster_method=_cluster_method(tables, name))
                return cal
    cal = Calibration(
        pack, UNCALIBRATED_THRESHOLD, UNCALIBRATED_SLOPE, calibrated=False, protocol="none"
    )
    return cal.as_l2() if metric == "l2" else cal


def _cluster_method(tables: list[dict[str, dict]], pack: str) -> str | None:
    for table in tables:
        if table.get(pack, {}).get("cluster_method"):
            return str(table[pack]["cluster_method"])
    return None


def save_calibration(cal: Calibration, path: Path) -> None:
    data = _read(path) if path.is_file() else {}
    # Keys a new fit does not set (the pack's clustering method) are kept.
    fresh = {k: v for k, v in asdict(cal).items() if k != "pack" and v is not None}
    key = calibration_key(cal.pack, cal.metric)
    data[key] = {**data.get(key, {}), **fresh}
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
    pack: str, scores: NDArray[np.floating], same: NDArray[np.bool_], metric: Metric = "cosine"
) -> Calibration:
    """Threshold (best accuracy) and Platt slope of cosine ``scores``, fitted in ``metric``."""
    # Imported here: the evaluation package imports this module.
    from workbench.evaluation.metrics import best_threshold

    # For L2 the fit runs on negated distances, so "higher is more alike" holds.
    x = np.asarray(scores, dtype=np.float64)
    x = x if metric == "cosine" else -np.asarray(cosine_to_l2(x))
    threshold, accuracy = best_threshold(x, same)
    slope = platt_slope(x, same)
    if metric == "l2":
        threshold = -threshold
    return Calibration(
        pack, threshold, slope, accuracy=accuracy, pairs=int(len(scores)), metric=metric
    )
