"""Each app of `workbench.widgets` is one call in a notebook cell, as in its dashboard:
``workbench.widgets.gallery(wb)`` and friends, while ``from workbench.widgets.gallery
import Gallery`` keeps working."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def test_each_app_is_one_call_on_the_package(tmp_path: Path) -> None:
    import workbench.widgets
    from workbench.core import Workbench
    from workbench.settings import WorkbenchSettings
    from workbench.widgets.gallery import Gallery
    from workbench.widgets.monitor import Monitor
    from workbench.widgets.people import PeopleApp
    from workbench.widgets.search import SearchBySample

    settings = WorkbenchSettings(home=tmp_path / "wb", pack="dlib")  # named: no model is read
    with Workbench(settings) as wb:
        gallery = workbench.widgets.gallery(wb, page_size=3)  # options go to the class
        assert type(gallery) is Gallery and gallery.page_size == 3
        assert gallery.grid.ready == "gallery" and gallery.total == 0
        assert type(workbench.widgets.search(wb)) is SearchBySample
        people = workbench.widgets.people(wb, projection="pca")
        assert type(people) is PeopleApp and people.projection == "pca"
        assert 'data-testid="no-people"' in people.empty.value
        assert type(workbench.widgets.monitor(wb)) is Monitor

    for name, cls in [("gallery", Gallery), ("search", SearchBySample), ("people", PeopleApp)]:
        module = importlib.import_module(f"workbench.widgets.{name}")
        assert module is sys.modules[f"workbench.widgets.{name}"]
        assert getattr(workbench.widgets, name) is module and module.APP is cls
    from workbench.widgets import Gallery as Same
    from workbench.widgets import monitor

    assert Same is Gallery and monitor.Monitor is Monitor
    with pytest.raises(AttributeError, match="has no attribute 'galery'"):
        workbench.widgets.galery  # noqa: B018
