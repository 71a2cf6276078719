"""Registers the built-in packs; each imports its runtime only when opened."""

from __future__ import annotations

from workbench.faces.packs import PACKS, ModelPack
from workbench.settings import WorkbenchSettings


@PACKS.register("local")
def _local(settings: WorkbenchSettings) -> ModelPack:
    from workbench.faces.onnx_pack import LocalOnnxPack

    return LocalOnnxPack.from_settings(settings)


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
    from workbench.faces.dlib_pack import DlibPack

    return DlibPack(settings.detection)


@PACKS.register("facenet")
def _facenet(settings: WorkbenchSettings) -> ModelPack:
    from workbench.faces.facenet_pack import FacenetPack

    return FacenetPack.from_settings(settings)
