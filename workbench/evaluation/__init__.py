"""Measuring model packs on public benchmarks (LFW) and calibrating their similarity %.

Runtimes load only when a pack is used; importing this package is cheap.
"""

from __future__ import annotations

from workbench.evaluation.lfw import (
    LFW_VIEW1_TEST,
    LFW_VIEW1_TRAIN,
    LFW_VIEW2,
    LfwCalibration,
    LfwError,
    LfwPair,
    PairScores,
    calibrate_on_lfw,
    parse_pairs,
    score_pairs,
    write_calibration,
)

__all__ = [
    "LFW_VIEW1_TEST",
    "LFW_VIEW1_TRAIN",
    "LFW_VIEW2",
    "LfwCalibration",
    "LfwError",
    "LfwPair",
    "PairScores",
    "calibrate_on_lfw",
    "parse_pairs",
    "score_pairs",
    "write_calibration",
]
