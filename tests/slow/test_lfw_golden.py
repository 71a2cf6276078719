"""The slow tier: all 6,000 LFW View 2 pairs per reference pack, against the golden values.

Each pack detects, aligns and embeds the raw 250×250 images itself (about
4 minutes for `local` and 25 for `dlib` on 2 cores). Run with
``make test-slow`` (``pytest -m slow``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import evaluation_script

pytestmark = [pytest.mark.slow, pytest.mark.integration]


GOLDEN_MODULE = evaluation_script("lfw_golden")
GOLDEN = GOLDEN_MODULE.load_golden()  # type: ignore[attr-defined]


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("kind", sorted(GOLDEN["packs"]))
def test_full_lfw_view2_matches_the_golden_values(
    kind: str, lfw_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    from workbench.evaluation import evaluate_lfw
    from workbench.faces.registry import open_pack

    spec = GOLDEN["packs"][kind]
    settings = GOLDEN_MODULE.reference_settings(kind, models_dir, tmp_path)  # type: ignore[attr-defined]
    report = evaluate_lfw(open_pack(kind, settings), lfw_dir, GOLDEN["pairs_file"], progress=False)
    d = report.to_dict()
    print(report.summary())
    assert report.pack == spec["pack"]
    assert d["pairs"] == 6000 and d["folds"] == 10
    tolerance = GOLDEN["tolerance_points"] / 100.0
    accuracy = d["accuracy"]["mean"]
    assert accuracy >= spec["bar"], f"{kind}: {accuracy:.4%} is under the bar {spec['bar']:.1%}"
    assert abs(accuracy - spec["accuracy"]) <= tolerance, (
        f"{kind}: {accuracy:.4%} vs golden {spec['accuracy']:.4%}"
    )
    assert abs(d["roc_auc"] - spec["roc_auc"]) <= tolerance
    # No image silently dropped: every image without a detected face was handled and counted.
    nf = d["no_face"]
    assert nf["policy"] == "fallback" and nf["excluded_pairs"] == 0
    assert nf["images"] == nf["retried"] + nf["centre"]
    assert abs(nf["images"] - spec["no_face"]["images"]) <= 5
