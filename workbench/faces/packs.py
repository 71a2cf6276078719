"""Model packs (detector + aligner + embedder) behind one small interface, in one registry."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from workbench.errors import ConfigurationError
from workbench.faces.types import AnalyzedFace, DetectedFace
from workbench.registry import Registry
from workbench.settings import DetectionSettings, WorkbenchSettings


class ModelPack(ABC):
    """A named detector + embedder pair.

    ``name`` is recorded with every face and picks the vector collection, so
    two packs whose vectors are not comparable must never share a name.
    ``load`` is idempotent; ``analyze`` loads on first use.
    """

    name: str
    embedding_dim: int
    description: str = ""

    def __init__(self, detection: DetectionSettings) -> None:
        self.detection = detection
        self._loaded = False

    def load(self) -> ModelPack:
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _detect(self, rgb: NDArray[np.uint8]) -> list[DetectedFace]: ...

    @abstractmethod
    def _embed(self, rgb: NDArray[np.uint8], faces: Sequence[DetectedFace]) -> NDArray[np.float32]:
        """(len(faces), embedding_dim) L2-normalised embeddings."""

    def detect(self, rgb: NDArray[np.uint8]) -> list[DetectedFace]:
        """Faces in an RGB photo that pass the score and size settings, best first."""
        self.load()
        return self._keep(self._detect(rgb))

    def _keep(self, faces: Sequence[DetectedFace]) -> list[DetectedFace]:
        kept = [
            f
            for f in faces
            if f.score >= self.detection.min_score
            and min(f.width, f.height) >= self.detection.min_face_size
        ]
        return sorted(kept, key=lambda f: -f.score)

    def analyze(self, rgb: NDArray[np.uint8]) -> list[AnalyzedFace]:
        """Detect, align and embed every face of one RGB photo."""
        faces = self.detect(rgb)
        if not faces:
            return []
        vectors = self._embed(rgb, faces)
        return [AnalyzedFace(f, v) for f, v in zip(faces, vectors, strict=True)]

    def analyze_many(self, images: Sequence[NDArray[np.uint8]]) -> list[list[AnalyzedFace]]:
        """`analyze` over a batch; packs that can batch across photos override this."""
        return [self.analyze(img) for img in images]

    @property
    def device_used(self) -> str:
        """Where the loaded models run (``cpu`` or ``cuda``); packs with GPU support override."""
        return "cpu"

    def embed_at(self, rgb: NDArray[np.uint8], face: DetectedFace) -> NDArray[np.float32]:
        """The embedding of a face whose box and landmarks are given, not detected.

        Evaluations use it to embed where a benchmark says the face is when
        the detector found none (a stated, counted fallback).
        """
        self.load()
        return self._embed(rgb, [face])[0]

    @contextmanager
    def detection_settings(self, **changes: float) -> Iterator[None]:
        """Detect with other `DetectionSettings` inside the block (e.g. a lenient retry).

        Packs whose detector fixes its threshold when loaded (YuNet) only see
        the size change.
        """
        saved = self.detection
        self.detection = saved.model_copy(update=changes)
        try:
            yield
        finally:
            self.detection = saved

    @property
    def collection_name(self) -> str:
        """The Milvus collection of this pack's vectors (one per embedder)."""
        if not self.embedding_dim:  # some packs learn their vector size from the model
            self.load()
        slug = re.sub(r"[^0-9a-zA-Z]+", "_", self.name).strip("_").lower()
        return f"faces_{slug}_{self.embedding_dim}d"


PackFactory = Callable[[WorkbenchSettings], ModelPack]
PACKS: Registry[PackFactory] = Registry("model pack")


def open_pack(spec: str, settings: WorkbenchSettings) -> ModelPack:
    """The pack named ``spec``, or a `local` pack over the directory ``spec``."""
    from workbench.faces import builtin  # noqa: F401 - registers the built-in packs

    if spec in PACKS:
        return PACKS.get(spec)(settings)
    path = Path(spec).expanduser()
    if path.is_dir():
        local = settings.local.model_copy(update={"models_dir": path})
        return PACKS.get("local")(settings.model_copy(update={"local": local}))
    if any(sep in spec for sep in ("/", "\\")) or spec.startswith("."):
        raise ConfigurationError(
            f"model pack {spec!r} looks like a path but is not a directory; give a directory "
            f"holding a detector ONNX and a recognizer ONNX, or one of: {', '.join(PACKS.names())}"
        )
    return PACKS.get(spec)(settings)  # raises UnknownNameError listing the packs
