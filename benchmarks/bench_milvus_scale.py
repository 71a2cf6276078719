"""The Milvus server at 1M stored 512-d face vectors: HNSW and IVF_PQ vs exact search and Lite.

    python benchmarks/bench_milvus_scale.py --n 100000 --data-dir /tmp/mscale/n100k
    python benchmarks/bench_milvus_scale.py --phase build  --data-dir /tmp/mscale/n1m
    python benchmarks/bench_milvus_scale.py --phase search --data-dir /tmp/mscale/n1m

Data (deterministic from ``--seed``, generated in 50k-row chunks, never held
whole except for the numpy reference): ``--identities`` (default N/20) random
unit centres; each face = normalise(centre + noise), noise norm drawn per face
uniformly in [0.5, 1.0], so two faces of one person have cosine ≈ 0.5–0.8
(ArcFace-like) and strangers ≈ 0 ± 0.044. Queries: ``--queries`` new samples
of random existing identities (a new photo of a known person).

``build`` (resumable: state in ``<data-dir>/state.json``; the server's data,
the Lite file and the ground truth live in ``--data-dir``):

* starts a local Milvus 2.3 standalone server (PyPI ``milvus``) under
  ``nice -n 5``, on ``--port`` (+ its own etcd, metrics and component ports);
* ``VectorIndex.ensure_collection`` / ``upsert`` / ``flush`` (the workbench's
  own index code) into collection ``scale_hnsw`` with the default
  `StorageSettings` (HNSW, M and efConstruction from the settings, cosine),
  then waits until every row is indexed (``describe_index``: indexed_rows);
  the server builds segment indexes while rows still arrive, so the build is
  reported as insert s, flush s, index tail after the flush, and total
  seconds (and vectors/s) from the first insert to all rows indexed;
* the same for ``scale_ivfpq`` (IVF_PQ with the workbench's parameters);
* the same data into a Milvus Lite file (the default storage) with the default
  settings; closing it (flush + HNSW build) is timed.

``search``: starts the server (not niced), computes the exact top-10 of every
query by chunked numpy matmul (the recall reference, in this run), times
``--numpy-queries`` single-query numpy brute-force searches over the full
matrix, then for each collection (one loaded at a time: the server's RSS
before and after ``load`` is its memory) times ``--queries`` single-vector
top-10 searches through ``VectorIndex.search`` after ``--warmup`` ones: HNSW at
each ``--ef``, IVF_PQ at each ``--nprobe``. Then Lite: open + first query,
``--lite-queries`` timed queries. Latencies p50/p95/p99 in ms, QPS of one
sequential client, recall@10 against exact; the load average before and after
each series.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    load_average,
    machine,
    now_iso,
    percentile,
    quiet_logs,
    release_milvus_lite,
    write_json,
)
from bench_search import time_queries  # noqa: E402

CHUNK = 50_000
HNSW = "scale_hnsw"
IVFPQ = "scale_ivfpq"
PACK = "bench"
P95_GOAL_MS = 10.0
RECALL_GOAL = 0.99
BUILD_LIMIT_S = 1800.0


# ---- data -------------------------------------------------------------------
def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32, copy=False)


class Faces:
    """Deterministic synthetic faces with identity structure, generated chunk by chunk."""

    def __init__(self, n: int, dim: int, identities: int, seed: int) -> None:
        self.n, self.dim, self.identities, self.seed = n, dim, identities, seed
        rng = np.random.default_rng([seed, 0])
        self.centres = normalise(rng.standard_normal((identities, dim), dtype=np.float32))
        ident = np.arange(n, dtype=np.int64) % identities
        np.random.default_rng([seed, 1]).shuffle(ident)
        self.ident = ident

    def _noisy(self, rng: np.random.Generator, ident: np.ndarray) -> np.ndarray:
        scale = rng.uniform(0.5, 1.0, (len(ident), 1)).astype(np.float32) / np.sqrt(self.dim)
        eps = rng.standard_normal((len(ident), self.dim), dtype=np.float32)
        return normalise(self.centres[ident] + eps * scale)

    def chunk(self, k: int) -> tuple[int, np.ndarray]:
        """(first row, vectors) of chunk ``k`` (rows k*CHUNK ...)."""
        i = k * CHUNK
        j = min(self.n, i + CHUNK)
        return i, self._noisy(np.random.default_rng([self.seed, 2, k]), self.ident[i:j])

    def chunks(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        for k in range(start // CHUNK, (self.n + CHUNK - 1) // CHUNK):
            yield self.chunk(k)

    def queries(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 3])
        q_ident = rng.integers(0, self.identities, m)
        return self._noisy(rng, q_ident), q_ident


def exact_topk(faces: Faces, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Exact top-k row indices (and scores) of every query, by chunked matmul; seconds."""
    t = time.perf_counter()
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for i, x in faces.chunks():
        s = queries @ x.T  # (m, chunk)
        top = np.argpartition(-s, k, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], axis=1)
        cand_i = np.concatenate([best_i, top + i], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, order, 1)
        best_i = np.take_along_axis(cand_i, order, 1)
    return best_i, best_s, time.perf_counter() - t


# ---- the server -------------------------------------------------------------
class Server:
    """The workbench's `MilvusServer` on fixed ports (proxy ``port``, the rest ``port``+1..+10,
    metrics ``port`` - 10409), with the RSS and niceness of its process."""

    def __init__(self, data_dir: Path, port: int, nice: int = 0) -> None:
        from workbench.store.milvus_server import DEFAULT_PORTS, MilvusServer

        roles = [r for r in DEFAULT_PORTS if r != "metrics"]
        ports = {r: port + 1 + i for i, r in enumerate(roles)}
        ports["metrics"] = port - 10409  # 19600 -> 9191
        self.server = MilvusServer(data_dir, port=port, ports=ports)
        self.nice = nice
        self.metrics_port = ports["metrics"]

    @property
    def uri(self) -> str:
        return self.server.uri

    def start(self, timeout: float = 300.0) -> str:
        uri = self.server.start(timeout)
        self.renice(self.nice)
        return uri

    def pid(self) -> int | None:
        return self.server.pid()

    def rss_mb(self) -> float:
        import psutil

        pid = self.pid()
        return psutil.Process(pid).memory_info().rss / 2**20 if pid else float("nan")

    def renice(self, value: int) -> None:
        """Set the nice value of every thread of the server (new threads inherit it)."""
        pid = self.pid()
        if not pid:
            return
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, int(task.name), value)
        self.nice = value

    def stop(self) -> None:
        self.server.stop(timeout=120)


def index_progress(client: Any, name: str) -> dict[str, Any]:
    info = client.describe_index(name, "vector") or {}
    return {k: info.get(k) for k in ("index_type", "total_rows", "indexed_rows", "state", "params")}


def segments(client: Any, name: str) -> list[dict[str, Any]]:
    """The loaded segments of a collection (id, rows, index) via pymilvus' connection."""
    try:
        infos = client._get_connection().get_query_segment_info(name)  # noqa: SLF001
    except Exception:  # noqa: BLE001 - informational only
        return []
    return [
        {"id": int(s.segmentID), "rows": int(s.num_rows), "index": str(s.index_name)} for s in infos
    ]


def index_files_mb(data_dir: Path, segment_ids: set[int]) -> float:
    """Bytes of the index files of these segments (index_files/<build>/<ver>/<part>/<seg>/)."""
    total = 0
    for root in data_dir.rglob("index_files"):
        for f in root.rglob("*"):
            if f.is_file() and len(f.relative_to(root).parts) >= 5:
                seg = f.relative_to(root).parts[3]
                if seg.isdigit() and int(seg) in segment_ids:
                    total += f.stat().st_size
    return total / 2**20


# ---- timing -----------------------------------------------------------------
def summary(times: list[float], got: list[list[int]], exact: np.ndarray, k: int) -> dict[str, Any]:
    recall = float(
        np.mean(
            [len(set(g[:k]) & set(e[:k].tolist())) / k for g, e in zip(got, exact, strict=False)]
        )
    )
    return {
        "queries": len(times),
        "p50_ms": percentile(times, 50) * 1000,
        "p95_ms": percentile(times, 95) * 1000,
        "p99_ms": percentile(times, 99) * 1000,
        "mean_ms": float(np.mean(times)) * 1000,
        "qps": len(times) / float(np.sum(times)),
        "recall_at_10": recall,
    }


# ---- state ------------------------------------------------------------------
class State:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def __getitem__(self, key: str) -> Any:
        return self.data.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        # re-read first: a Lite build may run in a second process on the same data dir
        if self.path.exists():
            self.data = json.loads(self.path.read_text())
        self.data[key] = value
        self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")


def storage_for(index_type: str = "HNSW", **kw: Any) -> Any:
    from workbench.settings import StorageSettings

    return StorageSettings(index_type=index_type, metric="cosine", **kw)


# ---- build ------------------------------------------------------------------
def build_server_collection(
    args: argparse.Namespace,
    faces: Faces,
    server: Server,
    state: State,
    name: str,
    index_type: str,
) -> dict[str, Any]:
    from workbench.store.vectors import VectorIndex

    key = f"build_{name}"
    done = state[key] or {}
    if done.get("complete"):
        print(f"{name}: built earlier ({done.get('total_s', 0):.0f} s), skipped", flush=True)
        return done
    storage = storage_for(index_type)
    index = VectorIndex(server.uri, storage)
    index.ensure_collection(name, args.dim, index_type=index_type)
    spec = index_progress(index.client, name)
    print(f"{name}: {spec['index_type']} {spec['params']}", flush=True)
    start_row = int(done.get("inserted", 0))
    insert_s = float(done.get("insert_s", 0.0))
    t0 = time.perf_counter() - insert_s
    if start_row < faces.n:
        print(f"{name}: inserting rows {start_row:,}..{faces.n:,}", flush=True)
    for i, x in faces.chunks(start_row):
        for b in range(0, len(x), args.batch):
            if i + b < start_row:
                continue
            rows = x[b : b + args.batch]
            ids = np.arange(i + b + 1, i + b + 1 + len(rows))
            index.upsert(
                name, ids.tolist(), ((ids - 1) // 3 + 1).tolist(), ["src0"] * len(rows), rows, PACK
            )
        inserted = i + len(x)
        insert_s = time.perf_counter() - t0
        done.update(inserted=inserted, insert_s=insert_s)
        state[key] = done
        if (inserted // CHUNK) % 4 == 0 or inserted == faces.n:
            p = index_progress(index.client, name)
            print(
                f"  {inserted:>9,} rows, {insert_s:6.0f} s ({inserted / insert_s:,.0f}/s);"
                f" indexed {p['indexed_rows']}; load {load_average()}",
                flush=True,
            )
    if "flush_s" not in done:
        t = time.perf_counter()
        index.flush(name)
        done["flush_s"] = time.perf_counter() - t
        done["flushed_at"] = time.time()
        state[key] = done
    # Wall time since the flush (epoch: a resumed build keeps counting while the server,
    # which runs detached, went on building without us).
    timeline = []
    limit = args.build_limit - done["insert_s"] - done["flush_s"]
    while True:
        p = index_progress(index.client, name)
        waited = time.time() - done["flushed_at"]
        timeline.append((round(waited, 1), p["indexed_rows"], p["total_rows"]))
        total, indexed = p["total_rows"] or 0, p["indexed_rows"] or 0
        if total >= faces.n and indexed >= total:
            break
        if waited > limit and "at_build_limit" not in done:
            done["at_build_limit"] = {"indexed_rows": indexed, "since_flush_s": waited}
            state[key] = done
            print(f"{name}: {indexed:,} rows indexed at the build limit; waiting on", flush=True)
        if waited > args.wait_limit:
            print(f"{name}: index not finished within --wait-limit", flush=True)
            break
        if len(timeline) % 6 == 1:
            print(
                f"  index {indexed:,}/{total:,} after {waited:.0f} s; load {load_average()}",
                flush=True,
            )
            done["progress"] = [*done.get("progress", []), (round(waited), indexed)]
            state[key] = done
        time.sleep(10)
    done["tail_s"] = waited
    done["total_s"] = done["insert_s"] + done["flush_s"] + waited
    done["indexed_rows"] = indexed
    done["total_rows"] = total
    done["vectors_per_s"] = indexed / done["total_s"]
    done["insert_rate"] = faces.n / done["insert_s"]
    done["complete"] = indexed >= faces.n
    done["index"] = {"type": p["index_type"], "params": p["params"]}
    done["load_average_end"] = load_average()
    done["timeline_tail"] = timeline[-20:]
    state[key] = done
    print(
        f"{name}: insert {done['insert_s']:.0f} s ({done['insert_rate']:,.0f}/s), flush"
        f" {done['flush_s']:.1f} s, index tail {waited:.0f} s; all {indexed:,} indexed after"
        f" {done['total_s']:.0f} s ({done['vectors_per_s']:,.0f} vectors/s)",
        flush=True,
    )
    index.client.release_collection(name)
    index.close()
    return done


def build_lite(args: argparse.Namespace, faces: Faces, state: State) -> dict[str, Any]:
    from workbench.store.vectors import VectorIndex

    done = state["build_lite"] or {}
    if done.get("complete"):
        print("lite: built earlier, skipped", flush=True)
        return done
    uri = str(args.data_dir / "lite.db")
    if Path(uri).exists():
        import shutil

        shutil.rmtree(uri, ignore_errors=True)  # a half-written Lite file: start over
    storage = storage_for("HNSW")
    index = VectorIndex(uri, storage)
    index.ensure_collection(HNSW, args.dim)
    t = time.perf_counter()
    for i, x in faces.chunks():
        for b in range(0, len(x), args.batch):
            rows = x[b : b + args.batch]
            ids = np.arange(i + b + 1, i + b + 1 + len(rows))
            index.upsert(
                HNSW, ids.tolist(), ((ids - 1) // 3 + 1).tolist(), ["src0"] * len(rows), rows, PACK
            )
        if ((i + len(x)) // CHUNK) % 4 == 0:
            el = time.perf_counter() - t
            print(f"  lite {i + len(x):>9,} rows, {el:6.0f} s; load {load_average()}", flush=True)
    done["insert_s"] = time.perf_counter() - t
    t = time.perf_counter()
    index.flush(HNSW)
    done["flush_s"] = time.perf_counter() - t
    t = time.perf_counter()
    index.close()
    release_milvus_lite(uri)
    done["close_build_s"] = time.perf_counter() - t
    done["total_s"] = done["insert_s"] + done["flush_s"] + done["close_build_s"]
    done["files_mb"] = sum(f.stat().st_size for f in Path(uri).rglob("*") if f.is_file()) / 2**20
    done["complete"] = True
    done["load_average_end"] = load_average()
    state["build_lite"] = done
    print(
        f"lite: insert {done['insert_s']:.0f} s, flush {done['flush_s']:.0f} s, close (HNSW build)"
        f" {done['close_build_s']:.0f} s; {done['files_mb']:.0f} MB on disk",
        flush=True,
    )
    return done


def phase_build(args: argparse.Namespace, faces: Faces, state: State) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not {"hnsw", "ivfpq"} & set(args.steps):
        if "lite" in args.steps and not args.no_lite:
            out["lite"] = build_lite(args, faces, state)
        return out
    server = Server(args.data_dir / "server", args.port, nice=args.nice)
    t = time.perf_counter()
    server.start()
    out["server_start_s"] = time.perf_counter() - t
    print(
        f"server {server.uri} (pid {server.pid()}, nice {args.nice})"
        f" up in {out['server_start_s']:.0f} s",
        flush=True,
    )
    try:
        if "hnsw" in args.steps:
            out[HNSW] = build_server_collection(args, faces, server, state, HNSW, "HNSW")
        if "ivfpq" in args.steps and not args.no_ivfpq:
            out[IVFPQ] = build_server_collection(args, faces, server, state, IVFPQ, "IVF_PQ")
    finally:
        server.stop()
    if "lite" in args.steps and not args.no_lite:
        out["lite"] = build_lite(args, faces, state)
    return out


# ---- search -----------------------------------------------------------------
def search_series(
    index: Any, name: str, queries: np.ndarray, exact: np.ndarray, k: int, warmup: int
) -> dict[str, Any]:
    la0 = load_average()
    times, got = time_queries(
        lambda q: [h.face_id - 1 for h in index.search(name, q[None, :], k)[0]], queries, warmup
    )
    res = summary(times, got, exact, k)
    res["load_average"] = [la0, load_average()]
    return res


def phase_search(args: argparse.Namespace, faces: Faces, state: State) -> dict[str, Any]:
    from workbench.store.vectors import VectorIndex

    out: dict[str, Any] = {}
    k = args.top_k
    queries, _ = faces.queries(args.queries)
    exact, exact_s, out["exact_batch_s"] = exact_topk(faces, queries, k)
    np.save(args.data_dir / "exact_top10.npy", exact)
    out["exact_batch_queries_per_s"] = len(queries) / out["exact_batch_s"]
    print(
        f"exact top-{k} of {len(queries)} queries by chunked matmul: {out['exact_batch_s']:.1f} s;"
        f" mean top-1 cosine {exact_s[:, 0].mean():.3f}, 10th {exact_s[:, -1].mean():.3f}",
        flush=True,
    )
    # numpy single-query brute force over the whole matrix (the exact-search baseline)
    if args.numpy_queries:
        matrix = np.empty((faces.n, faces.dim), dtype=np.float32)
        for i, x in faces.chunks():
            matrix[i : i + len(x)] = x

        def np_search(q: np.ndarray) -> list[int]:
            s = matrix @ q
            top = np.argpartition(-s, k)[:k]
            return top[np.argsort(-s[top])].tolist()

        nq = args.numpy_queries
        la0 = load_average()
        times, got = time_queries(np_search, queries[:nq], warmup=3)
        out["numpy"] = summary(times, got, exact[:nq], k)
        out["numpy"]["load_average"] = [la0, load_average()]
        del matrix
        print(f"numpy brute force ({nq} queries): p50 {out['numpy']['p50_ms']:.1f} ms", flush=True)

    server = Server(args.data_dir / "server", args.port, nice=0)
    t = time.perf_counter()
    server.start()
    out["server_start_s"] = time.perf_counter() - t
    out["server_pid"] = server.pid()
    out["metrics_port"] = server.metrics_port
    try:
        client_ix = VectorIndex(server.uri, storage_for("HNSW"))
        c = client_ix.client
        names = [HNSW] + ([] if args.no_ivfpq else [IVFPQ])
        for name in names:
            if c.has_collection(name):
                c.release_collection(name)
        time.sleep(3)
        out["rss_idle_mb"] = server.rss_mb()
        for name in names:
            if not c.has_collection(name):
                print(f"{name}: missing (run --phase build)", flush=True)
                continue
            res: dict[str, Any] = {"rss_before_load_mb": server.rss_mb()}
            t = time.perf_counter()
            for attempt in range(6):
                try:
                    c.load_collection(name)
                    break
                except Exception as e:  # noqa: BLE001
                    # a server restarted soon after a stop or kill still lists the old query
                    # node's session in etcd until it expires (~40-60 s): wait and retry
                    if attempt == 5:
                        raise
                    print(f"{name}: load failed ({str(e)[:80]}…); retrying in 30 s", flush=True)
                    time.sleep(30)
            res["load_s"] = time.perf_counter() - t
            time.sleep(3)
            res["rss_after_load_mb"] = server.rss_mb()
            res["rss_delta_mb"] = res["rss_after_load_mb"] - res["rss_before_load_mb"]
            segs = segments(c, name)
            res["segments"] = len(segs)
            res["rows"] = sum(s["rows"] for s in segs)
            res["index_files_mb"] = index_files_mb(
                args.data_dir / "server", {s["id"] for s in segs}
            )
            res["index"] = index_progress(c, name)
            print(
                f"{name}: load {res['load_s']:.1f} s, server RSS {res['rss_before_load_mb']:,.0f}"
                f" → {res['rss_after_load_mb']:,.0f} MB; {len(segs)} segments, {res['rows']:,}"
                f" rows; index files {res['index_files_mb']:,.0f} MB",
                flush=True,
            )
            series = {}
            if name == HNSW:
                for ef in args.ef:
                    st = storage_for("HNSW", hnsw_ef=ef, milvus_consistency=args.consistency)
                    ix = VectorIndex(server.uri, st)
                    label = f"ef={ef}, {args.consistency}"
                    series[label] = r = search_series(ix, name, queries, exact, k, args.warmup)
                    r.update(ef=ef, consistency=args.consistency)
                    ix.close()
                    say(f"{name} {label}", r)
                if args.strong_queries:
                    ix = VectorIndex(server.uri, storage_for("HNSW"))  # the shipped defaults
                    st = ix.storage
                    label = f"ef={st.hnsw_ef}, {st.milvus_consistency} (defaults)"
                    nq = args.strong_queries
                    series[label] = r = search_series(
                        ix, name, queries[:nq], exact[:nq], k, args.warmup
                    )
                    r.update(ef=st.hnsw_ef, consistency=st.milvus_consistency)
                    ix.close()
                    say(f"{name} {label}", r)
            else:
                for nprobe in args.nprobe:
                    st = storage_for(
                        "IVF_PQ", ivf_nprobe=nprobe, milvus_consistency=args.consistency
                    )
                    ix = VectorIndex(server.uri, st)
                    label = f"nprobe={nprobe}, {args.consistency}"
                    series[label] = r = search_series(ix, name, queries, exact, k, args.warmup)
                    r.update(nprobe=nprobe, consistency=args.consistency)
                    ix.close()
                    say(f"{name} {label}", r)
            res["series"] = series
            res["rss_after_search_mb"] = server.rss_mb()
            c.release_collection(name)
            time.sleep(3)
            res["rss_after_release_mb"] = server.rss_mb()
            out[name] = res
        client_ix.close()
    finally:
        server.stop()

    # ---- Milvus Lite (the default storage) on the same data
    lite_uri = args.data_dir / "lite.db"
    if not args.no_lite and lite_uri.exists():
        import psutil

        rss0 = psutil.Process().memory_info().rss / 2**20
        lite = VectorIndex(str(lite_uri), storage_for("HNSW"))
        t = time.perf_counter()
        lite.search(HNSW, queries[:1], k)
        res = {"open_first_query_s": time.perf_counter() - t}
        res["process_rss_delta_mb"] = psutil.Process().memory_info().rss / 2**20 - rss0
        nl = args.lite_queries
        res.update(search_series(lite, HNSW, queries[:nl], exact[:nl], k, warmup=2))
        lite.close()
        release_milvus_lite(str(lite_uri))
        out["lite"] = res
        say("lite (default HNSW ef)", res)
    return out


def say(label: str, r: dict[str, Any]) -> None:
    print(
        f"  {label}: p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms,"
        f" {r['qps']:.0f} QPS, recall@10 {r['recall_at_10']:.4f}"
        f" ({r['queries']} queries; load {r['load_average'][0]} → {r['load_average'][1]})",
        flush=True,
    )


# ---- report -----------------------------------------------------------------
def table(result: dict[str, Any]) -> str:
    s = result.get("search", {})
    n = result["n"]
    lines = [
        f"N = {n:,} × {result['dim']}-d, {result['identities']:,} identities,"
        f" {result['queries']} queries, top {result['top_k']}",
        "",
        "| engine | setting | queries | p50 ms | p95 ms | p99 ms | QPS | recall@10 | load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]

    def row(engine: str, setting: str, r: dict[str, Any]) -> None:
        la = r.get("load_average") or [None, None]
        lines.append(
            f"| {engine} | {setting} | {r['queries']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} |"
            f" {r['p99_ms']:.2f} | {r['qps']:.0f} | {r['recall_at_10']:.4f} |"
            f" {la[0][0] if la[0] else '-'} → {la[1][0] if la[1] else '-'} |"
        )

    if "numpy" in s:
        row("numpy brute force (exact)", "matrix @ q", s["numpy"])
    for name, label in ((HNSW, "server HNSW"), (IVFPQ, "server IVF_PQ")):
        for setting, r in (s.get(name, {}).get("series") or {}).items():
            row(label, setting, r)
    if "lite" in s:
        row("Milvus Lite HNSW", "default", s["lite"])
    if "lite" in s:
        lite = s["lite"]
        lines.append("")
        for setting, r in (s.get(HNSW, {}).get("series") or {}).items():
            if r.get("ef") == result["default_ef"]:
                lines.append(
                    f"server HNSW ({setting}) / Lite: p50 {r['p50_ms'] / lite['p50_ms']:.4f}×,"
                    f" p95 {r['p95_ms'] / lite['p95_ms']:.4f}×"
                    f" (Lite {lite['p50_ms'] / r['p50_ms']:.0f}× slower at p50)"
                )
    mem = [
        "",
        "| collection | load s | segments | server RSS before → after load MB | Δ MB"
        " | index files MB |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name in (HNSW, IVFPQ):
        m = s.get(name)
        if m:
            mem.append(
                f"| {name} | {m['load_s']:.1f} | {m['segments']} |"
                f" {m['rss_before_load_mb']:,.0f} → {m['rss_after_load_mb']:,.0f} |"
                f" {m['rss_delta_mb']:,.0f} | {m['index_files_mb']:,.0f} |"
            )
    if len(mem) > 3:
        lines += mem
    b = result.get("build", {})
    bl = [
        "",
        "| build | insert s | insert vectors/s | flush s | index tail s | total s"
        " | indexed / total rows | vectors/s (to indexed) |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name in (HNSW, IVFPQ):
        d = b.get(name)
        if d and "total_s" in d:
            bl.append(
                f"| {name} | {d['insert_s']:.0f} | {d['insert_rate']:,.0f} | {d['flush_s']:.1f} |"
                f" {d['tail_s']:.0f} | {d['total_s']:.0f} |"
                f" {d['indexed_rows']:,} / {d['total_rows']:,} |"
                f" {d['vectors_per_s']:,.0f} |"
            )
    d = b.get("lite")
    if d and "total_s" in d:
        bl.append(
            f"| lite (close = flush + HNSW build) | {d['insert_s']:.0f} |"
            f" {n / d['insert_s']:,.0f} | {d['flush_s']:.1f} | {d['close_build_s']:.0f} |"
            f" {d['total_s']:.0f} | {n:,} | {n / d['total_s']:,.0f} |"
        )
    if len(bl) > 3:
        lines += bl
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--phase", choices=("build", "search", "all"), default="all")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--identities", type=int, default=None, help="default N/20")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--numpy-queries", type=int, default=100)
    ap.add_argument("--lite-queries", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 128])
    ap.add_argument("--batch", type=int, default=5000, help="rows per upsert")
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--port", type=int, default=19600, help="proxy port; +1..+10 for the rest")
    ap.add_argument("--nice", type=int, default=5, help="server niceness during the build")
    ap.add_argument(
        "--build-limit",
        type=float,
        default=BUILD_LIMIT_S,
        help="seconds from the first insert: rows indexed by then are recorded",
    )
    ap.add_argument(
        "--wait-limit", type=float, default=5400, help="seconds after the flush to stop waiting"
    )
    ap.add_argument(
        "--steps",
        nargs="+",
        choices=("hnsw", "ivfpq", "lite"),
        default=["hnsw", "ivfpq", "lite"],
        help="build steps (the Lite build can run in a second process meanwhile)",
    )
    ap.add_argument(
        "--consistency",
        default="Bounded",
        choices=("Strong", "Session", "Bounded", "Eventually"),
        help="consistency of the ef / nprobe sweeps (the settings' default is Strong)",
    )
    ap.add_argument(
        "--strong-queries",
        type=int,
        default=200,
        help="queries with the shipped defaults (ef 128, Strong consistency); 0 skips",
    )
    ap.add_argument("--no-ivfpq", action="store_true")
    ap.add_argument("--no-lite", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.data_dir = args.data_dir.resolve()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    identities = args.identities or max(1, args.n // 20)
    quiet_logs()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    state = State(args.data_dir / "state.json")
    setup = {"n": args.n, "dim": args.dim, "identities": identities, "seed": args.seed}
    if state["setup"] and state["setup"] != setup:
        sys.exit(f"{args.data_dir} holds another data set: {state['setup']} (asked {setup})")
    state["setup"] = setup
    faces = Faces(args.n, args.dim, identities, args.seed)
    rng = np.random.default_rng([args.seed, 4])
    who = rng.integers(0, identities, 500)
    a, b = faces._noisy(rng, who), faces._noisy(rng, who)  # two new faces of 500 people
    same_cos = float(np.mean(np.sum(a * b, axis=1)))
    cross = a @ b.T
    strangers = float(np.std(cross[who[:, None] != who[None, :]]))
    print(
        f"{args.n:,} × {args.dim}-d, {identities:,} identities; same-identity cosine"
        f" ≈ {same_cos:.2f}, strangers 0 ± {strangers:.3f}; load {load_average()}",
        flush=True,
    )
    from workbench.settings import StorageSettings

    defaults = StorageSettings()
    result: dict[str, Any] = {
        "benchmark": "milvus_scale",
        "when": now_iso(),
        "machine": machine(),
        **setup,
        "queries": args.queries,
        "top_k": args.top_k,
        "same_identity_cosine": same_cos,
        "stranger_cosine_sd": strangers,
        "default_ef": defaults.hnsw_ef,
        "hnsw_m": defaults.hnsw_m,
        "hnsw_ef_construction": defaults.hnsw_ef_construction,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    if args.phase in ("build", "all"):
        result["build"] = phase_build(args, faces, state)
    else:
        result["build"] = {
            k[len("build_") :]: v for k, v in state.data.items() if k.startswith("build_")
        }
    if args.phase in ("search", "all"):
        result["search"] = phase_search(args, faces, state)
    result["load_average_end"] = load_average()
    print()
    print(table(result))
    path = write_json(f"milvus-scale-{args.n // 1000}k-{args.phase}", result, args.json)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
