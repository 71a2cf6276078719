"""The two halves of a model pack: a face detector and a face embedder.

A pack is a detector and an embedder. The detector finds faces with 5
landmarks in the ArcFace order; the embedder aligns each face itself from
those landmarks (to its own template and input size) and returns unit
vectors. Keeping the halves apart lets any detector feed any embedder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from workbench.faces.types import DetectedFace


class Detector(Protocol):
    """Finds faces in an RGB photo (uint8, H × W × 3)."""

    name: str

    def load(self) -> None:
        """Load the weights (idempotent); a missing file raises `ModelNotFoundError`."""
        ...

    def detect(self, rgb: NDArray[np.uint8]) -> list[DetectedFace]:
        """Every candidate with its score in [0, 1]; the pack applies score and size limits."""
        ...


class Embedder(Protocol):
    """Turns faces, given by box and 5 landmarks, into L2-normalised vectors."""

    name: str
    dim: int

    def load(self) -> None: ...

    def embed(self, rgb: NDArray[np.uint8], faces: Sequence[DetectedFace]) -> NDArray[np.float32]:
        """(len(faces), dim) unit vectors; each face is aligned from its landmarks."""
        ...


__all__ = ["Detector", "Embedder"]
