"""5-point similarity alignment to the ArcFace 112×112 template."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def similarity_transform(
    src: NDArray[np.floating], dst: NDArray[np.floating]
) -> NDArray[np.float64]:
    """Least-squares rotation + uniform scale + translation mapping ``src`` onto ``dst``.

    Umeyama (1991); returns the 2×3 matrix for ``cv2.warpAffine``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = src.shape[0]
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / n
    scale = (s * d).sum() / var_src if var_src > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = dst_mean - scale * rot @ src_mean
    return m


def align_face(
    image: NDArray[np.uint8], landmarks: NDArray[np.floating], size: int = 112
) -> NDArray[np.uint8]:
    """Warp the face with these 5 landmarks onto the ArcFace template (size × size)."""
    import cv2

    dst = ARCFACE_TEMPLATE * (size / 112.0)
    m = similarity_transform(landmarks, dst)
    return cv2.warpAffine(image, m, (size, size), borderValue=0.0)
