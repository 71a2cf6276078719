"""What every command module shares: the settings of the command line, the workbench they
open, and printing results. A leaf: it imports nothing of the CLI."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from workbench.redaction import printable

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


# What json.dumps leaves raw with ensure_ascii=False and a terminal would still act on.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def emit(doc: Any) -> None:
    """One JSON document on stdout (``--json``); logs and progress go to stderr. Text stays
    readable UTF-8; control characters are JSON escapes, never raw bytes."""
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    click.echo(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def say(text: str, err: bool = False) -> None:
    """A line (or lines) for people: control characters of names, paths and reasons in it
    are escaped (`printable`), so a file called ``a\\x1b[2J.jpg`` cannot clear the screen."""
    click.echo(printable(text, keep="\n"), err=err)


def show(result: Result, as_json: bool) -> None:
    """A result as one JSON document, or as its text summary."""
    if as_json:
        emit(result.to_dict())
    else:
        say(result.summary())


def global_option(ctx: click.Context, name: str) -> Any:
    """A global option as given on the command line (None when not given)."""
    obj: dict[str, Any] = ctx.find_object(dict) or {}
    return obj.get(name)
