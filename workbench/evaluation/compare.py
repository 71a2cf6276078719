"""Every available pack side by side: LFW verification, detection, dev group photos, speed.

`compare_packs` is what ``workbench evaluate lfw`` and the ``05_evaluate``
notebook run. A pack that cannot load here (weights missing, runtime not
installed) is listed with the reason instead of failing the comparison.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.evaluation.lfw import LFW_VIEW2, NoFacePolicy
from workbench.evaluation.lfw_view2 import LfwReport, evaluate_lfw
from workbench.faces.pack import ModelPack
from workbench.faces.registry import open_pack
from workbench.imaging.decode import decode_image
from workbench.settings import WorkbenchSettings


@dataclass(frozen=True)
class GroupPhotos:
    """Faces a pack detected on the labelled group photos of a dev set."""

    photos: int
    labelled: int
    detected: int
    exact: int
    """Photos where the detected count equals the labelled one."""
    per_photo: tuple[tuple[str, int, int], ...] = ()
    """(file name, labelled, detected) per photo."""
    seconds: float = 0.0

    @property
    def ms_per_photo(self) -> float | None:
        return 1000.0 * self.seconds / self.photos if self.photos else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "photos": self.photos,
            "labelled_faces": self.labelled,
            "detected_faces": self.detected,
            "exact_photos": self.exact,
            "ms_per_photo": None if self.ms_per_photo is None else round(self.ms_per_photo, 1),
            "per_photo": [{"photo": n, "labelled": a, "detected": b} for n, a, b in self.per_photo],
        }


def group_photos(dev_dir: str | Path) -> list[tuple[Path, int]]:
    """The labelled group photos of a dev set (``labels.csv``: path, n_faces, category)."""
    dev_dir = Path(dev_dir).expanduser()
    labels = dev_dir / "labels.csv"
    try:
        with open(labels, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as e:
        raise WorkbenchError(f"cannot read the dev labels {labels} ({e.strerror or e})") from e
    out = []
    for row in rows:
        if row.get("category") == "group" and row.get("n_faces"):
            out.append((dev_dir / row["path"], int(row["n_faces"])))
    if not out:
        raise WorkbenchError(f"{labels} lists no group photos (category 'group' with n_faces)")
    return out


def detect_group_photos(pack: ModelPack, dev_dir: str | Path) -> GroupPhotos:
    """Detected against labelled face counts on the dev set's group photos."""
    pack.load()
    rows: list[tuple[str, int, int]] = []
    start = time.perf_counter()
    for path, labelled in group_photos(dev_dir):
        rgb = decode_image(path.read_bytes()).rgb
        rows.append((path.name, labelled, len(pack.detect(rgb))))
    seconds = time.perf_counter() - start
    return GroupPhotos(
        photos=len(rows),
        labelled=sum(r[1] for r in rows),
        detected=sum(r[2] for r in rows),
        exact=sum(r[1] == r[2] for r in rows),
        per_photo=tuple(rows),
        seconds=seconds,
    )


@dataclass(frozen=True)
class PackResult:
    pack: str
    description: str
    lfw: LfwReport
    groups: GroupPhotos | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.lfw.to_dict()
        return {
            "pack": self.pack,
            "description": self.description,
            "accuracy": d["accuracy"],
            "detection_rate": d["detection_rate"],
            "ms_per_image": d["ms_per_image"],
            "ms_per_face": d["ms_per_face"],
            "lfw": d,
            "dev_groups": self.groups.to_dict() if self.groups is not None else None,
        }


@dataclass(frozen=True)
class Comparison:
    """The result of one ``evaluate lfw`` run over one or more packs."""

    lfw_dir: str
    pairs: str
    results: tuple[PackResult, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    created: str = field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "lfw",
            "created": self.created,
            "lfw_dir": self.lfw_dir,
            "pairs_file": self.pairs,
            "packs": [r.to_dict() for r in self.results],
            "skipped": [{"pack": p, "reason": r} for p, r in self.skipped],
            "seconds": round(self.seconds, 1),
        }

    def _repr_html_(self) -> str | None:
        """A row per pack and their ROCs, for notebooks (`workbench.display.evaluation`)."""
        from workbench.display.evaluation import comparison_repr

        return comparison_repr(self)

    def save(self, home: Path) -> Path:
        """Write the JSON document to ``<home>/evaluations/`` (the report notebook reads it)."""
        return save_evaluation(self.to_dict(), home, "lfw", self.created)


def save_evaluation(doc: dict[str, Any], home: Path, kind: str, created: str) -> Path:
    """Write an evaluation's JSON document to ``<home>/evaluations/<kind>-<UTC stamp>.json``."""
    folder = home / "evaluations"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = created.replace(":", "").replace("-", "").replace("+0000", "Z")
    path = folder / f"{kind}-{stamp}.json"
    n = 1
    while path.exists():  # two runs in the same millisecond keep both documents
        n += 1
        path = folder / f"{kind}-{stamp}-{n}.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def available_packs(
    settings: WorkbenchSettings, names: Sequence[str] | None = None
) -> tuple[list[ModelPack], list[tuple[str, str]]]:
    """Packs that load here (every registered one unless ``names``), and why others don't."""
    from workbench.faces.registry import PACKS

    if not names:  # "whatever is here" must not start downloading packs
        settings = settings.model_copy(update={"allow_download": False})
    loaded: list[ModelPack] = []
    skipped: list[tuple[str, str]] = []
    for name in names or PACKS.names():
        try:
            loaded.append(open_pack(name, settings).load())
        except WorkbenchError as e:
            if names:  # asked for by name: its failure is the answer
                raise
            skipped.append((name, str(e)))
    return loaded, skipped


def compare_packs(
    packs: Sequence[ModelPack],
    lfw_dir: str | Path,
    pairs: str | Path = LFW_VIEW2,
    *,
    dev_dir: str | Path | None = None,
    no_face: NoFacePolicy = "fallback",
    per_fold: int | None = None,
    skipped: Sequence[tuple[str, str]] = (),
    progress: bool = True,
) -> Comparison:
    """Evaluate each pack on the LFW protocol (and the dev group photos when given)."""
    start = time.perf_counter()
    results = []
    for pack in packs:
        report = evaluate_lfw(
            pack, lfw_dir, pairs, no_face=no_face, per_fold=per_fold, progress=progress
        )
        groups = detect_group_photos(pack, dev_dir) if dev_dir is not None else None
        results.append(PackResult(pack.name, pack.description, report, groups))
    return Comparison(
        str(lfw_dir),
        str(pairs),
        tuple(results),
        tuple(skipped),
        time.perf_counter() - start,
    )


__all__ = [
    "Comparison",
    "GroupPhotos",
    "PackResult",
    "available_packs",
    "compare_packs",
    "detect_group_photos",
    "group_photos",
]
