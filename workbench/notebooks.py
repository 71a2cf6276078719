"""Run the parameterized notebooks of ``notebooks/`` with papermill.

Each notebook has one cell tagged ``parameters`` (``home``, ``pack``,
``device``, ``batch_size`` and its own), a few calls into `workbench`, and a
last cell that calls `record` with its key numbers; `recorded_numbers` reads
them back from the executed notebook, which is how tests and schedulers
check a run.

papermill, nbformat and nbconvert load only when a notebook is run or read
(``pip install 'face-workbench[notebooks]'``).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench._optional import require
from workbench.errors import ConfigurationError, WorkbenchError

NOTEBOOKS: tuple[str, ...] = (
    "01_ingest",
    "02_embed",
    "03_index",
    "04_cluster",
    "05_evaluate",
    "report",
    "explore",
)
"""The notebooks shipped in the repository's ``notebooks/`` folder, in pipeline order (then
``explore``, the one to open in JupyterLab)."""

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
"""The repository's ``notebooks/`` folder (the package is installed editable)."""

RECORD_METADATA = {"workbench": "record"}
"""Output metadata that marks the numbers a notebook recorded."""

_PURPOSE = "running workbench notebooks"


class NotebookFailed(WorkbenchError):
    """A cell of a notebook raised; the partly executed notebook is kept at ``output``.

    ``cell`` is the failing cell's execution count, the ``In [n]`` Jupyter
    shows (papermill marks it in the output notebook).
    """

    def __init__(
        self, notebook: str, output: Path, ename: str, evalue: str, cell: int | None = None
    ) -> None:
        self.notebook, self.output = notebook, output
        self.ename, self.evalue, self.cell = ename, evalue, cell
        where = f" in cell In [{cell}]" if cell is not None else ""
        super().__init__(
            f"notebook {notebook} failed{where}: {ename}: {evalue}; "
            f"the partly executed notebook is {output}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.notebook, self.output, self.ename, self.evalue, self.cell))


@dataclass
class NotebookRun:
    """One executed notebook: where it was written and what it recorded."""

    notebook: str
    output: Path
    """The executed .ipynb."""
    html: Path | None
    """Its HTML rendering, when one was asked for."""
    seconds: float
    numbers: dict[str, Any] = field(default_factory=dict)
    """What the notebook's last cell recorded (`record`)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "notebook": self.notebook,
            "output": str(self.output),
            "html": None if self.html is None else str(self.html),
            "seconds": round(self.seconds, 3),
            "numbers": self.numbers,
        }


def find_notebook(name: str | Path) -> Path:
    """The notebook file for ``name``.

    ``name`` is either a path to an ``.ipynb`` file, or one of `NOTEBOOKS`
    (``01_ingest`` ... ``report``), found in the repository's ``notebooks/``.
    """
    text = str(name)
    if text.endswith(".ipynb"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"notebook file {path} does not exist")
        return path
    path = NOTEBOOKS_DIR / f"{text}.ipynb"
    if text not in NOTEBOOKS or not path.is_file():
        missing = "" if text not in NOTEBOOKS else f" (expected {path}; it is missing)"
        raise ConfigurationError(
            f"unknown notebook {text!r}{missing}; known notebooks: {', '.join(NOTEBOOKS)}, "
            "or give the path of an .ipynb file"
        )
    return path


def parse_value(value: str) -> Any:
    """A command-line parameter value as YAML, like papermill's ``-y``.

    ``8`` is an int, ``0.6`` a float, ``true`` a bool, ``null`` None,
    ``'["a", "b"]'`` a list; anything else, dates and times included, stays
    a string (papermill would write a date into the notebook as code).
    """
    yaml = require("yaml", "notebooks", "notebook parameters from the command line")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return value if isinstance(parsed, dt.date) else parsed


def parse_parameters(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``(key, value)`` pairs from the command line as notebook parameters (values as YAML)."""
    return {key: parse_value(value) for key, value in pairs}


def overrides(**values: Any) -> dict[str, Any]:
    """Settings overrides for `workbench.open` from notebook parameters.

    Parameters left at ``None`` are dropped (the ``WORKBENCH_*`` settings
    apply); a ``section__field`` name becomes a nested section, as in the
    environment variables: ``overrides(batch_size=8, detection__min_score=0.6)``
    is ``{"batch_size": 8, "detection": {"min_score": 0.6}}``.
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        *sections, leaf = key.split("__")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return out


def _default_output(name: str, parameters: Mapping[str, Any]) -> Path:
    if parameters.get("home") is not None:
        home = Path(str(parameters["home"])).expanduser()
    else:
        from workbench.settings import WorkbenchSettings

        home = WorkbenchSettings().home
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = home / "reports" / f"{name}-{stamp}.ipynb"
    n = 1
    while out.exists():  # two runs in one second
        out = home / "reports" / f"{name}-{stamp}-{n}.ipynb"
        n += 1
    return out


def _check_parameters(path: Path, parameters: Mapping[str, Any]) -> None:
    papermill = require("papermill", "notebooks", _PURPOSE)
    declared = papermill.inspect_notebook(str(path))
    if not declared:
        return
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ConfigurationError(
            f"notebook {path.stem} has no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters: {', '.join(declared)}"
        )


def run_notebook(
    name: str | Path,
    parameters: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    html: bool | None = None,
    cwd: str | Path | None = None,
) -> NotebookRun:
    """Execute a notebook with papermill and return where it went and what it recorded.

    ``name``: one of `NOTEBOOKS` or a path to an .ipynb. ``parameters``
    replace the defaults of its ``parameters`` cell (an unknown name is an
    error). ``output``: the executed notebook, default
    ``<home>/reports/<name>-<UTC time>.ipynb`` (home from the parameters,
    else the ``WORKBENCH_*`` settings); an ``.html`` output also keeps the
    executed ``.ipynb`` beside it. ``html``: render HTML too (default: when
    ``output`` ends in ``.html``, and always for ``report``). ``cwd``: the
    kernel's working directory (default: this process's), against which
    relative paths in the parameters are read.

    Raises `NotebookFailed` when a cell raises, naming the cell, the error
    and the partly executed notebook.
    """
    papermill = require("papermill", "notebooks", _PURPOSE)
    path = find_notebook(name)
    params = dict(parameters or {})
    _check_parameters(path, params)
    out = Path(output).expanduser() if output is not None else _default_output(path.stem, params)
    if out.suffix == ".html":
        if html is False:
            raise ConfigurationError(
                f"output {out} is an HTML file but HTML was turned off; "
                "give an .ipynb output or leave HTML on"
            )
        html_path: Path | None = out
        out = out.with_suffix(".ipynb")
    elif html or (html is None and path.stem == "report"):
        html_path = out.with_suffix(".html")
    else:
        html_path = None
    out.parent.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(path),
            str(out),
            parameters=params,
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            cwd=None if cwd is None else str(cwd),
        )
    except papermill.PapermillExecutionError as e:
        raise NotebookFailed(path.stem, out, e.ename, e.evalue, cell=e.exec_count) from e
    except RuntimeError as e:
        # nbclient's DeadKernelError (a kernel killed for memory, a crash in native code)
        if type(e).__name__ != "DeadKernelError":
            raise
        raise NotebookFailed(path.stem, out, type(e).__name__, str(e)) from e
    seconds = time.perf_counter() - start
    if html_path is not None:
        render_html(out, html_path)
    # A notebook of one's own need not record anything.
    return NotebookRun(path.stem, out, html_path, seconds, _recorded(out) or {})


# The lab template without require.js: nothing here needs it (no widgets;
# plotly.js is inlined as a plain global), and it is a CDN script.
_HTML_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
"""

REMOVE_INPUT_TAG = "remove_input"
"""A cell tagged so shows only its output in the HTML (the report hides its code)."""


def render_html(notebook: str | Path, html: str | Path | None = None) -> Path:
    """Render an executed notebook to one self-contained HTML file (default: beside it).

    Plotly figures work offline: the notebooks use plotly's ``notebook``
    renderer, which puts plotly.js itself into the notebook, never a CDN
    link. Cells tagged ``remove_input`` show their output only.
    """
    nbformat = require("nbformat", "notebooks", _PURPOSE)
    exporters = require("nbconvert.exporters", "notebooks", _PURPOSE)
    preprocessors = require("nbconvert.preprocessors", "notebooks", _PURPOSE)
    import jinja2

    src = Path(notebook)
    dest = Path(html) if html is not None else src.with_suffix(".html")
    nb = nbformat.read(src, as_version=4)
    exporter = exporters.HTMLExporter(
        template_name="lab",
        template_file="workbench.html.j2",
        extra_loaders=[jinja2.DictLoader({"workbench.html.j2": _HTML_TEMPLATE})],
    )
    exporter.register_preprocessor(
        preprocessors.TagRemovePreprocessor(remove_input_tags={REMOVE_INPUT_TAG}, enabled=True),
        enabled=True,
    )
    body, _resources = exporter.from_notebook_node(nb)
    dest.write_text(body, encoding="utf-8")
    return dest


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):  # numpy arrays
        return value.tolist()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def record(numbers: Mapping[str, Any]) -> None:
    """Show a notebook's key numbers and mark them for `recorded_numbers` (its last cell).

    Values must be JSON-serialisable; numpy scalars and arrays, datetimes
    and paths are converted.
    """
    try:
        data = json.loads(json.dumps(dict(numbers), default=_jsonable))
    except (TypeError, ValueError) as e:
        raise ConfigurationError(f"recorded numbers must be JSON-serialisable: {e}") from e
    from IPython.display import display

    display(
        {"application/json": data, "text/plain": json.dumps(data, indent=2)},
        raw=True,
        metadata=dict(RECORD_METADATA),
    )


def _recorded(executed: Path) -> dict[str, Any] | None:
    nbformat = require("nbformat", "notebooks", _PURPOSE)
    nb = nbformat.read(executed, as_version=4)
    for cell in reversed(nb.cells):
        for out in reversed(cell.get("outputs", [])):
            meta = out.get("metadata", {})
            if meta.get("workbench") == RECORD_METADATA["workbench"]:
                return dict(out["data"]["application/json"])
    return None


def recorded_numbers(executed: str | Path) -> dict[str, Any]:
    """The numbers an executed notebook recorded with `record` (the last record wins)."""
    numbers = _recorded(Path(executed))
    if numbers is None:
        raise WorkbenchError(
            f"{executed} recorded no numbers: its last cell should call "
            "workbench.notebooks.record({...})"
        )
    return numbers


__all__ = [
    "NOTEBOOKS",
    "NotebookFailed",
    "NotebookRun",
    "find_notebook",
    "overrides",
    "parse_parameters",
    "record",
    "recorded_numbers",
    "render_html",
    "run_notebook",
]
