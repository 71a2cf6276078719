"""The CLI when things go wrong: exit codes, bad labels, a full disk, a read-only home,
Ctrl-C, a process that died mid-run, `export --pack DIR`, formulas in CSV cells, and
credentials a service echoes into its metadata."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LOCAL_DETECTOR, LOCAL_RECOGNIZER, DevPhoto, cli_env, run_cli

pytestmark = pytest.mark.integration

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def _identity(dev_photos: list[DevPhoto], n: int, start: int = 0) -> list[Path]:
    return [p.path for p in dev_photos if p.category == "identity"][start : start + n]


def _album(tmp_path: Path, photos: list[Path], name: str = "album") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for p in photos:
        shutil.copy(p, folder / p.name)
    return folder


# ---- exit codes -------------------------------------------------------------------------
def test_a_missing_source_exits_2_and_strict_makes_photo_errors_fail(
    tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto]
) -> None:
    env = cli_env(tmp_path / "wb", models_dir)
    album = _album(tmp_path, _identity(dev_photos, 2))
    missing = tmp_path / "no-such-folder"
    proc = run_cli(["ingest", str(missing), str(album), "--json", "--no-progress"], env)
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["photos"] == 2  # the rest was ingested all the same
    assert f"error: {missing}: no such file or folder" in proc.stderr
    assert proc.stderr.count(str(missing)) == 2  # one log line, one error line: no doubling

    (album / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    proc = run_cli(["ingest", str(album), "--json", "--no-progress"], env)
    assert proc.returncode == 0 and json.loads(proc.stdout)["errors"] == 1
    (album / "broken2.jpg").write_bytes(b"\xff\xd8\xff\xe0 nor this one")
    proc = run_cli(["ingest", str(album), "--strict", "--no-progress"], env)
    assert proc.returncode == 1, proc.stderr
    assert "broken2.jpg" in proc.stderr


@pytest.mark.skipif(os.name != "posix", reason="needs symlinks")
def test_a_symlink_loop_or_a_dangling_link_on_the_command_line(
    tmp_path: Path, models_dir: Path
) -> None:
    env = cli_env(tmp_path / "wb", models_dir)
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone" / "photo.jpg")
    proc = run_cli(["ingest", str(tmp_path / "loop"), str(tmp_path / "dangling.jpg")], env)
    assert proc.returncode == 2
    assert f"{tmp_path / 'loop'}: a loop of symbolic links" in proc.stderr
    assert f"{tmp_path / 'dangling.jpg'}: a symbolic link to {tmp_path / 'gone'}" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("label", "words"),
    [
        ("family\nholidays", "control characters"),
        ("\x1b[2Jwiped", "control characters"),
        ("x" * 513, "513 characters long, over the 512"),
    ],
)
def test_a_source_label_search_could_not_find_is_refused(
    tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto], label: str, words: str
) -> None:
    home = tmp_path / "wb"
    album = _album(tmp_path, _identity(dev_photos, 1))
    proc = run_cli(["ingest", str(album), "--source", label], cli_env(home, models_dir))
    assert proc.returncode == 2
    assert words in proc.stderr and "\x1b" not in proc.stderr
    assert not (home / "catalog.sqlite").exists()  # refused before anything was opened


# ---- a full disk and a read-only home -------------------------------------------------
@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Path]:
    point = tmp_path / "mnt"
    point.mkdir()
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def _fill(path: Path) -> None:
    """Take every last block of the file system ``path`` is on."""
    with open(path, "wb", buffering=0) as fh:
        for chunk in (2**20, 4096, 512):
            try:
                while True:
                    fh.write(b"\x00" * chunk)
            except OSError:
                continue


@pytest.mark.skipif(not ROOT, reason="mounting a small tmpfs needs root (CI runs as root)")
def test_a_full_disk_is_said_in_one_line_and_nothing_is_lost(
    tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto], mount_point: Path
) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount_point)], check=True)
    home = mount_point / "wb"
    env = cli_env(home, models_dir)
    first = _album(tmp_path, _identity(dev_photos, 3), "first")
    ok = run_cli(["ingest", str(first), "--json", "--no-progress"], env)
    assert ok.returncode == 0, ok.stderr
    _fill(mount_point / "filler")
    more = _album(tmp_path, _identity(dev_photos, 10, start=3), "more")
    proc = run_cli(["ingest", str(more), "--json", "--no-progress"], env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "is full: free some space, then run the same command again" in proc.stderr
    assert "collided with another writer" not in proc.stderr
    (mount_point / "filler").unlink()
    again = run_cli(["ingest", str(first), str(more), "--json", "--no-progress"], env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["skipped"] >= 3  # what was stored before is still there
    stats = json.loads(run_cli(["stats", "--json"], env).stdout)
    assert stats["photos"] == 13 and stats["agree"]


@pytest.fixture
def read_only_home(
    tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto], mount_point: Path
) -> Iterator[Path]:
    """A home with the first dev photos, then made read-only (a read-only bind mount as
    root, as an archive on a read-only share; without root, no write permission)."""
    home = tmp_path / "wb"
    env = {**cli_env(home, models_dir), "WORKBENCH_STORAGE__LITE_IDLE_S": "0"}
    album = _album(tmp_path, _identity(dev_photos, 6))
    ok = run_cli(["ingest", str(album), "--json", "--no-progress"], env)
    assert ok.returncode == 0, ok.stderr
    time.sleep(2)  # its vector server stops (idle 0 s) and closes the Lite file
    if ROOT:
        subprocess.run(["mount", "--bind", str(home), str(mount_point)], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mount_point)], check=True)
        yield mount_point
    else:
        modes = {p: p.stat().st_mode for p in [home, *home.rglob("*")]}
        for p in modes:
            p.chmod(p.stat().st_mode & ~0o222)
        yield home
        for p, mode in modes.items():
            p.chmod(mode)


def test_a_read_only_home_reads_and_refuses_writes_in_words(
    read_only_home: Path, tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto]
) -> None:
    env = cli_env(read_only_home, models_dir)
    stats = json.loads(run_cli(["stats", "--json"], env).stdout)
    assert stats["photos"] == 6 and stats["agree"]
    sample = _identity(dev_photos, 1)[0]
    found = run_cli(["search", str(sample), "--json"], env)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["matches"][0]["photo"].endswith(sample.name)
    out = tmp_path / "faces.csv"
    exported = run_cli(["export", "--out", str(out), "--json"], env)
    assert exported.returncode == 0 and json.loads(exported.stdout)["rows"] >= 6
    for args in (["ingest", str(_identity(dev_photos, 1, start=10)[0])], ["cluster"]):
        proc = run_cli(args, env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "read-only here" in proc.stderr and "Traceback" not in proc.stderr


# ---- interruptions ------------------------------------------------------------------------
def _stored(db: Path) -> int:
    """Photos a running ingest has committed so far (0 before its catalog exists)."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
    except sqlite3.OperationalError:  # no tables yet
        return 0
    finally:
        conn.close()


def test_ctrl_c_prints_what_was_done_and_how_to_go_on(
    tmp_path: Path, models_dir: Path, lfw_dir: Path
) -> None:
    env = cli_env(tmp_path / "wb", models_dir)
    photos = sorted((lfw_dir / "images").glob("*/*.jpg"))[:300]
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "ingest", *map(str, photos), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    db = tmp_path / "wb" / "catalog.sqlite"
    while time.monotonic() < deadline:  # interrupt once some photos are stored
        if _stored(db) >= 20:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted; re-run the same command to continue" in err
    assert "Traceback" not in err
    partial = json.loads(out)
    assert 20 <= partial["photos"] < len(photos)
    with sqlite3.connect(db) as c:
        (status,) = c.execute("SELECT status FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    assert status == "interrupted"
    rest = json.loads(run_cli(["ingest", *map(str, photos), "--json"], env).stdout)
    assert rest["skipped"] >= partial["photos"] and rest["photos"] + rest["skipped"] == 300


def test_a_run_whose_process_died_shows_as_interrupted(
    tmp_path: Path, models_dir: Path, lfw_dir: Path, dev_photos: list[DevPhoto]
) -> None:
    env = cli_env(tmp_path / "wb", models_dir)
    photos = sorted((lfw_dir / "images").glob("*/*.jpg"))[:200]
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "ingest", *map(str, photos), "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = tmp_path / "wb" / "catalog.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _stored(db) >= 10:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    from workbench.analysis import reports
    from workbench.store.catalog import Catalog

    catalog = Catalog(f"sqlite:///{db}")
    try:
        assert reports.runs(catalog)["status"].tolist()[-1] == "interrupted"  # shown so at once
        catalog.start_run("local", ["next"])  # the next run marks it for good
        with sqlite3.connect(db) as c:
            statuses = [s for (s,) in c.execute("SELECT status FROM runs ORDER BY id")]
        assert statuses == ["interrupted", "running"]
    finally:
        catalog.close()


# ---- export, CSV cells, credentials ----------------------------------------------------------
def test_export_pack_dir_exports_that_packs_faces(
    tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto]
) -> None:
    pack_dir = tmp_path / "models"
    for rel in (LOCAL_DETECTOR, LOCAL_RECOGNIZER):
        (pack_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(models_dir / rel, pack_dir / rel)
    env = cli_env(tmp_path / "wb", models_dir)
    album = _album(tmp_path, _identity(dev_photos, 3))
    ingested = run_cli(["--pack", str(pack_dir), "ingest", str(album), "--json"], env)
    faces = json.loads(ingested.stdout)["faces"]
    assert faces >= 3
    for flags in (["--pack", str(pack_dir)], ["--pack", "local"], []):
        out = tmp_path / f"faces{len(flags)}.json"
        proc = run_cli([*flags, "export", "--out", str(out), "--json"], env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["rows"] == faces, flags


def test_csv_export_neutralises_formulas(
    tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto]
) -> None:
    env = cli_env(tmp_path / "wb", models_dir)
    album = tmp_path / "album"
    album.mkdir()
    names = ["=HYPERLINK(1).jpg", "+cmd.jpg", "-2+3.jpg", "@SUM(A1).jpg"]
    for name, photo in zip(names, _identity(dev_photos, 4), strict=True):
        shutil.copy(photo, album / name)
    assert run_cli(["ingest", str(album), "--source", "=evil()", "--json"], env).returncode == 0
    out = tmp_path / "photos.csv"
    assert run_cli(["export", "--what", "photos", "--out", str(out)], env).returncode == 0
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    cells = [v for row in rows for v in row.values() if v]
    assert not [c for c in cells if c[0] in "=+-@"], "a cell a spreadsheet would run"
    assert {r["source"] for r in rows} == {"'=evil()"}


def test_signed_urls_and_tokens_stay_out_of_the_catalog_and_exports(
    tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto]
) -> None:
    """VK signs its photo URLs (``sign=``); a caption may echo a token. Neither is stored,
    and a registered photo is still read again, through a fresh signed URL."""
    from tests.fakes.vk import FakeVK

    token = "vk1.a.SeCrEtToKeN-0123456789"
    with FakeVK() as vk:
        vk.add_token(token, user_id=1)
        photos = _identity(dev_photos, 3)
        caption = f"see https://x.example/?access_token={token}"
        vk.add_album(1, 7, "trip", photos, captions=[caption] * len(photos))
        env = {
            **cli_env(tmp_path / "wb", models_dir),
            "WORKBENCH_VK_TOKEN": token,
            "WORKBENCH_REMOTE__VK_API_URL": vk.base_url,
        }
        reg = run_cli(["ingest", "vk:album/1_7", "--register-only", "--json"], env)
        assert reg.returncode == 0, reg.stderr
        emb = run_cli(["embed", "--json", "--no-progress"], env)
        assert emb.returncode == 0, emb.stderr
        assert json.loads(emb.stdout)["faces"] >= 3  # read again through photos.getById
        out = tmp_path / "photos.json"
        assert run_cli(["export", "--what", "photos", "--out", str(out)], env).returncode == 0
    stored = (tmp_path / "wb" / "catalog.sqlite").read_bytes().decode("latin-1")
    exported = out.read_text()
    for text in (stored, exported):
        assert "sign=" not in text.replace("sign=***", "")
        assert token not in text
    assert "sign=***" in exported


# ---- permissions -----------------------------------------------------------------------------
_LATER_PROCESS = """
import sys
from sqlalchemy import select
import workbench
from workbench.imaging.thumbnails import ThumbnailCache
from workbench.store.models import Photo

wb = workbench.open(sys.argv[1], pack="local")
with wb.catalog.session() as s:  # a dashboard showing the gallery, then the face map
    photos = list(s.scalars(select(Photo)))
cache = ThumbnailCache(wb.settings)
for photo in photos:
    cache.thumbnail(photo)
wb.face_map()
wb.close()
"""


def test_a_private_home_keeps_its_thumbnails_and_caches_private(
    tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto]
) -> None:
    """A home made by an owner with umask 077 (catalog 0600) gets 0600 thumbnails and
    caches (0700 folders), also when a later process with umask 022 writes them."""
    home = tmp_path / "wb"
    env = cli_env(home, models_dir)
    album = _album(tmp_path, _identity(dev_photos, 4))
    old = os.umask(0o077)
    try:
        ok = run_cli(["ingest", str(album), "--json", "--no-progress"], env)
    finally:
        os.umask(old)
    assert ok.returncode == 0, ok.stderr
    assert (home / "catalog.sqlite").stat().st_mode & 0o777 == 0o600
    thumbs = sorted((home / "thumbnails").rglob("*.jpg"))
    assert thumbs
    thumbs[0].unlink()  # made again on demand, below, by a process with umask 022
    old = os.umask(0o022)
    try:
        later = subprocess.run(
            [sys.executable, "-c", _LATER_PROCESS, str(home)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        os.umask(old)
    assert later.returncode == 0, later.stderr[-3000:]
    assert thumbs[0].is_file()
    written = [*(home / "thumbnails").rglob("*"), *(home / "cache").rglob("*")]
    assert any(p.is_file() and "cache" in p.relative_to(home).parts for p in written)
    modes = {
        str(p.relative_to(home)): oct(p.stat().st_mode & 0o777)
        for p in written
        if (p.stat().st_mode & 0o777) != (0o700 if p.is_dir() else 0o600)
    }
    assert not modes, modes
