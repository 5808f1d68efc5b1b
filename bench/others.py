"""The other tools a Django developer would use instead of dbsnap, timed beside it in the same run (issue 14):
django-dbbackup (``manage.py dbbackup`` / ``dbrestore --noinput``) and DSLR (``dslr snapshot`` / ``dslr restore``).

They are installed from PyPI into the bench's own environment (``bench/.venv`` by default, created on first use),
never into dbsnap's: dbsnap does not depend on them. django-dbbackup runs the example project's ``manage.py``
with a bench-only settings module written into the project copy (the project's settings plus the ``dbbackup``
app and its storage folder).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from common import ROOT, BenchError, Ctx, log
from contenders import Contender, Group, folder_bytes, run_quiet
from databases import Built, pg_counts, sqlite_counts

# What the bench environment gets: the contenders at the versions the issue measured, and what the example
# project's settings import (Django, the PostgreSQL driver, python-dotenv).
PACKAGES = ("django-dbbackup==5.4.0", "dslr==0.6.0", "Django>=4.2,<6", "psycopg[binary]>=3.1", "python-dotenv>=1.0")
DEFAULT_VENV = ROOT / "bench" / ".venv"
Pair = tuple[Contender, Contender, Callable[[], None]]  # save, restore, and what the restore needs made first

SETTINGS_MODULE = "bench_dbbackup_settings"
SETTINGS_TEXT = '''"""Bench-only settings: the example project's, plus django-dbbackup and its storage folder."""
import os

from shopsite.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "dbbackup"]  # noqa: F405
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "dbbackup": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": os.environ["BENCH_DBBACKUP_DIR"]},
    },
}
DBBACKUP_CONNECTORS = {"default": {k: v for k, v in (
    ("DUMP_CMD", os.environ.get("BENCH_PG_DUMP")), ("RESTORE_CMD", os.environ.get("BENCH_PG_RESTORE"))) if v}}
'''


def ensure_venv(venv: Path) -> dict[str, str]:
    """The bench environment with the contenders installed (created with pip on first use); their versions."""
    python = venv / "bin" / "python"
    probe = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({p: m.version(p) for p in ('django-dbbackup', 'dslr', 'Django', 'python-dotenv')}))"
    )
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True) if python.exists() else None
    if out is None or out.returncode != 0:
        log(f"installing {', '.join(PACKAGES)} into {venv} (the bench's own environment)")
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], capture_output=True, text=True)
        if pip.returncode != 0:
            raise BenchError(f"pip install into {venv} failed:\n{pip.stderr[-2000:]}")
        out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _dbbackup_env(ctx: Ctx, b: Built, folder: Path) -> dict[str, str]:
    (b.project / f"{SETTINGS_MODULE}.py").write_text(SETTINGS_TEXT)
    folder.mkdir(parents=True, exist_ok=True)
    env = {**b.env, "BENCH_DBBACKUP_DIR": str(folder), "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE}
    if b.engine == "postgresql":
        env.update(BENCH_PG_DUMP=ctx.pg.pg_dump, BENCH_PG_RESTORE=ctx.pg.pg_restore)
    return env


def _emptied(folder: Path) -> Callable[[int], int]:
    def after(i: int) -> int:
        size = folder_bytes(folder)
        for f in folder.iterdir():
            f.unlink()
        return size

    return after


def dbbackup_contenders(ctx: Ctx, label: str, b: Built, check: Callable[[int], int]) -> Pair:
    """``manage.py dbbackup`` (into an emptied folder, output = the backup file) and ``manage.py dbrestore
    --noinput`` (of one backup made once, untimed, in a folder of its own)."""
    engine = "pg" if b.engine == "postgresql" else "sqlite"
    python = str(ctx.others_venv / "bin" / "python")
    work = b.project.parent / "dbbackup"
    saves, base = work / "saves", work / "base"
    save_env, base_env = _dbbackup_env(ctx, b, saves), _dbbackup_env(ctx, b, base)
    save = Contender(
        f"{engine}-save-dbbackup",
        "django-dbbackup dbbackup",
        "other",
        lambda i: [python, "manage.py", "dbbackup", "-v", "0"],
        save_env,
        b.project,
        after=_emptied(saves),
    )
    restore = Contender(
        f"{engine}-rollback-dbbackup",
        "django-dbbackup dbrestore --noinput",
        "other",
        lambda i: [python, "manage.py", "dbrestore", "--noinput", "-v", "0"],
        base_env,
        b.project,
        after=check,
    )
    return (
        save,
        restore,
        lambda: run_quiet([python, "manage.py", "dbbackup", "-v", "0"], base_env, b.project, "dbbackup"),
    )


def dslr_contenders(ctx: Ctx, label: str, b: Built, check: Callable[[int], int]) -> Pair:
    """``dslr snapshot`` (a ``CREATE DATABASE … TEMPLATE`` copy, dropped after measuring) and ``dslr restore``
    (drop the live database, copy it back from a snapshot made once, untimed)."""
    dslr = str(ctx.others_venv / "bin" / "dslr")
    pg = ctx.pg
    auth = f"{pg.user}:{os.environ['PGPASSWORD']}@" if os.environ.get("PGPASSWORD") else f"{pg.user}@"
    env = {**pg.env, "DATABASE_URL": f"postgresql://{auth}{pg.host}:{pg.port}/{b.name}"}
    # DSLR names its databases dslr_<unix time>_<name>: the names carry the bench's prefix, so cleanup finds them.
    snap = f"{ctx.prefix}{label.lower()}_d"

    def dropped(i: int) -> int:
        size = 0
        for name in pg.databases():
            if name.startswith("dslr_") and name.endswith(f"_{snap}{i}"):
                size = pg.size(name)
                pg.drop(name)
        return size

    save = Contender(
        "pg-save-dslr",
        "DSLR snapshot (template copy)",
        "other",
        lambda i: [dslr, "snapshot", f"{snap}{i}", "-y"],
        env,
        b.project,
        after=dropped,
    )
    restore = Contender(
        "pg-clone-dslr",
        "DSLR restore (drop + template copy)",
        "other",
        lambda i: [dslr, "restore", f"{snap}base"],
        env,
        b.project,
        after=check,
    )
    return save, restore, lambda: run_quiet([dslr, "snapshot", f"{snap}base", "-y"], env, b.project, "dslr snapshot")


def add_others(ctx: Ctx, label: str, b: Built, groups: list[Group]) -> None:
    """Put the other tools' contenders into the engine's save and rollback groups (PostgreSQL: both tools;
    SQLite: django-dbbackup, DSLR is PostgreSQL only)."""
    if ctx.others_venv is None:
        return
    engine = b.engine
    by_name = {g.name: g for g in groups if g.engine == engine}
    if engine == "postgresql":
        db = b.name

        def check(i: int) -> int:
            got = pg_counts(ctx.pg, db)
            if got != b.counts:
                raise BenchError(f"{label}: {db} after restore has {got}, expected {b.counts}")
            return ctx.pg.size(db)
    else:
        live = Path(b.name)

        def check(i: int) -> int:
            got = sqlite_counts(str(live))
            if got != b.counts:
                raise BenchError(f"{label}: SQLite after restore has {got}, expected {b.counts}")
            return live.stat().st_size

    pairs = [dbbackup_contenders(ctx, label, b, check)]
    if engine == "postgresql":
        pairs.append(dslr_contenders(ctx, label, b, check))
    for save, restore, prepare in pairs:
        by_name["save"].contenders.append(save)
        target = by_name["rollback (clone)" if restore.key == "pg-clone-dslr" else "rollback"]
        target.contenders.append(restore)
        _chain(target, prepare)


def _chain(group: Group, extra: Callable[[], None]) -> None:
    first = group.prepare

    def prepare() -> None:
        if first:
            first()
        extra()

    group.prepare = prepare
