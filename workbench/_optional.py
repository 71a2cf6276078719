"""Lazy imports of optional packages with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from workbench.errors import MissingDependencyError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or raise `MissingDependencyError` naming `extra`.

    A package that is installed but broken (one of its own imports fails) is
    reported the same way, with the original error chained, because the fix
    is the same: reinstall the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(module, extra, purpose) from e
