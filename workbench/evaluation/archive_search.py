"""1:N search measured the way users search: one face against the whole archive.

Every labelled face whose identity has another labelled face in the archive is a
query; every other face of the pack (bystanders included) is the gallery it is
searched in, its own photo left out, exactly as a search by sample would answer
(the stored vector is the one a search by the same photo computes again). At each
threshold the evaluation counts, over all queries:

* **precision**: true matches among everything returned;
* **recall**: true matches returned among all true matches;
* **strangers per query** and the **share of queries with a stranger**;
* the **pair false-match rate**: strangers returned per stranger compared, which
  does not depend on the archive's size, and from it the strangers a query
  would meet in archives of 10k, 100k and 1M faces;
* what the calibration **predicts** for this gallery (its false-match rate at the
  threshold times the faces searched), next to the measured number.

Rank-1 (the best answer is the same person), the spread of the true matches'
percentages and the best stranger's percentage per query complete the picture.
The search is exact (numpy over the catalog's vectors): it measures the model and
the calibration, not an index's recall.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workbench.errors import WorkbenchError
from workbench.evaluation.cluster_labels import FaceLabels
from workbench.faces.calibration import Calibration
from workbench.store.catalog import Catalog

THRESHOLDS: tuple[float, ...] = (70.0, 80.0, 90.0, 95.0)
"""Similarity % reported besides the default (the search app's slider covers 70–95)."""
ARCHIVE_SIZES: tuple[int, ...] = (10_000, 100_000, 1_000_000)
CELLS = 4_000_000
"""Query × gallery similarities held at once (a block of queries; ~16 MB each mask)."""


@dataclass(frozen=True)
class ThresholdRow:
    """The answers of every query at one similarity threshold."""

    percent: float
    cosine: float
    precision: float
    recall: float
    strangers_per_query: float
    queries_with_stranger: float
    pair_fmr: float
    """Strangers returned / strangers compared (per pair, independent of the gallery's size)."""
    predicted_fmr: float | None
    """The calibration's false-match rate at this threshold (None: it has none)."""
    predicted_strangers_per_query: float | None
    """``predicted_fmr`` × the strangers a query is compared with here."""
    default: bool = False

    def expected_strangers(self, faces: int) -> float:
        """Strangers a query meets in an archive of ``faces`` faces, at the measured rate."""
        return self.pair_fmr * faces

    def to_dict(self) -> dict[str, Any]:
        return {
            "percent": self.percent,
            "cosine": round(self.cosine, 4),
            "default": self.default,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "strangers_per_query": round(self.strangers_per_query, 4),
            "queries_with_stranger": round(self.queries_with_stranger, 4),
            "pair_fmr": self.pair_fmr,
            "expected_strangers": {
                str(n): round(self.expected_strangers(n), 4) for n in ARCHIVE_SIZES
            },
            "predicted_fmr": self.predicted_fmr,
            "predicted_strangers_per_query": (
                None
                if self.predicted_strangers_per_query is None
                else round(self.predicted_strangers_per_query, 4)
            ),
        }


@dataclass(frozen=True)
class SearchEvaluation:
    """A 1:N evaluation of one pack in one home (``workbench evaluate search``)."""

    pack: str
    labels: str
    """Where the identities came from (an LFW folder or a labels CSV)."""
    gallery_faces: int
    labelled_faces: int
    queries: int
    identities: int
    """Identities with at least two labelled faces (the ones that can be searched for)."""
    true_matches: int
    rank1: float
    rows: tuple[ThresholdRow, ...]
    true_match_percentiles: dict[str, float]
    """Percent read by true matches at their 5th, 25th, 50th, 75th and 95th percentiles."""
    true_matches_at_99: float
    """Share of true matches reading ≥ 99 %."""
    best_stranger_percent: float
    """Median over queries of the best stranger's similarity %."""
    calibration: dict[str, Any]
    excluded_faces: int = 0
    """Faces left out of the gallery by the quality gate."""
    seconds: float = 0.0
    created: str = field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    )

    @property
    def default_row(self) -> ThresholdRow:
        return next(r for r in self.rows if r.default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "search",
            "created": self.created,
            "pack": self.pack,
            "labels": self.labels,
            "gallery_faces": self.gallery_faces,
            "excluded_faces": self.excluded_faces,
            "labelled_faces": self.labelled_faces,
            "queries": self.queries,
            "identities": self.identities,
            "true_matches": self.true_matches,
            "rank1": round(self.rank1, 4),
            "thresholds": [r.to_dict() for r in self.rows],
            "true_match_percentiles": {
                k: round(v, 2) for k, v in self.true_match_percentiles.items()
            },
            "true_matches_at_99": round(self.true_matches_at_99, 4),
            "best_stranger_percent": round(self.best_stranger_percent, 2),
            "calibration": self.calibration,
            "archive_sizes": list(ARCHIVE_SIZES),
            "seconds": round(self.seconds, 1),
        }

    def summary(self) -> str:
        lines = [
            f"pack {self.pack}: {self.queries} queries of {self.identities} identities against "
            f"{self.gallery_faces} faces ({self.labels})",
            f"  rank-1 {self.rank1:.2%}; true matches ≥ 99 %: {self.true_matches_at_99:.1%}; "
            f"median best stranger {self.best_stranger_percent:.1f} %",
            "  %      cosine  precision  recall  strangers/q  q with stranger  pair FMR   "
            "predicted/q  at 10k / 100k / 1M",
        ]
        for r in self.rows:
            pred = (
                "—"
                if r.predicted_strangers_per_query is None
                else f"{r.predicted_strangers_per_query:.3g}"
            )
            at = " / ".join(f"{r.expected_strangers(n):.3g}" for n in ARCHIVE_SIZES)
            lines.append(
                f"  {r.percent:5.1f}{'*' if r.default else ' '} {r.cosine:6.3f}  "
                f"{r.precision:9.3f}  {r.recall:6.3f}  {r.strangers_per_query:11.3g}  "
                f"{r.queries_with_stranger:15.1%}  {r.pair_fmr:8.2g}  {pred:>11}  {at}"
            )
        lines.append(f"  (* the default threshold) {self.seconds:.1f} s")
        return "\n".join(lines)

    def save(self, home: Path) -> Path:
        """Write the JSON document to ``<home>/evaluations/search-<time>.json``."""
        from workbench.evaluation.compare import save_evaluation

        return save_evaluation(self.to_dict(), home, "search", self.created)


def measure_search(
    vectors: NDArray[np.float32],
    photo_ids: NDArray[np.int64],
    identities: Sequence[str | None],
    calibration: Calibration,
    percents: Sequence[float],
    default_percent: float,
    searchable: NDArray[np.bool_] | None = None,
) -> tuple[int, int, int, float, list[ThresholdRow], NDArray[np.float64], NDArray[np.float64]]:
    """Score every labelled face with a labelled partner against all the others.

    ``vectors`` are the gallery (unit rows), ``identities[i]`` the person of row ``i``
    or None for a face nobody labelled (a bystander: a stranger to every query).
    ``searchable`` marks the faces a search may answer with (the quality gate); a
    true match that is not searchable counts as missed. Returns (queries, identities
    searched for, true matches, rank-1, rows, the true matches' cosines as a search
    sees them, each query's best stranger cosine).
    """
    n = len(vectors)
    ident = np.array(["" if v is None else str(v) for v in identities], dtype=object)
    labelled = ident != ""
    codes = np.full(n, -1, dtype=np.int64)
    names, inverse = np.unique(ident[labelled].astype(str), return_inverse=True)
    codes[labelled] = inverse
    per_identity = np.bincount(codes[labelled], minlength=len(names))
    query_rows = np.flatnonzero(labelled & (per_identity[np.maximum(codes, 0)] >= 2))
    if len(query_rows) == 0:
        raise WorkbenchError(
            "no identity has two labelled faces in this home: a 1:N search evaluation needs "
            "at least one person photographed twice (check the labels and the ingest)"
        )
    answer = np.ones(n, dtype=bool) if searchable is None else np.asarray(searchable, bool)
    levels = sorted({*map(float, percents), float(default_percent)})
    cos = np.array([calibration.cosine_at(p) for p in levels], dtype=np.float32)
    tp = np.zeros(len(levels), np.int64)
    fp = np.zeros(len(levels), np.int64)
    with_fp = np.zeros(len(levels), np.int64)
    compared = 0
    total_true = 0
    rank1 = 0
    true_cos: list[NDArray[np.float32]] = []
    best_stranger = np.empty(len(query_rows), np.float32)
    block = max(1, min(1024, CELLS // max(1, n)))
    for start in range(0, len(query_rows), block):
        rows = query_rows[start : start + block]
        sims = vectors[rows] @ vectors.T
        own = photo_ids[rows][:, None] == photo_ids[None, :]
        same = (codes[rows][:, None] == codes[None, :]) & ~own
        total_true += int(same.sum())
        sims[own | ~answer[None, :]] = -np.inf
        same &= answer[None, :]
        stranger = ~same & ~own & answer[None, :]
        compared += int(stranger.sum())
        rank1 += int(same[np.arange(len(rows)), sims.argmax(axis=1)].sum())
        true_cos.append(sims[same])
        best_stranger[start : start + len(rows)] = np.where(stranger, sims, -np.inf).max(axis=1)
        for j, c in enumerate(cos):
            hit = sims >= c
            tp[j] += int((hit & same).sum())
            wrong = (hit & stranger).sum(axis=1)
            fp[j] += int(wrong.sum())
            with_fp[j] += int((wrong > 0).sum())
    queries = len(query_rows)
    strangers_each = compared / queries
    fmr_of = getattr(calibration, "false_match_rate", None)
    out = []
    for j, p in enumerate(levels):
        returned = tp[j] + fp[j]
        predicted = float(fmr_of(float(cos[j]))) if fmr_of is not None else None
        out.append(
            ThresholdRow(
                percent=p,
                cosine=float(cos[j]),
                precision=float(tp[j] / returned) if returned else 1.0,
                recall=float(tp[j] / total_true),
                strangers_per_query=float(fp[j] / queries),
                queries_with_stranger=float(with_fp[j] / queries),
                pair_fmr=float(fp[j] / compared) if compared else 0.0,
                predicted_fmr=predicted,
                predicted_strangers_per_query=(
                    None if predicted is None else predicted * strangers_each
                ),
                default=p == float(default_percent),
            )
        )
    return (
        queries,
        int((per_identity >= 2).sum()),
        total_true,
        rank1 / queries,
        out,
        np.concatenate(true_cos).astype(np.float64),
        best_stranger.astype(np.float64),
    )


def evaluate_search(
    catalog: Catalog,
    pack: str,
    labels: FaceLabels,
    calibration: Calibration,
    *,
    default_percent: float,
    percents: Sequence[float] = THRESHOLDS,
    labels_name: str = "",
    searchable: Callable[[NDArray[np.int64]], NDArray[np.bool_]] | None = None,
) -> SearchEvaluation:
    """1:N search of ``pack``'s labelled faces against all its faces in ``catalog``.

    ``searchable`` says which faces a search may answer with (the quality gate, given
    the face ids); a true match it drops counts as missed.
    """
    started = time.perf_counter()
    face_ids, photo_ids, vectors = catalog.face_vectors(pack)
    if len(face_ids) == 0:
        raise WorkbenchError(f"pack {pack} has no faces in this home: ingest the labelled photos")
    mask = None if searchable is None else np.asarray(searchable(face_ids), dtype=bool)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    by_face = dict(zip(labels.face_ids.tolist(), labels.identities.tolist(), strict=True))
    identities = [by_face.get(int(f)) for f in face_ids]
    queries, people, true, rank1, rows, true_cos, best = measure_search(
        vectors, photo_ids, identities, calibration, percents, default_percent, mask
    )
    true_cos = true_cos[np.isfinite(true_cos)]
    true_pct = np.asarray(calibration.percent(true_cos), dtype=np.float64)
    best_pct = np.asarray(calibration.percent(best[np.isfinite(best)]), dtype=np.float64)
    return SearchEvaluation(
        pack=pack,
        labels=labels_name,
        gallery_faces=len(face_ids),
        labelled_faces=sum(v is not None for v in identities),
        queries=queries,
        identities=people,
        true_matches=true,
        rank1=rank1,
        rows=tuple(rows),
        true_match_percentiles={
            f"p{q}": float(np.percentile(true_pct, q)) for q in (5, 25, 50, 75, 95)
        },
        true_matches_at_99=float((true_pct >= 99.0).mean()),
        best_stranger_percent=float(np.median(best_pct)) if len(best_pct) else 0.0,
        calibration=_calibration_summary(calibration),
        excluded_faces=0 if mask is None else int((~mask).sum()),
        seconds=time.perf_counter() - started,
    )


def _calibration_summary(cal: Calibration) -> dict[str, Any]:
    curve = cal.false_match
    return {
        "pack": cal.pack,
        "version": cal.version,
        "calibrated": cal.calibrated,
        "false_match": None if curve is None else curve.protocol,
        "impostor_pairs": None if curve is None else curve.pairs,
    }


def photo_folder(lfw_dir: str | Path | None, labels_csv: str | Path | None) -> Path:
    """The folder whose photos a 1:N evaluation ingests: LFW's images, or the labels' own."""
    if (lfw_dir is None) == (labels_csv is None):
        raise WorkbenchError("give an LFW folder (--lfw-dir) or a labels CSV (--labels), one")
    if lfw_dir is not None:
        from workbench.evaluation.lfw import images_root

        return images_root(lfw_dir)
    path = Path(labels_csv).expanduser()  # type: ignore[arg-type]
    if not path.is_file():
        raise WorkbenchError(f"labels file {path} does not exist (a CSV of path,identity)")
    return path.parent


def labelled_faces(
    catalog: Catalog,
    pack: str,
    lfw_dir: str | Path | None = None,
    labels_csv: str | Path | None = None,
) -> tuple[FaceLabels, str]:
    """The labelled face of each labelled photo in the catalog, and what labelled it.

    LFW: the folder's name, on the face nearest the centre; a labels CSV: its
    identity column, on the photo's largest face.
    """
    from workbench.evaluation.cluster_labels import face_labels, read_labels_csv, read_lfw_labels

    photo_folder(lfw_dir, labels_csv)
    if lfw_dir is not None:
        return face_labels(catalog, pack, read_lfw_labels(lfw_dir), "centre"), f"LFW {lfw_dir}"
    return (
        face_labels(catalog, pack, read_labels_csv(labels_csv), "largest"),  # type: ignore[arg-type]
        f"labels {labels_csv}",
    )


__all__ = [
    "ARCHIVE_SIZES",
    "labelled_faces",
    "photo_folder",
    "THRESHOLDS",
    "SearchEvaluation",
    "ThresholdRow",
    "evaluate_search",
    "measure_search",
]
