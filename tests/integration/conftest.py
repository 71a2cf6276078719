"""Workbenches built once per session from the real dev photos, one per pack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CATALOG_BACKENDS, DevPhoto, local_pack_settings


class DevWorkbench:
    """A workbench holding the whole dev set, with its first ingest report."""

    def __init__(self, wb: object, report: object, photos: list[DevPhoto]) -> None:
        self.wb, self.report, self.photos = wb, report, photos


def _build(settings: object, faces_dev_dir: Path, photos: list[DevPhoto]) -> DevWorkbench:
    from workbench.core import Workbench

    wb = Workbench(settings)  # type: ignore[arg-type]
    report = wb.ingest([faces_dev_dir / "images"], progress=False)
    return DevWorkbench(wb, report, photos)


@pytest.fixture(scope="session")
def dev_local(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    faces_dev_dir: Path,
    dev_photos: list[DevPhoto],
) -> Iterator[DevWorkbench]:
    home = tmp_path_factory.mktemp("dev-local")
    dw = _build(local_pack_settings(home, models_dir), faces_dev_dir, dev_photos)
    yield dw
    dw.wb.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def dev_dlib(
    tmp_path_factory: pytest.TempPathFactory, faces_dev_dir: Path, dev_photos: list[DevPhoto]
) -> Iterator[DevWorkbench]:
    from workbench.settings import WorkbenchSettings

    home = tmp_path_factory.mktemp("dev-dlib")
    dw = _build(WorkbenchSettings(home=home, pack="dlib"), faces_dev_dir, dev_photos)
    yield dw
    dw.wb.close()  # type: ignore[attr-defined]


@pytest.fixture(params=CATALOG_BACKENDS)
def dev_any(request: pytest.FixtureRequest) -> DevWorkbench:
    """The dev workbench with its catalog on SQLite, then on PostgreSQL."""
    name = "dev_local" if request.param == "sqlite" else "dev_local_pg"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]
