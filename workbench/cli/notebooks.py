"""``workbench run-notebook``: run one of the parameterized notebooks with papermill."""

from __future__ import annotations

from typing import Any

import click

from workbench.cli._common import emit, global_option, say


@click.command("run-notebook")
@click.argument("name")
@click.option(
    "-p",
    "--parameter",
    "parameters",
    type=(str, str),
    multiple=True,
    metavar="KEY VALUE",
    help='A notebook parameter; VALUE is read as YAML (8 is an int, \'["a", "b"]\' a list). '
    "Repeatable.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Executed notebook (.ipynb, or .html to render it and keep the .ipynb beside it) "
    "[default: <home>/reports/NAME-<UTC time>.ipynb].",
)
@click.option(
    "--html/--no-html",
    default=None,
    help="Also render the executed notebook to HTML [default: for report and .html outputs].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run as one JSON document.")
@click.pass_context
def run_notebook(
    ctx: click.Context,
    name: str,
    parameters: tuple[tuple[str, str], ...],
    output: str | None,
    html: bool | None,
    as_json: bool,
) -> None:
    """Run a parameterized notebook with papermill.

    NAME is 01_ingest, 02_embed, 03_index, 04_cluster, 05_evaluate, report, explore,
    or the path of an .ipynb file. The global --home and --pack become the
    notebook's `home` and `pack` parameters unless -p sets them. Prints the
    executed notebook's path (and the HTML's); --json prints {notebook,
    output, html, seconds, numbers} with the numbers the notebook recorded.
    """
    from workbench.notebooks import parse_parameters
    from workbench.notebooks import run_notebook as run

    values: dict[str, Any] = {}
    for key in ("home", "pack"):
        if global_option(ctx, key) is not None:
            values[key] = str(global_option(ctx, key))
    values.update(parse_parameters(parameters))
    result = run(name, values, output=output, html=html)
    if as_json:
        emit(result.to_dict())
        return
    say(str(result.output))
    if result.html is not None:
        say(str(result.html))


COMMANDS = [run_notebook]
