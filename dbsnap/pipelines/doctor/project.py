"""Doctor's checks of the interpreter, dbsnap itself, the project, its settings, Django and the migration folders."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import dbsnap

from ... import __version__
from ...context import Context
from ...project.discovery import Project, discover, find_root
from ...settings import read_pyproject
from .check import FAIL, OK, WARN, Check

DEPENDENCIES = ("click", "dj-database-url", "psycopg", "python-dotenv", "zstandard")
MIN_PYTHON = (3, 10)
MIN_DJANGO = (4, 2)


def check_python() -> Check:
    v = platform.python_version()
    detail = f"{v} ({sys.executable})"
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("python", FAIL, detail, f"dbsnap needs Python {'.'.join(map(str, MIN_PYTHON))} or newer")
    return Check("python", OK, detail)


def check_dbsnap() -> Check:
    from importlib import metadata  # here, not at the top: every command imports this module (20 ms)

    versions, missing = [], []
    for dist in DEPENDENCIES:
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            missing.append(dist)
    where = Path(dbsnap.__file__).resolve().parent
    if missing:
        return Check(
            "dbsnap",
            FAIL,
            f"{__version__} ({where}); missing dependencies: {', '.join(missing)}",
            f"install them into this interpreter: {sys.executable} -m pip install {' '.join(missing)}",
        )
    return Check("dbsnap", OK, f"{__version__} ({', '.join(versions)})")


def check_project(ctx: Context) -> Check:
    if ctx.root is None:
        find_root(None)  # raises the "no Django project found" error with its hint
    return Check("project", OK, str(ctx.root))


def check_settings(ctx: Context, holder: list[Project]) -> Check:
    """Discovery, run here rather than through ``ctx.project`` so that a fallback is a check, not a warning."""
    project = discover(ctx.root, compose_table=read_pyproject(ctx.root).get("compose"))
    holder.append(project)
    n = len(project.databases)
    found = f"{n} database{'s' if n != 1 else ''}"
    if project.fallback:
        source = "DATABASE_URL" if project.env.get("DATABASE_URL") else "DB_* variables"
        return Check(
            "settings",
            WARN,
            f"fallback in use: {project.fallback}; {found} from {source}, migration folders found by scanning",
            "make the settings importable by "
            + project.python
            + " (install the project's requirements there), or set DBSNAP_PYTHON to the project's interpreter",
        )
    python = "" if project.python == sys.executable else f" with {project.python}"
    detail = f"{project.settings_module} imported{python} ({found})"
    if project.differences:
        return Check(
            "settings",
            WARN,
            f"{detail}; " + "; ".join(project.differences),
            "make the environment (.env) and the settings agree: Django uses the settings, and so does dbsnap",
        )
    return Check("settings", OK, detail)


def check_django(project: Project) -> Check:
    if not project.django_version:
        return Check(
            "django",
            WARN,
            "version unknown: the settings were not imported (see 'settings')",
            "fix the settings import (see 'settings') so dbsnap sees what Django sees",
        )
    debug = "" if project.debug is None else f" (DEBUG={project.debug})"
    detail = f"{project.django_version}{debug}"
    try:
        parts = tuple(int(x) for x in project.django_version.split(".")[:2])
    except ValueError:
        parts = MIN_DJANGO
    if parts < MIN_DJANGO:
        return Check(
            "django", WARN, f"{detail}: older than Django 4.2, which dbsnap does not support", "upgrade Django"
        )
    return Check("django", OK, detail)


def check_migrations(project: Project) -> Check:
    folders = project.folders
    if not folders:
        return Check(
            "migrations",
            WARN,
            "no migration folder found in the project's own apps: snapshots will hold the database only",
            "check INSTALLED_APPS and MIGRATION_MODULES; only apps whose code lives under the project root count",
        )
    total = sum(f.files for f in folders)
    detail = (
        f"{len(folders)} folder{'s' if len(folders) != 1 else ''} ({', '.join(f.path for f in folders)}), "
        f"{total} migration{'s' if total != 1 else ''}"
    )
    if project.not_managed:
        detail += "; not managed: " + ", ".join(f"{n.app} ({n.reason})" for n in project.not_managed)
    return Check("migrations", OK, detail)
