"""The live database kept as a sealed clone and put back, by rename (O(1)): the engine primitives that the
rollback's safety snapshot and branch switching are built on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from conftest import PG, Project, sqlite_fingerprint

from dbsnap.engines import engine_for
from dbsnap.errors import RollbackError
from dbsnap.project.databases import Database


def pg_engine(name: str):
    db = Database(alias="default", kind="postgresql", name=name, host=PG["host"], port=PG["port"], user=PG["user"])
    return engine_for(db, {"PATH": "/usr/bin:/bin"})


def sqlite_engine(path: Path):
    return engine_for(Database(alias="default", kind="sqlite", name=str(path)), {"PATH": "/usr/bin:/bin"})


def databases(prefix: str) -> dict[str, tuple[int, bool]]:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
        rows = c.execute(
            "SELECT datname, oid, datallowconn FROM pg_database WHERE datname LIKE %s", (prefix + "%",)
        ).fetchall()
    return {n: (int(o), a) for n, o, a in rows}


def test_pg_keep_as_clone_and_put_back_are_renames(pg_shop: Project) -> None:
    live = pg_shop.pg_name
    before = pg_shop.fingerprint()
    e = pg_engine(live)
    clone = e.clone_name(pg_shop.store, "kept", "2026-01-01T00:00:00Z")
    oid = databases(live)[live][0]
    other = psycopg.connect(dbname=live, autocommit=True, **PG)  # a session on it is ended, as a rollback does
    assert e.keep_as_clone(clone) == oid
    with pytest.raises(psycopg.OperationalError):
        other.execute("SELECT 1")
    other.close()
    assert databases(live) == {clone: (oid, False)}  # the same database, sealed; the live name is free
    with pytest.raises(RollbackError, match="missing or was replaced"):
        e.put_clone_in_place(clone, oid + 1)
    e.put_clone_in_place(clone, oid)
    assert databases(live) == {live: (oid, True)}
    assert pg_shop.fingerprint() == before


def test_pg_primitives_refuse_and_change_nothing(pg_shop: Project) -> None:
    live = pg_shop.pg_name
    e = pg_engine(live)
    clone = e.clone_name(pg_shop.store, "kept", "2026-01-01T00:00:00Z")
    oid = e.make_clone(clone)
    e.seal_clone(clone)
    state = databases(live)
    with pytest.raises(RollbackError, match="exists; nothing was changed"):
        e.put_clone_in_place(clone, oid)  # the live name is taken
    with pytest.raises(RollbackError, match="that name exists; nothing was changed"):
        e.keep_as_clone(clone)
    assert databases(live) == state


def test_sqlite_keep_as_clone_and_put_back_move_the_file(sqlite_shop: Project, tmp_path: Path) -> None:
    live = sqlite_shop.root / "db.sqlite3"
    before = sqlite_fingerprint(live)
    ino = live.stat().st_ino
    e = sqlite_engine(live)
    kept = sqlite_shop.root / "kept.sqlite3"
    facts = e.keep_as_clone(kept)
    assert not live.exists() and kept.stat().st_ino == ino  # moved by rename: the same file, no copy
    assert facts["bytes"] == kept.stat().st_size
    with pytest.raises(RollbackError, match="was changed"):
        e.put_clone_in_place(kept, "0" * 64)
    sqlite3.connect(live).close()  # something new at the live path: putting back is refused
    with pytest.raises(RollbackError, match="exists; nothing was changed"):
        e.put_clone_in_place(kept, facts["sha256"])
    live.unlink()
    e.put_clone_in_place(kept, facts["sha256"])
    assert not kept.exists() and sqlite_fingerprint(live) == before
