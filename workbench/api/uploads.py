"""Uploaded photos: read within the size limit, checked against the pixel limit, and kept
(for an ingest) under the home's ``uploads/<job>/``, where the catalog's uris point."""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from workbench.api.problems import ApiProblem
from workbench.settings import make_home_dirs

if TYPE_CHECKING:
    from workbench.api.state import ApiState

UPLOAD_SOURCE = "upload"
"""The source label of uploaded photos when the request names none."""
_SAFE = re.compile(r"[^\w.-]+")  # letters of any script, digits, . _ -


def read_upload(file: UploadFile, limit: int) -> bytes:
    """The upload's bytes, or a 413 problem naming it when it is over ``limit``."""
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise ApiProblem(
            413,
            "Upload too large",
            f"{file.filename or 'the upload'} is over the limit of {limit:,} bytes "
            "(WORKBENCH_API__MAX_UPLOAD_BYTES)",
        )
    return data


def check_pixels(name: str, data: bytes, limit: int) -> None:
    """A 413 problem when the image's header says it is over ``limit`` pixels (nothing is
    decoded; what cannot be read at all is left to the decoder to name)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - not an image Pillow knows: the decoder says why
        return
    if w * h > limit:
        raise ApiProblem(
            413,
            "Photo too large",
            f"{name} is {w}×{h} = {w * h:,} pixels, over the limit of {limit:,} "
            "(WORKBENCH_API__MAX_UPLOAD_PIXELS)",
        )


def safe_name(name: str | None, taken: set[str]) -> str:
    """A file name for an upload: its own last part, made of safe characters, unique."""
    stem = _SAFE.sub("_", Path((name or "").replace("\\", "/")).name).lstrip(".") or "upload"
    stem = stem[:120]
    out, n = stem, 1
    while out.lower() in taken:
        n += 1
        p = Path(stem)
        out = f"{p.stem}-{n}{p.suffix}"
    taken.add(out.lower())
    return out


async def save_uploads(request: Request, state: ApiState) -> tuple[list[str], str, Path]:
    """The multipart ingest's files written under ``uploads/<id>/``: (their paths, the
    source label, the folder)."""
    api = state.settings.api
    declared = int(request.headers.get("content-length") or 0)
    if declared > api.max_upload_bytes * api.max_upload_files:
        raise ApiProblem(
            413,
            "Upload too large",
            f"the request is {declared:,} bytes, over {api.max_upload_files} files of "
            f"{api.max_upload_bytes:,} bytes",
        )
    form = await request.form(max_files=api.max_upload_files, max_fields=20)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not files:
        raise ApiProblem(422, "Invalid request", "files: upload one or more photos or zips")
    label = form.get("source")
    label = label if isinstance(label, str) and label.strip() else UPLOAD_SOURCE
    return await run_in_threadpool(_write, state, files, label)


def _write(state: ApiState, files: list[Any], label: str) -> tuple[list[str], str, Path]:
    from workbench.sources import check_source_label

    check_source_label(label)
    api = state.settings.api
    blobs = [(f.filename, read_upload(f, api.max_upload_bytes)) for f in files]
    for name, data in blobs:
        check_pixels(name or "an upload", data, api.max_upload_pixels)
    home = state.wb.home
    folder = home / "uploads" / uuid.uuid4().hex
    make_home_dirs(folder, home)
    taken: set[str] = set()
    paths = []
    for name, data in blobs:
        path = folder / safe_name(name, taken)
        path.write_bytes(data)
        paths.append(str(path))
    return paths, label, folder


__all__ = ["UPLOAD_SOURCE", "check_pixels", "read_upload", "safe_name", "save_uploads"]
