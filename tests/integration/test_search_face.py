"""'Find similar' from a stored face: its own pack's vectors, no model run, other photos only."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from tests.integration.conftest import DevWorkbench
from workbench.errors import WorkbenchError
from workbench.store.models import Face

pytestmark = pytest.mark.integration


def test_stored_face_finds_the_same_person_in_other_photos(dev_local: DevWorkbench) -> None:
    wb = dev_local.wb
    identity_of = {str(p.path.resolve()): p.identity for p in dev_local.photos}
    counts = Counter(p.identity for p in dev_local.photos if p.category == "identity")
    query = next(p for p in dev_local.photos if p.category == "identity" and counts[p.identity] > 2)
    photo = wb.catalog.find_photo(str(query.path.resolve()))
    with wb.catalog.session() as s:
        face_id = s.scalar(select(Face.id).where(Face.photo_id == photo.id).order_by(Face.id))
    matches = wb.search_face(face_id, top_k=5)
    assert matches, "no match above the threshold"
    assert all(m.photo_id != photo.id for m in matches)  # other photos only
    assert [m.similarity for m in matches] == sorted((m.similarity for m in matches), reverse=True)
    assert all(m.similarity >= wb.settings.search.threshold for m in matches)
    assert identity_of.get(matches[0].photo) == query.identity


def test_unknown_face_is_a_clear_error(dev_local: DevWorkbench) -> None:
    with pytest.raises(WorkbenchError, match="face 987654321 is no longer in the catalog"):
        dev_local.wb.search_face(987654321)
