"""The `dlib` pack on real photos: HOG detection, ArcFace-order landmarks, 128-d descriptors."""

from __future__ import annotations

import importlib
import socket
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import MissingDependencyError, ModelNotFoundError
from workbench.faces.backends.dlib import DlibEmbedder, DlibHogDetector, dlib_pack
from workbench.faces.pack import ComposedPack
from workbench.faces.registry import open_pack
from workbench.faces.weights import dlib_model_files
from workbench.imaging.decode import decode_image
from workbench.settings import DetectionSettings, WorkbenchSettings

pytestmark = pytest.mark.integration


def _rgb(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes()).rgb


@pytest.fixture(scope="module")
def pack() -> ComposedPack:
    return dlib_pack(DetectionSettings()).load()


def test_loads_from_the_registry_without_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted by the dlib pack")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    opened = open_pack("dlib", WorkbenchSettings(home=tmp_path, pack="dlib"))
    assert isinstance(opened, ComposedPack)
    assert isinstance(opened.detector, DlibHogDetector)
    assert isinstance(opened.embedder, DlibEmbedder)
    assert opened.metric == "l2"  # dlib's ResNet was trained for Euclidean distance
    opened.load()
    assert opened.name == "dlib"
    assert opened.embedding_dim == 128
    assert opened.collection_name == "faces_dlib_128d"


def test_identity_photo_gives_unit_embedding_and_arcface_landmarks(
    pack: ComposedPack, dev_photos: list
) -> None:
    photo = next(p for p in dev_photos if p.category == "identity")
    faces = pack.analyze(_rgb(photo.path))
    assert len(faces) >= 1, photo.path
    face = faces[0]
    assert face.embedding.shape == (128,)
    assert face.embedding.dtype == np.float32
    assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-4)
    det = face.detection
    assert 0.5 <= det.score < 1.0
    lm = det.landmarks
    assert lm.shape == (5, 2)
    x1, y1, x2, y2 = det.box
    assert np.all((lm[:, 0] >= x1) & (lm[:, 0] <= x2)), (det.box, lm)
    assert np.all((lm[:, 1] >= y1) & (lm[:, 1] <= y2)), (det.box, lm)
    left_eye, right_eye, nose, mouth_left, mouth_right = lm
    assert left_eye[0] < right_eye[0]
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_no_face_photos_give_no_faces(pack: ComposedPack, dev_photos: list) -> None:
    photos = [p for p in dev_photos if p.category == "no_face"]
    assert len(photos) == 4
    found = {p.path.name: len(pack.detect(_rgb(p.path))) for p in photos}
    assert all(n == 0 for n in found.values()), found


def test_group_photos_find_all_but_at_most_one_face(pack: ComposedPack, dev_photos: list) -> None:
    photos = [p for p in dev_photos if p.category == "group"]
    assert photos
    short = {}
    for p in photos:
        n = len(pack.detect(_rgb(p.path)))
        if n < (p.n_faces or 0) - 1:
            short[p.path.name] = (n, p.n_faces)
    assert not short, f"found / labelled faces: {short}"


def test_same_person_is_closer_than_a_stranger(pack: ComposedPack, dev_photos: list) -> None:
    by_identity: dict[str, list] = {}
    for p in dev_photos:
        if p.category == "identity":
            by_identity.setdefault(p.identity, []).append(p)
    a, b = sorted((ps for ps in by_identity.values() if len(ps) >= 2), key=len)[-1][:2]
    other = next(ps[0] for i, ps in by_identity.items() if i != a.identity)
    ea, eb, eo = (pack.analyze(_rgb(p.path))[0].embedding for p in (a, b, other))
    assert float(ea @ eb) > float(ea @ eo)


def test_missing_weights_package_names_the_extra() -> None:
    with pytest.raises(MissingDependencyError, match=r"face-workbench\[dlib\]"):
        dlib_model_files("no_such_weights_package_for_workbench")


def test_missing_weight_file_names_file_and_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "fake_dlib_weights_for_workbench"
    (fake / "models").mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.raises(ModelNotFoundError) as err:
        dlib_model_files(fake.name)
    assert "shape_predictor_5_face_landmarks.dat" in str(err.value)
    assert str(fake / "models") in str(err.value)
