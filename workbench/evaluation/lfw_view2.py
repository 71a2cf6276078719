"""LFW the standard way: View 2 ``pairs.txt``, ten folds, thresholds from the other nine.

Each fold's threshold is the best-accuracy threshold of the other nine folds,
applied to the held-out fold; accuracy, precision, recall and F1 are reported
as mean ± std over the folds, ROC AUC and TAR at FAR 1e-3 over all pairs, and
every image where the pack found no face is counted with what was done about
it (`NoFacePolicy`). Images are detected, aligned and embedded by the pack
itself from the raw 250×250 LFW images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.evaluation.lfw import (
    LFW_VIEW2,
    EmbeddedImage,
    LfwError,
    LfwPair,
    NoFacePolicy,
    PairScores,
    images_root,
    pairs_path,
    parse_pairs,
    protocol_name,
    resolve_images,
    score_pairs,
)
from workbench.evaluation.metrics import KFoldReport, kfold_verification
from workbench.faces.pack import ModelPack
from workbench.settings import LimitSettings

NO_FACE_POLICIES: tuple[NoFacePolicy, ...] = ("fallback", "exclude", "wrong")


def slice_pairs(pairs: list[LfwPair], per_fold: int) -> list[LfwPair]:
    """The first ``per_fold`` matched and ``per_fold`` mismatched pairs of every fold."""
    out: list[LfwPair] = []
    for fold in sorted({p.fold for p in pairs}):
        in_fold = [p for p in pairs if p.fold == fold]
        out += [p for p in in_fold if p.same][:per_fold]
        out += [p for p in in_fold if not p.same][:per_fold]
    return out


@dataclass(frozen=True)
class LfwReport:
    """One pack on one LFW pairs file under the k-fold protocol."""

    pack: str
    protocol: str
    no_face_policy: NoFacePolicy
    scores: PairScores
    kfold: KFoldReport
    forced_wrong_pairs: int
    """Pairs counted wrong because an image had no face (policy ``wrong``)."""
    seconds: float
    """Wall time of the whole evaluation (embedding included)."""
    embed_seconds: float
    faces_detected: int
    """Faces the pack detected over all images (its own settings)."""

    @property
    def accuracy(self) -> float:
        return self.kfold.accuracy["mean"]

    @property
    def images(self) -> int:
        return self.scores.images

    @property
    def detection_rate(self) -> float:
        """Share of images where the pack found a face with its own settings."""
        return 1.0 - len(self.scores.no_face_images) / self.images if self.images else 0.0

    @property
    def ms_per_image(self) -> float | None:
        return 1000.0 * self.embed_seconds / self.images if self.embed_seconds else None

    @property
    def ms_per_face(self) -> float | None:
        if not self.embed_seconds or not self.faces_detected:
            return None
        return 1000.0 * self.embed_seconds / self.faces_detected

    def to_dict(self) -> dict[str, Any]:
        s = self.scores
        return {
            "pack": self.pack,
            "protocol": self.protocol,
            "pairs": len(s.pairs),
            "pairs_used": int(s.kept.sum()) if self.no_face_policy == "exclude" else len(s.pairs),
            **self.kfold.summary(),
            "images": self.images,
            "detection_rate": self.detection_rate,
            "faces_detected": self.faces_detected,
            "no_face": {
                "policy": self.no_face_policy,
                "images": len(s.no_face_images),
                "retried": len(s.retried_images),
                "centre": len(s.centre_images),
                "excluded_pairs": s.excluded_pairs if self.no_face_policy == "exclude" else 0,
                "forced_wrong_pairs": self.forced_wrong_pairs,
                "files": [str(p) for p in s.no_face_images],
            },
            "multi_face_images": s.multi_face_images,
            "off_first_choice": s.off_first_choice,
            "seconds": round(self.seconds, 2),
            "ms_per_image": _round(self.ms_per_image),
            "ms_per_face": _round(self.ms_per_face),
            "roc": self.kfold.roc.thinned(),
        }

    def _repr_html_(self) -> str | None:
        """Headline numbers and the ROC, for notebooks (`workbench.display.evaluation`)."""
        from workbench.display.evaluation import lfw_repr

        return lfw_repr(self)

    def summary(self) -> str:
        d = self.to_dict()
        nf = d["no_face"]
        acc, f1 = d["accuracy"], d["f1"]
        lines = [
            f"{self.pack} on {self.protocol}: accuracy {acc['mean']:.2%} ± {acc['std']:.2%} "
            f"({d['folds']} folds, {d['pairs_used']} pairs)",
            f"  precision {d['precision']['mean']:.4f}  recall {d['recall']['mean']:.4f}  "
            f"F1 {f1['mean']:.4f} ± {f1['std']:.4f}  ROC AUC {d['roc_auc']:.4f}  "
            f"TAR@FAR={d['tar_at_far']['far']:g} {d['tar_at_far']['tar']:.4f}",
            f"  threshold {d['threshold']['mean']:.4f} ± {d['threshold']['std']:.4f} (cosine)",
            f"  detection rate {self.detection_rate:.2%}: no face in {nf['images']} of "
            f"{self.images} images, policy {nf['policy']} (retried {nf['retried']}, centre "
            f"{nf['centre']}, excluded pairs {nf['excluded_pairs']}, forced wrong "
            f"{nf['forced_wrong_pairs']})",
            f"  {self.seconds:.1f} s"
            + (f", {self.ms_per_image:.1f} ms per image" if self.ms_per_image else "")
            + (f", {self.ms_per_face:.1f} ms per face" if self.ms_per_face else ""),
        ]
        return "\n".join(lines)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def evaluate_lfw(
    pack: ModelPack,
    lfw_dir: str | Path,
    pairs: str | Path = LFW_VIEW2,
    *,
    no_face: NoFacePolicy = "fallback",
    per_fold: int | None = None,
    far: float = 1e-3,
    cache: dict[Path, EmbeddedImage] | None = None,
    limits: LimitSettings | None = None,
    progress: bool = True,
) -> LfwReport:
    """Run the k-fold verification protocol of ``pairs`` (View 2 by default) with ``pack``.

    ``per_fold`` keeps only the first that many matched and mismatched pairs
    of each fold (a quick slice; the full protocol when None).
    """
    if no_face not in NO_FACE_POLICIES:
        raise LfwError(f"no-face policy {no_face!r} is not one of {', '.join(NO_FACE_POLICIES)}")
    start = time.perf_counter()
    root = images_root(lfw_dir)
    file = pairs_path(lfw_dir, pairs)
    chosen = parse_pairs(file)
    if per_fold is not None:
        chosen = slice_pairs(chosen, per_fold)
    if len({p.fold for p in chosen}) < 2:
        raise LfwError(f"{file}: the k-fold protocol needs at least two folds (View 2 pairs.txt)")
    paths = resolve_images(root, chosen, file)  # every image checked before any is embedded
    cache = {} if cache is None else cache
    scored = score_pairs(
        pack,
        chosen,
        root,
        source=file,
        cache=cache,
        limits=limits,
        progress=progress,
        fallback=no_face == "fallback",
    )
    s, y = scored.scores.copy(), scored.labels
    folds = np.array([p.fold for p in chosen])
    missing = np.isnan(s)
    forced = 0
    if no_face == "exclude":
        s, y, folds = s[~missing], y[~missing], folds[~missing]
    elif missing.any():
        # "wrong": a pair the pack could not judge counts against it. Cosines
        # lie in [-1, 1], so ±2 is beyond every threshold.
        s[missing] = np.where(y[missing], -2.0, 2.0)
        forced = int(missing.sum())
    if len(set(folds.tolist())) < 2:
        raise LfwError(f"{file}: the k-fold protocol needs at least two folds")
    kfold = kfold_verification(s, y, folds, far=far)
    used = [cache[p] for p in paths]
    return LfwReport(
        pack=pack.name,
        protocol=protocol_name(file)
        + (f" (first {per_fold} + {per_fold} per fold)" if per_fold else ""),
        no_face_policy=no_face,
        scores=scored,
        kfold=kfold,
        forced_wrong_pairs=forced,
        seconds=time.perf_counter() - start,
        embed_seconds=scored.seconds,
        faces_detected=sum(e.faces for e in used),
    )


__all__ = ["NO_FACE_POLICIES", "LfwReport", "evaluate_lfw", "slice_pairs"]
