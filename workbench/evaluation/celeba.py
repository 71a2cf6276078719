"""CelebA identities: retrieval (precision@1, mAP) and pair verification with a model pack.

Layout of a CelebA directory (the official release)::

    <celeba>/img_align_celeba/000001.jpg ...   aligned 178×218 crops (or img_celeba/,
                                                or the images directly in <celeba>)
    <celeba>/identity_CelebA.txt               "<image file name> <identity id>" per line
                                                (also found under <celeba>/Anno/)

Each selected image is embedded once, with the face a pack detects nearest the
image centre (`workbench.evaluation.lfw.embed_images`). **No-face policy:** an
image in which the pack finds no face is counted and named in the report
(``no_face_images``) and left out of everything else: it is neither a query
nor in the gallery, and no pair is drawn from it. Queries and pairs are formed
from the embedded images only.

Retrieval: every embedded image whose identity has at least two embedded
images is a query against all the other embedded images, ranked by cosine
similarity; the report has precision@1 and the mean over queries of the
average precision over the full ranking (ties in similarity are ranked in
identity-file order). Verification: ``pairs`` pairs drawn at random without
repetition, half of one identity and half of two, scored by cosine; measured
at the pack's calibrated threshold, by ROC, and by 10-fold cross-validation.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from workbench.errors import WorkbenchError
from workbench.evaluation.lfw import EmbeddedImage, LfwError, embed_images
from workbench.evaluation.metrics import (
    Confusion,
    KFoldReport,
    Roc,
    best_threshold,
    confusion,
    kfold_verification,
    roc,
)
from workbench.faces.calibration import load_calibration
from workbench.faces.pack import ModelPack
from workbench.monitoring.logs import progress_bar
from workbench.settings import LimitSettings

log = logging.getLogger(__name__)

CELEBA_IDENTITIES = "identity_CelebA.txt"
IMAGE_FOLDERS = ("img_align_celeba", "img_celeba")
"""Sub-folders searched for the images, in this order, before the CelebA directory itself."""
KFOLDS = 10
NO_FACE_POLICY = "excluded"

# Similarities of one block of queries against the whole gallery are held at
# once; this many matrix elements keeps a block near 150 MB even on the
# 202,599-image CelebA (about 40 queries a block there, 1024 on small sets).
_BLOCK_ELEMENTS = 2**23
_MAX_BLOCK = 1024

ThresholdSource = Literal["calibration", "given"]


class CelebaError(WorkbenchError):
    """A CelebA directory, identity file or image is missing or malformed."""


# ---- identity file -------------------------------------------------------------
def parse_identities(path: str | Path) -> dict[str, int]:
    """Image file name → identity id, in file order, from an ``identity_CelebA.txt``.

    Each non-blank line is ``<image file name> <identity id>``, the id a
    non-negative whole number. Raises `CelebaError` naming the file (and line)
    for an unreadable or empty file, a malformed line, an image name that leaves
    the image folder, and an image listed twice.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise CelebaError(f"cannot read the CelebA identity file {path} ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise CelebaError(f"{path} is not a text file; expected an identity_CelebA.txt") from e
    identities: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for no, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 2:
            raise CelebaError(
                f"{path}, line {no}: {line.strip()!r} is not '<image file name> <identity id>'"
            )
        name, token = tokens
        try:
            identity = int(token)
        except ValueError:
            raise CelebaError(
                f"{path}, line {no}: identity {token!r} of {name} is not a whole number"
            ) from None
        if identity < 0:
            raise CelebaError(f"{path}, line {no}: identity {token!r} of {name} is negative")
        parts = PurePath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise CelebaError(
                f"{path}, line {no}: image {name!r} is not a file name inside the image folder"
            )
        if name in identities:
            raise CelebaError(
                f"{path}, line {no}: image {name} is listed again (first on line "
                f"{first_line[name]}); each image has one identity"
            )
        identities[name] = identity
        first_line[name] = no
    if not identities:
        raise CelebaError(
            f"{path} is empty; expected '<image file name> <identity id>' lines "
            f"(CelebA's {CELEBA_IDENTITIES})"
        )
    return identities


def identities_path(celeba_dir: str | Path, identities: str | Path | None = None) -> Path:
    """The identity file: ``identities`` (a path, or a name inside ``celeba_dir``), else
    ``<celeba_dir>/identity_CelebA.txt`` or ``<celeba_dir>/Anno/identity_CelebA.txt``."""
    celeba_dir = Path(celeba_dir).expanduser()
    if identities is None:
        candidates = [celeba_dir / CELEBA_IDENTITIES, celeba_dir / "Anno" / CELEBA_IDENTITIES]
    else:
        p = Path(identities).expanduser()
        candidates = [p] if p.is_absolute() else [celeba_dir / p, p]
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(map(str, dict.fromkeys(candidates)))
    raise CelebaError(
        f"CelebA identity file not found (looked for {looked}); pass its path "
        f"(CelebA ships it as Anno/{CELEBA_IDENTITIES})"
    )


def images_root(celeba_dir: str | Path, first_image: str | None = None) -> Path:
    """The folder holding the images: ``img_align_celeba/``, ``img_celeba/`` or ``celeba_dir``.

    The first of these (and the nested ``img_align_celeba/img_align_celeba/``
    of some mirrors) that holds ``first_image`` wins; without such a file, the
    first that exists.
    """
    celeba_dir = Path(celeba_dir).expanduser()
    if not celeba_dir.is_dir():
        raise CelebaError(
            f"CelebA directory {celeba_dir} does not exist; it should hold img_align_celeba/ "
            f"(or the images themselves) and {CELEBA_IDENTITIES}"
        )
    folders = [celeba_dir / sub for sub in IMAGE_FOLDERS]
    folders += [f / f.name for f in folders] + [celeba_dir]
    existing = [f for f in folders if f.is_dir()]
    if first_image is not None:
        for f in existing:
            if (f / first_image).is_file():
                return f
    return existing[0]


# ---- selection -----------------------------------------------------------------
def select_images(
    identities: Mapping[str, int],
    *,
    max_images: int | None = None,
    min_per_identity: int = 2,
    seed: int = 0,
) -> list[str]:
    """The images to evaluate, in identity-file order.

    Only identities with at least ``min_per_identity`` images (default 2, at
    least 1) take part. Without ``max_images`` (default) all their images are
    used; with it, identities are taken in an order shuffled by ``seed``, all
    of each one's images, until ``max_images`` is reached; the last identity
    is cut to the room left, and once that room is under ``min_per_identity``
    the selection stops (so it may hold a few images fewer than ``max_images``).
    """
    if min_per_identity < 1:
        raise CelebaError(f"min_per_identity is {min_per_identity}; it must be at least 1")
    if max_images is not None and max_images < 1:
        raise CelebaError(f"max_images is {max_images}; give at least 1, or None for all images")
    by_identity: dict[int, list[str]] = {}
    for name, identity in identities.items():
        by_identity.setdefault(identity, []).append(name)
    eligible = sorted(i for i, names in by_identity.items() if len(names) >= min_per_identity)
    if not eligible:
        largest = max((len(v) for v in by_identity.values()), default=0)
        raise CelebaError(
            f"no identity has {min_per_identity} or more images (the largest has {largest}); "
            "lower min_per_identity"
        )
    if max_images is None:
        chosen = {name for i in eligible for name in by_identity[i]}
    else:
        chosen = set()
        rng = np.random.default_rng(seed)
        for k in rng.permutation(len(eligible)):
            room = max_images - len(chosen)
            if room < min_per_identity:
                break
            chosen.update(by_identity[eligible[int(k)]][:room])
    return [name for name in identities if name in chosen]


def _require_images(root: Path, names: list[str], source: Path) -> list[Path]:
    paths = [root / n for n in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" ({len(missing) - 1} more images are missing too)" if len(missing) > 1 else ""
        raise CelebaError(f"CelebA image {missing[0]} does not exist (listed in {source}){more}")
    return paths


# ---- retrieval -----------------------------------------------------------------
def _retrieval(
    emb: NDArray[np.float32], ids: NDArray[np.int64], progress: bool
) -> tuple[int, float, float]:
    """(queries, precision@1, mAP) of every image with a same-identity partner."""
    n = len(ids)
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    inverse = inverse.astype(np.int32)
    queries = np.flatnonzero(counts[inverse] >= 2)
    if len(queries) == 0:
        return 0, float("nan"), float("nan")
    block = max(1, min(_MAX_BLOCK, _BLOCK_ELEMENTS // n))
    hits_at_1 = 0
    ap_sum = 0.0
    starts = range(0, len(queries), block)
    for start in progress_bar(starts, desc="CelebA retrieval", unit="block", enabled=progress):
        q = queries[start : start + block]
        rows = np.arange(len(q))
        sims = emb[q] @ emb.T
        sims[rows, q] = -np.inf  # the query itself ranks last, and is not relevant
        order = np.argsort(-sims, axis=1, kind="stable")
        del sims
        relevant = inverse[order] == inverse[q][:, None]
        relevant &= order != q[:, None]
        hits_at_1 += int(relevant[:, 0].sum())
        r, c = np.nonzero(relevant)  # row-major: each row's hits in rank order
        row_start = np.searchsorted(r, rows)
        kth = np.arange(len(r)) - row_start[r] + 1
        ap = np.bincount(r, weights=kth / (c + 1.0), minlength=len(q))
        ap_sum += float((ap / (counts[inverse[q]] - 1)).sum())
    return len(queries), hits_at_1 / len(queries), ap_sum / len(queries)


# ---- verification pairs --------------------------------------------------------
def _sample_pairs(
    ids: NDArray[np.int64], same: int, different: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """(same' + different', 2) distinct image-index pairs: same-identity rows first.

    Every unordered pair of the population has one flat number (images sorted
    by identity; image ``i``'s same-identity partners after it, then its
    other-identity partners after its identity's block), so drawing distinct
    numbers draws distinct pairs, uniformly, even among CelebA's 2·10¹⁰.
    """
    n = len(ids)
    order = np.lexsort((np.arange(n), ids))
    _, starts, counts = np.unique(ids[order], return_index=True, return_counts=True)
    ends = np.repeat(starts + counts, counts)
    pos = np.arange(n)

    def draw(partners: NDArray[np.int64], first: NDArray[np.int64], k: int) -> NDArray[np.int64]:
        total = int(partners.sum())
        k = min(k, total)
        if k == 0:
            return np.empty((0, 2), dtype=np.int64)
        flat = rng.choice(total, size=k, replace=False)
        cum = np.cumsum(partners)
        i = np.searchsorted(cum, flat, side="right")
        j = first[i] + flat - (cum[i] - partners[i])
        return np.stack([order[i], order[j]], axis=1)

    return np.concatenate(
        [draw(ends - pos - 1, pos + 1, same), draw(n - ends, ends, different)]
    ).astype(np.int64)


# ---- report --------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # holds arrays, which have no single truth value for ==
class CelebaReport:
    """What `evaluate_celeba` measured; `to_dict` is the JSON document."""

    pack: str
    images_dir: Path
    identities_file: Path
    images: int
    """Images selected (before the no-face exclusion)."""
    identities: int
    """Identities among the selected images."""
    image_names: tuple[str, ...]
    """The selected images, in identity-file order."""
    embedded: int
    """Selected images in which the pack found a face."""
    no_face_images: tuple[str, ...]
    """Selected images without a detected face; excluded from retrieval and pairs."""
    multi_face_images: int
    """Embedded images with several faces (the one nearest the centre was used)."""
    queries: int
    precision_at_1: float
    mean_average_precision: float
    pair_images: tuple[tuple[str, str], ...]
    """The verification pairs (image names), same-identity pairs first."""
    scores: NDArray[np.float64]
    """Cosine similarity of each pair."""
    labels: NDArray[np.bool_]
    """Whether each pair is of one identity."""
    threshold: float
    threshold_source: ThresholdSource
    calibrated: bool
    """False when the threshold is the generic one of an uncalibrated pack."""
    at_threshold: Confusion
    roc: Roc
    best_threshold: float
    best_accuracy: float
    kfold: KFoldReport
    seconds: float
    """Wall time of the whole evaluation."""
    embed_seconds: float
    embedded_now: int
    """Images embedded by this call (the rest came from the cache)."""
    max_images: int | None = None
    min_per_identity: int = 2
    seed: int = 0

    @property
    def ms_per_image(self) -> float | None:
        """Embedding time per image embedded by this call; None when all were cached."""
        return 1000.0 * self.embed_seconds / self.embedded_now if self.embedded_now else None

    def to_dict(self) -> dict[str, Any]:
        c = self.at_threshold
        same = int(self.labels.sum())
        return {
            "protocol": "CelebA identities",
            "pack": self.pack,
            "images_dir": str(self.images_dir),
            "identities_file": str(self.identities_file),
            "max_images": self.max_images,
            "min_per_identity": self.min_per_identity,
            "seed": self.seed,
            "images": self.images,
            "identities": self.identities,
            "embedded": self.embedded,
            "no_face_policy": NO_FACE_POLICY,
            "no_face_images": {
                "count": len(self.no_face_images),
                "names": list(self.no_face_images),
            },
            "multi_face_images": self.multi_face_images,
            "queries": self.queries,
            "precision_at_1": self.precision_at_1,
            "map": self.mean_average_precision,
            "verification": {
                "pairs": len(self.labels),
                "same": same,
                "different": len(self.labels) - same,
                "threshold": self.threshold,
                "threshold_source": self.threshold_source,
                "calibrated": self.calibrated,
                "accuracy": c.accuracy,
                "precision": c.precision,
                "recall": c.recall,
                "f1": c.f1,
                "tp": c.tp,
                "fp": c.fp,
                "tn": c.tn,
                "fn": c.fn,
                "roc_auc": self.roc.auc,
                "best_threshold": self.best_threshold,
                "best_accuracy": self.best_accuracy,
                "kfold_accuracy": self.kfold.accuracy,
                "kfold_folds": len(self.kfold.folds),
            },
            "seconds": round(self.seconds, 3),
            "ms_per_image": round(ms, 2) if (ms := self.ms_per_image) is not None else None,
        }

    def _repr_html_(self) -> str | None:
        """Headline numbers and the ROC, for notebooks (`workbench.display.evaluation`)."""
        from workbench.display.evaluation import celeba_repr

        return celeba_repr(self)

    def summary(self) -> str:
        c = self.at_threshold
        lines = [
            f"pack {self.pack} on CelebA identities ({self.identities_file.name}): "
            f"{self.images} images of {self.identities} identities, {self.embedded} embedded",
            f"  no face in {len(self.no_face_images)} images (excluded)",
            f"  retrieval over {self.queries} queries: precision@1 {self.precision_at_1:.2%}, "
            f"mAP {self.mean_average_precision:.2%}",
            f"  {len(self.labels)} pairs ({int(self.labels.sum())} same): at the "
            f"{self.threshold_source} threshold {self.threshold:.4f} accuracy {c.accuracy:.2%}, "
            f"precision {c.precision:.2%}, recall {c.recall:.2%}, F1 {c.f1:.3f}",
            f"  ROC AUC {self.roc.auc:.4f}; best threshold {self.best_threshold:.4f} "
            f"({self.best_accuracy:.2%}); {len(self.kfold.folds)}-fold accuracy "
            f"{self.kfold.accuracy['mean']:.2%} ± {self.kfold.accuracy['std']:.2%}",
            f"  {self.seconds:.1f} s",
        ]
        return "\n".join(lines)


# ---- evaluation ----------------------------------------------------------------
def evaluate_celeba(
    pack: ModelPack,
    celeba_dir: str | Path,
    identities: str | Path | None = None,
    *,
    max_images: int | None = None,
    min_per_identity: int = 2,
    pairs: int = 3000,
    seed: int = 0,
    threshold: float | None = None,
    home: Path | None = None,
    cache: dict[Path, EmbeddedImage] | None = None,
    limits: LimitSettings | None = None,
    progress: bool = True,
) -> CelebaReport:
    """Measure ``pack`` on CelebA identities: retrieval and pair verification.

    ``identities`` defaults to ``<celeba_dir>/identity_CelebA.txt`` (or
    ``Anno/``); a relative path is looked up in ``celeba_dir`` first. The
    images are selected by `select_images` (``max_images`` None = all,
    ``min_per_identity`` default 2, ``seed`` default 0); all must exist before
    any is embedded. Images without a detected face are excluded (see the
    module docstring). ``pairs`` (default 3000, at least 2) verification pairs
    are drawn with ``np.random.default_rng(seed)``, half same-identity, fewer
    of a kind when the images cannot give that many distinct ones. The
    decision threshold is ``threshold`` when given, else the pack's
    calibration (``home``'s calibration file first when given, then the
    shipped one). ``cache`` (image path → embedding, updated in place) lets
    repeated evaluations embed each image once.
    """
    start = time.perf_counter()
    if pairs < 2:
        raise CelebaError(f"pairs is {pairs}; give at least 2 (one same, one different)")
    id_file = identities_path(celeba_dir, identities)
    table = parse_identities(id_file)
    names = select_images(
        table, max_images=max_images, min_per_identity=min_per_identity, seed=seed
    )
    root = images_root(celeba_dir, names[0])
    paths = _require_images(root, names, id_file)

    cache = {} if cache is None else cache
    todo = sum(p not in cache for p in dict.fromkeys(paths))
    embed_start = time.perf_counter()
    try:
        embed_images(
            pack, paths, cache=cache, limits=limits, progress=progress, desc=f"CelebA {pack.name}"
        )
    except LfwError as e:
        raise CelebaError(f"embedding the CelebA images of {id_file}: {e}") from e
    embed_seconds = time.perf_counter() - embed_start

    kept = [k for k, p in enumerate(paths) if cache[p].embedding is not None]
    no_face = tuple(names[k] for k, p in enumerate(paths) if cache[p].embedding is None)
    if no_face:
        log.info("CelebA: no face in %d of %d images; excluded", len(no_face), len(paths))
    ids = np.array([table[names[k]] for k in kept], dtype=np.int64)
    if len(kept) < 2 or len(np.unique(ids)) < 2:
        raise CelebaError(
            f"only {len(kept)} of {len(paths)} selected images have a face, of "
            f"{len(np.unique(ids))} identities; retrieval and verification need two identities "
            "with embedded images (raise max_images, or check the pack's detection settings)"
        )
    emb = np.stack([np.asarray(cache[paths[k]].embedding, dtype=np.float32) for k in kept])
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.where(norms > 0, norms, 1.0)

    queries, p_at_1, mean_ap = _retrieval(emb, ids, progress)
    if queries == 0:
        raise CelebaError(
            f"no identity among the {len(kept)} embedded images has two of them; "
            "retrieval needs same-identity partners (raise max_images or min_per_identity)"
        )

    rng = np.random.default_rng(seed)
    index = _sample_pairs(ids, pairs // 2, pairs - pairs // 2, rng)
    emb64 = emb.astype(np.float64)
    scores = np.einsum("ij,ij->i", emb64[index[:, 0]], emb64[index[:, 1]])
    labels = ids[index[:, 0]] == ids[index[:, 1]]
    folds = np.arange(len(labels)) % KFOLDS

    source: ThresholdSource
    if threshold is None:
        cal = load_calibration(pack.name, home=home)
        thr, source, calibrated = cal.cosine_threshold, "calibration", cal.calibrated
        if not cal.calibrated:
            log.warning(
                "pack %s has no calibration; measuring at the generic threshold %s",
                pack.name,
                thr,
            )
    else:
        if not math.isfinite(threshold):
            raise CelebaError(f"threshold is {threshold}; give a finite cosine similarity")
        thr, source, calibrated = float(threshold), "given", True
    best_thr, best_acc = best_threshold(scores, labels)
    return CelebaReport(
        pack=pack.name,
        images_dir=root,
        identities_file=id_file,
        images=len(paths),
        identities=len({table[n] for n in names}),
        image_names=tuple(names),
        embedded=len(kept),
        no_face_images=no_face,
        multi_face_images=sum(cache[paths[k]].faces > 1 for k in kept),
        queries=queries,
        precision_at_1=p_at_1,
        mean_average_precision=mean_ap,
        pair_images=tuple((names[kept[a]], names[kept[b]]) for a, b in index.tolist()),
        scores=scores,
        labels=labels,
        threshold=thr,
        threshold_source=source,
        calibrated=calibrated,
        at_threshold=confusion(scores, labels, thr),
        roc=roc(scores, labels),
        best_threshold=best_thr,
        best_accuracy=best_acc,
        kfold=kfold_verification(scores, labels, folds),
        seconds=time.perf_counter() - start,
        embed_seconds=embed_seconds,
        embedded_now=todo,
        max_images=max_images,
        min_per_identity=min_per_identity,
        seed=seed,
    )


__all__ = [
    "CELEBA_IDENTITIES",
    "IMAGE_FOLDERS",
    "CelebaError",
    "CelebaReport",
    "evaluate_celeba",
    "identities_path",
    "images_root",
    "parse_identities",
    "select_images",
]
