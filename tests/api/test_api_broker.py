"""Ingest jobs of the API on `workbench worker`s: WORKBENCH_API__JOBS=broker, a real Redis.

The API lists the photos and publishes them; a worker (another process, on the
same home) analyses them; the job's progress is what the catalog has finished.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import make_key, start_api, stop_api
from tests.conftest import cli_env

pytestmark = pytest.mark.server


def test_a_job_published_to_the_broker_is_done_by_a_worker(
    tmp_path: Path, models_dir: Path, lfw_dir: Path, redis_url: str
) -> None:
    roots = tmp_path / "roots"
    folder = roots / "desk"
    folder.mkdir(parents=True)
    photos = sorted((lfw_dir / "images").glob("*/*.jpg"))[40:46]
    for p in photos:
        (folder / p.name).write_bytes(p.read_bytes())
    env = cli_env(tmp_path / "wb", models_dir)
    env.update(
        WORKBENCH_API__JOBS="broker",
        WORKBENCH_QUEUE__URL=redis_url,
        WORKBENCH_QUEUE__STREAM=f"api-{uuid.uuid4().hex[:8]}",
        WORKBENCH_QUEUE__GROUP="workers",
        WORKBENCH_STORAGE__LITE_IDLE_S="2",
    )
    key = make_key(env, "broker")
    proc, url = start_api(env, tmp_path / "api.log", "--root", str(roots))
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as c:
            r = c.post("/v1/ingest", json={"sources": [str(folder)], "source": "desk"})
            assert r.status_code == 202, r.text
            job = r.json()
            assert job["where"] == "broker" and job["status"] == "running", job
            assert job["progress"] == {"done": 0, "total": len(photos)}

            worker = subprocess.run(
                [sys.executable, "-m", "workbench.cli", "worker", "--until-empty"],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert worker.returncode == 0, worker.stderr[-3000:]

            deadline = time.monotonic() + 60
            while job["status"] == "running" and time.monotonic() < deadline:
                job = c.get(f"/v1/jobs/{job['id']}").json()
                time.sleep(0.2)
            assert job["status"] == "done", job
            assert job["progress"] == {"done": len(photos), "total": len(photos)}
            assert sum(job["counts"].values()) == len(photos)
            stats = c.get("/v1/stats").json()
            assert stats["photos"] == len(photos) and stats["agree"], stats
            found = c.post(
                "/v1/search", files={"photo": (photos[0].name, photos[0].read_bytes())}
            ).json()
            assert found and found[0]["matches"][0]["photo"].endswith(photos[0].name)
    finally:
        assert stop_api(proc) == 0, (tmp_path / "api.log").read_text()
    assert "Traceback" not in (tmp_path / "api.log").read_text()
