"""Search by sample over HTTP against in-process `wb.search`, in one run.

Two homes (built once under ``--scratch`` and reused): the 100-photo dev set, and
``--photos`` LFW photos (default 10,000) with the `local` pack. For each home a
real `workbench serve-api` serves it while this process opens the same home in
process; every sample photo (the dev set's photos with faces, ``--queries`` in
all) is searched both ways, alternately, so both meet the same machine noise.

Reported per home: p50 / p95 of each; the overhead at p95 (HTTP p95 minus in-process
p95: the goal, ≤ 20 ms); and p50 / p95 of the per-query overhead (HTTP minus in-process
for the same photo, a stricter figure: its tail adds both sides' noise).

    python benchmarks/bench_api.py [--photos 10000] [--queries 200] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    FACES_DEV,
    LFW,
    machine,
    percentile,
    quiet_logs,
    run_checked,
    workbench_env,
    write_json,
)


def cli(env: dict[str, str], *args: str) -> str:
    return run_checked([sys.executable, "-m", "workbench.cli", *args], env)


def build(home: Path, sources: list[Path]) -> dict[str, Any]:
    """Ingest ``sources`` into ``home`` (a re-run skips the photos already there)."""
    env = workbench_env(home)
    started = time.perf_counter()
    for i in range(0, len(sources), 500):  # a few hundred paths per command line
        cli(env, "ingest", *map(str, sources[i : i + 500]), "--json", "--no-progress")
    stats = json.loads(cli(env, "stats", "--json"))
    seconds = time.perf_counter() - started
    return {"photos": stats["photos"], "faces": stats["faces"], "build_s": round(seconds, 1)}


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    from workbench.dashboards import free_port

    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", "serve-api", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"serve-api did not start:\n{log.read_text()}")


def measure(home: Path, samples: list[Path], queries: int, log: Path) -> dict[str, Any]:
    import httpx

    from workbench.core import Workbench
    from workbench.settings import WorkbenchSettings

    env = workbench_env(home)
    key = json.loads(cli(env, "api-key", "create", "bench", "--json"))["key"]
    proc, url = serve(env, log)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        wb = Workbench(WorkbenchSettings())
        blobs = [p.read_bytes() for p in samples]
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=120) as c:
            # Warm both: models loaded, vector server attached, first-request costs paid.
            for data in blobs[:3]:
                wb.search(data)
                c.post("/v1/search", files={"photo": ("s.jpg", data)}).raise_for_status()
            local, http, same = [], [], 0
            for i in range(queries):
                data = blobs[i % len(blobs)]
                t0 = time.perf_counter()
                mine = [f.to_dict() for f in wb.search(data)]
                t1 = time.perf_counter()
                r = c.post("/v1/search", files={"photo": (f"s{i}.jpg", data)})
                t2 = time.perf_counter()
                r.raise_for_status()
                same += r.json() == mine
                local.append((t1 - t0) * 1000)
                http.append((t2 - t1) * 1000)
        wb.close()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    overhead = [h - lo for h, lo in zip(http, local, strict=True)]

    def summary(ms: list[float]) -> dict[str, float]:
        return {"p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2)}

    return {
        "queries": queries,
        "same_answers": same,
        "in_process": summary(local),
        "http": summary(http),
        "overhead": summary(overhead),
        "p95_difference_ms": round(percentile(http, 95) - percentile(local, 95), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10_000, help="LFW photos of the big home")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench-api"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    quiet_logs()
    args.scratch.mkdir(parents=True, exist_ok=True)
    dev_images = FACES_DEV / "images"
    samples = sorted(dev_images.glob("*.jpg"))
    lfw = sorted((LFW / "images").glob("*/*.jpg"))[: args.photos]
    homes = {
        "dev": (args.scratch / "dev", [dev_images]),
        f"lfw{len(lfw)}": (args.scratch / f"lfw{len(lfw)}", [dev_images, *lfw]),
    }
    results: dict[str, Any] = {}
    for name, (home, sources) in homes.items():
        built = build(home, sources)
        print(f"{name}: {built['photos']:,} photos, {built['faces']:,} faces", flush=True)
        got = measure(home, samples, args.queries, args.scratch / f"{name}-api.log")
        results[name] = {**built, **got}
        print(
            f"  in-process p50 {got['in_process']['p50_ms']:.1f} ms p95 "
            f"{got['in_process']['p95_ms']:.1f} ms | HTTP p50 {got['http']['p50_ms']:.1f} ms "
            f"p95 {got['http']['p95_ms']:.1f} ms | overhead p50 {got['overhead']['p50_ms']:.1f}"
            f" ms p95 {got['overhead']['p95_ms']:.1f} ms | HTTP p95 - in-process p95 "
            f"{got['p95_difference_ms']:.1f} ms (goal <= 20) | same answers "
            f"{got['same_answers']}/{got['queries']}",
            flush=True,
        )
    path = write_json("api", {"homes": results, "machine": machine()}, args.out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
