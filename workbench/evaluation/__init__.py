"""Measuring model packs on public benchmarks (LFW, CelebA) and calibrating their similarity %.

Runtimes load only when a pack is used; importing this package is cheap.
"""

from __future__ import annotations

from workbench.evaluation.calibrate import LfwCalibration, calibrate_on_lfw, write_calibration
from workbench.evaluation.celeba import CelebaError, CelebaReport, evaluate_celeba
from workbench.evaluation.compare import (
    Comparison,
    available_packs,
    compare_packs,
    detect_group_photos,
)
from workbench.evaluation.lfw import (
    LFW_VIEW1_TEST,
    LFW_VIEW1_TRAIN,
    LFW_VIEW2,
    LfwError,
    LfwPair,
    NoFacePolicy,
    PairScores,
    parse_pairs,
    score_pairs,
)
from workbench.evaluation.lfw_view2 import LfwReport, evaluate_lfw
from workbench.evaluation.metrics import KFoldReport, Roc, kfold_verification, roc

__all__ = [
    "LFW_VIEW1_TEST",
    "LFW_VIEW1_TRAIN",
    "LFW_VIEW2",
    "CelebaError",
    "CelebaReport",
    "Comparison",
    "KFoldReport",
    "LfwCalibration",
    "LfwError",
    "LfwPair",
    "LfwReport",
    "NoFacePolicy",
    "PairScores",
    "Roc",
    "available_packs",
    "calibrate_on_lfw",
    "compare_packs",
    "detect_group_photos",
    "evaluate_celeba",
    "evaluate_lfw",
    "kfold_verification",
    "parse_pairs",
    "roc",
    "score_pairs",
    "write_calibration",
]
