"""Two ingests at once on a 2-core machine: does onnxruntime thrash?

Runs the `local` pack ingest of the faces-dev photos in one process alone,
then in two processes at the same time (separate homes), once with the
workbench's session options (passive waits: no spinning) and once with
onnxruntime's default spinning threads, and prints wall times. Medians over
``--repeats``.

    python benchmarks/bench_two_processes.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WORKBENCH_SHARED", REPO.parent / "shared"))

CHILD = r"""
import sys
from pathlib import Path
import workbench.faces.backends.onnx as op
if sys.argv[2] == "spin":
    original = op.onnx_session_options
    def spinning(threads):
        so = original(threads)
        so.add_session_config_entry("session.intra_op.allow_spinning", "1")
        return so
    op.onnx_session_options = spinning
from workbench.core import Workbench
from workbench.settings import WorkbenchSettings
models = Path(sys.argv[3])
s = WorkbenchSettings(home=Path(sys.argv[1]), pack="local", local={
    "models_dir": models, "detector": "buffalo_sc/det_500m.onnx",
    "recognizer": "mobilefacenet/MobileFaceNet.onnx"})
with Workbench(s) as wb:
    wb.ingest([sys.argv[4]], progress=False)
"""


def run(n: int, mode: str, scratch: Path) -> float:
    photos = SHARED / "data" / "faces-dev" / "images"
    t = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(scratch / f"{mode}-{n}-{i}-{time.time_ns()}"),
                mode,
                str(SHARED / "models"),
                str(photos),
            ],
            env={**os.environ, "WORKBENCH_LOG_LEVEL": "WARNING"},
        )
        for i in range(n)
    ]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"child failed with {p.returncode}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        rows = []
        for mode in ("passive", "spin"):
            for n in (1, 2):
                times = [run(n, mode, scratch) for _ in range(args.repeats)]
                rows.append((mode, n, statistics.median(times)))
                print(
                    f"{mode:<8} {n} process(es): median {rows[-1][2]:.1f} s "
                    f"{[round(t, 1) for t in times]}",
                    flush=True,
                )
    # Two at once do twice the work: 2.0 means no gain from running them together,
    # above 2.0 they get in each other's way.
    print("\nmode      1 alone   2 at once   2 at once / 1 alone")
    for mode in ("passive", "spin"):
        one = next(t for m, n, t in rows if m == mode and n == 1)
        two = next(t for m, n, t in rows if m == mode and n == 2)
        print(f"{mode:<8} {one:8.1f} {two:11.1f} {two / one:12.2f}")


if __name__ == "__main__":
    main()
