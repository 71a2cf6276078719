"""face workbench: find, group and search faces in photo collections.

``import workbench`` is cheap: model runtimes (onnxruntime, dlib, torch) and
pymilvus load only when a pack or the index is first used.

>>> import workbench
>>> wb = workbench.open("workbench-data", pack="local")   # doctest: +SKIP
>>> wb.ingest(["photos/"])                                # doctest: +SKIP
>>> wb.search("sample.jpg")                               # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.core import Stats, Workbench, open
    from workbench.errors import WorkbenchError
    from workbench.settings import WorkbenchSettings

__version__ = "0.1.0"
__all__ = ["Stats", "Workbench", "WorkbenchError", "WorkbenchSettings", "open", "__version__"]

_HOMES = {
    "Stats": "workbench.core",
    "Workbench": "workbench.core",
    "open": "workbench.core",
    "WorkbenchError": "workbench.errors",
    "WorkbenchSettings": "workbench.settings",
}


def __getattr__(name: str) -> Any:
    # Loaded on first use: a process that needs one corner of the package (the home's
    # vector server, `workbench --help`) does not pay for the facade's imports.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
