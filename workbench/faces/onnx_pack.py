"""ONNX packs run by insightface's runtime (onnxruntime): `local` directories, buffalo_l/_s."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from workbench._optional import require
from workbench.errors import ConfigurationError, ModelNotFoundError
from workbench.faces.align import align_face
from workbench.faces.packs import ModelPack
from workbench.faces.types import AnalyzedFace, DetectedFace, l2_normalize
from workbench.settings import DetectionSettings, Device, WorkbenchSettings

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


class OnnxPack(ModelPack):
    """An SCRFD or YuNet detector with an ArcFace-style recognizer, run by onnxruntime."""

    def __init__(
        self,
        name: str,
        files: OnnxFiles,
        detection: DetectionSettings,
        device: Device = "auto",
        threads: int | None = None,
    ) -> None:
        super().__init__(detection)
        self.name = name
        self.files = files
        self.device = device
        self.threads = threads
        self.embedding_dim = 0  # known once the recognizer is loaded
        self.description = f"{files.detector.name} + {files.recognizer.name}"

    #: what to tell the user about a file that cannot be loaded
    replace_hint = "replace it with a working copy"

    def _load(self) -> None:
        require("insightface", "insightface", f"the {self.name} pack")
        require("onnxruntime", "insightface", f"the {self.name} pack")

        providers, ctx_id = _providers(self.device)
        size = self.detection.input_size
        kwargs = {"providers": providers, "sess_options": _session_options(self.threads)}
        if classify_onnx(self.files.detector) == "yunet":
            self._yunet: _YuNet | None = _YuNet(self.files.detector, size, self.detection.min_score)
        else:
            self._yunet = None
            self._det = _get_model(self.files.detector, self.replace_hint, **kwargs)
            if self._det is None or not hasattr(self._det, "detect"):
                raise ModelNotFoundError(
                    f"{self.files.detector} is not a face detector insightface can run"
                )
            self._det.prepare(ctx_id, input_size=(size, size), det_thresh=self.detection.min_score)
            if not getattr(self._det, "use_kps", True):
                raise ModelNotFoundError(
                    f"{self.files.detector} gives no landmarks; alignment needs a detector "
                    "with 5 keypoints"
                )
        self._rec = _get_model(self.files.recognizer, self.replace_hint, **kwargs)
        if self._rec is None or not hasattr(self._rec, "get_feat"):
            raise ModelNotFoundError(f"{self.files.recognizer} is not an ArcFace-style recognizer")
        self._rec.prepare(ctx_id)
        self.input_norm = recognizer_norm(
            self.files.recognizer, float(self._rec.input_mean), float(self._rec.input_std)
        )
        shape = self._rec.session.get_outputs()[0].shape
        self.embedding_dim = int(shape[-1])
        batch = self._rec.session.get_inputs()[0].shape[0]
        self._rec_batch = batch if isinstance(batch, int) and batch > 0 else 32

    @property
    def device_used(self) -> str:
        """``cuda`` when onnxruntime gave the recognizer the CUDA provider."""
        if not self._loaded:
            return "not loaded"
        providers = self._rec.session.get_providers()
        return "cuda" if "CUDAExecutionProvider" in providers else "cpu"

    def _detect(self, rgb: NDArray[np.uint8]) -> list[DetectedFace]:
        return self._detect_bgr(_to_bgr(rgb))

    def _detect_bgr(self, bgr: NDArray[np.uint8]) -> list[DetectedFace]:
        if self._yunet is not None:
            return self._yunet.detect(bgr)
        size = self.detection.input_size
        boxes, kpss = self._det.detect(
            bgr, input_size=(size, size), max_num=0, det_thresh=self.detection.min_score
        )
        return [
            DetectedFace(
                tuple(float(v) for v in b[:4]),  # type: ignore[arg-type]
                np.asarray(k, dtype=np.float32),
                float(b[4]),
            )
            for b, k in zip(boxes, kpss, strict=True)
        ]

    def _embed(self, rgb: NDArray[np.uint8], faces: Sequence[DetectedFace]) -> NDArray[np.float32]:
        bgr = _to_bgr(rgb)
        return self._embed_crops([align_face(bgr, f.landmarks) for f in faces])

    def _embed_crops(self, crops: list[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """Embed aligned BGR crops in the recognizer's batch size (1 for fixed-batch exports)."""
        norm = self.input_norm
        mean = np.asarray(norm.mean, dtype=np.float32)
        scale = 1.0 / np.asarray(norm.std, dtype=np.float32)
        rec = self._rec
        feats = []
        for i in range(0, len(crops), self._rec_batch):
            rgb = np.stack(crops[i : i + self._rec_batch])[..., ::-1].astype(np.float32)
            blob = ((rgb - mean) * scale).transpose(0, 3, 1, 2)
            feats.append(rec.session.run(rec.output_names, {rec.input_name: blob})[0])
        return l2_normalize(np.concatenate(feats, axis=0))

    def analyze(self, rgb: NDArray[np.uint8]) -> list[AnalyzedFace]:
        return self.analyze_many([rgb])[0]

    def analyze_many(self, images: Sequence[NDArray[np.uint8]]) -> list[list[AnalyzedFace]]:
        """Detect per photo, then embed the faces of all photos together.

        Each photo is converted to BGR once, for detection and alignment; on
        CUDA one batch of crops from many photos keeps the GPU busy.
        """
        self.load()
        per_photo: list[list[DetectedFace]] = []
        crops: list[NDArray[np.uint8]] = []
        for rgb in images:
            bgr = _to_bgr(rgb)
            faces = self._keep(self._detect_bgr(bgr))
            per_photo.append(faces)
            crops.extend(align_face(bgr, f.landmarks) for f in faces)
        if not crops:
            return [[] for _ in images]
        vectors = iter(self._embed_crops(crops))
        return [[AnalyzedFace(f, next(vectors)) for f in faces] for faces in per_photo]

    @classmethod
    def from_settings(cls, settings: WorkbenchSettings) -> OnnxPack:
        files = find_local_models(
            settings.local.models_dir, settings.local.detector, settings.local.recognizer
        )
        name = f"local:{files.detector.stem}+{files.recognizer.stem}".lower()
        return cls(name, files, settings.detection, settings.device, settings.threads)


LocalOnnxPack = OnnxPack

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


class InsightfacePack(OnnxPack):
    """insightface's own packs, from ``<insightface_root>/models/<name>/``."""

    replace_hint = (
        "delete it and download the pack again (or unzip a fresh copy of the pack's .zip "
        "from the insightface model zoo there)"
    )

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
        return cls(name, files, settings.detection, settings.device, settings.threads)


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
