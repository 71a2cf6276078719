"""The registries of model packs, detectors and embedders, the built-ins in them, and
`open_pack`: a name, a model directory or ``<detector>+<embedder>`` to a `ModelPack`.

Each built-in imports its backend (and so its runtime) only when it is opened,
so listing what exists loads nothing heavy. Add a detector or an embedder by
registering a factory here; a backend never imports another backend.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from workbench.errors import ConfigurationError, UnknownNameError
from workbench.faces import weights
from workbench.faces.pack import ComposedPack, ModelPack
from workbench.faces.types import Detector, Embedder
from workbench.registry import Registry
from workbench.settings import WorkbenchSettings

PackFactory = Callable[[WorkbenchSettings], ModelPack]
DetectorFactory = Callable[[WorkbenchSettings], Detector]
EmbedderFactory = Callable[[WorkbenchSettings], Embedder]
PACKS: Registry[PackFactory] = Registry("model pack")
DETECTORS: Registry[DetectorFactory] = Registry("face detector")
EMBEDDERS: Registry[EmbedderFactory] = Registry("face embedder")


# ---- packs: a detector and an embedder under one name ----------------------


@PACKS.register("local")
def _local(settings: WorkbenchSettings) -> ModelPack:
    from workbench.faces.backends.onnx import OnnxPack

    files = weights.local_pack_files(settings.local)
    name = f"local:{files.detector.stem}+{files.recognizer.stem}".lower()
    return OnnxPack(name, files, settings.detection, settings.device, settings.threads)


def _insightface(name: str, settings: WorkbenchSettings) -> ModelPack:
    from workbench.faces.backends.onnx import OnnxPack

    files = weights.insightface_pack_files(name, settings)
    return OnnxPack(
        name, files, settings.detection, settings.device, settings.threads, weights.ZOO_HINT
    )


@PACKS.register("buffalo_l")
def _buffalo_l(settings: WorkbenchSettings) -> ModelPack:
    return _insightface("buffalo_l", settings)


@PACKS.register("buffalo_s")
def _buffalo_s(settings: WorkbenchSettings) -> ModelPack:
    return _insightface("buffalo_s", settings)


@PACKS.register("dlib")
def _dlib(settings: WorkbenchSettings) -> ModelPack:
    from workbench.faces.backends.dlib import dlib_pack

    return dlib_pack(settings.detection)


@PACKS.register("facenet")
def _facenet(settings: WorkbenchSettings) -> ModelPack:
    from workbench.faces.backends.facenet import facenet_pack

    return facenet_pack(settings)


# ---- detectors ---------------------------------------------------------------


def _local_detector(settings: WorkbenchSettings, role: weights.OnnxRole) -> Detector:
    """The local models dir's detector of ``role``: the configured one, else the only one."""
    from workbench.faces.backends.onnx import OnnxDetector

    path = weights.find_onnx(
        settings.local.models_dir,
        (role,),
        choice=settings.local.detector,
        setting="WORKBENCH_LOCAL__DETECTOR",
        other_roles_choose_nothing=True,
    )
    return OnnxDetector(path, settings.device, settings.threads)


@DETECTORS.register("scrfd")
def _scrfd(settings: WorkbenchSettings) -> Detector:
    return _local_detector(settings, "scrfd")


@DETECTORS.register("yunet")
def _yunet(settings: WorkbenchSettings) -> Detector:
    return _local_detector(settings, "yunet")


@DETECTORS.register("mtcnn")
def _mtcnn(settings: WorkbenchSettings) -> Detector:
    from workbench.faces.backends.facenet import mtcnn_detector

    return mtcnn_detector(settings)


@DETECTORS.register("dlib-hog")
def _dlib_hog(settings: WorkbenchSettings) -> Detector:
    from workbench.faces.backends.dlib import DlibHogDetector

    return DlibHogDetector()


# ---- embedders (ONNX recognizers of the local models dir are found by file name) ---


@EMBEDDERS.register("facenet")
def _facenet_embedder(settings: WorkbenchSettings) -> Embedder:
    from workbench.faces.backends.facenet import facenet_embedder

    return facenet_embedder(settings)


@EMBEDDERS.register("dlib")
def _dlib_embedder(settings: WorkbenchSettings) -> Embedder:
    from workbench.faces.backends.dlib import DlibEmbedder

    return DlibEmbedder(boxes_from="landmarks")


# ---- opening ---------------------------------------------------------------------


def open_detector(spec: str, settings: WorkbenchSettings) -> Detector:
    """A registered detector (``scrfd``, ``yunet``, ``mtcnn``, ``dlib-hog``) or an ONNX file."""
    if spec in DETECTORS or not spec.lower().endswith(".onnx"):
        return DETECTORS.get(spec)(settings)  # an unknown name lists the detectors
    from workbench.faces.backends.onnx import OnnxDetector

    path = weights.find_onnx(Path(spec).parent, weights.DETECTOR_ROLES, choice=Path(spec))
    return OnnxDetector(path, settings.device, settings.threads)


def open_embedder(spec: str, settings: WorkbenchSettings) -> Embedder:
    """A registered embedder, a recognizer ONNX file, or a recognizer in the local models dir
    named by its file name (``mobilefacenet`` for ``MobileFaceNet.onnx``)."""
    if spec in EMBEDDERS:
        return EMBEDDERS.get(spec)(settings)
    from workbench.faces.backends.onnx import OnnxEmbedder

    if spec.lower().endswith(".onnx"):
        path = weights.find_onnx(Path(spec).parent, ("recognizer",), choice=Path(spec))
        return OnnxEmbedder(path, settings.device, settings.threads)
    root = settings.local.models_dir.expanduser()
    if root.is_dir() and any(p.stem.lower() == spec.lower() for p in root.rglob("*.onnx")):
        path = weights.find_onnx(root, ("recognizer",), stem=spec)
        return OnnxEmbedder(path, settings.device, settings.threads)
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


__all__ = [
    "DETECTORS",
    "EMBEDDERS",
    "PACKS",
    "open_detector",
    "open_embedder",
    "open_pack",
    "split_spec",
]
