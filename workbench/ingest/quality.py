"""Quality for faces stored before it was measured (``workbench quality``).

Size and pose come from the stored box and landmarks; sharpness needs the pixels,
so each photo is read again from where it was registered (a photo that cannot be
read keeps its faces' sharpness unmeasured, which never fails the gate) and
decoded at the analysis scale the models saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from loguru import logger
from sqlalchemy import select, update

from workbench.faces.quality import pose, sharpness
from workbench.imaging.decode import decode_image
from workbench.monitoring.logs import progress_bar
from workbench.settings import WorkbenchSettings
from workbench.sources import reopen_photo
from workbench.store.catalog import Catalog
from workbench.store.models import Face, Photo


@dataclass
class QualityReport:
    faces: int = 0
    """Faces given their quality."""
    photos: int = 0
    unread: int = 0
    """Photos that could not be read again (their faces got size and pose only)."""
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "faces": self.faces,
            "photos": self.photos,
            "unread": self.unread,
            "seconds": round(self.seconds, 2),
            "errors": [{"photo": u, "error": e} for u, e in self.errors],
        }


def faces_without_quality(catalog: Catalog, pack: str | None) -> dict[int, list[Face]]:
    """Faces whose quality was never measured, by photo id."""
    q = select(Face).where(Face.sharpness.is_(None) | Face.size.is_(None))
    if pack is not None:
        q = q.where(Face.pack == pack)
    out: dict[int, list[Face]] = {}
    with catalog.session() as s:
        for face in s.scalars(q.order_by(Face.photo_id, Face.id)):
            out.setdefault(face.photo_id, []).append(face)
    return out


def backfill_quality(
    catalog: Catalog, settings: WorkbenchSettings, pack: str | None = None, progress: bool = True
) -> QualityReport:
    """Measure the quality of every face (of ``pack``) stored without it."""
    started = time.perf_counter()
    report = QualityReport()
    todo = faces_without_quality(catalog, pack)
    photos = catalog.photos_by_ids(sorted(todo))
    opened: dict[str, Any] = {}
    with progress_bar(total=len(todo), desc="quality", unit="photo", enabled=progress) as bar:
        for photo_id, faces in todo.items():
            photo = photos[photo_id]
            sharp = _sharpness_of(photo, faces, settings, opened, report)
            with catalog.session.begin() as s:
                for face, value in zip(faces, sharp, strict=True):
                    yaw, pitch, roll = pose(np.asarray(face.landmarks, dtype=np.float64))
                    size = float(min(face.x2 - face.x1, face.y2 - face.y1))
                    s.execute(
                        update(Face)
                        .where(Face.id == face.id)
                        .values(size=size, sharpness=value, yaw=yaw, pitch=pitch, roll=roll)
                    )
            report.faces += len(faces)
            report.photos += 1
            bar.update(1)
    report.seconds = time.perf_counter() - started
    return report


def _sharpness_of(
    photo: Photo,
    faces: list[Face],
    settings: WorkbenchSettings,
    opened: dict[str, Any],
    report: QualityReport,
) -> list[float | None]:
    ref = reopen_photo(photo.source, photo.origin, photo.uri, photo.meta or {}, settings, opened)
    try:
        if ref.problem:
            raise OSError(ref.problem)
        limits = settings.limits
        image = decode_image(ref.read(), limits, limits.analysis_side)
    except Exception as e:  # noqa: BLE001 - one unreadable photo must not stop the backfill
        report.unread += 1
        report.errors.append((photo.uri, str(e)))
        logger.warning("{}: cannot read it again for sharpness: {}", photo.uri, e)
        return [None] * len(faces)
    scale = image.scale
    return [
        sharpness(image.rgb, (f.x1 / scale, f.y1 / scale, f.x2 / scale, f.y2 / scale))
        for f in faces
    ]


__all__ = ["QualityReport", "backfill_quality", "faces_without_quality"]
