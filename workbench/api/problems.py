"""Errors as RFC 9457 problems (``application/problem+json``): in words, never a traceback.

A workbench error maps to a status by its kind (`STATUS_OF`); a request that fails
validation is a 422 listing what was wrong, field by field; anything unforeseen is
a 500 whose detail points at the API's log, where the traceback goes.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.exceptions import HTTPException as StarletteHTTPException

from workbench.errors import (
    ConfigurationError,
    ImageError,
    MissingDependencyError,
    ModelNotFoundError,
    NotFoundError,
    StoreError,
    WorkbenchError,
)

PROBLEM_TYPE = "application/problem+json"


class ApiProblem(Exception):
    """An answer that is an error: ``status``, a short ``title`` and the ``detail`` in words."""

    def __init__(
        self, status: int, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers = status, title, detail, headers


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_TYPE)


STATUS_OF: tuple[tuple[type[Exception], int, str], ...] = (
    (NotFoundError, 404, "Not found"),
    (ImageError, 422, "Photo cannot be used"),
    (ModelNotFoundError, 503, "Model pack not available"),
    (MissingDependencyError, 503, "Optional part not installed"),
    (StoreError, 503, "Catalog or vector store not available"),
    (ConfigurationError, 400, "Bad request"),
    (WorkbenchError, 400, "Bad request"),
)


def install_problems(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, e: ApiProblem) -> Response:
        return problem(request, e.status, e.title, e.detail, e.headers)

    @app.exception_handler(WorkbenchError)
    async def _workbench_error(request: Request, e: WorkbenchError) -> Response:
        status, title = next((s, t) for cls, s, t in STATUS_OF if isinstance(e, cls))
        return problem(request, status, title, str(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> Response:
        errors = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))}
            for err in e.errors()
        ]
        detail = "; ".join(f"{'.'.join(x['loc'])}: {x['msg']}" for x in errors)
        return problem(request, 422, "Invalid request", detail or "invalid request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> Response:
        title = {404: "Not found", 405: "Method not allowed"}.get(e.status_code, "HTTP error")
        return problem(request, e.status_code, title, str(e.detail), dict(e.headers or {}))

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception) -> Response:
        from workbench.store.schema import storage_failure

        failure = storage_failure(e, "the workbench")
        if failure is not None:
            return problem(request, 503, "Storage failure", failure)
        logger.opt(exception=e).error("API {} {} failed", request.method, request.url.path)
        return problem(
            request,
            500,
            "Internal error",
            f"{type(e).__name__} while answering; the API's log has the details",
        )


__all__ = ["PROBLEM_TYPE", "STATUS_OF", "ApiProblem", "install_problems", "problem"]
