"""Yandex.Disk and VK ingest through the real `yadisk` and `vk_api` clients.

The services cannot be reached here, so local servers speak their protocols
(tests/fakes); the clients are pointed at them by the workbench's own
settings (``WORKBENCH_REMOTE__*_API_URL``), which is all a test changes.
Photos are real: the dev set and LFW.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli_env, local_pack_settings
from tests.fakes.vk import FakeVK
from tests.fakes.yandex_disk import FakeYandexDisk

pytestmark = pytest.mark.integration

VK_TOKEN = "vk1.a.TESTTOKEN-3f9c1d2e8b7a6f5e4d3c2b1a"
VK_OUTSIDER = "vk1.a.OUTSIDER-0a1b2c3d4e5f60718293a4b5"
VK_EXPIRED = "vk1.a.EXPIRED-99887766554433221100ffee"
YADISK_TOKEN = "y0_AgAAAAATESTTOKEN-yadisk-5c4b3a291807"
TOKENS = (VK_TOKEN, VK_OUTSIDER, VK_EXPIRED, YADISK_TOKEN)


@pytest.fixture
def disk() -> Iterator[FakeYandexDisk]:
    with FakeYandexDisk() as server:
        yield server


@pytest.fixture
def vk() -> Iterator[FakeVK]:
    with FakeVK() as server:
        server.add_token(VK_TOKEN, 100)
        server.add_token(VK_OUTSIDER, 200)
        server.add_token(VK_EXPIRED, 300)
        server.expire(VK_EXPIRED)
        yield server


def _wb(home: Path, models: Path, disk: Any = None, vk: Any = None, **extra: Any) -> Any:
    from workbench.core import Workbench

    remote: dict[str, Any] = {"backoff": 0.01, "retries": 4, "timeout": 10}
    if disk is not None:
        remote["yadisk_api_url"] = disk.base_url
    if vk is not None:
        remote["vk_api_url"] = vk.base_url
        remote["vk_requests_per_second"] = 20
    remote.update(extra.pop("remote", {}))
    return Workbench(local_pack_settings(home, models, remote=remote, **extra))


def _nested_tree(dev_photos: list[Any], n: int = 12) -> dict[str, Path]:
    photos = [p.path for p in dev_photos if p.category == "identity"][:n]
    folders = ["", "/2023", "/2023/summer", "/2024"]
    return {f"{folders[i % 4]}/photo_{i:02d}{p.suffix}": p for i, p in enumerate(photos)}


def _remote_rows(wb: Any, origin: str) -> list[Any]:
    from sqlalchemy import select

    from workbench.store.models import Photo

    with wb.catalog.session() as s:
        return list(s.scalars(select(Photo).where(Photo.origin == origin).order_by(Photo.uri)))


def _lfw_images(lfw_dir: Path, n: int) -> list[Path]:
    return sorted((lfw_dir / "images").rglob("*.jpg"))[:n]


# ---- Yandex.Disk ------------------------------------------------------------------------


def test_public_folder_ingests_completely_then_downloads_nothing(
    tmp_path: Path, models_dir: Path, dev_photos: list[Any], disk: FakeYandexDisk
) -> None:
    tree = _nested_tree(dev_photos)
    link = disk.publish("FolderKey12", tree)
    wb = _wb(tmp_path / "wb", models_dir, disk=disk)
    try:
        report = wb.ingest([f"yadisk:{link}"], progress=False)
        assert (report.photos, report.errors) == (12, 0)
        assert report.faces >= 12
        assert disk.downloads() == 12
        rows = _remote_rows(wb, "yadisk")
        assert len(rows) == 12 and {r.status for r in rows} == {"done"}
        assert {r.source for r in rows} == {f"yadisk:{link}"}
        nested = next(r for r in rows if r.uri.endswith("/2023/summer/photo_02.jpg"))
        meta = nested.meta
        assert meta["service"] == "yadisk" and meta["album"] == "/2023/summer"
        assert meta["original_url"] == f"{link}/2023/summer/photo_02.jpg" == nested.uri
        assert meta["largest_url"].startswith(disk.base_url)
        assert meta["owner"] and meta["date"] and meta["service_id"]
        assert meta["sha256"] == nested.sha256  # the published hash matched the bytes

        disk.clear_log()
        again = wb.ingest([f"yadisk:{link}"], progress=False)
        assert (again.photos, again.skipped, again.errors) == (0, 12, 0)
        assert disk.downloads() == 0  # compared by the published sha256, before downloading
        assert len(_remote_rows(wb, "yadisk")) == 12
    finally:
        wb.close()


def test_public_single_file_link_and_exports_carry_provenance(
    tmp_path: Path, models_dir: Path, dev_photos: list[Any], disk: FakeYandexDisk
) -> None:
    photo = next(p.path for p in dev_photos if p.category == "identity")
    link = disk.publish("OneFileKey", photo)
    wb = _wb(tmp_path / "wb", models_dir, disk=disk)
    try:
        report = wb.ingest([f"yadisk:{link}"], source="shared-by-anna", progress=False)
        assert (report.photos, report.errors) == (1, 0)
        out = wb.export("photos", tmp_path / "photos.json", fmt="json")
        rows = json.loads(out.path.read_text())
        assert rows[0]["source"] == "shared-by-anna" and rows[0]["origin"] == "yadisk"
        assert rows[0]["provenance"]["original_url"] == link
    finally:
        wb.close()


def test_yadisk_429_and_5xx_are_retried(
    tmp_path: Path, models_dir: Path, dev_photos: list[Any], disk: FakeYandexDisk
) -> None:
    link = disk.publish("FlakyKey", _nested_tree(dev_photos, 6))
    disk.fail_next("/v1/disk/public/resources", 429, times=2, retry_after=0)
    disk.fail_next("/download/", 503, times=3)
    wb = _wb(tmp_path / "wb", models_dir, disk=disk)
    try:
        report = wb.ingest([f"yadisk:{link}"], progress=False)
        assert (report.photos, report.errors) == (6, 0)
        statuses = [r.status for r in disk.requests]
        assert statuses.count(429) == 2 and statuses.count(503) == 3
    finally:
        wb.close()


def test_wrong_link_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, models_dir: Path, disk: FakeYandexDisk
) -> None:
    wb = _wb(tmp_path / "wb", models_dir, disk=disk)
    try:
        report = wb.ingest(["yadisk:https://disk.yandex.ru/d/NoSuchKey"], progress=False)
        assert report.photos == 0 and report.errors == 1
        (spec, error), *_ = report.error_details
        assert "NoSuchKey" in spec
        assert "not found: a wrong link, or the owner removed or unpublished it" in error
        assert _remote_rows(wb, "yadisk") == []
    finally:
        wb.close()


def test_private_disk_with_token_never_sends_it_to_the_download_host(
    tmp_path: Path, models_dir: Path, dev_photos: list[Any], disk: FakeYandexDisk
) -> None:
    tree = {f"/Photos/2024{k}": v for k, v in _nested_tree(dev_photos, 4).items()}
    disk.add_private(YADISK_TOKEN, tree)
    wb = _wb(tmp_path / "wb", models_dir, disk=disk, yadisk_token=YADISK_TOKEN)
    try:
        report = wb.ingest(["yadisk:/disk/Photos"], progress=False)
        assert (report.photos, report.errors) == (4, 0)
        api = [r for r in disk.requests if r.path.startswith("/v1/")]
        assert api and all(r.headers.get("Authorization") == f"OAuth {YADISK_TOKEN}" for r in api)
        assert disk.download_log()
        for r in disk.download_log():
            assert YADISK_TOKEN not in json.dumps(r.headers) + r.path + json.dumps(r.query)
        assert {r.uri for r in _remote_rows(wb, "yadisk")} == {f"yadisk:disk:{p}" for p in tree}
    finally:
        wb.close()


def test_expired_yadisk_token_is_a_clear_error(
    tmp_path: Path, models_dir: Path, dev_photos: list[Any], disk: FakeYandexDisk
) -> None:
    disk.add_private(YADISK_TOKEN, {"/Photos/a.jpg": dev_photos[0].path})
    disk.expire(YADISK_TOKEN)
    wb = _wb(tmp_path / "wb", models_dir, disk=disk, yadisk_token=YADISK_TOKEN)
    try:
        report = wb.ingest(["yadisk:/disk/Photos"], progress=False)
        assert report.photos == 0 and report.errors == 1
        error = report.error_details[0][1]
        assert "refused the OAuth token (expired or revoked)" in error
        assert "WORKBENCH_YADISK_TOKEN" in error and YADISK_TOKEN not in error
        assert _remote_rows(wb, "yadisk") == []
    finally:
        wb.close()


def test_interrupted_sync_resumes_without_downloading_twice(
    tmp_path: Path,
    models_dir: Path,
    dev_photos: list[Any],
    disk: FakeYandexDisk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workbench.sources.http import Downloader

    link = disk.publish("ResumeKey", _nested_tree(dev_photos))
    wb = _wb(tmp_path / "wb", models_dir, disk=disk, batch_size=4, remote={"downloads": 1})
    fetch = Downloader.fetch
    calls = {"n": 0}

    def interrupted(self: Downloader, url: Any, what: str) -> bytes:
        calls["n"] += 1
        if calls["n"] == 7:  # the user presses Ctrl-C during the second batch
            raise KeyboardInterrupt
        return fetch(self, url, what)

    try:
        monkeypatch.setattr(Downloader, "fetch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            wb.ingest([f"yadisk:{link}"], progress=False)
        monkeypatch.setattr(Downloader, "fetch", fetch)
        first = len(_remote_rows(wb, "yadisk"))
        assert 0 < first < 12  # the batches before the interruption were committed
        disk.clear_log()
        report = wb.ingest([f"yadisk:{link}"], progress=False)
        assert report.photos == 12 - first and report.skipped == first
        assert disk.downloads() == 12 - first
        assert len(_remote_rows(wb, "yadisk")) == 12
        assert wb.stats().agree
    finally:
        wb.close()


def test_registered_remote_photos_are_downloaded_again_by_embed(
    tmp_path: Path, models_dir: Path, dev_photos: list[Any], disk: FakeYandexDisk
) -> None:
    link = disk.publish("StagedKey", _nested_tree(dev_photos, 3))
    wb = _wb(tmp_path / "wb", models_dir, disk=disk)
    try:
        registered = wb.ingest([f"yadisk:{link}"], progress=False, register_only=True)
        assert registered.pending == 3
        embedded = wb.embed(progress=False)
        assert (embedded.photos, embedded.errors) == (3, 0) and embedded.faces >= 3
        assert disk.downloads() == 6
    finally:
        wb.close()


# ---- VK -------------------------------------------------------------------------------------


def test_vk_album_of_250_photos_pages_and_keeps_provenance(
    tmp_path: Path, models_dir: Path, lfw_dir: Path, vk: FakeVK
) -> None:
    images = _lfw_images(lfw_dir, 250)
    ids = vk.add_album(-4242, 17, "Team photos 2024", images)
    wb = _wb(tmp_path / "wb", models_dir, vk=vk, vk_token=VK_TOKEN, remote={"vk_page_size": 100})
    try:
        report = wb.ingest(["vk:album/-4242_17"], progress=False)
        assert (report.photos, report.errors) == (250, 0)
        assert vk.downloads() == 250
        gets = [r for r in vk.requests if r.path == "/method/photos.get"]
        assert [int(r.form.get("offset") or r.query.get("offset") or 0) for r in gets] == [
            0,
            100,
            200,
        ]
        rows = _remote_rows(wb, "vk")
        assert len(rows) == 250
        by_uri = {r.uri: r for r in rows}
        first = by_uri[f"https://vk.com/photo-4242_{ids[0]}"]
        meta = first.meta
        assert meta["service"] == "vk" and meta["album"] == "Team photos 2024"
        assert meta["album_id"] == "-4242_17" and meta["owner"] == "-4242"
        assert meta["original_url"] == first.uri and meta["service_id"] == f"-4242_{ids[0]}"
        assert "_w.jpg?" in meta["largest_url"] and meta["date"].startswith("20")
        assert {r.source for r in rows} == {"vk:album/-4242_17"}

        vk.clear_log()
        again = wb.ingest(["vk:album/-4242_17"], progress=False)
        assert (again.photos, again.skipped, vk.downloads()) == (0, 250, 0)
    finally:
        wb.close()


def test_vk_user_albums_and_rate_limit_and_5xx_are_retried(
    tmp_path: Path, models_dir: Path, lfw_dir: Path, vk: FakeVK
) -> None:
    images = _lfw_images(lfw_dir, 9)
    vk.add_album(100, 1, "Holidays", images[:5])
    vk.add_album(100, 2, "Work", images[5:])
    vk.inject_error("photos.getAlbums", 6, times=2)
    vk.inject_error("photos.get", 6, times=1)
    vk.fail_next("/method/photos.get", 502, times=2)
    vk.fail_next("/photo/", 500, times=2)
    wb = _wb(tmp_path / "wb", models_dir, vk=vk, vk_token=VK_TOKEN)
    try:
        report = wb.ingest(["vk:user/100"], progress=False)
        assert (report.photos, report.errors) == (9, 0)
        assert {r.meta["album"] for r in _remote_rows(wb, "vk")} == {"Holidays", "Work"}
    finally:
        wb.close()


def test_vk_real_rate_limit_is_respected(
    tmp_path: Path, models_dir: Path, lfw_dir: Path, vk: FakeVK
) -> None:
    """With VK's own pace of 3 calls per second, a server enforcing it never says error 6."""
    vk.max_rps = 3.0
    for album in range(1, 4):
        vk.add_album(-7, album, f"A{album}", _lfw_images(lfw_dir, 3 * album)[-3:])
    from workbench.sources import open_source

    wb = _wb(tmp_path / "wb", models_dir, vk=vk, vk_token=VK_TOKEN)
    try:
        settings = wb.settings.model_copy(deep=True)
        settings.remote.vk_requests_per_second = 3.0
        refs = list(open_source("vk:group/7", settings).refs())
        assert len(refs) == 9
        # One call per album list and per album: an error 6 would have meant a retry.
        calls = [r.path for r in vk.requests if r.path.startswith("/method/")]
        assert calls == ["/method/photos.getAlbums"] + ["/method/photos.get"] * 3
    finally:
        wb.close()


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, "VK lists photos only for an access token"),
        (VK_OUTSIDER, "the album is private"),
        (VK_EXPIRED, "VK rejected the access token"),
    ],
)
def test_vk_private_album_and_bad_tokens_are_clear_and_write_nothing(
    tmp_path: Path,
    models_dir: Path,
    lfw_dir: Path,
    vk: FakeVK,
    token: str | None,
    expected: str,
) -> None:
    vk.add_album(-55, 3, "Members only", _lfw_images(lfw_dir, 4), private=True, members={VK_TOKEN})
    extra = {"vk_token": token} if token else {}
    wb = _wb(tmp_path / "wb", models_dir, vk=vk, **extra)
    try:
        report = wb.ingest(["vk:album/-55_3"], progress=False)
        assert report.photos == 0 and report.errors == 1
        error = report.error_details[0][1]
        assert expected in error and "-55_3" in error
        assert "WORKBENCH_VK_TOKEN" in error or "allowed to see it" in error
        assert all(t not in error for t in TOKENS)
        assert _remote_rows(wb, "vk") == [] and vk.downloads() == 0
    finally:
        wb.close()


def test_vk_deleted_album_mid_listing_writes_nothing(
    tmp_path: Path, models_dir: Path, lfw_dir: Path, vk: FakeVK
) -> None:
    vk.add_album(100, 1, "Kept", _lfw_images(lfw_dir, 3))
    vk.add_album(100, 2, "Deleted", _lfw_images(lfw_dir, 6)[3:])
    vk.inject_error("photos.get", 100, times=1)  # the first album vanishes while listed
    wb = _wb(tmp_path / "wb", models_dir, vk=vk, vk_token=VK_TOKEN)
    try:
        report = wb.ingest(["vk:user/100"], progress=False)
        assert report.photos == 0 and report.errors == 1
        assert "no such album: deleted, or a wrong id" in report.error_details[0][1]
        assert _remote_rows(wb, "vk") == []
    finally:
        wb.close()


# ---- tokens never leak ---------------------------------------------------------------------


def test_tokens_never_reach_logs_catalog_exports_or_notebooks(
    tmp_path: Path,
    models_dir: Path,
    lfw_dir: Path,
    dev_photos: list[Any],
    vk: FakeVK,
    disk: FakeYandexDisk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every place a token could end up, grepped after a good run and a failing one."""
    images = _lfw_images(lfw_dir, 6)
    vk.add_album(-9, 1, "Ok", images[:3])
    vk.add_album(-9, 2, "Secret", images[3:], private=True, members={VK_TOKEN})
    disk.add_private(YADISK_TOKEN, {"/P/a.jpg": dev_photos[0].path})
    vk.fail_next("/method/photos.get", 503, times=1)
    home = tmp_path / "wb"
    env = {
        **cli_env(home, models_dir),
        "WORKBENCH_VK_TOKEN": VK_TOKEN,
        "WORKBENCH_YADISK_TOKEN": YADISK_TOKEN,
        "WORKBENCH_REMOTE__VK_API_URL": vk.base_url,
        "WORKBENCH_REMOTE__YADISK_API_URL": disk.base_url,
        "WORKBENCH_REMOTE__BACKOFF": "0.01",
    }
    outputs: list[str] = []

    def run(*args: str, env_over: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "workbench.cli", "-vv", *args],
            env={**env, **(env_over or {})},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        outputs.extend([proc.stdout, proc.stderr])
        return proc

    ok = run("ingest", "--no-progress", "vk:album/-9_1", "yadisk:/disk/P")
    assert ok.returncode == 0, ok.stderr
    assert "retry 1 of" in ok.stderr  # the 503 was logged, with the request it retried
    run("ingest", "--no-progress", "vk:album/-9_2", env_over={"WORKBENCH_VK_TOKEN": VK_OUTSIDER})
    vk.expire(VK_TOKEN)
    failed = run("ingest", "--no-progress", "vk:album/-9_1")
    assert "VK rejected the access token" in failed.stderr
    run("export", "--what", "photos", "--format", "csv", "--out", str(tmp_path / "p.csv"))
    run("export", "--what", "faces", "--format", "json", "--out", str(tmp_path / "f.json"))
    run("stats", "--json")

    from workbench.notebooks import run_notebook

    # The notebook's kernel inherits this environment: an outsider's VK token and
    # an unknown Yandex.Disk token, so both sources fail and their errors are shown.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WORKBENCH_VK_TOKEN", VK_OUTSIDER)
    monkeypatch.setenv("WORKBENCH_YADISK_TOKEN", "y0_EXPIRED-yadisk-token-000111222")
    nb = run_notebook(
        "01_ingest",
        {"home": str(home), "paths": ["vk:album/-9_2", "yadisk:/disk/P"], "register_only": False},
        output=tmp_path / "nb" / "01_ingest.ipynb",
    )
    notebook_text = Path(nb.output).read_text()
    assert "the album is private" in notebook_text and "OAuth token" in notebook_text
    outputs.append(notebook_text)

    files = [home / "catalog.sqlite", tmp_path / "p.csv", tmp_path / "f.json"]
    blobs = [f.read_bytes().decode("utf-8", "replace") for f in files]
    with sqlite3.connect(home / "catalog.sqlite") as db:
        rows = [
            json.dumps(r, default=str)
            for t in ("photos", "runs")
            for r in db.execute(f"SELECT * FROM {t}")
        ]  # noqa: S608
    assert len(rows) >= 4
    haystack = "\n".join(outputs + blobs + rows)
    for token in (*TOKENS, "y0_EXPIRED-yadisk-token-000111222"):
        assert token not in haystack
    assert "https://vk.com/photo-9_" in "\n".join(rows)  # the grep saw the VK photos


def test_download_not_matching_the_published_hash_is_an_error_retried_next_run(
    tmp_path: Path, models_dir: Path, dev_photos: list[Any], disk: FakeYandexDisk
) -> None:
    import shutil

    from workbench.sources import open_source

    good = next(p.path for p in dev_photos if p.category == "identity")
    served = tmp_path / "served.jpg"
    shutil.copyfile(good, served)
    link = disk.publish("ChangingKey", {"/a.jpg": served})
    wb = _wb(tmp_path / "wb", models_dir, disk=disk)
    try:
        # The service publishes the hash of what it holds; the bytes then change in
        # transit (a broken proxy, a file replaced between listing and download).
        assert len(list(open_source(f"yadisk:{link}", wb.settings).refs())) == 1
        served.write_bytes(dev_photos[1].path.read_bytes())
        report = wb.ingest([f"yadisk:{link}"], progress=False)
        assert (report.photos, report.errors) == (1, 1)
        assert "do not match the sha256 the service published" in report.error_details[0][1]
        (row,) = _remote_rows(wb, "yadisk")
        assert row.status == "error" and row.sha256 is None  # a read failure: retried

        shutil.copyfile(good, served)
        again = wb.ingest([f"yadisk:{link}"], progress=False)
        assert (again.photos, again.errors) == (1, 0)
        (row,) = _remote_rows(wb, "yadisk")
        assert row.status == "done" and row.n_faces >= 1
    finally:
        wb.close()


def test_private_group_album_needs_a_members_token(
    tmp_path: Path, models_dir: Path, lfw_dir: Path, vk: FakeVK
) -> None:
    """VK hides a private album from outsiders; a member's token ingests it."""
    images = _lfw_images(lfw_dir, 6)
    vk.add_album(-31, 1, "Open", images[:3])
    vk.add_album(-31, 2, "Members", images[3:], private=True, members={VK_TOKEN})
    outsider = _wb(tmp_path / "out", models_dir, vk=vk, vk_token=VK_OUTSIDER)
    member = _wb(tmp_path / "in", models_dir, vk=vk, vk_token=VK_TOKEN)
    try:
        seen = outsider.ingest(["vk:group/31"], progress=False)
        assert (seen.photos, seen.errors) == (3, 0)
        assert {r.meta["album"] for r in _remote_rows(outsider, "vk")} == {"Open"}
        joined = member.ingest(["vk:group/31", "vk:album/-31_2"], progress=False)
        assert (joined.photos, joined.errors) == (6, 0) and joined.skipped == 3
        assert {r.meta["album"] for r in _remote_rows(member, "vk")} == {"Open", "Members"}
    finally:
        outsider.close()
        member.close()
