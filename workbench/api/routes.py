"""The HTTP API's routes: thin adapters over `Workbench` and `workbench.analysis`.

Each route reads its parameters, calls what a notebook would call, and answers
the result's ``to_dict()`` (the CLI's ``--json`` shape). Routes are plain
functions: FastAPI runs them on its thread pool, so a search or a page query
never holds up the event loop.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    File,
    Form,
    Query,
    Request,
    Response,
    Security,
    UploadFile,
)
from fastapi import (
    Path as PathParam,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError

from workbench.analysis.search import SETTINGS_TOP_K
from workbench.api import schemas
from workbench.api.problems import PROBLEM_TYPE, ApiProblem
from workbench.api.state import BEARER_KEY, HEADER_KEY, ApiState, require_key, state_of
from workbench.api.uploads import check_pixels, read_upload, save_uploads
from workbench.errors import NotFoundError
from workbench.sources import is_local_spec

MAX_ID = schemas.MAX_ID
MAX_TOP_K = 16384
"""Most matches per face a search returns (the vector store's own limit)."""
_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {
        400: "a value the workbench cannot use",
        401: "no API key, or one unknown or revoked",
        403: "a path outside the API's roots",
        404: "no such photo, person or job",
        413: "an upload over the size or pixel limit",
        422: "a request that failed validation, or a photo that cannot be used",
        503: "the model pack or the storage is not available",
    }
    return {
        c: {
            "description": words[c],
            "model": schemas.Problem,
            "content": {PROBLEM_TYPE: {"schema": _PROBLEM}},
        }
        for c in codes
    }


def authorized(
    request: Request,
    header: Annotated[str | None, Security(HEADER_KEY)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER_KEY)] = None,
) -> int:
    return require_key(request, header, bearer)


State = Annotated[ApiState, Depends(state_of)]
v1 = APIRouter(
    prefix="/v1", dependencies=[Depends(authorized)], responses=_problems(400, 401, 422, 503)
)


# ---- search --------------------------------------------------------------------------
@v1.post(
    "/search",
    response_model=list[schemas.SearchFace],
    responses=_problems(413),
    summary="Find the people of a sample photo",
    tags=["search"],
)
def search(
    state: State,
    photo: Annotated[UploadFile, File(description="the sample photo (JPEG, PNG, ...)")],
    threshold: Annotated[
        float | None, Form(ge=0, le=100, description="minimum similarity, % [default: 85]")
    ] = None,
    top_k: Annotated[
        int | None, Form(ge=1, le=MAX_TOP_K, description="matches per face [default: 10]")
    ] = None,
    all: Annotated[  # noqa: A002 - the API's word
        bool, Form(description="every match at or above the threshold, however many")
    ] = False,
    source: Annotated[
        str | None, Form(max_length=512, description="only photos of this source")
    ] = None,
    include_low_quality: Annotated[
        bool, Form(description="also match faces below the quality gate (tiny, blurred, turned)")
    ] = False,
) -> list[dict[str, Any]]:
    """Every face in the photo with its matches, best first: what `workbench search --json`
    prints for the same photo."""
    settings = state.settings
    data = read_upload(photo, settings.api.max_upload_bytes)
    check_pixels(photo.filename or "the photo", data, settings.api.max_upload_pixels)
    state.loaded_pack()
    results = state.wb.search(
        data,
        top_k=None if all else (top_k or SETTINGS_TOP_K),
        threshold=threshold,
        source=source,
        include_low_quality=include_low_quality,
    )
    return [r.to_dict() for r in results]


# ---- photos --------------------------------------------------------------------------
@v1.get(
    "/photos",
    response_model=schemas.PhotoPage,
    responses=_problems(404),
    summary="A page of photos",
    tags=["photos"],
)
def photos(
    state: State,
    page: Annotated[int, Query(ge=1, le=10_000_000)] = 1,
    page_size: Annotated[int | None, Query(ge=1, le=1000)] = None,
    source: Annotated[str | None, Query(max_length=512)] = None,
    origin: Annotated[Literal["local", "zip", "yadisk", "vk"] | None, Query()] = None,
    status: Annotated[
        Literal["all", "faces", "no_faces", "errors", "pending"],
        Query(description="the gallery's categories"),
    ] = "all",
    person_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    date_from: Annotated[dt.date | None, Query()] = None,
    date_to: Annotated[dt.date | None, Query()] = None,
) -> dict[str, Any]:
    """Photos newest first, filtered like the gallery app (photos without faces are their own
    category: ``status=no_faces``)."""
    from workbench.analysis.gallery import GalleryFilter, gallery_page

    flt = GalleryFilter(
        source=source,
        origin=origin,
        status=status,
        person_id=person_id,
        date_from=date_from,
        date_to=date_to,
    )
    size = page_size or state.settings.api.page_size
    return gallery_page(state.wb.catalog, flt, page, size).to_dict()


PhotoId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


@v1.get(
    "/photos/{photo_id}",
    response_model=schemas.PhotoDetail,
    responses=_problems(404),
    summary="A photo with its faces and their people",
    tags=["photos"],
)
def photo(state: State, photo_id: PhotoId) -> dict[str, Any]:
    from workbench.analysis.gallery import photo_detail

    return photo_detail(state.wb.catalog, photo_id, gate=state.settings.quality).to_dict()


@v1.get(
    "/photos/{photo_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG"}, **_problems(404)},
    summary="A photo's thumbnail (JPEG)",
    tags=["photos"],
)
def thumbnail(
    state: State,
    photo_id: PhotoId,
    size: Annotated[int, Query(ge=32, le=1024, description="longest side, px")] = 256,
) -> Response:
    from workbench.imaging.thumbnails import ThumbnailCache, ThumbnailError

    # The photo's row is all a thumbnail needs (not its faces and people).
    row = state.wb.catalog.photos_by_ids([photo_id]).get(photo_id)
    if row is None:
        raise NotFoundError(
            f"no photo with id {photo_id} in the catalog; GET /v1/photos lists them"
        )
    try:
        data = ThumbnailCache(state.settings).thumbnail_bytes(row, size)
    except ThumbnailError as e:
        raise ApiProblem(404, "No thumbnail", str(e)) from e
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )


# ---- people --------------------------------------------------------------------------
PersonId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


@v1.get("/people", response_model=schemas.PeoplePage, summary="A page of people", tags=["people"])
def people(
    state: State,
    page: Annotated[int, Query(ge=1, le=10_000_000)] = 1,
    page_size: Annotated[int | None, Query(ge=1, le=1000)] = None,
    include_hidden: bool = False,
) -> dict[str, Any]:
    """The pack's people, largest first."""
    everyone = state.wb.people.list(include_hidden=include_hidden)
    size = page_size or state.settings.api.page_size
    start = (page - 1) * size
    return {
        "items": [p.to_dict() for p in everyone[start : start + size]],
        "total": len(everyone),
        "page": page,
        "pages": math.ceil(len(everyone) / size),
        "page_size": size,
    }


def _person(state: ApiState, person_id: int) -> dict[str, Any]:
    people = state.wb.people
    return {**people.get(person_id).to_dict(), "face_ids": people.faces(person_id)}


@v1.get(
    "/people/{person_id}",
    response_model=schemas.PersonDetail,
    responses=_problems(404),
    summary="A person and their faces",
    tags=["people"],
)
def person(state: State, person_id: PersonId) -> dict[str, Any]:
    return _person(state, person_id)


@v1.post(
    "/people/{person_id}/name",
    response_model=schemas.Person,
    responses=_problems(404),
    summary="Name (or un-name) a person",
    tags=["people"],
)
def name_person(state: State, person_id: PersonId, body: schemas.NameRequest) -> dict[str, Any]:
    return state.wb.people.name(person_id, body.name).to_dict()


@v1.post(
    "/people/{person_id}/merge",
    response_model=schemas.Person,
    responses=_problems(404),
    summary="Merge other people into this one",
    tags=["people"],
)
def merge_people(state: State, person_id: PersonId, body: schemas.MergeRequest) -> dict[str, Any]:
    return state.wb.people.merge([person_id, *body.people], name=body.name).to_dict()


@v1.post(
    "/people/{person_id}/hide",
    response_model=schemas.Person,
    responses=_problems(404),
    summary="Hide (or show again) a person",
    tags=["people"],
)
def hide_person(state: State, person_id: PersonId, body: schemas.HideRequest) -> dict[str, Any]:
    return state.wb.people.hide(person_id, body.hidden).to_dict()


# ---- ingest jobs ---------------------------------------------------------------------
_INGEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/IngestRequest"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "photos and zip archives to ingest",
                    },
                    "source": {"type": "string", "description": "source label [default: upload]"},
                },
                "required": ["files"],
            }
        },
    },
}


@v1.post(
    "/ingest",
    status_code=202,
    response_model=schemas.Job,
    responses=_problems(403, 413),
    openapi_extra={"requestBody": _INGEST_BODY},
    summary="Start an ingest job",
    tags=["ingest"],
)
async def ingest(request: Request) -> JSONResponse:
    """Ingest paths under the API's roots, remote sources (``yadisk:...``, ``vk:...``) given
    as JSON, or photos and zips uploaded as ``multipart/form-data``. Answers the job at
    once (202, with ``Location``); `GET /v1/jobs/{id}` follows it."""
    state = state_of(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        sources, label, uploads = await save_uploads(request, state)
    elif kind in ("application/json", ""):
        body = await request.body()
        if len(body) > 1_000_000:
            raise ApiProblem(413, "Request too large", "an ingest request's JSON is 1 MB at most")
        try:
            req = schemas.IngestRequest.model_validate_json(body or b"null")
        except ValidationError as e:
            raise _invalid(e) from e
        sources = [_allowed_source(state, s) for s in req.sources]
        label, uploads = req.source, None
    else:
        raise ApiProblem(
            422,
            "Invalid request",
            f"an ingest is application/json or multipart/form-data, not {kind!r}",
        )
    job = await run_in_threadpool(state.jobs.submit, sources, label, uploads)
    return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


def _invalid(e: ValidationError) -> ApiProblem:
    msgs = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()
    )
    return ApiProblem(422, "Invalid request", msgs)


def _allowed_source(state: ApiState, spec: str) -> str:
    """``spec`` if the API may ingest it: a remote source, or a path under one of its roots."""
    if not spec.strip() or not spec.isprintable():
        raise ApiProblem(422, "Invalid request", f"source {spec!r} is empty or not printable")
    if not is_local_spec(spec):
        return spec
    roots = [Path(r).expanduser().resolve() for r in state.settings.api.roots]
    if not roots:
        raise ApiProblem(
            403,
            "Paths not allowed",
            "this API ingests no paths (WORKBENCH_API__ROOTS names none); upload the files, "
            "or name a remote source",
        )
    given = Path(spec).expanduser()
    path = (given if given.is_absolute() else roots[0] / given).resolve()
    if not any(path.is_relative_to(r) for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise ApiProblem(403, "Path not allowed", f"{spec} is outside the API's roots ({allowed})")
    if not path.exists():
        raise ApiProblem(422, "No such source", f"{spec}: no such file or folder")
    return str(path)


@v1.get(
    "/jobs/{job_id}",
    response_model=schemas.Job,
    responses=_problems(404),
    summary="An ingest job's progress",
    tags=["ingest"],
)
def job(state: State, job_id: Annotated[str, PathParam(max_length=64)]) -> dict[str, Any]:
    return state.jobs.get(job_id).to_dict()


# ---- stats, health, metrics ------------------------------------------------------------
@v1.get("/stats", response_model=schemas.Stats, summary="Counts", tags=["stats"])
def stats(state: State) -> dict[str, Any]:
    """Photos per source and status; per pack, whether catalog and index agree."""
    return state.wb.stats().to_dict()


health = APIRouter()


@health.get("/healthz", response_model=schemas.Health, summary="Liveness", tags=["stats"])
def healthz() -> dict[str, Any]:
    """``ok`` while the process answers (no key needed)."""
    from workbench import __version__

    return {"status": "ok", "version": __version__}


@health.get(
    "/metrics",
    response_class=PlainTextResponse,
    dependencies=[Depends(authorized)],
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        **_problems(401),
    },
    summary="Prometheus metrics",
    tags=["stats"],
)
def metrics() -> Response:
    """The process's metrics, ``workbench_api_request_seconds`` among them."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def install_routes(app: FastAPI) -> None:
    app.include_router(v1)
    app.include_router(health)

    # The ingest route reads its body itself (JSON or multipart): publish its model.
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = original()
            doc.setdefault("components", {}).setdefault("schemas", {})["IngestRequest"] = (
                schemas.IngestRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            )
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["MAX_TOP_K", "install_routes"]
