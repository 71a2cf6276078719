"""Where models run: onnxruntime's providers and threads, torch's device and threads.

Every backend asks here, so ``WORKBENCH_DEVICE`` and ``WORKBENCH_THREADS``
mean the same for ONNX, torch and dlib models.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

from loguru import logger

from workbench._optional import require
from workbench.errors import ConfigurationError
from workbench.settings import Device

_warned_spinning = False


def usable_cores() -> int:
    """Cores this process may run on (affinity / container limits), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def onnx_providers(device: Device) -> tuple[list[str], int]:
    """onnxruntime's execution providers for ``device``, and insightface's ``ctx_id``."""
    ort = require("onnxruntime", "insightface", "ONNX model packs")
    available = ort.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], 0
    if device == "cuda":
        raise ConfigurationError(
            f"device 'cuda' was asked for but onnxruntime offers only {available}; install "
            "onnxruntime-gpu with a matching CUDA, or set WORKBENCH_DEVICE=cpu"
        )
    return ["CPUExecutionProvider"], -1


def onnx_session_options(threads: int | None) -> Any:
    """Session options: ``threads`` intra-op threads (default: the usable cores), no spinning."""
    ort = require("onnxruntime", "insightface", "ONNX model packs")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or usable_cores()
    so.inter_op_num_threads = 1
    # Spinning threads burn the core a second process (or Milvus Lite's
    # server thread) needs; passive waits keep two processes on two cores fair.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def onnx_device_used(session: Any) -> str:
    """``cuda`` when an onnxruntime session runs on the GPU, else ``cpu``."""
    return "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"


def import_torch(purpose: str) -> ModuleType:
    """torch, with its OpenMP threads waiting passively when this is the first import."""
    global _warned_spinning
    if "torch" not in sys.modules:
        # torch's OpenMP threads spin while they wait by default; with another
        # process or Milvus Lite's server thread on the same cores that made
        # MTCNN 4-8x slower here. The variable is read once, when torch loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    elif os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE" and not _warned_spinning:
        _warned_spinning = True
        logger.info(
            "torch was imported before {}, without OMP_WAIT_POLICY=PASSIVE: its threads spin "
            "while waiting, which slows MTCNN several times when other work shares the cores; "
            "set OMP_WAIT_POLICY=PASSIVE before importing torch, or WORKBENCH_THREADS",
            purpose,
        )
    return require("torch", "facenet", purpose)


def torch_device(device: Device, threads: int | None) -> Any:
    """The torch device for ``device``; sets torch's CPU threads when ``threads`` is given."""
    torch = require("torch", "facenet", "the facenet pack")
    if threads:
        torch.set_num_threads(threads)
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if device == "cuda":
        raise ConfigurationError(
            f"device 'cuda' was asked for but torch {torch.__version__} sees no CUDA GPU; install "
            "a CUDA build of torch, or set WORKBENCH_DEVICE=cpu"
        )
    return torch.device("cpu")


__all__ = [
    "import_torch",
    "onnx_device_used",
    "onnx_providers",
    "onnx_session_options",
    "torch_device",
    "usable_cores",
]
