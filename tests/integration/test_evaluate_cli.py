"""``workbench evaluate lfw|celeba``: the real command line, real models, a slice of real LFW.

Every run is a subprocess of the real CLI. ``--per-fold 2`` keeps LFW to the
first 2 matched + 2 mismatched pairs of each of the ten View 2 folds (40
pairs, 68 images). The subprocesses cannot reach the network: a
``sitecustomize`` on their path makes every socket lookup or connection fail
and leaves a note, and the tests check that no note was left.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DevPhoto, cli_env, run_cli

pytestmark = pytest.mark.integration

LOCAL_PACK = "local:det_500m+mobilefacenet"
PAIRS = 40
IMAGES = 68
"""Distinct images of the first 2 + 2 pairs of each fold of the shared pairs.txt."""

NO_NETWORK = """
import os
import socket

_NOTE = os.environ["WORKBENCH_TEST_NETWORK_NOTE"]


def _refuse(what):
    with open(_NOTE, "a") as fh:
        fh.write(f"{what}\\n")
    raise OSError(f"network access attempted in a test subprocess: {what}")


_connect = socket.socket.connect


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse(f"connect {address!r}")
    return _connect(self, address)


socket.socket.connect = _guarded_connect
socket.getaddrinfo = lambda host, *a, **k: _refuse(f"getaddrinfo {host!r}")
"""


@dataclass(frozen=True)
class Run:
    proc: subprocess.CompletedProcess[str]
    home: Path
    seconds: float
    network_note: Path

    @property
    def doc(self) -> dict:
        return json.loads(self.proc.stdout)


Runner = Callable[..., Run]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Runner:
    """Run ``workbench ARGS`` in a fresh home, offline, without any insightface packs."""
    guard = tmp_path_factory.mktemp("no-network")
    (guard / "sitecustomize.py").write_text(NO_NETWORK)

    def run(*args: str) -> Run:
        base = tmp_path_factory.mktemp("evaluate")
        env = cli_env(base / "wb", models_dir)
        note = base / "network.txt"
        env["WORKBENCH_TEST_NETWORK_NOTE"] = str(note)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(guard), env.get("PYTHONPATH", "")) if p)
        # Whatever this machine keeps in ~/.insightface must not change the pack list.
        env["WORKBENCH_INSIGHTFACE_ROOT"] = str(base / "insightface")
        env["TORCH_HOME"] = str(base / "torch")  # no FaceNet weights, whatever this machine has
        start = time.perf_counter()
        proc = run_cli(list(args), env)
        return Run(proc, base / "wb", time.perf_counter() - start, note)

    return run


def _no_network(run: Run) -> None:
    assert not run.network_note.exists(), run.network_note.read_text()


# ---- one pack, JSON -------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_run(cli: Runner, lfw_dir: Path, faces_dev_dir: Path) -> Run:
    run = cli(
        "evaluate", "lfw", "--lfw-dir", str(lfw_dir), "--pack", "local", "--per-fold", "2",
        "--dev-dir", str(faces_dev_dir), "--json", "--no-progress",
    )  # fmt: skip
    assert run.proc.returncode == 0, run.proc.stderr
    return run


def test_json_is_one_document_with_the_contract(local_run: Run, lfw_dir: Path) -> None:
    doc = local_run.doc  # json.loads: stdout holds exactly one document
    assert set(doc) == {
        "kind", "created", "lfw_dir", "pairs_file", "packs", "skipped", "seconds", "saved",
    }  # fmt: skip
    assert doc["kind"] == "lfw"
    assert dt.datetime.fromisoformat(doc["created"]).tzinfo is not None
    assert doc["lfw_dir"] == str(lfw_dir)
    assert doc["pairs_file"] == "pairs.txt"
    assert doc["skipped"] == []  # asked for by name: nothing else is tried
    assert 0 < doc["seconds"] < local_run.seconds
    assert [p["pack"] for p in doc["packs"]] == [LOCAL_PACK]
    assert doc["packs"][0]["pack"].startswith("local:")
    _no_network(local_run)


def test_pack_entry(local_run: Run) -> None:
    (pack,) = local_run.doc["packs"]
    for key in ("pack", "description", "accuracy", "detection_rate", "ms_per_image"):
        assert key in pack
    lfw = pack["lfw"]
    assert pack["accuracy"] == lfw["accuracy"]
    assert set(pack["accuracy"]) == {"mean", "std"}
    # Measured with det_500m + MobileFaceNet: 100 % on this slice, every face found.
    assert pack["accuracy"]["mean"] >= 0.9
    assert pack["detection_rate"] == lfw["detection_rate"]
    assert pack["detection_rate"] == pytest.approx(1 - lfw["no_face"]["images"] / lfw["images"])
    assert pack["detection_rate"] >= 0.95
    assert pack["ms_per_image"] > 0 and pack["ms_per_face"] > 0
    assert pack["ms_per_image"] == lfw["ms_per_image"]


def test_lfw_section(local_run: Run) -> None:
    lfw = local_run.doc["packs"][0]["lfw"]
    assert lfw["pack"] == LOCAL_PACK
    assert lfw["protocol"] == "LFW View 2 pairs.txt (first 2 + 2 per fold)"
    assert lfw["pairs"] == lfw["pairs_used"] == PAIRS
    assert lfw["folds"] == 10
    assert lfw["images"] == IMAGES
    for key in ("accuracy", "precision", "recall", "f1", "threshold"):
        assert set(lfw[key]) == {"mean", "std"}, key
    for key in ("precision", "recall", "f1"):
        assert 0.0 <= lfw[key]["mean"] <= 1.0
    assert 0.9 <= lfw["roc_auc"] <= 1.0
    assert lfw["tar_at_far"]["far"] == 1e-3
    assert 0.0 <= lfw["tar_at_far"]["tar"] <= 1.0
    # The shipped calibration's threshold for this pack is near 0.26.
    assert 0.0 < lfw["threshold"]["mean"] < 0.6

    per_fold = lfw["per_fold"]
    assert [f["fold"] for f in per_fold] == list(range(1, 11))
    for f in per_fold:
        assert f["tp"] + f["fn"] == 2 and f["tn"] + f["fp"] == 2
        assert f["accuracy"] == (f["tp"] + f["tn"]) / 4

    nf = lfw["no_face"]
    assert set(nf) == {
        "policy", "images", "retried", "centre", "excluded_pairs", "forced_wrong_pairs", "files",
    }  # fmt: skip
    assert nf["policy"] == "fallback"
    assert nf["retried"] + nf["centre"] == nf["images"] == len(nf["files"])
    assert nf["excluded_pairs"] == nf["forced_wrong_pairs"] == 0

    r = lfw["roc"]
    assert set(r) == {"fpr", "tpr"} and len(r["fpr"]) == len(r["tpr"]) >= 2
    assert (r["fpr"][0], r["tpr"][0]) == (0.0, 0.0)
    assert (r["fpr"][-1], r["tpr"][-1]) == (1.0, 1.0)


def test_dev_group_photos(local_run: Run) -> None:
    groups = local_run.doc["packs"][0]["dev_groups"]
    assert groups["photos"] == 8
    assert groups["labelled_faces"] == 30
    rows = groups["per_photo"]
    assert len(rows) == 8
    assert sum(r["labelled"] for r in rows) == 30
    assert sum(r["detected"] for r in rows) == groups["detected_faces"]
    assert sum(r["labelled"] == r["detected"] for r in rows) == groups["exact_photos"]
    # Measured: 29 of 30 faces, 7 of 8 photos exact.
    assert 27 <= groups["detected_faces"] <= 32
    assert groups["exact_photos"] >= 6


def test_saved_file_holds_the_same_document(local_run: Run) -> None:
    doc = local_run.doc
    saved = Path(doc["saved"])
    assert saved.parent == local_run.home / "evaluations"
    assert saved.is_file() and saved.suffix == ".json"
    del doc["saved"]
    assert json.loads(saved.read_text()) == doc


# ---- every pack, human-readable ----------------------------------------------------------
@pytest.fixture(scope="module")
def all_packs_run(cli: Runner, lfw_dir: Path) -> Run:
    # No --pack, and none before `evaluate` either (WORKBENCH_PACK=local is only a default).
    run = cli("evaluate", "lfw", "--lfw-dir", str(lfw_dir), "--per-fold", "2", "--no-progress")
    assert run.proc.returncode == 0, run.proc.stderr
    return run


def test_every_pack_that_loads_is_evaluated(all_packs_run: Run) -> None:
    saved = all_packs_run.home / "evaluations"
    (file,) = saved.iterdir()
    doc = json.loads(file.read_text())
    assert sorted(p["pack"] for p in doc["packs"]) == ["dlib", LOCAL_PACK]
    for p in doc["packs"]:
        assert p["lfw"]["pairs"] == PAIRS and p["lfw"]["folds"] == 10
        assert p["accuracy"]["mean"] >= 0.9, p["pack"]
        assert p["dev_groups"] is None  # no --dev-dir
    skipped = {s["pack"]: s["reason"] for s in doc["skipped"]}
    # No released FaceNet weights here: the facenet pack says which file to put where.
    assert set(skipped) == {"buffalo_l", "buffalo_s", "facenet"}
    assert "20180402-114759-vggface2.pt" in skipped["facenet"]
    assert "checkpoints" in skipped["facenet"]
    for name, files in {
        "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
        "buffalo_s": ("det_500m.onnx", "w600k_mbf.onnx"),
    }.items():
        for f in files:
            assert f in skipped[name], skipped[name]
        assert "WORKBENCH_ALLOW_DOWNLOAD=false" in skipped[name]
    _no_network(all_packs_run)
    # dlib on 68 images is most of it; a download attempt would hang far longer.
    assert all_packs_run.seconds < 120


def test_human_readable_output(all_packs_run: Run) -> None:
    out = all_packs_run.proc.stdout
    lines = out.splitlines()
    for pack in ("dlib", LOCAL_PACK):
        head = f"{pack} on LFW View 2 pairs.txt (first 2 + 2 per fold): accuracy "
        (line,) = [ln for ln in lines if ln.startswith(head)]
        assert line.endswith("(10 folds, 40 pairs)")
    assert "detection rate" in out and "policy fallback" in out
    assert "buffalo_l: skipped (" in out and "buffalo_s: skipped (" in out
    (saved,) = [ln for ln in lines if ln.startswith("saved to ")]
    assert Path(saved.removeprefix("saved to ")).parent == all_packs_run.home / "evaluations"
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


# ---- errors --------------------------------------------------------------------------------
def test_missing_lfw_dir(cli: Runner, tmp_path: Path) -> None:
    missing = tmp_path / "no-lfw-here"
    run = cli("evaluate", "lfw", "--lfw-dir", str(missing), "--pack", "local", "--json")
    assert run.proc.returncode == 2
    assert run.proc.stdout == ""
    (line,) = [ln for ln in run.proc.stderr.splitlines() if ln.startswith("error:")]
    assert f"LFW directory {missing} does not exist" in line
    assert not (run.home / "evaluations").exists()


def test_unknown_pack(cli: Runner, lfw_dir: Path) -> None:
    run = cli("evaluate", "lfw", "--lfw-dir", str(lfw_dir), "--pack", "nope", "--json")
    assert run.proc.returncode == 2
    assert run.proc.stdout == ""
    err = run.proc.stderr
    assert err.startswith("error:") and "'nope'" in err
    for known in ("buffalo_l", "buffalo_s", "dlib", "local"):
        assert known in err


def test_unknown_no_face_policy_is_a_usage_error(cli: Runner, lfw_dir: Path) -> None:
    run = cli("evaluate", "lfw", "--lfw-dir", str(lfw_dir), "--no-face", "bogus")
    assert run.proc.returncode == 2
    err = run.proc.stderr
    assert "Usage: workbench evaluate lfw" in err
    assert "Invalid value for '--no-face'" in err and "'bogus'" in err
    for policy in ("fallback", "exclude", "wrong"):
        assert policy in err


# ---- CelebA ----------------------------------------------------------------------------------
def _identity_photos(dev_photos: list[DevPhoto], people: int, each: int) -> list[DevPhoto]:
    by_identity: dict[str, list[DevPhoto]] = {}
    for p in dev_photos:
        if p.category == "identity":
            by_identity.setdefault(p.identity, []).append(p)
    chosen = [ps[:each] for ps in by_identity.values() if len(ps) >= each][:people]
    assert len(chosen) == people, "the dev set has too few identities with enough photos"
    return [p for ps in chosen for p in ps]


def _celeba_folder(root: Path, photos: list[DevPhoto], id_file: Path) -> dict[str, int]:
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    ids: dict[str, int] = {}
    table: dict[str, int] = {}
    for k, photo in enumerate(photos, 1):
        name = f"{k:06d}.jpg"
        shutil.copyfile(photo.path, images / name)
        table[name] = ids.setdefault(photo.identity, len(ids) + 1)
    id_file.parent.mkdir(parents=True, exist_ok=True)
    id_file.write_text("".join(f"{n} {i}\n" for n, i in table.items()))
    return table


def test_evaluate_celeba(cli: Runner, tmp_path: Path, dev_photos: list[DevPhoto]) -> None:
    root = tmp_path / "celeba"
    photos = _identity_photos(dev_photos, people=3, each=3)
    _celeba_folder(root, photos, root / "identity_CelebA.txt")
    run = cli("evaluate", "celeba", "--celeba-dir", str(root), "--json", "--no-progress")
    assert run.proc.returncode == 0, run.proc.stderr
    d = run.doc
    assert d["pack"] == LOCAL_PACK
    assert (d["images"], d["identities"]) == (9, 3)
    assert d["images_dir"] == str(root / "img_align_celeba")
    assert d["identities_file"] == str(root / "identity_CelebA.txt")
    # Measured with the local pack: precision@1 1.000, mAP 1.000.
    assert 0.8 <= d["precision_at_1"] <= 1.0
    assert 0.8 <= d["map"] <= 1.0
    v = d["verification"]
    # 3 identities × 3 photos: 9 same-identity pairs exist, and 27 different ones.
    assert (v["pairs"], v["same"], v["different"]) == (36, 9, 27)
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert 0.0 <= v[key] <= 1.0, key
    assert v["threshold_source"] == "calibration"
    assert v["roc_auc"] >= 0.9
    _no_network(run)


def test_evaluate_celeba_with_identities_elsewhere(
    cli: Runner, tmp_path: Path, dev_photos: list[DevPhoto]
) -> None:
    root = tmp_path / "celeba"
    elsewhere = tmp_path / "annotations" / "my_identities.txt"
    photos = _identity_photos(dev_photos, people=3, each=3)
    table = _celeba_folder(root, photos, elsewhere)
    assert not (root / "identity_CelebA.txt").exists()
    # Only the first two identities in the file: the evaluation must read this one.
    elsewhere.write_text("".join(f"{n} {i}\n" for n, i in table.items() if i <= 2))
    run = cli(
        "evaluate", "celeba", "--celeba-dir", str(root), "--identities", str(elsewhere),
        "--json", "--no-progress",
    )  # fmt: skip
    assert run.proc.returncode == 0, run.proc.stderr
    d = run.doc
    assert d["identities_file"] == str(elsewhere)
    assert (d["images"], d["identities"]) == (6, 2)
    assert set(d) >= {"precision_at_1", "map", "verification"}
    assert (d["verification"]["same"], d["verification"]["different"]) == (6, 9)
    assert d["verification"]["f1"] >= 0.8
