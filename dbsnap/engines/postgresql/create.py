"""A new database like the live one: its owner, encoding, locale, settings, grants and comment (for the scratch
database a restore or a clone copy is built in)."""

from __future__ import annotations

import contextlib

import psycopg
from psycopg import sql

# GUCs whose values are lists: each element must be quoted separately when copied (as pg_dump does).
_LIST_GUCS = {"search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries"}


def db_props(conn: psycopg.Connection, name: str) -> dict | None:
    """The live database's row of ``pg_database`` with its owner, encoding, tablespace and comment, or None."""
    row = conn.execute(
        "SELECT row_to_json(d)::jsonb || jsonb_build_object("
        " 'owner', pg_get_userbyid(d.datdba), 'encoding_name', pg_encoding_to_char(d.encoding),"
        " 'tablespace', (SELECT spcname FROM pg_tablespace WHERE oid = d.dattablespace),"
        " 'comment', shobj_description(d.oid, 'pg_database')) FROM pg_database d WHERE datname = %s",
        (name,),
    ).fetchone()
    return row[0] if row else None


def create_like(
    conn: psycopg.Connection, p: dict, name: str, *, server_major: int, template: str = "template0"
) -> None:
    """CREATE DATABASE ``name`` with the live database's owner, encoding, locale, settings, grants, comment.

    ``template`` is template0 (then the dump is restored into it) or a clone (a server-side file copy).
    """
    parts = [
        sql.SQL("CREATE DATABASE {} WITH TEMPLATE {} OWNER {} ENCODING {}").format(
            sql.Identifier(name),
            sql.Identifier(template),
            sql.Identifier(p["owner"]),
            sql.Literal(p["encoding_name"]),
        )
    ]
    if template != "template0" and server_major >= 15:
        parts.append(sql.SQL("STRATEGY FILE_COPY"))
    if p.get("datlocprovider") == "i":
        parts.append(
            sql.SQL("LOCALE_PROVIDER icu ICU_LOCALE {}").format(
                sql.Literal(p.get("daticulocale") or p.get("datlocale"))
            )
        )
    parts.append(
        sql.SQL("LC_COLLATE {} LC_CTYPE {} CONNECTION LIMIT {}").format(
            sql.Literal(p["datcollate"]), sql.Literal(p["datctype"]), sql.Literal(int(p["datconnlimit"]))
        )
    )
    if p.get("tablespace") and p["tablespace"] != "pg_default":
        parts.append(sql.SQL("TABLESPACE {}").format(sql.Identifier(p["tablespace"])))
    conn.execute(sql.SQL(" ").join(parts))
    try:
        ident = sql.Identifier(name)
        settings = conn.execute(
            "SELECT pg_get_userbyid(setrole), setrole, setconfig FROM pg_db_role_setting WHERE setdatabase = %s",
            (int(p["oid"]),),
        ).fetchall()
        for role, role_oid, config in settings:
            for item in config or []:
                key, _, value = item.partition("=")
                if key in _LIST_GUCS:
                    vals = [v.strip().strip('"') for v in value.split(",") if v.strip()]
                    val = sql.SQL(", ").join(sql.Literal(v) for v in vals)
                else:
                    val = sql.Literal(value)
                target = sql.SQL("ROLE {} IN DATABASE {}").format(sql.Identifier(role), ident) if role_oid else None
                stmt = sql.SQL("ALTER {} SET {} TO {}").format(
                    target or sql.SQL("DATABASE {}").format(ident), sql.Identifier(key), val
                )
                conn.execute(stmt)
        if p.get("datacl"):
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident))
            grants = conn.execute(
                "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.privilege_type,"
                " a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s",
                (p["datname"],),
            ).fetchall()
            for grantee, priv, grantable in grants:
                conn.execute(
                    sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                        sql.SQL(priv),
                        ident,
                        sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC"),
                        sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL(""),
                    )
                )
        if p.get("comment"):
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(p["comment"])))
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        raise
