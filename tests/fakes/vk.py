"""A fake VK API (https://dev.vk.com/method) for the real ``vk_api`` client.

Why: the VK source must be tested through the real client library, so this
server answers ``/method/<name>`` (POST form or GET query, ``access_token`` and
``v`` among the params) exactly as the API does: ``{"response": ...}`` or
``{"error": {...}}`` with HTTP 200, the documented error codes and messages,
and photo ``sizes`` whose URLs point back here (``/photo/<owner>_<id>_<type>.jpg``),
signed as VK's CDN signs them (``&sign=``): a download without its signature is refused
with HTTP 403, as VK's is.

Covered methods: ``photos.getAlbums``, ``photos.get``, ``photos.getById`` and ``users.get``.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from tests.fakes import FakeHTTPService, LoggedRequest, Reply

__all__ = ["FakeVK"]

_SYSTEM_ALBUMS = {"profile": -6, "wall": -7, "saved": -15}
_SYSTEM_TITLES = {-6: "Фотографии со страницы", -7: "Фотографии на стене", -15: "Сохранённые"}
# Photo size types with the longest side VK scales them to (docs: "Photo sizes").
_SIZE_BOXES = {"s": 75, "m": 130, "x": 604, "y": 807, "z": 1080, "w": 2560}
_MESSAGES = {
    3: "Unknown method passed",
    5: "User authorization failed: invalid access_token (4).",
    6: "Too many requests per second",
    7: "Permission to perform this action is denied",
    8: "Invalid request: v (version) is required",
    9: "Flood control",
    10: "Internal server error",
    14: "Captcha needed",
    15: "Access denied",
    18: "User was deleted or banned",
    29: "Rate limit reached",
    30: "This profile is private",
    100: "One of the parameters specified was missing or invalid",
    113: "Invalid user id",
    200: "Access denied",
}
_PHOTO_PATH = re.compile(r"^/photo/(-?\d+)_(\d+)_([a-z]+)\.\w+$")


def _sign(owner: str, photo_id: str, kind: str) -> str:
    """The URL signature of one photo size (VK's CDN checks one like it)."""
    return hashlib.sha256(f"fake-vk-cdn:{owner}_{photo_id}_{kind}".encode()).hexdigest()[:32]


class _VkError(Exception):
    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message or _MESSAGES.get(code, "Unknown error occurred")


@dataclass
class _Photo:
    id: int
    file: Path
    date: int
    text: str
    width: int
    height: int


@dataclass
class _Album:
    owner_id: int
    id: int
    title: str
    photos: list[_Photo]
    created: int
    private: bool = False
    members: set[str] = field(default_factory=set)


def _int(params: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = params.get(name, "")
    if raw == "" and default is not None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise _VkError(100, f"{_MESSAGES[100]}: {name} not integer") from None


def _album_key(raw: str | int) -> int:
    """``"wall"``/``"profile"``/``"saved"`` or an integer id -> the numeric album id."""
    if isinstance(raw, str) and raw in _SYSTEM_ALBUMS:
        return _SYSTEM_ALBUMS[raw]
    try:
        return int(raw)
    except ValueError:
        raise _VkError(100, f"{_MESSAGES[100]}: album_id is invalid") from None


class FakeVK(FakeHTTPService):
    """Users/groups with photo albums, tokens, and the API's access rules and errors."""

    def __init__(self, *, max_rps: float | None = None) -> None:
        super().__init__()
        self.max_rps = max_rps
        self._tokens: dict[str, int] = {}
        self._expired: set[str] = set()
        self._albums: dict[tuple[int, int], _Album] = {}
        self._owners: set[int] = set()
        self._private_owners: set[int] = set()
        self._deleted_owners: set[int] = set()
        self._injected: dict[str, list[int]] = {}
        self._recent: dict[str, deque[float]] = {}
        self._next_photo = 457239001
        self._clock = 1_700_000_000
        self._state = threading.RLock()

    # -- state ------------------------------------------------------------------------------

    def add_token(self, token: str, user_id: int) -> None:
        with self._state:
            self._tokens[token] = user_id
            self._owners.add(user_id)
            self._expired.discard(token)

    def expire(self, token: str) -> None:
        """Error 5 "access_token has expired" from now on."""
        self._expired.add(token)

    def add_album(
        self,
        owner_id: int,
        album_id: int | str,
        title: str,
        photos: Iterable[Path],
        *,
        private: bool = False,
        members: Iterable[str] = (),
        captions: Iterable[str] | None = None,
    ) -> list[int]:
        """An album (negative owner = group); ``"wall"``/``"profile"``/``"saved"`` allowed.

        ``members`` are the tokens (or user ids as strings) that may see a private
        album besides its owner. Returns the new photo ids, ascending.
        """
        files = [Path(p) for p in photos]
        texts = list(captions) if captions is not None else [f"Caption {p.stem}" for p in files]
        with self._state:
            self._clock += 3600
            album = _Album(owner_id, _album_key(album_id), title, [], self._clock, private)
            album.members = set(members)
            for file, text in zip(files, texts, strict=True):
                self._next_photo += 1
                self._clock += 60
                with Image.open(file) as image:
                    width, height = image.size
                photo = _Photo(self._next_photo, file, self._clock, text, width, height)
                album.photos.append(photo)
            self._albums[(owner_id, album.id)] = album
            self._owners.add(owner_id)
            return [p.id for p in album.photos]

    def delete_album(self, owner_id: int, album_id: int | str) -> None:
        """The album vanishes: error 100 for it, 404 for its photo URLs."""
        with self._state:
            del self._albums[(owner_id, _album_key(album_id))]

    def private_profile(self, owner_id: int) -> None:
        """Error 30 for that owner's photos unless the token's user is the owner."""
        with self._state:
            self._private_owners.add(owner_id)
            self._owners.add(owner_id)

    def deleted_owner(self, owner_id: int) -> None:
        """Error 18 "User was deleted or banned" for that owner."""
        with self._state:
            self._deleted_owners.add(owner_id)
            self._owners.add(owner_id)

    def inject_error(self, method: str, code: int, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer with VK error ``code``."""
        with self._state:
            self._injected.setdefault(method, []).extend([code] * times)

    def downloads(self) -> int:
        """Photo byte requests (any size) served or refused so far."""
        return len(self.download_log())

    def download_log(self) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path.startswith("/photo/")]

    # -- HTTP -------------------------------------------------------------------------------

    def error_reply(self, path: str, status: int) -> Reply:
        """Injected HTTP failures look like VK's nginx pages (HTML, not JSON)."""
        html = f"<html><head><title>{status}</title></head><body>{status}</body></html>\n"
        return Reply(status, html.encode(), {"Content-Type": "text/html"})

    def route(
        self, method: str, path: str, params: dict[str, str], headers: Mapping[str, str]
    ) -> Reply:
        if path.startswith("/photo/"):
            match = _PHOTO_PATH.match(path)
            photo = self._find_photo(int(match[1]), int(match[2])) if match else None
            if photo is None:
                return Reply(404, b"Not Found\n", {"Content-Type": "text/plain"})
            if match is None or params.get("sign") != _sign(match[1], match[2], match[3]):
                return Reply(403, b"Forbidden\n", {"Content-Type": "text/plain"})
            return Reply(200, file=photo.file)
        if not path.startswith("/method/"):
            return Reply(404, b"Not Found\n", {"Content-Type": "text/plain"})
        name = path.removeprefix("/method/")
        try:
            return Reply(200, {"response": self._call(name, params)})
        except _VkError as exc:
            shown = [{"key": k, "value": v} for k, v in params.items() if k != "access_token"]
            error: dict[str, Any] = {
                "error_code": exc.code,
                "error_msg": exc.message,
                "request_params": [
                    {"key": "method", "value": name},
                    {"key": "oauth", "value": "1"},
                    *shown,
                ],
            }
            if exc.code == 14:
                error.update(captcha_sid="1", captcha_img=f"{self.base_url}/captcha.jpg")
            return Reply(200, {"error": error})

    # -- API --------------------------------------------------------------------------------

    def _call(self, name: str, params: Mapping[str, str]) -> Any:
        with self._state:
            injected = self._injected.get(name)
            if injected:
                raise _VkError(injected.pop(0))
        if not params.get("v"):
            raise _VkError(8)
        token = params.get("access_token", "")
        if not token:
            raise _VkError(5, "User authorization failed: no access_token passed.")
        if token not in self._tokens:
            raise _VkError(5)
        if token in self._expired:
            raise _VkError(5, "User authorization failed: access_token has expired.")
        self._throttle(token)
        user = self._tokens[token]
        if name == "users.get":
            return [{"id": user, "first_name": "Fake", "last_name": "User", "is_closed": False}]
        if name == "photos.getAlbums":
            return self._get_albums(params, token, user)
        if name == "photos.get":
            return self._get_photos(params, token, user)
        if name == "photos.getById":
            return self._get_by_id(params)
        raise _VkError(3)

    def _throttle(self, token: str) -> None:
        """Error 6 when the token made ``max_rps`` requests within the last second."""
        if self.max_rps is None:
            return
        now = time.monotonic()
        with self._state:
            recent = self._recent.setdefault(token, deque())
            while recent and now - recent[0] >= 1.0:
                recent.popleft()
            if len(recent) >= self.max_rps:
                raise _VkError(6)
            recent.append(now)

    def _owner(self, params: Mapping[str, str], user: int) -> int:
        owner = _int(params, "owner_id", user)
        if owner in self._deleted_owners:
            raise _VkError(18)
        if owner not in self._owners:
            raise _VkError(113)
        if owner in self._private_owners and owner != user:
            raise _VkError(30)
        return owner

    @staticmethod
    def _may_see(album: _Album, token: str, user: int) -> bool:
        return (
            not album.private or album.owner_id == user or bool({token, str(user)} & album.members)
        )

    def _get_albums(self, params: Mapping[str, str], token: str, user: int) -> dict[str, Any]:
        with self._state:
            owner = self._owner(params, user)
            wanted = {_int({"id": a}, "id") for a in params.get("album_ids", "").split(",") if a}
            system = params.get("need_system") == "1"
            albums = sorted(
                (a for (o, _), a in self._albums.items() if o == owner),
                key=lambda a: (a.id >= 0, a.id if a.id >= 0 else -a.id),
            )
            albums = [
                a
                for a in albums
                if self._may_see(a, token, user)
                and (system or a.id >= 0 or a.id in wanted)
                and (not wanted or a.id in wanted)
            ]
            offset = _int(params, "offset", 0)
            count = _int(params, "count", len(albums))
            items = [self._album_json(a, params) for a in albums[offset : offset + count]]
            return {"count": len(albums), "items": items}

    def _album_json(self, album: _Album, params: Mapping[str, str]) -> dict[str, Any]:
        cover = album.photos[-1] if album.photos else None
        body: dict[str, Any] = {
            "id": album.id,
            "thumb_id": cover.id if cover else -1,
            "owner_id": album.owner_id,
            "title": album.title or _SYSTEM_TITLES.get(album.id, ""),
            "description": "",
            "created": album.created,
            "updated": cover.date if cover else album.created,
            "size": len(album.photos),
        }
        if params.get("need_covers") == "1" and cover is not None:
            body["thumb_src"] = self._sizes(album.owner_id, cover)[2]["url"]
        return body

    def _get_photos(self, params: Mapping[str, str], token: str, user: int) -> dict[str, Any]:
        with self._state:
            owner = self._owner(params, user)
            if not params.get("album_id"):
                raise _VkError(100, f"{_MESSAGES[100]}: album_id is undefined")
            key = _album_key(params["album_id"])
            album = self._albums.get((owner, key))
            if album is None and key not in _SYSTEM_ALBUMS.values():
                raise _VkError(100, f"{_MESSAGES[100]}: album_id is invalid")
            if album is not None and not self._may_see(album, token, user):
                raise _VkError(200)
            photos = list(album.photos) if album else []
            wanted = {p for p in params.get("photo_ids", "").split(",") if p}
            photos = [p for p in photos if not wanted or str(p.id) in wanted]
            if params.get("rev") == "1":
                photos.reverse()
            offset = max(_int(params, "offset", 0), 0)
            count = min(max(_int(params, "count", 50), 0), 1000)
            extended = params.get("extended") == "1"
            items = [self._photo_json(owner, key, p, extended) for p in photos]
            return {"count": len(photos), "items": items[offset : offset + count]}

    def _get_by_id(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """``photos=<owner>_<id>,...``: the photos found, fresh sizes and signed URLs."""
        found = []
        for key in filter(None, params.get("photos", "").split(",")):
            owner, _, photo_id = key.partition("_")
            with self._state:
                album = next(
                    (
                        (a_key, a)
                        for (a_owner, a_key), a in self._albums.items()
                        if a_owner == int(owner) and any(p.id == int(photo_id) for p in a.photos)
                    ),
                    None,
                )
            if album is not None:
                photo = next(p for p in album[1].photos if p.id == int(photo_id))
                found.append(self._photo_json(int(owner), album[0], photo, extended=False))
        return found

    def _photo_json(self, owner: int, album: int, photo: _Photo, extended: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": photo.id,
            "album_id": album,
            "owner_id": owner,
            "date": photo.date,
            "text": photo.text,
            "has_tags": False,
            "sizes": self._sizes(owner, photo),
            "orig_photo": {
                "type": "base",
                "url": self._url(owner, photo, "base", photo.width, photo.height),
                "width": photo.width,
                "height": photo.height,
            },
        }
        if owner < 0:
            body["user_id"] = 100  # docs: 100 for photos a community posted as itself
        if extended:
            body.update(
                likes={"user_likes": 0, "count": 0},
                comments={"count": 0},
                reposts={"count": 0},
                tags={"count": 0},
                can_comment=1,
            )
        return body

    def _sizes(self, owner: int, photo: _Photo) -> list[dict[str, Any]]:
        """Every size type scaled to its box (so ``w`` is the widest); all serve one file."""
        longest = max(photo.width, photo.height, 1)
        sizes = []
        for kind, box in _SIZE_BOXES.items():
            width, height = round(photo.width * box / longest), round(photo.height * box / longest)
            url = self._url(owner, photo, kind, width, height)
            sizes.append({"type": kind, "url": url, "width": width, "height": height})
        return sizes

    def _url(self, owner: int, photo: _Photo, kind: str, width: int, height: int) -> str:
        suffix = photo.file.suffix.lower() or ".jpg"
        sign = _sign(str(owner), str(photo.id), kind)
        query = f"size={width}x{height}&quality=95&sign={sign}&type=album"
        return f"{self.base_url}/photo/{owner}_{photo.id}_{kind}{suffix}?{query}"

    def _find_photo(self, owner: int, photo_id: int) -> _Photo | None:
        with self._state:
            for (album_owner, _), album in self._albums.items():
                if album_owner == owner:
                    for photo in album.photos:
                        if photo.id == photo_id:
                            return photo
            return None
