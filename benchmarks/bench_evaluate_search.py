"""What a 1:N search evaluation costs (`workbench evaluate search`), next to its floor.

Synthetic archives of ``--faces`` unit vectors (128-d, MobileFaceNet's size): people
with 1–8 faces each, a third of the faces bystanders nobody labelled. The evaluation
(`workbench.evaluation.archive_search.measure_search`: every labelled face with a
partner against every face, at the default and four more thresholds) is timed beside
its floor, the bare query × gallery matrix products, in the same run; medians of
``--repeats``.

    python benchmarks/bench_evaluate_search.py [--faces 11000 30000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, write_json  # noqa: E402


def archive(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    rng = np.random.default_rng(seed)
    vectors, photos, names = [], [], []
    person = 0
    while len(vectors) < n:
        k = int(rng.integers(1, 9))
        centre = rng.normal(size=dim)
        for _ in range(k):
            vectors.append(centre + 0.9 * rng.normal(size=dim))
            photos.append(len(photos))
            names.append(f"p{person}")
            if rng.random() < 0.5:  # a bystander in the same photo
                vectors.append(rng.normal(size=dim))
                photos.append(photos[-1])
                names.append(None)
        person += 1
    x = np.asarray(vectors[:n], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.asarray(photos[:n]), names[:n]


def run(faces: int, repeats: int) -> dict[str, Any]:
    from workbench.evaluation.archive_search import THRESHOLDS, measure_search
    from workbench.faces.calibration import load_calibration

    cal = load_calibration("local:det_500m+mobilefacenet")
    x, photos, names = archive(faces, 128, seed=faces)
    evaluate, floor = [], []
    queries = 0
    for _ in range(repeats):
        t = time.perf_counter()
        queries, *_ = measure_search(x, photos, names, cal, THRESHOLDS, 85.0)
        evaluate.append(time.perf_counter() - t)
        labelled = np.flatnonzero(np.array([n is not None for n in names]))
        t = time.perf_counter()
        for start in range(0, len(labelled), 1024):
            _ = x[labelled[start : start + 1024]] @ x.T
        floor.append(time.perf_counter() - t)
    e, f = median(evaluate), median(floor)
    return {
        "faces": faces,
        "queries": queries,
        "evaluate_s": round(e, 3),
        "matrix_products_s": round(f, 3),
        "ratio": round(e / f, 2) if f else None,
        "ms_per_query": round(1000 * e / max(1, queries), 3),
        "repeats": {"evaluate_s": evaluate, "matrix_products_s": floor},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, nargs="+", default=[11_000, 30_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = [run(n, args.repeats) for n in args.faces]
    for r in rows:
        print(
            f"{r['faces']:>8,} faces, {r['queries']:>7,} queries: evaluation "
            f"{r['evaluate_s']:.2f} s ({r['ms_per_query']:.3f} ms/query), matrix products "
            f"alone {r['matrix_products_s']:.2f} s (×{r['ratio']})"
        )
    path = write_json("evaluate_search", {"machine": machine(), "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
