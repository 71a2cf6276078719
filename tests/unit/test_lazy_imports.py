"""`import workbench` stays light; optional packages fail with the extra to install."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workbench._optional import available, require
from workbench.errors import MissingDependencyError, WorkbenchError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

HEAVY = (
    "torch",
    "onnxruntime",
    "dlib",
    "pymilvus",
    "insightface",
    "cv2",
    "onnx",
    "facenet_pytorch",
)
LIGHT_MODULES = (
    "workbench",
    "workbench.cli",
    "workbench.settings",
    "workbench.errors",
    "workbench.registry",
    "workbench.faces.pack",
    "workbench.faces.registry",
    "workbench.store.catalog",
)


def _imported_after(modules: tuple[str, ...]) -> dict[str, list[str]]:
    """Import ``modules`` in a fresh interpreter; the heavy modules (and submodules) loaded."""
    code = f"""
import importlib, json, sys
for name in {list(modules)!r}:
    importlib.import_module(name)
heavy = {list(HEAVY)!r}
loaded = {{h: [m for m in sys.modules if m == h or m.startswith(h + ".")] for h in heavy}}
print(json.dumps(loaded))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return {k: v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items() if v}


def test_import_workbench_loads_no_model_runtime_or_vector_client() -> None:
    loaded = _imported_after(LIGHT_MODULES)
    assert loaded == {}, f"heavy modules imported at `import workbench` time: {loaded}"


def test_pack_and_settings_objects_do_not_load_runtimes() -> None:
    """Building settings and listing packs is still import-light."""
    code = """
import sys
from workbench.settings import WorkbenchSettings
from workbench.faces.registry import PACKS, open_pack
settings = WorkbenchSettings()
names = PACKS.names()
assert {"local", "buffalo_l", "buffalo_s", "dlib"} <= set(names), names
heavy = ("torch", "onnxruntime", "dlib", "pymilvus", "insightface", "cv2")
bad = [m for m in heavy if m in sys.modules]
assert not bad, bad
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("module", "extra", "purpose"),
    [
        ("dlib", "dlib", "the dlib pack"),
        ("onnxruntime", "insightface", "ONNX model packs"),
        ("insightface", "insightface", "the buffalo_l pack"),
        ("torch", "facenet", "the facenet pack"),
    ],
)
def test_require_missing_names_the_extra(
    module: str, extra: str, purpose: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(MissingDependencyError) as info:
        require(module, extra, purpose)
    err = info.value
    assert isinstance(err, WorkbenchError) and isinstance(err, ImportError)
    assert err.module == module and err.extra == extra
    message = str(err)
    assert f"pip install 'face-workbench[{extra}]'" in message
    assert purpose in message and repr(module) in message
    assert isinstance(err.__cause__, ImportError)


def test_require_present_returns_the_module() -> None:
    import json as json_module

    assert require("json", "core", "tests") is json_module


def test_require_reports_a_broken_install_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A package whose own import fails is reported as installed-but-broken, same extra."""
    pkg = tmp_path / "workbench_broken_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import workbench_dependency_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "workbench_broken_pkg", raising=False)
    with pytest.raises(MissingDependencyError) as info:
        require("workbench_broken_pkg", "dashboards", "the dashboards")
    message = str(info.value)
    assert "installed but cannot be imported" in message
    assert "workbench_dependency_that_is_not_there" in message
    assert "pip install 'face-workbench[dashboards]'" in message
    assert info.value.broken is not None


def test_require_core_dependency_says_reinstall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(MissingDependencyError) as info:
        require("pymilvus", None, "the Milvus vector index")
    assert "pip install --force-reinstall face-workbench" in str(info.value)
    assert "[" not in str(info.value)


def test_missing_dependency_error_survives_pickling() -> None:
    err = MissingDependencyError("dlib", "dlib", "the dlib pack")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is MissingDependencyError and str(again) == str(err)
    assert again.extra == "dlib" and again.name == "dlib"


def test_available_imports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert available("json")
    assert not available("workbench_no_such_module")
    monkeypatch.setitem(sys.modules, "dlib", None)
    assert not available("dlib")


def _declared_extras() -> set[str]:
    pyproject = REPO / "pyproject.toml"
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: read what the installed metadata declares
        from importlib.metadata import metadata

        return set(metadata("face-workbench").get_all("Provides-Extra") or [])
    with open(pyproject, "rb") as fh:
        return set(tomllib.load(fh)["project"]["optional-dependencies"])


def test_every_require_names_a_declared_extra() -> None:
    """`require(module, "extra", ...)` must name an extra pyproject.toml really declares."""
    declared = _declared_extras()
    pattern = re.compile(r"""require\(\s*["']([\w.]+)["']\s*,\s*["']([\w-]+)["']""")
    wrong = []
    for path in sorted((REPO / "workbench").rglob("*.py")):
        for module, extra in pattern.findall(path.read_text()):
            if extra not in declared:
                wrong.append(f"{path.relative_to(REPO)}: require({module!r}, {extra!r})")
    assert not wrong, f"extras not in pyproject.toml {sorted(declared)}: {wrong}"


def test_open_dlib_pack_without_dlib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from workbench.faces.registry import open_pack
    from workbench.settings import WorkbenchSettings

    for name in ("dlib", "face_recognition_models"):
        monkeypatch.setitem(sys.modules, name, None)
    pack = open_pack("dlib", WorkbenchSettings(home=tmp_path, allow_download=False))
    with pytest.raises(MissingDependencyError) as info:
        pack.load()
    assert "pip install 'face-workbench[dlib]'" in str(info.value)


def test_open_onnx_pack_without_insightface(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The `local` pack's runtime is the insightface extra."""
    from workbench.faces.backends.onnx import OnnxPack
    from workbench.faces.weights import OnnxFiles
    from workbench.settings import DetectionSettings

    monkeypatch.setitem(sys.modules, "insightface", None)
    files = OnnxFiles(tmp_path / "det.onnx", tmp_path / "rec.onnx")
    pack = OnnxPack("local:test", files, DetectionSettings())
    with pytest.raises(MissingDependencyError) as info:
        pack.load()
    assert "pip install 'face-workbench[insightface]'" in str(info.value)
