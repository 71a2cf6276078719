"""What every command module shares: the settings of the command line, the workbench they
open, and printing results. A leaf: it imports nothing of the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

if TYPE_CHECKING:
    from workbench.core import Workbench
    from workbench.settings import WorkbenchSettings


F = TypeVar("F", bound=Callable[..., Any])


def json_option(help: str = "Print the result as one JSON document.") -> Callable[[F], F]:
    """``--json``: the command prints one JSON document on stdout (as ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def no_progress_option(help: str = "Hide the progress bars.") -> Callable[[F], F]:
    """``--no-progress``: no progress bar on stderr (as ``no_progress``)."""
    return click.option("--no-progress", is_flag=True, help=help)


class Result(Protocol):
    """What `show` prints: a result with a JSON form and a text summary."""

    def to_dict(self) -> dict[str, Any]: ...

    def summary(self) -> str: ...


def settings_from(ctx: click.Context) -> WorkbenchSettings:
    """The settings of the environment with the global options (--home, --pack, ...) over them."""
    from workbench.settings import WorkbenchSettings

    obj: dict[str, Any] = ctx.find_object(dict) or {}
    values: dict[str, Any] = {}
    if obj.get("home") is not None:
        values["home"] = Path(obj["home"])
    for key in ("pack", "detector", "embedder"):
        if obj.get(key) is not None:
            values[key] = obj[key]
    return WorkbenchSettings(**values)


def open_workbench(ctx: click.Context) -> Workbench:
    """The workbench the global options name (use it as a context manager)."""
    from workbench.core import Workbench

    return Workbench(settings_from(ctx))


def emit(doc: Any) -> None:
    """One JSON document on stdout (``--json``); logs and progress go to stderr."""
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def show(result: Result, as_json: bool) -> None:
    """A result as one JSON document, or as its text summary."""
    if as_json:
        emit(result.to_dict())
    else:
        click.echo(result.summary())


def global_option(ctx: click.Context, name: str) -> Any:
    """A global option as given on the command line (None when not given)."""
    obj: dict[str, Any] = ctx.find_object(dict) or {}
    return obj.get(name)
