"""Keep access tokens, and terminal control sequences, out of everything the workbench
writes or shows.

`printable` escapes what a file name, a zip member, a person's name or a source
label may carry that a terminal would act on (ESC sequences, carriage returns,
C1 controls, bidirectional overrides, undecodable bytes): every line the CLI and
the logs print, and the apps show, goes through it.

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

# C0 controls, DEL, C1 controls, and the bidirectional overrides that reorder what a
# terminal or a browser shows; lone surrogates are undecodable bytes of a file name.
_UNPRINTABLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, keep: str = "") -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\n``, ``\\u202e``), so
    it prints as one inert piece of a line; ``keep`` names characters left alone (``"\\n"``
    for a deliberate multi-line text)."""
    if keep:
        return "".join(
            printable(part) if part not in keep else part
            for part in re.split(f"([{re.escape(keep)}])", text)
        )
    return _UNPRINTABLE.sub(_escape, text)


_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False

# Credentials as libraries put them in URLs, form bodies and headers; ``sign`` is the
# signature VK's and Yandex.Disk's photo URLs carry (whoever has it can fetch the photo).
_PATTERNS = (
    re.compile(r"(?i)((?:access_token|token|oauth_token|client_secret|sign|signature)=)[^&\s'\"]+"),
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
    install()


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


def redact_value(value: Any) -> Any:
    """``value`` with `redact` applied to every string in it (metadata of a photo: lists,
    dicts and text a remote service sent, which may echo a token or a signed URL)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def _patch(record: Any) -> None:
    # A log line shows names as they are given (a file called "a\x1b[2Jb.jpg"): escape them.
    record["message"] = printable(redact(record["message"]), keep="\n")
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


def install() -> None:
    """Pass every log record through `redact` and `printable` (once per process; the
    logging set-up and the first registered token call it)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    logger.configure(patcher=_patch)
    logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))


__all__ = ["MASK", "install", "printable", "redact", "redact_value", "register_secret"]
