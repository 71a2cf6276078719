"""Every error the workbench raises on purpose derives from `WorkbenchError`.

Messages say what was given, what is allowed, and how to fix it.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of all workbench errors."""


class ConfigurationError(WorkbenchError):
    """A setting or argument has a value the workbench cannot use."""


class UnknownNameError(ConfigurationError, KeyError):
    """A registry lookup asked for a name nobody registered."""

    def __init__(self, kind: str, name: str, available: list[str]) -> None:
        self.kind, self.name, self.available = kind, name, available
        listed = ", ".join(available) if available else "(none registered)"
        super().__init__(f"unknown {kind} {name!r}; available: {listed}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class NotFoundError(WorkbenchError, LookupError):
    """Something asked for by its id (a photo, a person, a face, a job) does not exist."""


class MissingDependencyError(WorkbenchError, ImportError):
    """An optional package is needed for what was asked.

    ``extra`` is the `face-workbench` extra that installs it (``None`` for a
    package of the core install); ``broken`` is set when the package is there
    but its own import failed, with that failure's text.
    """

    def __init__(
        self, module: str, extra: str | None, purpose: str, broken: str | None = None
    ) -> None:
        self.module, self.extra, self.purpose, self.broken = module, extra, purpose, broken
        if extra:
            fix = f"pip install 'face-workbench[{extra}]'"
        else:
            fix = "pip install --force-reinstall face-workbench"
        if broken is None:
            message = (
                f"{purpose} needs the Python package {module!r}, which is not installed; "
                f"install it with: {fix}"
            )
        else:
            message = (
                f"{purpose} needs the Python package {module!r}, which is installed but cannot "
                f"be imported ({broken}); reinstall it with: {fix}"
            )
        super().__init__(message, name=module)

    def __reduce__(self) -> tuple[object, ...]:  # picklable across worker processes
        return (type(self), (self.module, self.extra, self.purpose, self.broken))


class ModelNotFoundError(WorkbenchError):
    """A model file is missing, unreadable or not the model asked for, and cannot be
    downloaded: what every failure to find model weights raises."""


class AmbiguousModelError(ModelNotFoundError, ConfigurationError):
    """Several model files fit and none was chosen: a setting must pick one."""


class ImageError(WorkbenchError):
    """A photo cannot be decoded safely (corrupt, hostile or unsupported)."""


class SourceError(WorkbenchError):
    """A photo source (path, archive, remote album) cannot be read."""


class StoreError(WorkbenchError):
    """The catalog or the vector index refused an operation."""


def error_line(e: BaseException) -> str:
    """The exception's type and first line, at most 300 characters (for one log line)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]
