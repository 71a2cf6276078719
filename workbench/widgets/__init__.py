"""ipywidgets components of the Voila apps (``dashboards/``), usable in any notebook.

Each app is one call over an open workbench, in a JupyterLab cell exactly as in
its dashboard:

>>> import workbench, workbench.widgets                 # doctest: +SKIP
>>> wb = workbench.open("workbench-data")               # doctest: +SKIP
>>> workbench.widgets.gallery(wb)                       # doctest: +SKIP
>>> workbench.widgets.search(wb)                        # doctest: +SKIP
>>> workbench.widgets.people(wb, projection="pca")      # doctest: +SKIP
>>> workbench.widgets.monitor(wb)                       # doctest: +SKIP

``gallery``, ``search``, ``people`` and ``monitor`` are the apps' modules, callable
as their classes (`Gallery`, `SearchBySample`, `PeopleApp`, `Monitor`; options go
to the class). Everything is imported lazily by name, so ``import workbench.widgets``
costs nothing until a component is used (and the `dashboards` extra, or the
`notebooks` one, is only needed then).
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES: tuple[str, ...] = ("common", "gallery", "search", "monitor", "people")
"""Modules searched for a name, in order (an app module may not exist yet)."""
APPS: tuple[str, ...] = ("gallery", "search", "people", "monitor")
"""The app modules, each callable as its app (`workbench.widgets.common.AppModule`)."""


def _import(module: str) -> Any:
    try:
        return importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as e:
        if e.name in ("ipywidgets", "anywidget", "traitlets"):
            raise ImportError(
                f"workbench.widgets.{module} needs ipywidgets and anywidget: "
                "pip install 'face-workbench[notebooks]' (or the dashboards extra)"
            ) from e
        raise


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    if name in APPS:
        return _import(name)
    for module in _MODULES:
        try:
            mod = _import(module)
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{module}":
                continue
            raise
        if name in getattr(mod, "__all__", ()):
            value = getattr(mod, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
