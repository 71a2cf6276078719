"""Model packs: a detector and an embedder behind one small interface (`ModelPack`)."""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from numpy.typing import NDArray

from workbench.faces.quality import measure as measure_quality
from workbench.faces.types import AnalyzedFace, DetectedFace, Detector, Embedder
from workbench.monitoring.metrics import observe_stage
from workbench.settings import DetectionSettings, Metric


class ModelPack(ABC):
    """A named detector + embedder pair.

    ``name`` is recorded with every face and picks the vector collection, so
    two packs whose vectors are not comparable must never share a name.
    ``load`` is idempotent; ``analyze`` loads on first use.
    """

    name: str
    embedding_dim: int
    description: str = ""
    metric: Metric = "cosine"
    """The distance the embedder was trained for; new collections use it unless set."""

    def __init__(self, detection: DetectionSettings) -> None:
        self.detection = detection
        self._loaded = False

    @property
    def loaded(self) -> bool:
        """Whether the models are loaded (asking loads nothing)."""
        return self._loaded

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
        return keep_faces(faces, self.detection)

    def analyze(self, rgb: NDArray[np.uint8]) -> list[AnalyzedFace]:
        """Detect, align and embed every face of one RGB photo."""
        faces = self.detect(rgb)
        if not faces:
            return []
        vectors = self._embed(rgb, faces)
        return [
            AnalyzedFace(f, v, measure_quality(rgb, f)) for f, v in zip(faces, vectors, strict=True)
        ]

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
        return f"faces_{_slug(self.name)}_{self.embedding_dim}d"


def keep_faces(faces: Sequence[DetectedFace], detection: DetectionSettings) -> list[DetectedFace]:
    """Faces that pass the score and size settings, best first."""
    kept = [
        f
        for f in faces
        if f.score >= detection.min_score and min(f.width, f.height) >= detection.min_face_size
    ]
    return sorted(kept, key=lambda f: -f.score)


PAD_SIDE = 640
"""The photo is scaled to at most this side before padding (the detectors' input size)."""


def padded_canvas(rgb: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], tuple[float, int, int]]:
    """The photo, scaled to at most `PAD_SIDE`, centred on a square canvas twice its longer
    side filled with its mean colour; and (scale, x offset, y offset) to map back."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = min(1.0, PAD_SIDE / max(h, w))
    small = rgb
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    sh, sw = small.shape[:2]
    side = 2 * max(sh, sw)
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = small.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    x0, y0 = (side - sw) // 2, (side - sh) // 2
    canvas[y0 : y0 + sh, x0 : x0 + sw] = small
    return canvas, (scale, x0, y0)


def unpad(
    face: DetectedFace, place: tuple[float, int, int], shape: tuple[int, ...]
) -> DetectedFace:
    """A face found on `padded_canvas` in the photo's own pixels (the box kept inside it)."""
    scale, x0, y0 = place
    h, w = shape[:2]
    x1, y1, x2, y2 = face.box
    box = (
        max(0.0, (x1 - x0) / scale),
        max(0.0, (y1 - y0) / scale),
        min(float(w), (x2 - x0) / scale),
        min(float(h), (y2 - y0) / scale),
    )
    marks = ((face.landmarks - np.array([x0, y0], dtype=np.float32)) / scale).astype(np.float32)
    return DetectedFace(box, marks, face.score)


def observe_per_photo(stage: str, seconds: float, photos: int) -> None:
    """Record a batch's time for ``stage`` as ``photos`` equal per-photo observations.

    Decode and store are timed per photo, so detect and embed are too: a
    dashboard's p95 then compares like with like whatever the batch size.
    """
    for _ in range(photos):
        observe_stage(stage, seconds / photos)


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


class ComposedPack(ModelPack):
    """Any `Detector` feeding any `Embedder`.

    Every built-in pack is one (``local`` is SCRFD + an ArcFace-style ONNX,
    ``dlib`` is HOG + dlib's ResNet, ``facenet`` is MTCNN + InceptionResnetV1),
    and ``--detector`` / ``--embedder`` swap either half. ``name`` is the
    pack's own name, else ``<detector>+<embedder>``; faces of one embedder
    share a collection whatever found them (each vector carries its pack).
    """

    def __init__(
        self,
        detector: Detector,
        embedder: Embedder,
        detection: DetectionSettings,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        super().__init__(detection)
        self.detector = detector
        self.embedder = embedder
        self.name = name or f"{detector.name}+{embedder.name}"
        self.description = description or f"{detector.name} detector + {embedder.name} embedder"

    @property
    def embedding_dim(self) -> int:  # type: ignore[override]
        return self.embedder.dim

    @property
    def metric(self) -> Metric:
        return self.embedder.metric

    @property
    def parts(self) -> tuple[str, str]:
        return self.detector.name, self.embedder.name

    def with_parts(
        self, detector: Detector | None = None, embedder: Embedder | None = None
    ) -> ComposedPack:
        """This pack with either half replaced; unchanged (same name) when neither differs."""
        det = detector if detector is not None and detector.name != self.detector.name else None
        emb = embedder if embedder is not None and embedder.name != self.embedder.name else None
        if det is None and emb is None:
            return self
        return ComposedPack(det or self.detector, emb or self.embedder, self.detection)

    def _load(self) -> None:
        self.detector.load(self.detection)
        self.embedder.load()

    @property
    def device_used(self) -> str:
        return self.embedder.device_used if self.loaded else "not loaded"

    def _detect(self, rgb: NDArray[np.uint8]) -> list[DetectedFace]:
        return self.detector.detect_many([rgb], self.detection)[0]

    def _embed(self, rgb: NDArray[np.uint8], faces: Sequence[DetectedFace]) -> NDArray[np.float32]:
        return self.embedder.embed_many([rgb], [faces])

    def analyze(self, rgb: NDArray[np.uint8]) -> list[AnalyzedFace]:
        return self.analyze_many([rgb])[0]

    def analyze_many(self, images: Sequence[NDArray[np.uint8]]) -> list[list[AnalyzedFace]]:
        """Detect the batch (detectors that can, together), then embed all its faces at once.

        A photo where nothing is found is looked at once more on a padded canvas
        (`detection.pad_retry`): a face that fills the whole photo (a face crop, an ID
        photo, an avatar) is larger than detectors are trained to see.
        """
        self.load()
        start = time.perf_counter()
        prepared = self._prepare(images)
        per_photo = [self._keep(faces) for faces in self._detect_prepared(prepared)]
        empty = [i for i, faces in enumerate(per_photo) if not faces]
        if empty and self.detection.pad_retry:
            for i, faces in zip(
                empty, self._detect_padded([images[i] for i in empty]), strict=True
            ):
                per_photo[i] = faces
        observe_per_photo("detect", time.perf_counter() - start, len(images))
        if not any(per_photo):
            return [[] for _ in images]
        start = time.perf_counter()
        vectors = iter(self._embed_prepared(prepared, per_photo))
        observe_per_photo("embed", time.perf_counter() - start, sum(1 for f in per_photo if f))
        return [
            [AnalyzedFace(f, next(vectors), measure_quality(img, f)) for f in faces]
            for img, faces in zip(images, per_photo, strict=True)
        ]

    def _prepare(self, images: Sequence[NDArray[np.uint8]]) -> Sequence[NDArray[np.uint8]]:
        """The photos as both halves want them (one conversion shared by detection and
        alignment); RGB as given by default."""
        return images

    def _detect_prepared(self, prepared: Sequence[NDArray[np.uint8]]) -> list[list[DetectedFace]]:
        return self.detector.detect_many(prepared, self.detection)

    def _embed_prepared(
        self, prepared: Sequence[NDArray[np.uint8]], faces: Sequence[Sequence[DetectedFace]]
    ) -> NDArray[np.float32]:
        return self.embedder.embed_many(prepared, faces)

    def _detect_padded(self, images: Sequence[NDArray[np.uint8]]) -> list[list[DetectedFace]]:
        """Detect on each photo centred in a canvas twice its size, in the photo's pixels."""
        canvases, placements = zip(*(padded_canvas(img) for img in images), strict=True)
        found = self._detect_prepared(self._prepare(list(canvases)))
        return [
            self._keep([unpad(f, place, img.shape) for f in faces])
            for faces, place, img in zip(found, placements, images, strict=True)
        ]

    @property
    def collection_name(self) -> str:
        """One collection per embedder: ``faces_<embedder>_<dim>d``."""
        if not self.embedding_dim:  # ONNX embedders learn their vector size from the model
            self.load()
        return f"faces_{_slug(self.embedder.name)}_{self.embedding_dim}d"
