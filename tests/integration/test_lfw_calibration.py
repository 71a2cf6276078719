"""LFW calibration with real models and real LFW photos (a slice of View 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli

pytestmark = pytest.mark.integration

LOCAL_PACK = "local:det_500m+mobilefacenet"
SHIPPED_PACKS = [LOCAL_PACK, "dlib"]


def _slice(lfw_dir: Path, k: int) -> list:
    """The first ``k`` matched and first ``k`` mismatched pairs of View 1's test file."""
    from workbench.evaluation.lfw import parse_pairs

    pairs = parse_pairs(lfw_dir / "pairsDevTest.txt")
    matched = [p for p in pairs if p.same][:k]
    mismatched = [p for p in pairs if not p.same][:k]
    return matched + mismatched


def _write_pairs(path: Path, pairs: list) -> Path:
    k = sum(p.same for p in pairs)
    lines = [str(k)] + [
        f"{p.name1}\t{p.n1}\t{p.n2}" if p.same else f"{p.name1}\t{p.n1}\t{p.name2}\t{p.n2}"
        for p in pairs
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("pack", SHIPPED_PACKS)
def test_shipped_calibration_has_the_pack(pack: str) -> None:
    from workbench.faces.calibration import load_calibration, package_calibration_path

    table = json.loads(package_calibration_path().read_text())
    assert pack in table, f"{pack} missing from the shipped calibration.json"
    cal = load_calibration(pack)
    assert cal.calibrated is True
    assert cal.protocol == "LFW View 1 pairsDevTrain.txt"
    assert cal.pairs is not None and cal.pairs >= 2100
    assert cal.accuracy is not None and cal.accuracy >= 0.9
    assert cal.check_protocol == "LFW View 1 pairsDevTest.txt"
    assert cal.check_accuracy is not None and cal.check_accuracy >= 0.9
    assert cal.slope > 0
    # The similarity % is a false-match rate measured on tens of millions of LFW pairs.
    curve = cal.false_match
    assert curve is not None and cal.version == 2
    assert curve.pairs >= 50_000_000 and "LFW, 9,056 images" in curve.protocol
    assert curve.log10_fmr[-1] == -5.0  # measured down to 85 %
    assert cal.false_match_rate(cal.cosine_at(85.0)) == pytest.approx(1e-5, rel=1e-3)
    assert cal.false_match_rate(cal.cosine_at(70.0)) == pytest.approx(1e-2, rel=1e-3)
    # Same-person pairs sit above 85 % far more often than strangers: the same-person
    # threshold of View 1 reads between 70 and 85 %.
    assert 50.0 < cal.percent(cal.cosine_threshold) < 85.0
    assert load_calibration(pack, metric="l2").false_match == curve  # an L2 fit shares it


def test_local_pack_slice_agrees_with_shipped(local_settings: object, lfw_dir: Path) -> None:
    from workbench.evaluation.calibrate import fit_calibration
    from workbench.evaluation.lfw import images_root, score_pairs
    from workbench.faces.calibration import load_calibration
    from workbench.faces.registry import open_pack

    pack = open_pack("local", local_settings).load()  # type: ignore[arg-type]
    assert pack.name == LOCAL_PACK
    pairs = _slice(lfw_dir, 50)
    scores = score_pairs(pack, pairs, images_root(lfw_dir), progress=False)
    assert scores.images > 150
    assert scores.excluded_pairs <= 3, scores.no_face_images

    s, y = scores.kept_scores()
    fitted = fit_calibration(pack.name, s, y)
    shipped = load_calibration(pack.name)
    assert shipped.calibrated
    assert abs(fitted.threshold - shipped.threshold) < 0.1
    assert fitted.accuracy is not None and fitted.accuracy >= 0.9
    assert scores.accuracy(shipped.threshold) >= 0.9
    # Percentages order like cosines: matched pairs read above mismatched ones on average.
    assert shipped.percent(s[y]).mean() > 85 > shipped.percent(s[~y]).mean()


def test_cli_calibrate_writes_the_home_file(
    tmp_path: Path, models_dir: Path, lfw_dir: Path
) -> None:
    from workbench.faces.calibration import load_calibration

    home = tmp_path / "wb"
    pairs = _write_pairs(tmp_path / "slice.txt", _slice(lfw_dir, 8))
    proc = run_cli(
        ["calibrate", "--lfw", str(lfw_dir), "--pairs", str(pairs), "--check", str(pairs)]
        + ["--impostor-images", "400", "--json", "--no-progress"],
        cli_env(home, models_dir),
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["pack"] == LOCAL_PACK
    assert out["train"]["pairs"] == 16 and out["check"]["pairs"] == 16
    assert out["train"]["excluded_pairs"] == len(out["train"]["no_face_images"]) == 0
    assert out["check"]["seconds"] < 1.0  # every image was already embedded for the fit
    assert out["written"] == str(home / "calibration.json")

    cal = load_calibration(LOCAL_PACK, home)
    assert cal.threshold == pytest.approx(out["threshold"])
    assert cal.protocol == "LFW pairs slice.txt" and cal.pairs == 16
    assert cal.check_accuracy == pytest.approx(out["check_accuracy"])
    # The false-match curve of 400 LFW images' faces (about 160k impostor pairs: measured
    # down to FMR 10^-2.5, a normal tail beyond), close to the shipped one where measured.
    fm = out["false_match"]
    assert fm["pairs"] > 100_000 and "400 images" in fm["protocol"]
    assert cal.false_match is not None and cal.version == 2
    shipped = load_calibration(LOCAL_PACK)
    assert abs(cal.cosine_at(70.0) - shipped.cosine_at(70.0)) < 0.03
    assert abs(cal.cosine_at(85.0) - shipped.cosine_at(85.0)) < 0.1
    # The package file is untouched by a home calibration.
    assert load_calibration(LOCAL_PACK).protocol == "LFW View 1 pairsDevTrain.txt"


def test_cli_calibrate_names_a_missing_image(
    tmp_path: Path, models_dir: Path, lfw_dir: Path
) -> None:
    pairs = tmp_path / "bad.txt"
    pairs.write_text("1\nNobody_Here\t1\t2\nNobody_Here\t1\tNo_One\t3\n")
    proc = run_cli(
        ["calibrate", "--lfw", str(lfw_dir), "--pairs", str(pairs), "--no-check"]
        + ["--write", "none"],
        cli_env(tmp_path / "wb", models_dir),
    )
    assert proc.returncode == 2
    assert "Nobody_Here_0001.jpg" in proc.stderr and "does not exist" in proc.stderr
    assert not (tmp_path / "wb" / "calibration.json").exists()
