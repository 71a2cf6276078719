"""The slow tier's shared LFW home: all 9,056 images ingested once per session by the
`local` pack (about 8 minutes on 2 cores), for every test that needs all of LFW."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def lfw_home(lfw_dir: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import evaluation_script
    from workbench.core import Workbench
    from workbench.monitoring.logs import configure_logging

    configure_logging("WARNING")
    home = tmp_path_factory.mktemp("lfw-home") / "lfw"
    script = evaluation_script("lfw_search")
    with Workbench(script.local_settings(home, models_dir)) as wb:  # type: ignore[attr-defined]
        report = wb.ingest([lfw_dir / "images"], progress=False)
    assert report.photos == 9056 and report.errors == 0, report.counts()
    return home
