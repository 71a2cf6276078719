"""What the per-home Milvus Lite server costs a search, against the in-process Lite of before.

A home's Lite file is now served by one `workbench.store.lite_server` process that
every notebook, dashboard and CLI command attaches to (over gRPC on 127.0.0.1),
where each process used to serve the file from a thread of its own (and so locked
everybody else out). Measured in one run, on the same Lite file, each in a fresh
child process, ``--repeats`` times in turn:

* ``in_process``: ``MilvusClient(path)`` in the searching process, as before;
* ``shared_cold``: the first process of the home: it starts the server, then searches;
* ``shared_warm``: a process attaching to a server already running (a notebook or the
  dashboards hold the home).

Each child reports its open + first query time and the latency of ``--queries`` top-10
searches through `VectorIndex.search` (the path `workbench search` takes), without and
with a source filter. Reported: medians over the repeats, and shared / in-process.

    python benchmarks/bench_shared_lite.py [--n 100000] [--dim 128] [--queries 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_json  # noqa: E402
from bench_search import FILTER_SOURCE, layout, make_vectors  # noqa: E402

COLLECTION = "bench_shared"

CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[4])
from bench_search import FILTER_SOURCE, lat, time_queries
from workbench.settings import StorageSettings
from workbench.store.vectors import VectorIndex

uri, mode, queries_file = sys.argv[1], sys.argv[2], sys.argv[3]
queries = np.load(queries_file)
storage = StorageSettings(lite_idle_s=600)
t = time.perf_counter()
if mode == "in_process":
    from pymilvus import MilvusClient
    index = VectorIndex(uri, storage, client=MilvusClient(uri))  # the Lite file in this process
else:
    index = VectorIndex(uri, storage)  # attaches to (or starts) the home's server
index.search("COLLECTION", queries[:1], 10)
opened = time.perf_counter() - t

def top10(source):
    return lambda q: index.search("COLLECTION", q[None, :], 10, source=source)[0]

times, hits = time_queries(top10(None), queries, warmup=3)
f_times, _ = time_queries(top10(FILTER_SOURCE), queries, warmup=3)
index.close()
print(json.dumps({
    "open_first_query_s": opened,
    "all": lat(times),
    "filtered": lat(f_times),
    "top1": [h[0].face_id for h in hits[:20]],
}))
""".replace("COLLECTION", COLLECTION)


def build(uri: str, n: int, dim: int, queries: int, seed: int) -> np.ndarray:
    """The Lite file with ``n`` vectors (HNSW, flushed, its server stopped); the queries."""
    from workbench.settings import StorageSettings
    from workbench.store import lite_server
    from workbench.store.vectors import VectorIndex

    vectors, _ident, q, _q_ident = make_vectors(n, dim, max(1, n // 10), 0.6, queries, seed)
    face_ids, photo_ids, sources = layout(n, 10)
    index = VectorIndex(uri, StorageSettings(lite_idle_s=0))
    index.ensure_collection(COLLECTION, dim)
    for i in range(0, n, 5000):
        j = min(n, i + 5000)
        index.upsert(
            COLLECTION,
            face_ids[i:j].tolist(),
            photo_ids[i:j].tolist(),
            sources[i:j],
            vectors[i:j],
            "bench",
        )
    index.flush(COLLECTION)
    index.close()
    lite_server.stop(Path(uri))  # the file at rest, as a process that has exited leaves it
    return q


def child(uri: str, mode: str, queries: Path) -> dict[str, Any]:
    here = str(Path(__file__).resolve().parent)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, uri, mode, str(queries), here],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from workbench.store import lite_server

    with tempfile.TemporaryDirectory() as tmp:
        uri = str(Path(tmp) / "vectors.db")
        t = time.perf_counter()
        queries = build(uri, args.n, args.dim, args.queries, args.seed)
        print(f"{args.n:,} × {args.dim}-d vectors written in {time.perf_counter() - t:.0f} s")
        qfile = Path(tmp) / "queries.npy"
        np.save(qfile, queries)
        runs: dict[str, list[dict[str, Any]]] = {
            "in_process": [],
            "shared_cold": [],
            "shared_warm": [],
        }
        for r in range(args.repeats):
            runs["in_process"].append(child(uri, "in_process", qfile))
            runs["shared_cold"].append(child(uri, "shared_cold", qfile))  # starts the server
            runs["shared_warm"].append(child(uri, "shared_warm", qfile))  # finds it running
            lite_server.stop(Path(uri))
            print(f"repeat {r + 1}/{args.repeats} done", flush=True)

    tops = {mode: [run["top1"] for run in rs] for mode, rs in runs.items()}
    same_answers = len({json.dumps(t) for ts in tops.values() for t in ts}) == 1

    def median(mode: str, *keys: str) -> float:
        values = []
        for run in runs[mode]:
            v: Any = run
            for k in keys:
                v = v[k]
            values.append(v)
        return statistics.median(values)

    summary: dict[str, Any] = {}
    for mode in runs:
        summary[mode] = {
            "open_first_query_s": round(median(mode, "open_first_query_s"), 3),
            "p50_ms": round(median(mode, "all", "p50_ms"), 2),
            "p95_ms": round(median(mode, "all", "p95_ms"), 2),
            "filtered_p50_ms": round(median(mode, "filtered", "p50_ms"), 2),
            "filtered_p95_ms": round(median(mode, "filtered", "p95_ms"), 2),
        }
    base = summary["in_process"]
    ratios = {
        mode: {k: round(v / base[k], 2) for k, v in s.items() if base[k]}
        for mode, s in summary.items()
        if mode != "in_process"
    }
    payload = {
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "repeats": args.repeats,
        "filter": FILTER_SOURCE,
        "summary": summary,
        "ratio_to_in_process": ratios,
        "same_answers": same_answers,
        "runs": {
            mode: [{k: v for k, v in run.items() if k != "top1"} for run in rs]
            for mode, rs in runs.items()
        },
        "machine": machine(),
    }
    path = write_json("shared_lite", payload, args.out)
    print(f"top-10 search over {args.n:,} × {args.dim}-d, medians of {args.repeats}:")
    for mode, s in summary.items():
        ratio = ratios.get(mode, {})
        print(
            f"  {mode:<12} open+first {s['open_first_query_s']:>6.2f} s"
            f"   p50 {s['p50_ms']:>6.1f} ms"
            f"  p95 {s['p95_ms']:>6.1f} ms   filtered p50 {s['filtered_p50_ms']:>6.1f} ms"
            + (f"   (p50 ×{ratio.get('p50_ms', float('nan'))})" if ratio else "")
        )
    print(f"  same answers in every mode: {same_answers}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
