"""Local HTTP fakes of the cloud photo services (Yandex.Disk REST API, VK API).

Why real HTTP servers and not mocks: the production code talks to the services
through the real client libraries (``yadisk``, ``vk_api``) and ``requests``; a
server on 127.0.0.1 that speaks the documented wire protocol exercises all of
that code (parsing, error mapping, retries, streaming downloads) while the
tests stay offline and deterministic.

This module holds the shared machinery (threaded server, request log, failure
injection, file streaming); :class:`tests.fakes.yandex_disk.FakeYandexDisk` and
:class:`tests.fakes.vk.FakeVK` add the services' routes.
"""

from __future__ import annotations

import json
import mimetypes
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

__all__ = ["FakeHTTPService", "LoggedRequest", "Reply", "FakeVK", "FakeYandexDisk"]

_S = TypeVar("_S", bound="FakeHTTPService")


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the fake saw it (tests assert on what the client sent).

    Header names are canonical (``Authorization``, ``Content-Type``) whatever case
    the client used; ``query`` and ``form`` keep the last value of a repeated key.
    """

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    status: int


@dataclass
class Reply:
    """What a route answers: JSON-able data, raw bytes, or a local file to stream."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None


@dataclass
class _Failure:
    prefix: str
    status: int
    times: int
    retry_after: int | None


def content_type(path: Path) -> str:
    """MIME type by suffix, as the services' download hosts send it."""
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _canonical(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


class FakeHTTPService:
    """A ThreadingHTTPServer on 127.0.0.1:<free port> in a daemon thread.

    Subclasses implement :meth:`route` (and :meth:`error_reply` for the
    service's own error body when :meth:`fail_next` injects an HTTP status).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._log: list[LoggedRequest] = []
        self._failures: list[_Failure] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.latency = 0.0
        """Seconds every reply waits before it is sent (a far-away server, for benchmarks)."""

    # -- lifecycle -----------------------------------------------------------------

    def start(self: _S) -> _S:
        """Bind a free port and serve in the background; returns self for chaining."""
        if self._server is not None:
            return self
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service._serve(self, "GET")

            def do_POST(self) -> None:
                service._serve(self, "POST")

            def do_HEAD(self) -> None:
                service._serve(self, "HEAD")

            def log_message(self, format: str, *args: Any) -> None:
                """Silence the default per-request stderr line."""

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- request log and failure injection -----------------------------------------

    @property
    def requests(self) -> list[LoggedRequest]:
        """A snapshot of every request served so far, oldest first."""
        with self._lock:
            return list(self._log)

    def count(self, path_prefix: str = "/") -> int:
        """How many requests had a path starting with ``path_prefix``."""
        with self._lock:
            return sum(1 for r in self._log if r.path.startswith(path_prefix))

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def fail_next(
        self, path_prefix: str, status: int, times: int = 1, *, retry_after: int | None = None
    ) -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with HTTP ``status``."""
        with self._lock:
            self._failures.append(_Failure(path_prefix, status, times, retry_after))

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.times > 0 and path.startswith(failure.prefix):
                    failure.times -= 1
                    return failure
            return None

    # -- subclass hooks -------------------------------------------------------------

    def route(
        self, method: str, path: str, params: dict[str, str], headers: Mapping[str, str]
    ) -> Reply:
        """Answer one request; ``params`` is the query merged with the form body."""
        raise NotImplementedError

    def error_reply(self, path: str, status: int) -> Reply:
        """The body an injected HTTP failure carries (service-specific for API routes)."""
        return Reply(status, f"{status} error\n".encode(), {"Content-Type": "text/plain"})

    # -- plumbing -----------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        form: dict[str, str] = {}
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            raw = handler.rfile.read(length)
            if "x-www-form-urlencoded" in handler.headers.get("Content-Type", ""):
                form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        # Header names canonicalised ("authorization" -> "Authorization"): clients differ.
        headers = {_canonical(k): v for k, v in handler.headers.items()}
        failure = self._take_failure(url.path)
        if failure is not None:
            reply = self.error_reply(url.path, failure.status)
            if failure.retry_after is not None:
                reply.headers["Retry-After"] = str(failure.retry_after)
        else:
            try:
                reply = self.route(method, url.path, {**query, **form}, headers)
            except Exception as exc:  # a bug in the fake must not hang the client
                reply = Reply(500, f"fake crashed: {exc!r}\n".encode(), {})
        with self._lock:
            self._log.append(LoggedRequest(method, url.path, query, form, headers, reply.status))
        if self.latency:
            time.sleep(self.latency)
        self._write(handler, reply, head=method == "HEAD")

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, reply: Reply, *, head: bool) -> None:
        headers = dict(reply.headers)
        if reply.file is not None:
            size = reply.file.stat().st_size
            headers.setdefault("Content-Type", content_type(reply.file))
        else:
            if isinstance(reply.body, bytes):
                data = reply.body
            else:
                data = json.dumps(reply.body, ensure_ascii=False).encode()
                headers.setdefault("Content-Type", "application/json; charset=utf-8")
            size = len(data)
        headers["Content-Length"] = str(size)
        try:
            handler.send_response(reply.status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if head:
                return
            if reply.file is None:
                handler.wfile.write(data)
                return
            with reply.file.open("rb") as fh:
                while chunk := fh.read(64 * 1024):
                    handler.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to answer


def __getattr__(name: str) -> Any:
    """Lazy re-exports, so the service modules can import the base from here."""
    if name == "FakeYandexDisk":
        from tests.fakes.yandex_disk import FakeYandexDisk

        return FakeYandexDisk
    if name == "FakeVK":
        from tests.fakes.vk import FakeVK

        return FakeVK
    raise AttributeError(name)
