"""Load test of the distributed set-up: N photos ingested by `workbench worker`s while
clients search by sample, on a real PostgreSQL, Milvus server and Redis started here.

    python benchmarks/bench_load.py                      # 10,000 photos, 2 workers, 4 clients
    python benchmarks/bench_load.py --photos 500 --json /tmp/load.json

Photos: the LFW images of ../shared/data/lfw, and 3-face collages of them where
more are needed. Reports the workers' throughput (with a single-process ingest
of a slice on the default storage, measured in the same run, as the baseline),
the clients' search latency (end to end: detect + embed the sample + Milvus
search + catalog) during the ingest and after it, and checks at the end that
the catalog and the index agree, no photo is missing and none is there twice.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    LFW,
    LOCAL_DETECTOR,
    LOCAL_RECOGNIZER,
    MODELS,
    RESULTS,
    machine,
    workbench_env,
)
from _services import milvus, postgres, redis  # noqa: E402
from bench_ingest import make_collages  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def photo_set(n: int, scratch: Path, seed: int) -> list[Path]:
    singles = sorted((LFW / "images").rglob("*.jpg"))
    if n <= len(singles):
        return singles[:n]
    return singles + make_collages(n - len(singles), seed, scratch / "collages")


def base_env(home: Path) -> dict[str, str]:
    env = workbench_env(home)
    env.update(
        # One model thread per process: 2 workers + 4 clients + 3 servers share 2 cores.
        WORKBENCH_THREADS="1",
        OMP_WAIT_POLICY="PASSIVE",
        PYTHONPATH=str(REPO),
    )
    return env


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


# ---- a search client (this script run with --client) --------------------------
def client_main(samples_file: Path, stop_file: Path, out: Path, seed: int) -> None:
    from workbench.core import Workbench
    from workbench.monitoring.logs import configure_logging

    configure_logging("ERROR")
    samples = json.loads(samples_file.read_text())
    rng = random.Random(seed)
    records = []
    with Workbench() as wb:
        wb.search(samples[0], top_k=10)  # loads the pack; not timed
        while not stop_file.exists():
            path = rng.choice(samples)
            t = time.time()
            t0 = time.perf_counter()
            found = wb.search(path, top_k=10)
            records.append(
                {
                    "t": t,
                    "ms": (time.perf_counter() - t0) * 1000,
                    "hits": sum(len(q.matches) for q in found),
                }
            )
    out.write_text(json.dumps(records))


# ---- the run ------------------------------------------------------------------
def baseline(paths: list[Path], scratch: Path) -> dict[str, Any]:
    """Single-process ingest on the default storage (SQLite + Milvus Lite) of a slice."""
    from workbench.core import Workbench
    from workbench.settings import WorkbenchSettings

    settings = WorkbenchSettings(
        home=scratch / "baseline",
        pack="local",
        local={"models_dir": MODELS, "detector": LOCAL_DETECTOR, "recognizer": LOCAL_RECOGNIZER},
        allow_download=False,
        threads=2,
    )
    with Workbench(settings) as wb:
        wb.pack.load()
        report = wb.ingest(paths, source="baseline", progress=False)
    return {
        "photos": report.photos,
        "seconds": round(report.seconds, 2),
        "photos_per_s": round(report.photos / report.seconds, 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import create_engine, func, select, text

    from workbench.core import Workbench
    from workbench.ingest.queue import enqueue, queue_state
    from workbench.monitoring.logs import configure_logging
    from workbench.settings import WorkbenchSettings
    from workbench.store.models import Analysis, Photo

    configure_logging("WARNING")
    scratch = Path(tempfile.mkdtemp(prefix="bench-load-", dir=args.scratch))
    paths = photo_set(args.photos, scratch, args.seed)
    n_collages = sum(1 for p in paths if p.name.startswith("collage_"))
    print(f"{len(paths)} photos ({n_collages} collages) in {scratch}", flush=True)
    result: dict[str, Any] = {
        "machine": machine(),
        "photos": len(paths),
        "collages": n_collages,
        "workers": args.workers,
        "clients": args.clients,
    }
    base = baseline(paths[: args.baseline], scratch)
    result["baseline"] = base
    print(f"baseline (1 process, SQLite + Lite): {base['photos_per_s']:.1f} photos/s", flush=True)

    with postgres() as pg_url, redis() as broker, milvus() as milvus_uri:
        home = scratch / "home"
        env = base_env(home)
        env.update(
            WORKBENCH_STORAGE__CATALOG_URL=pg_url,
            WORKBENCH_STORAGE__MILVUS_URI=milvus_uri,
            WORKBENCH_QUEUE__URL=broker,
        )
        os.environ.update({k: v for k, v in env.items() if k.startswith("WORKBENCH_")})
        settings = WorkbenchSettings()
        with Workbench(settings) as wb:  # the catalog and the collection, made once
            wb.register_pack()
        t = time.perf_counter()
        report = enqueue([str(p) for p in paths], settings, "load")
        result["enqueue_seconds"] = round(time.perf_counter() - t, 2)
        assert report.jobs == len(paths), report

        rng = random.Random(args.seed)
        samples = [str(p) for p in rng.sample(paths, min(50, len(paths)))]
        samples_file = scratch / "samples.json"
        samples_file.write_text(json.dumps(samples))
        stop_file = scratch / "stop-clients"
        clients = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    str(samples_file),
                    str(stop_file),
                    str(scratch / f"client{i}.json"),
                    str(args.seed + i),
                ],
                env=env,
            )  # fmt: skip
            for i in range(args.clients)
        ]
        time.sleep(args.client_warmup)  # clients load their models before the ingest starts
        t0 = time.time()
        logs = [open(scratch / f"worker{i}.log", "w") for i in range(args.workers)]  # noqa: SIM115
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "workbench.cli",
                    "worker",
                    "--name",
                    f"w{i}",
                    "--until-empty",
                    "--json",
                ],
                env=env,
                stdout=logs[i],
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            for i in range(args.workers)
        ]
        engine = create_engine(pg_url)
        progress = []
        while any(w.poll() is None for w in workers):
            time.sleep(args.poll)
            st = queue_state(settings.queue)
            with engine.connect() as conn:
                done = conn.execute(text("select count(*) from photos")).scalar_one()
            progress.append({"t": round(time.time() - t0, 1), "photos": done, **st.to_dict()})
            print(f"  {progress[-1]}", flush=True)
        t1 = time.time()
        engine.dispose()
        for f in logs:
            f.close()
        codes = [w.returncode for w in workers]
        time.sleep(args.after)  # searches on the finished index, for contrast
        stop_file.touch()
        for c in clients:
            c.wait(120)
        records = []
        for i in range(args.clients):
            records += json.loads((scratch / f"client{i}.json").read_text())
        during = [r["ms"] for r in records if t0 <= r["t"] <= t1]
        after = [r["ms"] for r in records if r["t"] > t1]
        seconds = t1 - t0
        # Steady state: from the first committed photos to the last (workers' start-up
        # -- imports, model load, index sync -- excluded).
        first = next((p for p in progress if p["photos"] > 0), None)
        last = next((p for p in progress if p["photos"] >= len(paths)), progress[-1])
        steady = (
            (last["photos"] - first["photos"]) / (last["t"] - first["t"])
            if first is not None and last["t"] > first["t"]
            else float("nan")
        )
        result.update(
            worker_exit_codes=codes,
            ingest_seconds=round(seconds, 1),
            photos_per_s=round(len(paths) / seconds, 2),
            ratio_to_baseline=round(len(paths) / seconds / base["photos_per_s"], 2),
            steady_photos_per_s=round(steady, 2),
            steady_ratio_to_baseline=round(steady / base["photos_per_s"], 2),
            search_during={
                "n": len(during),
                "p50_ms": round(percentile(during, 50), 1),
                "p95_ms": round(percentile(during, 95), 1),
                "mean_ms": round(statistics.fmean(during), 1) if during else None,
                "with_hits": sum(1 for r in records if t0 <= r["t"] <= t1 and r["hits"]),
            },
            search_after={
                "n": len(after),
                "p50_ms": round(percentile(after, 50), 1),
                "p95_ms": round(percentile(after, 95), 1),
            },
            progress=progress,
        )
        worker_reports = []
        for i in range(args.workers):
            lines = (scratch / f"worker{i}.log").read_text(errors="replace")
            try:  # the worker's --json document ends its output
                worker_reports.append(json.loads(lines[lines.rfind("\n{") + 1 :]))
            except ValueError:
                worker_reports.append({"log_tail": lines[-1500:]})
        result["worker_reports"] = worker_reports

        # ---- the checks: nothing lost, nothing twice, catalog == index ----------
        with Workbench(WorkbenchSettings()) as wb:
            st = wb.stats()
            pack = wb.pack.name
            with wb.catalog.session() as s:
                uris = [u for (u,) in s.execute(select(Photo.uri))]
                statuses = dict(
                    s.execute(
                        select(Photo.status, func.count(Photo.id)).group_by(Photo.status)
                    ).all()
                )
                verdicts = (
                    s.execute(
                        select(func.count()).select_from(Analysis).group_by(Analysis.photo_id)
                    )
                    .scalars()
                    .all()
                )
            in_catalog = wb.catalog.face_ids(pack)
            in_index = wb.index.ids(wb.collection, pack)
        expected = {str(p) for p in paths}
        result["checks"] = {
            "catalog_photos": len(uris),
            "distinct_photos": len(set(uris)),
            "lost": len(expected - set(uris)),
            "duplicates": len(uris) - len(set(uris)),
            "photos_analysed_twice": sum(1 for n in verdicts if n != 1),
            "statuses": statuses,
            "catalog_faces": st.faces,
            "index_vectors": sum(p.index_vectors for p in st.packs),
            "index_ids_equal_catalog_ids": in_index == in_catalog,
            "queue_empty": queue_state(settings.queue).empty,
        }
        c = result["checks"]
        result["ok"] = (
            c["lost"] == 0
            and c["duplicates"] == 0
            and c["photos_analysed_twice"] == 0
            and c["catalog_faces"] == c["index_vectors"]
            and c["index_ids_equal_catalog_ids"]
            and c["queue_empty"]
            and all(code == 0 for code in codes)
        )
    return result


def print_summary(r: dict[str, Any]) -> None:
    d, a, c = r["search_during"], r["search_after"], r["checks"]
    print()
    print(
        "| photos | workers | clients | ingest s | photos/s (all) | photos/s (steady) "
        "| 1-process baseline | steady × baseline |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {r['photos']:,} | {r['workers']} | {r['clients']} | {r['ingest_seconds']} | "
        f"{r['photos_per_s']} | {r['steady_photos_per_s']} | "
        f"{r['baseline']['photos_per_s']:.1f}/s | {r['steady_ratio_to_baseline']} |"
    )
    print()
    print("| search by sample | n | p50 ms | p95 ms |")
    print("|---|---:|---:|---:|")
    print(f"| during ingest | {d['n']} | {d['p50_ms']} | {d['p95_ms']} |")
    print(f"| after ingest | {a['n']} | {a['p50_ms']} | {a['p95_ms']} |")
    print()
    print(f"checks: {json.dumps(c)}")
    print(f"ok: {r['ok']}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--client":
        client_main(Path(argv[1]), Path(argv[2]), Path(argv[3]), int(argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--baseline", type=int, default=500, help="photos of the 1-process baseline")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--poll", type=float, default=5.0, help="seconds between progress lines")
    ap.add_argument("--client-warmup", type=float, default=15.0)
    ap.add_argument("--after", type=float, default=20.0, help="seconds of searches after ingest")
    ap.add_argument("--scratch", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the result here")
    args = ap.parse_args(argv)
    result = run(args)
    print_summary(result)
    out = args.json or RESULTS / "load_test.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
