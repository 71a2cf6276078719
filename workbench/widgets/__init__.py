"""ipywidgets components of the Voila apps (``dashboards/``), usable in any notebook.

Imported lazily by name so ``import workbench.widgets`` costs nothing until a
component is used (and the `dashboards` extra is only needed then):

>>> from workbench.widgets import Gallery              # doctest: +SKIP
>>> Gallery(workbench.open("workbench-data"))          # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES: tuple[str, ...] = ("common", "gallery", "search", "monitor", "people")
"""Modules searched for a name, in order (an app module may not exist yet)."""


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    for module in _MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{module}":
                continue
            if e.name in ("ipywidgets", "anywidget", "traitlets"):
                raise ImportError(
                    f"workbench.widgets.{name} needs the dashboards extra: "
                    "pip install 'face-workbench[dashboards]'"
                ) from e
            raise
        if name in getattr(mod, "__all__", ()):
            value = getattr(mod, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
