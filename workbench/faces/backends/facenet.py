"""The `facenet` pack: facenet-pytorch's MTCNN detector and InceptionResnetV1 embedder (512-d).

Needs the ``facenet`` extra (torch, and facenet-pytorch installed with
``--no-deps``). MTCNN's weights ship inside facenet-pytorch; the
InceptionResnetV1 weights (~107 MB) are a separate file, read from
``settings.facenet.weights`` or facenet-pytorch's own cache
``$TORCH_HOME/checkpoints/`` and downloaded only when absent and
``settings.allow_download`` is on. torchvision, which facenet-pytorch imports,
is replaced by `workbench.faces.backends.torchvision_shim` when it is not installed.

The detector and the embedder are separate classes (`MtcnnDetector`,
`FacenetEmbedder`) satisfying `workbench.faces.types.Detector` / `Embedder`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workbench._optional import require
from workbench.errors import ModelNotFoundError
from workbench.faces.align import ARCFACE_TEMPLATE, similarity_transform
from workbench.faces.backends import torchvision_shim
from workbench.faces.pack import ComposedPack
from workbench.faces.runtime import import_torch, torch_device
from workbench.faces.types import DetectedFace, l2_normalize
from workbench.faces.weights import WEIGHT_FILES, Pretrained, facenet_weights, weights_url
from workbench.settings import DetectionSettings, Device, Metric, WorkbenchSettings

#: MTCNN's P-Net scans 12 px cells: a smaller minimum face only upsamples the photo (×12 / size)
_MTCNN_MIN_FACE = 12


def import_facenet() -> ModuleType:
    """facenet_pytorch, imported after torch (threads waiting passively) and the
    torchvision stand-ins are in place."""
    import_torch("the facenet pack")
    torchvision_shim.install()
    return require("facenet_pytorch", "facenet", "the facenet pack")


class MtcnnDetector:
    """facenet-pytorch's MTCNN (P-, R- and O-Net), landmarks in the ArcFace order.

    MTCNN's five points are already the ArcFace five as seen in the image
    (image-left eye, image-right eye, nose, image-left and image-right mouth
    corner); the score is O-Net's face probability. ``thresholds`` (default
    0.6, 0.7, 0.7) are the three stages' thresholds: the last is the lowest
    score ever returned. ``factor`` (0.709) is the image pyramid's step.

    facenet-pytorch crops candidates that cross the photo's border to the
    part inside and stretches it, so faces cut by the frame lose O-Net's
    vote. The photo is padded with black (what the original MTCNN pads such
    crops with) by ``edge_pad`` of its longer side (default 0.15) on every
    side: that finds a frame-cut face of the dev set that no padding, or 0.1,
    misses; boxes of cut faces may reach outside the photo.

    ``min_face_size`` (pixels of the photo) sets the smallest pyramid level;
    it is read at every call and never goes below 12 (MTCNN's cell). Photos
    of one size are detected together, up to ``max_batch_pixels`` padded
    pixels per call; others one by one (MTCNN batches equal sizes only).
    """

    name = "mtcnn"

    def __init__(
        self,
        *,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        edge_pad: float = 0.15,
        max_batch_pixels: int = 24_000_000,
        device: Device = "auto",
        threads: int | None = None,
    ) -> None:
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.factor = factor
        self.edge_pad = edge_pad
        self.max_batch_pixels = max_batch_pixels
        self.device = device
        self.threads = threads
        self._mtcnn: Any = None

    def load(self, detection: DetectionSettings | None = None) -> None:
        if self._mtcnn is not None:
            return
        facenet = import_facenet()
        device = torch_device(self.device, self.threads)
        data = Path(facenet.__file__).parent / "data"
        try:
            mtcnn = facenet.MTCNN(
                keep_all=True,
                min_face_size=self.min_face_size,
                thresholds=list(self.thresholds),
                factor=self.factor,
                select_largest=False,
                device=device,
            )
        except Exception as e:  # noqa: BLE001 - torch.load's OS, pickle and runtime errors
            raise ModelNotFoundError(
                f"facenet-pytorch cannot load MTCNN's weights pnet.pt, rnet.pt, onet.pt from "
                f"{data} ({type(e).__name__}: {e}); reinstall them with: "
                "pip install --force-reinstall --no-deps facenet-pytorch"
            ) from e
        self._mtcnn = mtcnn.eval()

    @property
    def device_used(self) -> str:
        return "not loaded" if self._mtcnn is None else self._mtcnn.device.type

    def detect(self, rgb: NDArray[np.uint8]) -> list[DetectedFace]:
        """Every face MTCNN finds in an RGB photo, with its probability."""
        return self.detect_many([rgb])[0]

    def detect_many(
        self,
        images: Sequence[NDArray[np.uint8]],
        detection: DetectionSettings | None = None,
    ) -> list[list[DetectedFace]]:
        """Faces of each photo; photos of equal size share MTCNN calls.

        ``detection.min_face_size``, when given, replaces ``min_face_size``.
        """
        self.load()
        if detection is not None:
            self.min_face_size = detection.min_face_size
        self._mtcnn.min_face_size = max(_MTCNN_MIN_FACE, int(self.min_face_size))
        results: list[list[DetectedFace]] = [[] for _ in images]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, rgb in enumerate(images):
            by_shape.setdefault(tuple(rgb.shape), []).append(i)
        for shape, indices in by_shape.items():
            pad = round(self.edge_pad * max(shape[:2]))
            pixels = (shape[0] + 2 * pad) * (shape[1] + 2 * pad)
            per_call = max(1, self.max_batch_pixels // pixels)
            for start in range(0, len(indices), per_call):
                chunk = indices[start : start + per_call]
                batch = np.stack([self._padded(images[i], pad) for i in chunk])
                for i, faces in zip(chunk, self._run(batch, pad), strict=True):
                    results[i] = faces
        return results

    @staticmethod
    def _padded(rgb: NDArray[np.uint8], pad: int) -> NDArray[np.uint8]:
        if pad <= 0:
            return np.ascontiguousarray(rgb)
        return np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)))

    def _run(self, batch: NDArray[np.uint8], pad: int) -> list[list[DetectedFace]]:
        """One MTCNN call over (n, H, W, 3) padded photos; boxes back in photo pixels."""
        boxes, probs, points = self._mtcnn.detect(batch, landmarks=True)
        out: list[list[DetectedFace]] = []
        for i in range(len(batch)):
            if boxes[i] is None:  # MTCNN's "no face" (its probs then hold [None])
                out.append([])
                continue
            # Under numpy 2 facenet-pytorch hands back dtype=object arrays.
            b = np.asarray(boxes[i], dtype=np.float32).reshape(-1, 4) - pad
            p = np.asarray(probs[i], dtype=np.float32).reshape(-1)
            lm = np.asarray(points[i], dtype=np.float32).reshape(-1, 5, 2) - pad
            out.append(
                [
                    DetectedFace(
                        (float(bb[0]), float(bb[1]), float(bb[2]), float(bb[3])),
                        np.ascontiguousarray(ll),
                        float(min(max(pp, 0.0), 1.0)),  # softmax may round past 1
                    )
                    for bb, pp, ll in zip(b, p, lm, strict=True)
                ]
            )
        return out


class FacenetEmbedder:
    """facenet-pytorch's InceptionResnetV1: 160 × 160 aligned faces → 512-d unit vectors.

    Faces are aligned from their 5 landmarks by a similarity transform onto
    the ArcFace template scaled from 112 to 160 px, not cut as facenet-pytorch
    does (MTCNN's box plus an optional margin, resized to 160 × 160, never
    rotated): every detector of the workbench gives the five points but not
    MTCNN's box geometry, and one alignment rule for all embedders lets any
    detector feed this one. On the dev photos MTCNN's box lands at about
    x 24–136, y 14–166 of the aligned crop (median): upright, the box's
    height fills the crop, a little tighter than FaceNet's training crops
    (box + 32 px margin at 160, i.e. the box at 16–144). What that costs
    with the released weights is not measured (they cannot be fetched on
    these machines). Pixels are scaled as facenet-pytorch's
    ``fixed_image_standardization``, (x − 127.5) / 128, and faces run in
    batches of ``batch_size`` (default 32), on CUDA when ``device`` allows
    and torch sees a GPU.

    ``weights`` is a state dict file; ``None`` means facenet-pytorch's cache
    for ``pretrained`` (see `workbench.faces.weights.facenet_weights`).
    """

    dim = 512
    input_size = 160
    #: FaceNet was trained with a triplet loss on squared Euclidean distance
    metric: Metric = "l2"

    def __init__(
        self,
        weights: Path | None = None,
        pretrained: Pretrained = "vggface2",
        *,
        allow_download: bool = False,
        device: Device = "auto",
        threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        self.weights = weights
        self.pretrained = pretrained
        self.allow_download = allow_download
        self.device = device
        self.threads = threads
        self.batch_size = batch_size
        # Names the vector space: the two weight sets' vectors are not comparable.
        self.name = "facenet" if pretrained == "vggface2" else f"facenet-{pretrained}"
        self.weights_path: Path | None = None
        self._model: Any = None
        self._template = ARCFACE_TEMPLATE * (self.input_size / 112.0)

    def load(self) -> None:
        if self._model is not None:
            return
        facenet = import_facenet()
        device = torch_device(self.device, self.threads)
        path = facenet_weights(self.weights, self.pretrained, self.allow_download)
        model = facenet.InceptionResnetV1(pretrained=None, classify=False)
        _load_state_dict(model, path, self.pretrained)
        self._model = model.eval().to(device)
        self._device = device
        self.weights_path = path

    @property
    def device_used(self) -> str:
        return "not loaded" if self._model is None else self._device.type

    def embed(self, rgb: NDArray[np.uint8], faces: Sequence[DetectedFace]) -> NDArray[np.float32]:
        """(len(faces), 512) unit vectors of the faces of one RGB photo."""
        return self.embed_many([rgb], [faces])

    def embed_many(
        self,
        images: Sequence[NDArray[np.uint8]],
        faces: Sequence[Sequence[DetectedFace]],
    ) -> NDArray[np.float32]:
        """Unit vectors of the faces of several photos, in order, in shared batches."""
        self.load()
        import torch

        crops = [self.crops(rgb, fs) for rgb, fs in zip(images, faces, strict=True) if fs]
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = torch.cat(crops)
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                x = (batch[start : start + self.batch_size] - 127.5) / 128.0
                out.append(self._model(x).float().cpu().numpy())
        return l2_normalize(np.concatenate(out))

    def crops(self, rgb: NDArray[np.uint8], faces: Sequence[DetectedFace]) -> Any:
        """(n, 3, 160, 160) float RGB crops in [0, 255] on the model's device, template-aligned.

        One bilinear ``grid_sample`` per photo (zeros outside it), sampling
        at pixel centres as ``cv2.warpAffine`` does, so no OpenCV is needed
        and the warp runs on the GPU when the model does.
        """
        import torch
        import torch.nn.functional as F

        self.load()
        size = self.input_size
        if not faces:
            return torch.zeros((0, 3, size, size), device=self._device)
        h, w = rgb.shape[:2]
        ys, xs = np.mgrid[0:size, 0:size]
        dst = np.stack([xs.ravel(), ys.ravel(), np.ones(size * size)], axis=1)  # (s², 3)
        grids = []
        for face in faces:
            m = similarity_transform(face.landmarks, self._template)  # photo → crop
            inverse = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]  # crop → photo
            src = dst @ inverse.T
            # align_corners=False: pixel centre x sits at (2x + 1) / w - 1
            grids.append((2.0 * src + 1.0) / np.array([w, h]) - 1.0)
        grid = torch.from_numpy(np.concatenate(grids).astype(np.float32))
        grid = grid.view(1, len(faces) * size, size, 2).to(self._device)
        # decoded photos may be read-only; torch wants a writable buffer to share
        photo = torch.from_numpy(np.require(rgb, requirements=["C", "W"])).to(self._device)
        photo = photo.permute(2, 0, 1).unsqueeze(0).float()
        # All faces of the photo in one call: stacked along the grid's height.
        warped = F.grid_sample(
            photo, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return warped.view(3, len(faces), size, size).permute(1, 0, 2, 3).contiguous()


def _load_state_dict(model: Any, path: Path, pretrained: str) -> None:
    """Load ``path`` into ``model`` strictly, or raise `ModelNotFoundError` naming the file."""
    import torch

    fix = (
        f"replace it with {WEIGHT_FILES.get(pretrained, 'the released weights')} "
        f"({weights_url(pretrained)}) or a state dict of facenet-pytorch's "
        "InceptionResnetV1 (torch.save(model.state_dict(), path))"
    )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle, zip, EOF and weights-only errors
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
        if text.startswith("Weights only load failed"):
            # torch's own advice here is to unpickle the file unsafely; never
            detail = (
                "it holds Python objects besides tensors, e.g. a whole pickled model rather "
                "than its state_dict, and weights are loaded with weights_only=True"
            )
        else:
            detail = f"{type(e).__name__}: {text.splitlines()[0] if text else 'no detail'}"
        raise ModelNotFoundError(
            f"{path} is not a readable PyTorch state dict ({detail}); {fix}"
        ) from e
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelNotFoundError(
            f"{path} holds a {type(state).__name__}, not a state dict of tensors; {fix}"
        )
    # The released files keep the classifier over their training identities
    # (logits.*, 8631 or 10575 classes); embeddings never use it.
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    expected = model.state_dict()
    problems = [
        _listed("missing", [k for k in expected if k not in state]),
        _listed("unexpected", [k for k in state if k not in expected]),
        _listed(
            "of another shape",
            [k for k, v in expected.items() if k in state and state[k].shape != v.shape],
        ),
    ]
    if any(problems):
        raise ModelNotFoundError(
            f"{path} is not a state dict of facenet-pytorch's InceptionResnetV1 "
            f"({'; '.join(p for p in problems if p)}); {fix}"
        )
    model.load_state_dict(state, strict=True)


def _listed(what: str, keys: list[str], shown: int = 3) -> str:
    """``"2 keys missing (a, b)"``, at most ``shown`` named; empty when there are none."""
    if not keys:
        return ""
    more = ", ..." if len(keys) > shown else ""
    noun = "key" if len(keys) == 1 else "keys"
    return f"{len(keys)} {noun} {what} ({', '.join(keys[:shown])}{more})"


def mtcnn_detector(settings: WorkbenchSettings) -> MtcnnDetector:
    """The workbench's MTCNN: faces of O-Net probability 0.9 or more (facenet-pytorch's
    default is 0.7); MTCNN's probabilities crowd near 1 for real faces."""
    return MtcnnDetector(
        thresholds=(0.6, 0.7, 0.9),
        min_face_size=settings.detection.min_face_size,
        device=settings.device,
        threads=settings.threads,
    )


def facenet_embedder(settings: WorkbenchSettings) -> FacenetEmbedder:
    return FacenetEmbedder(
        settings.facenet.weights,
        settings.facenet.pretrained,
        allow_download=settings.allow_download,
        device=settings.device,
        threads=settings.threads,
    )


def facenet_pack(settings: WorkbenchSettings) -> ComposedPack:
    """MTCNN + InceptionResnetV1 from facenet-pytorch (512-d).

    Named ``facenet`` with the vggface2 weights and ``facenet-casia-webface``
    with the CASIA-WebFace ones: their vectors are not comparable, so they
    get separate collections. A ``weights`` file given in the settings is
    taken to be of the kind ``pretrained`` names.
    """
    embedder = facenet_embedder(settings)
    pretrained = embedder.pretrained
    return ComposedPack(
        mtcnn_detector(settings),
        embedder,
        settings.detection,
        name=embedder.name,
        description=f"facenet-pytorch MTCNN + InceptionResnetV1 ({pretrained}), 512-d",
    )
