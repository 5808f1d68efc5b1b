"""Doctor's checks of each database: reachable, the role's privileges, and the client tools dbsnap runs."""

from __future__ import annotations

import os
from pathlib import Path

from ...context import Context
from ...engines import engine_for
from ...errors import DbsnapError
from ...project.databases import Database
from ...project.discovery import Project
from ..save import referenced_clones
from .check import FAIL, OK, WARN, Check, guard
from .mysql import check_mysql

PG_TOOLS = ("pg_dump", "pg_restore", "psql")
TOOL_VARS = {"pg_dump": "DBSNAP_PG_DUMP", "pg_restore": "DBSNAP_PG_RESTORE", "psql": "DBSNAP_PSQL"}


def check_databases(ctx: Context, project: Project) -> list[Check]:
    """Per database: reachable; for PostgreSQL and MySQL also privileges and client tools (and PostgreSQL's
    maintenance connection)."""
    dbs = project.select(ctx.settings.databases)
    if not dbs:
        return [Check("databases", WARN, "DATABASES is empty: there is nothing to snapshot", "configure DATABASES")]
    checks: list[Check] = []
    servers: list[tuple[object, int | None]] = []  # PostgreSQL engines with their server major (None: unreachable)
    for db in dbs:
        name = f"database {db.alias}"
        try:
            engine = engine_for(db, project.env, project.compose)
        except DbsnapError as e:
            checks.append(Check(name, FAIL, e.message, e.hint or "use a PostgreSQL or SQLite database"))
            continue
        if db.kind == "sqlite":
            checks += guard(name, check_sqlite, db)
            continue
        try:
            major, text = engine.server_version()
        except DbsnapError as e:  # the message names host, port and user; the hint is the fix
            checks.append(Check(name, FAIL, e.message, e.hint))
            if db.kind == "postgresql":
                servers.append((engine, None))
            continue
        if db.kind == "mysql":
            checks += check_mysql(engine, text)
            continue
        checks.append(Check(name, OK, f"postgresql {db.name} on {engine.where()}, server {text}"))
        servers.append((engine, major))
        checks += guard(f"{db.alias}: maintenance db", check_pg_maintenance, engine)
        checks += guard(f"{db.alias}: privileges", check_pg_privileges, engine)
        checks += guard(f"{db.alias}: clones", check_pg_clones, ctx, engine)
    checks += _tool_checks(servers)
    return checks


def check_pg_clones(ctx: Context, engine) -> Check:
    """Clones of this database named for this store that no snapshot records (a save killed before it
    committed, by a dbsnap that did not record them yet), with the command that drops each."""
    name = f"{engine.db.alias}: clones"
    stray = [c for c in engine.own_clones(ctx.store.root) if c not in referenced_clones(ctx)]
    if not stray:
        return Check(name, OK, "no clone on the server without a snapshot")
    db = engine.db
    where = f"-h {db.host or 'localhost'} -p {db.port or 5432} -U {db.user or '$USER'}"
    drops = "; ".join(f"psql {where} -d postgres -c 'DROP DATABASE \"{c}\"'" for c in stray)
    return Check(
        name,
        WARN,
        f"{len(stray)} clone(s) on the server that no snapshot of this store records: {', '.join(stray)}",
        f"drop with: {drops}",
    )


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
        # SQLite's own tables (sqlite_sequence, sqlite_stat1) are not counted, as in 'show' and the manifest.
        sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        tables = conn.execute(sql).fetchone()[0]
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
        # The verdict the rollback uses (engines/postgresql/restore.py), so doctor and rollback never disagree.
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
            checks += guard(name, check_pg_tool, engine, tool, major, name)
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
