"""Yandex.Disk through the `yadisk` client: public links (no token) and a private disk.

Specs:
* ``yadisk:https://disk.yandex.ru/d/<key>`` (or ``yadi.sk/...``, or the bare key):
  a published file or folder; folders are walked recursively.
* ``yadisk:/disk/Photos/2024``, ``yadisk:disk:/Photos/2024`` or
  ``yadisk:/Photos/2024``: a path on the disk of the OAuth token in
  ``WORKBENCH_YADISK_TOKEN``.

The whole listing is read before any photo is downloaded, so a failing link
writes nothing. Files carry the sha256 Yandex.Disk publishes: a photo the
catalog already has is not downloaded again, and a download that does not
match it is rejected. Download links are asked for just before each download
(they are signed and expire) and fetched without the token.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any, TypeVar

from workbench._optional import require
from workbench.errors import SourceError
from workbench.redaction import register_secret
from workbench.settings import WorkbenchSettings
from workbench.sources.base import IMAGE_SUFFIXES, PhotoRef
from workbench.sources.http import Downloader, RetryPolicy, TransientError, with_retries

T = TypeVar("T")

ORIGIN = "yadisk"
REAL_API_ROOT = "https://cloud-api.yandex.net"
_PUBLIC_PREFIXES = ("https://", "http://", "disk.yandex.", "yadi.sk/")
_TOKEN_HELP = (
    "set WORKBENCH_YADISK_TOKEN to an OAuth token with the cloud_api:disk.read scope "
    "(README: 'Yandex.Disk token')"
)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


class YandexDiskSource:
    """Photos of one Yandex.Disk public link or private folder."""

    def __init__(self, spec: str, name: str | None, settings: WorkbenchSettings) -> None:
        spec = spec.strip()
        if not spec:
            raise SourceError(
                "yadisk: give a public link (yadisk:https://disk.yandex.ru/d/...) "
                "or a disk path (yadisk:/disk/Photos)"
            )
        self.public = is_public(spec)
        self.spec = spec
        self.path = "" if self.public else _disk_path(spec)
        self.name = name or f"yadisk:{spec}"
        self.settings = settings
        self.policy = RetryPolicy.from_settings(settings.remote)
        token = settings.yadisk_token.get_secret_value() if settings.yadisk_token else None
        if not self.public and not token:
            raise SourceError(f"yadisk:{spec} is a path on a private disk: {_TOKEN_HELP}")
        register_secret(token)
        # A public link is read without the token: it is not needed, and a link
        # shared by someone else must not see it.
        self._token = None if self.public else token
        self._client: Any = None
        self.downloader = Downloader(settings.remote, settings.limits.max_file_bytes)

    # ---- the client -----------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            yadisk = require("yadisk", None, "ingesting from Yandex.Disk")
            from yadisk.sessions.requests_session import RequestsSession

            from workbench.sources.http import mount_service

            remote = self.settings.remote

            class _Session(RequestsSession):  # type: ignore[misc]
                """yadisk's requests session, with time-outs and the configured API root."""

                @property
                def requests_session(self) -> Any:
                    session = super().requests_session
                    if not getattr(session, "_workbench_mounted", False):
                        mount_service(session, remote.timeout, REAL_API_ROOT, remote.yadisk_api_url)
                        session._workbench_mounted = True
                    return session

            self._client = yadisk.Client(token=self._token or "", session=_Session())
        return self._client

    def _api(self, call: Callable[[], T], what: str) -> T:
        """One API call: transient failures retried, the others explained."""
        return with_retries(call, what, self.policy, _classify, lambda e: _explain(e, self.public))

    # ---- listing -----------------------------------------------------------------
    def refs(self) -> Iterator[PhotoRef]:
        root = self._meta("")
        owner = _owner(root)
        base_url = (root.public_url if self.public else None) or self.spec
        if root.type == "file":
            yield self._ref(root, owner, base_url, single=True)
            return
        found = list(self._walk(root, owner, base_url))
        yield from sorted(found, key=lambda r: r.uri)

    def _meta(self, path: str, offset: int = 0) -> Any:
        limit = self.settings.remote.yadisk_page_size
        where = self.spec + (path if self.public else "")
        if self.public:
            return self._api(
                lambda: self.client.get_public_meta(
                    self.spec, path=path or "/", limit=limit, offset=offset, n_retries=0
                ),
                f"Yandex.Disk link {where}",
            )
        return self._api(
            lambda: self.client.get_meta(
                path or self.path, limit=limit, offset=offset, n_retries=0
            ),
            f"Yandex.Disk folder {path or self.path}",
        )

    def _walk(self, folder: Any, owner: str | None, base_url: str) -> Iterator[PhotoRef]:
        folder_path = "" if self.public and folder.path in (None, "/") else folder.path
        offset = 0
        page = folder
        while True:
            embedded = page.embedded
            items = list(embedded.items or []) if embedded is not None else []
            for item in items:
                if item.type == "dir":
                    sub = self._meta(item.path)
                    yield from self._walk(sub, owner, base_url)
                elif _is_photo(item):
                    yield self._ref(item, owner, base_url)
            offset += len(items)
            total = embedded.total if embedded is not None else None
            if not items or total is None or offset >= total:
                return
            page = self._meta(folder_path, offset)

    def _ref(self, item: Any, owner: str | None, base_url: str, single: bool = False) -> PhotoRef:
        path = item.path or "/"
        if self.public:
            uri = base_url if single else base_url.rstrip("/") + path
            original_url = uri
        else:
            uri = f"yadisk:{path}"
            original_url = "https://disk.yandex.ru/client/disk" + path.removeprefix("disk:")
        sizes = item.sizes or {}
        meta: dict[str, Any] = {
            "service": ORIGIN,
            "album": str(PurePosixPath(path.removeprefix("disk:")).parent),
            "original_url": original_url,
            "owner": owner,
            "date": _iso(item.exif.date_time if item.exif is not None else None)
            or _iso(item.photoslice_time)
            or _iso(item.created),
            "largest_url": sizes.get("ORIGINAL") or item.file,
            "service_id": item.resource_id,
            "path": path,
            "public_key": self.spec if self.public else None,
            "size": item.size,
            "md5": item.md5,
            "sha256": item.sha256,
        }
        meta = {k: v for k, v in meta.items() if v is not None}
        return PhotoRef(
            self.name,
            ORIGIN,
            uri,
            read=lambda: self._download(meta, uri),
            size=item.size,
            metadata=meta,
            sha256=item.sha256 or None,
            remote=True,
        )

    # ---- reading -------------------------------------------------------------------
    def _download(self, meta: dict[str, Any], uri: str) -> bytes:
        path = meta.get("path", "/")
        public_key = meta.get("public_key")
        if public_key:

            def link() -> str:
                return self._api(
                    lambda: self.client.get_public_download_link(
                        public_key, path=path, n_retries=0
                    ),
                    f"{uri}: download link",
                )

        else:

            def link() -> str:
                return self._api(
                    lambda: self.client.get_download_link(path, n_retries=0),
                    f"{uri}: download link",
                )

        return self.downloader.fetch(link, uri)

    def reopen(self, origin: str, uri: str, meta: dict[str, Any]) -> PhotoRef:
        return PhotoRef(
            self.name,
            origin,
            uri,
            read=lambda: self._download(meta, uri),
            metadata=meta,
            sha256=meta.get("sha256"),
            remote=True,
        )


def is_public(spec: str) -> bool:
    """A public link (or its bare key), as opposed to a path on a private disk."""
    return spec.startswith(_PUBLIC_PREFIXES) or ("/" not in spec and ":" not in spec)


def _disk_path(spec: str) -> str:
    """``/disk/Photos`` (the web UI's form), ``/Photos`` and ``disk:/Photos`` → ``disk:/Photos``."""
    if spec.startswith(("disk:", "app:")):
        return spec
    path = "/" + spec.lstrip("/")
    if path == "/disk" or path.startswith("/disk/"):
        path = path[len("/disk") :] or "/"
    return "disk:" + path


def _is_photo(item: Any) -> bool:
    if item.media_type == "image":
        return True
    return PurePosixPath(item.name or "").suffix.lower() in IMAGE_SUFFIXES


def _owner(resource: Any) -> str | None:
    owner = getattr(resource, "owner", None)
    if owner is None:
        return None
    return owner.display_name or owner.login


def _classify(e: Exception) -> TransientError | None:
    from yadisk import exceptions as ex

    if isinstance(e, ex.TooManyRequestsError | ex.RetriableYaDiskError):
        return TransientError(f"{type(e).__name__} from Yandex.Disk")
    if isinstance(e, ex.RequestTimeoutError | ex.YaDiskConnectionError):
        return TransientError(f"{type(e).__name__}: {e}")
    return None


def _explain(e: Exception, public: bool) -> str:
    from yadisk import exceptions as ex

    if isinstance(e, ex.PathNotFoundError | ex.NotFoundError):
        if public:
            return "not found: a wrong link, or the owner removed or unpublished it"
        return "no such file or folder on the disk"
    if isinstance(e, ex.UnauthorizedError):
        return (
            "Yandex.Disk refused the OAuth token (expired or revoked): get a new one; "
            + _TOKEN_HELP
        )
    if isinstance(e, ex.PasswordRequiredError):
        return "the public link is password-protected; save it to your disk and ingest that path"
    if isinstance(e, ex.ForbiddenError):
        return "access denied (the token lacks the cloud_api:disk.read scope, or it is private)"
    if isinstance(e, ex.YaDiskError):
        return f"Yandex.Disk answered {type(e).__name__}: {e}"
    return f"{type(e).__name__}: {e}"


def yadisk_source(spec: str, name: str | None, settings: WorkbenchSettings) -> YandexDiskSource:
    return YandexDiskSource(spec, name, settings)


__all__ = ["YandexDiskSource", "yadisk_source"]
