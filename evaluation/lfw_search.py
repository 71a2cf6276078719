"""1:N search on all of LFW, the way users search an archive (``workbench evaluate search``).

Ingests the 9,056 LFW images into a workbench with the `local` pack (photos already
there are skipped), then searches every photo of a person with two or more photos
against every other face of the home, bystanders included, at the default
threshold and at 70/75/80/90/95 %: rank-1, precision, recall, strangers per query,
the pair false-match rate, the strangers expected at 10k / 100k / 1M faces, and what
the calibration predicts for this gallery.

    python evaluation/lfw_search.py [--home DIR] [--write]

``--home`` reuses (or keeps) the workbench; ``--write`` stores the numbers in
``evaluation/golden/lfw_search.json``, which the slow test tier checks.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WORKBENCH_SHARED", REPO.parent / "shared"))
GOLDEN = REPO / "evaluation" / "golden" / "lfw_search.json"
PERCENTS = (70.0, 75.0, 80.0, 90.0, 95.0)
BARS = {"precision": 0.95, "recall": 0.90, "true_matches_at_99": 0.5, "prediction_factor": 2.0}
"""The issue's acceptance bars at the default threshold."""


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


def search_lfw(home: Path, lfw_dir: Path, models_dir: Path) -> dict[str, Any]:
    """Ingest LFW into ``home`` (what is there is skipped) and evaluate 1:N search on it."""
    from workbench.core import Workbench

    with Workbench(local_settings(home, models_dir)) as wb:
        report = wb.ingest([lfw_dir / "images"], progress=False)
        result = wb.evaluate_search(lfw_dir, ingest=False, percents=PERCENTS, progress=False)
    doc = result.to_dict()
    doc["ingest"] = report.counts()
    return doc


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
        result = search_lfw(home, args.lfw_dir, args.models_dir)
    print(json.dumps(result, indent=2))
    if args.write:
        keep = {k: v for k, v in result.items() if k not in ("created", "seconds")}
        GOLDEN.write_text(json.dumps({**keep, "bars": BARS}, indent=2) + "\n")
        print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
