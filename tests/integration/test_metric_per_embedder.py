"""Each embedder's own metric by default, L2 as an option, the calibration of the metric in use."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DevPhoto, local_pack_settings
from workbench.faces.calibration import load_calibration

pytestmark = pytest.mark.integration


def _photos(dev_photos: list[DevPhoto]) -> list[DevPhoto]:
    """Three photos each of two people."""
    by_person: dict[str, list[DevPhoto]] = {}
    for p in dev_photos:
        if p.category == "identity":
            by_person.setdefault(p.identity, []).append(p)
    people = [v[:3] for v in by_person.values() if len(v) >= 3][:2]
    return [p for group in people for p in group]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_mobilefacenet_under_either_metric(
    metric: str, tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto]
) -> None:
    from workbench.core import Workbench

    photos = _photos(dev_photos)
    overrides = {} if metric == "cosine" else {"storage": {"metric": "l2"}}
    settings = local_pack_settings(tmp_path / metric, models_dir, **overrides)
    with Workbench(settings) as wb:
        assert wb.pack.metric == "cosine"  # what MobileFaceNet was trained for
        wb.ingest([p.path for p in photos], progress=False)
        assert wb.index_spec().metric == metric == wb.metric
        cal = wb.calibration
        # the fit stored for this metric, not a conversion
        assert cal.metric == metric and "converted" not in cal.protocol
        shipped = load_calibration(wb.pack.name, None, metric)
        assert cal.threshold == pytest.approx(shipped.threshold)
        if metric == "l2":
            assert 1.0 < cal.threshold < 1.4  # a distance between unit vectors
        # Both metrics put the threshold at the same cosine, so they agree on who matches.
        assert cal.cosine_threshold == pytest.approx(
            load_calibration(wb.pack.name).cosine_threshold, abs=0.01
        )
        q = photos[0]
        [result] = wb.search(q.path, top_k=6, threshold=85)
        same = {str(p.path.resolve()) for p in photos if p.identity == q.identity}
        assert {m.photo for m in result.matches} == same
        self_match = next(m for m in result.matches if m.photo == str(q.path.resolve()))
        assert self_match.similarity > 99


def test_dlib_and_facenet_default_to_l2() -> None:
    from workbench.faces.backends.dlib import DlibEmbedder
    from workbench.faces.backends.facenet import FacenetEmbedder

    assert DlibEmbedder.metric == "l2" and FacenetEmbedder.metric == "l2"


def test_reindex_keeps_the_metric_unless_asked(
    tmp_path: Path, models_dir: Path, dev_photos: list[DevPhoto]
) -> None:
    from workbench.core import Workbench

    photos = _photos(dev_photos)[:2]
    settings = local_pack_settings(tmp_path / "wb", models_dir, storage={"metric": "l2"})
    with Workbench(settings) as wb:
        wb.ingest([p.path for p in photos], progress=False)
        wb.reindex(index_type="FLAT", progress=False)
        assert (wb.index_spec().index_type, wb.index_spec().metric) == ("FLAT", "l2")
        assert wb.calibration.metric == "l2"
        wb.reindex(metric="cosine", progress=False)
        assert wb.index_spec().metric == "cosine"
        assert wb.calibration.metric == "cosine"  # the calibration follows the index
