"""Logging (loguru to stderr, text or JSON lines, secrets masked) and progress bars."""

from __future__ import annotations

import json as _json
import os
import sys
import traceback
from typing import Any

from loguru import logger

from workbench.redaction import install, printable, redact

_configured = False
_TRUE = {"1", "true", "yes", "on"}


def ensure_logging() -> None:
    """Replace loguru's default DEBUG sink once, unless the application configured logging.

    Level from ``WORKBENCH_LOG_LEVEL`` (default INFO); JSON lines when
    ``WORKBENCH_LOG_JSON`` is 1/true/yes/on.
    """
    if not _configured:
        configure_logging(os.environ.get("WORKBENCH_LOG_LEVEL", "INFO"))


def _json_from_env() -> bool:
    return os.environ.get("WORKBENCH_LOG_JSON", "").strip().lower() in _TRUE


def _text_format(record: Any) -> str:
    extra = record["extra"]
    photo = ""
    if "photo" in extra:
        extra["_photo"] = printable(str(extra["photo"]))
        photo = "photo={extra[_photo]} "
    # A message's own line breaks are indented: no text can pass for a log line of its own.
    extra["_text"] = record["message"].replace("\n", "\n    ")
    return (
        "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> "
        + photo
        + "{extra[_text]}\n{exception}"
    )


def json_line(record: Any) -> str:
    """One compact JSON object for a loguru record.

    Fields: ``time`` (ISO 8601 with offset), ``level``, ``message``, ``logger``
    (module), ``function``, ``line``, then every bound extra field (``photo``
    first-class among them), and ``exception`` (the formatted traceback) when
    there is one. Values JSON cannot hold are written with ``str``.
    """
    doc: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "message": record["message"],
        "logger": record["name"],
        "function": record["function"],
        "line": record["line"],
    }
    for key, value in record["extra"].items():
        if not key.startswith("_"):
            doc.setdefault(key, value)
    if record["exception"] is not None:
        kind, value, tb = record["exception"]
        doc["exception"] = "".join(traceback.format_exception(kind, value, tb)).rstrip()
    # Bound fields are not covered by the message patcher; a URL may hold a token.
    return redact(_json.dumps(doc, ensure_ascii=False, default=str))


def _json_format(record: Any) -> str:
    # loguru formats the returned template with the record; the JSON text goes
    # through an extra field so its braces are not read as placeholders.
    record["extra"]["_json"] = json_line(record)
    return "{extra[_json]}\n"


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    """Send workbench logs to stderr (stdout stays free for ``--json`` output).

    ``level``: DEBUG, INFO, WARNING, ERROR. ``json=True`` (or
    ``WORKBENCH_LOG_JSON=1``) writes one JSON object per line (see
    :func:`json_line`); text lines show ``photo=<id>`` when a photo is bound
    (``logger.bind(photo=...)`` / ``logger.contextualize(photo=...)``).
    """
    global _configured
    as_json = json or _json_from_env()
    install()
    logger.remove()
    logger.add(
        sys.stderr,
        level=level.upper(),
        format=_json_format if as_json else _text_format,
        colorize=False if as_json else None,
        # Tracebacks without local variables: a variable may hold an access token.
        diagnose=False,
    )
    _configured = True


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar: a notebook widget where one can be drawn, text otherwise, nothing if off.

    A disabled bar comes from plain tqdm, so a notebook without ipywidgets
    gets no "IProgress not found" warning for a bar nobody asked for.
    """
    if not enabled:
        from tqdm import tqdm

        return tqdm(iterable, disable=True, **kwargs)
    from tqdm.auto import tqdm as auto_tqdm

    return auto_tqdm(iterable, **kwargs)
