"""The `facenet` pack: real MTCNN weights on real photos; FaceNet weights made by the test.

The released InceptionResnetV1 weights cannot be fetched on these machines,
so the embedder is tested with a state dict of the real architecture
(random, seeded) saved by the test, and its missing-file paths are tested
for the messages a user sees.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DevPhoto
from workbench.errors import ModelNotFoundError
from workbench.faces.backends.facenet import FacenetEmbedder, MtcnnDetector
from workbench.faces.pack import ComposedPack
from workbench.faces.registry import open_pack
from workbench.faces.weights import WEIGHT_FILES, torch_home, weights_url
from workbench.imaging.decode import decode_image
from workbench.settings import DetectionSettings, WorkbenchSettings

pytestmark = pytest.mark.integration


def _rgb(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes()).rgb


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted by the facenet pack")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dict of facenet-pytorch's InceptionResnetV1, seeded random init."""
    from workbench.faces.backends.facenet import import_facenet

    facenet = import_facenet()  # first, so torch loads with the pack's thread settings
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("facenet") / "inception_resnet_v1-test.pt"
    torch.save(facenet.InceptionResnetV1(pretrained=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def detector() -> MtcnnDetector:
    """MTCNN asked for faces of probability 0.9 or more (its last stage's threshold)."""
    det = MtcnnDetector(thresholds=(0.6, 0.7, 0.9))
    det.load()
    return det


@pytest.fixture(scope="module")
def embedder(weights: Path) -> FacenetEmbedder:
    emb = FacenetEmbedder(weights)
    emb.load()
    return emb


@pytest.fixture(autouse=True)
def _empty_torch_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No test may find (or write) facenet weights in the developer's torch cache."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_group_photos_find_all_but_at_most_one_face_and_no_face_photos_none(
    detector: MtcnnDetector, dev_photos: list[DevPhoto]
) -> None:
    photos = [p for p in dev_photos if p.category in ("group", "no_face")]
    assert sum(p.category == "group" for p in photos) == 8
    assert sum(p.category == "no_face" for p in photos) == 4
    found = detector.detect_many([_rgb(p.path) for p in photos])
    counts = {p.path.name: (len(f), p.n_faces) for p, f in zip(photos, found, strict=True)}
    short = {k: v for k, v in counts.items() if v[0] < (v[1] or 0) - 1}
    assert not short, f"found / labelled faces: {counts}"
    stray = {k: v for k, v in counts.items() if v[1] == 0 and v[0] > 0}
    assert not stray, f"faces found on no-face photos: {stray}"
    for faces in found:
        for f in faces:
            assert 0.9 <= f.score <= 1.0
            assert f.landmarks.shape == (5, 2) and f.landmarks.dtype == np.float32
            left_eye, right_eye, nose, mouth_left, mouth_right = f.landmarks
            # ArcFace order, as seen in the image
            assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0], f
            assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_batched_detection_equals_one_by_one(
    detector: MtcnnDetector, dev_photos: list[DevPhoto]
) -> None:
    small = sorted(
        (p for p in dev_photos if p.category in ("group", "no_face")),
        key=lambda p: p.path.stat().st_size,
    )[:2]
    a, b = (_rgb(p.path) for p in small)
    together = detector.detect_many([a, b, a])
    alone = [detector.detect(x) for x in (a, b)]
    assert len(together[0]) == len(together[2]) == len(alone[0]) >= 0
    for batched, single in ((together[0], alone[0]), (together[1], alone[1])):
        assert len(batched) == len(single)
        for x, y in zip(
            sorted(batched, key=lambda f: f.box), sorted(single, key=lambda f: f.box), strict=True
        ):
            np.testing.assert_allclose(x.box, y.box, atol=0.5)
            assert abs(x.score - y.score) < 1e-3


def test_state_dict_from_settings_loads_offline_and_embeds_unit_vectors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, weights: Path, dev_photos: list[DevPhoto]
) -> None:
    _no_network(monkeypatch)
    settings = WorkbenchSettings(home=tmp_path / "wb", pack="facenet", facenet={"weights": weights})
    pack = open_pack("facenet", settings)
    assert isinstance(pack, ComposedPack)
    assert isinstance(pack.detector, MtcnnDetector)
    assert isinstance(pack.embedder, FacenetEmbedder)
    assert pack.metric == "l2"  # FaceNet was trained with a triplet loss on L2 distance
    pack.load()
    assert pack.name == "facenet" and pack.embedding_dim == 512
    assert pack.collection_name == "faces_facenet_512d"
    assert pack.device_used == "cpu"
    assert pack.embedder.weights_path == weights
    group = next(p for p in dev_photos if p.category == "group" and p.n_faces == 2)
    rgb = _rgb(group.path)
    faces = pack.detect(rgb)
    assert len(faces) >= 1
    first = pack.embedder.embed(rgb, faces)
    again = pack.embedder.embed(rgb, faces)
    assert first.shape == (len(faces), 512) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(first, again, atol=1e-6)
    analyzed = pack.analyze(rgb)
    assert [a.detection.box for a in analyzed] == [f.box for f in faces]
    np.testing.assert_allclose(np.stack([a.embedding for a in analyzed]), first, atol=1e-5)


def test_crops_are_the_arcface_alignment_at_160(
    embedder: FacenetEmbedder, detector: MtcnnDetector, dev_photos: list[DevPhoto]
) -> None:
    """The torch warp samples as cv2.warpAffine does (cv2 only rounds to uint8)."""
    from workbench.faces.align import align_face

    photo = next(p for p in dev_photos if p.category == "identity")
    rgb = _rgb(photo.path)
    faces = detector.detect(rgb)
    assert faces
    crops = embedder.crops(rgb, faces).cpu().numpy().transpose(0, 2, 3, 1)
    reference = np.stack([align_face(rgb, f.landmarks, 160) for f in faces]).astype(np.float32)
    assert crops.shape == reference.shape == (len(faces), 160, 160, 3)
    assert np.abs(crops - reference).max() <= 1.0


def test_released_files_with_their_classifier_load(
    tmp_path: Path, weights: Path, dev_photos: list[DevPhoto]
) -> None:
    """facenet-pytorch's released files carry logits.* (their training identities): ignored."""
    import torch

    state = torch.load(weights, map_location="cpu", weights_only=True)
    state["logits.weight"] = torch.zeros(10, 512)
    state["logits.bias"] = torch.zeros(10)
    path = tmp_path / WEIGHT_FILES["vggface2"]
    torch.save(state, path)
    emb = FacenetEmbedder(path)
    emb.load()
    assert emb.embed(np.zeros((200, 200, 3), np.uint8), []).shape == (0, 512)


@pytest.mark.parametrize("pretrained", ["vggface2", "casia-webface"])
def test_missing_weights_name_file_folder_and_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, _empty_torch_home: Path, pretrained: str
) -> None:
    _no_network(monkeypatch)
    settings = WorkbenchSettings(home=tmp_path / "wb", facenet={"pretrained": pretrained})
    assert settings.allow_download is False  # from the environment, as every test sets it
    pack = open_pack("facenet", settings)
    assert pack.name == ("facenet" if pretrained == "vggface2" else "facenet-casia-webface")
    with pytest.raises(ModelNotFoundError) as err:
        pack.load()
    message = str(err.value)
    folder = _empty_torch_home / "checkpoints"
    assert torch_home() == _empty_torch_home
    assert WEIGHT_FILES[pretrained] in message
    assert str(folder) in message
    assert weights_url(pretrained) in message
    assert "WORKBENCH_ALLOW_DOWNLOAD=false" in message
    assert not folder.exists() or not any(folder.iterdir())  # nothing half-downloaded


def test_downloads_on_but_offline_says_so(
    monkeypatch: pytest.MonkeyPatch, _empty_torch_home: Path
) -> None:
    _no_network(monkeypatch)
    with pytest.raises(ModelNotFoundError) as err:
        FacenetEmbedder(allow_download=True).load()
    assert "cannot reach github.com" in str(err.value)
    assert str(_empty_torch_home / "checkpoints") in str(err.value)


def test_download_goes_to_the_torch_cache_and_its_failure_is_reported(
    monkeypatch: pytest.MonkeyPatch, _empty_torch_home: Path, weights: Path
) -> None:
    """The download path itself, with facenet-pytorch's downloader replaced (no network here)."""
    from workbench.faces import weights as weights_module

    calls: list[tuple[str, Path]] = []

    def fail(url: str, path: Path) -> None:
        calls.append((url, path))
        raise OSError("connection reset")

    monkeypatch.setattr(weights_module, "online", lambda: True)
    monkeypatch.setattr(weights_module, "download_facenet_weights", fail)
    with pytest.raises(ModelNotFoundError) as err:
        FacenetEmbedder(allow_download=True).load()
    assert "downloading it failed (OSError: connection reset)" in str(err.value)
    target = _empty_torch_home / "checkpoints" / WEIGHT_FILES["vggface2"]
    assert calls == [(weights_url("vggface2"), target)]

    def fetch(url: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(weights.read_bytes())

    monkeypatch.setattr(weights_module, "download_facenet_weights", fetch)
    emb = FacenetEmbedder(allow_download=True)
    emb.load()
    assert emb.weights_path == target


def test_torch_home_is_facenet_pytorchs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, _empty_torch_home: Path
) -> None:
    from facenet_pytorch.models.inception_resnet_v1 import get_torch_home

    assert torch_home() == Path(get_torch_home())
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert torch_home() == Path(get_torch_home()) == tmp_path / "xdg" / "torch"


def test_weights_in_the_torch_cache_are_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, _empty_torch_home: Path, weights: Path
) -> None:
    _no_network(monkeypatch)
    cached = _empty_torch_home / "checkpoints" / WEIGHT_FILES["vggface2"]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights.read_bytes())
    emb = FacenetEmbedder(allow_download=True)  # present: no download is even tried
    emb.load()
    assert emb.weights_path == cached


def test_explicit_weights_path_that_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "facenet.pt"
    with pytest.raises(ModelNotFoundError) as err:
        FacenetEmbedder(missing, allow_download=True).load()
    assert str(missing) in str(err.value)
    assert weights_url("vggface2") in str(err.value)


@pytest.mark.parametrize("content", ["random bytes", "foreign state dict", "whole object"])
def test_wrong_file_names_the_file(tmp_path: Path, content: str) -> None:
    import torch

    path = tmp_path / "not-facenet.pt"
    if content == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "foreign state dict":
        torch.save({"conv.weight": torch.zeros(3, 3)}, path)
    else:
        torch.save(torch.nn.Linear(2, 2), path)  # a pickled module, refused by weights_only
    with pytest.raises(ModelNotFoundError) as err:
        FacenetEmbedder(path).load()
    message = str(err.value)
    assert str(path) in message
    assert "InceptionResnetV1" in message
    assert len(message) < 1000, message


def test_ingest_end_to_end(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, weights: Path, dev_photos: list[DevPhoto]
) -> None:
    from workbench.core import Workbench

    group = next(p for p in dev_photos if p.category == "group" and p.n_faces == 2)
    no_face = next(p for p in dev_photos if p.category == "no_face")
    identity = [p for p in dev_photos if p.category == "identity"][:2]
    paths = [group.path, no_face.path, *(p.path for p in identity)]
    settings = WorkbenchSettings(
        home=tmp_path / "wb",
        pack="facenet",
        facenet={"weights": weights},
        detection=DetectionSettings(min_score=0.9),
    )
    with Workbench(settings) as wb:
        report = wb.ingest(paths, progress=False)
        assert (report.photos, report.errors, report.no_faces) == (4, 0, 1), report
        assert report.faces >= 3
        stats = wb.stats()
        [state] = stats.packs
        assert (state.pack, state.collection) == ("facenet", "faces_facenet_512d")
        assert state.catalog_faces == state.index_vectors == report.faces
        # Even with random weights a photo's own face is its best match.
        [query] = wb.search(identity[0].path, top_k=1, threshold=0)
        assert query.matches and query.matches[0].photo == str(identity[0].path.resolve())
