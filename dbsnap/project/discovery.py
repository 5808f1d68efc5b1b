"""Finding the Django project: settings module, DATABASES, the project's own apps and their migration folders.

Django is imported only in a child process (``child/discover.py``, run with ``python -c`` in the project root),
never in dbsnap's own process: the project's settings get fresh imports, dbsnap never configures Django
in-process, and a project whose settings cannot be imported here (dependencies only in a container) falls back to
environment variables and a scan of the file tree, which is said out loud.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from .. import procs
from ..errors import ConfigError
from .child import MARK, script
from .databases import Database, database_from_config, databases_from_env

SKIP_DIRS = {
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "__pycache__",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".venv",
    "venv",
    "env",
    "site-packages",
    "dist-packages",
    "snapshots",
}


@dataclass
class MigrationFolder:
    """A migration folder of one of the project's own apps; ``path`` is relative to the project root."""

    app: str
    path: str
    files: int


@dataclass
class Project:
    """What discovery found. ``fallback`` says why settings could not be used, when they could not."""

    root: Path
    settings_module: str | None
    databases: dict[str, Database]
    folders: list[MigrationFolder]
    env: dict[str, str] = field(repr=False)
    debug: bool | None = None
    django_version: str | None = None
    fallback: str | None = None
    python: str = sys.executable

    def select(self, aliases: list[str] | tuple[str, ...] | None) -> list[Database]:
        """The databases chosen with ``--database`` (all when none given); unknown aliases are an error."""
        if not aliases:
            return list(self.databases.values())
        unknown = [a for a in aliases if a not in self.databases]
        if unknown:
            raise ConfigError(
                f"unknown database alias {unknown[0]!r}; this project has: {', '.join(self.databases) or 'none'}"
            )
        return [self.databases[a] for a in aliases]


def find_root(start: Path | None) -> Path:
    """The project root: ``start`` if given (must hold manage.py), else the nearest folder upwards with one."""
    if start is not None:
        root = Path(start).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"project folder {root} does not exist")
        if not (root / "manage.py").is_file():
            raise ConfigError(f"{root} is not a Django project root (no manage.py)", hint="pass --project PATH")
        return root
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "manage.py").is_file():
            return d
    raise ConfigError(
        f"no Django project found in {here} or above (no manage.py)",
        hint="run dbsnap from the project root or pass --project PATH / set DBSNAP_PROJECT",
    )


def load_env(root: Path, cwd: Path | None = None) -> dict[str, str]:
    """The environment dbsnap works with: process environment, then ``root/.env``, then ``cwd/.env``.

    Variables already set are never overridden; dbsnap's own process environment is not modified.
    """
    env: dict[str, str] = {}
    cwd = (cwd or Path.cwd()).resolve()
    files = [root / ".env"] + ([cwd / ".env"] if cwd != root else [])
    for f in reversed(files):
        if f.is_file():
            env.update({k: v for k, v in dotenv_values(f).items() if v is not None})
    env.update(os.environ)
    return env


def settings_module_from_manage(root: Path) -> str | None:
    """The settings module manage.py sets by default, if it says."""
    try:
        text = (root / "manage.py").read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([\w.]+)['"]""", text)
    return m.group(1) if m else None


def _is_own_code(path: Path, root: Path) -> bool:
    """True for code under the project root that is not inside a virtualenv or installed packages."""
    try:
        rel = path.resolve().relative_to(root)
    except ValueError:
        return False
    if any(p in ("site-packages", "dist-packages", "node_modules") for p in rel.parts):
        return False
    d = root
    for part in rel.parts:
        if (d / "pyvenv.cfg").exists():
            return False
        d = d / part
    return True


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.glob("*.py") if p.name != "__init__.py")


def _from_settings(root: Path, env: dict[str, str], settings_module: str, python: str) -> Project:
    child_env = dict(env)
    child_env["DJANGO_SETTINGS_MODULE"] = settings_module
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    try:
        proc = procs.run(
            [python, "-c", script("discover")],
            cwd=root,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise _SettingsUnavailable(str(e)) from e
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise _SettingsUnavailable(tail[-1] if tail else f"exit code {proc.returncode}")
    data = json.loads(line[len(MARK) :])
    dbs = {}
    for alias, cfg in data["databases"].items():
        dbs[alias] = database_from_config(root, alias, cfg.get("ENGINE") or "", cfg)
    folders = []
    for app in data["apps"]:
        if not app["dir"]:
            continue
        mdir = Path(app["dir"])
        if not mdir.is_dir() or not _is_own_code(Path(app["path"]), root) or not _is_own_code(mdir, root):
            continue
        folders.append(MigrationFolder(app["label"], mdir.resolve().relative_to(root).as_posix(), _count_files(mdir)))
    return Project(
        root=root,
        settings_module=settings_module,
        databases=dbs,
        folders=folders,
        env=env,
        debug=data["debug"],
        django_version=data["django_version"],
        python=python,
    )


class _SettingsUnavailable(Exception):
    pass


def scan_migration_folders(root: Path) -> list[MigrationFolder]:
    """Migration folders found by walking the tree: ``*/migrations/__init__.py``, skipping virtualenvs and caches."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(
            n for n in dirnames if n not in SKIP_DIRS and not n.startswith(".") and not (d / n / "pyvenv.cfg").exists()
        )
        if d.name == "migrations" and "__init__.py" in filenames and d != root:
            found.append(MigrationFolder(d.parent.name, d.relative_to(root).as_posix(), _count_files(d)))
    return found


def discover(project: Path | None = None, python: str | None = None) -> Project:
    """Find the project, load its environment and settings; fall back to env variables and a scan if needed."""
    root = find_root(project)
    env = load_env(root)
    python = python or env.get("DBSNAP_PYTHON") or sys.executable
    settings_module = env.get("DJANGO_SETTINGS_MODULE") or settings_module_from_manage(root)
    reason = None
    if settings_module:
        try:
            return _from_settings(root, env, settings_module, python)
        except _SettingsUnavailable as e:
            reason = f"settings {settings_module} could not be imported here: {e}"
    else:
        reason = "no settings module (DJANGO_SETTINGS_MODULE unset and not found in manage.py)"
    dbs = databases_from_env(root, env)
    if not dbs:
        raise ConfigError(
            f"cannot find the databases: {reason}; and neither DATABASE_URL nor DB_NAME is set",
            hint="fix the settings import, or set DATABASE_URL (or DB_ENGINE/DB_NAME/DB_USER/DB_HOST/DB_PORT) in .env",
        )
    return Project(
        root=root,
        settings_module=settings_module,
        databases=dbs,
        folders=scan_migration_folders(root),
        env=env,
        fallback=reason,
        python=python,
    )
