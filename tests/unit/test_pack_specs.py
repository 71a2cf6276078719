"""Pack specs: a pack name, a models directory, or <detector>+<embedder>; parts by flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.errors import ConfigurationError, UnknownNameError
from workbench.faces.registry import (
    DETECTORS,
    EMBEDDERS,
    open_detector,
    open_embedder,
    open_pack,
    split_spec,
)
from workbench.settings import WorkbenchSettings


def test_split_spec() -> None:
    assert split_spec("mtcnn+mobilefacenet") == ("mtcnn", "mobilefacenet")
    assert split_spec(" scrfd + facenet ") == ("scrfd", "facenet")
    assert split_spec("local") is None
    assert split_spec("local:det_500m+mobilefacenet") is None  # a recorded pack name
    assert split_spec("a+b+c") is None
    assert split_spec("+facenet") is None


def test_built_in_parts_are_registered() -> None:
    assert {"scrfd", "yunet", "mtcnn", "dlib-hog"} <= set(DETECTORS.names())
    assert {"facenet", "dlib"} <= set(EMBEDDERS.names())


def test_unknown_parts_name_what_exists(tmp_path: Path) -> None:
    settings = WorkbenchSettings(home=tmp_path, local={"models_dir": tmp_path})
    with pytest.raises(UnknownNameError, match="dlib-hog.*mtcnn.*scrfd"):
        open_detector("retina", settings)
    with pytest.raises(UnknownNameError, match="facenet"):
        open_embedder("arcface-huge", settings)
    with pytest.raises(UnknownNameError):
        open_pack("retina+facenet", settings)


def test_missing_onnx_part_names_the_file(tmp_path: Path) -> None:
    settings = WorkbenchSettings(home=tmp_path)
    with pytest.raises(Exception, match="nowhere.onnx"):
        open_detector(str(tmp_path / "nowhere.onnx"), settings)
    with pytest.raises(Exception, match="nowhere.onnx"):
        open_embedder(str(tmp_path / "nowhere.onnx"), settings)


def test_parts_cannot_replace_halves_of_a_pack_that_has_none(tmp_path: Path) -> None:
    from workbench.faces.pack import ModelPack
    from workbench.faces.registry import PACKS

    class Opaque(ModelPack):
        name, embedding_dim = "opaque", 4

        def _load(self) -> None: ...
        def _detect(self, rgb):  # type: ignore[no-untyped-def]
            return []

        def _embed(self, rgb, faces):  # type: ignore[no-untyped-def]
            raise AssertionError

    PACKS.register("opaque-test", lambda s: Opaque(s.detection))
    try:
        settings = WorkbenchSettings(home=tmp_path, detector="mtcnn")
        with pytest.raises(ConfigurationError, match="opaque.*--detector"):
            open_pack("opaque-test", settings)
    finally:
        PACKS._items.pop("opaque-test")  # noqa: SLF001


def test_packs_command_lists_packs_detectors_and_embedders() -> None:
    from click.testing import CliRunner

    from workbench.cli import cli

    out = CliRunner().invoke(cli, ["packs"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert {"local", "dlib", "facenet", "buffalo_l"} <= set(lines)
    assert any(line.startswith("detectors: ") and "mtcnn" in line for line in lines)
    assert any(line.startswith("embedders: ") and "facenet" in line for line in lines)
