"""insightface packs (buffalo_l / buffalo_s) from a local root, and `local` pack directories.

Everything runs offline: the model roots are built here from the shared SCRFD
detector and a tiny recognizer generated with ``onnx.helper`` (shape-correct
for insightface: one [N, 3, 112, 112] float input, one [N, 512] output), and
`weights.online` is patched so that no test ever opens a network connection.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import (
    ConfigurationError,
    ModelNotFoundError,
    UnknownNameError,
    WorkbenchError,
)
from workbench.faces import weights
from workbench.faces.registry import open_pack
from workbench.imaging.decode import decode_image
from workbench.settings import WorkbenchSettings

pytestmark = pytest.mark.integration

SCRFD_500M = "buffalo_sc/det_500m.onnx"
SCRFD_2_5G = "buffalo_m/det_2.5g.onnx"
YUNET = "yunet/face_detection_yunet_2023mar.onnx"
MOBILEFACENET = "mobilefacenet/MobileFaceNet.onnx"
PACK_FILES = {
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
    "buffalo_s": ("det_500m.onnx", "w600k_mbf.onnx"),
}


def write_tiny_recognizer(path: Path, dim: int = 512, seed: int = 0) -> Path:
    """A deterministic ArcFace-shaped ONNX, [N,3,112,112] -> [N,dim].

    AveragePool (14x14) -> Flatten -> MatMul with a fixed-seed weight.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((3 * 8 * 8, dim)).astype(np.float32)
    nodes = [
        # insightface picks mean/std from the first node names: no Sub/Mul here,
        # so it feeds (pixel - 127.5) / 127.5, like the real w600k models.
        helper.make_node(
            "AveragePool",
            ["input.1"],
            ["pooled"],
            name="pool",
            kernel_shape=[14, 14],
            strides=[14, 14],
        ),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
        helper.make_node("MatMul", ["flat", "fc_weight"], ["683"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", dim])],
        initializer=[numpy_helper.from_array(weight, "fc_weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_insightface_root(root: Path, models_dir: Path, name: str) -> Path:
    """``<root>/models/<name>/`` holding the pack's two files (real SCRFD, tiny recognizer)."""
    det_file, rec_file = PACK_FILES[name]
    pack_dir = root / "models" / name
    pack_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(models_dir / SCRFD_500M, pack_dir / det_file)
    write_tiny_recognizer(pack_dir / rec_file, seed=len(name))
    return pack_dir


def offline_settings(root: Path, **extra: object) -> WorkbenchSettings:
    return WorkbenchSettings(
        home=root / "wb", insightface_root=root, allow_download=False, device="cpu", **extra
    )


def dev_photo(faces_dev_dir: Path, name: str = "images/dev_0001.jpg") -> np.ndarray:
    return decode_image((faces_dev_dir / name).read_bytes()).rgb


_real_online = weights.online


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may reach the network, even with downloads allowed."""

    def offline(*_args: object, **_kwargs: object) -> bool:
        return False

    monkeypatch.setattr(weights, "online", offline)


# --------------------------------------------------------------------------- buffalo_l / buffalo_s


@pytest.mark.parametrize("name", ["buffalo_l", "buffalo_s"])
def test_insightface_pack_from_local_root(
    name: str, tmp_path: Path, models_dir: Path, faces_dev_dir: Path
) -> None:
    build_insightface_root(tmp_path, models_dir, name)
    pack = open_pack(name, offline_settings(tmp_path))
    assert pack.name == name
    det_file, rec_file = PACK_FILES[name]
    assert det_file in pack.description and rec_file in pack.description

    faces = pack.analyze(dev_photo(faces_dev_dir))
    assert len(faces) >= 1
    assert pack.embedding_dim == 512
    for face in faces:
        assert face.embedding.shape == (512,)
        assert face.embedding.dtype == np.float32
        assert np.isfinite(face.embedding).all()
        assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-4
        assert face.detection.landmarks.shape == (5, 2)
    # one collection per embedder: buffalo_l's recognizer is w600k_r50
    assert pack.collection_name == f"faces_{Path(rec_file).stem}_512d"


def test_insightface_pack_is_deterministic(
    tmp_path: Path, models_dir: Path, faces_dev_dir: Path
) -> None:
    build_insightface_root(tmp_path, models_dir, "buffalo_l")
    rgb = dev_photo(faces_dev_dir)
    a = open_pack("buffalo_l", offline_settings(tmp_path)).analyze(rgb)
    b = open_pack("buffalo_l", offline_settings(tmp_path)).analyze(rgb)
    assert len(a) == len(b) >= 1
    np.testing.assert_allclose(a[0].embedding, b[0].embedding, atol=1e-5)


def test_insightface_collection_differs_from_local(
    tmp_path: Path, models_dir: Path, local_settings: WorkbenchSettings
) -> None:
    build_insightface_root(tmp_path, models_dir, "buffalo_l")
    build_insightface_root(tmp_path, models_dir, "buffalo_s")
    buffalo_l = open_pack("buffalo_l", offline_settings(tmp_path)).load()
    buffalo_s = open_pack("buffalo_s", offline_settings(tmp_path)).load()
    local = open_pack("local", local_settings).load()
    names = {buffalo_l.collection_name, buffalo_s.collection_name, local.collection_name}
    assert len(names) == 3, names
    assert local.name != "buffalo_l"


@pytest.mark.parametrize("name", ["buffalo_l", "buffalo_s"])
def test_absent_pack_offline_names_files_and_folder(name: str, tmp_path: Path) -> None:
    root = tmp_path / "empty-root"
    with pytest.raises(ModelNotFoundError) as info:
        open_pack(name, offline_settings(root))
    assert isinstance(info.value, WorkbenchError)
    message = str(info.value)
    det_file, rec_file = PACK_FILES[name]
    assert det_file in message and rec_file in message
    assert str(root / "models" / name) in message
    assert "WORKBENCH_ALLOW_DOWNLOAD" in message
    assert "WORKBENCH_INSIGHTFACE_ROOT" in message


def test_partially_present_pack_names_the_missing_file(tmp_path: Path, models_dir: Path) -> None:
    pack_dir = build_insightface_root(tmp_path, models_dir, "buffalo_l")
    (pack_dir / "w600k_r50.onnx").unlink()
    with pytest.raises(ModelNotFoundError) as info:
        open_pack("buffalo_l", offline_settings(tmp_path))
    assert "needs w600k_r50.onnx in" in str(info.value)
    assert str(pack_dir) in str(info.value)


def test_download_allowed_but_offline_is_clean_and_quick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("must not try to download when offline")

    monkeypatch.setattr(weights, "download_insightface_pack", no_download)
    settings = offline_settings(tmp_path).model_copy(update={"allow_download": True})
    started = time.monotonic()
    with pytest.raises(ModelNotFoundError) as info:
        open_pack("buffalo_l", settings)
    assert time.monotonic() - started < 5.0
    message = str(info.value)
    assert "cannot reach" in message
    assert "det_10g.onnx" in message and "w600k_r50.onnx" in message
    assert str(tmp_path / "models" / "buffalo_l") in message


def test_failed_download_is_a_model_not_found_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import insightface.utils

    def broken(*_args: object, **_kwargs: object) -> str:
        raise RuntimeError("Failed downloading url https://example.invalid/buffalo_l.zip")

    monkeypatch.setattr(weights, "online", lambda *a, **k: True)
    monkeypatch.setattr(insightface.utils, "ensure_available", broken)
    settings = offline_settings(tmp_path).model_copy(update={"allow_download": True})
    with pytest.raises(ModelNotFoundError, match="downloading the buffalo_l pack"):
        open_pack("buffalo_l", settings)


def test_download_that_leaves_files_missing_is_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import insightface.utils

    def empty_zip(sub_dir: str, name: str, root: str = "") -> str:
        target = Path(root) / sub_dir / name
        target.mkdir(parents=True, exist_ok=True)
        return str(target)

    monkeypatch.setattr(weights, "online", lambda *a, **k: True)
    monkeypatch.setattr(insightface.utils, "ensure_available", empty_zip)
    settings = offline_settings(tmp_path).model_copy(update={"allow_download": True})
    with pytest.raises(ModelNotFoundError) as info:
        open_pack("buffalo_s", settings)
    assert "det_500m.onnx" in str(info.value) and "w600k_mbf.onnx" in str(info.value)


def test_incomplete_pack_folder_is_downloaded_again(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """insightface skips folders that exist; a half-filled one is fetched with force."""
    import insightface.utils

    pack_dir = build_insightface_root(tmp_path, models_dir, "buffalo_l")
    (pack_dir / "w600k_r50.onnx").unlink()
    calls: list[tuple[str, str, bool]] = []

    def fake_download(sub_dir: str, name: str, force: bool = False, root: str = "") -> str:
        calls.append((sub_dir, name, force))
        write_tiny_recognizer(Path(root) / sub_dir / name / "w600k_r50.onnx")
        return str(Path(root) / sub_dir / name)

    def not_this_one(*_args: object, **_kwargs: object) -> str:
        raise AssertionError("ensure_available skips an existing folder")

    monkeypatch.setattr(weights, "online", lambda *a, **k: True)
    monkeypatch.setattr(insightface.utils, "download", fake_download)
    monkeypatch.setattr(insightface.utils, "ensure_available", not_this_one)
    settings = offline_settings(tmp_path).model_copy(update={"allow_download": True})
    pack = open_pack("buffalo_l", settings)
    assert calls == [("models", "buffalo_l", True)]
    assert pack.load().embedding_dim == 512


def test_online_probe_is_bounded_and_local(tmp_path: Path) -> None:
    """The real `weights.online`, against loopback only: a listening port and a closed one."""
    import socket

    probe = _real_online
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert probe("127.0.0.1", port, timeout=2.0) is True
    started = time.monotonic()
    assert probe("127.0.0.1", port, timeout=2.0) is False  # closed now
    assert time.monotonic() - started < 3.0


def test_online_probe_gives_up_on_a_hanging_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name lookup that hangs (no DNS server answering) does not hang the probe."""
    import socket

    def hang(*_args: object, **_kwargs: object) -> socket.socket:
        time.sleep(3.0)
        raise OSError("gave up")

    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.monotonic()
    assert _real_online("github.invalid", 443, timeout=0.3) is False
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("broken", ["det_10g.onnx", "w600k_r50.onnx"])
def test_corrupt_pack_file_is_a_model_not_found_error(
    broken: str, tmp_path: Path, models_dir: Path
) -> None:
    pack_dir = build_insightface_root(tmp_path, models_dir, "buffalo_l")
    data = (pack_dir / broken).read_bytes()
    (pack_dir / broken).write_bytes(data[: len(data) // 3])  # a truncated download
    pack = open_pack("buffalo_l", offline_settings(tmp_path))
    with pytest.raises(ModelNotFoundError) as info:
        pack.load()
    assert str(pack_dir / broken) in str(info.value)


def test_unknown_pack_lists_the_insightface_packs(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError) as info:
        open_pack("buffalo_xl", offline_settings(tmp_path))
    assert "buffalo_l" in str(info.value) and "buffalo_s" in str(info.value)


# --------------------------------------------------------------------------- `local` directories


def _copy(models_dir: Path, rel: str, target: Path) -> Path:
    dest = target / Path(rel).name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(models_dir / rel, dest)
    return dest


def test_local_dir_with_one_detector_and_one_recognizer(
    tmp_path: Path, models_dir: Path, faces_dev_dir: Path
) -> None:
    pack_dir = tmp_path / "my-models"
    _copy(models_dir, SCRFD_500M, pack_dir)
    _copy(models_dir, MOBILEFACENET, pack_dir / "nested")
    pack = open_pack(str(pack_dir), offline_settings(tmp_path))
    assert pack.name.startswith("local:")
    assert "det_500m" in pack.name and "mobilefacenet" in pack.name
    faces = pack.analyze(dev_photo(faces_dev_dir))
    assert len(faces) >= 1
    assert pack.embedding_dim == 128  # MobileFaceNet
    assert faces[0].embedding.shape == (128,)
    assert abs(float(np.linalg.norm(faces[0].embedding)) - 1.0) < 1e-4


def test_local_dir_with_two_detectors_asks_to_choose(tmp_path: Path, models_dir: Path) -> None:
    pack_dir = tmp_path / "two-detectors"
    _copy(models_dir, SCRFD_500M, pack_dir)
    _copy(models_dir, SCRFD_2_5G, pack_dir)
    _copy(models_dir, MOBILEFACENET, pack_dir)
    with pytest.raises(ConfigurationError) as info:
        open_pack(str(pack_dir), offline_settings(tmp_path))
    message = str(info.value)
    assert "det_500m.onnx" in message and "det_2.5g.onnx" in message
    assert "WORKBENCH_LOCAL__DETECTOR" in message


def test_local_dir_with_two_detectors_and_an_explicit_choice(
    tmp_path: Path, models_dir: Path, faces_dev_dir: Path
) -> None:
    pack_dir = tmp_path / "two-detectors"
    _copy(models_dir, SCRFD_500M, pack_dir)
    _copy(models_dir, SCRFD_2_5G, pack_dir)
    _copy(models_dir, MOBILEFACENET, pack_dir)
    settings = offline_settings(tmp_path, local={"detector": "det_2.5g.onnx"})
    pack = open_pack(str(pack_dir), settings)
    assert "det_2.5g" in pack.name
    assert len(pack.analyze(dev_photo(faces_dev_dir))) >= 1


def test_local_dir_empty_is_model_not_found(tmp_path: Path) -> None:
    pack_dir = tmp_path / "empty"
    pack_dir.mkdir()
    with pytest.raises(ModelNotFoundError) as info:
        open_pack(str(pack_dir), offline_settings(tmp_path))
    assert str(pack_dir) in str(info.value)


def test_local_dir_without_recognizer_is_model_not_found(tmp_path: Path, models_dir: Path) -> None:
    pack_dir = tmp_path / "detector-only"
    _copy(models_dir, SCRFD_500M, pack_dir)
    with pytest.raises(ModelNotFoundError, match="recognizer"):
        open_pack(str(pack_dir), offline_settings(tmp_path))


def test_local_dir_with_yunet_and_mobilefacenet(
    tmp_path: Path, models_dir: Path, faces_dev_dir: Path
) -> None:
    pack_dir = tmp_path / "yunet-pack"
    _copy(models_dir, YUNET, pack_dir)
    _copy(models_dir, MOBILEFACENET, pack_dir)
    pack = open_pack(str(pack_dir), offline_settings(tmp_path))
    assert "face_detection_yunet_2023mar" in pack.name
    faces = pack.analyze(dev_photo(faces_dev_dir))
    assert len(faces) >= 1
    for face in faces:
        lm = face.detection.landmarks
        assert lm.shape == (5, 2)
        # ArcFace order: image-left eye, image-right eye, nose, mouth left, mouth right.
        assert lm[0, 0] < lm[1, 0]
        assert lm[3, 0] < lm[4, 0]
        assert min(lm[0, 1], lm[1, 1]) < lm[2, 1] < max(lm[3, 1], lm[4, 1])
        x1, y1, x2, y2 = face.detection.box
        assert x1 <= lm[:, 0].min() and lm[:, 0].max() <= x2
        assert y1 <= lm[:, 1].min() and lm[:, 1].max() <= y2
        assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-4
