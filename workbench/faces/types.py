"""Typed results of detection and embedding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Box = tuple[float, float, float, float]
"""x1, y1, x2, y2 in pixels of the upright photo."""


@dataclass(frozen=True)
class DetectedFace:
    """One face found in a photo.

    ``landmarks`` is a (5, 2) array in the ArcFace order, as seen in the
    image: left eye, right eye, nose tip, left mouth corner, right mouth corner.
    """

    box: Box
    landmarks: NDArray[np.float32]
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class AnalyzedFace:
    """A detected face with its L2-normalised embedding."""

    detection: DetectedFace
    embedding: NDArray[np.float32]


def l2_normalize(x: NDArray[np.floating]) -> NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
