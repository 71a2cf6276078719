"""What faces are made of: detections, embeddings, and the two halves of a model pack.

A pack is a `Detector` and an `Embedder`. The detector finds faces with 5
landmarks in the ArcFace order; the embedder aligns each face itself from
those landmarks (to its own template and input size) and returns unit
vectors. Keeping the halves apart lets any detector feed any embedder
(``--detector mtcnn --embedder mobilefacenet``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from workbench.settings import DetectionSettings, Metric

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

    def scaled(self, factor: float) -> DetectedFace:
        """The same face with its box and landmarks ``factor`` times larger (from a photo
        decoded at a reduced scale back to the photo's own pixels)."""
        if factor == 1.0:
            return self
        x1, y1, x2, y2 = self.box
        box = (x1 * factor, y1 * factor, x2 * factor, y2 * factor)
        return DetectedFace(box, (self.landmarks * factor).astype(np.float32), self.score)

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class FaceQuality:
    """How usable a face is for recognition (`workbench.faces.quality` measures it)."""

    size: float
    """Shorter side of the box, in pixels of the photo."""
    score: float
    """The detector's confidence."""
    sharpness: float
    """Contrast-normalised Laplacian spread of the face's grey crop (0: flat or blurred)."""
    yaw: float
    pitch: float
    roll: float
    """Head turn, nod and tilt in degrees, estimated from the five landmarks."""

    def scaled(self, factor: float) -> FaceQuality:
        """The same face in a photo ``factor`` times larger (only the size changes)."""
        if factor == 1.0:
            return self
        return FaceQuality(
            self.size * factor, self.score, self.sharpness, self.yaw, self.pitch, self.roll
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "size": round(self.size, 1),
            "score": round(self.score, 4),
            "sharpness": round(self.sharpness, 4),
            "yaw": round(self.yaw, 1),
            "pitch": round(self.pitch, 1),
            "roll": round(self.roll, 1),
        }


@dataclass(frozen=True)
class AnalyzedFace:
    """A detected face with its L2-normalised embedding and how usable it is."""

    detection: DetectedFace
    embedding: NDArray[np.float32]
    quality: FaceQuality | None = None

    def scaled(self, factor: float) -> AnalyzedFace:
        """The same face, its box and landmarks ``factor`` times larger (`DetectedFace.scaled`)."""
        if factor == 1.0:
            return self
        quality = self.quality.scaled(factor) if self.quality is not None else None
        return AnalyzedFace(self.detection.scaled(factor), self.embedding, quality)


def l2_normalize(x: NDArray[np.floating]) -> NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


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
