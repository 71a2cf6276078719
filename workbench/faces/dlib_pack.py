"""The `dlib` pack: dlib's HOG face detector and its 128-d ResNet, all weights from PyPI.

Needs the ``dlib`` extra (``dlib-bin`` + ``face-recognition-models``); nothing is
downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from workbench._optional import require
from workbench.errors import MissingDependencyError, ModelNotFoundError
from workbench.faces.packs import ModelPack
from workbench.faces.types import Box, DetectedFace, l2_normalize
from workbench.settings import DetectionSettings

MODELS_PACKAGE = "face_recognition_models"
SHAPE_5_FILE = "shape_predictor_5_face_landmarks.dat"
SHAPE_68_FILE = "shape_predictor_68_face_landmarks.dat"
RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"

# iBUG 68-point indices, named as seen in the image (the iBUG scheme names them
# from the subject's side, so its "right eye" 36-41 is the image-left eye).
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_NOSE_TIP = 30
_MOUTH_LEFT = 48
_MOUTH_RIGHT = 54

# Lowest SVM margin ever asked of HOG, whatever min_score says (score 0.12 at
# the default slope): below it nearly every window is background.
_MIN_MARGIN = -1.0


def _iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def margin_to_score(margin: float, slope: float) -> float:
    """The HOG detector's SVM margin as a (0, 1) confidence.

    A logistic centred on margin 0, dlib's own detection threshold, so that
    the workbench's default ``min_score`` of 0.5 keeps what dlib would keep.
    """
    return 1.0 / (1.0 + math.exp(-slope * margin))


def find_model_files(package: str = MODELS_PACKAGE) -> dict[str, Path]:
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


class DlibPack(ModelPack):
    """dlib's HOG detector, 68-point landmarks and ResNet face descriptor (128-d).

    Detection runs on a copy of the photo resized so that its longer side is
    ``work_side`` pixels (default 1280; photos are upscaled by at most
    ``max_upscale``, default 2.0). The HOG window is 80 px, so faces smaller
    than about 80 / ``work_side`` of the photo's longer side (1/16 by
    default) are missed. 1280 is the smallest size that still finds every
    labelled group face of the dev set, and one unpadded HOG scan of it takes
    about 0.1 s of one core.

    Faces cut by the frame defeat HOG. Each pass mirror-pads the copy by a
    fraction of its longer side (``edge_pads``, default 0.1 and 0.15): a face
    cut near its middle, mirrored onto itself, looks whole again. Detections
    centred in the padding (mirror images) are dropped, and overlapping
    detections of the passes (IoU >= ``merge_iou``, default 0.3) are merged.
    Two pads rather than one because whether a mirrored face lands on the HOG
    grid well enough to pass depends on the exact padded size.

    The SVM margin becomes a score by a logistic of slope ``score_slope``
    (default 2.0): margin 0, dlib's own threshold, reads 0.5 (the default
    ``min_score``); margin 1 reads 0.88. Landmarks come from the 68-point
    predictor, reduced to the ArcFace five. Descriptors are computed on the
    full-resolution photo from 5-point shapes (the alignment dlib's ResNet was
    trained with), all faces of a photo in one call, with ``num_jitters``
    (default 0) jitters.
    """

    name = "dlib"
    embedding_dim = 128
    description = (
        "dlib HOG detector + 68-point landmarks + ResNet-34 face descriptor (128-d), "
        "weights from the face-recognition-models package"
    )

    def __init__(
        self,
        detection: DetectionSettings,
        *,
        work_side: int = 1280,
        max_upscale: float = 2.0,
        edge_pads: Sequence[float] = (0.1, 0.15),
        merge_iou: float = 0.3,
        score_slope: float = 2.0,
        num_jitters: int = 0,
    ) -> None:
        super().__init__(detection)
        self.work_side = work_side
        self.max_upscale = max_upscale
        self.edge_pads = tuple(edge_pads)
        self.merge_iou = merge_iou
        self.score_slope = score_slope
        self.num_jitters = num_jitters

    def _load(self) -> None:
        dlib = require("dlib", "dlib", "the dlib pack")
        files = find_model_files()
        self._dlib: Any = dlib
        self._detector: Any = dlib.get_frontal_face_detector()
        self._shape5: Any = dlib.shape_predictor(str(files[SHAPE_5_FILE]))
        self._shape68: Any = dlib.shape_predictor(str(files[SHAPE_68_FILE]))
        self._resnet: Any = dlib.face_recognition_model_v1(str(files[RESNET_FILE]))

    def _scaled(self, rgb: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], float]:
        """The photo resized so that its longer side is ``work_side``, and the scale."""
        h, w = rgb.shape[:2]
        scale = min(self.work_side / max(h, w), self.max_upscale)
        if abs(scale - 1.0) < 1e-3:
            return rgb, 1.0
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # Pillow's bilinear filter averages over the whole footprint when
        # shrinking, so downscaled photos keep the gradients HOG needs.
        return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR)), scale

    def _candidates(self, rgb: NDArray[np.uint8]) -> list[tuple[Box, float]]:
        """HOG boxes (photo pixels) and SVM margins over all padded passes, overlaps merged."""
        h, w = rgb.shape[:2]
        img, scale = self._scaled(rgb)
        # Ask for everything above the configured min_score (the base class
        # filters again), but never below _MIN_MARGIN: past it HOG returns
        # thousands of background windows. Upsampling is done by the resize.
        p = min(max(self.detection.min_score, 1e-6), 1 - 1e-6)
        threshold = max(math.log(p / (1 - p)) / self.score_slope, _MIN_MARGIN)
        found: list[tuple[Box, float]] = []
        for frac in self.edge_pads or (0.0,):
            pad = min(round(frac * max(img.shape[:2])), min(img.shape[:2]) - 1)
            padded = img
            if pad > 0:
                padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
            rects, margins, _ = self._detector.run(np.ascontiguousarray(padded), 0, threshold)
            for r, margin in zip(rects, margins, strict=True):
                box = (
                    (r.left() - pad) / scale,
                    (r.top() - pad) / scale,
                    (r.right() + 1 - pad) / scale,
                    (r.bottom() + 1 - pad) / scale,
                )
                # Mirror images of faces near an edge land in the padding: drop them.
                if 0 <= (box[0] + box[2]) / 2 < w and 0 <= (box[1] + box[3]) / 2 < h:
                    found.append((box, float(margin)))
        # Passes see the same faces on slightly different grids: keep the best
        # of each overlapping group (greedy non-maximum suppression).
        kept: list[tuple[Box, float]] = []
        for box, margin in sorted(found, key=lambda c: -c[1]):
            if all(_iou(box, k) < self.merge_iou for k, _ in kept):
                kept.append((box, margin))
        return kept

    def _detect(self, rgb: NDArray[np.uint8]) -> list[DetectedFace]:
        rgb = np.ascontiguousarray(rgb)  # dlib's numpy bridge needs C order
        faces: list[DetectedFace] = []
        for box, margin in self._candidates(rgb):
            shape = self._shape68(rgb, self._rect(box))
            pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
            landmarks = np.stack(
                [
                    pts[_LEFT_EYE].mean(axis=0),
                    pts[_RIGHT_EYE].mean(axis=0),
                    pts[_NOSE_TIP],
                    pts[_MOUTH_LEFT],
                    pts[_MOUTH_RIGHT],
                ]
            ).astype(np.float32)
            faces.append(DetectedFace(box, landmarks, margin_to_score(margin, self.score_slope)))
        return faces

    def _rect(self, box: Box) -> Any:
        """The dlib rectangle (inclusive corners) of a box in photo pixels."""
        x1, y1, x2, y2 = box
        return self._dlib.rectangle(round(x1), round(y1), round(x2) - 1, round(y2) - 1)

    def _embed(self, rgb: NDArray[np.uint8], faces: Sequence[DetectedFace]) -> NDArray[np.float32]:
        rgb = np.ascontiguousarray(rgb)
        # The ResNet was trained on chips aligned by the 5-point predictor run on
        # detector boxes, so the 5-point shape is recomputed from the face box
        # (cheap) rather than derived from the 68 points.
        shapes = self._dlib.full_object_detections()
        for f in faces:
            shapes.append(self._shape5(rgb, self._rect(f.box)))
        vectors = self._resnet.compute_face_descriptor(rgb, shapes, self.num_jitters)
        return l2_normalize(np.array([np.asarray(v) for v in vectors], dtype=np.float32))
