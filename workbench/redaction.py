"""Keep access tokens out of everything the workbench writes or shows.

Remote sources register each token they are given; `redact` then removes
registered tokens, and anything shaped like a credential in a URL or header
(``access_token=…``, ``OAuth …``), from a text. Logs pass through it (a loguru
patcher and a stdlib log record factory, installed with the first token) and so
does every error message a remote source raises; tokens are never stored, so
the catalog, notebook outputs and exports never see one.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from loguru import logger

MASK = "***"

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False

# Credentials as libraries put them in URLs, form bodies and headers.
_PATTERNS = (
    re.compile(r"(?i)((?:access_token|token|oauth_token|client_secret)=)[^&\s'\"]+"),
    re.compile(r"(?i)((?:OAuth|Bearer)\s+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"(?i)(['\"]access_token['\"]\s*:\s*['\"])[^'\"]+"),
)


def register_secret(value: str | None) -> None:
    """Treat ``value`` as a secret from now on (short values are ignored: they would
    mask ordinary words)."""
    if not value or len(value) < 6:
        return
    with _lock:
        _secrets.add(value)
    _install()


def redact_url(url: str) -> str:
    """``url`` with its password masked (database and broker URLs carry one:
    ``postgresql+psycopg://user:secret@host/db``, ``redis://:secret@host``)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: say nothing of it
        return url
    if password is None:
        return url
    creds, host = parts.netloc.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def redact(text: str) -> str:
    """``text`` with every registered secret and credential-shaped value masked."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


def _patch(record: Any) -> None:
    record["message"] = redact(record["message"])
    if record["exception"] is not None:
        # A traceback's lines are formatted later; redact the exception's text now.
        exc = record["exception"].value
        if exc is not None and exc.args and any(s in str(exc) for s in _secrets):
            exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)


def _redacting_factory(factory: Any) -> Any:
    """Wrap the stdlib's log record factory (requests, urllib3, yadisk and vk_api log
    through it): a record is created only for an enabled level, so this formats only
    what will be written."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = factory(*args, **kwargs)
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    return make


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    logger.configure(patcher=_patch)
    logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))


__all__ = ["MASK", "redact", "register_secret"]
