"""Per-pack calibration: a similarity percentage that means the same for every model.

The percentage is a **pair false-match rate** (`workbench.faces.false_match`): each
pack's `FmrCurve`, measured on its impostor pairs, says how often a stranger's face
reaches a cosine similarity, and a fixed scale turns that rate into a percentage
(85 % = one stranger in 100,000 faces, every 5 points a factor of ten between 70 and
95 %). So 85 % lets through the same share of strangers with every pack, and a
search can say how many strangers to expect in the gallery it searched. The curve
is in cosine similarity, so it serves collections compared by L2 as well.

Each entry also keeps the pack's same-person threshold (best accuracy on LFW View 1,
pairsDevTrain.txt) and a logistic slope fitted there, for verification measures.
A calibration is fitted for one metric: for ``l2`` the threshold is a Euclidean
distance between unit vectors (``d = √(2 − 2·cos)``). The shipped file keys L2 fits
``<pack>@l2``; a pack with only a cosine fit gets it converted.

Entries written before the false-match scale (``version`` 1, no ``false_match``)
keep their threshold, but their percentage follows a generic curve until
``workbench calibrate`` measures the pack again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workbench.faces.false_match import (
    SCALE_VERSION,
    FmrCurve,
    cosine_at_percent,
    expected_strangers,
    fmr_of_percent,
)
from workbench.faces.false_match import (
    percent as scale_percent,
)
from workbench.settings import Metric

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
    """The same-person threshold of LFW View 1 (best accuracy): a cosine similarity, or for
    ``metric == "l2"`` a Euclidean distance between the unit vectors."""
    slope: float
    """Logistic (Platt) slope of P(same person) at the threshold, on the same pairs."""
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
    false_match: FmrCurve | None = None
    """The pack's pair false-match rate by cosine (None: not measured; a generic curve)."""
    link_percent: float | None = None
    """The similarity % at which clustering links two of this pack's faces (None: the
    default of `workbench.analysis.cluster`)."""
    version: int = 1
    """The meaning of the percentage this entry was written for (`SCALE_VERSION`)."""

    def _repr_html_(self) -> str | None:
        """Threshold, fit and the % curve, for notebooks (`workbench.display.evaluation`)."""
        from workbench.display.evaluation import calibration_repr

        return calibration_repr(self)

    @property
    def cosine_threshold(self) -> float:
        """The same-person threshold as a cosine similarity, whatever the metric."""
        return self.threshold if self.metric == "cosine" else l2_to_cosine(self.threshold)

    @property
    def curve(self) -> FmrCurve:
        """The false-match curve the percentage follows (a generic one when not measured)."""
        return self.false_match if self.false_match is not None else UNCALIBRATED_CURVE

    def percent(self, cosine: float | NDArray[np.floating]) -> NDArray[np.float64] | float:
        """Similarity % of faces with this cosine similarity (any metric): the pair
        false-match rate at it, on the fixed scale of `workbench.faces.false_match`."""
        out = scale_percent(self.curve, cosine)
        return float(out) if np.ndim(out) == 0 else out

    def cosine_at(self, percent: float) -> float:
        """The cosine similarity that reads as ``percent`` (inverse of `percent`; never past
        ±1, where no two faces can be)."""
        if percent <= 0.0:
            return -1.0  # 0 %: every face
        return min(1.0, max(-1.0, cosine_at_percent(self.curve, percent)))

    def false_match_rate(self, cosine: float) -> float:
        """How often a stranger's face reaches this cosine similarity with this pack."""
        return float(self.curve.fmr(cosine))

    def expected_strangers(self, percent: float, faces: int) -> float:
        """Strangers a search of ``faces`` faces returns on average at ``percent``."""
        return expected_strangers(fmr_of_percent(percent), faces)

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
# same-person pairs mostly above 0.35 cosine, and strangers near 0 with a spread of
# about 0.1 (MobileFaceNet on LFW: mean -0.01, std 0.11).
UNCALIBRATED_THRESHOLD = 0.35
UNCALIBRATED_SLOPE = 12.0
UNCALIBRATED_CURVE = FmrCurve.normal(0.0, 0.11, "generic: strangers ~ N(0, 0.11) in cosine")


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
                cal = _from_entry(entry, pack, tables, key)
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


def _from_entry(
    entry: dict[str, Any], pack: str, tables: list[dict[str, dict]], key: str
) -> Calibration:
    """A calibration file entry as a `Calibration` (the false-match curve, when the entry has
    none, from the same key in a later table: a home's older fit over a shipped newer one)."""
    # Keys this version does not know (written by a newer one) are ignored.
    known = {k: v for k, v in entry.items() if k in _FIELDS}
    curve = entry.get("false_match")
    for k in dict.fromkeys((key, key.split("@")[0])):  # the curve is the same for L2 fits
        for table in tables:
            if curve is None:
                curve = table.get(k, {}).get("false_match")
    known["false_match"] = FmrCurve.from_dict(curve) if curve else None
    if known.get("link_percent") is None:  # like the curve, it does not depend on the metric
        known["link_percent"] = next(
            (
                t[key.split("@")[0]]["link_percent"]
                for t in tables
                if t.get(key.split("@")[0], {}).get("link_percent") is not None
            ),
            None,
        )
    if curve and known.get("version", 1) < SCALE_VERSION:
        known["version"] = SCALE_VERSION
    return Calibration(**{**known, "pack": pack})


def _cluster_method(tables: list[dict[str, dict]], pack: str) -> str | None:
    for table in tables:
        if table.get(pack, {}).get("cluster_method"):
            return str(table[pack]["cluster_method"])
    return None
