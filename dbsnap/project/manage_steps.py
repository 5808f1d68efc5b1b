"""manage.py steps in a child process (fresh imports), directly or through a command prefix such as
``docker compose exec -T web python manage.py``; and the check of migration history that reset's verify runs."""

from __future__ import annotations

import json
import shlex
import subprocess

from .. import procs
from ..errors import ConfigError
from .child import MARK, script
from .discovery import Project


def manage_prefix(project: Project) -> list[str]:
    """How manage.py is run: ``DBSNAP_MANAGE`` (e.g. ``docker compose exec -T web python manage.py``) or the
    project's interpreter with ``manage.py`` in the project root."""
    prefix = project.env.get("DBSNAP_MANAGE")
    if prefix:
        return shlex.split(prefix)
    compose = project.compose
    if compose is not None and compose.web:
        return compose.exec_argv(compose.web, [compose.python, "manage.py"], workdir=compose.web_workdir())
    return [project.python, "manage.py"]


def manage(project: Project, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run one manage.py command in a fresh child process; stdout and stderr together in ``.stdout``. It gets the
    environment manage.py gets when the user runs it (not dbsnap's reading of ``.env``): the same settings, so the
    same databases, as discovery saw."""
    env = dict(project.django_env or project.env)
    if project.settings_module:
        env.setdefault("DJANGO_SETTINGS_MODULE", project.settings_module)
    argv = [*manage_prefix(project), *args]
    try:
        return procs.run(
            argv,
            cwd=project.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError as e:
        raise ConfigError(
            f"cannot run manage.py: {argv[0]} not found", hint="check DBSNAP_MANAGE / DBSNAP_PYTHON"
        ) from e


def verify_state(project: Project, alias: str) -> dict:
    """Migration history vs files on disk, and model tables vs the database, as Django itself sees them."""
    # JSON escapes are valid inside a Python string literal: any alias arrives as itself, never as code.
    code = script("verify_state", ALIAS=json.dumps(alias)[1:-1])
    out = manage(project, "shell", "-c", code)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(MARK)), None)
    if out.returncode != 0 or line is None:
        last = (out.stdout.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
        raise ConfigError(f"cannot inspect migrations of {alias!r}: {last}")
    return json.loads(line[len(MARK) :])


def debug_from_manage(project: Project) -> bool | None:
    """settings.DEBUG as manage.py sees it (used when the settings could not be imported on this host)."""
    out = manage(project, "shell", "-c", script("debug"))
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(MARK)), None)
    if out.returncode != 0 or line is None:
        return None
    return line.split()[-1] == "True"
