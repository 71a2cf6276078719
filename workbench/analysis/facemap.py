"""The face map: every face of a pack on a 2-D plane (UMAP), coloured by person.

The kNN graph that clustering uses is the one UMAP starts from, and both
are cached under ``<home>/cache/`` keyed by the pack and its exact set of
faces: re-drawing the map, or clustering again with other parameters,
costs a file read, not minutes.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from loguru import logger
from numpy.typing import NDArray
from sqlalchemy import select

from workbench._optional import available, require
from workbench.analysis.cluster import DEFAULT_NEIGHBORS, KnnGraph, knn_graph, normalise
from workbench.errors import ConfigurationError
from workbench.settings import home_file_mode, make_home_dirs
from workbench.store.catalog import Catalog
from workbench.store.models import Face, FacePerson, Person, Photo

Projection = Literal["auto", "umap", "pca"]
ColorBy = Literal["person", "cluster", "source"]


def _key(pack: str, ids: NDArray[np.int64], *parts: object) -> str:
    h = hashlib.sha1(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    h.update(repr(parts).encode())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", pack)[:60]
    return f"{slug}-{h.hexdigest()[:16]}"


def cache_dir(home: Path) -> Path:
    return Path(home) / "cache"


def _save_cached(path: Path, save: Any, home: Path) -> None:
    """Write a cache file whole (a unique temporary name, then a rename: two processes
    drawing the same map do not collide), with the home's permissions; a home that
    cannot be written (read-only) just goes without the cache."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}{path.suffix}")
    try:
        make_home_dirs(path.parent, Path(home))
        save(tmp)
        os.chmod(tmp, home_file_mode(Path(home)))
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        logger.debug("no cache written to {}: {}", path, e)


def neighbour_graph(
    home: Path,
    pack: str,
    ids: NDArray[np.int64],
    X: NDArray[np.float32],
    k: int = DEFAULT_NEIGHBORS,
) -> KnnGraph:
    """The exact kNN graph of these faces, from the cache when it was built before."""
    path = cache_dir(home) / f"knn-{_key(pack, ids, k, X.shape[1])}.npz"
    if path.is_file():
        with np.load(path) as data:
            return KnnGraph(data["indices"], data["similarities"])
    graph = knn_graph(X, k)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, indices=graph.indices, similarities=graph.similarities)

    _save_cached(path, save, home)
    return graph


def map_coordinates(
    home: Path,
    pack: str,
    ids: NDArray[np.int64],
    X: NDArray[np.float32],
    *,
    method: Projection = "auto",
    n_neighbors: int = DEFAULT_NEIGHBORS,
    min_dist: float = 0.1,
    seed: int | None = 0,
) -> tuple[NDArray[np.float64], str]:
    """2-D coordinates of the faces and the projection used (``umap`` or ``pca``), cached.

    ``auto``: UMAP (cosine, started from the cached kNN graph) when
    umap-learn is installed and there are at least 5 faces, else PCA.
    ``seed=None`` lets UMAP use every core (faster on big maps, not
    reproducible; the cache keeps one drawing anyway).
    """
    if method not in ("auto", "umap", "pca"):
        raise ConfigurationError(f"projection {method!r} is not one of auto, umap, pca")
    n = len(ids)
    use_umap = method == "umap" or (method == "auto" and available("umap") and n >= 5)
    if use_umap and n < 5:
        raise ConfigurationError(f"UMAP needs at least 5 faces, got {n}; use pca")
    used = "umap" if use_umap else "pca"
    path = cache_dir(home) / f"map-{_key(pack, ids, used, n_neighbors, min_dist, seed)}.npy"
    if path.is_file():
        return np.load(path), used
    if use_umap:
        umap = require("umap", "cluster", "the UMAP face map")
        k = max(2, min(n_neighbors, n - 1))
        graph = neighbour_graph(home, pack, ids, X, k)
        reducer = umap.UMAP(
            n_components=2,
            metric="cosine",
            n_neighbors=graph.k,
            min_dist=min_dist,
            # Faces form thousands of separate neighbourhoods (one per person); UMAP's
            # spectral start solves an eigenproblem per component, which took over
            # 20 minutes for 100k faces of 1,000 people. PCA starts in seconds.
            init="pca",
            random_state=seed,
            n_jobs=1 if seed is not None else -1,
            precomputed_knn=(graph.indices, graph.distances, None),
        )
        coords = np.asarray(reducer.fit_transform(normalise(X)), dtype=np.float64)
    else:
        coords = _pca(normalise(X))

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, coords)

    _save_cached(path, save, home)
    return coords, used


def _pca(A: NDArray[np.float32]) -> NDArray[np.float64]:
    if len(A) == 0:
        return np.zeros((0, 2))
    centred = A.astype(np.float64) - A.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1]))) if coords.shape[1] < 2 else coords


@dataclass
class FaceMap:
    """Faces with their map coordinates: columns face_id, photo_id, uri, photo, source,
    cluster, person_id, person, hidden, x, y."""

    table: pd.DataFrame
    projection: str
    pack: str

    def figure(self, color_by: ColorBy = "person", title: str | None = None) -> Any:
        return face_map_figure(self, color_by, title)


def face_table(catalog: Catalog, ids: NDArray[np.int64]) -> pd.DataFrame:
    """Per face (in ``ids`` order): its photo, source, cluster and person."""
    rows: list[tuple[Any, ...]] = []
    id_list = ids.tolist()
    for start in range(0, len(id_list), 20000):
        chunk = id_list[start : start + 20000]
        with catalog.session() as s:
            rows += s.execute(
                select(
                    Face.id,
                    Face.photo_id,
                    Photo.uri,
                    Photo.source,
                    FacePerson.cluster,
                    FacePerson.person_id,
                    Person.name,
                    Person.hidden,
                )
                .join(Photo, Photo.id == Face.photo_id)
                .outerjoin(FacePerson, FacePerson.face_id == Face.id)
                .outerjoin(Person, Person.id == FacePerson.person_id)
                .where(Face.id.in_(chunk))
            ).all()
    table = pd.DataFrame(
        rows,
        columns=["face_id", "photo_id", "uri", "source", "cluster", "person_id", "name", "hidden"],
    )
    table = table.set_index("face_id").reindex(id_list).reset_index()
    table["photo"] = table["uri"].map(lambda u: str(u).replace("\\", "/").rsplit("/", 1)[-1])
    table["cluster"] = table["cluster"].fillna(-1).astype(int)
    table["person_id"] = table["person_id"].astype("Int64")
    table["hidden"] = table["hidden"].fillna(False).astype(bool)
    table["person"] = [
        (n if isinstance(n, str) and n else f"person {p}") if pd.notna(p) else "no person"
        for p, n in zip(table["person_id"], table["name"], strict=True)
    ]
    return table.drop(columns=["name"])


def face_map(
    catalog: Catalog,
    home: Path,
    pack: str,
    method: Projection = "auto",
    *,
    include_hidden: bool = False,
    seed: int | None = 0,
) -> FaceMap:
    """Every face of a pack on the map, with its person and cluster (hidden people left out).

    The projection is cached under ``home`` (see `map_coordinates`)."""
    ids, _photos, X = catalog.face_vectors(pack)
    coords, used = map_coordinates(home, pack, ids, X, method=method, seed=seed)
    table = face_table(catalog, ids)
    table["x"], table["y"] = coords[:, 0], coords[:, 1]
    if not include_hidden:
        table = table[~table["hidden"]].reset_index(drop=True)
    logger.debug("face map of {} faces ({}, {})", len(table), pack, used)
    return FaceMap(table, used, pack)


_PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
    "#9c9ede",
]


def face_map_figure(fmap: FaceMap, color_by: ColorBy = "person", title: str | None = None) -> Any:
    """A plotly scatter of the map; hover shows the photo name, person, cluster and face id.

    Faces in no person (or cluster ``-1``) are grey. With more than 30
    groups the legend is hidden (colours repeat; hover tells them apart).
    """
    go = require("plotly.graph_objects", "notebooks", "the face map figure")
    if color_by not in ("person", "cluster", "source"):
        raise ConfigurationError(f"color_by {color_by!r} is not one of person, cluster, source")
    t = fmap.table
    key = {"person": "person", "cluster": "cluster", "source": "source"}[color_by]
    groups = t.groupby(key, sort=False).size().sort_values(ascending=False)
    fig = go.Figure()
    show_legend = len(groups) <= 30
    for i, (name, _n) in enumerate(groups.items()):
        part = t[t[key] == name]
        grey = name in ("no person", -1)
        fig.add_trace(
            go.Scattergl(
                x=part["x"],
                y=part["y"],
                mode="markers",
                name=("noise" if name == -1 else str(name)),
                marker={"size": 5, "color": "#c7c7c7" if grey else _PALETTE[i % len(_PALETTE)]},
                customdata=np.stack(
                    [part["face_id"], part["photo"], part["person"], part["cluster"]], axis=1
                ),
                hovertemplate="%{customdata[1]}<br>%{customdata[2]} · cluster %{customdata[3]}"
                "<br>face %{customdata[0]}<extra></extra>",
                showlegend=show_legend,
            )
        )
    fig.update_layout(
        title=title or f"{len(t)} faces of {fmap.pack} ({fmap.projection.upper()}), by {color_by}",
        xaxis={"visible": False},
        yaxis={"visible": False},
        template="plotly_white",
    )
    return fig


__all__ = [
    "FaceMap",
    "face_map",
    "face_map_figure",
    "face_table",
    "map_coordinates",
    "neighbour_graph",
]
