"""Errors are remembered, can be retried, and a fixed file replaces its error row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from workbench.store.models import Photo

pytestmark = pytest.mark.integration


def _rows(wb: object) -> list[Photo]:
    with wb.catalog.session() as s:  # type: ignore[attr-defined]
        return list(s.scalars(select(Photo).order_by(Photo.id)))


def test_fixed_file_replaces_its_error_row(
    tmp_path: Path, local_settings: object, dev_photos: list
) -> None:
    from workbench.core import Workbench

    good = next(p for p in dev_photos if p.category == "identity")
    album = tmp_path / "album"
    album.mkdir()
    target = album / "photo.jpg"
    target.write_bytes(good.path.read_bytes()[:2000])  # truncated
    with Workbench(local_settings) as wb:  # type: ignore[arg-type]
        first = wb.ingest([album], progress=False)
        assert (first.photos, first.errors) == (1, 1)
        assert wb.ingest([album], progress=False).skipped == 1  # remembered, not retried

        shutil.copy(good.path, target)  # the user repairs the file
        fixed = wb.ingest([album], progress=False)
        assert (fixed.photos, fixed.errors, fixed.faces) == (1, 0, 1)
        rows = _rows(wb)
        assert [(r.uri, r.status) for r in rows] == [(str(target.resolve()), "done")]
        assert wb.stats().agree


def test_retry_errors_after_raising_a_limit(local_settings: object, dev_photos: list) -> None:
    from workbench.core import Workbench

    photo = next(p for p in dev_photos if p.category == "identity")
    strict = local_settings.model_copy(  # type: ignore[attr-defined]
        update={"limits": local_settings.limits.model_copy(update={"max_pixels": 10_000})}  # type: ignore[attr-defined]
    )
    with Workbench(strict) as wb:
        assert wb.ingest([photo.path], progress=False).errors == 1
        assert "pixels" in (_rows(wb)[0].error or "")
    with Workbench(local_settings) as wb:  # type: ignore[arg-type]
        assert wb.ingest([photo.path], progress=False).skipped == 1
        again = wb.ingest([photo.path], progress=False, retry_errors=True)
        assert (again.photos, again.errors, again.faces) == (1, 0, 1)
        rows = _rows(wb)
        assert len(rows) == 1 and rows[0].status == "done" and rows[0].error is None
        assert wb.stats().agree
