"""The HTTP API end to end: a real `workbench serve-api` and a real client (httpx).

Every endpoint; keys refused when missing, unknown or revoked; the upload limits;
paging; a search whose answer is byte for byte what `workbench search --json`
prints for the same photo (the CLI running beside the server, on the same home);
an ingest job, uploaded and by path, that completes and shows in /v1/stats.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.api.conftest import ApiServer
from tests.conftest import DevPhoto, run_cli

PROBLEM = "application/problem+json"


def _client(server: ApiServer, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=server.headers(key), timeout=120)


def _problem(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    for w in words:
        assert w in body["detail"], body
    return body  # type: ignore[no-any-return]


def _wait_job(c: httpx.Client, job: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen_progress = []
    while time.monotonic() < deadline:
        r = c.get(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200, r.text
        job = r.json()
        seen_progress.append(job["progress"]["done"])
        if job["status"] in ("done", "failed"):
            assert seen_progress == sorted(seen_progress)  # progress never goes back
            return job
        time.sleep(0.2)
    raise AssertionError(f"job not finished in {timeout} s: {job}")


ROUTES = [
    ("GET", "/v1/stats"),
    ("GET", "/v1/photos"),
    ("GET", "/v1/photos/1"),
    ("GET", "/v1/photos/1/thumbnail"),
    ("GET", "/v1/people"),
    ("GET", "/v1/people/1"),
    ("POST", "/v1/people/1/name"),
    ("POST", "/v1/people/1/merge"),
    ("POST", "/v1/people/1/hide"),
    ("POST", "/v1/search"),
    ("POST", "/v1/ingest"),
    ("GET", "/v1/jobs/x"),
    ("GET", "/metrics"),
]


def test_every_route_but_healthz_needs_an_active_key(api_server: ApiServer) -> None:
    with httpx.Client(base_url=api_server.url, timeout=60) as bare:
        health = bare.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        for method, path in ROUTES:
            r = bare.request(method, path)
            body = _problem(r, 401, "X-API-Key", "api-key create")
            assert r.headers["www-authenticate"].startswith("Bearer"), (path, r.headers)
            assert body["instance"] == path
            for key in (api_server.revoked, "wbk_not-a-key", "no-prefix"):
                _problem(bare.request(method, path, headers={"X-API-Key": key}), 401, "revoked")
        # The same key as a bearer token.
        auth = {"Authorization": f"Bearer {api_server.key}"}
        assert bare.get("/v1/stats", headers=auth).status_code == 200
        revoked = {"Authorization": f"Bearer {api_server.revoked}"}
        _problem(bare.get("/v1/stats", headers=revoked), 401)


def test_search_answers_what_the_cli_prints(
    api_server: ApiServer, dev_photos: list[DevPhoto]
) -> None:
    samples = [p for p in dev_photos if p.n_faces][:3] + [p for p in dev_photos if p.n_faces == 0][
        :1
    ]
    with _client(api_server) as c:
        for photo in samples:
            r = c.post("/v1/search", files={"photo": (photo.path.name, photo.path.read_bytes())})
            assert r.status_code == 200, r.text
            cli = run_cli(["search", str(photo.path), "--json"], api_server.env)
            assert cli.returncode == 0, cli.stderr
            assert r.json() == json.loads(cli.stdout), photo.path.name
            if photo.n_faces:
                assert r.json() and r.json()[0]["matches"][0]["similarity"] > 99  # itself
            else:
                assert r.json() == []
        # threshold, top_k and all, as the CLI takes them
        sample = samples[0].path
        files = {"photo": (sample.name, sample.read_bytes())}
        one = c.post("/v1/search", files=files, data={"top_k": "1", "threshold": "0"}).json()
        assert all(len(f["matches"]) == 1 for f in one)
        every = c.post("/v1/search", files=files, data={"all": "true", "threshold": "0"}).json()
        stats = c.get("/v1/stats").json()
        # Every searchable face at 0 %: all of them but those below the quality gate.
        assert len(every[0]["matches"]) == every[0]["gallery"] < stats["faces"]
        data = {"all": "true", "threshold": "0", "include_low_quality": "true"}
        with_low = c.post("/v1/search", files=files, data=data).json()
        assert len(with_low[0]["matches"]) == with_low[0]["gallery"] == stats["faces"]
        cli = run_cli(["search", str(sample), "--json", "--top-k", "1", "--threshold", "0"],
                      api_server.env)  # fmt: skip
        assert one == json.loads(cli.stdout)
        _problem(c.post("/v1/search", files=files, data={"top_k": "0"}), 422, "top_k")
        _problem(c.post("/v1/search", files=files, data={"threshold": "101"}), 422, "threshold")
        _problem(c.post("/v1/search"), 422, "photo")
        bad = c.post("/v1/search", files={"photo": ("notes.jpg", b"<html>not a photo</html>")})
        _problem(bad, 422, "not an image")


def test_uploads_over_the_limits_are_refused_by_name(api_server: ApiServer) -> None:
    big = io.BytesIO()
    Image.new("RGB", (7000, 5000), (90, 120, 150)).save(big, "JPEG", quality=50)  # 35 Mpx
    noise = io.BytesIO()
    Image.effect_noise((1500, 1500), 100).convert("RGB").save(noise, "BMP")  # 6.75 MB
    with _client(api_server) as c:
        r = c.post("/v1/search", files={"photo": ("huge.jpg", big.getvalue())})
        _problem(r, 413, "huge.jpg", "7000×5000", "MAX_UPLOAD_PIXELS")
        r = c.post("/v1/search", files={"photo": ("heavy.bmp", noise.getvalue())})
        _problem(r, 413, "heavy.bmp", "3,145,728 bytes")
        before = c.get("/v1/stats").json()["photos"]
        r = c.post("/v1/ingest", files=[("files", ("heavy.bmp", noise.getvalue()))])
        _problem(r, 413, "heavy.bmp")
        assert c.get("/v1/stats").json()["photos"] == before  # nothing stored
    assert not list((api_server.home / "uploads").glob("*/heavy.bmp"))


def test_photos_are_paged_filtered_and_detailed(api_server: ApiServer) -> None:
    with _client(api_server) as c:
        first = c.get("/v1/photos").json()
        assert first["page_size"] == 20 and first["page"] == 1  # WORKBENCH_API__PAGE_SIZE
        total, ids = first["total"], []
        pages = -(-total // 7)
        for page in range(1, pages + 2):
            r = c.get("/v1/photos", params={"page": page, "page_size": 7})
            assert r.status_code == 200
            body = r.json()
            assert body["total"] == total and body["pages"] == pages
            ids += [i["id"] for i in body["items"]]
        assert len(ids) == total == len(set(ids))  # every photo once, the page past the end empty
        assert ids == sorted(ids, reverse=True)  # newest first
        no_faces = c.get("/v1/photos", params={"status": "no_faces", "page_size": 1000}).json()
        assert no_faces["total"] > 0
        assert all(i["category"] == "no_faces" and i["n_faces"] == 0 for i in no_faces["items"])
        _problem(c.get("/v1/photos", params={"page_size": 0}), 422, "page_size")
        _problem(c.get("/v1/photos", params={"status": "maybe"}), 422, "status")
        _problem(c.get("/v1/photos", params={"person_id": 999999}), 404, "999999")

        with_faces = c.get("/v1/photos", params={"status": "faces", "page_size": 1}).json()
        photo_id = with_faces["items"][0]["id"]
        detail = c.get(f"/v1/photos/{photo_id}").json()
        assert detail["id"] == photo_id
        assert len(detail["faces"]) == with_faces["items"][0]["n_faces"]
        for face in detail["faces"]:
            x1, y1, x2, y2 = face["box"]
            assert 0 <= x1 < x2 <= detail["width"] + 1 and 0 <= y1 < y2 <= detail["height"] + 1
        thumb = c.get(f"/v1/photos/{photo_id}/thumbnail", params={"size": 128})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(thumb.content)) as im:
            assert im.format == "JPEG" and max(im.size) == 128
        _problem(c.get("/v1/photos/999999"), 404, "999999")
        _problem(c.get("/v1/photos/999999/thumbnail"), 404, "999999")
        _problem(c.get("/v1/photos/abc"), 422)


def test_people_are_listed_named_merged_and_hidden(api_server: ApiServer) -> None:
    with _client(api_server) as c:
        listed = c.get("/v1/people", params={"page_size": 1000}).json()
        assert listed["total"] >= 3, listed
        people = listed["items"]
        assert [p["faces"] for p in people] == sorted((p["faces"] for p in people), reverse=True)
        paged = [c.get("/v1/people", params={"page": n, "page_size": 2}).json() for n in (1, 2)]
        assert [p["id"] for p in paged[0]["items"] + paged[1]["items"]] == [
            p["id"] for p in people[:4]
        ]
        a, b, hidden = people[0], people[1], people[2]
        one = c.get(f"/v1/people/{a['id']}").json()
        assert one["id"] == a["id"] and len(one["face_ids"]) == a["faces"]

        named = c.post(f"/v1/people/{a['id']}/name", json={"name": "Ada Lovelace"}).json()
        assert named["name"] == "Ada Lovelace" and named["confirmed"]
        merged = c.post(f"/v1/people/{a['id']}/merge", json={"people": [b["id"]]}).json()
        assert merged["id"] == a["id"] and merged["name"] == "Ada Lovelace"
        assert merged["faces"] == a["faces"] + b["faces"]
        _problem(c.get(f"/v1/people/{b['id']}"), 404)  # merged away
        gone = c.post(f"/v1/people/{hidden['id']}/hide", json={"hidden": True}).json()
        assert gone["hidden"]
        shown = [p["id"] for p in c.get("/v1/people", params={"page_size": 1000}).json()["items"]]
        assert hidden["id"] not in shown
        everyone = c.get("/v1/people", params={"page_size": 1000, "include_hidden": True}).json()
        assert hidden["id"] in [p["id"] for p in everyone["items"]]
        # The CLI sees the same people (the same home, at the same time).
        cli = run_cli(["people", "list", "--json"], api_server.env)
        assert cli.returncode == 0, cli.stderr
        assert "Ada Lovelace" in cli.stdout

        _problem(c.post("/v1/people/999999/name", json={"name": "x"}), 404, "999999")
        _problem(c.post(f"/v1/people/{a['id']}/name", json={"nom": "x"}), 422)
        _problem(c.post(f"/v1/people/{a['id']}/merge", json={"people": []}), 422, "people")


def test_ingest_jobs_complete_and_show_in_stats(api_server: ApiServer, lfw_dir: Path) -> None:
    lfw = sorted((lfw_dir / "images").glob("*/*.jpg"))
    with _client(api_server) as c:
        before = c.get("/v1/stats").json()
        uploads = [("files", (p.name, p.read_bytes())) for p in lfw[:3]]
        uploads.append(("files", ("broken.jpg", b"\xff\xd8\xff\xe0 not really")))
        r = c.post("/v1/ingest", files=uploads, data={"source": "press-desk"})
        assert r.status_code == 202, r.text
        assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
        job = _wait_job(c, r.json())
        assert job["status"] == "done", job
        assert job["progress"] == {"done": 4, "total": 4}
        assert job["counts"]["photos"] == 4 and job["counts"]["errors"] == 1
        assert [e["uri"].rsplit("/", 1)[-1] for e in job["errors"]] == ["broken.jpg"]
        after = c.get("/v1/stats").json()
        assert after["photos"] == before["photos"] + 4 and after["agree"]
        assert {"source": "press-desk", "status": "error", "photos": 1} in after["by_source_status"]
        assert after["faces"] > before["faces"]

        # By path, under the server's root; anything else is refused before a job exists.
        folder = api_server.roots / "desk"
        folder.mkdir()
        for p in lfw[3:5]:
            (folder / p.name).write_bytes(p.read_bytes())
        r = c.post("/v1/ingest", json={"sources": [str(folder)], "source": "by-path"})
        assert r.status_code == 202, r.text
        job = _wait_job(c, r.json())
        assert job["status"] == "done" and job["counts"]["photos"] == 2, job
        assert job["run_id"] is not None
        # The job's photos are searchable at once, by the API and by the CLI.
        face = c.post(
            "/v1/search",
            files={"photo": (lfw[3].name, lfw[3].read_bytes())},
            data={"source": "by-path"},
        ).json()
        assert face and face[0]["matches"][0]["photo"].endswith(lfw[3].name)

        _problem(c.post("/v1/ingest", json={"sources": ["/etc"]}), 403, "outside")
        _problem(c.post("/v1/ingest", json={"sources": ["../../etc/passwd"]}), 403, "outside")
        _problem(c.post("/v1/ingest", json={"sources": [str(folder / "none")]}), 422, "no such")
        _problem(c.post("/v1/ingest", json={"sources": []}), 422, "sources")
        as_json = {"content-type": "application/json"}
        _problem(c.post("/v1/ingest", content=b"{", headers=as_json), 422)
        _problem(c.post("/v1/ingest", content=b"x", headers={"content-type": "text/plain"}), 422)
        _problem(c.get("/v1/jobs/not-a-job"), 404, "not-a-job")


def test_metrics_time_each_route_and_status(api_server: ApiServer) -> None:
    with _client(api_server) as c:
        c.get("/v1/stats")
        c.get("/v1/photos/999999")
        text = c.get("/metrics").text
    count = "workbench_api_request_seconds_count"
    assert f'{count}{{method="GET",route="/v1/stats",status="200"}}' in text
    assert f'{count}{{method="GET",route="/v1/photos/{{photo_id}}",status="404"}}' in text
    assert "workbench_search_seconds" in text


def test_openapi_documents_every_route(api_server: ApiServer) -> None:
    with httpx.Client(base_url=api_server.url, timeout=60) as c:
        doc = c.get("/openapi.json").json()
        assert c.get("/docs").status_code == 200
    paths = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert {(m, p.replace("/1", "/{photo_id}", 1)) for m, p in ROUTES[:2]} <= paths
    assert len(paths) == len(ROUTES) + 1  # + /healthz
    assert doc["components"]["securitySchemes"].keys() == {"APIKeyHeader", "HTTPBearer"}


def test_api_keys_are_stored_hashed_and_listed_without_the_key(api_server: ApiServer) -> None:
    listed = run_cli(["api-key", "list", "--json"], api_server.env)
    assert listed.returncode == 0, listed.stderr
    keys = json.loads(listed.stdout)
    assert api_server.key not in listed.stdout and api_server.revoked not in listed.stdout
    by_prefix = {k["prefix"]: k for k in keys}
    assert by_prefix[api_server.key[:12]]["active"]
    assert by_prefix[api_server.key[:12]]["last_used_at"] is not None
    assert not by_prefix[api_server.revoked[:12]]["active"]
    catalog = (api_server.home / "catalog.sqlite").read_bytes()
    wal = api_server.home / "catalog.sqlite-wal"
    stored = catalog + (wal.read_bytes() if wal.exists() else b"")
    assert api_server.key.encode() not in stored
    gone = run_cli(["api-key", "revoke", "999"], api_server.env)
    assert gone.returncode == 2 and "no API key '999'" in gone.stderr
    # Revoked while the server runs: refused at the next request.
    extra = run_cli(["api-key", "create", "short-lived", "--json"], api_server.env)
    key = json.loads(extra.stdout)["key"]
    with _client(api_server, key) as c:
        assert c.get("/v1/stats").status_code == 200
        assert run_cli(["api-key", "revoke", key[:12]], api_server.env).returncode == 0
        _problem(c.get("/v1/stats"), 401)
