"""The parameterized notebooks, executed by papermill on real photos with the real `local` pack.

01_ingest → 02_embed → 03_index → 04_cluster → 05_evaluate → report → explore
run once, in order, on a fresh workbench of 20 dev photos (one without a face,
one corrupt file), a slice of LFW and a CelebA-format folder made of dev
photos; the tests check the numbers each notebook recorded in its last cell.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import DevPhoto, cli_env, run_cli

pytestmark = pytest.mark.integration

N_IDENTITY, N_GROUP = 16, 2
N_PHOTOS = N_IDENTITY + N_GROUP + 1 + 1  # + a photo without faces + a corrupt file


@dataclass
class Pipeline:
    root: Path
    home: Path
    photos: Path
    decoy: Path
    """WORKBENCH_HOME while the notebooks ran: the `home` parameter must win over it."""
    runs: dict[str, object]

    def numbers(self, name: str) -> dict:
        return self.runs[name].numbers  # type: ignore[attr-defined]


def use_env(mp: pytest.MonkeyPatch, home: Path, models: Path) -> None:
    """The kernel is a subprocess: the local pack reaches it through WORKBENCH_* variables."""
    env = cli_env(home, models)
    for key in list(os.environ):
        if key.startswith("WORKBENCH_") and key not in env:
            mp.delenv(key)
    for key, value in env.items():
        if key.startswith("WORKBENCH_"):
            mp.setenv(key, value)


def photo_folder(folder: Path, dev_photos: list[DevPhoto]) -> Path:
    folder.mkdir(parents=True)
    identity = [p for p in dev_photos if p.category == "identity"][:N_IDENTITY]
    group = [p for p in dev_photos if p.category == "group"][:N_GROUP]
    no_face = [p for p in dev_photos if p.category == "no_face"][:1]
    for p in identity + group + no_face:
        shutil.copy(p.path, folder / p.path.name)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00garbage" * 64)
    return folder


LFW_PER_FOLD = 3  # 3 matched + 3 mismatched pairs per fold: 60 pairs


def celeba_folder(folder: Path, dev_photos: list[DevPhoto]) -> Path:
    """A CelebA-format folder (img_align_celeba/ + identity_CelebA.txt) of dev identity photos."""
    images = folder / "img_align_celeba"
    images.mkdir(parents=True)
    by_person: dict[str, list[DevPhoto]] = {}
    for p in dev_photos:
        if p.category == "identity" and p.identity:
            by_person.setdefault(p.identity, []).append(p)
    people = [ps for ps in by_person.values() if len(ps) >= 3][:4]
    lines = []
    for ident, photos in enumerate(people, 1):
        for p in photos[:3]:
            name = f"{len(lines) + 1:06d}.jpg"
            shutil.copy(p.path, images / name)
            lines.append(f"{name} {ident}")
    (folder / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    return folder


_BUILT: dict[str, Pipeline] = {}


@pytest.fixture(scope="session")
def notebook_pipeline(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, dev_photos: list[DevPhoto]
) -> Pipeline:
    # test_report_browser.py imports this fixture, which registers it a second
    # time; the cache keeps it to one run of the notebooks per session.
    if "pipeline" not in _BUILT:
        _BUILT["pipeline"] = build_pipeline(tmp_path_factory, models_dir, dev_photos)
    return _BUILT["pipeline"]


def build_pipeline(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, dev_photos: list[DevPhoto]
) -> Pipeline:
    from tests.conftest import SHARED
    from workbench.notebooks import run_notebook

    root = tmp_path_factory.mktemp("notebooks")
    photos = photo_folder(root / "photos", dev_photos)
    celeba = celeba_folder(root / "celeba", dev_photos)
    evaluate = {
        "lfw_dir": str(SHARED / "data" / "lfw"),
        "per_fold": LFW_PER_FOLD,
        "dev_dir": str(SHARED / "data" / "faces-dev"),
        "celeba_dir": str(celeba),
    }
    home, decoy, out = root / "wb", root / "decoy-home", root / "out"
    runs: dict[str, object] = {}
    with pytest.MonkeyPatch.context() as mp:
        use_env(mp, decoy, models_dir)
        common = {"home": str(home), "pack": "local"}
        for name, params, output in [
            ("01_ingest", {"paths": [str(photos)]}, "01_ingest.ipynb"),
            ("02_embed", {"batch_size": 8, "device": "cpu"}, "02_embed.ipynb"),
            ("03_index", {}, "03_index.ipynb"),
            ("04_cluster", {"projection": "pca"}, "04_cluster.ipynb"),
            ("05_evaluate", evaluate, "05_evaluate.ipynb"),
            ("report", {}, "report.html"),
            ("explore", {"projection": "pca"}, "explore.ipynb"),
        ]:
            runs[name] = run_notebook(name, {**common, **params}, output=out / output)
    return Pipeline(root, home, photos, decoy, runs)


def test_ingest_registers_photos_without_models(notebook_pipeline: Pipeline) -> None:
    n = notebook_pipeline.numbers("01_ingest")
    assert n["photos"] == N_PHOTOS
    assert n["errors"] == 1  # corrupt.jpg, found while registering
    assert n["pending"] == N_PHOTOS - 1
    assert n["catalog_photos"] == N_PHOTOS
    assert (n["faces"], n["no_faces"], n["skipped"]) == (0, 0, 0)
    assert not notebook_pipeline.decoy.exists()  # the `home` parameter was used


def test_embed_analyses_the_registered_photos(notebook_pipeline: Pipeline) -> None:
    n = notebook_pipeline.numbers("02_embed")
    assert n["photos"] == N_PHOTOS - 1
    assert n["errors"] == 0
    assert n["no_faces"] >= 1
    assert n["faces"] >= N_IDENTITY + N_GROUP  # every identity and group photo has a face
    assert n["photos_per_second"] > 0
    assert n["device"] == "cpu"
    assert n["pack"].startswith("local:")


def test_index_rebuilds_and_finds_every_face_itself(notebook_pipeline: Pipeline) -> None:
    faces = notebook_pipeline.numbers("02_embed")["faces"]
    n = notebook_pipeline.numbers("03_index")
    assert n["vectors"] == faces
    assert n["checked"] == min(20, faces)
    assert n["self_hit_rate"] == 1.0
    assert n["agree"] is True
    assert (n["index_type"], n["metric"]) == ("HNSW", "cosine")


def test_cluster_maps_every_face(notebook_pipeline: Pipeline) -> None:
    embed = notebook_pipeline.numbers("02_embed")
    n = notebook_pipeline.numbers("04_cluster")
    assert n["faces"] == embed["faces"]
    assert n["photos"] == embed["photos"] - embed["no_faces"]
    assert n["projection"] == "pca"
    assert n["sources"] == 1


def test_evaluate_compares_on_lfw_and_celeba(notebook_pipeline: Pipeline) -> None:
    n = notebook_pipeline.numbers("05_evaluate")
    assert list(n["packs"]) == [notebook_pipeline.numbers("02_embed")["pack"]]  # pack=local
    local = next(iter(n["packs"].values()))
    assert local["pairs"] == 10 * 2 * LFW_PER_FOLD
    assert local["accuracy"]["mean"] >= 0.95  # an easy slice: measured 1.0
    assert 0.95 <= local["roc_auc"] <= 1.0 and 0 < local["threshold"] < 1
    assert local["detection_rate"] >= 0.98
    assert local["no_face"]["policy"] == "fallback"
    assert local["no_face"]["images"] == local["no_face"]["retried"] + local["no_face"]["centre"]
    detected, labelled = local["group_faces"]
    assert labelled == 30 and detected >= labelled - 2
    assert local["ms_per_image"] > 0
    celeba = n["celeba"][next(iter(n["packs"]))]
    assert celeba["precision_at_1"] == 1.0 and celeba["map"] > 0.9
    saved = Path(n["saved"])
    assert saved.parent == notebook_pipeline.home / "evaluations" and saved.is_file()
    doc = json.loads(saved.read_text())
    assert doc["packs"][0]["lfw"]["roc"]["tpr"][-1] == 1.0


def test_report_numbers_match_the_catalog(notebook_pipeline: Pipeline, models_dir: Path) -> None:
    # `workbench stats` in a subprocess: a Milvus Lite file opened by this
    # process would stay locked against the kernels of the later tests.
    proc = run_cli(["stats", "--json"], cli_env(notebook_pipeline.home, models_dir))
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    n = notebook_pipeline.numbers("report")
    assert n["photos"] == stats["photos"] == N_PHOTOS
    assert n["faces"] == stats["faces"] == notebook_pipeline.numbers("02_embed")["faces"]
    assert n["by_source_status"] == stats["by_source_status"]
    assert {r["status"]: r["photos"] for r in n["by_source_status"]} == {
        "done": N_IDENTITY + N_GROUP + 1 - notebook_pipeline.numbers("02_embed")["no_faces"],
        "no_faces": notebook_pipeline.numbers("02_embed")["no_faces"],
        "error": 1,
    }
    assert n["new_faces"] == n["faces"] and n["since"] is None  # the first report
    assert (n["errors"], n["recent_errors"]) == (1, 1)
    assert n["runs"] == 2  # register + embed; a reindex is no run
    assert n["agree"] is True and n["calibrated"] is True
    assert 0 < n["threshold"] < 1
    assert n["evaluation_file"] == notebook_pipeline.numbers("05_evaluate")["saved"]
    bookmark = json.loads((notebook_pipeline.home / "reports" / "last_report.json").read_text())
    assert dt.datetime.fromisoformat(bookmark["time"]).tzinfo is not None


def test_report_html_embeds_plotly_inline(notebook_pipeline: Pipeline) -> None:
    run = notebook_pipeline.runs["report"]
    html_path = run.html  # type: ignore[attr-defined]
    assert html_path == notebook_pipeline.root / "out" / "report.html"
    assert run.output == html_path.with_suffix(".ipynb")  # type: ignore[attr-defined]
    assert run.output.is_file()  # type: ignore[attr-defined]
    html = html_path.read_text(encoding="utf-8")
    # counts per source, speed per run, ROC of the last evaluation
    assert html.count('class="plotly-graph-div"') == 3
    assert re.search(r"plotly\.js v\d", html)  # the library itself, inline
    srcs = re.findall(r"<script[^>]*\bsrc=\"([^\"]*)\"", html)
    assert not [s for s in srcs if "plot.ly" in s or "plotly" in s], srcs
    assert not [s for s in srcs if "require" in s], srcs
    assert "Recent errors" in html and "corrupt.jpg" in html
    assert "reports.counts_by_source_status" not in html  # the report hides its code


def test_explore_shows_the_widgets_and_the_results_drawn(notebook_pipeline: Pipeline) -> None:
    import nbformat

    n = notebook_pipeline.numbers("explore")
    report = notebook_pipeline.numbers("report")
    assert (n["photos"], n["faces"], n["agree"]) == (report["photos"], report["faces"], True)
    assert n["sample_faces"] >= 1 and n["matches"] >= 1  # the sample finds itself at least
    assert n["people"] == notebook_pipeline.numbers("04_cluster")["people"]
    nb = nbformat.read(notebook_pipeline.runs["explore"].output, as_version=4)  # type: ignore[attr-defined]
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 4  # gallery, search, people, monitor
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    kinds = [re.search(r'data-wb-repr="([\w-]+)"', h).group(1) for h in html if "wb-repr" in h]  # type: ignore[union-attr]
    assert kinds == ["stats", "search", "person"], kinds
    search = next(h for h in html if 'data-wb-repr="search"' in h)
    assert search.count('data-testid="repr-match"') == n["matches"]  # top_k 6: every one
    assert search.count("data:image/jpeg;base64,") >= 3  # the sample, its face, a match
    assert not any(o.get("output_type") == "error" for o in outputs)


def test_second_report_counts_only_new_faces(
    notebook_pipeline: Pipeline, models_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from workbench.notebooks import run_notebook

    use_env(monkeypatch, notebook_pipeline.home, models_dir)
    first = notebook_pipeline.numbers("report")
    run = run_notebook("report", {}, output=tmp_path / "again.ipynb", html=False)
    assert run.html is None and not (tmp_path / "again.html").exists()
    n = run.numbers
    assert n["new_faces"] == 0
    assert n["since"] is not None
    assert n["faces"] == first["faces"] and n["photos"] == first["photos"]


def _attach_command(monkeypatch: pytest.MonkeyPatch) -> object:
    from workbench.cli import cli
    from workbench.cli.notebooks import run_notebook

    if "run-notebook" not in cli.commands:
        monkeypatch.setitem(cli.commands, "run-notebook", run_notebook)
    return cli


def test_cli_run_notebook_json(
    notebook_pipeline: Pipeline, models_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cli = _attach_command(monkeypatch)
    use_env(monkeypatch, tmp_path / "decoy", models_dir)  # --home must win over it
    out = tmp_path / "cluster.ipynb"
    result = CliRunner().invoke(
        cli,  # type: ignore[arg-type]
        [
            "--home",
            str(notebook_pipeline.home),
            "run-notebook",
            "04_cluster",
            "-p",
            "projection",
            "pca",
            "--output",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    doc = json.loads(result.stdout)
    assert set(doc) == {"notebook", "output", "html", "seconds", "numbers"}
    assert doc["notebook"] == "04_cluster" and doc["output"] == str(out) and doc["html"] is None
    assert doc["seconds"] > 0
    assert doc["numbers"] == notebook_pipeline.numbers("04_cluster")
    assert out.is_file() and not (tmp_path / "decoy").exists()


def test_failing_cell_fails_the_run_with_its_error(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from workbench.cli import main
    from workbench.notebooks import NotebookFailed, run_notebook

    use_env(monkeypatch, tmp_path / "wb", models_dir)
    out = tmp_path / "failed.ipynb"
    with pytest.raises(NotebookFailed) as info:
        run_notebook("01_ingest", {}, output=out)  # no paths: its setup cell raises
    message = str(info.value)
    assert message.startswith("notebook 01_ingest failed in cell In [")
    assert "WorkbenchError: 01_ingest needs photos" in message
    assert str(out) in message and out.is_file()
    assert info.value.ename == "WorkbenchError"

    _attach_command(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        main(["run-notebook", "01_ingest", "--output", str(tmp_path / "cli.ipynb")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"error: notebook 01_ingest failed in cell In \[\d+\]: WorkbenchError", err)


def test_parameters_and_names_are_checked_before_a_kernel_starts(tmp_path: Path) -> None:
    from workbench.errors import ConfigurationError
    from workbench.notebooks import (
        NOTEBOOKS,
        find_notebook,
        overrides,
        parse_parameters,
        run_notebook,
    )

    for name in NOTEBOOKS:
        if name != "05_evaluate":  # the evaluation notebook has its own author and test
            assert find_notebook(name).is_file()
    with pytest.raises(ConfigurationError, match=r"known notebooks: 01_ingest, 02_embed"):
        find_notebook("06_nope")
    with pytest.raises(ConfigurationError, match=r"no parameter 'batchsize'.*batch_size"):
        run_notebook("02_embed", {"home": str(tmp_path), "batchsize": 8})
    assert parse_parameters(
        [
            ("batch_size", "8"),
            ("paths", '["a", "b"]'),
            ("min_score", "0.6"),
            ("source", "x y"),
            ("since", "2026-01-01"),  # YAML would make it a date, papermill then code
            ("pack", "null"),
        ]
    ) == {
        "batch_size": 8,
        "paths": ["a", "b"],
        "min_score": 0.6,
        "source": "x y",
        "since": "2026-01-01",
        "pack": None,
    }
    assert overrides(device=None, batch_size=8, detection__min_score=0.6) == {
        "batch_size": 8,
        "detection": {"min_score": 0.6},
    }


def test_built_notebooks_are_current_and_have_no_outputs() -> None:
    """`notebooks/_build.py` writes the notebooks; the committed files must match it."""
    import nbformat

    from workbench.notebooks import NOTEBOOKS_DIR

    spec = importlib.util.spec_from_file_location("_build", NOTEBOOKS_DIR / "_build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert build.main(["--check"]) == 0
    for name in build.NOTEBOOKS:
        nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        assert "home = None" in tagged[0].source and "pack = None" in tagged[0].source
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
        assert "record(" in nb.cells[-1].source, name
