"""Just enough of torchvision for facenet-pytorch, where no torchvision can be installed.

facenet-pytorch's detector imports two torchvision functions at module import
time: ``transforms.functional.to_tensor`` (used when cropping faces) and
``ops.boxes.batched_nms`` (MTCNN's per-image non-maximum suppression).
torchvision ships compiled kernels built against one exact torch release, and
there is no CPU build of it for the torch the workbench runs on, so `install`
registers pure-torch stand-ins for those two functions instead.

Importing this module imports nothing heavy; torch is imported when a
stand-in runs (it is already loaded by then: facenet-pytorch imports it).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: set to True on every stand-in module, so that code (and people) can tell them from torchvision
SHIM_MARKER = "__workbench_shim__"


def to_tensor(pic: Any) -> torch.Tensor:
    """torchvision's ``to_tensor`` for numpy arrays and PIL images: HWC → CHW.

    As in torchvision, uint8 input is scaled to [0, 1] and any other dtype
    keeps its values (facenet-pytorch passes float32 pixels in [0, 255]).
    """
    import numpy as np
    import torch

    arr = np.asarray(pic)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32).div(255)
    return tensor


def _box_iou_one(box: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """IoU of one (4,) box with (n, 4) boxes; areas as torchvision computes them (no +1)."""
    import torch

    x1 = torch.maximum(box[0], others[:, 0])
    y1 = torch.maximum(box[1], others[:, 1])
    x2 = torch.minimum(box[2], others[:, 2])
    y2 = torch.minimum(box[3], others[:, 3])
    inter = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area + areas - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS: indices of the kept boxes (x1, y1, x2, y2), by decreasing score.

    A box is dropped when its IoU with a better kept box is above
    ``iou_threshold``, as torchvision does. Ties keep input order (stable
    sort, as torchvision's CPU kernel). The loop runs once per *kept* box,
    each step comparing it with all the boxes still in play.
    """
    import torch

    order = torch.sort(scores, descending=True, stable=True).indices
    keep: list[torch.Tensor] = []
    while order.numel() > 0:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        if rest.numel() == 0:
            break
        order = rest[_box_iou_one(boxes[best], boxes[rest]) <= iou_threshold]
    if not keep:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    return torch.stack(keep).to(torch.int64)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """torchvision's ``batched_nms``: NMS within each category of ``idxs``, never across.

    Each category's boxes are shifted by ``idx * (max coordinate + 1)`` so
    that boxes of different categories cannot overlap, then one NMS runs
    over all of them (torchvision's coordinate-offset trick). Returns int64
    indices into ``boxes`` sorted by decreasing score.
    """
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name, f"workbench stand-in for {name} (see {__name__})")
    # A spec lets importlib.util.find_spec answer instead of raising ValueError;
    # no distribution metadata is registered, so version probes still see no torchvision.
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, origin=__name__)
    setattr(module, SHIM_MARKER, True)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def install() -> bool:
    """Make ``import torchvision...`` work for facenet-pytorch; True when the stand-ins are used.

    Does nothing (returns False) when a real torchvision is installed, even a
    broken one: it is never shadowed, and its own import error then surfaces
    where facenet-pytorch imports it. Otherwise registers in ``sys.modules``
    the modules ``torchvision``, ``torchvision.transforms``,
    ``torchvision.transforms.functional`` (`to_tensor`), ``torchvision.ops``
    and ``torchvision.ops.boxes`` (`batched_nms`, `nms`), each with
    ``__workbench_shim__ = True``. Idempotent.
    """
    loaded = sys.modules.get("torchvision")
    if loaded is not None:
        return bool(getattr(loaded, SHIM_MARKER, False))
    try:
        if importlib.util.find_spec("torchvision") is not None:
            return False
    except (ImportError, ValueError):  # a half-registered module: leave it to its owner
        return False
    functional = _module("torchvision.transforms.functional", to_tensor=to_tensor)
    transforms = _module("torchvision.transforms", functional=functional)
    boxes = _module("torchvision.ops.boxes", batched_nms=batched_nms, nms=nms)
    ops = _module("torchvision.ops", boxes=boxes, batched_nms=batched_nms, nms=nms)
    root = _module("torchvision", transforms=transforms, ops=ops)
    for module in (root, transforms, functional, ops, boxes):
        sys.modules[module.__name__] = module
    return True


__all__ = ["SHIM_MARKER", "batched_nms", "install", "nms", "to_tensor"]
