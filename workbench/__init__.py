"""face workbench: find, group and search faces in photo collections.

``import workbench`` is cheap: model runtimes (onnxruntime, dlib, torch) and
pymilvus load only when a pack or the index is first used.

>>> import workbench
>>> wb = workbench.open("workbench-data", pack="local")   # doctest: +SKIP
>>> wb.ingest(["photos/"])                                # doctest: +SKIP
>>> wb.search("sample.jpg")                               # doctest: +SKIP
"""

from __future__ import annotations

from workbench.core import Stats, Workbench, open
from workbench.errors import WorkbenchError
from workbench.settings import WorkbenchSettings

__version__ = "0.1.0"
__all__ = ["Stats", "Workbench", "WorkbenchError", "WorkbenchSettings", "open", "__version__"]
