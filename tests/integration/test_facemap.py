"""The UMAP face map of a real workbench: every face placed, coloured by person, cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import local_pack_settings
from workbench.analysis.facemap import map_coordinates
from workbench.core import Workbench


def test_face_map_shows_every_face_by_person(
    tmp_path: Path, models_dir: Path, faces_dev_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Workbench(local_pack_settings(tmp_path / "wb", models_dir)) as wb:
        wb.ingest([faces_dev_dir / "images"], progress=False)
        outcome = wb.cluster()
        fmap = wb.face_map(method="umap")
        assert fmap.projection == "umap"
        # The map places every face; clustering leaves out the faces the quality gate
        # keeps out of search (they stay on the map without a person).
        gated = wb.catalog.gated_face_ids(wb.pack.name, wb.settings.quality)
        assert len(fmap.table) == wb.catalog.count_faces() == outcome.faces + len(gated)
        assert fmap.table.loc[fmap.table.face_id.isin(gated), "person_id"].isna().all()
        assert np.isfinite(fmap.table[["x", "y"]].to_numpy()).all()
        named = wb.people.list()[0]
        wb.people.name(named.id, "Someone")
        fig = wb.face_map(method="umap").figure("person")
        names = {t.name for t in fig.data}
        assert "Someone" in names and "no person" in names
        someone = next(t for t in fig.data if t.name == "Someone")
        assert len(someone.x) == named.faces
        photos = {str(row[1]) for row in someone.customdata}
        assert all(p.startswith("dev_") for p in photos)  # hover shows the photo name

        # Hidden people leave the map; their faces are still in the catalog.
        wb.people.hide(named.id)
        assert len(wb.face_map(method="umap").table) == len(fmap.table) - named.faces

        # Drawing again reads the cache: UMAP does not run.
        import umap

        def no_umap(*args: object, **kwargs: object) -> None:
            raise AssertionError("UMAP ran although the map is cached")

        monkeypatch.setattr(umap, "UMAP", no_umap)
        ids, _, X = wb.catalog.face_vectors(wb.pack.name)
        coords, used = map_coordinates(wb.home, wb.pack.name, ids, X, method="umap")
        assert used == "umap"
        assert np.allclose(coords, fmap.table[["x", "y"]].to_numpy())
        by_cluster = fmap.figure("cluster")
        assert sum(len(t.x) for t in by_cluster.data) == len(fmap.table)
