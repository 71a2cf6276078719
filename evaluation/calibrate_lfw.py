#!/usr/bin/env python
"""Calibrate a model pack's similarity % on LFW View 1 (see evaluation/README.md).

    python evaluation/calibrate_lfw.py --pack local \\
        --models-dir ../shared/models --detector buffalo_sc/det_500m.onnx \\
        --recognizer mobilefacenet/MobileFaceNet.onnx \\
        --lfw ../shared/data/lfw --write package

Unset options come from the ``WORKBENCH_*`` variables, as for the ``workbench``
command; ``workbench calibrate`` does the same through the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _write_target(value: str) -> str:
    if value in ("home", "package", "none") or value.endswith(".json"):
        return value
    raise argparse.ArgumentTypeError(
        f"{value!r}: give home, package, none, or a path ending in .json"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pack", default=None, help="model pack [$WORKBENCH_PACK, else local]")
    ap.add_argument("--models-dir", default=None, help="`local` pack: models directory")
    ap.add_argument("--detector", default=None, help="`local` pack: detector ONNX")
    ap.add_argument("--recognizer", default=None, help="`local` pack: recognizer ONNX")
    ap.add_argument("--home", default=None, help="workbench home (for --write home)")
    ap.add_argument("--lfw", required=True, help="LFW directory (images/ and the pairs files)")
    ap.add_argument("--pairs", default="pairsDevTrain.txt", help="fit pairs [pairsDevTrain.txt]")
    ap.add_argument("--check", default="pairsDevTest.txt", help="held-out pairs [pairsDevTest.txt]")
    ap.add_argument("--no-check", action="store_true", help="skip the held-out check")
    ap.add_argument(
        "--impostor-images",
        type=int,
        default=None,
        help="LFW images measuring the false-match rates (N evenly spaced; 0: none) [all]",
    )
    ap.add_argument(
        "--write",
        default="none",
        type=_write_target,
        help="home | package | none | a path to a calibration.json [none]",
    )
    ap.add_argument("--save-scores", default=None, help="write per-pair scores to this .npz")
    ap.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Any:
    from workbench.settings import WorkbenchSettings

    values: dict[str, Any] = {}
    if args.pack is not None:
        values["pack"] = args.pack
    if args.home is not None:
        values["home"] = Path(args.home)
    settings = WorkbenchSettings(**values)
    local = {
        k: v
        for k, v in (
            ("models_dir", Path(args.models_dir) if args.models_dir else None),
            ("detector", args.detector),
            ("recognizer", args.recognizer),
        )
        if v is not None
    }
    if local:
        settings = settings.model_copy(update={"local": settings.local.model_copy(update=local)})
    return settings


def save_scores(result: Any, path: Path) -> None:
    import numpy as np

    arrays: dict[str, Any] = {}
    for part, scores in (("train", result.train), ("check", result.check)):
        if scores is None:
            continue
        arrays[f"{part}_scores"] = scores.scores
        arrays[f"{part}_labels"] = scores.labels
        arrays[f"{part}_pairs"] = np.array(
            [f"{p.name1}\t{p.n1}\t{p.name2}\t{p.n2}" for p in scores.pairs]
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from workbench.errors import WorkbenchError
    from workbench.evaluation.calibrate import calibrate_on_lfw, write_calibration
    from workbench.faces.registry import open_pack

    try:
        settings = settings_from(args)
        pack = open_pack(settings.pack, settings)
        result = calibrate_on_lfw(
            pack,
            args.lfw,
            args.pairs,
            None if args.no_check else args.check,
            limits=settings.limits,
            progress=not args.no_progress,
            impostor_images=args.impostor_images,
        )
        result = write_calibration(result, args.write, settings.home)
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.save_scores:
        save_scores(result, Path(args.save_scores))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
