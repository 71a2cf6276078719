"""ONNX packs run by insightface's runtime (onnxruntime): `local` directories, buffalo_l/_s."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from workbench._optional import require
from workbench.errors import ConfigurationError, ModelNotFoundError
from workbench.faces.align import align_face
from workbench.faces.packs import ComposedPack, observe_per_photo
from workbench.faces.types import AnalyzedFace, DetectedFace, l2_normalize
from workbench.monitoring import stage
from workbench.settings import DetectionSettings, Device, Metric, WorkbenchSettings

OnnxRole = Literal["scrfd", "yunet", "recognizer", "other"]


def classify_onnx(path: Path) -> OnnxRole:
    """What an ONNX file is, read from its graph (inputs, outputs), not its name."""
    onnx = require("onnx", "insightface", "reading ONNX model files")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - onnx raises several unrelated types
        raise ModelNotFoundError(f"{path}: not a readable ONNX model ({e})") from e
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    outputs = [o.name for o in graph.output]
    if any(name.startswith("obj_") for name in outputs):
        return "yunet"
    if len(inputs) == 1:
        dims = [d.dim_value or None for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) == 4 and dims[2:] == [112, 112] and len(outputs) == 1:
            return "recognizer"
        if len(dims) == 4 and len(outputs) in (6, 9, 10, 15):
            return "scrfd"
    return "other"


def _providers(device: Device) -> tuple[list[str], int]:
    ort = require("onnxruntime", "insightface", "ONNX model packs")
    available = ort.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], 0
    if device == "cuda":
        raise ConfigurationError(
            f"device 'cuda' was asked for but onnxruntime offers only {available}; install "
            "onnxruntime-gpu with a matching CUDA, or set WORKBENCH_DEVICE=cpu"
        )
    return ["CPUExecutionProvider"], -1


def _usable_cores() -> int:
    """Cores this process may run on (affinity / container limits), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _session_options(threads: int | None) -> Any:
    ort = require("onnxruntime", "insightface", "ONNX model packs")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or _usable_cores()
    so.inter_op_num_threads = 1
    # Spinning threads burn the core a second process (or Milvus Lite's
    # server thread) needs; passive waits keep two processes on two cores fair.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


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
class OnnxFiles:
    detector: Path
    recognizer: Path


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


def find_local_models(directory: Path, detector: str | None, recognizer: str | None) -> OnnxFiles:
    """Pick the detector and recognizer ONNX in ``directory`` (searched recursively).

    Explicit names win; otherwise each role must have exactly one candidate.
    """
    directory = directory.expanduser()
    if not directory.is_dir():
        raise ModelNotFoundError(
            f"model directory {directory} does not exist; put a detector ONNX (SCRFD or YuNet) "
            "and an ArcFace-style recognizer ONNX there, or point WORKBENCH_LOCAL__MODELS_DIR "
            "(or --pack DIR) at such a directory"
        )
    candidates: dict[str, list[Path]] = {"detector": [], "recognizer": []}
    if detector is None or recognizer is None:
        for p in sorted(directory.rglob("*.onnx")):
            role = classify_onnx(p)
            if role in ("scrfd", "yunet"):
                candidates["detector"].append(p)
            elif role == "recognizer":
                candidates["recognizer"].append(p)

    def pick(role: str, explicit: str | None) -> Path:
        if explicit is not None:
            p = Path(explicit).expanduser()
            p = p if p.is_absolute() else directory / p
            if not p.is_file():
                raise ModelNotFoundError(f"{role} model {p} does not exist")
            return p
        found = candidates[role]
        env = f"WORKBENCH_LOCAL__{role.upper()}"
        if not found:
            kind = "SCRFD or YuNet detector" if role == "detector" else "ArcFace-style recognizer"
            raise ModelNotFoundError(f"no {kind} ONNX (*.onnx) found under {directory}")
        if len(found) > 1:
            names = ", ".join(str(p.relative_to(directory)) for p in found)
            raise ConfigurationError(
                f"{directory} holds several {role} models ({names}); choose one with "
                f"{env}=<path relative to the directory>"
            )
        return found[0]

    return OnnxFiles(pick("detector", detector), pick("recognizer", recognizer))


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

    @classmethod
    def from_file(cls, path: Path, settings: WorkbenchSettings) -> OnnxDetector:
        path = path.expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"detector model {path} does not exist")
        if classify_onnx(path) not in ("scrfd", "yunet"):
            raise ModelNotFoundError(f"{path} is not an SCRFD or YuNet face detector")
        return cls(path, settings.device, settings.threads)

    def load(self, detection: DetectionSettings | None = None) -> None:
        if self._det is not None or self._yunet is not None:
            return
        detection = detection or DetectionSettings()
        require("insightface", "insightface", f"the {self.name} detector")
        providers, self._ctx_id = _providers(self.device)
        if classify_onnx(self.path) == "yunet":
            self._yunet = _YuNet(self.path, detection.input_size, detection.min_score)
            return
        kwargs = {"providers": providers, "sess_options": _session_options(self.threads)}
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
        return "cuda" if "CUDAExecutionProvider" in self._det.session.get_providers() else "cpu"

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

    @classmethod
    def from_file(cls, path: Path, settings: WorkbenchSettings) -> OnnxEmbedder:
        path = path.expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"recognizer model {path} does not exist")
        if classify_onnx(path) != "recognizer":
            raise ModelNotFoundError(f"{path} is not an ArcFace-style recognizer (112 × 112 input)")
        return cls(path, settings.device, settings.threads)

    @classmethod
    def named(cls, name: str, settings: WorkbenchSettings) -> OnnxEmbedder | None:
        """The recognizer ONNX of the local models dir whose file is called ``name``."""
        root = settings.local.models_dir.expanduser()
        if not root.is_dir():
            return None
        found = [
            p
            for p in sorted(root.rglob("*.onnx"))
            if p.stem.lower() == name.lower() and classify_onnx(p) == "recognizer"
        ]
        if len(found) > 1:
            raise ConfigurationError(
                f"{root} holds several recognizers called {name} "
                f"({', '.join(str(p.relative_to(root)) for p in found)}); give the file's path"
            )
        return cls(found[0], settings.device, settings.threads) if found else None

    def load(self) -> None:
        if self._rec is not None:
            return
        require("insightface", "insightface", f"the {self.name} embedder")
        require("onnxruntime", "insightface", f"the {self.name} embedder")
        providers, ctx_id = _providers(self.device)
        kwargs = {"providers": providers, "sess_options": _session_options(self.threads)}
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
        return "cuda" if "CUDAExecutionProvider" in self._rec.session.get_providers() else "cpu"

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

    def analyze_many(self, images: Sequence[NDArray[np.uint8]]) -> list[list[AnalyzedFace]]:
        self.load()
        detector: OnnxDetector = self.detector  # type: ignore[assignment]
        embedder: OnnxEmbedder = self.embedder  # type: ignore[assignment]
        per_photo: list[list[DetectedFace]] = []
        crops: list[NDArray[np.uint8]] = []
        align_seconds = 0.0
        for rgb in images:
            with stage("detect"):
                bgr = _to_bgr(rgb)
                faces = self._keep(detector.detect_bgr(bgr, self.detection))
            per_photo.append(faces)
            start = time.perf_counter()
            crops.extend(align_face(bgr, f.landmarks) for f in faces)
            align_seconds += time.perf_counter() - start
        if not crops:
            return [[] for _ in images]
        start = time.perf_counter()
        vectors = iter(embedder.embed_crops(crops))
        # Alignment prepares the embedder's input, so it counts as embedding.
        embed_seconds = align_seconds + time.perf_counter() - start
        observe_per_photo("embed", embed_seconds, sum(1 for f in per_photo if f))
        return [[AnalyzedFace(f, next(vectors)) for f in faces] for faces in per_photo]

    @classmethod
    def from_settings(cls, settings: WorkbenchSettings) -> OnnxPack:
        files = find_local_models(
            settings.local.models_dir, settings.local.detector, settings.local.recognizer
        )
        name = f"local:{files.detector.stem}+{files.recognizer.stem}".lower()
        return cls(name, files, settings.detection, settings.device, settings.threads)


INSIGHTFACE_PACK_FILES: dict[str, tuple[str, str]] = {
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
    "buffalo_s": ("det_500m.onnx", "w600k_mbf.onnx"),
}


def _online(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout`` seconds.

    The name lookup is not covered by a socket timeout (a machine with an
    unreachable DNS server can block in it for many seconds), so the probe
    runs in a daemon thread and is abandoned after ``timeout``.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, name="workbench-online-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


_ZOO_HINT = (
    "delete it and download the pack again (or unzip a fresh copy of the pack's .zip "
    "from the insightface model zoo there)"
)


class InsightfacePack(OnnxPack):
    """insightface's own packs, from ``<insightface_root>/models/<name>/``."""

    @classmethod
    def from_settings(cls, name: str, settings: WorkbenchSettings) -> InsightfacePack:  # type: ignore[override]
        det_file, rec_file = INSIGHTFACE_PACK_FILES[name]
        root = settings.insightface_root.expanduser()
        pack_dir = root / "models" / name
        missing = [f for f in (det_file, rec_file) if not (pack_dir / f).is_file()]
        if missing and settings.allow_download and _online():
            _download(name, root, force=pack_dir.exists())
            missing = [f for f in (det_file, rec_file) if not (pack_dir / f).is_file()]
        if missing:
            why = (
                "downloads are off (WORKBENCH_ALLOW_DOWNLOAD=false)"
                if not settings.allow_download
                else "this machine cannot reach the insightface model zoo"
            )
            raise ModelNotFoundError(
                f"the {name} pack needs {', '.join(missing)} in {pack_dir}, and {why}. "
                f"On a machine with internet, download {_zoo_url(name)}, unzip it so that "
                f"{pack_dir / det_file} and {pack_dir / rec_file} exist, or set "
                f"WORKBENCH_INSIGHTFACE_ROOT to a folder whose models/{name}/ holds them"
            )
        files = OnnxFiles(pack_dir / det_file, pack_dir / rec_file)
        return cls(name, files, settings.detection, settings.device, settings.threads, _ZOO_HINT)


def _zoo_url(name: str) -> str:
    """Where insightface fetches ``<name>.zip`` (its release tag moved between versions)."""
    try:
        from insightface.utils.storage import model_zoo_download_url

        return str(model_zoo_download_url(f"{name}.zip"))
    except Exception:  # noqa: BLE001 - insightface absent, broken, or an older layout
        return f"https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip"


def _download(name: str, root: Path, force: bool = False) -> None:
    """Let insightface fetch and unzip ``<name>.zip`` into ``<root>/models/<name>/``.

    insightface skips the download when the folder exists, so a folder left
    incomplete (an interrupted unzip, a file deleted by hand) is fetched again
    with ``force``.
    """
    require("insightface", "insightface", f"the {name} pack")
    import insightface.utils as iu

    try:
        if force:
            iu.download("models", name, force=True, root=str(root))
        else:
            iu.ensure_available("models", name, root=str(root))
    except Exception as e:  # noqa: BLE001 - network and zip errors of many kinds
        raise ModelNotFoundError(
            f"downloading the {name} pack into {root}/models failed: {e}"
        ) from e
