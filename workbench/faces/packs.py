"""Model packs (detector + aligner + embedder) behind one small interface, in one registry."""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from workbench.errors import ConfigurationError, UnknownNameError
from workbench.faces.parts import Detector, Embedder
from workbench.faces.types import AnalyzedFace, DetectedFace
from workbench.monitoring import observe_stage
from workbench.registry import Registry
from workbench.settings import DetectionSettings, Metric, WorkbenchSettings


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
        return f"faces_{_slug(self.name)}_{self.embedding_dim}d"


def keep_faces(faces: Sequence[DetectedFace], detection: DetectionSettings) -> list[DetectedFace]:
    """Faces that pass the score and size settings, best first."""
    kept = [
        f
        for f in faces
        if f.score >= detection.min_score and min(f.width, f.height) >= detection.min_face_size
    ]
    return sorted(kept, key=lambda f: -f.score)


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
        return self.embedder.device_used if self._loaded else "not loaded"

    def _detect(self, rgb: NDArray[np.uint8]) -> list[DetectedFace]:
        return self.detector.detect_many([rgb], self.detection)[0]

    def _embed(self, rgb: NDArray[np.uint8], faces: Sequence[DetectedFace]) -> NDArray[np.float32]:
        return self.embedder.embed_many([rgb], [faces])

    def analyze(self, rgb: NDArray[np.uint8]) -> list[AnalyzedFace]:
        return self.analyze_many([rgb])[0]

    def analyze_many(self, images: Sequence[NDArray[np.uint8]]) -> list[list[AnalyzedFace]]:
        """Detect the batch (detectors that can, together), then embed all its faces at once."""
        self.load()
        start = time.perf_counter()
        found = self.detector.detect_many(images, self.detection)
        observe_per_photo("detect", time.perf_counter() - start, len(images))
        per_photo = [self._keep(faces) for faces in found]
        if not any(per_photo):
            return [[] for _ in images]
        start = time.perf_counter()
        vectors = iter(self.embedder.embed_many(images, per_photo))
        observe_per_photo("embed", time.perf_counter() - start, sum(1 for f in per_photo if f))
        return [[AnalyzedFace(f, next(vectors)) for f in faces] for faces in per_photo]

    @property
    def collection_name(self) -> str:
        """One collection per embedder: ``faces_<embedder>_<dim>d``."""
        if not self.embedding_dim:  # ONNX embedders learn their vector size from the model
            self.load()
        return f"faces_{_slug(self.embedder.name)}_{self.embedding_dim}d"


PackFactory = Callable[[WorkbenchSettings], ModelPack]
DetectorFactory = Callable[[WorkbenchSettings], Detector]
EmbedderFactory = Callable[[WorkbenchSettings], Embedder]
PACKS: Registry[PackFactory] = Registry("model pack")
DETECTORS: Registry[DetectorFactory] = Registry("face detector")
EMBEDDERS: Registry[EmbedderFactory] = Registry("face embedder")


def open_detector(spec: str, settings: WorkbenchSettings) -> Detector:
    """A registered detector (``scrfd``, ``yunet``, ``mtcnn``, ``dlib-hog``) or an ONNX file."""
    from workbench.faces import builtin  # noqa: F401 - registers the built-in parts

    if spec in DETECTORS:
        return DETECTORS.get(spec)(settings)
    if spec.lower().endswith(".onnx"):
        from workbench.faces.onnx_pack import OnnxDetector

        return OnnxDetector.from_file(Path(spec), settings)
    return DETECTORS.get(spec)(settings)  # raises UnknownNameError listing the detectors


def open_embedder(spec: str, settings: WorkbenchSettings) -> Embedder:
    """A registered embedder, a recognizer ONNX file, or a recognizer in the local models dir
    named by its file name (``mobilefacenet`` for ``MobileFaceNet.onnx``)."""
    from workbench.faces import builtin  # noqa: F401 - registers the built-in parts

    if spec in EMBEDDERS:
        return EMBEDDERS.get(spec)(settings)
    from workbench.faces.onnx_pack import OnnxEmbedder

    if spec.lower().endswith(".onnx"):
        return OnnxEmbedder.from_file(Path(spec), settings)
    named = OnnxEmbedder.named(spec, settings)
    if named is not None:
        return named
    raise UnknownNameError(
        "face embedder", spec, [*EMBEDDERS.names(), "<a recognizer in the local models dir>"]
    )


def split_spec(spec: str) -> tuple[str, str] | None:
    """``("mtcnn", "mobilefacenet")`` for ``"mtcnn+mobilefacenet"``; None for a pack name."""
    if "+" not in spec or spec.count("+") != 1 or ":" in spec:
        return None
    det, emb = (part.strip() for part in spec.split("+"))
    return (det, emb) if det and emb else None


def open_pack(spec: str, settings: WorkbenchSettings) -> ModelPack:
    """The pack ``spec`` names, with the settings' ``detector`` / ``embedder`` swapped in.

    ``spec`` is a registered pack (``local``, ``facenet``, ...), a directory of
    ONNX models (a `local` pack over it), or ``<detector>+<embedder>``.
    """
    pack = _open_named_pack(spec, settings)
    if settings.detector is None and settings.embedder is None:
        return pack
    if not isinstance(pack, ComposedPack):
        raise ConfigurationError(
            f"pack {pack.name!r} is not made of a detector and an embedder; "
            "--detector / --embedder cannot change it"
        )
    return pack.with_parts(
        open_detector(settings.detector, settings) if settings.detector else None,
        open_embedder(settings.embedder, settings) if settings.embedder else None,
    )


def _open_named_pack(spec: str, settings: WorkbenchSettings) -> ModelPack:
    from workbench.faces import builtin  # noqa: F401 - registers the built-in packs

    if spec in PACKS:
        return PACKS.get(spec)(settings)
    parts = split_spec(spec)
    if parts is not None:
        det, emb = parts
        return ComposedPack(
            open_detector(det, settings), open_embedder(emb, settings), settings.detection
        )
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
