"""ONNX detectors (SCRFD by insightface, YuNet by OpenCV) and ArcFace-style recognizers,
run by onnxruntime: the `local` pack, any model directory, and insightface's buffalo_l / _s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workbench._optional import require
from workbench.errors import ModelNotFoundError
from workbench.faces.align import align_face
from workbench.faces.pack import ComposedPack
from workbench.faces.runtime import onnx_device_used, onnx_providers, onnx_session_options
from workbench.faces.types import DetectedFace, l2_normalize
from workbench.faces.weights import OnnxFiles, classify_onnx
from workbench.settings import DetectionSettings, Device, Metric


def _get_model(path: Path, hint: str, **kwargs: Any) -> Any:
    """insightface's ``get_model`` with its failures turned into `ModelNotFoundError`.

    A missing, truncated or foreign file makes insightface fail with a bare
    AssertionError or an onnxruntime error that does not say which file; this
    names the file and what to do about it.
    """
    from insightface.model_zoo import get_model

    if not path.is_file():
        raise ModelNotFoundError(f"{path} does not exist; {hint}")
    try:
        return get_model(str(path), **kwargs)
    except Exception as e:  # noqa: BLE001 - AssertionError, onnxruntime's and onnx's errors
        raise ModelNotFoundError(
            f"insightface cannot load {path} ({type(e).__name__}: {e}); the file is truncated, "
            f"corrupt or not a face model; {hint}"
        ) from e


def _to_bgr(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """OpenCV's channel swap: one pass, ~9× faster than a numpy reversed-axis copy."""
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


class _YuNet:
    """OpenCV's YuNet detector, landmarks returned in ArcFace order."""

    def __init__(self, path: Path, input_size: int, score: float) -> None:
        cv2 = require("cv2", "insightface", "the YuNet detector")
        self.input_size = input_size
        self.net = cv2.FaceDetectorYN.create(
            str(path), "", (input_size, input_size), score, 0.3, 5000
        )

    def detect(self, bgr: NDArray[np.uint8]) -> list[DetectedFace]:
        import cv2

        h, w = bgr.shape[:2]
        scale = min(1.0, self.input_size / max(h, w))
        img = bgr if scale == 1.0 else cv2.resize(bgr, (round(w * scale), round(h * scale)))
        self.net.setInputSize((img.shape[1], img.shape[0]))
        _, rows = self.net.detect(img)
        faces = []
        for r in rows if rows is not None else []:
            x, y, bw, bh = (float(v) / scale for v in r[:4])
            # YuNet names points from the subject's side (right eye first), which is
            # the image-left eye: the same order as the ArcFace template.
            lm = (r[4:14].reshape(5, 2) / scale).astype(np.float32)
            faces.append(DetectedFace((x, y, x + bw, y + bh), lm, float(r[14])))
        return faces


@dataclass(frozen=True)
class InputNorm:
    """How a recognizer wants its RGB input scaled: ``(x - mean) / std`` per channel."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    origin: str


#: Recognizers whose authors trained them with another input scaling than
#: insightface's ArcFace default, by sha256 of the file. foamliu/MobileFaceNet
#: (`torchvision.transforms.Normalize` with ImageNet statistics) measured on
#: all 6,000 LFW View 2 pairs with our SCRFD-500MF alignment: 99.18 % with the
#: ArcFace scaling, 99.23 % with its own.
KNOWN_RECOGNIZER_NORMS: dict[str, InputNorm] = {
    "b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507": InputNorm(
        (123.675, 116.28, 103.53), (58.395, 57.12, 57.375), "foamliu/MobileFaceNet (ImageNet)"
    ),
    "90a00ba1d8b0b688af3deb731ed53dca582e6106805d1bc3cfdef55f570493f4": InputNorm(
        (123.675, 116.28, 103.53), (58.395, 57.12, 57.375), "foamliu/MobileFaceNet (ImageNet)"
    ),
}


def recognizer_norm(path: Path, graph_mean: float, graph_std: float) -> InputNorm:
    """The input scaling of a recognizer: a known file's own, else what insightface infers."""
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    known = KNOWN_RECOGNIZER_NORMS.get(digest)
    if known is not None:
        return known
    return InputNorm((graph_mean,) * 3, (graph_std,) * 3, "insightface ArcFace default")


def _scrfd_faces(
    det: Any, bgr: NDArray[np.uint8], detection: DetectionSettings
) -> list[DetectedFace]:
    size = detection.input_size
    boxes, kpss = det.detect(
        bgr, input_size=(size, size), max_num=0, det_thresh=detection.min_score
    )
    return [
        DetectedFace(
            tuple(float(v) for v in b[:4]),  # type: ignore[arg-type]
            np.asarray(k, dtype=np.float32),
            float(b[4]),
        )
        for b, k in zip(boxes, kpss, strict=True)
    ]


class _OnnxPart:
    """One ONNX model file of a pack, named after the file (``det_500m``, ``mobilefacenet``)."""

    #: what to tell the user about a file that cannot be loaded
    replace_hint = "replace it with a working copy"

    def __init__(
        self, path: Path, device: Device = "auto", threads: int | None = None, hint: str = ""
    ) -> None:
        self.path = path
        self.name = path.stem.lower()
        self.device = device
        self.threads = threads
        self.replace_hint = hint or self.replace_hint


class OnnxDetector(_OnnxPart):
    """An SCRFD (run by insightface) or YuNet (run by OpenCV) detector ONNX file.

    Named after the file (``det_500m``). SCRFD reads the input size and
    score threshold at every call; YuNet fixes its score threshold when
    loaded (from the settings it is loaded with) and sees only size changes.
    """

    def __init__(
        self, path: Path, device: Device = "auto", threads: int | None = None, hint: str = ""
    ) -> None:
        super().__init__(path, device, threads, hint)
        self._det: Any = None
        self._yunet: _YuNet | None = None
        self._ctx_id = -1

    def load(self, detection: DetectionSettings | None = None) -> None:
        if self._det is not None or self._yunet is not None:
            return
        detection = detection or DetectionSettings()
        require("insightface", "insightface", f"the {self.name} detector")
        providers, self._ctx_id = onnx_providers(self.device)
        if classify_onnx(self.path) == "yunet":
            self._yunet = _YuNet(self.path, detection.input_size, detection.min_score)
            return
        kwargs = {"providers": providers, "sess_options": onnx_session_options(self.threads)}
        det = _get_model(self.path, self.replace_hint, **kwargs)
        if det is None or not hasattr(det, "detect"):
            raise ModelNotFoundError(f"{self.path} is not a face detector insightface can run")
        size = detection.input_size
        det.prepare(self._ctx_id, input_size=(size, size), det_thresh=detection.min_score)
        if not getattr(det, "use_kps", True):
            raise ModelNotFoundError(
                f"{self.path} gives no landmarks; alignment needs a detector with 5 keypoints"
            )
        self._det = det

    @property
    def device_used(self) -> str:
        if self._det is None:
            return "cpu" if self._yunet is not None else "not loaded"
        return onnx_device_used(self._det.session)

    def detect_many(
        self, images: Sequence[NDArray[np.uint8]], detection: DetectionSettings
    ) -> list[list[DetectedFace]]:
        self.load(detection)
        return [self.detect_bgr(_to_bgr(rgb), detection) for rgb in images]

    def detect_bgr(
        self, bgr: NDArray[np.uint8], detection: DetectionSettings
    ) -> list[DetectedFace]:
        if self._yunet is not None:
            return self._yunet.detect(bgr)
        return _scrfd_faces(self._det, bgr, detection)


class OnnxEmbedder(_OnnxPart):
    """An ArcFace-style recognizer ONNX (112 × 112 input), run by insightface's onnxruntime.

    Faces are aligned onto the ArcFace template from their 5 landmarks and
    scaled as the recognizer's authors trained it (`recognizer_norm`).
    Named after the file (``mobilefacenet``, ``w600k_r50``); ArcFace-family
    models were trained for cosine similarity.
    """

    metric: Metric = "cosine"

    def __init__(
        self, path: Path, device: Device = "auto", threads: int | None = None, hint: str = ""
    ) -> None:
        super().__init__(path, device, threads, hint)
        self.dim = 0  # known once loaded
        self._rec: Any = None

    def load(self) -> None:
        if self._rec is not None:
            return
        require("insightface", "insightface", f"the {self.name} embedder")
        require("onnxruntime", "insightface", f"the {self.name} embedder")
        providers, ctx_id = onnx_providers(self.device)
        kwargs = {"providers": providers, "sess_options": onnx_session_options(self.threads)}
        rec = _get_model(self.path, self.replace_hint, **kwargs)
        if rec is None or not hasattr(rec, "get_feat"):
            raise ModelNotFoundError(f"{self.path} is not an ArcFace-style recognizer")
        rec.prepare(ctx_id)
        self.input_norm = recognizer_norm(self.path, float(rec.input_mean), float(rec.input_std))
        self.dim = int(rec.session.get_outputs()[0].shape[-1])
        batch = rec.session.get_inputs()[0].shape[0]
        self._batch = batch if isinstance(batch, int) and batch > 0 else 32
        self._rec = rec

    @property
    def device_used(self) -> str:
        if self._rec is None:
            return "not loaded"
        return onnx_device_used(self._rec.session)

    def embed_many(
        self,
        images: Sequence[NDArray[np.uint8]],
        faces: Sequence[Sequence[DetectedFace]],
    ) -> NDArray[np.float32]:
        self.load()
        crops: list[NDArray[np.uint8]] = []
        for rgb, fs in zip(images, faces, strict=True):
            if fs:
                bgr = _to_bgr(rgb)
                crops.extend(align_face(bgr, f.landmarks) for f in fs)
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_crops(crops)

    def embed_crops(self, crops: list[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """Embed aligned BGR crops in the recognizer's batch size (1 for fixed-batch exports)."""
        self.load()
        norm = self.input_norm
        mean = np.asarray(norm.mean, dtype=np.float32)
        scale = 1.0 / np.asarray(norm.std, dtype=np.float32)
        rec = self._rec
        feats = []
        for i in range(0, len(crops), self._batch):
            rgb = np.stack(crops[i : i + self._batch])[..., ::-1].astype(np.float32)
            blob = ((rgb - mean) * scale).transpose(0, 3, 1, 2)
            feats.append(rec.session.run(rec.output_names, {rec.input_name: blob})[0])
        return l2_normalize(np.concatenate(feats, axis=0))


class OnnxPack(ComposedPack):
    """An SCRFD or YuNet detector with an ArcFace-style recognizer, both ONNX.

    Each photo is converted to BGR once, for detection and alignment; the
    faces of a whole batch of photos are embedded together.
    """

    def __init__(
        self,
        name: str,
        files: OnnxFiles,
        detection: DetectionSettings,
        device: Device = "auto",
        threads: int | None = None,
        hint: str = "",
    ) -> None:
        self.files = files
        super().__init__(
            OnnxDetector(files.detector, device, threads, hint),
            OnnxEmbedder(files.recognizer, device, threads, hint),
            detection,
            name=name,
            description=f"{files.detector.name} + {files.recognizer.name}",
        )

    def _prepare(self, images: Sequence[NDArray[np.uint8]]) -> list[NDArray[np.uint8]]:
        return [_to_bgr(rgb) for rgb in images]

    def _detect_prepared(self, prepared: Sequence[NDArray[np.uint8]]) -> list[list[DetectedFace]]:
        detector: OnnxDetector = self.detector  # type: ignore[assignment]
        return [detector.detect_bgr(bgr, self.detection) for bgr in prepared]

    def _embed_prepared(
        self, prepared: Sequence[NDArray[np.uint8]], faces: Sequence[Sequence[DetectedFace]]
    ) -> NDArray[np.float32]:
        embedder: OnnxEmbedder = self.embedder  # type: ignore[assignment]
        crops = [
            align_face(bgr, f.landmarks)
            for bgr, fs in zip(prepared, faces, strict=True)
            for f in fs
        ]
        return embedder.embed_crops(crops)
