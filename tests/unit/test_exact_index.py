"""`ExactIndex` against a real SQLite catalog written behind its back, without models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, insert

from workbench.store.catalog import Catalog
from workbench.store.exact_index import ExactIndex
from workbench.store.models import Face, Photo, utcnow

DIM = 8


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    with_catalog = Catalog(url)
    with_catalog.register_pack("p", DIM, "c")
    with_catalog.close()
    return url


def _write(url: str, faces: dict[int, tuple[int, str, np.ndarray]]) -> None:
    """Faces ``id -> (photo id, source, vector)`` committed by a connection of their own."""
    catalog = Catalog(url)
    now = utcnow()
    with catalog.session.begin() as s:
        have = {p for (p,) in s.execute(Photo.__table__.select().with_only_columns(Photo.id))}
        for pid, source in sorted({(p, src) for p, src, _ in faces.values()}):
            if pid not in have:
                s.execute(
                    insert(Photo),
                    [
                        {
                            "id": pid, "sha256": f"{pid:064x}", "source": source,
                            "origin": "local", "uri": f"/x/{pid}.jpg", "status": "done",
                            "meta": {}, "created_at": now, "updated_at": now,
                        }
                    ],
                )  # fmt: skip
        s.execute(
            insert(Face),
            [
                {
                    "id": fid, "photo_id": pid, "pack": "p", "x1": 0.0, "y1": 0.0, "x2": 9.0,
                    "y2": 9.0, "landmarks": [0.0] * 10, "score": 0.9,
                    "embedding": np.asarray(v, np.float32).tobytes(), "created_at": now,
                }
                for fid, (pid, _, v) in faces.items()
            ],
        )  # fmt: skip
    catalog.close()


def _vec(i: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal(DIM).astype(np.float32)


def _ids(index: ExactIndex, q: np.ndarray, k: int = 50, source: str | None = None) -> list[int]:
    return [h.face_id for h in index.search("c", q[None, :], k, source=source, pack="p")[0]]


def test_follows_writes_deletes_and_late_commits(url: str) -> None:
    _write(url, {i: (i, "a" if i % 2 else "b", _vec(i)) for i in range(1, 21)})
    catalog = Catalog(url)
    index = ExactIndex(catalog, max_mb=64)
    q = _vec(5)
    assert _ids(index, q)[0] == 5 and sorted(_ids(index, q)) == list(range(1, 21))

    # Another connection adds faces 21..30 and deletes 3 and 7.
    _write(url, {i: (i, "a", _vec(i)) for i in range(21, 31)})
    other = Catalog(url)
    with other.session.begin() as s:
        s.execute(delete(Face).where(Face.id.in_([3, 7])))
    other.close()
    assert sorted(_ids(index, q)) == sorted(set(range(1, 31)) - {3, 7})

    # A lower id committed after a higher one (PostgreSQL sequences can): 40 then 35.
    _write(url, {40: (40, "a", _vec(40))})
    assert 40 in _ids(index, q)
    _write(url, {35: (35, "b", _vec(35))})
    found = _ids(index, _vec(35))
    assert found[0] == 35 and len(found) == 30

    # The same ranking a full sort gives, ties by id; a source keeps to its faces.
    ids, _, X = catalog.face_vectors("p")
    A = X / np.linalg.norm(X, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q)
    scores = A @ qn
    assert _ids(index, q, k=7) == [int(ids[i]) for i in np.lexsort((ids, -scores))[:7]]
    assert all(i % 2 == 0 for i in _ids(index, q, source="b") if i < 21)
    assert _ids(index, q, source="nowhere") == []
    index.close()
    catalog.close()


def test_ties_at_the_kth_score_go_to_the_lower_ids(url: str) -> None:
    same = _vec(1)
    _write(url, {i: (i, "a", same) for i in (9, 4, 7, 2, 5)})
    catalog = Catalog(url)
    index = ExactIndex(catalog, max_mb=64)
    assert _ids(index, same, k=3) == [2, 4, 5]
    hits = index.search_range("c", same[None, :], 0.99, pack="p")[0]
    assert [h.face_id for h in hits] == [2, 4, 5, 7, 9] and {h.source for h in hits} == {"a"}
    index.close()
    catalog.close()


def test_the_budget_decides_whether_it_answers(url: str) -> None:
    _write(url, {i: (i, "a", _vec(i)) for i in range(1, 11)})
    catalog = Catalog(url)
    assert ExactIndex(catalog, max_mb=1).fits("c")  # 10 × 8 × 4 bytes
    assert not ExactIndex(catalog, max_mb=0).fits("c")
    catalog.close()


def test_memo_keeps_a_value_until_the_catalog_changes(url: str) -> None:
    _write(url, {1: (1, "a", _vec(1))})
    catalog = Catalog(url)
    index = ExactIndex(catalog, max_mb=64)
    calls: list[int] = []

    def count() -> int:
        calls.append(1)
        return catalog.count_faces("p")

    assert index.memo("k", count) == 1 and index.memo("k", count) == 1
    assert len(calls) == 1  # nothing committed: kept
    _write(url, {2: (2, "a", _vec(2))})
    assert index.memo("k", count) == 2 and len(calls) == 2
    index.close()
    catalog.close()
