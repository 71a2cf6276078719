"""The service fakes speak the real protocols: the real ``yadisk``/``vk_api`` clients parse them.

Why: the Yandex.Disk and VK source tests trust these fakes; if a fake drifts
from what the real client libraries expect, those tests would pass against a
protocol no server speaks. These self-tests pin the fakes to the clients.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import vk_api
import yadisk
from requests.adapters import HTTPAdapter
from vk_api.exceptions import ApiError, ApiHttpError
from yadisk.sessions.requests_session import RequestsSession

from tests.fakes.vk import FakeVK
from tests.fakes.yandex_disk import FakeYandexDisk

pytestmark = pytest.mark.unit

YANDEX_API = "https://cloud-api.yandex.net/"
VK_API = "https://api.vk.ru/"


class _Rebase(HTTPAdapter):
    """Sends ``https://service/...`` to ``http://127.0.0.1:PORT/...`` (what production does)."""

    def __init__(self, prefix: str, base_url: str) -> None:
        super().__init__()
        self.prefix, self.base_url = prefix, base_url

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        assert request.url is not None
        request.url = f"{self.base_url}/{request.url[len(self.prefix) :]}"
        return super().send(request, *args, **kwargs)


class _YandexSession(RequestsSession):
    """yadisk keeps one requests.Session per thread: mount the adapter on each."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self._base_url = base_url

    @property
    def requests_session(self) -> requests.Session:
        session = super().requests_session
        if not isinstance(session.get_adapter(YANDEX_API), _Rebase):
            session.mount(YANDEX_API, _Rebase(YANDEX_API, self._base_url))
        return session


@pytest.fixture
def photos(faces_dev_dir: Path) -> list[Path]:
    images = faces_dev_dir / "images"
    return [images / name for name in ("dev_0001.jpg", "dev_0002.jpg", "dev_0004.jpg")]


@pytest.fixture
def disk() -> Iterator[FakeYandexDisk]:
    with FakeYandexDisk() as fake:
        yield fake


@pytest.fixture
def vk() -> Iterator[FakeVK]:
    with FakeVK() as fake:
        yield fake


def _yadisk(fake: FakeYandexDisk, token: str = "") -> yadisk.Client:
    return yadisk.Client(token=token, session=_YandexSession(fake.base_url))


def _vk(fake: FakeVK, token: str | None) -> Any:
    session = requests.Session()
    session.mount(VK_API, _Rebase(VK_API, fake.base_url))
    api = vk_api.VkApi(token=token, api_version="5.199", session=session)
    api.RPS_DELAY = 0  # the client's own 3 rps throttle would only slow the tests
    return api.get_api()


def test_yadisk_public_folder(disk: FakeYandexDisk, photos: list[Path]) -> None:
    url = disk.publish(
        "KEY1", {"/a.jpg": photos[0], "/sub/b.jpg": photos[1], "/sub/c.jpg": photos[2]}
    )
    client = _yadisk(disk)

    meta = client.get_public_meta(url, limit=5)
    assert (meta.type, meta.path, meta.public_key, meta.public_url) == ("dir", "/", "KEY1", url)
    assert meta.owner is not None and meta.owner.login
    assert meta.embedded is not None and meta.embedded.total == 2
    first, sub = meta.embedded.items or []
    assert (first.name, first.type, sub.name, sub.type) == ("a.jpg", "file", "sub", "dir")
    data = photos[0].read_bytes()
    assert first.md5 == hashlib.md5(data).hexdigest()
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    assert (first.size, first.mime_type, first.media_type) == (len(data), "image/jpeg", "image")
    assert first.exif is not None and first.exif.date_time is not None
    assert first.sizes is not None and {"ORIGINAL", "XXL"} <= set(first.sizes)
    assert first.file is not None and requests.get(first.file, timeout=5).content == data

    # Paging: limit=1 makes yadisk walk offset/total over two requests; the bare key works too.
    disk.clear_log()
    names = [r.name for r in client.public_listdir("KEY1", path="/sub", limit=1)]
    assert names == ["b.jpg", "c.jpg"]
    assert disk.count("/v1/disk/public/resources") == 2

    link = client.get_public_download_link(url, path="/sub/c.jpg")
    got = requests.get(link, timeout=5)
    assert got.content == photos[2].read_bytes()
    assert got.headers["Content-Type"] == "image/jpeg"
    assert disk.downloads() == 1

    with pytest.raises(yadisk.exceptions.PathNotFoundError):
        client.get_public_meta(url, path="/nope.jpg")
    with pytest.raises(yadisk.exceptions.PathNotFoundError):
        client.get_public_meta("https://disk.yandex.ru/d/UNKNOWN")


def test_yadisk_public_single_file(disk: FakeYandexDisk, photos: list[Path]) -> None:
    url = disk.publish("ONE", photos[1])
    assert url == "https://disk.yandex.ru/i/ONE"
    client = _yadisk(disk)
    meta = client.get_public_meta(url)
    assert (meta.type, meta.name, meta.public_url) == ("file", "dev_0002.jpg", url)
    buf = io.BytesIO()
    client.download_public(url, buf)
    assert buf.getvalue() == photos[1].read_bytes()


def test_yadisk_private_disk(disk: FakeYandexDisk, photos: list[Path]) -> None:
    disk.add_private("tok", {"/Photos/2024/x.jpg": photos[0], "/Photos/y.jpg": photos[1]})
    client = _yadisk(disk, "tok")
    assert client.check_token()

    meta = client.get_meta("/Photos")
    assert (meta.type, meta.path, meta.name) == ("dir", "disk:/Photos", "Photos")
    listed = {r.name: r.type for r in client.listdir("/Photos")}
    assert listed == {"2024": "dir", "y.jpg": "file"}
    link = client.get_download_link("disk:/Photos/2024/x.jpg")
    disk.clear_log()
    assert requests.get(link, timeout=5).content == photos[0].read_bytes()
    assert all("Authorization" not in r.headers for r in disk.download_log())
    # The API call carried the token; the download needs none.
    api_call = client.get_meta("/Photos/y.jpg")
    assert api_call.file is not None
    assert disk.requests[-1].headers["Authorization"] == "OAuth tok"

    with pytest.raises(yadisk.exceptions.PathNotFoundError):
        client.get_meta("/Photos/missing.jpg")
    with pytest.raises(yadisk.exceptions.UnauthorizedError):
        _yadisk(disk, "other").get_meta("/Photos")
    disk.expire("tok")
    with pytest.raises(yadisk.exceptions.UnauthorizedError):
        client.listdir("/Photos").__next__()
    assert not client.check_token()


def test_yadisk_injected_failures(disk: FakeYandexDisk, photos: list[Path]) -> None:
    url = disk.publish("K", {"/a.jpg": photos[0]})
    client = _yadisk(disk)
    disk.fail_next("/v1/disk/public/resources", 429)
    with pytest.raises(yadisk.exceptions.TooManyRequestsError):
        client.get_public_meta(url)
    # yadisk retries 5xx on its own (3 times by default): one 503 costs one extra request.
    disk.clear_log()
    disk.fail_next("/v1/disk/public/resources", 503)
    assert client.get_public_meta(url).type == "dir"
    assert [r.status for r in disk.requests] == [503, 200]

    disk.fail_next("/v1/disk/", 503, retry_after=7)
    raw = requests.get(f"{disk.base_url}/v1/disk/public/resources?public_key=K", timeout=5)
    assert raw.status_code == 503 and raw.headers["Retry-After"] == "7"
    assert raw.json()["error"] == "UnavailableError"
    disk.fail_next("/download/", 500)
    link = client.get_public_download_link(url, path="/a.jpg")
    assert requests.get(link, timeout=5).status_code == 500
    assert requests.get(link, timeout=5).status_code == 200


def test_vk_albums_and_photos(vk: FakeVK, photos: list[Path]) -> None:
    vk.add_token("T", 42)
    ids = vk.add_album(42, 7, "Trip", photos * 50)  # 150 photos
    assert ids == sorted(ids) and len(set(ids)) == 150
    vk.add_album(42, "wall", "", photos[:1])
    api = _vk(vk, "T")

    albums = api.photos.getAlbums(owner_id=42)
    assert albums["count"] == 1 and albums["items"][0]["id"] == 7
    assert albums["items"][0]["size"] == 150
    with_system = api.photos.getAlbums(owner_id=42, need_system=1)
    assert [a["id"] for a in with_system["items"]] == [-7, 7]

    page = api.photos.get(owner_id=42, album_id=7, count=100, offset=100)
    assert page["count"] == 150 and [p["id"] for p in page["items"]] == ids[100:]
    item = page["items"][0]
    assert item["date"] < page["items"][1]["date"] and item["text"]
    widest = max(item["sizes"], key=lambda s: s["width"])
    assert widest["type"] == "w"
    assert widest["url"].startswith(vk.base_url)
    assert requests.get(widest["url"], timeout=5).content == photos[1].read_bytes()
    assert vk.downloads() == 1
    assert api.photos.get(owner_id=42, album_id="wall")["count"] == 1
    assert api.photos.get(owner_id=42, album_id="saved")["count"] == 0
    assert api.photos.get(album_id=7, rev=1, count=1)["items"][0]["id"] == ids[-1]
    # vk_api POSTs a form: the token travels in the body, not the URL.
    sent = vk.requests[-1]
    assert sent.method == "POST" and sent.form["access_token"] == "T" and sent.form["v"] == "5.199"


def test_vk_errors(vk: FakeVK, photos: list[Path]) -> None:
    vk.add_token("T", 42)
    vk.add_token("F", 43)
    vk.add_album(-5, 1, "Club", photos[:2], private=True, members={"F"})
    vk.add_album(44, 2, "Hidden", photos[:1])
    vk.private_profile(44)
    vk.deleted_owner(45)

    def code(token: str | None, **params: Any) -> int:
        with pytest.raises(ApiError) as info:
            _vk(vk, token).photos.get(**params)
        return info.value.code

    assert code(None, owner_id=42, album_id=1) == 5
    assert code("nope", owner_id=42, album_id=1) == 5
    assert code("T", owner_id=-5, album_id=1) == 200
    assert _vk(vk, "F").photos.get(owner_id=-5, album_id=1)["items"][0]["user_id"] == 100
    assert _vk(vk, "F").photos.getAlbums(owner_id=-5)["count"] == 1
    assert _vk(vk, "T").photos.getAlbums(owner_id=-5)["count"] == 0
    assert code("T", owner_id=-5, album_id=99) == 100
    assert code("T", owner_id=999, album_id=1) == 113
    assert code("T", owner_id=44, album_id=2) == 30
    assert code("T", owner_id=45, album_id=1) == 18
    vk.delete_album(-5, 1)
    assert code("F", owner_id=-5, album_id=1) == 100

    vk.inject_error("photos.get", 10)
    with pytest.raises(ApiError) as info:
        _vk(vk, "T").photos.get(owner_id=44, album_id=2)
    assert info.value.code == 10 and info.value.error["error_msg"] == "Internal server error"
    shown = {p["key"]: p["value"] for p in info.value.error["request_params"]}
    assert shown["method"] == "photos.get" and "access_token" not in shown

    vk.expire("T")
    with pytest.raises(ApiError, match="access_token has expired"):
        _vk(vk, "T").photos.getAlbums()


def test_vk_http_failures_and_rate_limit(photos: list[Path]) -> None:
    with FakeVK(max_rps=2) as vk:
        vk.add_token("T", 42)
        vk.add_album(42, 1, "A", photos[:1])
        api = _vk(vk, "T")
        vk.fail_next("/method/", 502)
        with pytest.raises(ApiHttpError):
            api.photos.get(album_id=1)
        # vk_api answers error 6 itself: sleeps 0.5 s and repeats the call.
        vk.clear_log()
        vk.inject_error("photos.get", 6)
        assert api.photos.get(album_id=1)["count"] == 1
        assert vk.count("/method/photos.get") == 2
        # Faster than max_rps from one token: the third call in a second gets error 6.
        form = {"access_token": "T", "v": "5.199", "album_id": "1"}
        url = f"{vk.base_url}/method/photos.get"
        errors = [requests.post(url, data=form, timeout=5).json().get("error") for _ in range(3)]
        assert errors[-1] is not None and errors[-1]["error_code"] == 6
        url = api.photos.get(album_id=1)["items"][0]["sizes"][0]["url"]
        vk.fail_next("/photo/", 503, retry_after=1)
        failed = requests.get(url, timeout=5)
        assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
        assert requests.get(url, timeout=5).ok and vk.downloads() == 2
