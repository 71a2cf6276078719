"""Lazy imports of optional packages with an error that names the extra."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from workbench.errors import MissingDependencyError


def require(module: str, extra: str | None, purpose: str) -> ModuleType:
    """Import `module`, or raise `MissingDependencyError` naming `extra`.

    ``extra`` is the `face-workbench` extra that installs `module` (``None``
    for a core dependency). A package that is installed but broken (one of
    its own imports fails, or its shared library does not load) is reported
    the same way, with the original error chained and quoted, because the fix
    is the same: reinstall the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = e.name is not None and (e.name == module or module.startswith(e.name + "."))
        broken = None if missing else f"{type(e).__name__}: {e}"
        raise MissingDependencyError(module, extra, purpose, broken) from e
    except OSError as e:  # e.g. a CUDA or BLAS library the wheel links against is absent
        raise MissingDependencyError(module, extra, purpose, f"{type(e).__name__}: {e}") from e


def available(module: str) -> bool:
    """Whether `module` is installed, without importing it.

    For a dotted name the parent package is imported (that is how Python
    finds submodules); a top-level name imports nothing.
    """
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
