"""The similarity % as a false-match rate: how often a stranger's face scores this high.

Users search one face against a whole archive, so what a threshold must say is how
many strangers come back: the **pair false-match rate** (FMR) at that similarity,
times the faces searched. A pack's `FmrCurve` is measured on its impostor pairs
(faces of different people) and the percentage is a fixed function of the FMR, the
same for every pack:

======  ==========  ===================================================
  %      pair FMR    strangers per query in an archive of 1M faces
======  ==========  ===================================================
  70     1e-2        10,000
  75     1e-3        1,000
  80     1e-4        100
  85     1e-5        10  (the default threshold)
  90     1e-6        1
  95     1e-7        0.1
======  ==========  ===================================================

Between 70 and 95 % every 5 points cut the strangers tenfold. Below 70 % the scale
falls linearly to 0 % at FMR 1 (every stranger). Above 95 %, where no archive meets
strangers any more, every two further decades of rarity halve the distance to 100 %:
same-person matches spread over 95–100 % instead of piling up at 99.9 %.

The curve is the measured FMR (log scale, linear between knots) down to where the
impostor pairs stop being plentiful, then a normal tail with the spread measured on
the bulk: LFW's rarest "impostors" are mostly the same person under two names or a
bystander who is another LFW subject, so the measured extreme tail is not trusted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

SCALE_VERSION = 2
"""Version of the percentage's meaning (1: 85 % = the LFW View 1 same-person threshold)."""
DEFAULT_PERCENT = 85.0
LOW_DECADES = 2.0
"""70 % is FMR 1e-2: below it the scale runs linearly to 0 % at FMR 1."""
HIGH_DECADES = 7.0
"""95 % is FMR 1e-7: above it two decades halve the distance to 100 %."""
PERCENT_PER_DECADE = 5.0
MAX_DECADES = 300.0
_LN10 = math.log(10.0)
_SQRT2 = math.sqrt(2.0)


# ---- the fixed scale: decades of rarity ↔ percent ---------------------------------------
def percent_of_decades(decades: ArrayLike) -> NDArray[np.float64]:
    """The similarity % of faces a stranger matches with rate ``10 ** -decades``."""
    s = np.maximum(np.asarray(decades, dtype=np.float64), 0.0)
    low = 35.0 * s
    mid = 60.0 + PERCENT_PER_DECADE * s
    high = 100.0 - 5.0 * np.exp2(-(s - HIGH_DECADES) / 2.0)
    return np.where(s <= LOW_DECADES, low, np.where(s <= HIGH_DECADES, mid, high))


def decades_of_percent(percent: float) -> float:
    """The decades of rarity (−log10 FMR) a similarity % stands for (inverse of the scale)."""
    p = min(max(float(percent), 0.0), 100.0)
    if p <= 70.0:
        return p / 35.0
    if p <= 95.0:
        return (p - 60.0) / PERCENT_PER_DECADE
    if p >= 100.0:
        return MAX_DECADES
    return min(MAX_DECADES, HIGH_DECADES - 2.0 * math.log2((100.0 - p) / 5.0))


def fmr_of_percent(percent: float) -> float:
    """The pair false-match rate a similarity % stands for (85 → 1e-5)."""
    return 10.0 ** -decades_of_percent(percent)


# ---- the normal tail, without scipy (a search process should not import it) -------------
def log10_normal_tail(z: float) -> float:
    """log10 P(Z ≥ z) for a standard normal Z, accurate far into the tail."""
    if z < 30.0:
        q = 0.5 * math.erfc(z / _SQRT2)
        return math.log10(q) if q > 0.0 else -math.inf
    # Mills' ratio beyond where erfc underflows.
    return (-z * z / 2.0 - math.log(z * math.sqrt(2.0 * math.pi))) / _LN10


def normal_tail_point(log10_q: float) -> float:
    """The z with log10 P(Z ≥ z) = ``log10_q`` (bisection; ``log10_q`` ≤ 0)."""
    lo, hi = -40.0, 300.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if log10_normal_tail(mid) > log10_q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class FmrCurve:
    """A pack's pair false-match rate by cosine similarity.

    ``cosines`` ascend and ``log10_fmr`` descend with them: knots of the measured
    rate. Beyond the last knot the rate follows a normal tail of spread
    ``tail_std`` through that knot; before the first it continues the first
    segment's slope up to FMR 1.
    """

    cosines: tuple[float, ...]
    log10_fmr: tuple[float, ...]
    tail_std: float
    pairs: int = 0
    """Impostor pairs the curve was measured on."""
    protocol: str = ""

    def __post_init__(self) -> None:
        c, f = np.asarray(self.cosines), np.asarray(self.log10_fmr)
        if len(c) < 2 or len(c) != len(f):
            raise ValueError("an FMR curve needs at least two knots (cosine, log10 FMR)")
        if np.any(np.diff(c) <= 0) or np.any(np.diff(f) >= 0) or f[0] > 0:
            raise ValueError("FMR curve knots must have rising cosines and falling rates ≤ 1")
        if not self.tail_std > 0:
            raise ValueError(f"FMR curve tail_std must be positive, got {self.tail_std}")

    @classmethod
    def normal(cls, mean: float, std: float, protocol: str = "") -> FmrCurve:
        """The curve of a normal impostor distribution (knots at FMR 1e-1 … 1e-4)."""
        levels = (-1.0, -2.0, -3.0, -4.0)
        cos = tuple(mean + std * normal_tail_point(v) for v in levels)
        return cls(cos, levels, std, 0, protocol)

    def log10(self, cosine: ArrayLike) -> NDArray[np.float64]:
        """log10 of the false-match rate at each cosine similarity (≤ 0)."""
        c = np.asarray(cosine, dtype=np.float64)
        xs, ys = np.asarray(self.cosines), np.asarray(self.log10_fmr)
        out = np.interp(c, xs, ys)
        head = (ys[1] - ys[0]) / (xs[1] - xs[0])
        out = np.where(c < xs[0], np.minimum(0.0, ys[0] + head * (c - xs[0])), out)
        beyond = c > xs[-1]
        if np.any(beyond):
            z0 = normal_tail_point(float(ys[-1]))
            z = z0 + (c[beyond] - xs[-1]) / self.tail_std
            out = np.array(out, dtype=np.float64)
            out[beyond] = [log10_normal_tail(float(v)) for v in np.atleast_1d(z)]
        return out

    def fmr(self, cosine: ArrayLike) -> NDArray[np.float64]:
        return np.power(10.0, self.log10(cosine))

    def cosine_at(self, log10_fmr: float) -> float:
        """The cosine similarity whose false-match rate is ``10 ** log10_fmr``."""
        xs, ys = self.cosines, self.log10_fmr
        v = min(0.0, float(log10_fmr))
        if v > ys[0]:
            head = (ys[1] - ys[0]) / (xs[1] - xs[0])
            return xs[0] + (v - ys[0]) / head
        if v >= ys[-1]:
            return float(np.interp(-v, -np.asarray(ys), np.asarray(xs)))
        z0 = normal_tail_point(ys[-1])
        return xs[-1] + (normal_tail_point(v) - z0) * self.tail_std

    def to_dict(self) -> dict[str, Any]:
        return {
            "cosine": [round(c, 6) for c in self.cosines],
            "log10_fmr": [round(v, 4) for v in self.log10_fmr],
            "tail_std": round(self.tail_std, 6),
            "pairs": self.pairs,
            "protocol": self.protocol,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FmrCurve:
        return cls(
            tuple(float(c) for c in d["cosine"]),
            tuple(float(v) for v in d["log10_fmr"]),
            float(d["tail_std"]),
            int(d.get("pairs", 0)),
            str(d.get("protocol", "")),
        )


def percent(curve: FmrCurve, cosine: ArrayLike) -> NDArray[np.float64]:
    """The similarity % of faces with this cosine similarity under ``curve``."""
    return percent_of_decades(-curve.log10(cosine))


def cosine_at_percent(curve: FmrCurve, value: float) -> float:
    """The cosine similarity that reads as ``value`` % under ``curve``."""
    return curve.cosine_at(-decades_of_percent(value))


def expected_strangers(fmr: float, faces: int) -> float:
    """Strangers a search of ``faces`` faces returns on average at this pair FMR."""
    return float(fmr) * max(0, int(faces))


__all__: Sequence[str] = [
    "DEFAULT_PERCENT",
    "SCALE_VERSION",
    "FmrCurve",
    "cosine_at_percent",
    "decades_of_percent",
    "expected_strangers",
    "fmr_of_percent",
    "log10_normal_tail",
    "normal_tail_point",
    "percent",
    "percent_of_decades",
]
