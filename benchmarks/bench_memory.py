"""Peak memory of an ingest of very large photos: bounded against unbounded, in one run.

33 JPEGs of 6000 × 6000 pixels (dev photos with faces, enlarged; made in a temp dir,
never in the repository) go through ``workbench ingest DIR --json`` twice, each in a
fresh process and home:

* ``unbounded``: ``WORKBENCH_LIMITS__ANALYSIS_SIDE=0`` and
  ``WORKBENCH_LIMITS__PIXELS_IN_FLIGHT=0``: every photo decoded in full, batches of
  ``batch_size`` photos whatever their size (what the ingest did before);
* ``bounded``: the defaults (JPEGs decoded for the models at a reduced scale, never
  below 2560 px; a batch cut short at 48 Mpx).

With ``--before DIR`` (a checkout of an earlier commit) a third run ingests with that
code, as it was. Reported: the ingest process's peak RSS (``ru_maxrss``), its time, and the faces
found per photo; the two runs must find the same faces (same count per photo, boxes
within a few pixels). Goal: bounded ≤ 1.5 GB.

    python benchmarks/bench_memory.py [--photos 33] [--side 6000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import FACES_DEV, machine, workbench_env, write_json

RUNNER = r"""
import json, resource, sys
from workbench.cli import main
try:
    main(sys.argv[1:])
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss": peak}), file=sys.stderr)
"""


def make_photos(folder: Path, n: int, side: int) -> list[Path]:
    """``n`` dev photos with faces, enlarged onto ``side`` × ``side`` JPEGs."""
    from PIL import Image

    sources = sorted((FACES_DEV / "images").glob("dev_00[0-3]*.jpg"))[:n]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        with Image.open(sources[i % len(sources)]) as im:
            im = im.convert("RGB")
            scale = side / max(im.size)
            big = im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)
            canvas = Image.new("RGB", (side, side), (128, 128, 128))
            canvas.paste(big, ((side - big.width) // 2, (side - big.height) // 2))
            path = folder / f"big_{i:03d}.jpg"
            canvas.save(path, "JPEG", quality=90)
            out.append(path)
    return out


def ingest(
    folder: Path, home: Path, env_extra: dict[str, str], code: Path | None = None
) -> dict[str, Any]:
    env = workbench_env(home, WORKBENCH_STORAGE__LITE_IDLE_S="1", **env_extra)
    if code is not None:  # another checkout's workbench package
        env["PYTHONPATH"] = str(code)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, "ingest", str(folder), "--json", "--no-progress"],
        env=env,
        cwd=home.parent,  # not this checkout: `python -c` puts the cwd first on sys.path
        capture_output=True,
        text=True,
        timeout=3600,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    peak = json.loads(proc.stderr.strip().splitlines()[-1])["peak_rss"]
    return {"report": json.loads(proc.stdout), "peak_rss": peak, "seconds": round(seconds, 2)}


def faces_by_photo(home: Path) -> dict[str, list[list[float]]]:
    import sqlite3

    with sqlite3.connect(home / "catalog.sqlite") as db:
        rows = db.execute(
            "SELECT p.uri, f.x1, f.y1, f.x2, f.y2 FROM faces f JOIN photos p ON p.id = f.photo_id"
            " ORDER BY p.uri, f.x1"
        ).fetchall()
    out: dict[str, list[list[float]]] = {}
    for uri, *box in rows:
        out.setdefault(Path(uri).name, []).append(box)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=33)
    parser.add_argument("--side", type=int, default=6000)
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="also ingest with the workbench of this checkout (an earlier commit), as 'before'",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        root = Path(tmp)
        make_photos(root / "photos", args.photos, args.side)
        runs: dict[str, Any] = {}
        settings = {
            "unbounded": {
                "WORKBENCH_LIMITS__ANALYSIS_SIDE": "0",
                "WORKBENCH_LIMITS__PIXELS_IN_FLIGHT": "0",
            },
            "bounded": {},
        }
        for name, env in settings.items():
            runs[name] = ingest(root / "photos", root / name, env)
            runs[name]["faces"] = faces_by_photo(root / name)
        if args.before is not None:
            runs["before"] = ingest(root / "photos", root / "before", {}, code=args.before)
            runs["before"]["faces"] = faces_by_photo(root / "before")
    a, b = runs["unbounded"]["faces"], runs["bounded"]["faces"]
    same_counts = {k: len(v) for k, v in a.items()} == {k: len(v) for k, v in b.items()}
    shift = max(
        (
            abs(x - y)
            for photo in a
            for fa, fb in zip(a[photo], b.get(photo, []), strict=False)
            for x, y in zip(fa, fb, strict=True)
        ),
        default=0.0,
    )
    summary = {
        name: {
            "peak_rss_mb": round(r["peak_rss"] / 2**20),
            "seconds": r["seconds"],
            "faces": r["report"]["faces"],
            "photos": r["report"]["photos"],
        }
        for name, r in runs.items()
    }
    payload = {
        "photos": args.photos,
        "side": args.side,
        "runs": summary,
        "same_faces_per_photo": same_counts,
        "largest_box_shift_px": round(shift, 1),
        "machine": machine(),
    }
    path = write_json("memory", payload, args.out)
    print(f"{args.photos} JPEGs of {args.side} × {args.side}:")
    for name, s in summary.items():
        print(
            f"  {name:<10} peak RSS {s['peak_rss_mb']:>6,} MB  {s['seconds']:>6.1f} s  "
            f"{s['faces']} faces in {s['photos']} photos"
        )
    print(f"  same faces per photo: {same_counts}; largest box shift {shift:.1f} px")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
