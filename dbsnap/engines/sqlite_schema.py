"""SQLite's schema as :mod:`dbsnap.schema` describes it, read with PRAGMAs (index and constraint names left out)."""

from __future__ import annotations

import re
import sqlite3

from ..schema import Column, Schema, Table


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _checks(sql: str) -> list[str]:
    """The CHECK (...) clauses of a CREATE TABLE statement, whitespace normalised, their constraint names dropped."""
    out = []
    for m in re.finditer(r"\bCHECK\s*\(", sql, re.IGNORECASE):
        depth, i = 1, m.end()
        while i < len(sql) and depth:
            depth += {"(": 1, ")": -1}.get(sql[i], 0)
            i += 1
        out.append("CHECK (" + " ".join(sql[m.end() : i - 1].split()) + ")")
    return out


def _index_def(conn: sqlite3.Connection, table: str, name: str, unique: int, origin: str, sql: str | None) -> str:
    if origin == "c" and sql:
        # An index made by CREATE INDEX: its statement with the name taken out (keeps expressions and WHERE).
        body = re.sub(r"^\s*CREATE\s+(UNIQUE\s+)?INDEX\s+(\"(?:[^\"]|\"\")*\"|\S+)\s+ON\s+", "", sql, flags=re.I)
        return ("UNIQUE " if unique else "") + "INDEX ON " + " ".join(body.split())
    cols = [
        f"{r[2]}{' DESC' if r[3] else ''}{'' if r[4] == 'BINARY' else ' COLLATE ' + r[4]}"
        for r in conn.execute(f"PRAGMA index_xinfo({_q(name)})")
        if r[5]
    ]
    kind = {"pk": "PRIMARY KEY", "u": "UNIQUE"}.get(origin, "INDEX")
    return f"{kind} ({', '.join(cols)}) ON {table}"


def describe(path: str) -> Schema:
    """The schema of the SQLite database file at ``path`` (opened read-only)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        schema = Schema(engine="sqlite")
        master = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        ).fetchall()
        sqls = {name: sql for _, name, _, sql in master}
        for kind, name, _tbl, sql in master:
            if kind == "table":
                t = Table()
                for _cid, col, ctype, notnull, default, pk, hidden in conn.execute(f"PRAGMA table_xinfo({_q(name)})"):
                    ident = f"pk{pk}" if pk else ("generated" if hidden in (2, 3) else "")
                    t.columns[col] = Column(type=ctype, nullable=not notnull, default=default, identity=ident)
                fks: dict[int, list] = {}
                for fid, _seq, ref, frm, to, upd, dele, _match in conn.execute(f"PRAGMA foreign_key_list({_q(name)})"):
                    fks.setdefault(fid, []).append((frm, to, ref, upd, dele))
                for parts in fks.values():
                    frm = ", ".join(p[0] for p in parts)
                    to = ", ".join(str(p[1]) for p in parts)
                    ref, upd, dele = parts[0][2:]
                    t.constraints[f"FOREIGN KEY ({frm}) REFERENCES {ref}({to}) ON UPDATE {upd} ON DELETE {dele}"] += 1
                t.constraints.update(_checks(sql or ""))
                for _seq, iname, unique, origin, _partial in conn.execute(f"PRAGMA index_list({_q(name)})"):
                    t.indexes[_index_def(conn, name, iname, unique, origin, sqls.get(iname))] += 1
                schema.tables[name] = t
            elif kind in ("view", "trigger"):
                schema.extras.setdefault(kind, {})[name] = " ".join((sql or "").split())
        return schema
    finally:
        conn.close()
