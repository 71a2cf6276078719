"""The slow tier: all of LFW clustered into people with the `local` pack's defaults.

Clusters the session's LFW home (the 9,056 images ingested once, `lfw_home`) with
DBSCAN and HDBSCAN, and checks the issue's bars (BCubed F ≥ 0.90, pairwise
F ≥ 0.85 for the default method) and the golden numbers in
``evaluation/golden/lfw_cluster.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, evaluation_script

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.mark.timeout(3600)
def test_lfw_clusters_into_people(lfw_home: Path, lfw_dir: Path, models_dir: Path) -> None:
    script = evaluation_script("lfw_cluster")
    golden = json.loads((REPO / "evaluation" / "golden" / "lfw_cluster.json").read_text())
    result = script.cluster_lfw(lfw_home, lfw_dir, models_dir)  # type: ignore[attr-defined]
    print(json.dumps(result["methods"], indent=2))

    # Every image is in the shared home already: nothing is ingested again.
    assert result["ingest"]["errors"] == 0 and result["ingest"]["skipped"] == 9056
    dbscan = result["methods"]["dbscan"]
    assert dbscan["identities"] >= 4800  # nearly every person has a detected face
    assert dbscan["bcubed_f"] >= 0.90 and dbscan["pairwise_f"] >= 0.85, dbscan
    for method, expected in golden["methods"].items():
        got = result["methods"][method]
        for key in ("pairwise_f", "bcubed_f", "nmi"):
            assert got[key] == pytest.approx(expected[key], abs=0.01), (method, key)
        assert got["clusters"] == pytest.approx(expected["clusters"], rel=0.03)
