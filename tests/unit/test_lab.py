"""`workbench lab` and the JupyterLab it needs: a busy port refused in words, the server's
command and environment, and JupyterLab installed by `make setup` with the widgets'
extensions. tests/browser/test_lab.py opens the explore notebook in a real one."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, cli_env, run_cli
from workbench.errors import MissingDependencyError
from workbench.lab import (
    NOTEBOOKS_DIR_ENV,
    LabError,
    check_lab,
    lab_command,
    lab_path,
    lab_url,
    notebooks_dir,
)

pytestmark = pytest.mark.unit

LAB_EXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "anywidget", "jupyterlab-plotly")
"""The front ends the widgets need in JupyterLab: ipywidgets', anywidget's, plotly's."""


def test_lab_refuses_a_busy_port_in_words(tmp_path: Path, models_dir: Path) -> None:
    home = tmp_path / "wb"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        args = ["lab", "--port", str(port), "--no-browser", "--allow-root"]  # CI runs as root
        result = run_cli(args, cli_env(home, models_dir))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: JupyterLab cannot start: port {port} on 127.0.0.1 is already in use "
        "(Address already in use); choose another with --port, or stop what is listening there"
    ], result.stderr
    assert result.stdout == ""  # no URL was printed for a server that is not there
    assert not home.exists()  # refused before anything was opened or made


def test_lab_prints_the_tokenised_url_and_passes_the_workbench_to_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command's wiring (the server itself runs in tests/browser/test_lab.py)."""
    import workbench.lab
    from workbench.cli import main
    from workbench.dashboards import free_port

    ran: dict[str, Any] = {}

    def run_server(settings: Any, command: list[str], env: dict[str, str], name: str) -> int:
        ran.update(command=command, env=env, name=name)
        return 0

    monkeypatch.setattr(workbench.lab, "run_server", run_server)
    port = free_port()
    home = ["--home", str(tmp_path / "wb"), "--pack", "dlib"]
    with pytest.raises(SystemExit) as exit_info:
        main([*home, "lab", "--port", str(port), "--allow-root"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out.strip()
    match = re.fullmatch(rf"http://127\.0\.0\.1:{port}/lab/tree/explore\.ipynb\?token=(\w+)", out)
    assert match is not None, out
    token = match.group(1)
    assert len(token) >= 32 and ran["env"]["JUPYTER_TOKEN"] == token
    assert ran["env"]["WORKBENCH_HOME"] == str((tmp_path / "wb").resolve())
    assert ran["env"]["WORKBENCH_PACK"] == "dlib"
    assert not any(token in part for part in ran["command"])  # not in `ps` output
    assert f"--ServerApp.port={port}" in ran["command"] and ran["name"] == "jupyterlab"
    assert "--ServerApp.allow_root=True" in ran["command"]


def test_lab_will_not_run_as_root_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import workbench.lab
    from workbench.cli import main

    monkeypatch.setattr(workbench.lab, "running_as_root", lambda: True)
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(tmp_path / "wb"), "lab", "--no-browser"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: JupyterLab will not run as root") and "--allow-root" in err
    assert "--ServerApp.allow_root=True" not in lab_command(tmp_path, 8888, False)


def test_lab_binds_loopback_never_hops_ports_and_fetches_nothing(tmp_path: Path) -> None:
    cmd = lab_command(tmp_path, 8890, open_browser=False)
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    for option in (
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=8890",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={tmp_path}",
        "--ServerApp.open_browser=False",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",
    ):
        assert option in cmd
    assert lab_path(tmp_path) == "/lab"
    (tmp_path / "explore.ipynb").write_text("{}")
    assert lab_path(tmp_path) == "/lab/tree/explore.ipynb"
    assert lab_url(8890, "abc", "/lab") == "http://127.0.0.1:8890/lab?token=abc"


def test_the_notebooks_folder_and_its_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert notebooks_dir() == REPO / "notebooks"
    assert (notebooks_dir() / "explore.ipynb").is_file()
    monkeypatch.setenv(NOTEBOOKS_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(LabError, match=f"no notebooks folder at .*missing.*{NOTEBOOKS_DIR_ENV}"):
        notebooks_dir()


def test_without_jupyterlab_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jupyterlab", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'face-workbench\[notebooks\]'"):
        check_lab(8888)


# ---- installed by `make setup` ---------------------------------------------------------
def _extras_requirements() -> dict[str, list[str]]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed metadata says the same
        from importlib.metadata import requires

        out: dict[str, list[str]] = {}
        for req in requires("face-workbench") or []:
            extra = re.search(r"""extra\s*==\s*["']([\w-]+)["']""", req)
            if extra:
                out.setdefault(extra.group(1), []).append(req)
        return out
    with open(REPO / "pyproject.toml", "rb") as fh:
        return dict(tomllib.load(fh)["project"]["optional-dependencies"])


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_make_setup_and_environment_yml_install_jupyterlab_and_the_widgets(
    tmp_path: Path,
) -> None:
    """What `make setup` runs in a fresh clone (no .venv yet), read with ``make -n``."""
    if shutil.which("make") is None:
        pytest.fail("`make` is not installed: the README's set-up needs it", pytrace=False)
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    plan = subprocess.run(
        ["make", "-n", "setup"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    installed = re.search(r'pip install --quiet -e "\.\[([\w,-]+)\]"', plan)
    assert installed is not None, plan
    extras = installed.group(1).split(",")
    declared = _extras_requirements()
    names = _names([r for extra in extras for r in declared[extra]])
    assert {"jupyterlab", "ipywidgets", "anywidget", "plotly", "ipykernel"} <= names
    assert {"jupyterlab", "ipywidgets", "anywidget"} <= _names(declared["notebooks"])
    conda = re.search(r'-e "\.\[([\w,-]+)\]"', (REPO / "environment.yml").read_text())
    assert conda is not None and set(conda.group(1).split(",")) == set(extras)


def test_jupyter_lab_runs_here_with_the_widgets_extensions() -> None:
    """`jupyter lab --version` in the environment the tests run in: on CI, the one a fresh
    clone's `make setup` made."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    jupyter = str(bin_dir / "jupyter")
    version = subprocess.run(
        [jupyter, "lab", "--version"], env=env, capture_output=True, text=True, timeout=120
    )
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"4\.\d+\.\d+\S*", version.stdout.strip()), version.stdout
    # The front ends, where JupyterLab finds prebuilt extensions (`jupyter labextension list`
    # says the same, in 8 s more); tests/browser/test_lab.py sees them draw.
    from jupyter_core.paths import jupyter_path

    folders = [Path(p) for p in jupyter_path("labextensions")]
    for name in LAB_EXTENSIONS:
        assert any((f / name / "package.json").is_file() for f in folders), (name, folders)
