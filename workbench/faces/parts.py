"""The two halves of a model pack: a face detector and a face embedder.

A pack is a detector and an embedder. The detector finds faces with 5
landmarks in the ArcFace order; the embedder aligns each face itself from
those landmarks (to its own template and input size) and returns unit
vectors. Keeping the halves apart lets any detector feed any embedder
(``--detector mtcnn --embedder mobilefacenet``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from workbench.faces.types import DetectedFace
from workbench.settings import DetectionSettings, Metric


class Detector(Protocol):
    """Finds faces in RGB photos (uint8, H × W × 3)."""

    name: str
    """Recorded in the pack name of every face it found (``mtcnn``, ``det_500m``, ``dlib-hog``)."""

    def load(self, detection: DetectionSettings | None = None) -> None:
        """Load the weights (idempotent); a missing file raises `ModelNotFoundError`.

        A detector that fixes settings when loaded (YuNet's score threshold and
        input size) takes them from ``detection``; the others read theirs per call.
        """
        ...

    @property
    def device_used(self) -> str:
        """``cpu``, ``cuda`` or ``not loaded``."""
        ...

    def detect_many(
        self, images: Sequence[NDArray[np.uint8]], detection: DetectionSettings
    ) -> list[list[DetectedFace]]:
        """Every candidate of each photo with its score in [0, 1].

        ``detection`` is read at every call (a lenient retry changes it); the
        pack applies its score and size limits to what comes back.
        """
        ...


class Embedder(Protocol):
    """Turns faces, given by box and 5 landmarks, into L2-normalised vectors."""

    name: str
    """Names the vector space: faces of one embedder share a Milvus collection."""
    dim: int
    """Vector size; 0 until loaded for embedders that read it from the model."""
    metric: Metric
    """The distance the model was trained for (``cosine`` or ``l2``); collections default to it."""

    def load(self) -> None: ...

    @property
    def device_used(self) -> str: ...

    def embed_many(
        self,
        images: Sequence[NDArray[np.uint8]],
        faces: Sequence[Sequence[DetectedFace]],
    ) -> NDArray[np.float32]:
        """(total faces, dim) unit vectors, photo by photo in order; each face aligned here."""
        ...


__all__ = ["Detector", "Embedder"]
