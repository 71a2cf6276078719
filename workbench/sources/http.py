"""HTTP plumbing shared by the remote sources: sessions, retries with back-off, downloads.

Retried: HTTP 408 / 429 / 5xx, time-outs and dropped connections, with
exponential back-off and jitter (or the server's ``Retry-After``). Everything
else fails at once with a message that says what failed; messages pass
through `redact`, so a token a library put in a URL never reaches a log, an
exception or the catalog.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from loguru import logger
from requests.adapters import HTTPAdapter

from workbench.errors import SourceError
from workbench.redaction import redact
from workbench.settings import RemoteSettings

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_DELAY = 60.0
USER_AGENT = "face-workbench (+https://github.com/face-workbench)"


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` is the server's own wait, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    backoff: float = 1.0

    @classmethod
    def from_settings(cls, remote: RemoteSettings) -> RetryPolicy:
        return cls(remote.retries, remote.backoff)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_DELAY)
        base = self.backoff * 2 ** (attempt - 1)
        return min(base * (0.5 + random.random()), MAX_DELAY)  # noqa: S311 - jitter, not crypto


def with_retries(
    call: Callable[[], T],
    what: str,
    policy: RetryPolicy,
    classify: Callable[[Exception], TransientError | None] = lambda e: None,
    explain: Callable[[Exception], str] | None = None,
) -> T:
    """Run ``call``; retry it while it fails transiently, at most ``policy.retries`` times.

    ``classify`` turns a library's own exceptions into `TransientError` (or
    None: not transient). The last transient failure becomes a `SourceError`
    naming ``what``. A failure that is not transient is re-raised as is, or,
    given ``explain``, becomes a `SourceError` "``what``: <explain(e)>" (a
    `SourceError` is always re-raised as is).
    """
    attempt = 0
    while True:
        try:
            return call()
        except Exception as e:  # noqa: BLE001 - classified just below
            transient = e if isinstance(e, TransientError) else classify(e)
            if transient is None:
                if explain is None or isinstance(e, SourceError):
                    raise
                raise SourceError(redact(f"{what}: {explain(e)}")) from None
            attempt += 1
            if attempt > policy.retries:
                raise SourceError(
                    redact(f"{what}: gave up after {attempt} attempts ({transient})")
                ) from None
            wait = policy.delay(attempt, transient.retry_after)
            logger.warning(
                "{}: {}; retry {} of {} in {:.1f} s",
                what,
                redact(str(transient)),
                attempt,
                policy.retries,
                wait,
            )
            time.sleep(wait)


def retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: rare enough to fall back to back-off
        return None


def classify_requests_error(e: Exception) -> TransientError | None:
    """Time-outs and dropped connections are transient; other request errors are not."""
    dropped = requests.Timeout | requests.ConnectionError | requests.exceptions.ChunkedEncodingError
    if isinstance(e, dropped):
        return TransientError(f"{type(e).__name__}: {redact(str(e))}")
    return None


class ServiceAdapter(HTTPAdapter):
    """Every request gets a time-out; requests for ``real_root`` go to ``api_root``.

    The rewrite is how tests point the real client libraries at a local
    server speaking the service's protocol; by default both roots are equal.
    """

    def __init__(self, real_root: str, api_root: str, timeout: float) -> None:
        super().__init__(pool_maxsize=32)
        self.real_root, self.api_root = real_root.rstrip("/"), api_root.rstrip("/")
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        url = request.url or ""
        if self.api_root != self.real_root and url.startswith(self.real_root):
            request.url = self.api_root + url[len(self.real_root) :]
        return super().send(request, **kwargs)


def mount_service(
    session: requests.Session, timeout: float, real_root: str = "", api_root: str = ""
) -> requests.Session:
    """Give ``session`` time-outs everywhere and route ``real_root`` to ``api_root``."""
    session.headers["User-Agent"] = USER_AGENT
    plain = ServiceAdapter("", "", timeout)
    session.mount("http://", plain)
    session.mount("https://", plain)
    if real_root and api_root.rstrip("/") != real_root.rstrip("/"):
        session.mount(real_root.rstrip("/") + "/", ServiceAdapter(real_root, api_root, timeout))
    return session


class Downloader:
    """Streams photo bytes over plain HTTP(S), a thread-local session per worker thread.

    It never sends credentials: download links of both services are signed
    URLs on other hosts, which must not see the user's token.
    """

    def __init__(self, remote: RemoteSettings, max_bytes: int) -> None:
        self.timeout = remote.timeout
        self.policy = RetryPolicy.from_settings(remote)
        self.max_bytes = max_bytes
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = mount_service(requests.Session(), self.timeout)
        return session

    def fetch(self, url: str | Callable[[], str], what: str) -> bytes:
        """The bytes at ``url`` (or at the URL ``url()`` returns, asked again on each retry:
        signed links expire)."""
        return with_retries(
            lambda: self._get(url() if callable(url) else url, what),
            what,
            self.policy,
            classify_requests_error,
        )

    def _get(self, url: str, what: str) -> bytes:
        with self._session().get(url, stream=True) as response:
            status = response.status_code
            if status in TRANSIENT_STATUS:
                raise TransientError(f"HTTP {status}", retry_after(response))
            if status == 404 or status == 410:
                raise SourceError(f"{what}: the photo is gone from the service (HTTP {status})")
            if status in (401, 403):
                raise SourceError(
                    f"{what}: the service refused the download (HTTP {status}); "
                    "the link may have expired: ingest the source again"
                )
            if status >= 400:
                raise SourceError(f"{what}: download failed (HTTP {status})")
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise SourceError(
                    f"{what}: file is {int(declared):,} bytes, over the limit of {self.max_bytes:,}"
                )
            chunks: list[bytes] = []
            total = 0
            for chunk in response.iter_content(1 << 16):
                total += len(chunk)
                if total > self.max_bytes:
                    raise SourceError(
                        f"{what}: download passed the limit of {self.max_bytes:,} bytes"
                    )
                chunks.append(chunk)
            if declared is not None and declared.isdigit() and total != int(declared):
                raise TransientError(f"connection closed after {total:,} of {declared} bytes")
            return b"".join(chunks)


__all__ = [
    "Downloader",
    "RetryPolicy",
    "TransientError",
    "classify_requests_error",
    "mount_service",
    "retry_after",
    "with_retries",
]
