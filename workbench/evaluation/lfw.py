"""LFW verification pairs: parse the pairs files and score them with a model pack.

Layout of an LFW directory (``images/`` may also be ``lfw/`` or absent)::

    <lfw>/images/<Name>/<Name>_<nnnn>.jpg
    <lfw>/pairsDevTrain.txt   View 1, training pairs (the calibration is fitted here)
    <lfw>/pairsDevTest.txt    View 1, test pairs (the fitted threshold is checked here)
    <lfw>/pairs.txt           View 2, ten folds

A View 1 file starts with the number ``n`` of matched pairs, then ``n`` matched
lines ``name n1 n2`` and ``n`` mismatched lines ``name1 n1 name2 n2``. A View 2
file starts with ``folds n`` and repeats that block ``folds`` times.

Each distinct image is embedded once. LFW photos are centred on their subject,
so of the faces a pack detects the one used is the best by ``score · (1 − d)``,
``d`` being the distance of the box centre from the image centre over the
half-diagonal. An image where the pack finds no face is recorded as such; pairs
touching it get no score and are left out of fits and accuracies, and the
counts are reported (`PairScores.excluded_pairs`, `PairScores.no_face_images`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from workbench.errors import ImageError, WorkbenchError
from workbench.faces.pack import ModelPack
from workbench.faces.types import AnalyzedFace, DetectedFace
from workbench.imaging.decode import decode_image
from workbench.monitoring.logs import progress_bar
from workbench.settings import LimitSettings

LFW_VIEW1_TRAIN = "pairsDevTrain.txt"
LFW_VIEW1_TEST = "pairsDevTest.txt"
LFW_VIEW2 = "pairs.txt"

_PROTOCOLS = {
    LFW_VIEW1_TRAIN: "LFW View 1 pairsDevTrain.txt",
    LFW_VIEW1_TEST: "LFW View 1 pairsDevTest.txt",
    LFW_VIEW2: "LFW View 2 pairs.txt",
}


class LfwError(WorkbenchError):
    """An LFW directory or pairs file is missing, incomplete or malformed."""


# ---- pairs files -------------------------------------------------------------
@dataclass(frozen=True)
class LfwPair:
    """Two LFW images and whether they show the same person."""

    name1: str
    n1: int
    name2: str
    n2: int
    same: bool
    fold: int = 0
    """0-based fold (View 2 has ten; View 1 files are one fold)."""
    line: int = 0
    """1-based line number in the pairs file."""

    @property
    def images(self) -> tuple[tuple[str, int], tuple[str, int]]:
        return (self.name1, self.n1), (self.name2, self.n2)


def _int(token: str, path: Path, line: int) -> int:
    try:
        value = int(token)
    except ValueError:
        raise LfwError(f"{path}, line {line}: {token!r} is not a whole number") from None
    if value < 0:
        raise LfwError(f"{path}, line {line}: {token!r} is negative")
    return value


def parse_pairs(path: str | Path) -> list[LfwPair]:
    """The pairs of a View 1 (``n``) or View 2 (``folds n``) pairs file, in file order.

    Raises `LfwError` naming the file and line for a malformed header or pair
    line, and when the matched / mismatched counts disagree with the header.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise LfwError(f"cannot read the LFW pairs file {path} ({e.strerror or e})") from e
    lines = [(i, ln.split()) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    if not lines:
        raise LfwError(f"{path} is empty; expected an LFW pairs file")
    head_no, head = lines[0]
    if len(head) == 1:
        folds, per_fold = 1, _int(head[0], path, head_no)
    elif len(head) == 2:
        folds, per_fold = _int(head[0], path, head_no), _int(head[1], path, head_no)
    else:
        raise LfwError(
            f"{path}, line {head_no}: header {' '.join(head)!r} is neither 'n' (View 1) "
            "nor 'folds n' (View 2)"
        )
    body = lines[1:]
    if len(body) != 2 * folds * per_fold:
        raise LfwError(
            f"{path}: the header says {folds} fold(s) of {per_fold} matched + {per_fold} "
            f"mismatched pairs ({2 * folds * per_fold} lines), but {len(body)} pair lines follow"
        )
    pairs: list[LfwPair] = []
    for k, (no, t) in enumerate(body):
        fold = k // (2 * per_fold) if per_fold else 0
        if len(t) == 3:
            pairs.append(
                LfwPair(t[0], _int(t[1], path, no), t[0], _int(t[2], path, no), True, fold, no)
            )
        elif len(t) == 4:
            pairs.append(
                LfwPair(t[0], _int(t[1], path, no), t[2], _int(t[3], path, no), False, fold, no)
            )
        else:
            raise LfwError(
                f"{path}, line {no}: {' '.join(t)!r} is neither 'name n1 n2' (matched) "
                "nor 'name1 n1 name2 n2' (mismatched)"
            )
    for f in range(folds):
        in_fold = [p for p in pairs if p.fold == f]
        matched = sum(p.same for p in in_fold)
        if matched != per_fold or len(in_fold) - matched != per_fold:
            where = f"fold {f + 1}" if folds > 1 else "the file"
            raise LfwError(
                f"{path}: {where} holds {matched} matched and {len(in_fold) - matched} "
                f"mismatched pairs; the header says {per_fold} of each"
            )
    return pairs


def images_root(lfw_dir: str | Path) -> Path:
    """The folder of per-person image folders: ``images/``, ``lfw/`` or ``lfw_dir`` itself."""
    lfw_dir = Path(lfw_dir).expanduser()
    if not lfw_dir.is_dir():
        raise LfwError(
            f"LFW directory {lfw_dir} does not exist; it should hold images/<Name>/<Name>_0001.jpg "
            "and the pairs files (pairsDevTrain.txt, pairsDevTest.txt, pairs.txt)"
        )
    for sub in ("images", "lfw"):
        if (lfw_dir / sub).is_dir():
            return lfw_dir / sub
    return lfw_dir


def lfw_images(lfw_dir: str | Path, limit: int | None = None) -> list[Path]:
    """LFW's images in name order; ``limit`` picks that many evenly spaced ones.

    Evenly spaced rather than the first N: the first N are a handful of
    people whose names start with A, a spread subset is many people, and it
    is the same subset on every run.
    """
    root = images_root(lfw_dir)
    paths = sorted(root.glob("*/*.jpg"))
    if not paths:
        raise LfwError(f"no LFW images (<Name>/<Name>_0001.jpg) under {root}")
    if limit is None or limit >= len(paths):
        return paths
    return [paths[i * len(paths) // limit] for i in range(limit)]


def image_path(root: Path, name: str, number: int) -> Path:
    return root / name / f"{name}_{number:04d}.jpg"


def pairs_path(lfw_dir: str | Path, pairs: str | Path) -> Path:
    """A pairs file given by name (looked up in ``lfw_dir``) or by path."""
    p = Path(pairs).expanduser()
    candidates = [p] if p.is_absolute() else [Path(lfw_dir).expanduser() / p, p]
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(map(str, candidates))
    raise LfwError(f"LFW pairs file {pairs} not found (looked for {looked})")


def resolve_images(root: Path, pairs: Sequence[LfwPair], source: Path | None = None) -> list[Path]:
    """Every distinct image of ``pairs``, in first-use order; raises naming a missing one."""
    seen: dict[Path, None] = {}
    missing: list[tuple[Path, LfwPair]] = []
    for pair in pairs:
        for name, number in pair.images:
            p = image_path(root, name, number)
            if p in seen:
                continue
            seen[p] = None
            if not p.is_file():
                missing.append((p, pair))
    if missing:
        p, pair = missing[0]
        where = f"{source}, line {pair.line}" if source is not None else f"pair line {pair.line}"
        more = f" ({len(missing) - 1} more images are missing too)" if len(missing) > 1 else ""
        raise LfwError(f"LFW image {p} does not exist ({where}){more}")
    return list(seen)


# ---- embedding -----------------------------------------------------------------
NoFacePolicy = Literal["fallback", "exclude", "wrong"]
"""What happens to an image where the pack detects no face.

``fallback``: detect again with lenient settings (score ≥ `RETRY_MIN_SCORE`),
and failing that embed the face where the benchmark puts it: the median box
and landmarks of the faces this pack found in the other images of that size
(LFW centres its subjects). ``exclude``: pairs touching it are left out.
``wrong``: pairs touching it count as wrong decisions. Every case is counted.
"""

RETRY_MIN_SCORE = 0.05
RETRY_MIN_FACE_SIZE = 8

HowFound = Literal["detected", "retry", "centre", "none"]


@dataclass(frozen=True)
class EmbeddedImage:
    """What a pack made of one benchmark image."""

    embedding: NDArray[np.float32] | None
    """The chosen face's L2-normalised embedding; None when no face was detected."""
    faces: int
    """Faces the pack detected with its own settings."""
    chosen: int = -1
    """Index (best-first, as the pack ranks them) of the face used; -1 without a face."""
    how: HowFound = "detected"
    """How the face used was found: by the pack, a lenient retry, the centre fallback, or not."""
    face: DetectedFace | None = None
    size: tuple[int, int] = (0, 0)
    """Image width and height."""
    all_faces: NDArray[np.float32] | None = None
    """Embeddings of every face the pack detected, best first (the chosen one at ``chosen``);
    the other faces are bystanders, strangers to the image's person."""


def choose_face(faces: Sequence[AnalyzedFace], width: int, height: int) -> int:
    """Index of the face to use: the best by ``score · (1 − distance from centre)``."""
    cx, cy, half_diag = width / 2.0, height / 2.0, math.hypot(width, height) / 2.0

    def merit(f: AnalyzedFace) -> float:
        x1, y1, x2, y2 = f.detection.box
        d = math.hypot((x1 + x2) / 2.0 - cx, (y1 + y2) / 2.0 - cy) / half_diag
        return f.detection.score * max(0.0, 1.0 - d)

    return max(range(len(faces)), key=lambda i: merit(faces[i]))


def _read_rgb(p: Path, limits: LimitSettings | None) -> NDArray[np.uint8]:
    try:
        data = p.read_bytes()
    except OSError as e:
        raise LfwError(f"cannot read image {p} ({e.strerror or e})") from e
    try:
        return decode_image(data, limits).rgb
    except ImageError as e:
        raise LfwError(f"image {p}: {e}") from e


def _chosen(
    faces: Sequence[AnalyzedFace], rgb: NDArray[np.uint8], how: HowFound, n: int
) -> EmbeddedImage:
    h, w = rgb.shape[:2]
    i = choose_face(faces, w, h)
    every = np.stack([np.asarray(f.embedding, dtype=np.float32) for f in faces])
    return EmbeddedImage(every[i], n, i, how, faces[i].detection, (w, h), every)


def centre_face(cache: dict[Path, EmbeddedImage], size: tuple[int, int]) -> DetectedFace:
    """Where faces sit in images of this size: the median detected box and landmarks.

    With no detection of that size to learn from, the ArcFace template
    scaled into the middle half of the image.
    """
    found = [
        e.face
        for e in cache.values()
        if e.face is not None and e.how != "centre" and e.size == size
    ]
    if found:
        boxes = np.median(np.array([f.box for f in found], dtype=np.float64), axis=0)
        marks = np.median(np.stack([f.landmarks for f in found]), axis=0)
        return DetectedFace(tuple(float(v) for v in boxes), marks.astype(np.float32), 0.0)  # type: ignore[arg-type]
    from workbench.faces.align import ARCFACE_TEMPLATE

    w, h = size
    side = min(w, h) / 2.0
    x0, y0 = (w - side) / 2.0, (h - side) / 2.0
    marks = ARCFACE_TEMPLATE * (side / 112.0) + (x0, y0)
    return DetectedFace((x0, y0, x0 + side, y0 + side), marks.astype(np.float32), 0.0)


def embed_images(
    pack: ModelPack,
    paths: Iterable[Path],
    *,
    cache: dict[Path, EmbeddedImage] | None = None,
    limits: LimitSettings | None = None,
    progress: bool = True,
    desc: str | None = None,
    fallback: bool = False,
    batch: int = 16,
) -> dict[Path, EmbeddedImage]:
    """Embed each image not yet in ``cache`` (updated in place, and returned).

    With ``fallback`` an image without a detected face is retried leniently
    and then embedded at the centre face (see `NoFacePolicy`); without it its
    entry has no embedding.
    """
    cache = {} if cache is None else cache
    unique = list(dict.fromkeys(paths))
    todo = [p for p in unique if p not in cache]
    pack.load()
    # Images a run without the fallback left faceless get it now.
    missed = [
        (p, _read_rgb(p, limits))
        for p in unique
        if fallback and p in cache and cache[p].how == "none"
    ]
    with progress_bar(
        total=len(todo), desc=desc or f"{pack.name}", unit="img", enabled=progress
    ) as bar:
        for k in range(0, len(todo), batch):
            chunk = todo[k : k + batch]
            images = [_read_rgb(p, limits) for p in chunk]
            for p, rgb, faces in zip(chunk, images, pack.analyze_many(images), strict=True):
                if faces:
                    cache[p] = _chosen(faces, rgb, "detected", len(faces))
                else:
                    h, w = rgb.shape[:2]
                    cache[p] = EmbeddedImage(None, 0, how="none", size=(w, h))
                    if fallback:
                        missed.append((p, rgb))
            bar.update(len(chunk))
    with pack.detection_settings(min_score=RETRY_MIN_SCORE, min_face_size=RETRY_MIN_FACE_SIZE):
        retried = [(p, rgb, pack.analyze(rgb)) for p, rgb in missed]
    for p, rgb, faces in retried:
        if faces:
            cache[p] = _chosen(faces, rgb, "retry", 0)
    for p, rgb, faces in retried:
        if not faces:
            h, w = rgb.shape[:2]
            face = centre_face(cache, (w, h))
            vec = np.asarray(pack.embed_at(rgb, face), dtype=np.float32)
            cache[p] = EmbeddedImage(vec, 0, 0, "centre", face, (w, h))
    return cache


# ---- scoring -------------------------------------------------------------------
@dataclass(frozen=True)
class PairScores:
    """Cosine similarity of every pair; NaN where an image of the pair had no face."""

    pack: str
    source: str
    """The pairs file (its name)."""
    pairs: tuple[LfwPair, ...]
    scores: NDArray[np.float64]
    labels: NDArray[np.bool_]
    images: int
    """Distinct images of these pairs."""
    no_face_images: tuple[Path, ...] = ()
    """Images of these pairs in which the pack found no face (with its own settings)."""
    retried_images: tuple[Path, ...] = ()
    """No-face images where a lenient retry found one (the fallback's first step)."""
    centre_images: tuple[Path, ...] = ()
    """No-face images embedded at the centre face (the fallback's last step)."""
    multi_face_images: int = 0
    """Images where the pack found several faces (the centre-weighted one was used)."""
    off_first_choice: int = 0
    """Images where the face used was not the detector's highest-scoring one."""
    seconds: float = 0.0
    """Wall time spent embedding images for these pairs (0 where all were cached)."""

    @property
    def kept(self) -> NDArray[np.bool_]:
        return ~np.isnan(self.scores)

    @property
    def excluded_pairs(self) -> int:
        return int((~self.kept).sum())

    def kept_scores(self) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        return self.scores[self.kept], self.labels[self.kept]

    def accuracy(self, threshold: float) -> float:
        """Share of kept pairs judged right by ``cosine > threshold`` ⇔ same person."""
        s, y = self.kept_scores()
        if len(s) == 0:
            return float("nan")
        return float(((s > threshold) == y).mean())

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs_file": self.source,
            "pairs": len(self.pairs),
            "kept_pairs": int(self.kept.sum()),
            "excluded_pairs": self.excluded_pairs,
            "images": self.images,
            "no_face_images": [str(p) for p in self.no_face_images],
            "retried_images": [str(p) for p in self.retried_images],
            "centre_images": [str(p) for p in self.centre_images],
            "multi_face_images": self.multi_face_images,
            "off_first_choice": self.off_first_choice,
            "seconds": round(self.seconds, 2),
        }


def score_pairs(
    pack: ModelPack,
    pairs: Sequence[LfwPair],
    root: Path,
    *,
    source: Path | None = None,
    cache: dict[Path, EmbeddedImage] | None = None,
    limits: LimitSettings | None = None,
    progress: bool = True,
    fallback: bool = False,
) -> PairScores:
    """Embed the images of ``pairs`` (under ``root``) once each and score every pair.

    Without ``fallback`` a pair touching an image with no face scores NaN.
    """
    paths = resolve_images(root, pairs, source)
    cache = {} if cache is None else cache
    start = time.perf_counter()
    label = source.name if source is not None else "pairs"
    embed_images(
        pack,
        paths,
        cache=cache,
        limits=limits,
        progress=progress,
        desc=f"{pack.name} {label}",
        fallback=fallback,
    )
    seconds = time.perf_counter() - start
    scores = np.full(len(pairs), np.nan, dtype=np.float64)
    for k, pair in enumerate(pairs):
        a, b = (cache[image_path(root, n, i)].embedding for n, i in pair.images)
        if a is not None and b is not None:
            scores[k] = float(np.dot(a.astype(np.float64), b.astype(np.float64)))
    used = [cache[p] for p in paths]
    return PairScores(
        pack=pack.name,
        source=label,
        pairs=tuple(pairs),
        scores=scores,
        labels=np.array([p.same for p in pairs], dtype=bool),
        images=len(paths),
        no_face_images=tuple(p for p, e in zip(paths, used, strict=True) if e.faces == 0),
        retried_images=tuple(p for p, e in zip(paths, used, strict=True) if e.how == "retry"),
        centre_images=tuple(p for p, e in zip(paths, used, strict=True) if e.how == "centre"),
        multi_face_images=sum(e.faces > 1 for e in used),
        off_first_choice=sum(e.chosen > 0 for e in used),
        seconds=seconds,
    )


def protocol_name(pairs_file: Path) -> str:
    return _PROTOCOLS.get(pairs_file.name, f"LFW pairs {pairs_file.name}")


__all__ = [
    "LFW_VIEW1_TEST",
    "LFW_VIEW1_TRAIN",
    "LFW_VIEW2",
    "EmbeddedImage",
    "LfwError",
    "LfwPair",
    "PairScores",
    "choose_face",
    "embed_images",
    "image_path",
    "images_root",
    "pairs_path",
    "parse_pairs",
    "protocol_name",
    "resolve_images",
    "score_pairs",
]
