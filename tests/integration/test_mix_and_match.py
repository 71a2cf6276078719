"""Any detector with any embedder: MTCNN boxes with MobileFaceNet, in the same home as `local`.

Both packs use the MobileFaceNet embedder, so their faces share one Milvus
collection; each vector carries its pack and searches keep to one pack.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import DevPhoto, cli_env, local_pack_settings
from tests.integration.conftest import DevWorkbench
from tests.integration.test_spine import top1_rate
from workbench.store.models import Face

pytestmark = pytest.mark.integration

LOCAL = "local:det_500m+mobilefacenet"
MIXED = "mtcnn+mobilefacenet"


def _ingest(home: Path, models_dir: Path, images: Path, *flags: str) -> dict:
    # In a subprocess: a Milvus Lite file is held by the process that opened it.
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", *flags, "ingest", str(images)]
        + ["--json", "--no-progress"],
        env=cli_env(home, models_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["errors"] == 0 and report["faces"] > 0, report
    return report


@pytest.fixture(scope="module")
def shared_home(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    faces_dev_dir: Path,
    dev_photos: list[DevPhoto],
) -> tuple[Path, float]:
    """The dev set ingested by `local`, then by MTCNN + MobileFaceNet through the CLI flags;
    and `local`'s top-1 rate (by the stored faces: see `top1_rate`)."""
    from workbench.core import Workbench

    home = tmp_path_factory.mktemp("mix")
    images = faces_dev_dir / "images"
    _ingest(home, models_dir, images)
    _ingest(home, models_dir, images, "--detector", "mtcnn", "--embedder", "mobilefacenet")
    with Workbench(local_pack_settings(home, models_dir)) as wb:
        local_rate, _ = top1_rate(DevWorkbench(wb, None, dev_photos), stored=True)
    return home, local_rate


def test_mixed_pack_searches_within_5_points_of_local(
    shared_home: tuple[Path, float], models_dir: Path, dev_photos: list[DevPhoto]
) -> None:
    from workbench.core import Workbench

    home, local_rate = shared_home
    settings = local_pack_settings(home, models_dir, detector="mtcnn", embedder="mobilefacenet")
    with Workbench(settings) as wb:
        assert wb.pack.name == MIXED
        rate, misses = top1_rate(DevWorkbench(wb, None, dev_photos), stored=True)
    print(f"top-1: local {local_rate:.1%}, {MIXED} {rate:.1%}")
    assert local_rate >= 0.90
    assert rate >= local_rate - 0.05, (
        f"{MIXED} top-1 {rate:.1%} vs local {local_rate:.1%}: {misses}"
    )


def test_both_packs_share_the_embedders_collection_and_keep_their_own_faces(
    shared_home: tuple[Path, float], models_dir: Path, faces_dev_dir: Path
) -> None:
    from workbench.core import Workbench

    home, _ = shared_home
    # the pack named by its spec this time, rather than by --detector / --embedder
    settings = local_pack_settings(home, models_dir).model_copy(update={"pack": MIXED})
    with Workbench(settings) as wb:
        states = {s.pack: s for s in wb.stats().packs}
        assert set(states) == {LOCAL, MIXED}
        # one collection per embedder, whatever detector found the faces
        assert states[LOCAL].collection == states[MIXED].collection == "faces_mobilefacenet_128d"
        for s in states.values():
            assert s.catalog_faces == s.index_vectors > 0, s
        assert wb.index.count("faces_mobilefacenet_128d") == sum(
            s.catalog_faces for s in states.values()
        )
        with wb.catalog.session() as s:
            packs = Counter(s.scalars(select(Face.pack)))
        assert set(packs) == {LOCAL, MIXED}
        mixed_ids = wb.catalog.face_ids(MIXED)
        # A search with the mixed pack finds only its own faces (no duplicate of
        # every face from the other detector).
        sample = next((faces_dev_dir / "images").rglob("*.jpg"))
        results = wb.search(sample, top_k=20, threshold=0)
        found = [m.face_id for q in results for m in q.matches]
        assert found and set(found) <= mixed_ids
        # the mixed pack borrows MobileFaceNet's calibration
        assert wb.calibration.calibrated and "mobilefacenet" in wb.calibration.protocol
        # Rebuilding the shared collection keeps both packs' vectors.
        assert wb.reindex(progress=False) == sum(packs.values())
        after = {s.pack: s for s in wb.stats().packs}
        assert all(s.catalog_faces == s.index_vectors for s in after.values())


def test_faces_of_each_pack_come_from_its_detector(
    shared_home: tuple[Path, float], models_dir: Path
) -> None:
    """MTCNN's scores are its probabilities: 0.9 and up (its O-Net threshold)."""
    from workbench.core import Workbench

    home, _ = shared_home
    settings = local_pack_settings(home, models_dir)
    with Workbench(settings) as wb, wb.catalog.session() as s:
        scores = list(s.scalars(select(Face.score).where(Face.pack == MIXED)))
    assert scores and min(scores) >= 0.9
