"""The CLI contract: commands, options and JSON shapes other tools rely on."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli

pytestmark = pytest.mark.integration


def workbench(
    args: list[str], env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = run_cli(args, env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"workbench {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
        )
    return proc


def test_ingest_search_stats_json(tmp_path: Path, models_dir: Path, dev_photos: list) -> None:
    env = cli_env(tmp_path / "wb", models_dir)
    angelina = [p for p in dev_photos if p.identity == "deepface:Angelina"]
    folder = tmp_path / "album"
    folder.mkdir()
    for p in angelina[1:4] + [p for p in dev_photos if p.category == "no_face"][:1]:
        shutil.copy(p.path, folder / p.path.name)

    out = json.loads(workbench(["ingest", str(folder), "--json", "--no-progress"], env).stdout)
    assert out == {"photos": 4, "faces": out["faces"], "no_faces": 1, "errors": 0, "skipped": 0}
    assert out["faces"] >= 3

    again = json.loads(workbench(["ingest", str(folder), "--json"], env).stdout)
    assert again == {"photos": 0, "faces": 0, "no_faces": 0, "errors": 0, "skipped": 4}

    res = json.loads(
        workbench(["search", str(angelina[0].path), "--json", "--top-k", "2"], env).stdout
    )
    assert isinstance(res, list) and len(res) >= 1
    face = res[0]
    assert len(face["box"]) == 4
    assert 1 <= len(face["matches"]) <= 2
    for m in face["matches"]:
        assert set(m) >= {"photo", "source", "face_id", "box", "similarity"}
        assert m["source"] == "local" and len(m["box"]) == 4 and m["similarity"] >= 85
        assert Path(m["photo"]).parent == folder.resolve()

    none = json.loads(
        workbench(["search", str(angelina[0].path), "--json", "--source", "elsewhere"], env).stdout
    )
    assert all(f["matches"] == [] for f in none)

    stats = json.loads(workbench(["stats", "--json"], env).stdout)
    assert stats["photos"] == 4 and stats["agree"] is True
    assert {(r["source"], r["status"], r["photos"]) for r in stats["by_source_status"]} == {
        ("local", "done", 3),
        ("local", "no_faces", 1),
    }

    human = workbench(["search", str(angelina[0].path)], env).stdout
    assert "%" in human and str(folder.resolve()) in human


def test_clear_errors(tmp_path: Path, models_dir: Path, dev_photos: list) -> None:
    env = cli_env(tmp_path / "wb", models_dir)
    bad = workbench(["search", str(tmp_path / "missing.jpg")], env, check=False)
    assert bad.returncode != 0 and "missing.jpg" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "notes.jpg").write_text("not a photo")
    bad = workbench(["search", str(tmp_path / "notes.jpg")], env, check=False)
    assert bad.returncode != 0 and "notes.jpg" in bad.stderr and "Traceback" not in bad.stderr
    bad = workbench(["--pack", "nope", "search", str(dev_photos[0].path)], env, check=False)
    assert bad.returncode != 0 and "local" in bad.stderr and "dlib" in bad.stderr


def test_kill_9_then_rerun_completes(tmp_path: Path, models_dir: Path, faces_dev_dir: Path) -> None:
    """An ingest killed with SIGKILL mid-run, re-run, ends complete with no duplicates."""
    from sqlalchemy import func, select

    from workbench.core import Workbench
    from workbench.settings import WorkbenchSettings
    from workbench.store.models import Face, Photo

    home = tmp_path / "wb"
    env = cli_env(home, models_dir)
    env["WORKBENCH_BATCH_SIZE"] = "4"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "ingest",
            str(faces_dev_dir / "images"),
            "--no-progress",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    catalog = home / "catalog.sqlite"
    deadline = time.monotonic() + 300
    killed_at = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if catalog.exists():
            import sqlite3

            try:
                with sqlite3.connect(catalog) as con:
                    killed_at = con.execute("select count(*) from photos").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if killed_at >= 20:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
    assert 0 < killed_at < 100

    rerun = json.loads(workbench(["ingest", str(faces_dev_dir / "images"), "--json"], env).stdout)
    assert rerun["photos"] + rerun["skipped"] == 100

    settings = WorkbenchSettings(home=home)
    with Workbench(settings) as wb:
        st = wb.stats()
        with wb.catalog.session() as s:
            photos = s.scalar(select(func.count(Photo.id)))
            distinct = s.scalar(select(func.count(func.distinct(Photo.sha256))))
            faces = s.scalar(select(func.count(Face.id)))
            dup_faces = s.execute(
                select(Face.photo_id, Face.x1, Face.y1, func.count())
                .group_by(Face.photo_id, Face.x1, Face.y1)
                .having(func.count() > 1)
            ).all()
    assert photos == distinct == 100
    assert not dup_faces
    assert st.agree and st.packs[0].index_vectors == faces
