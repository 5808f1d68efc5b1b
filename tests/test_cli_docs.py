"""Every command has help text with an example, and the README documents it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import REPO

from dbsnap.cli import cli

COMMANDS = sorted(cli.commands)


def test_there_are_commands() -> None:
    assert {"info", "save", "list", "show", "delete", "pin", "unpin", "rollback", "unlock"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_has_an_example(name: str) -> None:
    res = CliRunner().invoke(cli, [name, "--help"])
    assert res.exit_code == 0
    assert "Example:" in res.output
    assert f"dbsnap {name}" in res.output or (name == "list" and "dbsnap list" in res.output)


@pytest.mark.parametrize("name", COMMANDS)
def test_readme_documents_command(name: str) -> None:
    readme = (REPO / "README.md").read_text()
    assert f"dbsnap {name}" in readme


def test_readme_documents_exit_codes() -> None:
    from dbsnap import errors

    readme = (REPO / "README.md").read_text()
    codes = {c.exit_code for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.DbsnapError)}
    for code in codes:
        assert f"| {code} " in readme, code
