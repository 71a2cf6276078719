"""The HTTP API's application: `create_app` over one `Workbench`.

The routes are in `workbench.api.routes` and call the same analysis API the
notebooks use. Every route but ``/healthz`` needs an API key (``X-API-Key: KEY``
or ``Authorization: Bearer KEY``; `workbench.api.state`); every error is an RFC
9457 problem (`workbench.api.problems`); every request is timed into
``workbench_api_request_seconds{route, method, status}``.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from loguru import logger
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workbench.api.jobs import JobRunner
from workbench.api.keys import ApiKeys
from workbench.api.problems import install_problems
from workbench.api.routes import install_routes
from workbench.api.state import ApiState
from workbench.core import Workbench
from workbench.monitoring.metrics import API_REQUEST_SECONDS
from workbench.settings import WorkbenchSettings


# ---- metrics -------------------------------------------------------------------------
class _Timed:
    """Times each HTTP request into ``workbench_api_request_seconds`` (plain ASGI: Starlette's
    ``BaseHTTPMiddleware`` would cost a task and a stream per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            API_REQUEST_SECONDS.labels(
                route=route, method=scope["method"], status=str(status)
            ).observe(time.perf_counter() - started)


# ---- the application -----------------------------------------------------------------
def create_app(settings: WorkbenchSettings | None = None, wb: Workbench | None = None) -> FastAPI:
    """The API over ``wb`` (default: a `Workbench` of ``settings``, opened at start-up and
    closed at shut-down)."""
    from workbench import __version__

    owned = wb is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bench = wb if wb is not None else Workbench(settings)
        state = ApiState(bench, ApiKeys(bench.catalog), JobRunner(bench))
        app.state.api = state
        # Models load in the background: catalog routes answer at once, the first
        # search does not pay the load (it waits for it, if it comes first).
        threading.Thread(target=_warm, args=(state,), name="api-warm", daemon=True).start()
        try:
            yield
        finally:
            state.jobs.close()
            if owned:
                bench.close()

    app = FastAPI(
        title="face workbench",
        version=__version__,
        description="Find, group and search faces in photo collections: the same operations "
        "as the notebooks and the CLI. Every route but /healthz needs an API key "
        "(`workbench api-key create NAME`), sent as `X-API-Key: KEY` or "
        "`Authorization: Bearer KEY`. Errors are RFC 9457 problems.",
        lifespan=lifespan,
    )
    cors = (settings or (wb.settings if wb else WorkbenchSettings())).api.cors_origins
    if cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    install_problems(app)
    app.add_middleware(_Timed)
    install_routes(app)
    return app


def _warm(state: ApiState) -> None:
    try:
        state.loaded_pack()
    except Exception as e:  # noqa: BLE001 - said again, in words, by the first search
        logger.warning("the model pack did not load: {}", e)
    # What start-up made (modules, models, the app) lives as long as the server: kept out
    # of the collector's full passes, which otherwise walk it all every few hundred
    # requests (A/B on 2 cores: per-search overhead p95 27-39 ms frozen, 48-57 ms not).
    gc.collect()
    gc.freeze()


__all__ = ["create_app"]
