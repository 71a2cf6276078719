"""Remote ingest: photos/s from a VK album served with network latency, by downloads at a time.

A local server speaking VK's API (tests/fakes/vk.py) serves an album of LFW
photos, every reply delayed by ``--latency`` seconds (a far-away CDN). Each
setting runs a register-only ingest (list, download, hash, decode; no model,
so the network part is what is timed) into a fresh workbench, ``--repeats``
times; medians are reported with the ratio to one download at a time, the
baseline measured in the same run.

    python benchmarks/bench_remote.py                       # 120 photos, 100 ms latency
    python benchmarks/bench_remote.py --photos 250 --latency 0.2 --downloads 1 4 8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import LFW, code_state, machine, median, now_iso, quiet_logs, write_json  # noqa: E402

TOKEN = "vk1.a.BENCHMARK-token-0123456789"


def run_once(vk: Any, downloads: int, home: Path) -> dict[str, Any]:
    from workbench.core import Workbench
    from workbench.settings import WorkbenchSettings

    settings = WorkbenchSettings(
        home=home,
        vk_token=TOKEN,  # type: ignore[arg-type]
        remote={"vk_api_url": vk.base_url, "downloads": downloads, "vk_requests_per_second": 20},
    )
    wb = Workbench(settings)
    try:
        vk.clear_log()
        t0 = time.perf_counter()
        report = wb.ingest(["vk:album/-1_1"], progress=False, register_only=True)
        seconds = time.perf_counter() - t0
    finally:
        wb.close()
    assert report.pending == vk.downloads(), (report.pending, vk.downloads())
    return {"seconds": seconds, "photos": report.pending, "errors": report.errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per reply")
    parser.add_argument("--downloads", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    quiet_logs()
    from tests.fakes.vk import FakeVK

    images = sorted((LFW / "images").rglob("*.jpg"))[: args.photos]
    if len(images) < args.photos:
        raise SystemExit(f"need {args.photos} LFW images under {LFW / 'images'}")
    results: dict[int, list[dict[str, Any]]] = {}
    with FakeVK() as vk, tempfile.TemporaryDirectory() as scratch:
        vk.add_token(TOKEN, 1)
        vk.add_album(-1, 1, "bench", images)
        vk.latency = args.latency
        for repeat in range(args.repeats):
            for n in args.downloads:
                run = run_once(vk, n, Path(scratch) / f"wb-{n}-{repeat}")
                results.setdefault(n, []).append(run)
                print(f"downloads={n} repeat {repeat + 1}: {run['seconds']:.2f} s", flush=True)
    base = median([r["seconds"] for r in results[args.downloads[0]]])
    rows = []
    print(f"\n{args.photos} photos, {args.latency * 1000:.0f} ms per reply, register-only")
    print(f"{'downloads':>9} {'median s':>9} {'photos/s':>9} {'speed-up':>9}")
    for n, runs in results.items():
        sec = median([r["seconds"] for r in runs])
        row = {"downloads": n, "median_seconds": sec, "photos_per_second": args.photos / sec}
        row["speedup_vs_first"] = base / sec
        rows.append(row)
        print(f"{n:>9} {sec:>9.2f} {args.photos / sec:>9.1f} {base / sec:>8.2f}×")
    path = write_json(
        "remote",
        {
            "created": now_iso(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": machine(),
            "code": code_state(),
            "rows": rows,
            "runs": {str(k): v for k, v in results.items()},
        },
        args.out,
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
