"""VK photo albums through the `vk_api` client (a user access token is required).

Specs:
* ``vk:album/<owner_id>_<album_id>`` (negative owner for a group; album id may
  be ``wall``, ``profile`` or ``saved``; ``vk:https://vk.com/album-1_2`` too),
* ``vk:user/<id>``: every album of a user,
* ``vk:group/<id>``: every album of a group (``club123`` / ``public123`` work).

VK answers every photos.* call only with an access token, so the token in
``WORKBENCH_VK_TOKEN`` is required even for public albums; a private album or
group needs a token of someone who may see it. Calls are paced to VK's rate
limit (3 per second for a user token); error 6 ("too many requests"), VK's
internal errors and HTTP 5xx / 429 / time-outs are retried with back-off.
The whole listing is read before any photo is downloaded, so a failing album
writes nothing. A photo's uri is its VK page (``https://vk.com/photo<owner>_<id>``),
which names its bytes for good: photos the catalog has are not downloaded again.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from workbench._optional import require
from workbench.errors import SourceError
from workbench.redaction import MASK, register_secret
from workbench.settings import WorkbenchSettings
from workbench.sources.base import PhotoRef, not_read
from workbench.sources.http import (
    TRANSIENT_STATUS,
    Downloader,
    RetryPolicy,
    TransientError,
    classify_requests_error,
    mount_service,
    retry_after,
    with_retries,
)

ORIGIN = "vk"
REAL_API_ROOT = "https://api.vk.ru"
SYSTEM_ALBUMS = {-6: "profile", -7: "wall", -15: "saved"}
# Size letters from smallest to largest (old photos report width 0 for every size).
_SIZE_ORDER = "smxopqryzw"
_TOKEN_HELP = (
    "set WORKBENCH_VK_TOKEN to a VK user access token with the photos scope (README: 'VK token')"
)
_ALBUM = re.compile(r"^(?:album/?|(?:https?://)?(?:m\.)?vk\.(?:com|ru)/album)(-?\d+)_(\w+)$")
_USER = re.compile(r"^(?:user/|id)(\d+)$")
_GROUP = re.compile(r"^(?:group/|club|public)(\d+)$")
_TRANSIENT_CODES = frozenset({6, 10})


@dataclass(frozen=True)
class _Album:
    owner_id: int
    album_id: str
    title: str | None = None


class VkSource:
    """Photos of one VK album, or of every album of a user or a group."""

    def __init__(self, spec: str, name: str | None, settings: WorkbenchSettings) -> None:
        self.spec = spec.strip()
        self.name = name or f"vk:{self.spec}"
        self.settings = settings
        self.remote = settings.remote
        self.policy = RetryPolicy.from_settings(settings.remote)
        self.target = _parse(self.spec)
        token = settings.vk_token.get_secret_value() if settings.vk_token else None
        register_secret(token)
        self._token = token
        self._api: Any = None
        self.downloader = Downloader(settings.remote, settings.limits.max_file_bytes)

    # ---- the client -------------------------------------------------------------
    @property
    def api(self) -> Any:
        if self._api is None:
            if not self._token:
                raise SourceError(
                    f"vk:{self.spec}: VK lists photos only for an access token, even of public "
                    f"albums (a private album or group needs a member's token); {_TOKEN_HELP}"
                )
            vk_api = require("vk_api", None, "ingesting from VK")
            import requests
            from jconfig.memory import MemoryConfig

            session = mount_service(
                requests.Session(), self.remote.timeout, REAL_API_ROOT, self.remote.vk_api_url
            )
            api = vk_api.VkApi(
                token=self._token,
                api_version=self.remote.vk_api_version,
                session=session,
                config=MemoryConfig,  # never a vk_config.v2.json in the working directory
            )
            api.RPS_DELAY = 1.0 / self.remote.vk_requests_per_second
            # vk_api retries error 6 forever, every 0.5 s; `with_retries` backs off and gives up.
            api.error_handlers.pop(6, None)
            self._api = api
        return self._api

    def _call(self, method: str, what: str, **params: Any) -> Any:
        """One API call: transient failures retried, the others explained."""
        return with_retries(
            lambda: self.api.method(method, params), what, self.policy, _classify, _explain
        )

    # ---- listing ----------------------------------------------------------------------
    def refs(self) -> Iterator[PhotoRef]:
        kind, owner_id, album_id = self.target
        albums = [self._album(owner_id, album_id)] if kind == "album" else self._albums(owner_id)
        for album in albums:
            yield from self._photos(album)

    def _album(self, owner_id: int, album_id: str) -> _Album:
        """One album, with its title when VK lists it (system albums have fixed names)."""
        if not album_id.isdigit():
            return _Album(owner_id, album_id, album_id)
        page = self._call(
            "photos.getAlbums",
            f"VK album {owner_id}_{album_id}",
            owner_id=owner_id,
            album_ids=album_id,
        )
        titles = [i.get("title") for i in page.get("items", []) if str(i.get("id")) == album_id]
        return _Album(owner_id, album_id, titles[0] if titles else None)

    def _albums(self, owner_id: int) -> list[_Album]:
        what = f"VK {'group' if owner_id < 0 else 'user'} {abs(owner_id)}: albums"
        albums: list[_Album] = []
        offset = 0
        while True:
            page = self._call(
                "photos.getAlbums", what, owner_id=owner_id, need_system=1, offset=offset
            )
            items = page.get("items", [])
            for item in items:
                aid = int(item["id"])
                if aid < 0 and aid not in SYSTEM_ALBUMS:
                    continue
                albums.append(_Album(owner_id, SYSTEM_ALBUMS.get(aid, str(aid)), item.get("title")))
            offset += len(items)
            if not items or offset >= int(page.get("count", 0)):
                return albums

    def _photos(self, album: _Album) -> Iterator[PhotoRef]:
        what = f"VK album {album.owner_id}_{album.album_id}"
        offset = 0
        while True:
            page = self._call(
                "photos.get",
                what,
                owner_id=album.owner_id,
                album_id=album.album_id,
                rev=0,
                photo_sizes=1,
                offset=offset,
                count=self.remote.vk_page_size,
            )
            items = page.get("items", [])
            for item in items:
                ref = self._ref(item, album)
                if ref is not None:
                    yield ref
            offset += len(items)
            if not items or offset >= int(page.get("count", 0)):
                return

    def _ref(self, item: dict[str, Any], album: _Album) -> PhotoRef | None:
        owner_id, photo_id = int(item.get("owner_id", album.owner_id)), int(item["id"])
        uri = f"https://vk.com/photo{owner_id}_{photo_id}"
        # Newer API versions give the original apart from the scaled copies.
        size = _largest([*(item.get("sizes") or []), *filter(None, [item.get("orig_photo")])])
        date = item.get("date")
        meta: dict[str, Any] = {
            "service": ORIGIN,
            "album": album.title or str(album.album_id),
            "album_id": f"{album.owner_id}_{item.get('album_id', album.album_id)}",
            "original_url": uri,
            "owner": str(owner_id),
            "date": dt.datetime.fromtimestamp(int(date), dt.UTC).isoformat() if date else None,
            "largest_url": size.get("url") if size else None,
            "largest_size": [size.get("width"), size.get("height")] if size else None,
            "service_id": f"{owner_id}_{photo_id}",
            "text": item.get("text") or None,
        }
        meta = {k: v for k, v in meta.items() if v is not None}
        if size is None or not size.get("url"):
            return PhotoRef(
                self.name, ORIGIN, uri, read=not_read, metadata=meta, problem="VK gave no image URL"
            )
        return self._reader(uri, meta)

    def _reader(self, uri: str, meta: dict[str, Any]) -> PhotoRef:
        url = meta.get("largest_url", "")
        # A URL stored without its signature (the catalog keeps none) is asked for again.
        target: str | Callable[[], str] = (
            url if url and MASK not in url else (lambda: self._current_url(uri, meta))
        )
        return PhotoRef(
            self.name,
            ORIGIN,
            uri,
            read=lambda: self.downloader.fetch(target, uri),
            metadata=meta,
            stable_uri=True,
            remote=True,
        )

    def _current_url(self, uri: str, meta: dict[str, Any]) -> str:
        """The photo's largest size as VK serves it now (a fresh, signed URL)."""
        items = self._call("photos.getById", uri, photos=meta.get("service_id", ""), photo_sizes=1)
        item = items[0] if items else None
        size = (
            _largest([*(item.get("sizes") or []), *filter(None, [item.get("orig_photo")])])
            if item
            else None
        )
        if size is None or not size.get("url"):
            raise SourceError(f"{uri}: VK no longer shows this photo (deleted, or now private)")
        return str(size["url"])

    def reopen(self, origin: str, uri: str, meta: dict[str, Any]) -> PhotoRef:
        return self._reader(uri, meta)


def _parse(spec: str) -> tuple[str, int, str]:
    """``(kind, owner_id, album_id)`` of a spec; album_id is "" for users and groups."""
    if m := _ALBUM.match(spec):
        return "album", int(m.group(1)), m.group(2)
    if m := _USER.match(spec):
        return "user", int(m.group(1)), ""
    if m := _GROUP.match(spec):
        return "group", -int(m.group(1)), ""
    raise SourceError(
        f"vk:{spec}: not a VK source; use vk:album/<owner_id>_<album_id> "
        "(e.g. vk:album/-1_123 for a group's album), vk:user/<id> or vk:group/<id>"
    )


def _largest(sizes: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not sizes:
        return None

    def key(s: dict[str, Any]) -> tuple[int, int]:
        area = int(s.get("width") or 0) * int(s.get("height") or 0)
        kind = str(s.get("type", ""))
        return area, _SIZE_ORDER.find(kind) if kind in _SIZE_ORDER else -1

    return max(sizes, key=key)


def _classify(e: Exception) -> TransientError | None:
    from vk_api.exceptions import ApiError, ApiHttpError

    if isinstance(e, ApiError) and e.code in _TRANSIENT_CODES:
        return TransientError(f"VK error {e.code}: {e.error.get('error_msg', '')}")
    if isinstance(e, ApiHttpError) and e.response.status_code in TRANSIENT_STATUS:
        return TransientError(f"HTTP {e.response.status_code}", retry_after(e.response))
    if isinstance(e, ValueError) and type(e).__name__ == "JSONDecodeError":
        return TransientError("VK answered something that is not JSON")
    return classify_requests_error(e)


def _explain(e: Exception) -> str:
    from vk_api.exceptions import ApiError, ApiHttpError

    if isinstance(e, ApiHttpError):
        return f"VK answered HTTP {e.response.status_code}"
    if not isinstance(e, ApiError):
        return f"{type(e).__name__}: {e}"
    message = str(e.error.get("error_msg", ""))
    match e.code:
        case 5:
            return (
                f"VK rejected the access token ({message}): it has expired or was revoked; "
                f"get a new one and {_TOKEN_HELP.removeprefix('set ')}"
            )
        case 15 | 200:
            return (
                "the album is private (VK: Access denied); the token must belong to someone "
                "allowed to see it (a member of a private group, a friend)"
            )
        case 30:
            return "the profile is private; only its owner's or a friend's token can list it"
        case 18:
            return "the page was deleted or banned"
        case 100:
            return f"no such album: deleted, or a wrong id (VK: {message})"
        case 113:
            return "no such user or group (wrong id)"
        case 9:
            return "VK's flood control asks to wait; try again in a few minutes"
        case _:
            return f"VK error {e.code}: {message}"


def vk_source(spec: str, name: str | None, settings: WorkbenchSettings) -> VkSource:
    return VkSource(spec, name, settings)


__all__ = ["VkSource", "vk_source"]
