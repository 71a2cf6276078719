"""A fake Yandex.Disk REST API (https://yandex.com/dev/disk-api/doc/en/) for the real ``yadisk``.

Why: the Yandex source must be tested through the real client library, so this
server answers the documented routes with the documented JSON shapes (public
and private resource meta, download links, the error bodies ``yadisk`` maps to
its exceptions) and serves the bytes behind the links it hands out.

Requests to ``https://cloud-api.yandex.net/v1/disk/...`` arrive here as
``/v1/disk/...`` (the tests rebase the client's URL). Download links point at
this server: ``/download/<id>?filename=...`` (originals) and
``/preview/<id>?size=...`` (previews; the same bytes).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.fakes import FakeHTTPService, LoggedRequest, Reply, content_type

__all__ = ["FakeYandexDisk"]

_BASE_TIME = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)
_OWNER = {"login": "fake-owner", "display_name": "Fake Owner", "uid": "1130000012345678"}
_PREVIEW_SIZES = ["DEFAULT", "XXXS", "XXS", "XS", "S", "M", "L", "XL", "XXL", "XXXL"]
_PUBLIC_URL = re.compile(r"^https?://[^/]+/(?:d|i|a)/([^/?#]+)")
# status -> (error, message, description) as the API words them.
_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("FieldValidationError", "Ошибка проверки поля.", "Error validating field."),
    401: ("UnauthorizedError", "Не авторизован.", "Unauthorized"),
    403: ("ForbiddenError", "Доступ запрещён.", "Forbidden."),
    404: (
        "DiskNotFoundError",
        "Не удалось найти запрошенный ресурс.",
        "Resource not found.",
    ),
    429: ("TooManyRequestsError", "Слишком много запросов.", "Too Many Requests."),
    500: ("InternalServerError", "Внутренняя ошибка сервера.", "Internal Server Error."),
    502: ("BadGatewayError", "Ошибка шлюза.", "Bad Gateway."),
    503: ("UnavailableError", "Сервис временно недоступен.", "Service is unavailable."),
    504: ("GatewayTimeoutError", "Превышено время ожидания шлюза.", "Gateway Timeout."),
}


def _date(moment: datetime) -> str:
    """ISO-8601 with a ``+00:00`` offset and no fraction: ``yadisk`` parses nothing else."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _error(status: int, error: str, message: str, description: str = "") -> Reply:
    return Reply(status, {"message": message, "description": description, "error": error})


def _norm(path: str | None) -> str:
    """``disk:/a/b/``, ``a/b``, ``/a//b`` -> ``/a/b``; empty -> ``/``."""
    path = (path or "/").removeprefix("disk:")
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts)


def _select(obj: Any, fields: str) -> Any:
    """The ``fields=a,b.c`` filter: keep only the listed keys (dotted keys go inside)."""
    tree: dict[str, Any] = {}
    for name in filter(None, fields.split(",")):
        node = tree
        *parents, leaf = name.strip().split(".")
        for key in parents:
            child = node.setdefault(key, {})
            if child is True:
                break
            node = child
        else:
            node[leaf] = True

    def apply(value: Any, sub: dict[str, Any]) -> Any:
        if isinstance(value, list):
            return [apply(v, sub) for v in value]
        if not isinstance(value, dict):
            return value
        picked = {k: s for k, s in sub.items() if k in value}
        return {k: value[k] if s is True else apply(value[k], s) for k, s in picked.items()}

    return apply(obj, tree)


class _Tree:
    """A folder of files by POSIX path (``/`` alone maps a single published file)."""

    def __init__(self, files: Mapping[str, Path], name: str) -> None:
        self.files = {_norm(p): Path(f) for p, f in files.items()}
        self.name = name
        self.order = {p: i for i, p in enumerate(sorted(self.files))}

    def is_dir(self, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        return path not in self.files and any(f.startswith(prefix) for f in self.files)

    def children(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        names = {f[len(prefix) :].split("/")[0] for f in self.files if f.startswith(prefix)}
        return [prefix + n for n in names]


class FakeYandexDisk(FakeHTTPService):
    """Public folders/files by public key and private disks by OAuth token."""

    def __init__(self) -> None:
        super().__init__()
        self._public: dict[str, _Tree] = {}
        self._private: dict[str, _Tree] = {}
        self._expired: set[str] = set()
        self._blobs: dict[str, Path] = {}
        self._hashes: dict[Path, tuple[str, str, int]] = {}

    # -- state ------------------------------------------------------------------------------

    def publish(self, public_key: str, tree: Mapping[str, Path] | Path, *, name: str = "") -> str:
        """Publish a folder (``{"/a/x.jpg": Path}``) or one file; returns its public URL."""
        if isinstance(tree, Mapping):
            self._public[public_key] = _Tree(tree, name or public_key)
            return f"https://disk.yandex.ru/d/{public_key}"
        self._public[public_key] = _Tree({"/": tree}, name or Path(tree).name)
        return f"https://disk.yandex.ru/i/{public_key}"

    def add_private(self, token: str, tree: Mapping[str, Path]) -> None:
        """A private disk that ``Authorization: OAuth <token>`` opens."""
        self._private[token] = _Tree(tree, "disk")
        self._expired.discard(token)

    def expire(self, token: str) -> None:
        """From now on the token gets 401, as a revoked/expired OAuth token does."""
        self._expired.add(token)

    def downloads(self) -> int:
        """Byte requests (originals and previews) served or refused so far."""
        return len(self.download_log())

    def download_log(self) -> list[LoggedRequest]:
        """The logged byte requests, e.g. to check no OAuth token leaks to the download host."""
        return [r for r in self.requests if r.path.startswith(("/download/", "/preview/"))]

    # -- routes -----------------------------------------------------------------------------

    def error_reply(self, path: str, status: int) -> Reply:
        if not path.startswith("/v1/"):
            return super().error_reply(path, status)
        error, message, description = _ERRORS.get(status, ("UnknownError", "Ошибка.", "Error."))
        return _error(status, error, message, description)

    def route(
        self, method: str, path: str, params: dict[str, str], headers: Mapping[str, str]
    ) -> Reply:
        if path.startswith(("/download/", "/preview/")):
            blob = self._blobs.get(path.split("/")[2])
            if blob is None:
                return self.error_reply(path, 404)
            disposition = f"attachment; filename*=UTF-8''{quote(blob.name)}"
            return Reply(200, file=blob, headers={"Content-Disposition": disposition})
        if method != "GET":
            return _error(405, "MethodNotAllowedError", "Метод не поддерживается.")
        try:
            limit = int(params.get("limit") or 20)
            offset = int(params.get("offset") or 0)
        except ValueError:
            return self.error_reply(path, 400)
        if path in ("/v1/disk/public/resources", "/v1/disk/public/resources/download"):
            key = params.get("public_key", "")
            match = _PUBLIC_URL.match(key)
            key = match.group(1) if match else key
            tree = self._public.get(key)
            scope, ext = f"pub:{key}", ""
        else:
            auth = headers.get("Authorization", "")
            token = auth.partition(" ")[2] if auth.split(" ")[0] in ("OAuth", "Bearer") else ""
            tree = self._private.get(token)
            if tree is None or token in self._expired:
                return self.error_reply(path, 401)
            scope, ext, key = f"priv:{token}", "disk:", ""
            if path == "/v1/disk":
                return Reply(200, self._disk_info())
            if path.startswith("/v1/disk/operations/"):
                return _error(404, "DiskOperationNotFoundError", "Операция не найдена.")
        if path not in (
            "/v1/disk/resources",
            "/v1/disk/resources/download",
            "/v1/disk/public/resources",
            "/v1/disk/public/resources/download",
        ):
            return _error(404, "NotFoundError", "Не найдено.")
        target = _norm(params.get("path"))
        if tree is None or not (target in tree.files or target == "/" or tree.is_dir(target)):
            return self.error_reply(path, 404)
        if path.endswith("/download"):
            href = self._link(scope, tree, target, "download")
            return Reply(200, {"href": href, "method": "GET", "templated": False})
        args = (scope, tree, ext, key, params.get("preview_size") or "S")
        body = self._resource(*args, target)
        if body["type"] == "dir":
            sort = params.get("sort") or ""
            field = sort.lstrip("-") or "name"
            kids = [self._resource(*args, p) for p in tree.children(target)]
            kids.sort(key=lambda r: (r.get(field, 0), r["name"]), reverse=sort.startswith("-"))
            body["_embedded"] = {
                "items": kids[offset : offset + limit],
                "limit": limit,
                "offset": offset,
                "total": len(kids),
                "path": body["path"],
                "sort": sort,
                **({"public_key": key} if key else {}),
            }
        if key and target == "/":
            public_url = f"https://disk.yandex.ru/{'i' if '/' in tree.files else 'd'}/{key}"
            body.update(public_url=public_url, owner=dict(_OWNER), views_count=0)
        if params.get("fields"):
            body = _select(body, params["fields"])
        return Reply(200, body)

    # -- JSON ---------------------------------------------------------------------------------

    def _link(self, scope: str, tree: _Tree, path: str, kind: str, size: str = "") -> str:
        blob_id = hashlib.sha1(f"{scope}\0{path}".encode()).hexdigest()[:24]
        with self._lock:
            self._blobs[blob_id] = tree.files[path]
        name = quote(tree.files[path].name if path == "/" else path.rsplit("/", 1)[1])
        if kind == "preview":
            return f"{self.base_url}/preview/{blob_id}?size={quote(size)}&crop=0"
        return f"{self.base_url}/download/{blob_id}?filename={name}&disposition=attachment"

    def _digests(self, file: Path) -> tuple[str, str, int]:
        with self._lock:
            if file not in self._hashes:
                data = file.read_bytes()
                md5, sha = hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()
                self._hashes[file] = (md5, sha, len(data))
            return self._hashes[file]

    def _resource(
        self, scope: str, tree: _Tree, ext: str, key: str, preview_size: str, path: str
    ) -> dict[str, Any]:
        """One resource as the API describes it (without ``_embedded``)."""
        name = tree.name if path == "/" else path.rsplit("/", 1)[1]
        if path == "/" and ext:
            name = "disk"
        rid = f"{_OWNER['uid']}:{hashlib.sha256(f'{scope}{path}'.encode()).hexdigest()}"
        body: dict[str, Any] = {
            "name": name,
            "path": ext + path,
            "created": _date(_BASE_TIME),
            "modified": _date(_BASE_TIME),
            "resource_id": rid,
            "revision": 1714557600000000,
            "comment_ids": {"private_resource": rid, "public_resource": rid},
            "exif": {},
        }
        if key:
            body["public_key"] = key
        if path not in tree.files:
            return {**body, "type": "dir"}
        file = tree.files[path]
        md5, sha256, size = self._digests(file)
        moment = _BASE_TIME + timedelta(minutes=tree.order[path])
        mime = content_type(file)
        top = mime.split("/")[0]
        original = self._link(scope, tree, path, "download")
        previews = [
            {"url": self._link(scope, tree, path, "preview", s), "name": s} for s in _PREVIEW_SIZES
        ]
        return {
            **body,
            "type": "file",
            "mime_type": mime,
            "media_type": top if top in ("image", "video", "audio") else "document",
            "size": size,
            "md5": md5,
            "sha256": sha256,
            "created": _date(moment),
            "modified": _date(moment),
            "photoslice_time": _date(moment - timedelta(days=1)),
            "exif": {"date_time": _date(moment - timedelta(days=1))},
            "antivirus_status": "clean",
            "file": original,
            "preview": self._link(scope, tree, path, "preview", preview_size),
            "sizes": [{"url": original, "name": "ORIGINAL"}, *previews],
        }

    @staticmethod
    def _disk_info() -> dict[str, Any]:
        return {
            "total_space": 10 * 1024**3,
            "used_space": 1024**2,
            "trash_size": 0,
            "max_file_size": 1024**3,
            "is_paid": False,
            "revision": 1714557600000000,
            "system_folders": {"photostream": "disk:/Фотокамера/", "downloads": "disk:/Загрузки/"},
            "user": {**_OWNER, "country": "ru"},
        }
