"""Ingest throughput: `Workbench.ingest` against a naive insightface loop, same photos, one run.

    python benchmarks/bench_ingest.py --set dev
    python benchmarks/bench_ingest.py --set collage 1000 --repeats 3

Measured per method and repeat (medians reported):

* ours (`local` pack, and `dlib` when `workbench.faces.backends.dlib` imports and
  loads): a fresh workbench home each time; `setup` = open the pack (models),
  the SQLite catalog and the Milvus Lite file and collection; `process` =
  ``Workbench.ingest(paths, progress=False)`` (read, sha256, decode with
  limits + EXIF, detect, align, embed, catalog transaction, Milvus upsert);
  `total` = setup + process + close (close stops the Milvus Lite server of the
  home, which flushes its MemTable and builds the HNSW index: what an exiting
  CLI process pays).
* naive: insightface ``FaceAnalysis`` over just det_500m.onnx + MobileFaceNet.onnx
  (CPU), ``prepare(ctx_id=-1, det_size=(640, 640))``, then per photo
  ``cv2.imread`` + ``app.get(img)``; nothing stored.

photos/s and faces/s are over `process` (steady state); `total` photos/s is
what a user waits for. The issue's goal (1000 photos × 3 faces in ≤ 5 min with
the `local` pack, i.e. ≥ 3.33 photos/s) is judged on `total`.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    FACES_DEV,
    LFW,
    LOCAL_DETECTOR,
    LOCAL_RECOGNIZER,
    MODELS,
    RESULTS,
    load_average,
    machine,
    median,
    now_iso,
    quiet_logs,
    release_milvus_lite,
    write_json,
)

GOAL_PHOTOS = 1000
GOAL_SECONDS = 300.0
GOAL_RATE = GOAL_PHOTOS / GOAL_SECONDS  # 3.33 photos/s


# ---- photo sets -------------------------------------------------------------
def dev_photos() -> list[Path]:
    with open(FACES_DEV / "labels.csv", newline="") as fh:
        return [FACES_DEV / row["path"] for row in csv.DictReader(fh)]


def make_collages(n: int, seed: int, out_dir: Path, quality: int = 90) -> list[Path]:
    """``n`` 750×250 JPEGs, each three LFW photos of three different people side by side."""
    from PIL import Image

    images = LFW / "images"
    people = sorted(p.name for p in images.iterdir() if p.is_dir())
    if len(people) < 3:
        raise SystemExit(f"LFW at {images} has fewer than 3 people")
    rng = random.Random(seed)
    files_of: dict[str, list[Path]] = {}
    seen: set[tuple[Path, ...]] = set()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    while len(paths) < n:
        trio = rng.sample(people, 3)
        chosen = []
        for name in trio:
            if name not in files_of:
                files_of[name] = sorted((images / name).glob("*.jpg"))
            chosen.append(rng.choice(files_of[name]))
        key = tuple(chosen)
        if key in seen:  # identical collages would be skipped as duplicates (same sha256)
            continue
        seen.add(key)
        canvas = Image.new("RGB", (750, 250))
        for i, p in enumerate(chosen):
            with Image.open(p) as im:
                im = im.convert("RGB")
                if im.size != (250, 250):
                    im = im.resize((250, 250))
                canvas.paste(im, (250 * i, 0))
        path = out_dir / f"collage_{len(paths):05d}.jpg"
        canvas.save(path, "JPEG", quality=quality)
        paths.append(path)
    return paths


# ---- methods ----------------------------------------------------------------
def workbench_settings(home: Path, pack: str) -> Any:
    from workbench.settings import WorkbenchSettings

    return WorkbenchSettings(
        home=home,
        pack=pack,
        local={"models_dir": MODELS, "detector": LOCAL_DETECTOR, "recognizer": LOCAL_RECOGNIZER},
        allow_download=False,
    )


def run_ours(
    pack: str, paths: list[Path], scratch: Path, profile: Path | None = None
) -> dict[str, Any]:
    from workbench.core import Workbench

    home = Path(tempfile.mkdtemp(prefix=f"wb-{pack}-", dir=scratch))
    try:
        t0 = time.perf_counter()
        wb = Workbench(workbench_settings(home, pack))
        wb.pack.load()
        wb.register_pack()
        t1 = time.perf_counter()
        if profile is not None:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        report = wb.ingest(paths, progress=False)
        t2 = time.perf_counter()
        if profile is not None:
            prof.disable()
            prof.dump_stats(str(profile))
        agree = wb.stats().agree
        t3 = time.perf_counter()
        wb.close()
        # What an exiting process pays: Milvus Lite flushes and indexes on shutdown.
        release_milvus_lite(wb.settings.milvus_uri)
        t4 = time.perf_counter()
        return {
            "photos": report.photos,
            "faces": report.faces,
            "no_faces": report.no_faces,
            "errors": report.errors,
            "skipped": report.skipped,
            "catalog_index_agree": agree,
            "setup_s": t1 - t0,
            "process_s": t2 - t1,
            "close_s": t4 - t3,
            "total_s": (t2 - t0) + (t4 - t3),
            "pack_name": wb.pack.name,
            "threads": wb.settings.threads,
            "batch_size": wb.settings.batch_size,
        }
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run_naive(paths: list[Path], scratch: Path) -> dict[str, Any]:
    import cv2
    from insightface.app import FaceAnalysis

    model_dir = Path(tempfile.mkdtemp(prefix="naive-models-", dir=scratch))
    (model_dir / "det_500m.onnx").symlink_to(MODELS / LOCAL_DETECTOR)
    (model_dir / "MobileFaceNet.onnx").symlink_to(MODELS / LOCAL_RECOGNIZER)
    try:
        t0 = time.perf_counter()
        app = FaceAnalysis(
            name=str(model_dir),
            allowed_modules=["detection", "recognition"],
            providers=["CPUExecutionProvider"],
        )
        app.prepare(ctx_id=-1, det_size=(640, 640))
        if "recognition" not in app.models:
            raise RuntimeError(
                f"insightface did not take MobileFaceNet as a recognizer: {list(app.models)}"
            )
        t1 = time.perf_counter()
        photos = faces = errors = no_faces = 0
        for p in paths:
            img = cv2.imread(str(p))
            if img is None:
                errors += 1
                continue
            found = app.get(img)
            photos += 1
            faces += len(found)
            no_faces += not found
        t2 = time.perf_counter()
        return {
            "photos": photos,
            "faces": faces,
            "no_faces": no_faces,
            "errors": errors,
            "setup_s": t1 - t0,
            "process_s": t2 - t1,
            "close_s": 0.0,
            "total_s": t2 - t0,
        }
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)


def dlib_usable() -> tuple[bool, str]:
    """Whether a `dlib` pack exists and loads here (another helper writes it)."""
    try:
        from workbench.faces.backends import dlib  # noqa: F401
        from workbench.faces.registry import open_pack

        with tempfile.TemporaryDirectory() as d:
            open_pack("dlib", workbench_settings(Path(d), "dlib")).load()
    except Exception as e:  # noqa: BLE001 - any failure means: skip it with a note
        return False, f"{type(e).__name__}: {e}"
    return True, ""


# ---- reporting --------------------------------------------------------------
def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"repeats": len(runs)}
    for key in ("setup_s", "process_s", "close_s", "total_s"):
        out[key] = median([r[key] for r in runs])
    last = runs[-1]
    for key in ("photos", "faces", "no_faces", "errors"):
        out[key] = last[key]
    out["photos_per_s"] = median([r["photos"] / r["process_s"] for r in runs])
    out["faces_per_s"] = median([r["faces"] / r["process_s"] for r in runs])
    out["photos_per_s_total"] = median([r["photos"] / r["total_s"] for r in runs])
    out["ms_per_photo"] = 1000.0 / out["photos_per_s"] if out["photos_per_s"] else float("nan")
    return out


def print_table(summary: dict[str, dict[str, Any]]) -> None:
    head = (
        f"{'method':<14}{'photos':>7}{'faces':>7}{'setup s':>9}{'process s':>11}{'total s':>9}"
        f"{'photos/s':>10}{'faces/s':>9}{'ms/photo':>10}{'photos/s total':>16}"
    )
    print(head)
    print("-" * len(head))
    for name, s in summary.items():
        print(
            f"{name:<14}{s['photos']:>7}{s['faces']:>7}{s['setup_s']:>9.2f}{s['process_s']:>11.2f}"
            f"{s['total_s']:>9.2f}{s['photos_per_s']:>10.2f}{s['faces_per_s']:>9.2f}"
            f"{s['ms_per_photo']:>10.1f}{s['photos_per_s_total']:>16.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--set",
        nargs="+",
        default=["dev"],
        metavar="SET",
        help="'dev' (faces-dev, 100 photos) or 'collage N' (N 750×250 collages of 3 LFW faces)",
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="measurements per method (median reported)"
    )
    ap.add_argument("--seed", type=int, default=1234, help="seed of the collage generator")
    ap.add_argument(
        "--packs",
        default="local,dlib",
        help="comma-separated packs for our ingest (dlib is skipped with a note if unusable)",
    )
    ap.add_argument("--no-naive", action="store_true", help="skip the naive insightface baseline")
    ap.add_argument(
        "--profile", action="store_true", help="cProfile our first `local` run; print the top"
    )
    ap.add_argument(
        "--out", type=Path, help="JSON path (default benchmarks/results/ingest-<set>-<time>.json)"
    )
    ap.add_argument(
        "--scratch", type=Path, help="where temp homes and collages go (default: system tmp)"
    )
    args = ap.parse_args(argv)

    quiet_logs()
    machine_info = machine()
    kind = args.set[0]
    if kind == "dev" and len(args.set) == 1:
        set_name = "dev"
    elif kind == "collage" and len(args.set) == 2 and args.set[1].isdigit():
        set_name = f"collage{int(args.set[1])}"
    else:
        ap.error("--set must be 'dev' or 'collage N'")

    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=args.scratch))
    try:
        t = time.perf_counter()
        if kind == "dev":
            paths = dev_photos()
        else:
            paths = make_collages(int(args.set[1]), args.seed, scratch / "collages")
        gen_s = time.perf_counter() - t
        print(
            f"photo set {set_name}: {len(paths)} photos ({gen_s:.1f} s to list/generate)"
            f" in {paths[0].parent}"
        )

        methods: dict[str, Callable[[], dict[str, Any]]] = {}
        notes: list[str] = []
        for pack in [p.strip() for p in args.packs.split(",") if p.strip()]:
            if pack == "dlib":
                ok, why = dlib_usable()
                if not ok:
                    note = f"dlib pack skipped: {why}"
                    print(note)
                    notes.append(note)
                    continue
            methods[f"ours:{pack}"] = lambda pack=pack: run_ours(pack, paths, scratch)
        if not args.no_naive:
            methods["naive"] = lambda: run_naive(paths, scratch)

        if args.profile and "ours:local" in methods:
            prof_path = RESULTS / f"ingest-{set_name}-local.pstats"
            prof_path.parent.mkdir(parents=True, exist_ok=True)
            run_ours("local", paths, scratch, profile=prof_path)
            import pstats

            print(f"\ncProfile of one `local` ingest (process part), saved to {prof_path}:")
            pstats.Stats(str(prof_path)).sort_stats("cumulative").print_stats(30)

        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
        failures: dict[str, str] = {}
        for r in range(args.repeats):
            for name, fn in methods.items():
                if name in failures:
                    continue
                try:
                    res = fn()
                except Exception as e:  # noqa: BLE001 - report and go on with the others
                    failures[name] = f"{type(e).__name__}: {e}"
                    print(f"{name} failed: {failures[name]}")
                    traceback.print_exc()
                    continue
                runs[name].append(res)
                print(
                    f"  repeat {r + 1}/{args.repeats} {name:<11} process {res['process_s']:7.2f} s"
                    f"  total {res['total_s']:7.2f} s  {res['photos']} photos {res['faces']} faces"
                    f"  ({res['photos'] / res['process_s']:.2f} photos/s)",
                    flush=True,
                )

        summary = {name: summarise(rs) for name, rs in runs.items() if rs}
        print(f"\n{set_name}: medians of {args.repeats} repeats\n")
        print_table(summary)

        ratios: dict[str, dict[str, float]] = {}
        if "naive" in summary:
            nv = summary["naive"]
            for name, s in summary.items():
                if name == "naive":
                    continue
                ratios[name] = {
                    "photos_per_s": s["photos_per_s"] / nv["photos_per_s"],
                    "faces_per_s": s["faces_per_s"] / nv["faces_per_s"],
                    "photos_per_s_total": s["photos_per_s_total"] / nv["photos_per_s_total"],
                }
                print(
                    f"\n{name} / naive: photos/s ×{ratios[name]['photos_per_s']:.2f}, faces/s "
                    f"×{ratios[name]['faces_per_s']:.2f}, photos/s incl. setup "
                    f"×{ratios[name]['photos_per_s_total']:.2f}"
                )
                if s["faces"] != nv["faces"]:
                    why = (
                        "ours drops faces under detection.min_face_size (20 px)"
                        if name == "ours:local"
                        else "another detector"
                    )
                    print(f"  note: faces differ ({s['faces']} vs {nv['faces']}): {why}")

        goal: dict[str, Any] | None = None
        if "ours:local" in summary:
            s = summary["ours:local"]
            rate = s["photos_per_s_total"]
            projected = GOAL_PHOTOS / rate if rate else float("inf")
            exact = kind == "collage" and len(paths) >= GOAL_PHOTOS
            met = rate >= GOAL_RATE
            goal = {
                "target_photos_per_s": GOAL_RATE,
                "photos_per_s_total": rate,
                "seconds_for_1000": projected,
                "measured_on_1000_collages": exact,
                "met": met,
            }
            how = "measured" if exact else f"projected from {set_name}"
            print(
                f"\ngoal (1000 photos × 3 faces ≤ {GOAL_SECONDS:.0f} s with `local`, "
                f"≥ {GOAL_RATE:.2f} photos/s incl. decode, storage and index): {rate:.2f} "
                f"photos/s → {projected:.0f} s for 1000 ({how}): {'MET' if met else 'NOT MET'}"
            )
            if not exact:
                print("  (the goal is only judged for real with --set collage 1000)")

        payload = {
            "benchmark": "ingest",
            "date": now_iso(),
            "set": set_name,
            "n_photos": len(paths),
            "seed": args.seed if kind == "collage" else None,
            "repeats": args.repeats,
            "machine": {**machine_info, "load_average_at_end": load_average()},
            "notes": notes,
            "failures": failures,
            "summary": summary,
            "ratios_vs_naive": ratios,
            "goal": goal,
            "runs": runs,
        }
        path = write_json(f"ingest-{set_name}", payload, args.out)
        print(f"\nresults: {path}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
