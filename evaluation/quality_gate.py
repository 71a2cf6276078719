"""What face quality does to recognition: the measurements behind the quality gate's defaults.

LFW people with two or more photos: each person's first photo is the gallery face
(full resolution); a later photo of each is degraded — shrunk so the face is S
pixels wide, or blurred with a Gaussian of sigma B — and analysed as the pack would
an archive photo (detected, aligned, embedded, quality measured). For each
condition the script reports

* **found**: the share of degraded photos where a face was detected;
* the degraded faces' median **size** and **sharpness** (what the gate sees);
* **TAR@85 %**: the share matched to their own person at the default threshold;
* **stranger rate**: how often a degraded face reaches 80 % (FMR 1e-4 by the
  calibration) against other people's full-resolution faces, over that nominal
  rate: a face the models cannot read looks like everybody (a "stranger magnet").

    python evaluation/quality_gate.py [--people 600] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WORKBENCH_SHARED", REPO.parent / "shared"))
SIZES = (16, 20, 24, 32, 40, 48, 64)
BLURS = (1.0, 2.0, 3.0, 4.0, 6.0)


def local_pack(models_dir: Path) -> Any:
    from workbench.faces.registry import open_pack
    from workbench.settings import WorkbenchSettings

    settings = WorkbenchSettings(
        pack="local",
        allow_download=False,
        local={
            "models_dir": models_dir,
            "detector": "buffalo_sc/det_500m.onnx",
            "recognizer": "mobilefacenet/MobileFaceNet.onnx",
        },
    )
    return open_pack("local", settings).load()


def people(lfw_dir: Path, n: int) -> list[tuple[Path, Path]]:
    """(first photo, second photo) of ``n`` people with two or more, evenly spread."""
    root = lfw_dir / "images"
    many = sorted(d for d in root.iterdir() if d.is_dir() and len(list(d.glob("*.jpg"))) >= 2)
    step = max(1, len(many) // n)
    return [tuple(sorted(d.glob("*.jpg"))[:2]) for d in many[::step][:n]]  # type: ignore[misc]


def centre_face(faces: list[Any], w: int, h: int) -> Any | None:
    if not faces:
        return None
    return min(
        faces,
        key=lambda f: (
            (sum(f.detection.box[0::2]) / 2 - w / 2) ** 2
            + (sum(f.detection.box[1::2]) / 2 - h / 2) ** 2
        ),
    )


def measure(lfw_dir: Path, models_dir: Path, n_people: int) -> dict[str, Any]:
    from PIL import Image, ImageFilter

    from workbench.faces.calibration import load_calibration
    from workbench.imaging.decode import decode_image

    pack = local_pack(models_dir)
    cal = load_calibration(pack.name)
    at85, at80 = cal.cosine_at(85.0), cal.cosine_at(80.0)
    pairs = people(lfw_dir, n_people)
    gallery, probes = [], []
    for first, second in pairs:
        a = decode_image(first.read_bytes()).rgb
        f = centre_face(pack.analyze(a), a.shape[1], a.shape[0])
        b = decode_image(second.read_bytes()).rgb
        g = centre_face(pack.analyze(b), b.shape[1], b.shape[0])
        if f is not None and g is not None:
            gallery.append(f.embedding)
            probes.append((b, g.detection.width))
    G = np.stack(gallery)
    rows: list[dict[str, Any]] = []
    conditions = [("full", None)] + [("size", s) for s in SIZES] + [("blur", b) for b in BLURS]
    for kind, value in conditions:
        found, sizes, sharp, own, strangers, compared = 0, [], [], 0, 0, 0
        started = time.perf_counter()
        for i, (rgb, width) in enumerate(probes):
            img = Image.fromarray(rgb)
            if kind == "size":
                k = float(value) / width  # type: ignore[arg-type]
                img = img.resize((max(8, round(img.width * k)), max(8, round(img.height * k))))
            elif kind == "blur":
                img = img.filter(ImageFilter.GaussianBlur(float(value)))  # type: ignore[arg-type]
            arr = np.asarray(img.convert("RGB"))
            face = centre_face(pack.analyze(arr), arr.shape[1], arr.shape[0])
            if face is None:
                continue
            found += 1
            sizes.append(face.quality.size)
            sharp.append(face.quality.sharpness)
            sims = G @ face.embedding
            own += int(sims[i] >= at85)
            others = np.delete(sims, i)
            strangers += int((others >= at80).sum())
            compared += len(others)
        fmr = strangers / compared if compared else 0.0
        rows.append(
            {
                "condition": kind if value is None else f"{kind} {value:g}",
                "found": round(found / len(probes), 4),
                "size_median": round(float(np.median(sizes)), 1) if sizes else None,
                "sharpness_median": round(float(np.median(sharp)), 4) if sharp else None,
                "tar_at_85": round(own / len(probes), 4),
                "stranger_rate_at_80": fmr,
                "stranger_rate_over_nominal": round(fmr / 1e-4, 2),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    return {"pack": pack.name, "people": len(probes), "conditions": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw-dir", type=Path, default=SHARED / "data" / "lfw")
    ap.add_argument("--models-dir", type=Path, default=SHARED / "models")
    ap.add_argument("--people", type=int, default=600)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from workbench.monitoring.logs import configure_logging

    configure_logging("WARNING")
    result = measure(args.lfw_dir, args.models_dir, args.people)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['pack']}: {result['people']} people")
    print("condition   found  size  sharpness  TAR@85%  strangers@80% / nominal")
    for r in result["conditions"]:
        print(
            f"{r['condition']:<10} {r['found']:6.1%} {r['size_median'] or 0:5.0f} "
            f"{r['sharpness_median'] or 0:10.3f} {r['tar_at_85']:8.1%} "
            f"{r['stranger_rate_over_nominal']:8.2f}"
        )


if __name__ == "__main__":
    main()
