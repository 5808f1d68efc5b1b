"""``python manage.py dbsnap <command> ...``: the ``dbsnap`` CLI, in-process, on the settings manage.py loaded."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from dbsnap.cli.app import main
from dbsnap.project.child import discover
from dbsnap.project.discovery import use_loaded_settings

# Options manage.py itself has already applied before it ran this command (they would be unknown to dbsnap).
DJANGO_OPTIONS = ("--settings", "--pythonpath")


def project_root(argv0: str) -> Path:
    """The folder of the ``manage.py`` that runs us; under ``django-admin``, BASE_DIR or the current folder."""
    script = Path(argv0)
    if script.name == "manage.py" and script.is_file():
        return script.resolve().parent
    base = getattr(settings, "BASE_DIR", None)
    if base is not None and (Path(base) / "manage.py").is_file():
        return Path(base).resolve()
    return Path.cwd()


def without_django_options(args: list[str]) -> list[str]:
    """``args`` without ``--settings X`` / ``--settings=X`` / ``--pythonpath X``: manage.py consumed them."""
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a in DJANGO_OPTIONS:
            skip = True
        elif not a.startswith(tuple(o + "=" for o in DJANGO_OPTIONS)):
            out.append(a)
    return out


class Command(BaseCommand):
    help = "dbsnap: snapshots of the database paired with the migration folders (manage.py dbsnap --help)."

    def run_from_argv(self, argv: list[str]) -> None:
        """Everything after ``dbsnap`` goes to dbsnap's own command line, whose exit code is manage.py's."""
        sys.exit(self._run(argv[0], without_django_options(argv[2:])))

    def add_arguments(self, parser) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER, help="a dbsnap command and its options")

    def handle(self, *args: str, **options) -> None:
        """``call_command("dbsnap", "save", "x")``: CommandError carrying dbsnap's exit code on failure."""
        code = self._run(sys.argv[0] if sys.argv else "manage.py", list(args))
        if code:
            raise CommandError(f"dbsnap {' '.join(args)} failed with exit code {code}", returncode=code)

    def _run(self, argv0: str, args: list[str]) -> int:
        use_loaded_settings(project_root(argv0), discover.collect)
        return main(args, prog_name=f"{os.path.basename(argv0) or 'manage.py'} dbsnap")
