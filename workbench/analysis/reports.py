"""Read-only summaries of a workbench for the notebooks and the scheduled report.

Tables come back as pandas DataFrames, charts as plotly figures (plotly is
imported only by the ``*_figure`` functions). Nothing here writes to the
catalog or runs a model; `write_last_report` is the one file it writes, the
report notebook's bookmark.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from workbench._optional import require
from workbench.errors import ConfigurationError
from workbench.faces.calibration import Calibration
from workbench.faces.pack import ModelPack
from workbench.store.catalog import Catalog
from workbench.store.faces import FaceStore
from workbench.store.models import Face, Photo, Run, as_utc
from workbench.store.processes import pid_alive

LAST_REPORT = "last_report.json"
"""The report notebook's bookmark in ``<home>/reports/``: when it last ran."""


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value)


def _died(run: Run) -> bool:
    """A run still marked ``running`` whose process, on this host, is gone."""
    return (
        run.status == "running"
        and run.host == socket.gethostname()
        and run.pid is not None
        and not pid_alive(run.pid)
    )


# ---- counts -----------------------------------------------------------------
def counts_by_source_status(catalog: Catalog) -> pd.DataFrame:
    """Photos and their faces per source and status (columns source, status, photos, faces)."""
    with catalog.session() as s:
        rows = s.execute(
            select(
                Photo.source,
                Photo.status,
                func.count(Photo.id),
                func.coalesce(func.sum(Photo.n_faces), 0),
            )
            .group_by(Photo.source, Photo.status)
            .order_by(Photo.source, Photo.status)
        ).all()
    return pd.DataFrame(
        [(src, st, int(n), int(f)) for src, st, n, f in rows],
        columns=["source", "status", "photos", "faces"],
    )


def faces_per_photo(catalog: Catalog, pack: str) -> pd.DataFrame:
    """Faces of each analysed photo (columns photo_id, uri, source, status, faces).

    Only ``pack``'s faces count. Photos still ``pending`` or in ``error`` are left out.
    """
    with catalog.session() as s:
        counted = (
            select(Face.photo_id, func.count(Face.id).label("n"))
            .where(Face.pack == pack)
            .group_by(Face.photo_id)
            .subquery()
        )
        rows = s.execute(
            select(Photo.id, Photo.uri, Photo.source, Photo.status, counted.c.n)
            .outerjoin(counted, counted.c.photo_id == Photo.id)
            .where(Photo.status.in_(["done", "no_faces"]))
            .order_by(Photo.id)
        ).all()
    return pd.DataFrame(
        [(pid, uri, src, st, int(n or 0)) for pid, uri, src, st, n in rows],
        columns=["photo_id", "uri", "source", "status", "faces"],
    )


def runs(catalog: Catalog, limit: int = 50) -> pd.DataFrame:
    """The newest ``limit`` processing runs (ingest, embed; not clustering), oldest first.

    Columns: run, kind, pack, status, started_at, finished_at, photos, faces,
    no_faces, errors, skipped, seconds, photos_per_second (NaN while a run
    has no duration).
    """
    with catalog.session() as s:
        rows = list(
            s.scalars(select(Run).where(Run.kind != "cluster").order_by(Run.id.desc()).limit(limit))
        )
    records = []
    for r in reversed(rows):
        counts = r.counts or {}
        started, finished = _utc(r.started_at), _utc(r.finished_at)
        seconds = counts.get("seconds")
        if seconds is None and started is not None and finished is not None:
            seconds = (finished - started).total_seconds()
        photos = int(counts.get("photos", 0))
        records.append(
            {
                "run": r.id,
                "kind": r.kind,
                "pack": r.pack,
                "status": "interrupted" if _died(r) else r.status,
                "started_at": started,
                "finished_at": finished,
                "photos": photos,
                "faces": int(counts.get("faces", 0)),
                "no_faces": int(counts.get("no_faces", 0)),
                "errors": int(counts.get("errors", 0)),
                "skipped": int(counts.get("skipped", 0)),
                "seconds": float(seconds) if seconds is not None else np.nan,
                "photos_per_second": photos / seconds if seconds else np.nan,
            }
        )
    columns = [
        "run",
        "kind",
        "pack",
        "status",
        "started_at",
        "finished_at",
        "photos",
        "faces",
        "no_faces",
        "errors",
        "skipped",
        "seconds",
        "photos_per_second",
    ]
    return pd.DataFrame(records, columns=columns)


def new_faces_since(catalog: Catalog, since: dt.datetime | None) -> pd.DataFrame:
    """Faces created after ``since``, per source and pack (columns source, pack, photos, faces).

    ``since=None`` counts every face (a first report). A naive ``since`` is
    read as UTC.
    """
    q = (
        select(
            Photo.source,
            Face.pack,
            func.count(func.distinct(Face.photo_id)),
            func.count(Face.id),
        )
        .join(Photo, Photo.id == Face.photo_id)
        .group_by(Photo.source, Face.pack)
        .order_by(Photo.source, Face.pack)
    )
    if since is not None:
        q = q.where(Face.created_at > as_utc(since))
    with catalog.session() as s:
        rows = s.execute(q).all()
    return pd.DataFrame(
        [(src, pack, int(p), int(f)) for src, pack, p, f in rows],
        columns=["source", "pack", "photos", "faces"],
    )


def recent_errors(catalog: Catalog, limit: int = 50) -> pd.DataFrame:
    """The newest ``limit`` photos in ``error`` (columns photo, source, error, updated_at)."""
    with catalog.session() as s:
        rows = s.execute(
            select(Photo.uri, Photo.source, Photo.error, Photo.updated_at)
            .where(Photo.status == "error")
            .order_by(Photo.updated_at.desc(), Photo.id.desc())
            .limit(limit)
        ).all()
    return pd.DataFrame(
        [(uri, src, err, _utc(at)) for uri, src, err, at in rows],
        columns=["photo", "source", "error", "updated_at"],
    )


# ---- search quality -----------------------------------------------------------
def latest_evaluation(
    home: str | Path, kind: str | None = "lfw"
) -> tuple[Path, dict[str, Any]] | None:
    """The newest ``<home>/evaluations/<kind>-*.json`` (by modification time) and its content;
    ``kind`` None: of any kind (``lfw``, ``search``, ``detectors``)."""
    pattern = "evaluations/*.json" if kind is None else f"evaluations/{kind}-*.json"
    files = sorted(Path(home).glob(pattern), key=lambda p: (p.stat().st_mtime, p.name))
    if not files:
        return None
    path = files[-1]
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigurationError(f"cannot read the evaluation {path}: {e}") from e


def search_quality(cal: Calibration, home: str | Path) -> dict[str, Any]:
    """The pack's calibration in use, and the newest evaluation under ``<home>/evaluations``.

    Keys: pack, calibrated, threshold (the same-person cosine of LFW View 1), accuracy,
    check_accuracy, protocol, false_match (how the similarity % was measured),
    cosine_at_85, evaluation_file and evaluation (the newest LFW View 2 comparison, None
    when there is none yet).
    """
    latest = latest_evaluation(home)
    curve = cal.false_match
    return {
        "pack": cal.pack,
        "calibrated": cal.calibrated,
        "threshold": cal.threshold,
        "accuracy": cal.accuracy,
        "check_accuracy": cal.check_accuracy,
        "protocol": cal.protocol,
        "false_match": None if curve is None else curve.protocol,
        "cosine_at_85": round(cal.cosine_at(85.0), 4),
        "evaluation_file": None if latest is None else str(latest[0]),
        "evaluation": None if latest is None else latest[1],
    }


def expected_strangers_table(cal: Calibration, gallery: int) -> pd.DataFrame:
    """Per similarity %: the pair false-match rate and the strangers a search of this
    archive (``gallery`` faces) and of 10k / 100k / 1M faces returns on average."""
    from workbench.faces.false_match import fmr_of_percent

    rows = []
    for pct in (70, 75, 80, 85, 90, 95):
        fmr = fmr_of_percent(pct)
        rows.append(
            {
                "similarity %": pct,
                "cosine": round(cal.cosine_at(pct), 3),
                "pair false-match rate": fmr,
                "this archive": fmr * gallery,
                "10k faces": fmr * 1e4,
                "100k faces": fmr * 1e5,
                "1M faces": fmr * 1e6,
            }
        )
    return pd.DataFrame(rows)


def search_evaluation_table(evaluation: dict[str, Any]) -> pd.DataFrame:
    """One row per threshold of an ``evaluate search`` (1:N) document."""
    rows = []
    for r in evaluation.get("thresholds", []):
        rows.append(
            {
                "similarity %": r["percent"],
                "default": r["default"],
                "precision": r["precision"],
                "recall": r["recall"],
                "strangers / query": r["strangers_per_query"],
                "predicted": r["predicted_strangers_per_query"],
                "queries with a stranger": r["queries_with_stranger"],
                "pair FMR": r["pair_fmr"],
                **{f"at {int(n):,}": v for n, v in r["expected_strangers"].items()},
            }
        )
    return pd.DataFrame(rows)


def strangers_figure(evaluation: dict[str, Any]) -> Any:
    """Strangers per query (measured and predicted, log scale) and recall by similarity %."""
    go = require("plotly.graph_objects", "notebooks", "workbench charts")
    table = search_evaluation_table(evaluation)
    fig = go.Figure()
    floor = 1.0 / max(1, int(evaluation.get("queries", 1)))
    fig.add_trace(
        go.Scatter(
            x=table["similarity %"],
            y=[max(v, floor / 2) for v in table["strangers / query"]],
            mode="lines+markers",
            name="strangers / query, measured",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=table["similarity %"],
            y=table["predicted"],
            mode="lines",
            line={"dash": "dash"},
            name="predicted by the calibration",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=table["similarity %"],
            y=table["recall"],
            mode="lines+markers",
            name="recall",
            yaxis="y2",
        )
    )
    fig.update_layout(
        title=f"1:N search, {evaluation.get('pack')}: {evaluation.get('queries')} queries "
        f"against {evaluation.get('gallery_faces')} faces",
        xaxis={"title": "similarity %"},
        yaxis={"title": "strangers per query", "type": "log"},
        yaxis2={"title": "recall", "overlaying": "y", "side": "right", "range": [0, 1.01]},
        legend={"x": 0.02, "y": 0.02},
    )
    return fig


# ---- the report's bookmark ----------------------------------------------------
def last_report_time(home: str | Path) -> dt.datetime | None:
    """When the report notebook last finished in this home (None before the first report)."""
    path = Path(home) / "reports" / LAST_REPORT
    if not path.is_file():
        return None
    try:
        return as_utc(dt.datetime.fromisoformat(json.loads(path.read_text())["time"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigurationError(
            f"{path} is not a report bookmark ({e}); delete it to count everything again"
        ) from e


def write_last_report(
    home: str | Path, when: dt.datetime, numbers: dict[str, Any] | None = None
) -> Path:
    """Record that a report covered everything up to ``when`` (the next report starts there)."""
    path = Path(home) / "reports" / LAST_REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"time": as_utc(when).isoformat(), "numbers": numbers or {}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


# ---- the vector index ---------------------------------------------------------------
def index_self_check(store: FaceStore, pack: str, n: int = 20) -> pd.DataFrame:
    """Search ``n`` of ``pack``'s stored faces (spread over the catalog) with their own
    embeddings.

    Each should find itself first. Columns: face_id, found (top-1 face id),
    cosine (its score), hit (found == face_id), nearest_face and
    nearest_cosine (the best *other* face: how close the nearest neighbour is).
    """
    collection = store.pack_row(pack).collection
    ids = sorted(store.catalog.face_ids(pack))
    columns = ["face_id", "found", "cosine", "hit", "nearest_face", "nearest_cosine"]
    if not ids or n <= 0:
        return pd.DataFrame([], columns=columns)
    picked = [ids[int(i)] for i in np.unique(np.linspace(0, len(ids) - 1, min(n, len(ids))))]
    faces = store.catalog.faces_by_ids(picked)
    queries = np.stack([faces[i].vector() for i in picked]).astype(np.float32)
    hits = store.index.search(collection, queries, top_k=2, pack=pack)
    records = []
    for face_id, per in zip(picked, hits, strict=True):
        top = per[0] if per else None
        other = next((h for h in per if h.face_id != face_id), None)
        records.append(
            (
                face_id,
                None if top is None else top.face_id,
                np.nan if top is None else top.score,
                top is not None and top.face_id == face_id,
                None if other is None else other.face_id,
                np.nan if other is None else other.score,
            )
        )
    return pd.DataFrame(records, columns=columns)


# ---- what ran where -------------------------------------------------------------
def example_photo(catalog: Catalog, pack: str) -> str | None:
    """A photo to search with when a notebook names none: the oldest local photo in which
    ``pack`` found faces and whose file is still there; ``None`` when there is none."""
    q = (
        select(Photo.uri)
        .join(Face, Face.photo_id == Photo.id)
        .where(Face.pack == pack, Photo.origin == "local")
        .group_by(Photo.id, Photo.uri)
        .order_by(Photo.id)
        .limit(100)
    )
    with catalog.session() as s:
        return next((uri for (uri,) in s.execute(q) if Path(uri).is_file()), None)


def device_used(pack: ModelPack | None) -> str:
    """``cuda`` or ``cpu``: where the pack's models run (``not loaded`` before first use).

    Read from the loaded models, so it says what ``device=auto`` resolved to;
    asking never loads a pack.
    """
    return pack.device_used if pack is not None and pack.loaded else "not loaded"


# ---- figures ----------------------------------------------------------------------
def _px() -> Any:
    return require("plotly.express", "notebooks", "workbench charts")


def counts_figure(counts: pd.DataFrame) -> Any:
    """Bar chart of photos per source, stacked by status (from `counts_by_source_status`)."""
    return _px().bar(
        counts,
        x="source",
        y="photos",
        color="status",
        title="Photos per source and status",
        hover_data=["faces"] if "faces" in counts else None,
    )


def faces_histogram(per_photo: pd.DataFrame) -> Any:
    """Histogram of faces per analysed photo (from `faces_per_photo`)."""
    fig = _px().histogram(
        per_photo, x="faces", color="source", title="Faces per photo", labels={"faces": "faces"}
    )
    fig.update_layout(bargap=0.1, yaxis_title="photos")
    return fig


def runs_figure(table: pd.DataFrame) -> Any:
    """Processing speed per run, photos per second (from `runs`)."""
    data = table.assign(run=table["run"].astype(str))
    fig = _px().bar(
        data,
        x="run",
        y="photos_per_second",
        color="kind",
        hover_data=["photos", "faces", "errors", "seconds", "started_at"],
        title="Processing speed per run",
        labels={"photos_per_second": "photos / s"},
    )
    fig.update_xaxes(type="category")
    return fig


def nearest_figure(check: pd.DataFrame, threshold: float | None = None) -> Any:
    """Histogram of each checked face's nearest other face (from `index_self_check`).

    ``threshold``: the pack's same-person cosine, drawn as a line.
    """
    fig = _px().histogram(
        check.dropna(subset=["nearest_cosine"]),
        x="nearest_cosine",
        nbins=20,
        title="Cosine similarity to the nearest other face",
        labels={"nearest_cosine": "cosine"},
    )
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", annotation_text="same person (85 %)")
    fig.update_layout(yaxis_title="faces")
    return fig


# ---- evaluations ----------------------------------------------------------------
def evaluation_table(evaluation: dict[str, Any]) -> pd.DataFrame:
    """One row per pack of an ``evaluate lfw`` document: the metrics side by side."""
    rows = []
    for p in evaluation.get("packs", []):
        lfw = p["lfw"]
        groups = p.get("dev_groups") or {}
        rows.append(
            {
                "pack": p["pack"],
                "accuracy": lfw["accuracy"]["mean"],
                "± std": lfw["accuracy"]["std"],
                "precision": lfw["precision"]["mean"],
                "recall": lfw["recall"]["mean"],
                "F1": lfw["f1"]["mean"],
                "ROC AUC": lfw["roc_auc"],
                f"TAR@FAR={lfw['tar_at_far']['far']:g}": lfw["tar_at_far"]["tar"],
                "threshold": lfw["threshold"]["mean"],
                "detection rate": lfw["detection_rate"],
                "no-face images": lfw["no_face"]["images"],
                "fallback": lfw["no_face"]["policy"],
                "group faces found": (
                    f"{groups['detected_faces']} / {groups['labelled_faces']}" if groups else None
                ),
                "ms / image": lfw["ms_per_image"],
                "ms / face": lfw["ms_per_face"],
                "pairs": lfw["pairs"],
            }
        )
    return pd.DataFrame(rows)


def roc_figure(evaluation: dict[str, Any]) -> Any:
    """ROC curves of every pack of an ``evaluate lfw`` document (log false-accept axis)."""
    go = require("plotly.graph_objects", "notebooks", "workbench charts")
    fig = go.Figure()
    for p in evaluation.get("packs", []):
        lfw = p["lfw"]
        roc = lfw.get("roc")
        if not roc:
            continue
        # A log axis cannot show FAR 0: start the curve at the smallest FAR measurable.
        floor = 1.0 / max(1, lfw["pairs"])
        fpr = [max(v, floor / 2) for v in roc["fpr"]]
        fig.add_trace(
            go.Scatter(
                x=fpr,
                y=roc["tpr"],
                mode="lines",
                line_shape="hv",
                name=f"{p['pack']} (AUC {lfw['roc_auc']:.4f})",
            )
        )
    fig.update_layout(
        title=f"ROC on {evaluation.get('pairs_file', 'LFW')}",
        xaxis={"title": "false accept rate", "type": "log"},
        yaxis={"title": "true accept rate", "range": [0, 1.01]},
        legend={"x": 0.98, "y": 0.02, "xanchor": "right", "yanchor": "bottom"},
    )
    return fig


def accuracy_figure(evaluation: dict[str, Any]) -> Any:
    """Mean 10-fold accuracy per pack with its standard deviation as error bars."""
    table = evaluation_table(evaluation)
    fig = _px().bar(
        table, x="pack", y="accuracy", error_y="± std", title="LFW accuracy (10 folds, mean ± std)"
    )
    low = float((table["accuracy"] - table["± std"]).min()) if len(table) else 0.9
    fig.update_yaxes(range=[max(0.0, min(low, 0.99) - 0.01), 1.0], tickformat=".1%")
    return fig


__all__ = [
    "accuracy_figure",
    "expected_strangers_table",
    "search_evaluation_table",
    "strangers_figure",
    "counts_by_source_status",
    "counts_figure",
    "device_used",
    "evaluation_table",
    "faces_histogram",
    "index_self_check",
    "faces_per_photo",
    "last_report_time",
    "latest_evaluation",
    "nearest_figure",
    "new_faces_since",
    "recent_errors",
    "roc_figure",
    "runs",
    "runs_figure",
    "search_quality",
    "write_last_report",
]
