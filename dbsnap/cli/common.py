"""What every command module shares: the options given before the command, stdout, --json, confirmation."""

from __future__ import annotations

import json
import sys

import click

from ..context import Context
from ..errors import UsageError
from ..report import HumanReporter
from ..settings import Settings


class Obj:
    """Options given before the command, turned into a Context when the command runs."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    def ctx(self, command: str, quiet: bool = False, jobs: str | None = None, as_json: bool = False) -> Context:
        """The command's Context; with ``as_json`` no live progress line is drawn (steps still go to stderr)."""
        k = self.kwargs
        return Context(
            settings=Settings(
                project=k["project"],
                store=k["store"],
                databases=k["database"],
                lock_timeout=k["lock_timeout"],
                jobs=jobs,
            ),
            reporter=HumanReporter(quiet=quiet or k["quiet"], live=not as_json),
            command=command,
        )


def out(data: object, as_json: bool) -> None:
    """Write a result to stdout: one JSON document, or text."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str) if as_json else data)


json_opt = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")


def confirm_or_refuse(yes: bool, question: str) -> bool:
    """True with --yes; ask on a terminal; without one, refuse (UsageError) rather than guess."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError("refusing to continue without confirmation: no terminal; pass --yes")
    if not click.confirm(question, err=True):
        raise UsageError("cancelled; nothing was changed")
    return True
