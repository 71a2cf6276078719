"""Fitting a pack's similarity calibration: a threshold and a logistic slope from scored
pairs (`fit_calibration`), measured on LFW View 1 (`calibrate_on_lfw`), and written to the
home's or the package's ``calibration.json`` (`write_calibration`).

`workbench.faces.calibration` is the read side every search uses; this is the one
place that makes calibrations.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from workbench.errors import WorkbenchError
from workbench.evaluation.lfw import (
    LFW_VIEW1_TEST,
    LFW_VIEW1_TRAIN,
    EmbeddedImage,
    LfwError,
    PairScores,
    images_root,
    pairs_path,
    parse_pairs,
    protocol_name,
    resolve_images,
    score_pairs,
)
from workbench.evaluation.metrics import best_threshold
from workbench.faces.calibration import (
    Calibration,
    calibration_key,
    cosine_to_l2,
    home_calibration_path,
    package_calibration_path,
    read_calibrations,
)
from workbench.faces.pack import ModelPack
from workbench.settings import LimitSettings, Metric

WriteTarget = Literal["home", "package", "none"]


def save_calibration(cal: Calibration, path: Path) -> None:
    data = read_calibrations(path) if path.is_file() else {}
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


@dataclass(frozen=True)
class LfwCalibration:
    """A pack's calibration fitted on one LFW pairs file, checked on another."""

    calibration: Calibration
    train: PairScores
    check: PairScores | None = None
    seconds: float = 0.0
    written: Path | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        cal = self.calibration
        return {
            "pack": cal.pack,
            "metric": cal.metric,
            "threshold": cal.threshold,
            "slope": cal.slope,
            "protocol": cal.protocol,
            "train_accuracy": cal.accuracy,
            "train": self.train.to_dict(),
            "check_protocol": cal.check_protocol,
            "check_accuracy": cal.check_accuracy,
            "check": self.check.to_dict() if self.check is not None else None,
            "seconds": round(self.seconds, 2),
            "written": str(self.written) if self.written is not None else None,
        }

    def summary(self) -> str:
        cal, t = self.calibration, self.train
        lines = [
            f"pack {cal.pack}: threshold {cal.threshold:.4f} "
            f"({'cosine' if cal.metric == 'cosine' else 'L2 distance'} read as 85 %), "
            f"slope {cal.slope:.2f}",
            f"  fitted on {cal.protocol}: accuracy {cal.accuracy:.2%} on {cal.pairs} pairs, "
            f"{t.excluded_pairs} excluded (no face in {len(t.no_face_images)} images)",
        ]
        if self.check is not None and cal.check_accuracy is not None:
            c = self.check
            lines.append(
                f"  checked on {cal.check_protocol}: accuracy {cal.check_accuracy:.2%} on "
                f"{cal.check_pairs} pairs, {c.excluded_pairs} excluded "
                f"(no face in {len(c.no_face_images)} images)"
            )
        for p in (*t.no_face_images, *(self.check.no_face_images if self.check else ())):
            lines.append(f"  no face: {p}")
        lines.append(f"  {self.seconds:.1f} s")
        if self.written is not None:
            lines.append(f"  written to {self.written}")
        return "\n".join(lines)


def calibrate_on_lfw(
    pack: ModelPack,
    lfw_dir: str | Path,
    pairs: str | Path = LFW_VIEW1_TRAIN,
    check: str | Path | None = LFW_VIEW1_TEST,
    *,
    limits: LimitSettings | None = None,
    progress: bool = True,
    metric: Metric = "cosine",
) -> LfwCalibration:
    """Fit ``pack``'s calibration for ``metric`` on the ``pairs`` file, and check its
    threshold on ``check``.

    Pairs touching an image without a detected face are left out of the fit
    and of both accuracies; their counts are part of the result.
    """
    start = time.perf_counter()
    root = images_root(lfw_dir)
    train_file = pairs_path(lfw_dir, pairs)
    train_pairs = parse_pairs(train_file)
    check_file = pairs_path(lfw_dir, check) if check is not None else None
    check_pairs = parse_pairs(check_file) if check_file is not None else None
    # Every image of both files must exist before the first one is embedded.
    resolve_images(root, train_pairs, train_file)
    if check_pairs is not None:
        resolve_images(root, check_pairs, check_file)

    pack.load()
    cache: dict[Path, EmbeddedImage] = {}
    train = score_pairs(
        pack, train_pairs, root, source=train_file, cache=cache, limits=limits, progress=progress
    )
    scores, labels = train.kept_scores()
    if labels.sum() < 2 or (~labels).sum() < 2:
        raise LfwError(
            f"{train_file}: only {int(labels.sum())} matched and {int((~labels).sum())} "
            f"mismatched pairs have a face in both images ({train.excluded_pairs} excluded); "
            "too few to calibrate"
        )
    cal = replace(
        fit_calibration(pack.name, scores, labels, metric),
        protocol=protocol_name(train_file),
        excluded_pairs=train.excluded_pairs,
    )
    checked = None
    if check_pairs is not None and check_file is not None:
        checked = score_pairs(
            pack,
            check_pairs,
            root,
            source=check_file,
            cache=cache,
            limits=limits,
            progress=progress,
        )
        cal = replace(
            cal,
            check_protocol=protocol_name(check_file),
            check_accuracy=checked.accuracy(cal.cosine_threshold),
            check_pairs=int(checked.kept.sum()),
            check_excluded_pairs=checked.excluded_pairs,
        )
    return LfwCalibration(cal, train, checked, time.perf_counter() - start)


def calibration_target(target: WriteTarget | str | Path, home: Path | None = None) -> Path | None:
    """The file a calibration goes to: the home's own, the package's, a path, or none."""
    if target == "none":
        return None
    if target == "home":
        if home is None:
            raise WorkbenchError("writing the calibration to the workbench home needs a home")
        return home_calibration_path(home)
    if target == "package":
        return package_calibration_path()
    return Path(target).expanduser()


def write_calibration(
    result: LfwCalibration, target: WriteTarget | str | Path, home: Path | None = None
) -> LfwCalibration:
    """Save the calibration (merged into the target file); returns ``result`` with ``written``."""
    path = calibration_target(target, home)
    if path is None:
        return result
    save_calibration(result.calibration, path)
    return replace(result, written=path)


__all__ = [
    "LfwCalibration",
    "WriteTarget",
    "calibrate_on_lfw",
    "calibration_target",
    "fit_calibration",
    "platt_slope",
    "save_calibration",
    "write_calibration",
]
