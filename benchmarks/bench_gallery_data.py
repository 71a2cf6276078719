"""The gallery's data layer: page queries, facets and thumbnails, medians over repeats.

    python benchmarks/bench_gallery_data.py                    # 20,000 photos, 15 repeats
    python benchmarks/bench_gallery_data.py --photos 100000    # a bigger catalog
    python benchmarks/bench_gallery_data.py --no-thumbnails    # queries only (no shared data)

The issue's budget: a gallery page renders in ≤ 3 s (first page) and ≤ 1 s
(page change) in a browser, so the queries and thumbnails behind a page must
take well under that.

* **Queries**: the synthetic catalog of the unit tests
  (`tests.unit.test_gallery.build_synthetic_catalog`: four sources and
  origins, every status, ~1.2 faces a photo, 51 people, two packs, metadata
  dates on remote photos) in a SQLite file. For each filter:
  ``gallery_page`` page 1 and page 200 (48 a page; past the end of a small
  result only the count runs) and ``facets``, each timed ``--repeats`` times
  after one warm-up call (wall clock, medians). Then again after each of
  `PASSES` (candidate indexes, cumulative; no ANALYZE, as the catalog runs
  none) on the benchmark's own copy, to show what each would buy; catalog.py's
  schema is not changed.
* **Thumbnails**: a register-only ingest (no models) of the faces-dev photos
  into a temp workbench, then per photo ``ThumbnailCache.thumbnail`` cold
  (a fresh cache folder each repeat: read, sha256, decode, resize, JPEG,
  atomic write) and warm (the cached file), for the largest dev photo and the
  median dev photo; and ``thumbnails()`` of a whole 48-photo page, cold and
  warm. ``draft`` is a what-if: the same thumbnail through Pillow's JPEG
  draft mode (DCT scaling while decoding), which `imaging.decode_image` does
  not use; ``put`` is `ThumbnailCache.put` from the already decoded photo
  (what thumbnailing during the ingest would add).

Prints a table and writes one JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import FACES_DEV, load_average, machine, now_iso, quiet_logs, write_json  # noqa: E402

PASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("schema as in catalog.py", ()),
    ("+ index photos (status, id)", ("CREATE INDEX bench_ix_status_id ON photos (status, id)",)),
    ("+ index photos (source, id)", ("CREATE INDEX bench_ix_source_id ON photos (source, id)",)),
    ("+ index photos (origin, id)", ("CREATE INDEX bench_ix_origin_id ON photos (origin, id)",)),
)
"""Cumulative: each pass adds its statements to the benchmark's own copy of the catalog."""


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median milliseconds of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def filters() -> dict[str, Any]:
    from tests.unit.test_gallery import DLIB_PERSON
    from workbench.analysis.gallery import GalleryFilter

    return {
        "all": GalleryFilter(),
        "status=faces": GalleryFilter(status="faces"),
        "status=no_faces": GalleryFilter(status="no_faces"),
        "status=errors": GalleryFilter(status="errors"),
        "status=pending": GalleryFilter(status="pending"),
        "source=vk": GalleryFilter(source="vk:album/-1_2"),
        "origin=zip": GalleryFilter(origin="zip"),
        "origin=zip+no_faces": GalleryFilter(origin="zip", status="no_faces"),
        "person=7": GalleryFilter(person_id=7),
        "person=dlib": GalleryFilter(person_id=DLIB_PERSON),
        "pack=dlib+faces": GalleryFilter(pack="dlib", status="faces"),
        "pack=dlib+no_faces": GalleryFilter(pack="dlib", status="no_faces"),
        "pack=dlib+pending": GalleryFilter(pack="dlib", status="pending"),
        "date=2020": GalleryFilter(date_from=dt.date(2020, 1, 1), date_to=dt.date(2020, 12, 31)),
        "date=2025-06": GalleryFilter(date_from=dt.date(2025, 6, 1), date_to=dt.date(2025, 6, 30)),
        "vk+faces+2020": GalleryFilter(
            origin="vk",
            status="faces",
            date_from=dt.date(2020, 1, 1),
            date_to=dt.date(2020, 12, 31),
        ),
    }


def bench_queries(catalog: Any, repeats: int) -> list[dict[str, Any]]:
    from workbench.analysis.gallery import facets, gallery_page

    rows = []
    for name, flt in filters().items():
        first = gallery_page(catalog, flt, 1)
        rows.append(
            {
                "filter": name,
                "total": first.total,
                "pages": first.pages,
                "page1_ms": timed(lambda f=flt: gallery_page(catalog, f, 1), repeats),
                "page200_ms": timed(lambda f=flt: gallery_page(catalog, f, 200), repeats),
                "facets_ms": timed(lambda f=flt: facets(catalog, f), repeats),
            }
        )
    return rows


def print_queries(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(
        f"{'filter':<22}{'total':>7}{'pages':>7}{'page 1 ms':>11}{'page 200 ms':>13}"
        f"{'facets ms':>11}"
    )
    for r in rows:
        print(
            f"{r['filter']:<22}{r['total']:>7}{r['pages']:>7}{r['page1_ms']:>11.2f}"
            f"{r['page200_ms']:>13.2f}{r['facets_ms']:>11.2f}"
        )


def bench_thumbnails(scratch: Path, repeats: int) -> dict[str, Any]:
    from PIL import Image, ImageOps

    from workbench.analysis.gallery import GalleryFilter, gallery_page
    from workbench.core import Workbench
    from workbench.imaging.decode import decode_image
    from workbench.imaging.thumbnails import ThumbnailCache
    from workbench.settings import WorkbenchSettings

    settings = WorkbenchSettings(home=scratch / "dev")
    wb = Workbench(settings)
    try:
        t0 = time.perf_counter()
        wb.ingest([FACES_DEV / "images"], progress=False, register_only=True)
        register_s = time.perf_counter() - t0
        photos = gallery_page(wb.catalog, GalleryFilter(), page_size=1000).items
    finally:
        wb.close()
    by_pixels = sorted(photos, key=lambda p: (p.width or 0) * (p.height or 0))
    picks = {"largest": by_pixels[-1], "median": by_pixels[len(by_pixels) // 2]}
    out: dict[str, Any] = {"register_s": round(register_s, 2), "photos": {}}
    for label, photo in picks.items():
        counter = iter(range(10**6))

        def cold(p: Any = photo, c: Any = counter) -> None:
            ThumbnailCache(settings, root=scratch / f"cold-{next(c)}").thumbnail(p)

        warm_cache = ThumbnailCache(settings, root=scratch / "warm")
        warm_cache.thumbnail(photo)
        data = Path(photo.uri).read_bytes()
        decoded = decode_image(data, settings.limits)
        sha = photo.sha256 or ""
        put_counter = iter(range(10**6))

        def put(d: Any = decoded, c: Any = put_counter, h: str = sha) -> None:
            ThumbnailCache(settings, root=scratch / f"put-{next(c)}").put(h, d)

        def draft(d: bytes = data) -> None:
            with Image.open(io.BytesIO(d)) as img:
                img.draft("RGB", (512, 512))
                up = ImageOps.exif_transpose(img.convert("RGB"))
                up.thumbnail((256, 256))
                up.save(io.BytesIO(), "JPEG", quality=85, optimize=True)

        out["photos"][label] = {
            "name": photo.name,
            "size": [photo.width, photo.height],
            "bytes": len(data),
            "cold_ms": timed(cold, repeats),
            "warm_ms": timed(lambda p=photo, c=warm_cache: c.thumbnail(p), repeats),
            "draft_ms": timed(draft, repeats) if photo.name.lower().endswith(".jpg") else None,
            "put_ms": timed(put, repeats),
            "thumbnail_bytes": warm_cache.thumbnail(photo).stat().st_size,
        }
    page = photos[:48]
    page_repeats = max(3, repeats // 5)
    counter = iter(range(10**6))
    out["page48_cold_ms"] = timed(
        lambda: ThumbnailCache(settings, root=scratch / f"page-{next(counter)}").thumbnails(page),
        page_repeats,
    )
    warm = ThumbnailCache(settings, root=scratch / "page-warm")
    warm.thumbnails(page)
    out["page48_warm_ms"] = timed(lambda: warm.thumbnails(page), repeats)
    out["page48_megapixels"] = round(sum((p.width or 0) * (p.height or 0) for p in page) / 1e6, 1)
    return out


def print_thumbnails(t: dict[str, Any]) -> None:
    print(f"\nthumbnails (256 px, quality 85; dev set registered in {t['register_s']} s)")
    print(
        f"{'photo':<8}{'name':<15}{'pixels':>12}{'KB':>7}{'cold ms':>9}{'warm ms':>9}"
        f"{'draft ms':>10}{'put ms':>8}{'thumb KB':>10}"
    )
    for label, p in t["photos"].items():
        draft = f"{p['draft_ms']:.1f}" if p["draft_ms"] is not None else "-"
        print(
            f"{label:<8}{p['name']:<15}{p['size'][0]:>6}×{p['size'][1]:<5}{p['bytes'] / 1024:>7.0f}"
            f"{p['cold_ms']:>9.1f}{p['warm_ms']:>9.2f}{draft:>10}{p['put_ms']:>8.1f}"
            f"{p['thumbnail_bytes'] / 1024:>10.1f}"
        )
    print(
        f"page of 48 ({t['page48_megapixels']} MP): cold {t['page48_cold_ms']:.0f} ms, "
        f"warm {t['page48_warm_ms']:.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--photos", type=int, default=20_000, help="photos in the synthetic catalog")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--no-thumbnails", action="store_true", help="skip the dev-set thumbnails")
    ap.add_argument("--no-indexes", action="store_true", help="skip the candidate-index rerun")
    ap.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/...)")
    ap.add_argument("--scratch", type=Path, help="where temp files go (default: system tmp)")
    args = ap.parse_args(argv)

    from tests.unit.test_gallery import build_synthetic_catalog

    quiet_logs()
    payload: dict[str, Any] = {"started": now_iso(), "machine": machine(), "args": vars(args)}
    scratch = Path(tempfile.mkdtemp(prefix="bench-gallery-", dir=args.scratch))
    try:
        t0 = time.perf_counter()
        synth = build_synthetic_catalog(scratch / "catalog.sqlite", n=args.photos)
        payload["build_s"] = round(time.perf_counter() - t0, 2)
        print(f"synthetic catalog: {args.photos} photos built in {payload['build_s']} s")
        catalog = synth.catalog
        payload["passes"] = []
        for title, statements in PASSES[: 1 if args.no_indexes else None]:
            with catalog.engine.begin() as conn:
                for sql in statements:
                    conn.exec_driver_sql(sql)
            rows = bench_queries(catalog, args.repeats)
            payload["passes"].append({"title": title, "statements": statements, "queries": rows})
            print_queries(title, rows)
        catalog.close()
        if not args.no_thumbnails:
            payload["thumbnails"] = bench_thumbnails(scratch, args.repeats)
            print_thumbnails(payload["thumbnails"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    payload["machine"]["load_average_at_end"] = load_average()
    path = write_json(f"gallery-{args.photos // 1000}k", payload, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
