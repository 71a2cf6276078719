"""How usable a detected face is for recognition: size, detector score, sharpness, pose.

Every analysed face gets a `FaceQuality`. A face that fails the quality gate
(`workbench.settings.QualitySettings`) stays in the catalog and the gallery but is
left out of search answers and clustering by default, with its reasons, as
Rekognition's unindexed faces are (``SMALL_BOUNDING_BOX``, ``LOW_SHARPNESS``,
``EXTREME_POSE``, ``LOW_CONFIDENCE``).

* **size**: the box's shorter side in the photo's pixels. Recognizers look at
  112–160 px crops; a 20 px face is mostly made up by the upscaling.
* **sharpness**: the spread of the Laplacian of the face's 64 × 64 grey crop over
  the spread of its grey levels, so a dim face is not called blurry; in-focus
  LFW faces read about 0.3–0.6, motion blur and upscaled tiny faces below 0.1.
* **yaw, pitch, roll** (degrees): estimated from the five landmarks with a mean
  face's proportions: roll from the eye line, yaw from the nose's shift between
  the eyes (the nose tip stands about 0.55 eye-distances in front of them),
  pitch from the nose's height between eyes and mouth. Good to ±10° near
  frontal, saturating towards profile — enough to tell a profile from a portrait.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workbench.faces.types import DetectedFace, FaceQuality

CROP = 64
"""Side of the grey crop sharpness is measured on."""
NOSE_DEPTH = 0.55
"""Nose tip in front of the eyes, in eye distances (a mean adult face)."""
NOSE_HEIGHT = 0.5
"""Nose tip between the eye line (0) and the mouth line (1), seen frontally."""

REASONS: dict[str, str] = {
    "small_face": "the face is smaller than the quality gate's min_size",
    "low_score": "the detector was not sure it is a face (score below min_score)",
    "blurry": "the face is blurred (sharpness below min_sharpness)",
    "extreme_pose": "the face is turned too far (|yaw| above max_yaw or |pitch| above max_pitch)",
}
"""What each reason a face fails the gate for means."""


def pose(landmarks: NDArray[np.floating]) -> tuple[float, float, float]:
    """Yaw, pitch and roll in degrees from the five landmarks (ArcFace order).

    Positive yaw: the nose points to the image's right; positive pitch: the face
    looks down; positive roll: the eye line slopes down to the image's right.
    """
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    left_eye, right_eye, nose, mouth_l, mouth_r = lm
    eyes = (left_eye + right_eye) / 2.0
    mouth = (mouth_l + mouth_r) / 2.0
    across = right_eye - left_eye
    iod = float(np.hypot(*across))
    if iod < 1e-6:
        return 0.0, 0.0, 0.0
    roll = math.degrees(math.atan2(across[1], across[0]))
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    upright = np.array([[c, -s], [s, c]])
    n = upright @ (nose - eyes)
    m = upright @ (mouth - eyes)
    yaw = math.degrees(math.atan(n[0] / iod / NOSE_DEPTH))
    height = n[1] / m[1] if abs(m[1]) > 1e-6 else NOSE_HEIGHT
    pitch = math.degrees(math.atan((height - NOSE_HEIGHT) / NOSE_DEPTH))
    return yaw, pitch, roll


def sharpness(rgb: NDArray[np.uint8], box: tuple[float, float, float, float]) -> float:
    """Contrast-normalised Laplacian spread of the face's grey crop (0: flat or blurred)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = box
    a, b = max(0, int(math.floor(x1))), max(0, int(math.floor(y1)))
    c, d = min(w, int(math.ceil(x2))), min(h, int(math.ceil(y2)))
    if c - a < 4 or d - b < 4:
        return 0.0
    crop = Image.fromarray(np.ascontiguousarray(rgb[b:d, a:c])).convert("L")
    g = np.asarray(crop.resize((CROP, CROP), Image.Resampling.BILINEAR), dtype=np.float32)
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    spread = float(g.std())
    return float(lap.std()) / max(spread, 1.0)


def measure(rgb: NDArray[np.uint8], face: DetectedFace) -> FaceQuality:
    """The quality of ``face`` as found in ``rgb`` (sizes in ``rgb``'s pixels)."""
    yaw, pitch, roll = pose(face.landmarks)
    return FaceQuality(
        size=float(min(face.width, face.height)),
        score=float(face.score),
        sharpness=sharpness(rgb, face.box),
        yaw=yaw,
        pitch=pitch,
        roll=roll,
    )


def reasons(quality: Any, gate: Any) -> list[str]:
    """Why a face fails ``gate`` (a `QualitySettings`), from anything with the quality
    fields (a `FaceQuality` or a catalog row); empty when it passes or is unmeasured."""
    if not gate.enabled:
        return []
    out = []
    size, score, sharp = quality.size, quality.score, quality.sharpness
    yaw, pitch = quality.yaw, quality.pitch
    if size is not None and size < gate.min_size:
        out.append("small_face")
    if score is not None and score < gate.min_score:
        out.append("low_score")
    if sharp is not None and sharp < gate.min_sharpness:
        out.append("blurry")
    if (yaw is not None and abs(yaw) > gate.max_yaw) or (
        pitch is not None and abs(pitch) > gate.max_pitch
    ):
        out.append("extreme_pose")
    return out


__all__ = ["REASONS", "FaceQuality", "measure", "pose", "reasons", "sharpness"]
