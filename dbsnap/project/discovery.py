"""Finding the Django project: settings module, DATABASES, the project's own apps and their migration folders.

Django is imported only in a child process (``sys.executable -c ...`` in the project root), never in dbsnap's own
process: the project's settings get fresh imports, dbsnap never configures Django in-process, and a project whose
settings cannot be imported here (dependencies only in a container) falls back to environment variables and a scan
of the file tree, which is said out loud.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from dotenv import dotenv_values

from ..errors import ConfigError

# Django ENGINE strings -> dbsnap engine kind. Third-party wrappers are matched by suffix below.
ENGINE_KINDS = {
    "django.db.backends.postgresql": "postgresql",
    "django.db.backends.postgresql_psycopg2": "postgresql",
    "django.contrib.gis.db.backends.postgis": "postgresql",
    "django.db.backends.sqlite3": "sqlite",
    "django.contrib.gis.db.backends.spatialite": "sqlite",
    "django.db.backends.mysql": "mysql",
    "django.contrib.gis.db.backends.mysql": "mysql",
}
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
MARK = "DBSNAP-DISCOVERY:"

# The child reads settings and finds the migration folders of the project's own apps. Fast path: no
# ``django.setup()``. Importing every app's models (admin alone pulls in forms and templates) took 0.3 s of the
# 0.35 s this child cost on the example project; DATABASES only needs the settings module, and an app's label,
# path and migrations module only need its AppConfig (Django's own first phase of ``apps.populate``). Apps whose
# top-level package lives outside the project root or inside installed packages are not ours and are not imported
# at all. Anything unusual (an app package that imports models, a failing AppConfig) falls back to the full
# ``django.setup()`` and Django's own registry and MigrationLoader, as before.
_DISCOVER = r"""
import json, os, sys
import importlib.util
sys.path.insert(0, os.getcwd())
import django
from django.conf import settings

ROOT = os.path.realpath(os.getcwd())
VENDORED = ("site-packages", "dist-packages")

def plain(v):
    try:
        json.dumps(v)
        return v
    except TypeError:
        return str(v)

def maybe_own(entry):
    spec = importlib.util.find_spec(entry.split(".")[0])
    if spec is None:
        return True  # let Django say what is wrong with it
    locs = list(spec.submodule_search_locations or []) or [os.path.dirname(spec.origin or "")]
    for loc in locs:
        real = os.path.realpath(loc)
        if (real == ROOT or real.startswith(ROOT + os.sep)) and not any(v in real.split(os.sep) for v in VENDORED):
            return True
    return False

def migrations_dir(module):
    if module is None:
        return None
    try:
        spec = importlib.util.find_spec(module)
    except Exception:
        return None
    if spec is not None and spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return None

def fast_apps():
    from django.apps import AppConfig
    found = []
    for entry in settings.INSTALLED_APPS:
        if not maybe_own(entry):
            continue
        app = AppConfig.create(entry)
        # MigrationLoader.migrations_module without importing the loader (and every model with it)
        modules = settings.MIGRATION_MODULES
        module = modules[app.label] if app.label in modules else app.name + ".migrations"
        found.append({"label": app.label, "name": app.name, "path": app.path, "module": module,
                      "dir": migrations_dir(module)})
    return found

def setup_apps():
    django.setup()
    from django.apps import apps
    from django.db.migrations.loader import MigrationLoader
    found = []
    for app in apps.get_app_configs():
        module, _explicit = MigrationLoader.migrations_module(app.label)
        found.append({"label": app.label, "name": app.name, "path": app.path, "module": module,
                      "dir": migrations_dir(module)})
    return found

out = {"django_version": django.get_version(), "debug": bool(settings.DEBUG), "databases": {}}
for alias, cfg in settings.DATABASES.items():
    out["databases"][alias] = {k: plain(cfg.get(k)) for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")}
    out["databases"][alias]["OPTIONS"] = {k: plain(v) for k, v in (cfg.get("OPTIONS") or {}).items()}
try:
    out["apps"] = fast_apps()
except Exception:
    out["apps"] = setup_apps()
print("@MARK@" + json.dumps(out))
""".replace("@MARK@", MARK)


@dataclass
class Database:
    """One entry of DATABASES, reduced to what dbsnap needs. ``password`` never leaves the process."""

    alias: str
    kind: str
    name: str
    host: str = ""
    port: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    options: dict = field(default_factory=dict)
    django_engine: str = ""

    def public(self) -> dict:
        """Everything but the password, for output and manifests."""
        d = asdict(self)
        d.pop("password")
        d["engine"] = d.pop("kind")
        d["options"] = {k: v for k, v in self.options.items() if "pass" not in k.lower()}
        return d

    def describe(self) -> str:
        if self.kind == "sqlite":
            return f"{self.alias}: sqlite {self.name}"
        where = f"{self.host or 'localhost'}:{self.port or 'default'}"
        return f"{self.alias}: {self.kind} {self.name} on {where} as {self.user or '(default user)'}"


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


def engine_kind(engine: str) -> str:
    """Map a Django ENGINE string to an engine kind; ConfigError for engines dbsnap cannot handle."""
    if engine in ENGINE_KINDS:
        return ENGINE_KINDS[engine]
    low = engine.lower()
    for needle, kind in (
        ("postgis", "postgresql"),
        ("postgres", "postgresql"),
        ("sqlite", "sqlite"),
        ("spatialite", "sqlite"),
        ("mysql", "mysql"),
        ("mariadb", "mysql"),
    ):
        if needle in low:
            return kind
    raise ConfigError(f"unsupported database engine {engine!r}")


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
        proc = subprocess.run(
            [python, "-c", _DISCOVER], cwd=root, env=child_env, capture_output=True, text=True, timeout=120
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
        dbs[alias] = _database(root, alias, cfg.get("ENGINE") or "", cfg)
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


def _database(root: Path, alias: str, engine: str, cfg: dict) -> Database:
    kind = engine_kind(engine)
    name = str(cfg.get("NAME") or "")
    if kind == "sqlite":
        if not name or name == ":memory:" or name.startswith("file:"):
            raise ConfigError(
                f"database {alias!r}: SQLite database {name or '(empty)'!r} is not a file dbsnap can copy"
            )
        p = Path(name).expanduser()
        name = str(p if p.is_absolute() else (root / p).resolve())
    return Database(
        alias=alias,
        kind=kind,
        name=name,
        host=str(cfg.get("HOST") or ""),
        port=str(cfg.get("PORT") or ""),
        user=str(cfg.get("USER") or ""),
        password=str(cfg.get("PASSWORD") or ""),
        options=dict(cfg.get("OPTIONS") or {}),
        django_engine=engine,
    )


def _databases_from_env(root: Path, env: dict[str, str]) -> dict[str, Database]:
    url = env.get("DATABASE_URL")
    if url:
        u = urlparse(url)
        scheme = u.scheme.split("+")[0]
        if scheme in ("sqlite", "spatialite"):
            path = unquote(u.path[1:] if u.path.startswith("//") else u.path)
            return {
                "default": _database(
                    root,
                    "default",
                    "sqlite",
                    {"NAME": path.lstrip("/") if not u.path.startswith("//") else path},
                )
            }
        cfg = {
            "NAME": unquote(u.path.lstrip("/")),
            "USER": unquote(u.username or ""),
            "PASSWORD": unquote(u.password or ""),
            "HOST": u.hostname or "",
            "PORT": str(u.port or ""),
        }
        return {"default": _database(root, "default", scheme, cfg)}
    if env.get("DB_NAME"):
        engine = env.get("DB_ENGINE") or "postgresql"
        cfg = {
            "NAME": env["DB_NAME"],
            "USER": env.get("DB_USER", ""),
            "PASSWORD": env.get("DB_PASSWORD", ""),
            "HOST": env.get("DB_HOST", ""),
            "PORT": env.get("DB_PORT", ""),
        }
        return {"default": _database(root, "default", engine, cfg)}
    return {}


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
    dbs = _databases_from_env(root, env)
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
