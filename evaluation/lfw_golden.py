#!/usr/bin/env python
"""Measure the reference packs on all 6,000 LFW View 2 pairs; check or rewrite the golden values.

    python evaluation/lfw_golden.py --lfw ../shared/data/lfw --models-dir ../shared/models
    python evaluation/lfw_golden.py ... --write     # after a deliberate change, with the evidence

The golden values (``evaluation/golden/lfw_view2.json``) are what the slow
test tier re-checks within ``tolerance_points``. Each pack is measured with
`workbench.evaluation.evaluate_lfw` exactly as ``workbench evaluate lfw`` does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parent / "golden" / "lfw_view2.json"
LOCAL_DETECTOR = "buffalo_sc/det_500m.onnx"
LOCAL_RECOGNIZER = "mobilefacenet/MobileFaceNet.onnx"


def load_golden(path: Path = GOLDEN) -> dict[str, Any]:
    return json.loads(path.read_text())


def reference_settings(pack: str, models_dir: Path, home: Path) -> Any:
    """Settings of the reference packs: `local` is SCRFD-500MF + MobileFaceNet."""
    from workbench.settings import WorkbenchSettings

    values: dict[str, Any] = {"home": home, "pack": pack, "allow_download": False}
    if pack == "local":
        values["local"] = {
            "models_dir": models_dir,
            "detector": LOCAL_DETECTOR,
            "recognizer": LOCAL_RECOGNIZER,
        }
    return WorkbenchSettings(**values)


def save(golden: dict[str, Any]) -> None:
    golden["measured"] = dt.date.today().isoformat()
    golden["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    GOLDEN.write_text(json.dumps(golden, indent=2) + "\n")


def golden_entry(report: Any) -> dict[str, Any]:
    d = report.to_dict()
    return {
        "accuracy": round(d["accuracy"]["mean"], 5),
        "accuracy_std": round(d["accuracy"]["std"], 5),
        "precision": round(d["precision"]["mean"], 5),
        "recall": round(d["recall"]["mean"], 5),
        "f1": round(d["f1"]["mean"], 5),
        "roc_auc": round(d["roc_auc"], 5),
        "tar_at_far_1e-3": round(d["tar_at_far"]["tar"], 5),
        "threshold": round(d["threshold"]["mean"], 5),
        "detection_rate": round(d["detection_rate"], 5),
        "no_face": {k: v for k, v in d["no_face"].items() if k != "files"},
        "no_face_files": [Path(f).name for f in d["no_face"]["files"]],
        "wall_seconds": round(d["seconds"], 1),
        "ms_per_image": d["ms_per_image"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lfw", required=True, type=Path, help="LFW directory")
    ap.add_argument("--models-dir", required=True, type=Path, help="../shared/models")
    ap.add_argument("--pack", action="append", help="only these packs [all golden ones]")
    ap.add_argument("--write", action="store_true", help="rewrite the golden values")
    ap.add_argument("--home", type=Path, default=Path("/tmp/workbench-lfw-golden"))
    args = ap.parse_args(argv)

    from workbench.evaluation import evaluate_lfw
    from workbench.faces.registry import open_pack

    golden = load_golden()
    tolerance = golden["tolerance_points"] / 100.0
    failed = False
    for kind, spec in golden["packs"].items():
        if args.pack and kind not in args.pack:
            continue
        settings = reference_settings(kind, args.models_dir, args.home)
        report = evaluate_lfw(open_pack(kind, settings), args.lfw, golden["pairs_file"])
        print(report.summary())
        entry = golden_entry(report)
        ok = entry["accuracy"] >= spec["bar"]
        if "accuracy" in spec:  # no golden value yet on a first --write
            delta = entry["accuracy"] - spec["accuracy"]
            ok = ok and abs(delta) <= tolerance
            print(f"  golden {spec['accuracy']:.4%}, now {entry['accuracy']:.4%} ({delta:+.4%})")
        print(f"  {'ok' if ok else 'OUT OF TOLERANCE OR UNDER THE BAR'} (bar {spec['bar']:.1%})")
        failed |= not ok
        spec.update(entry, pack=report.pack)
        if args.write:  # after each pack: a long run keeps what it measured
            save(golden)
    if args.write:
        print(f"wrote {GOLDEN}")
    return 1 if failed and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
