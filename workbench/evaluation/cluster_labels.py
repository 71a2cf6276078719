"""True identities for the faces of a workbench, from a labelled folder.

Two label formats:

* a labels CSV in the dev-set format (``path,identity,...``; paths relative
  to the CSV's folder; rows without an identity are skipped); the labelled
  face of a photo is its **largest** face;
* an LFW folder (``<dir>/images/<Person_Name>/<file>.jpg`` or
  ``<dir>/<Person_Name>/...``): the identity is the folder name and the
  labelled face is the one **nearest the centre** (LFW crops are centred on
  the person; other faces in them are bystanders).

Photos are matched by their path's ending, so a workbench built from a copy
of the folder (or a zip of it) is matched too. Faces of unlabelled photos,
and bystanders, are clustered as usual but left out of the scores.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from workbench.errors import ConfigurationError
from workbench.evaluation.cluster_metrics import ClusterScores, cluster_scores
from workbench.store.catalog import Catalog
from workbench.store.models import Face, Photo

Pick = Literal["largest", "centre"]


@dataclass(frozen=True)
class FaceLabels:
    """Labelled faces: ``face_ids[i]`` is ``identities[i]``."""

    face_ids: NDArray[np.int64]
    identities: NDArray[np.str_]
    labelled_photos: int
    """Labelled photos found in the catalog."""
    photos_without_face: int
    """Of those, photos where the pack found no face (they cannot be scored)."""
    missing_photos: int
    """Labelled photos not in the catalog at all."""
    copies: int = 0
    """Labelled photos recorded as a copy of another photo (not analysed): their faces
    are the original's and are scored once, through it; not counted as without a face."""

    def scores(self, face_ids: NDArray[np.int64], labels: NDArray[np.int64]) -> ClusterScores:
        """Scores of a clustering (``labels`` per ``face_ids``) on the labelled faces."""
        pos = {int(f): i for i, f in enumerate(face_ids.tolist())}
        pred = np.array([labels[pos[int(f)]] if int(f) in pos else -1 for f in self.face_ids])
        return cluster_scores(self.identities, pred)

    def report(self, face_ids: NDArray[np.int64], labels: NDArray[np.int64]) -> dict[str, Any]:
        _, counts = np.unique(self.identities, return_counts=True)
        return {
            **self.scores(face_ids, labels).to_dict(),
            "identities_with_2_or_more": int((counts >= 2).sum()),
            "labelled_photos": self.labelled_photos,
            "photos_without_face": self.photos_without_face,
            "missing_photos": self.missing_photos,
            "copies": self.copies,
        }


def read_labels_csv(path: str | Path) -> dict[str, str]:
    """``relative path → identity`` from a labels CSV (``path`` and ``identity`` columns)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"path", "identity"} <= set(reader.fieldnames):
                raise ConfigurationError(
                    f"{path}: a labels CSV needs the columns path and identity"
                    f" (got {', '.join(reader.fieldnames or [])})"
                )
            return {r["path"]: r["identity"] for r in reader if r.get("identity")}
    except OSError as e:
        raise ConfigurationError(f"cannot read labels file {path}: {e.strerror or e}") from e


def read_lfw_labels(lfw_dir: str | Path) -> dict[str, str]:
    """``Person_Name/file.jpg → Person_Name`` for every image of an LFW folder."""
    root = Path(lfw_dir)
    images = root / "images" if (root / "images").is_dir() else root
    found = {
        f"{p.parent.name}/{p.name}": p.parent.name
        for p in images.glob("*/*")
        if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    }
    if not found:
        raise ConfigurationError(f"{lfw_dir}: no LFW images (<dir>/images/<Name>/<file>.jpg)")
    return found


def face_labels(
    catalog: Catalog, pack: str, labels: dict[str, str], pick: Pick = "largest"
) -> FaceLabels:
    """Match labelled paths to catalog photos and pick each photo's labelled face."""
    wanted = {_tail(k): v for k, v in labels.items()}
    depth = max((k.count("/") + 1 for k in wanted), default=1)
    photo_identity: dict[int, str] = {}
    copies = 0
    with catalog.session() as s:
        for pid, uri, status in s.execute(select(Photo.id, Photo.uri, Photo.status)):
            parts = str(uri).replace("\\", "/").replace("!", "/").split("/")
            for d in range(1, depth + 1):
                ident = wanted.get("/".join(parts[-d:]))
                if ident is not None:
                    if status == "duplicate":
                        copies += 1
                    else:
                        photo_identity[int(pid)] = ident
                    break
        faces: dict[int, list[tuple[int, float, float, float, float]]] = defaultdict(list)
        dims: dict[int, tuple[int, int]] = {}
        ids = list(photo_identity)
        for start in range(0, len(ids), 20000):
            chunk = ids[start : start + 20000]
            for fid, pid, x1, y1, x2, y2 in s.execute(
                select(Face.id, Face.photo_id, Face.x1, Face.y1, Face.x2, Face.y2).where(
                    Face.pack == pack, Face.photo_id.in_(chunk)
                )
            ):
                faces[int(pid)].append((int(fid), x1, y1, x2, y2))
            for pid, w, h in s.execute(
                select(Photo.id, Photo.width, Photo.height).where(Photo.id.in_(chunk))
            ):
                dims[int(pid)] = (w or 0, h or 0)
    chosen: list[int] = []
    identities: list[str] = []
    for pid, ident in photo_identity.items():
        cand = faces.get(pid)
        if not cand:
            continue
        if pick == "largest":
            best = max(cand, key=lambda f: ((f[3] - f[1]) * (f[4] - f[2]), -f[0]))
        else:
            w, h = dims[pid]
            best = min(
                cand,
                key=lambda f: ((f[1] + f[3]) / 2 - w / 2) ** 2 + ((f[2] + f[4]) / 2 - h / 2) ** 2,
            )
        chosen.append(best[0])
        identities.append(ident)
    return FaceLabels(
        np.asarray(chosen, dtype=np.int64),
        np.asarray(identities, dtype=np.str_),
        labelled_photos=len(photo_identity) + copies,
        photos_without_face=len(photo_identity) - len(chosen),
        missing_photos=len(wanted) - len(photo_identity) - copies,
        copies=copies,
    )


def _tail(path: str) -> str:
    return path.replace("\\", "/").lstrip("./")


__all__ = ["FaceLabels", "face_labels", "read_labels_csv", "read_lfw_labels"]
