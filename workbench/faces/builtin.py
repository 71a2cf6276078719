"""Registers the built-in packs, detectors and embedders; each imports its runtime when opened."""

from __future__ import annotations

from pathlib import Path

from workbench.errors import ModelNotFoundError
from workbench.faces.packs import DETECTORS, EMBEDDERS, PACKS, ModelPack
from workbench.faces.parts import Detector, Embedder
from workbench.settings import WorkbenchSettings

# ---- packs: a detector and an embedder under one name ----------------------


@PACKS.register("local")
def _local(settings: WorkbenchSettings) -> ModelPack:
    from workbench.faces.onnx_pack import OnnxPack

    return OnnxPack.from_settings(settings)


@PACKS.register("buffalo_l")
def _buffalo_l(settings: WorkbenchSettings) -> ModelPack:
    from workbench.faces.onnx_pack import InsightfacePack

    return InsightfacePack.from_settings("buffalo_l", settings)


@PACKS.register("buffalo_s")
def _buffalo_s(settings: WorkbenchSettings) -> ModelPack:
    from workbench.faces.onnx_pack import InsightfacePack

    return InsightfacePack.from_settings("buffalo_s", settings)


@PACKS.register("dlib")
def _dlib(settings: WorkbenchSettings) -> ModelPack:
    from workbench.faces.dlib_pack import dlib_pack

    return dlib_pack(settings.detection)


@PACKS.register("facenet")
def _facenet(settings: WorkbenchSettings) -> ModelPack:
    from workbench.faces.facenet_pack import facenet_pack

    return facenet_pack(settings)


# ---- detectors ---------------------------------------------------------------


def _local_detector(settings: WorkbenchSettings, role: str) -> Detector:
    """The local models dir's detector of ``role``: the configured one, else the only one."""
    from workbench.faces.onnx_pack import OnnxDetector, classify_onnx

    root = settings.local.models_dir.expanduser()
    if settings.local.detector:
        path = Path(settings.local.detector).expanduser()
        path = path if path.is_absolute() else root / path
        if path.is_file() and classify_onnx(path) == role:
            return OnnxDetector(path, settings.device, settings.threads)
    files = sorted(root.rglob("*.onnx")) if root.is_dir() else []
    found = [p for p in files if classify_onnx(p) == role]
    if len(found) == 1:
        return OnnxDetector(found[0], settings.device, settings.threads)
    kind = "SCRFD" if role == "scrfd" else "YuNet"
    if not found:
        raise ModelNotFoundError(
            f"no {kind} detector ONNX found under {root} (WORKBENCH_LOCAL__MODELS_DIR); put one "
            f"there, or give the file's path as the detector"
        )
    names = ", ".join(str(p.relative_to(root)) for p in found)
    raise ModelNotFoundError(
        f"{root} holds several {kind} detectors ({names}); choose one with "
        "WORKBENCH_LOCAL__DETECTOR=<path relative to the directory>, or give the file's path"
    )


@DETECTORS.register("scrfd")
def _scrfd(settings: WorkbenchSettings) -> Detector:
    return _local_detector(settings, "scrfd")


@DETECTORS.register("yunet")
def _yunet(settings: WorkbenchSettings) -> Detector:
    return _local_detector(settings, "yunet")


@DETECTORS.register("mtcnn")
def _mtcnn(settings: WorkbenchSettings) -> Detector:
    from workbench.faces.facenet_pack import mtcnn_detector

    return mtcnn_detector(settings)


@DETECTORS.register("dlib-hog")
def _dlib_hog(settings: WorkbenchSettings) -> Detector:
    from workbench.faces.dlib_pack import DlibHogDetector

    return DlibHogDetector()


# ---- embedders (ONNX recognizers of the local models dir are found by file name) ---


@EMBEDDERS.register("facenet")
def _facenet_embedder(settings: WorkbenchSettings) -> Embedder:
    from workbench.faces.facenet_pack import facenet_embedder

    return facenet_embedder(settings)


@EMBEDDERS.register("dlib")
def _dlib_embedder(settings: WorkbenchSettings) -> Embedder:
    from workbench.faces.dlib_pack import DlibEmbedder

    return DlibEmbedder(boxes_from="landmarks")
