"""Helpers shared by the benchmark scripts (paths, machine facts, JSON output, stats)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WORKBENCH_SHARED", REPO.parent / "shared")).resolve()
MODELS = SHARED / "models"
FACES_DEV = SHARED / "data" / "faces-dev"
LFW = SHARED / "data" / "lfw"
RESULTS = REPO / "benchmarks" / "results"

LOCAL_DETECTOR = "buffalo_sc/det_500m.onnx"
LOCAL_RECOGNIZER = "mobilefacenet/MobileFaceNet.onnx"


def workbench_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment for a `workbench` subprocess on ``home``: none of the
    caller's ``WORKBENCH_*``, the `local` pack over the shared models, no downloads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(
        WORKBENCH_HOME=str(home),
        WORKBENCH_PACK="local",
        WORKBENCH_LOCAL__MODELS_DIR=str(MODELS),
        WORKBENCH_LOCAL__DETECTOR=LOCAL_DETECTOR,
        WORKBENCH_LOCAL__RECOGNIZER=LOCAL_RECOGNIZER,
        WORKBENCH_ALLOW_DOWNLOAD="false",
        **extra,
    )
    return env


def run_checked(cmd: Sequence[str], env: dict[str, str]) -> str:
    """``cmd``'s stdout; when it fails, exits naming the command with its stderr's tail."""
    import subprocess

    proc = subprocess.run(list(cmd), env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def quiet_logs(level: str = "WARNING") -> None:
    """Keep loguru (the package's logger) to warnings and above."""
    try:
        from workbench.monitoring.logs import configure_logging
    except ImportError:  # an older package: plain loguru
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level=level)
    else:
        configure_logging(level)  # also stops the package from re-adding its INFO sink


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on (and how busy it was)."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": _cpu_model(),
        "load_average_at_start": load_average(),
    }
    versions = {}
    for mod in ("numpy", "onnxruntime", "insightface", "cv2", "pymilvus", "milvus_lite", "dlib"):
        try:
            m = __import__(mod)
            versions[mod] = getattr(m, "__version__", "?")
        except Exception:  # noqa: BLE001 - optional modules
            continue
    info["versions"] = versions
    info["code"] = code_state()
    return info


def code_state() -> dict[str, Any]:
    """The commit measured and which package files differed from it (others edit in parallel)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "workbench").splitlines()]
    return {"commit": git("rev-parse", "HEAD").strip(), "workbench_changed_files": changed}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return (
        float(np.percentile(np.asarray(values, dtype=np.float64), q))
        if len(values)
        else float("nan")
    )


def write_json(prefix: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out or RESULTS / f"{prefix}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def release_milvus_lite(uri: str) -> bool:
    """Stop the in-process Milvus Lite server of ``uri`` as process exit would.

    Milvus Lite 3 serves each ``.db`` path from a gRPC thread that outlives
    ``MilvusClient.close()``; stopping it flushes the MemTable to a segment and
    waits for the background index build, which is what an exiting CLI pays.
    Returns False when this milvus_lite has no such server manager.
    """
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return False
    server_manager_instance.release_server(uri)
    return True
