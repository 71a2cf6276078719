"""Separable stages: register (no models) → embed → index with another index type and metric."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from workbench.store.models import Photo

pytestmark = pytest.mark.integration


def _statuses(wb: object) -> dict[str, str]:
    with wb.catalog.session() as s:  # type: ignore[attr-defined]
        return {Path(p.uri).name: p.status for p in s.scalars(select(Photo))}


@pytest.fixture
def album(tmp_path: Path, dev_photos: list) -> Path:
    """Six identity photos as files, two more inside a zip, one no-face photo, one broken file."""
    root = tmp_path / "album"
    root.mkdir()
    people = [p for p in dev_photos if p.category == "identity"][:8]
    for p in people[:6]:
        shutil.copy(p.path, root / p.path.name)
    with zipfile.ZipFile(root / "more.zip", "w") as zf:
        for p in people[6:]:
            zf.write(p.path, f"inner/{p.path.name}")
    blank = next(p for p in dev_photos if p.category == "no_face")
    shutil.copy(blank.path, root / blank.path.name)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_register_then_embed_then_reindex(album: Path, local_settings: object) -> None:
    from workbench.core import Workbench

    with Workbench(local_settings) as wb:  # type: ignore[arg-type]
        reg = wb.ingest([album], progress=False, register_only=True)
        # Registering decodes and records photos without loading any model.
        assert wb._pack is None
        assert (reg.photos, reg.pending, reg.errors, reg.faces) == (10, 9, 1, 0)
        assert wb.ingest([album], progress=False, register_only=True).skipped == 10
        statuses = _statuses(wb)
        assert statuses["broken.jpg"] == "error"
        assert sorted(set(statuses.values())) == ["error", "pending"]

        emb = wb.embed(progress=False)
        assert emb.kind == "embed"
        assert (emb.photos, emb.no_faces, emb.errors) == (9, 1, 0)
        assert emb.faces >= 8
        assert "pending" not in _statuses(wb).values()
        # Zip members were read again from the archive.
        assert sum(1 for n, s in _statuses(wb).items() if "inner/" in n or s == "done") >= 8
        # Nothing left to embed; a full ingest of the same album skips everything.
        assert wb.embed(progress=False).photos == 0
        assert wb.ingest([album], progress=False).skipped == 10
        stats = wb.stats()
        assert stats.agree and stats.faces == emb.faces

        sample = next(album.glob("dev_*.jpg"))
        before = [(m.photo_id, round(m.cosine, 4)) for m in wb.search(sample)[0].matches]
        collection = wb.pack.collection_name
        assert wb.index.index_spec(collection).metric == "cosine"

        written = wb.reindex(index_type="IVF_FLAT", metric="l2")
        assert written == emb.faces
        spec = wb.index.index_spec(collection)
        assert (spec.index_type, spec.metric) == ("IVF_FLAT", "l2")
        after = [(m.photo_id, round(m.cosine, 4)) for m in wb.search(sample)[0].matches]
        assert after == before

    # A new process reads the index type and metric back from Milvus.
    with Workbench(local_settings) as wb:  # type: ignore[arg-type]
        spec = wb.index.index_spec(wb.pack.collection_name)
        assert (spec.index_type, spec.metric) == ("IVF_FLAT", "l2")


def test_photo_changed_or_gone_before_embedding(album: Path, local_settings: object) -> None:
    from workbench.core import Workbench

    with Workbench(local_settings) as wb:  # type: ignore[arg-type]
        wb.ingest([album], progress=False, register_only=True)
        files = sorted(album.glob("dev_*.jpg"))
        files[0].write_bytes(files[1].read_bytes())  # replaced by other bytes
        files[2].unlink()  # gone
        report = wb.embed(progress=False)
        assert report.errors == 2
        errors = dict(report.error_details)
        assert "changed since it was registered" in errors[str(files[0].resolve())]
        assert "cannot read" in errors[str(files[2].resolve())]
        # The registered rows are kept (with their reasons); the rest were embedded.
        with wb.catalog.session() as s:
            rows = {Path(p.uri).name: p for p in s.scalars(select(Photo))}
        assert rows[files[0].name].status == "error" and rows[files[0].name].sha256 is not None
        assert report.photos == 9 and report.faces >= 6


def test_second_pack_embeds_photos_the_first_pack_did(
    album: Path, local_settings: object, models_dir: Path
) -> None:
    from workbench.core import Workbench

    with Workbench(local_settings) as wb:  # type: ignore[arg-type]
        first = wb.ingest([album], progress=False)
        assert first.faces >= 8
    other = local_settings.model_copy(  # type: ignore[attr-defined]
        update={
            "local": local_settings.local.model_copy(  # type: ignore[attr-defined]
                update={"detector": "yunet/face_detection_yunet_2023mar.onnx"}
            )
        }
    )
    with Workbench(other) as wb:
        assert wb.pack.name != first_pack_name(local_settings)
        second = wb.embed(progress=False)
        assert second.photos == 9 and second.faces >= 8
        assert wb.embed(progress=False).photos == 0
        counts = {p.pack: p.catalog_faces for p in wb.stats().packs}
        assert len(counts) == 2 and all(n >= 8 for n in counts.values())
    # Back with the first pack: it has analysed every photo already.
    with Workbench(local_settings) as wb:  # type: ignore[arg-type]
        assert wb.embed(progress=False).photos == 0
        assert wb.ingest([album], progress=False).skipped == 10
        assert wb.stats().agree


def first_pack_name(settings: object) -> str:
    from workbench.faces.registry import open_pack

    return open_pack("local", settings).name  # type: ignore[arg-type]


def test_embedding_matches_a_one_go_ingest(album: Path, tmp_path: Path, models_dir: Path) -> None:
    from tests.conftest import local_pack_settings
    from workbench.core import Workbench

    one = local_pack_settings(tmp_path / "one", models_dir)
    two = local_pack_settings(tmp_path / "two", models_dir)
    with Workbench(one) as a, Workbench(two) as b:  # type: ignore[arg-type]
        a.ingest([album], progress=False)
        b.ingest([album], progress=False, register_only=True)
        b.embed(progress=False)
        va, vb = _vectors(a), _vectors(b)
    assert va.keys() == vb.keys()
    for k in va:
        assert np.allclose(va[k], vb[k], atol=1e-5)


def _vectors(wb: object) -> dict[tuple[str, float], np.ndarray]:
    """Face vectors keyed by photo sha256 and box corner."""
    from workbench.store.models import Face

    with wb.catalog.session() as s:
        rows = s.execute(select(Photo.sha256, Face).join(Face, Face.photo_id == Photo.id)).all()
        return {(sha, round(f.x1)): f.vector() for sha, f in rows}
