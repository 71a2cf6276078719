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
from dataclasses import dataclass, fields, replace
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

    def _repr_html_(self) -> str | None:
        """Threshold, fit and the % curve, for notebooks (`workbench.display.evaluation`)."""
        from workbench.display.evaluation import calibration_repr

        return calibration_repr(self)

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


def read_calibrations(path: Path | None) -> dict[str, dict]:
    """The calibrations in ``path`` by key (none when it does not exist); None: the shipped ones."""
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
    own = [read_calibrations(home_calibration_path(home))] if home is not None else []
    tables = [*own, read_calibrations(None)]
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
