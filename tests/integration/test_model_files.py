"""What an ONNX file is (`weights.classify_onnx`) is read from its graph once, then known
by the file's path, size and modification time: opening a pack again imports no onnx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LOCAL_DETECTOR, LOCAL_RECOGNIZER

pytestmark = pytest.mark.integration

OPEN_LOCAL_PACK = """
import sys
from workbench.faces.registry import open_pack
from workbench.settings import WorkbenchSettings
pack = open_pack("local", WorkbenchSettings())
print(pack.name, "onnx" in sys.modules)
"""


def test_a_model_file_is_read_once_then_known(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench.faces import weights

    monkeypatch.setenv(weights.ROLES_CACHE_ENV, str(tmp_path / "cache" / "roles.json"))
    monkeypatch.setattr(weights, "_roles", None)
    reads: list[Path] = []
    read = weights._read_role
    monkeypatch.setattr(weights, "_read_role", lambda p: reads.append(p) or read(p))
    model = tmp_path / "model.onnx"
    shutil.copy(models_dir / LOCAL_DETECTOR, model)

    assert weights.classify_onnx(model) == "scrfd"
    assert weights.classify_onnx(model) == "scrfd"
    monkeypatch.setattr(weights, "_roles", None)  # as a new process finds it: on disk
    assert weights.classify_onnx(model) == "scrfd"
    assert reads == [model]
    shutil.copy(models_dir / LOCAL_RECOGNIZER, model)  # another model under the same name
    assert weights.classify_onnx(model) == "recognizer"
    assert len(reads) == 2

    (tmp_path / "cache" / "roles.json").write_text("{not json")  # a broken cache is no cache
    monkeypatch.setattr(weights, "_roles", None)
    assert weights.classify_onnx(model) == "recognizer" and len(reads) == 3


def test_a_command_opening_the_same_pack_again_imports_no_onnx(
    tmp_path: Path, models_dir: Path
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "WORKBENCH_MODEL_ROLES_CACHE": str(tmp_path / "roles.json"),
        "WORKBENCH_LOCAL__MODELS_DIR": str(models_dir),
        "WORKBENCH_LOCAL__DETECTOR": LOCAL_DETECTOR,
        "WORKBENCH_LOCAL__RECOGNIZER": LOCAL_RECOGNIZER,
        "WORKBENCH_HOME": str(tmp_path / "wb"),
    }
    runs = [
        subprocess.run(
            [sys.executable, "-c", OPEN_LOCAL_PACK], env=env, capture_output=True, text=True
        )
        for _ in range(2)
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
    first, second = (r.stdout.split() for r in runs)
    assert first[0] == second[0] == "local:det_500m+mobilefacenet"
    assert (first[1], second[1]) == ("True", "False")
