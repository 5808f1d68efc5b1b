"""``dbsnap doctor``: check every precondition dbsnap's commands rely on, without changing anything.

Each check is a small function returning one or more :class:`Check` (``ok``, ``warn`` or ``fail``, with the fix
for anything not ok). A check that raises becomes a ``fail`` carrying its message, never a traceback. Nothing is
created, locked or modified: the store is not created, the lock is not taken (whether a live process holds it is
read from ``/proc/locks``), and the only write is a temporary file created and removed again to prove the store
(or the folder it will be created in) is writable.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from .. import __version__
from ..context import Context
from ..engines import engine_for
from ..errors import DbsnapError
from ..project.discovery import Database, Project, discover, find_root
from ..report import human_bytes
from ..store.locking import LOCK_NAME, describe_owner, is_held, read_owner
from .rollback import FORWARD_PHASES

OK, WARN, FAIL = "ok", "warn", "fail"
PG_TOOLS = ("pg_dump", "pg_restore", "psql")
TOOL_VARS = {"pg_dump": "DBSNAP_PG_DUMP", "pg_restore": "DBSNAP_PG_RESTORE", "psql": "DBSNAP_PSQL"}
DEPENDENCIES = ("click", "psycopg", "python-dotenv", "zstandard")
MIN_PYTHON = (3, 10)
MIN_DJANGO = (4, 2)
_STORE_FIX = "make it writable (mount options, owner, 'chattr -i'), or choose another store with --store or DBSNAP_DIR"


@dataclass
class Check:
    """One line of the report. ``fix`` says what to do when ``status`` is not ``ok``."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def run_checks(ctx: Context) -> list[Check]:
    """Every check, in report order. Changes nothing (see the module docstring)."""
    checks = _guard("python", check_python) + _guard("dbsnap", check_dbsnap)
    project = None
    project_checks = _guard("project", check_project, ctx)
    checks += project_checks
    if project_checks[0].status != FAIL:
        holder: list[Project] = []
        checks += _guard("settings", check_settings, ctx, holder)
        if holder:
            project = holder[0]
            checks += _guard("django", check_django, project)
            checks += _guard("migrations", check_migrations, project)
    if project is not None:
        checks += _guard("databases", check_databases, ctx, project)
    store = ctx.store.root
    checks += _guard("store", check_store, store)
    checks += _guard("disk space", check_space, ctx)
    checks += _guard("lock", check_lock, store)
    checks += _guard("journal", check_journal, ctx)
    return checks


def diagnose(make_ctx: Callable[[], Context]) -> list[Check]:
    """``run_checks`` on the context ``make_ctx`` builds; when it cannot be built, say why as a failed check."""
    try:
        ctx = make_ctx()
    except DbsnapError as e:
        return (
            _guard("python", check_python)
            + _guard("dbsnap", check_dbsnap)
            + [Check("configuration", FAIL, e.message, e.hint or "fix the configuration named above")]
        )
    return run_checks(ctx)


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == FAIL]


def _guard(name: str, fn: Callable[..., Check | list[Check]], *args) -> list[Check]:
    """Run one check; an exception becomes a ``fail`` with its message (the hint of a DbsnapError as the fix)."""
    try:
        result = fn(*args)
    except DbsnapError as e:
        return [Check(name, FAIL, e.message, e.hint)]
    except Exception as e:
        text = str(e).strip().splitlines()
        return [Check(name, FAIL, f"{type(e).__name__}: {text[0]}" if text else type(e).__name__)]
    return result if isinstance(result, list) else [result]


# -- versions -----------------------------------------------------------------------------------------------------


def check_python() -> Check:
    v = platform.python_version()
    detail = f"{v} ({sys.executable})"
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("python", FAIL, detail, f"dbsnap needs Python {'.'.join(map(str, MIN_PYTHON))} or newer")
    return Check("python", OK, detail)


def check_dbsnap() -> Check:
    versions, missing = [], []
    for dist in DEPENDENCIES:
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            missing.append(dist)
    where = Path(__file__).resolve().parent
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
    project = discover(ctx.root)
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
    return Check("settings", OK, f"{project.settings_module} imported{python} ({found})")


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
    return Check(
        "migrations",
        OK,
        f"{len(folders)} folder{'s' if len(folders) != 1 else ''} ({', '.join(f.path for f in folders)}), "
        f"{total} migration{'s' if total != 1 else ''}",
    )


# -- databases ----------------------------------------------------------------------------------------------------


def check_databases(ctx: Context, project: Project) -> list[Check]:
    """Per database: reachable; for PostgreSQL also the maintenance connection, privileges and client tools."""
    dbs = project.select(ctx.settings.databases)
    if not dbs:
        return [Check("databases", WARN, "DATABASES is empty: there is nothing to snapshot", "configure DATABASES")]
    checks: list[Check] = []
    servers: list[tuple[object, int | None]] = []  # PostgreSQL engines with their server major (None: unreachable)
    for db in dbs:
        name = f"database {db.alias}"
        try:
            engine = engine_for(db, project.env)
        except DbsnapError as e:
            checks.append(Check(name, FAIL, e.message, e.hint or "use a PostgreSQL or SQLite database"))
            continue
        if db.kind == "sqlite":
            checks += _guard(name, check_sqlite, db)
            continue
        try:
            major, text = engine.server_version()
        except DbsnapError as e:  # the message names host, port and user; the hint is the fix
            checks.append(Check(name, FAIL, e.message, e.hint))
            servers.append((engine, None))
            continue
        checks.append(Check(name, OK, f"postgresql {db.name} on {engine.where()}, server {text}"))
        servers.append((engine, major))
        checks += _guard(f"{db.alias}: maintenance db", check_pg_maintenance, engine)
        checks += _guard(f"{db.alias}: privileges", check_pg_privileges, engine)
    checks += _tool_checks(servers)
    return checks


def check_sqlite(db: Database) -> Check:
    import sqlite3

    name = f"database {db.alias}"
    path = Path(db.name)
    if not path.is_file():
        return Check(
            name,
            FAIL,
            f"sqlite {path} does not exist",
            "run 'manage.py migrate' to create it, or fix NAME in DATABASES",
        )
    conn = sqlite3.connect(f"file:{path.as_posix()}?mode=ro", uri=True, timeout=5)
    try:
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    except sqlite3.Error as e:
        return Check(name, FAIL, f"sqlite {path} cannot be read: {e}", "check the file is a SQLite database")
    finally:
        conn.close()
    detail = f"sqlite {path} (SQLite {sqlite3.sqlite_version}, {tables} tables)"
    if not os.access(path.parent, os.W_OK):
        return Check(
            name,
            WARN,
            f"{detail}; its folder is not writable, so rollback and reset cannot swap a restored copy in",
            f"make {path.parent} writable for this user",
        )
    return Check(name, OK, detail)


def check_pg_maintenance(engine) -> Check:
    name = f"{engine.db.alias}: maintenance db"
    try:
        conn = engine.maintenance()
    except DbsnapError as e:
        return Check(
            name,
            FAIL,
            f"{e.message}: rollback and reset need it to create, rename and drop databases and list sessions",
            f"GRANT CONNECT ON DATABASE postgres TO {engine.db.user or 'your role'} (as a superuser)",
        )
    with conn:
        dbname = conn.info.dbname
    return Check(name, OK, f"connects to {dbname!r} to create, rename and drop databases")


def _role_facts(engine) -> dict:
    with engine.connect() as conn:
        row = conn.execute(
            "SELECT current_user, r.rolsuper, r.rolcreatedb, pg_get_userbyid(d.datdba),"
            " pg_has_role(current_user, d.datdba, 'MEMBER'),"
            " pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')"
            " FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()"
        ).fetchone()
        facts = dict(
            zip(("user", "superuser", "createdb", "owner", "owner_member", "signal_backend"), row, strict=True)
        )
        # The verdict the rollback uses (engines/pg_restore.py), so doctor and rollback never disagree.
        facts["can_swap"] = engine.can_swap(conn, facts["owner"])
    return facts


def check_pg_privileges(engine) -> list[Check]:
    """Two checks from one query: can the role create databases (swap mode), can it end other sessions."""
    f = _role_facts(engine)
    return [_createdb(engine, f), _terminate(engine, f)]


def _createdb(engine, f: dict) -> Check:
    name = f"{engine.db.alias}: create databases"
    if f["can_swap"]:
        why = "superuser" if f["superuser"] else f"CREATEDB and member of the owner {f['owner']!r}"
        return Check(name, OK, f"role {f['user']!r}: {why}; rollback restores beside the live database and swaps")
    reasons, fixes = [], []
    if not (f["superuser"] or f["createdb"]):
        reasons.append("cannot create databases")
        fixes.append(f"ALTER ROLE {f['user']} CREATEDB")
    if not f["owner_member"]:
        reasons.append(f"is not a member of the database owner {f['owner']!r}")
        fixes.append(f"GRANT {f['owner']} TO {f['user']}")
    return Check(
        name,
        WARN,
        f"role {f['user']!r} {' and '.join(reasons)}: rollback uses the slower in-transaction restore",
        f"for the faster swap-based rollback, as a superuser: {'; '.join(fixes)}",
    )


def _terminate(engine, f: dict) -> Check:
    name = f"{engine.db.alias}: terminate sessions"
    if f["superuser"]:
        return Check(name, OK, f"role {f['user']!r} is a superuser: can end other sessions on {engine.db.name!r}")
    if f["signal_backend"]:
        return Check(
            name,
            OK,
            f"role {f['user']!r} is a member of pg_signal_backend: can end other (non-superuser) sessions",
        )
    return Check(
        name,
        WARN,
        f"role {f['user']!r} can end only its own sessions: rollback and reset fail while other roles "
        f"are connected to {engine.db.name!r}",
        f"GRANT pg_signal_backend TO {f['user']} (as a superuser), or stop other clients before rollback or reset",
    )


def _tool_checks(servers: list[tuple[object, int | None]]) -> list[Check]:
    """pg_dump, pg_restore and psql, once per distinct server major version (they depend on nothing else)."""
    by_major: dict[int | None, object] = {}
    for engine, major in servers:
        by_major.setdefault(major, engine)
    known = {m for m in by_major if m is not None}
    if known:
        by_major.pop(None, None)  # an unreachable server's tools are the same ones, checked against a known one
    checks = []
    for major, engine in by_major.items():
        for tool in PG_TOOLS:
            name = tool if len(by_major) == 1 else f"{tool} (server {major if major is not None else '?'})"
            checks += _guard(name, check_pg_tool, engine, tool, major, name)
    return checks


def check_pg_tool(engine, tool: str, major: int | None, name: str) -> Check:
    env = engine.env
    try:
        cmd, version = engine.tool(tool, major or 0)
    except DbsnapError as e:
        return Check(name, FAIL, e.message, _tool_fix(env, tool, major))
    where = " ".join(cmd)
    if major is None:
        return Check(
            name,
            WARN,
            f"{version} at {where}; not compared with the server's version (server unreachable)",
            "fix the database connection, then run 'dbsnap doctor' again",
        )
    return Check(name, OK, f"{version} at {where} (server {major})")


def _tool_fix(env: dict[str, str], tool: str, major: int | None) -> str:
    var = TOOL_VARS[tool]
    n = f"{major}" if major else "<N>"
    newer = f"{tool} {major} or newer" if major else tool
    if env.get(var):
        return (
            f"{var} is set to {env[var]!r}: correct it to a working {newer}, or unset it so that dbsnap searches "
            f"DBSNAP_PG_BIN, PATH and /usr/lib/postgresql/{n}/bin"
        )
    parts = []
    bin_dir = env.get("DBSNAP_PG_BIN")
    if bin_dir and not (Path(bin_dir) / tool).exists():
        parts.append(f"DBSNAP_PG_BIN={bin_dir} holds no {tool}")
    parts.append(
        f"install postgresql-client-{n} (Debian/Ubuntu: apt install postgresql-client-{n}; it lands in "
        f"/usr/lib/postgresql/{n}/bin, found automatically) or set DBSNAP_PG_BIN to a folder holding {newer}"
    )
    return "; ".join(parts)


# -- the store ----------------------------------------------------------------------------------------------------


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_write(folder: Path) -> None:
    """Create and remove a temporary file in ``folder``; OSError when that is not possible."""
    fd, tmp = tempfile.mkstemp(prefix=".dbsnap-doctor-", dir=folder)
    os.close(fd)
    os.unlink(tmp)


def check_store(root: Path) -> Check:
    if root.exists() and not root.is_dir():
        return Check("store", FAIL, f"{root} exists but is not a folder", "remove it or use --store / DBSNAP_DIR")
    if not root.exists():
        parent = _existing(root)
        if not parent.is_dir():
            return Check("store", FAIL, f"{root} cannot be created: {parent} is not a folder", _STORE_FIX)
        try:
            _probe_write(parent)
        except OSError as e:
            return Check(
                "store", FAIL, f"{root} does not exist and cannot be created in {parent}: {e.strerror}", _STORE_FIX
            )
        return Check("store", OK, f"{root} does not exist yet; the first save creates it ({parent} is writable)")
    try:
        _probe_write(root)
    except OSError as e:
        return Check("store", FAIL, f"{root} is not writable: {e.strerror}", _STORE_FIX)
    mode = root.stat().st_mode & 0o777
    if mode & 0o077:
        return Check(
            "store",
            WARN,
            f"{root} is writable but has mode {mode:04o}: other users can read the database dumps",
            f"chmod 700 {root}",
        )
    return Check("store", OK, f"{root} is writable")


def check_space(ctx: Context) -> Check:
    root = ctx.store.root
    usage = shutil.disk_usage(_existing(root))
    free = human_bytes(usage.free)
    snaps = ctx.store.list()
    if not snaps:
        return Check("disk space", OK, f"{free} free; no snapshot yet to compare with")
    latest = snaps[-1]
    size = latest.size
    detail = f"{free} free; the latest snapshot {latest.name} is {human_bytes(size)}"
    fix = (
        f"free space on the file system of {root}, remove old snapshots ('dbsnap prune' or 'dbsnap delete'), "
        "or move the store (--store / DBSNAP_DIR)"
    )
    if usage.free < size:
        return Check("disk space", FAIL, f"{detail}: the next snapshot will not fit", fix)
    if usage.free < 2 * size:
        return Check("disk space", WARN, f"{detail}: less than twice that (a rollback's safety snapshot)", fix)
    return Check("disk space", OK, detail)


def flock_holders(path: Path) -> list[int] | None:
    """Pids holding a ``flock`` on ``path`` according to ``/proc/locks`` (None when it cannot be read).

    Read-only: unlike a non-blocking ``flock`` probe, it never holds the lock, even for an instant, so a
    command starting at the same moment cannot find the store locked because of doctor.
    """
    try:
        ino = os.stat(path).st_ino
    except FileNotFoundError:
        return []
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    pids = []
    for line in lines:
        parts = line.split()
        if "->" in parts or "FLOCK" not in parts:
            continue  # waiters are not holders
        i = parts.index("FLOCK")
        with contextlib.suppress(IndexError, ValueError):
            pid, ident = parts[i + 3], parts[i + 4]
            # maj:min:inode; the device is not compared (overlay file systems report another one).
            if int(ident.rsplit(":", 1)[1]) == ino:
                pids.append(int(pid))
    return pids


def check_lock(root: Path) -> Check:
    if not root.is_dir():
        return Check("lock", OK, "not locked (no store yet)")
    owner = read_owner(root)
    if owner is None:
        return Check("lock", OK, "not locked")
    holders = flock_holders(root / LOCK_NAME)
    held = bool(holders) if holders is not None else is_held(root)
    if held:
        return Check(
            "lock",
            WARN,
            f"held by {describe_owner(owner)}: other commands wait up to --lock-timeout seconds, then exit 11",
            "wait for it to finish, or pass --lock-timeout SECONDS to the next command",
        )
    return Check(
        "lock",
        WARN,
        f"stale lock file of {describe_owner(owner)}, which no longer holds it: the next command takes it over",
        "nothing to do (or remove it with 'dbsnap unlock')",
    )


def check_journal(ctx: Context) -> Check:
    if not ctx.store.root.is_dir():
        return Check("journal", OK, "no unfinished rollback (no store yet)")
    try:
        journal = ctx.store.read_journal()
    except ValueError as e:
        return Check(
            "journal",
            FAIL,
            f"{ctx.store.journal_path} is unreadable ({e}): an interrupted rollback cannot be recovered from it",
            "restore the state by hand from its safety snapshot; see README 'Rollback guarantees'",
        )
    if journal is None:
        return Check("journal", OK, "no unfinished rollback")
    phase = journal.get("phase", "?")
    what = f"rollback to {journal.get('snapshot', '?')!r} (pid {journal.get('pid', '?')}, since "
    what += f"{journal.get('started', '?')}, phase {phase})"
    if flock_holders(ctx.store.root / LOCK_NAME):
        return Check("journal", WARN, f"{what} is running now", "wait for it to finish")
    outcome = "finishes" if phase in FORWARD_PHASES else "finishes or undoes"
    return Check(
        "journal",
        WARN,
        f"unfinished {what}: the next dbsnap command {outcome} it before anything else",
        "run any dbsnap command (e.g. 'dbsnap list') to recover now",
    )
