"""Clustering all of LFW into people, scored against the LFW identities.

Ingests every image of ``<lfw>/images`` (9,056 photos of 4,911 people, most
with a single photo) into a workbench with the `local` pack, clusters it
with each method's defaults (derived from the pack's calibration), and
scores the labelled face of each photo (the one nearest the centre) with
pairwise and BCubed precision / recall / F and NMI.

    python evaluation/lfw_cluster.py [--home DIR] [--write]

``--home`` reuses (or keeps) the workbench, so a second run only clusters;
``--write`` stores the numbers in ``evaluation/golden/lfw_cluster.json``,
which the slow test tier checks.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WORKBENCH_SHARED", REPO.parent / "shared"))
GOLDEN = REPO / "evaluation" / "golden" / "lfw_cluster.json"
METHODS = ("dbscan", "hdbscan")
BARS = {"bcubed_f": 0.90, "pairwise_f": 0.85}
"""The issue's acceptance bars for the `local` pack with default parameters."""


def local_settings(home: Path, models_dir: Path) -> Any:
    from workbench.settings import WorkbenchSettings

    return WorkbenchSettings(
        home=home,
        pack="local",
        allow_download=False,
        local={
            "models_dir": models_dir,
            "detector": "buffalo_sc/det_500m.onnx",
            "recognizer": "mobilefacenet/MobileFaceNet.onnx",
        },
    )


def cluster_lfw(home: Path, lfw_dir: Path, models_dir: Path) -> dict[str, Any]:
    """Ingest LFW into ``home`` (photos already there are skipped) and cluster it."""
    from workbench.core import Workbench
    from workbench.evaluation.cluster_labels import face_labels, read_lfw_labels

    out: dict[str, Any] = {"protocol": "LFW all images, identity = folder, centre face"}
    with Workbench(local_settings(home, models_dir)) as wb:
        started = time.perf_counter()
        report = wb.ingest([lfw_dir / "images"], progress=False)
        out["ingest"] = {**report.counts(), "seconds": round(time.perf_counter() - started, 1)}
        out["pack"] = wb.pack.name
        labels = read_lfw_labels(lfw_dir)
        out["methods"] = {}
        for method in METHODS:
            outcome = wb.cluster(method)
            truth = face_labels(wb.catalog, wb.pack.name, labels, "centre")
            out["methods"][method] = {
                "params": outcome.params,
                "seconds": round(outcome.seconds, 2),
                "faces_clustered": outcome.faces,
                **truth.report(outcome.face_ids, outcome.labels),
            }
        wb.cluster()  # leave the workbench grouped with the defaults
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="workbench to build or reuse")
    parser.add_argument("--lfw-dir", type=Path, default=SHARED / "data" / "lfw")
    parser.add_argument("--models-dir", type=Path, default=SHARED / "models")
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN.name}")
    args = parser.parse_args()
    from workbench.monitoring.logs import configure_logging

    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "lfw"
        result = cluster_lfw(home, args.lfw_dir, args.models_dir)
    print(json.dumps(result, indent=2))
    if args.write:
        GOLDEN.write_text(json.dumps({**result, "bars": BARS}, indent=2) + "\n")
        print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
