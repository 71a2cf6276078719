"""Shared fixtures: real weights and photos from ../shared (or $WORKBENCH_SHARED).

Missing data fails the tests that need it (never skips): CI must not go
green without having looked at a single real face.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Real servers started once per session, by the tests that ask for them.
from tests.services.milvus import milvus_server  # noqa: F401
from tests.services.postgres import dev_local_pg, fresh_pg_url, postgres_url  # noqa: F401
from tests.services.redis import redis_url  # noqa: F401

if TYPE_CHECKING:
    from workbench.settings import WorkbenchSettings

REPO = Path(__file__).resolve().parents[1]

# Tests that run on both catalogs parametrize over these (PostgreSQL is a `server` test).
CATALOG_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.server),
]
SHARED = Path(os.environ.get("WORKBENCH_SHARED", REPO.parent / "shared")).resolve()
MODELS = Path(os.environ.get("WORKBENCH_TEST_MODELS", SHARED / "models"))
FACES_DEV = Path(os.environ.get("WORKBENCH_TEST_FACES_DEV", SHARED / "data" / "faces-dev"))
LFW = Path(os.environ.get("WORKBENCH_TEST_LFW", SHARED / "data" / "lfw"))
LOCAL_DETECTOR = "buffalo_sc/det_500m.onnx"
LOCAL_RECOGNIZER = "mobilefacenet/MobileFaceNet.onnx"


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(
            f"{what} not found at {path}: put the shared data beside the repository "
            "(../shared) or set WORKBENCH_SHARED; these tests never skip without it",
            pytrace=False,
        )
    return path


@dataclass(frozen=True)
class DevPhoto:
    path: Path
    identity: str
    n_faces: int | None
    category: str
    copy_of: Path | None = None
    """The earlier dev photo this one is a copy of (labels.csv: "near-duplicate of ...");
    the workbench records it as a duplicate and does not analyse it again."""


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's WORKBENCH_* settings."""
    for key in list(os.environ):
        if key.startswith("WORKBENCH_") and key not in {
            "WORKBENCH_SHARED",
            "WORKBENCH_TEST_MODELS",
            "WORKBENCH_TEST_FACES_DEV",
            "WORKBENCH_TEST_LFW",
        }:
            monkeypatch.delenv(key)
    monkeypatch.setenv("WORKBENCH_ALLOW_DOWNLOAD", "false")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return _require(MODELS, "model weights (../shared/models)")


@pytest.fixture(scope="session")
def faces_dev_dir() -> Path:
    return _require(FACES_DEV, "the faces-dev photo set (../shared/data/faces-dev)")


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    return _require(LFW, "LFW (../shared/data/lfw)")


@pytest.fixture(scope="session")
def dev_photos(faces_dev_dir: Path) -> list[DevPhoto]:
    with open(faces_dev_dir / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    seen: set[str] = set()
    photos = []
    for row in rows:
        copied = re.findall(r"near-duplicate of (\S+)", row["notes"])
        earlier = [c for c in copied if c in seen]
        photos.append(
            DevPhoto(
                faces_dev_dir / row["path"],
                row["identity"],
                int(row["n_faces"]) if row["n_faces"] else None,
                row["category"],
                faces_dev_dir / earlier[0] if earlier else None,
            )
        )
        seen.add(row["path"])
    return photos


def evaluation_script(name: str) -> object:
    """A script of ``evaluation/`` imported as a module (they are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "evaluation" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def local_pack_settings(home: Path, models: Path, **extra: Any) -> WorkbenchSettings:
    from workbench.settings import WorkbenchSettings

    return WorkbenchSettings(
        home=home,
        pack="local",
        local={"models_dir": models, "detector": LOCAL_DETECTOR, "recognizer": LOCAL_RECOGNIZER},
        **extra,
    )


@pytest.fixture
def local_settings(tmp_path: Path, models_dir: Path) -> WorkbenchSettings:
    """Settings for a fresh workbench in tmp_path with the `local` pack."""
    return local_pack_settings(tmp_path / "wb", models_dir)


def cli_env(home: Path, models: Path) -> dict[str, str]:
    """Environment for a `workbench` subprocess: a fresh home, the local pack, no downloads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(
        WORKBENCH_HOME=str(home),
        WORKBENCH_PACK="local",
        WORKBENCH_LOCAL__MODELS_DIR=str(models),
        WORKBENCH_LOCAL__DETECTOR=LOCAL_DETECTOR,
        WORKBENCH_LOCAL__RECOGNIZER=LOCAL_RECOGNIZER,
        WORKBENCH_ALLOW_DOWNLOAD="false",
    )
    return env


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the real `workbench` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
