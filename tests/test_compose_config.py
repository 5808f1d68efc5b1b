"""The compose configuration read without a container engine: its errors, info's view of an unused compose file,
and the maintenance-connection error keeping its cause. (Against a real engine: tests/test_docker.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import sqlite_project

from dbsnap.engines.postgresql.engine import PostgreSQLEngine
from dbsnap.errors import ExternalError
from dbsnap.project.databases import Database


def _with_pyproject(tmp_path: Path, text: str):
    p = sqlite_project(tmp_path / "shop")
    (p.root / "pyproject.toml").write_text(text)
    return p


def test_unknown_compose_key_is_one_line_exit_4(tmp_path: Path) -> None:
    p = _with_pyproject(tmp_path, '[tool.dbsnap]\ncompose = { db = "db", wbe = "web" }\n')
    proc = p.dbsnap("info")
    assert proc.returncode == 4
    assert (
        proc.stderr.splitlines()[0]
        == "error: [tool.dbsnap] compose: unknown key 'wbe' (known: command, db, file, python, web)"
    )


def test_compose_configured_without_a_compose_file_is_exit_5(tmp_path: Path) -> None:
    p = _with_pyproject(tmp_path, '[tool.dbsnap]\ncompose = { db = "db", web = "web" }\n')
    proc = p.dbsnap("save", "x")
    assert proc.returncode == 5, proc.stderr
    assert proc.stderr.startswith(f"error: compose file not found in {p.root} (looked for compose.yaml, ")
    assert not p.store.exists() or not any(p.store.glob("x"))


def test_info_shows_an_unused_compose_file_with_the_line_to_add(tmp_path: Path) -> None:
    p = sqlite_project(tmp_path / "shop")
    p.manage("migrate", "-v", "0")
    (p.root / "docker-compose.yml").write_text(
        "services:\n  postgres:\n    image: postgres:16\n  backend:\n    build: .\n    volumes:\n      - ./:/code\n"
    )
    out = p.ok("info").stdout
    assert (
        "compose:   docker-compose.yml found (services: postgres, backend), not used; to run the tools in it: "
        '[tool.dbsnap] compose = { db = "postgres", web = "backend" }'
    ) in out, out
    assert "database default: sqlite" in out  # nothing of it is used


def test_maintenance_connection_error_keeps_its_cause(pg_server) -> None:
    engine = PostgreSQLEngine(Database("default", "postgresql", "app", host="127.0.0.1", port="1", user="u"), {})
    with pytest.raises(ExternalError) as e:
        engine.maintenance()
    message = e.value.message
    assert message.startswith("cannot connect to a maintenance database (postgres or template1) at 127.0.0.1:1 as u: ")
    assert "refused" in message, message
