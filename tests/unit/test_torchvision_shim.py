"""The torchvision stand-ins facenet-pytorch imports: NMS against a numpy reference, install()."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from workbench.faces.backends import torchvision_shim

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def torch() -> ModuleType:
    """torch, imported when a test runs rather than at collection: the facenet pack imports
    it first in a full run and sets its OpenMP threads to wait passively (see facenet_pack)."""
    import torch

    return torch


def reference_batched_nms(
    boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, iou_threshold: float
) -> list[int]:
    """Textbook greedy NMS per category, merged by decreasing score (torchvision's contract)."""
    keep: list[int] = []
    for c in np.unique(idxs):
        members = np.flatnonzero(idxs == c)
        order = members[np.argsort(-scores[members], kind="stable")]
        alive = np.ones(len(order), dtype=bool)
        for a in range(len(order)):
            if not alive[a]:
                continue
            i = order[a]
            keep.append(int(i))
            for b in range(a + 1, len(order)):
                j = order[b]
                w = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
                h = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
                inter = max(w, 0.0) * max(h, 0.0)
                area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
                area_j = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
                if inter / (area_i + area_j - inter) > iou_threshold:
                    alive[b] = False
    return sorted(keep, key=lambda k: -scores[k])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_batched_nms_matches_reference(torch: ModuleType, seed: int, iou_threshold: float) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    xy = rng.uniform(0, 40, size=(n, 2))
    wh = rng.uniform(10, 40, size=(n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, size=n).astype(np.float32)
    idxs = rng.integers(0, 3, size=n)
    kept = torchvision_shim.batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(idxs), iou_threshold
    )
    assert kept.dtype == torch.int64
    expected = reference_batched_nms(boxes, scores, idxs, iou_threshold)
    assert kept.tolist() == expected
    assert 0 < len(expected) < n  # the case really suppresses something, and keeps something


def test_batched_nms_never_merges_categories(torch: ModuleType) -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [1.0, 1, 10, 10]])
    scores = torch.tensor([0.5, 0.9, 0.8])
    assert torchvision_shim.batched_nms(boxes, scores, torch.tensor([0, 1, 1]), 0.5).tolist() == [
        1,
        0,
    ]
    empty = torchvision_shim.batched_nms(
        torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5
    )
    assert empty.dtype == torch.int64 and empty.numel() == 0


def test_to_tensor_scales_uint8_only(torch: ModuleType) -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    t = torchvision_shim.to_tensor(rgb)
    assert t.shape == (3, 2, 3) and t.dtype == torch.float32
    assert torch.allclose(t[:, 1, 2], torch.from_numpy(rgb[1, 2].astype(np.float32) / 255))
    f = torchvision_shim.to_tensor(rgb.astype(np.float32))
    assert torch.equal(f[:, 1, 2], torch.from_numpy(rgb[1, 2].astype(np.float32)))


def _python(code: str, extra_path: Path | None = None) -> str:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), str(REPO)])
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is not None,
    reason="a real torchvision is installed here, so the stand-ins are (rightly) never used",
)
def test_install_registers_marked_stand_ins() -> None:
    out = _python(
        """
import importlib.util, sys
from workbench.faces.backends import torchvision_shim
assert torchvision_shim.install() is True
assert torchvision_shim.install() is True  # idempotent
from torchvision.transforms import functional as F
from torchvision.ops.boxes import batched_nms
import torchvision
names = [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]
assert all(sys.modules[m].__workbench_shim__ for m in names), names
assert importlib.util.find_spec("torchvision") is not None  # answers, does not raise
assert batched_nms is torchvision_shim.batched_nms and F.to_tensor is torchvision_shim.to_tensor
print(sorted(names))
"""
    )
    assert "torchvision.ops.boxes" in out and "torchvision.transforms.functional" in out


def test_install_never_shadows_a_real_torchvision(tmp_path: Path) -> None:
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text("REAL = True\n")
    out = _python(
        """
from workbench.faces.backends import torchvision_shim
print(torchvision_shim.install())
import torchvision
print(getattr(torchvision, "REAL", False), hasattr(torchvision, "__workbench_shim__"))
""",
        extra_path=tmp_path,
    )
    assert out.splitlines() == ["False", "True False"]
