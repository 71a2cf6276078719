"""Fitting a pack's similarity calibration: the false-match curve of its impostor pairs
(`fit_impostors`: each labelled face against every face of other people's photos), a
same-person threshold and a logistic slope from scored pairs (`fit_calibration`), both
measured on LFW (`calibrate_on_lfw`: View 1 for the threshold, every image for the
impostors), and written to the home's or the package's ``calibration.json``
(`write_calibration`).

`workbench.faces.calibration` is the read side every search uses; this is the one
place that makes calibrations.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
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
    embed_images,
    images_root,
    lfw_images,
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
from workbench.faces.false_match import SCALE_VERSION, FmrCurve, normal_tail_point
from workbench.faces.pack import ModelPack
from workbench.settings import LimitSettings, Metric

WriteTarget = Literal["home", "package", "none"]


def save_calibration(cal: Calibration, path: Path) -> None:
    data = read_calibrations(path) if path.is_file() else {}
    # Keys a new fit does not set (the pack's clustering method) are kept.
    fresh = {
        k: v for k, v in asdict(cal).items() if k not in ("pack", "false_match") and v is not None
    }
    if cal.false_match is not None:
        fresh["false_match"] = cal.false_match.to_dict()
        fresh["version"] = SCALE_VERSION
    key = calibration_key(cal.pack, cal.metric)
    data[key] = {**data.get(key, {}), **fresh}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


FMR_KNOTS: tuple[float, ...] = (-1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0, -4.5, -5.0)
"""log10 FMR levels the curve is measured at, as far as the pairs allow."""
MIN_PAIRS_AT_KNOT = 500
"""A knot needs this many impostor pairs at or above it (its rate then known to ~5 %)."""
TAIL_FIT: tuple[float, float] = (-2.0, -4.0)
"""log10 FMR range whose normal fit gives the tail's spread (the bulk, free of label noise)."""


def histogram_edges(bins: int = 20000) -> NDArray[np.float64]:
    """Cosine bins for counting impostor pairs (1e-4 wide over [-1, 1])."""
    return np.linspace(-1.0, 1.0, bins + 1)


def fit_fmr_curve(
    edges: NDArray[np.floating], counts: NDArray[np.integer], protocol: str = ""
) -> FmrCurve:
    """The false-match curve of impostor pairs given as a histogram of cosine similarities.

    Knots at `FMR_KNOTS` while at least `MIN_PAIRS_AT_KNOT` pairs lie at or above
    them; the tail's spread from a least-squares normal fit of the quantiles in
    `TAIL_FIT` (cosine against the normal deviate), where the pairs are plentiful
    and LFW's label noise (one person under two names, bystanders who are other
    subjects) is too rare to bend it.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = float(counts.sum())
    if total < 100 * MIN_PAIRS_AT_KNOT:
        raise WorkbenchError(
            f"{int(total):,} impostor pairs are too few to measure false-match rates (need at "
            f"least {100 * MIN_PAIRS_AT_KNOT:,}): label more photos of more people"
        )
    above = counts[::-1].cumsum()[::-1]  # pairs at or above each bin's lower edge

    def quantile(level: float) -> float:
        """The cosine where the share of pairs at or above it falls to 10 ** level."""
        want = total * 10.0**level
        k = int(np.searchsorted(-above, -want, side="left"))  # first bin with fewer above
        k = min(max(k, 1), len(counts) - 1)
        hi_n, lo_n = above[k - 1], above[k]
        frac = 0.0 if hi_n == lo_n else (hi_n - want) / (hi_n - lo_n)
        return float(edges[k - 1] + frac * (edges[k] - edges[k - 1]))

    levels = [v for v in FMR_KNOTS if total * 10.0**v >= MIN_PAIRS_AT_KNOT]
    cos = [quantile(v) for v in levels]
    keep = [0] + [i for i in range(1, len(cos)) if cos[i] > cos[i - 1]]
    fit_levels = np.arange(TAIL_FIT[0], TAIL_FIT[1] - 1e-9, -0.25)
    fit_levels = fit_levels[total * 10.0**fit_levels >= MIN_PAIRS_AT_KNOT]
    z = np.array([normal_tail_point(float(v)) for v in fit_levels])
    c = np.array([quantile(float(v)) for v in fit_levels])
    std = float(np.polyfit(z, c, 1)[0]) if len(z) >= 2 else 0.1
    return FmrCurve(
        tuple(cos[i] for i in keep), tuple(levels[i] for i in keep), std, int(total), protocol
    )


IMPOSTOR_PROTOCOL = "each labelled face against every face of other people's photos"
CELLS = 8_000_000
"""Similarities computed at once while counting impostor pairs."""


def fit_impostors(
    vectors: NDArray[np.floating],
    photo_ids: NDArray[np.integer],
    identities: Sequence[str | None],
    protocol: str = IMPOSTOR_PROTOCOL,
) -> FmrCurve:
    """The false-match curve of every (labelled face, face of another person's photo) pair.

    ``identities[i]`` names the person of face ``i`` (None for a bystander nobody
    labelled). Bystanders count as strangers to every labelled face, as the 1:N
    evaluation counts them: an archive's galleries hold them too.
    """
    x = np.asarray(vectors, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    pids = np.asarray(photo_ids)
    names = np.array(["" if v is None else str(v) for v in identities], dtype=object)
    labelled = np.flatnonzero(names != "")
    edges = histogram_edges()
    counts = np.zeros(len(edges) - 1, np.int64)
    block = max(1, CELLS // max(1, len(x)))
    for start in range(0, len(labelled), block):
        rows = labelled[start : start + block]
        sims = x[rows] @ x.T
        other = (pids[rows][:, None] != pids[None, :]) & (names[rows][:, None] != names[None, :])
        counts += np.histogram(sims[other], edges)[0]
    return fit_fmr_curve(edges, counts, f"{protocol}: {int(counts.sum()):,} pairs")


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
            "false_match": None if cal.false_match is None else cal.false_match.to_dict(),
            "scale": {str(p): round(cal.cosine_at(p), 4) for p in (70, 75, 80, 85, 90, 95, 99)}
            if cal.false_match is not None
            else None,
            "seconds": round(self.seconds, 2),
            "written": str(self.written) if self.written is not None else None,
        }

    def summary(self) -> str:
        cal, t = self.calibration, self.train
        lines = [
            f"pack {cal.pack}: same-person threshold {cal.threshold:.4f} "
            f"({'cosine' if cal.metric == 'cosine' else 'L2 distance'}), "
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
        if cal.false_match is not None:
            fm = cal.false_match
            lines.append(f"  false matches measured on {fm.pairs:,} impostor pairs ({fm.protocol})")
            lines.append(
                "  similarity % → cosine: "
                + ", ".join(f"{p} % {cal.cosine_at(p):.3f}" for p in (70, 80, 85, 90, 95))
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
    impostor_images: int | None = None,
) -> LfwCalibration:
    """Fit ``pack``'s calibration for ``metric``: the false-match curve on every image of
    the LFW folder (``impostor_images``: that many, evenly spaced; 0: none), the
    same-person threshold on the ``pairs`` file, checked on ``check``.

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
    if impostor_images != 0:
        paths = lfw_images(lfw_dir, impostor_images)
        embed_images(pack, paths, cache=cache, limits=limits, progress=progress, desc="impostors")
        curve = impostor_curve({p: cache[p] for p in paths}, root)
        cal = replace(cal, false_match=curve, version=SCALE_VERSION)
    return LfwCalibration(cal, train, checked, time.perf_counter() - start)


def impostor_curve(images: dict[Path, EmbeddedImage], root: Path) -> FmrCurve:
    """The false-match curve of embedded LFW images: each image's chosen face is its
    person (the folder's name), its other faces are bystanders."""
    vectors: list[NDArray[np.float32]] = []
    photos: list[int] = []
    names: list[str | None] = []
    for k, (path, e) in enumerate(images.items()):
        if e.all_faces is None or e.how != "detected":
            continue
        for j, vec in enumerate(e.all_faces):
            vectors.append(vec)
            photos.append(k)
            names.append(path.parent.name if j == e.chosen else None)
    if not vectors:
        raise LfwError(f"no face was detected in the LFW images under {root}")
    protocol = f"LFW, {len(images):,} images: {IMPOSTOR_PROTOCOL}"
    return fit_impostors(np.stack(vectors), np.asarray(photos), names, protocol)


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
    "fit_fmr_curve",
    "fit_impostors",
    "impostor_curve",
    "platt_slope",
    "save_calibration",
    "write_calibration",
]
