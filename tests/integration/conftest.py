"""Workbenches built once per session from the real dev photos, one per pack."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import CATALOG_BACKENDS, DevPhoto, local_pack_settings

if TYPE_CHECKING:
    from workbench.core import Workbench
    from workbench.ingest.pipeline import IngestReport
    from workbench.settings import WorkbenchSettings


@dataclass
class DevWorkbench:
    """A workbench holding the whole dev set, with its first ingest report."""

    wb: Workbench
    report: IngestReport
    photos: list[DevPhoto]


def build_dev_workbench(
    settings: WorkbenchSettings, faces_dev_dir: Path, photos: list[DevPhoto]
) -> DevWorkbench:
    from workbench.core import Workbench

    wb = Workbench(settings)
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
    dw = build_dev_workbench(local_pack_settings(home, models_dir), faces_dev_dir, dev_photos)
    yield dw
    dw.wb.close()


@pytest.fixture(scope="session")
def dev_dlib(
    tmp_path_factory: pytest.TempPathFactory, faces_dev_dir: Path, dev_photos: list[DevPhoto]
) -> Iterator[DevWorkbench]:
    from workbench.settings import WorkbenchSettings

    home = tmp_path_factory.mktemp("dev-dlib")
    dw = build_dev_workbench(WorkbenchSettings(home=home, pack="dlib"), faces_dev_dir, dev_photos)
    yield dw
    dw.wb.close()


@pytest.fixture(params=CATALOG_BACKENDS)
def dev_any(request: pytest.FixtureRequest) -> DevWorkbench:
    """The dev workbench with its catalog on SQLite, then on PostgreSQL."""
    name = "dev_local" if request.param == "sqlite" else "dev_local_pg"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]
