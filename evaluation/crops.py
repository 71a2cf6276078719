"""Faces in tight crops: what avatars, ID photos and cropped portraits look like.

For photos already in a workbench (the dev set's identity photos, LFW), each stored
labelled face is cut out again as a user would crop it — the face box plus a small
margin resized to 112, 150 and 200 px, and the 112 × 112 crop aligned on the five
landmarks that recognizers are fed — and analysed as a search sample is. Reported
per kind of crop:

* **detection**: the share of crops where a face is found (the padded retry of
  `ModelPack.analyze_many` is what makes this work; ``--no-retry`` shows without);
* **top-1 agreement**: the share where the crop's first answer — its best match among
  the other photos of the home at the default threshold (85 %), or "no match" — is the
  full photo's first answer (searched exactly over the catalog's vectors, faces below
  the quality gate left out, as a search does);
* **same person**: the share where those first answers show the same person (or both
  are "no match"): a crop may rank two photos of the person the other way round.

    python evaluation/crops.py --home DIR [--labels CSV | --lfw-dir DIR] [--limit N] [--json]
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
SIDES = (112, 150, 200)
MARGIN = 0.1
"""Of the box's longer side, on every side of it."""


def crops_of(rgb: Any, box: Any, landmarks: Any) -> dict[str, Any]:
    """The crops of one face: ``box+10%@<side>`` for each side, and ``aligned@112``."""
    from PIL import Image

    from workbench.faces.align import align_face

    x1, y1, x2, y2 = box
    m = MARGIN * max(x2 - x1, y2 - y1)
    img = Image.fromarray(rgb)
    cut = img.crop((int(x1 - m), int(y1 - m), int(x2 + m), int(y2 + m)))
    out = {f"box+10%@{s}": np.asarray(cut.resize((s, s), Image.Resampling.BILINEAR)) for s in SIDES}
    out["aligned@112"] = align_face(rgb, np.asarray(landmarks, np.float32).reshape(5, 2))
    return out


def measure(home: Path, lfw_dir: Path | None, labels: Path | None, limit: int | None) -> dict:
    from workbench.core import Workbench
    from workbench.evaluation.archive_search import labelled_faces
    from workbench.imaging.decode import decode_image
    from workbench.settings import WorkbenchSettings

    started = time.perf_counter()
    with Workbench(WorkbenchSettings(home=home)) as wb:
        pack = wb.pack.load()
        found, _ = labelled_faces(wb.catalog, pack.name, lfw_dir, labels)
        ids, photo_ids, X = wb.catalog.face_vectors(pack.name)
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        gated = wb.catalog.gated_face_ids(pack.name, wb.settings.quality)
        searchable = np.array([int(i) not in gated for i in ids])
        pos = {int(f): i for i, f in enumerate(ids)}
        chosen = [int(f) for f in found.face_ids]
        if limit is not None and limit < len(chosen):
            chosen = [chosen[i * len(chosen) // limit] for i in range(limit)]
        rows = wb.catalog.faces_by_ids(chosen)
        photos = wb.catalog.photos_by_ids({r.photo_id for r in rows.values()})

        min_cos = wb.calibration.cosine_at(wb.settings.search.threshold)
        identity = dict(zip(found.face_ids.tolist(), found.identities.tolist(), strict=True))

        def best_other(vec: Any, photo_id: int) -> int | None:
            sims = X @ (vec / np.linalg.norm(vec))
            sims[~searchable | (photo_ids == photo_id)] = -np.inf
            k = int(np.argmax(sims))
            return int(ids[k]) if sims[k] >= min_cos else None

        def who(face_id: int | None) -> str | None:
            return None if face_id is None else identity.get(face_id, f"face {face_id}")

        tally: dict[str, dict[str, int]] = {}
        for fid in chosen:
            row = rows[fid]
            photo = photos[row.photo_id]
            image = decode_image(Path(photo.uri).read_bytes(), wb.settings.limits)
            scale = image.scale  # boxes are stored in the photo's pixels
            box = [v / scale for v in row.box]
            marks = np.asarray(row.landmarks, np.float64) / scale
            want = best_other(X[pos[fid]], row.photo_id)
            for kind, crop in crops_of(image.rgb, box, marks).items():
                t = tally.setdefault(kind, {"crops": 0, "found": 0, "agree": 0, "person": 0})
                t["crops"] += 1
                faces = pack.analyze(crop)
                if not faces:
                    continue
                t["found"] += 1
                face = max(faces, key=lambda f: f.detection.width * f.detection.height)
                got = best_other(face.embedding, row.photo_id)
                t["agree"] += int(got == want)
                t["person"] += int(who(got) == who(want))
    return {
        "pack": pack.name,
        "home": str(home),
        "faces": len(chosen),
        "retry": pack.detection.pad_retry,
        "kinds": {
            k: {
                **t,
                "detection": round(t["found"] / t["crops"], 4),
                "top1_agreement": round(t["agree"] / t["crops"], 4),
                "same_person": round(t["person"] / t["crops"], 4),
            }
            for k, t in tally.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="a workbench holding the photos")
    ap.add_argument("--lfw-dir", type=Path, default=None)
    ap.add_argument("--labels", type=Path, default=None, help="labels CSV (path,identity)")
    ap.add_argument("--limit", type=int, default=None, help="at most N faces, evenly spread")
    ap.add_argument("--no-retry", action="store_true", help="without the padded retry")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.no_retry:
        os.environ["WORKBENCH_DETECTION__PAD_RETRY"] = "false"
    from workbench.monitoring.logs import configure_logging

    configure_logging("WARNING")
    result = measure(args.home, args.lfw_dir, args.labels, args.limit)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['pack']}: {result['faces']} faces (padded retry {result['retry']})")
    for kind, t in result["kinds"].items():
        print(
            f"  {kind:<13} detection {t['detection']:.1%}  top-1 agreement "
            f"{t['top1_agreement']:.1%}  same person {t['same_person']:.1%}  ({t['crops']} crops)"
        )
    print(f"  {result['seconds']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
