"""The root's command table (what `workbench --help` lists without importing the commands)
against the commands themselves."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.unit


def _real_commands() -> dict[str, tuple[str, click.Command]]:
    from workbench.cli import COMMAND_TABLE

    out: dict[str, tuple[str, click.Command]] = {}
    for module_name in sorted({module for module, _ in COMMAND_TABLE.values()}):
        module = importlib.import_module(f"workbench.cli.{module_name}")
        for command in module.COMMANDS:
            out[command.name or ""] = (module_name, command)
    return out


def test_the_table_names_every_command_its_module_and_first_paragraph() -> None:
    from workbench.cli import COMMAND_TABLE

    real = _real_commands()
    assert set(COMMAND_TABLE) == set(real)
    for name, (module, summary) in COMMAND_TABLE.items():
        real_module, command = real[name]
        assert module == real_module, name
        first = " ".join((command.help or "").partition("\n\n")[0].split())
        assert summary == first, f"{name}: the table says {summary!r}, the command {first!r}"


def test_help_lists_what_the_loaded_commands_would_list() -> None:
    from workbench.cli import cli

    lazy = CliRunner().invoke(cli, ["--help"], terminal_width=100)
    full = click.Group(
        cli.name,
        params=cli.params,
        help=cli.help,
        context_settings=cli.context_settings,
        commands=[c for _, c in _real_commands().values()],
    )
    eager = CliRunner().invoke(full, ["--help"], terminal_width=100)
    assert lazy.exit_code == eager.exit_code == 0
    assert lazy.output == eager.output


def test_help_imports_no_command_module_settings_or_logging() -> None:
    code = (
        "import sys\n"
        "from workbench.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ['workbench.cli.photos', 'workbench.cli._common', 'workbench.settings',\n"
        "         'pydantic', 'sqlalchemy', 'loguru', 'requests', 'pandas']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "", out.stdout


def test_a_command_runs_from_its_module_loaded_on_use() -> None:
    from workbench.cli import cli

    result = CliRunner().invoke(cli, ["packs"])
    assert result.exit_code == 0, result.output
    assert "local" in result.output.splitlines()
    assert cli.get_command(click.Context(cli), "no-such-command") is None
