"""Doctor's checks of a MySQL/MariaDB database: the dump and client tools against the server, and the
privileges each step needs (scratch schemas for the swap, LOCK TABLES that bounds the dump's start, ending
sessions)."""

from __future__ import annotations

from ...errors import DbsnapError
from .check import FAIL, OK, WARN, Check, guard

# What each step needs on the live schema and on dbsnap's scratch schemas (`<live>_dbsnap_%`).
LIVE_NEEDS = ("SELECT", "LOCK TABLES", "SHOW VIEW", "TRIGGER", "EVENT", "CREATE", "DROP", "ALTER", "CREATE ROUTINE")
SCRATCH_NEEDS = ("CREATE", "DROP", "INSERT", "ALTER", "INDEX", "REFERENCES", "CREATE VIEW", "TRIGGER", "EVENT")


def check_mysql(engine, text: str) -> list[Check]:
    checks = [Check(f"database {engine.db.alias}", OK, f"mysql {engine.db.name} on {engine.where()}, server {text}")]
    checks += guard(f"{engine.db.alias}: privileges", check_privileges, engine)
    for which, label in (("dump", "dump tool"), ("client", "client tool")):
        checks += guard(f"{engine.db.alias}: {label}", check_tool, engine, which, label, text)
    return checks


def check_tool(engine, which: str, label: str, server: str) -> Check:
    name = f"{engine.db.alias}: {label}"
    try:
        cmd, version = engine.tool(which)
    except DbsnapError as e:
        return Check(name, FAIL, e.message, e.hint)
    same = engine.client_is_mariadb(which) == server.startswith("MariaDB")
    detail = f"{version} at {' '.join(cmd)}"
    if not same:
        return Check(
            name,
            WARN,
            f"{detail}: not the server's flavour ({server}); dumps may need options the other flavour lacks",
            "install the server's own client tools (mariadb-client for MariaDB, mysql-client for MySQL)",
        )
    return Check(name, OK, detail)


def check_privileges(engine) -> list[Check]:
    f = engine.privilege_facts()
    user = f["user"]
    out = []
    missing = [p for p in SCRATCH_NEEDS if p not in f["scratch"] and "ALL PRIVILEGES" not in f["scratch"]]
    name = f"{engine.db.alias}: scratch schemas"
    if missing:
        out.append(
            Check(
                name,
                WARN,
                f"role {user} lacks {', '.join(missing)} on dbsnap's scratch schemas: rollback, reset and "
                "verify --deep refuse before changing anything (there is no in-place mode on MySQL)",
                engine.grant_hint(),
            )
        )
    else:
        out.append(Check(name, OK, f"role {user} may create and drop {engine.db.name}_dbsnap_* for the swap restore"))
    missing = [p for p in LIVE_NEEDS if p not in f["live"] and "ALL PRIVILEGES" not in f["live"]]
    name = f"{engine.db.alias}: live schema"
    if missing:
        out.append(
            Check(
                name,
                WARN,
                f"role {user} lacks {', '.join(missing)} on {engine.db.name!r}: save (LOCK TABLES, SHOW VIEW, "
                "TRIGGER, EVENT) or the swap (CREATE, DROP, ALTER, CREATE ROUTINE) fails",
                f"GRANT ALL ON `{engine.db.name}`.* TO {user}",
            )
        )
    else:
        out.append(Check(name, OK, f"role {user} may dump, lock and swap the tables of {engine.db.name!r}"))
    name = f"{engine.db.alias}: definers"
    setuser = {"SUPER", "SET USER", "SET_USER_ID", "ALL PRIVILEGES"} & f["global"]
    if f["definers"] and not setuser:
        out.append(
            Check(
                name,
                WARN,
                f"programs of {engine.db.name!r} are defined by {', '.join(f['definers'])}: the swap recreates them "
                f"with that definer, which role {user} may not do (rollback and reset fail, nothing changed)",
                f"GRANT SET USER ON *.* TO {user} (MySQL 8: SET_USER_ID; older servers: SUPER); MariaDB's dump "
                "tool also needs SELECT ON mysql.proc to read others' routines",
            )
        )
    elif f["definers"]:
        out.append(Check(name, OK, f"role {user} may recreate programs defined by {', '.join(f['definers'])}"))
    else:
        out.append(Check(name, OK, f"role {user} defines every view, trigger, routine and event, or there are none"))
    kill = {"SUPER", "CONNECTION ADMIN", "ALL PRIVILEGES"} & f["global"]
    seen = {"PROCESS", "ALL PRIVILEGES"} & f["global"]
    name = f"{engine.db.alias}: terminate sessions"
    if kill and seen:
        out.append(Check(name, OK, f"role {user} sees and may end other roles' sessions ({', '.join(sorted(kill))})"))
    else:
        out.append(
            Check(
                name,
                WARN,
                f"role {user} can see or end only its own sessions: rollback and reset fail while other roles are "
                f"connected to {engine.db.name!r}",
                f"GRANT PROCESS, CONNECTION ADMIN ON *.* TO {user} (MariaDB: PROCESS, CONNECTION ADMIN; older "
                "MySQL: SUPER), or stop other clients first",
            )
        )
    return out
