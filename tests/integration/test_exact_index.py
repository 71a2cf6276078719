"""The embedded home's exact in-process index (`workbench.store.exact_index`).

It must give what Milvus gives (same ids, same order) on the dev set, see what another
process writes and deletes in the same home without being told, and answer a search
narrowed to a source with the exact top-K of that source.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DevPhoto, cli_env, local_pack_settings, run_cli
from workbench.core import Workbench
from workbench.store.exact_index import ExactIndex
from workbench.store.vectors import VectorHit


def _brute_force(
    wb: Workbench, queries: np.ndarray, k: int, source: str | None = None
) -> list[list[int]]:
    """The exact top-k face ids from the catalog's vectors, by a full sort."""
    pack = wb.pack.name
    ids, photo_ids, X = wb.catalog.face_vectors(pack)
    if source is not None:
        photos = wb.catalog.photos_by_ids(sorted(set(photo_ids.tolist())))
        keep = np.array([photos[int(p)].source == source for p in photo_ids], bool)
        ids, X = ids[keep], X[keep]
    A = X / np.linalg.norm(X, axis=1, keepdims=True)
    Q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    out = []
    for row in Q @ A.T:
        order = np.lexsort((ids, -row))[:k]
        out.append([int(ids[i]) for i in order])
    return out


def _ids(hits: list[list[VectorHit]]) -> list[list[int]]:
    return [[h.face_id for h in per] for per in hits]


@pytest.fixture
def halves(tmp_path: Path, dev_photos: list[DevPhoto]) -> tuple[Path, Path]:
    """The dev set's distinct photos in two folders: two sources."""
    distinct = [p.path for p in dev_photos if p.copy_of is None]
    a, b = tmp_path / "album-a", tmp_path / "album-b"
    for folder, part in ((a, distinct[::2]), (b, distinct[1::2])):
        folder.mkdir()
        for p in part:
            shutil.copy(p, folder / p.name)
    return a, b


@pytest.fixture
def wb(tmp_path: Path, models_dir: Path) -> Iterator[Workbench]:
    with Workbench(local_pack_settings(tmp_path / "home", models_dir)) as w:
        yield w


def _ingest_halves(wb: Workbench, halves: tuple[Path, Path]) -> None:
    for folder in halves:
        wb.ingest([folder], source=folder.name, progress=False)


def _queries(wb: Workbench, n: int) -> np.ndarray:
    _, _, X = wb.catalog.face_vectors(wb.pack.name)
    return X[np.linspace(0, len(X) - 1, n).astype(int)].astype(np.float32)


def test_exact_index_and_milvus_agree_on_the_dev_set(
    wb: Workbench, halves: tuple[Path, Path]
) -> None:
    _ingest_halves(wb, halves)
    store = wb.store
    collection = store.pack_row(wb.pack.name).collection
    assert isinstance(store.searcher(collection), ExactIndex)  # the embedded default
    queries = _queries(wb, 40)
    exact = store.searcher(collection).search(collection, queries, 10, pack=wb.pack.name)
    milvus = store.index.search(collection, queries, 10, pack=wb.pack.name)
    # Milvus searches segments under 1024 rows exactly: the same faces in the same order.
    assert _ids(exact) == _ids(milvus) == _brute_force(wb, queries, 10)
    for e, m in zip(exact, milvus, strict=True):
        assert np.allclose([h.score for h in e], [h.score for h in m], atol=1e-4)
        assert [(h.photo_id, h.source) for h in e] == [(h.photo_id, h.source) for h in m]
    # A range search gives every face at or above the bound, the same as Milvus's.
    pack = wb.pack.name
    ranged = store.searcher(collection).search_range(collection, queries, 0.5, pack=pack)
    assert _ids(ranged) == _ids(store.index.search_range(collection, queries, 0.5, pack=pack))


def test_a_second_process_writes_and_deletes_are_seen(
    wb: Workbench, halves: tuple[Path, Path], models_dir: Path
) -> None:
    a, b = halves
    wb.ingest([a], source="album-a", progress=False)
    collection = wb.store.pack_row(wb.pack.name).collection
    searcher = wb.store.searcher(collection)
    assert isinstance(searcher, ExactIndex)
    queries = _queries(wb, 20)
    before = _ids(searcher.search(collection, queries, 5, pack=wb.pack.name))
    assert before == _brute_force(wb, queries, 5)

    # Another process adds an album and deletes a photo of the first one.
    env = cli_env(wb.home, models_dir)
    done = run_cli(["ingest", str(b), "--source", "album-b", "--no-progress", "--json"], env)
    assert done.returncode == 0, done.stderr
    gone = wb.catalog.find_photo(str(sorted(a.iterdir())[0].resolve()))
    assert gone is not None
    deleted = run_cli(["delete", str(gone.id)], env)
    assert deleted.returncode == 0, deleted.stderr

    after = searcher.search(collection, queries, 5, pack=wb.pack.name)
    assert _ids(after) == _brute_force(wb, queries, 5)  # the catalog as it is now
    photos = {h.photo_id for per in after for h in per}
    assert gone.id not in photos
    sources = {h.source for per in after for h in per}
    assert len(sources) == 2  # the other process's album is found


def test_a_source_filter_returns_the_exact_top_k_of_that_source(
    wb: Workbench, halves: tuple[Path, Path]
) -> None:
    _ingest_halves(wb, halves)
    collection = wb.store.pack_row(wb.pack.name).collection
    searcher = wb.store.searcher(collection)
    queries = _queries(wb, 30)
    sources = ["album-a", "album-b"]
    for source in sources:
        got = searcher.search(collection, queries, 10, source=source, pack=wb.pack.name)
        assert all(h.source == source for per in got for h in per)
        assert _ids(got) == _brute_force(wb, queries, 10, source=source)
    # And through the workbench: a search narrowed to a source answers from it alone.
    sample = sorted(halves[0].iterdir())[2]
    (face, *_) = wb.search(sample, top_k=10, source=sources[0], threshold=70)
    assert face.matches and all(m.source == sources[0] for m in face.matches)
