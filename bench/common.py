"""Shared by the bench modules: paths, sizes, the targets, logging, psql access (PG) and the run's context (Ctx)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "shop"
RESULTS = ROOT / "bench" / "results"
MB = 1024 * 1024  # sizes are binary megabytes, like pg_size_pretty

# Targets of issue 6 (ratios dbsnap / raw tool, same run, same database).
TARGET_SAVE_TIME = 1.10
TARGET_SAVE_SIZE = 1.02
TARGET_ROLLBACK_TIME = 1.25
TARGET_PEAK_MB = 150.0
JOBS = 2  # parallel jobs of the --jobs contenders: one per core of the machines this was written on


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- sizes and formatting -------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 50MB, 1GB)")
    factor = {"": MB, "k": 1024, "m": MB, "g": 1024 * MB, "t": 1024 * 1024 * MB}[m.group(2).lower()]
    return int(float(m.group(1)) * factor)


def size_label(n: int) -> str:
    if n >= 1024 * MB and n % (1024 * MB) == 0:
        return f"{n // (1024 * MB)}GB"
    return f"{n / MB:g}MB" if n % MB == 0 else f"{n / MB:.1f}MB"


def mb(n: float | None) -> str:
    return "—" if n is None else f"{n / MB:.1f}"


# -- PostgreSQL access (psql only: the bench uses the standard library) --------------------------------------


def tool_major(cmd: str) -> int:
    out = subprocess.run([cmd, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(m.group(1)) if m else 0


def find_pg_tool(name: str, server_major: int) -> str:
    """Like dbsnap: the tool on PATH if new enough for the server, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which(name)
    candidates = [on_path] if on_path else []
    versions = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if d.parent.name.isdigit()]
    bins = sorted(versions, key=lambda p: -int(p.parent.name))
    candidates += [str(d / name) for d in bins if (d / name).exists()]
    for c in candidates:
        if tool_major(c) >= server_major:
            return c
    raise BenchError(f"no {name} at least as new as the server ({server_major}) on PATH or in /usr/lib/postgresql")


@dataclass
class PG:
    host: str
    port: str
    user: str
    psql: str = "psql"
    pg_dump: str = "pg_dump"
    pg_restore: str = "pg_restore"
    server_version: str = ""
    server_major: int = 0

    @property
    def env(self) -> dict[str, str]:
        env = clean_env()
        env.update(PGHOST=self.host, PGPORT=self.port, PGUSER=self.user, PGDATABASE="postgres")
        if os.environ.get("PGPASSWORD"):
            env["PGPASSWORD"] = os.environ["PGPASSWORD"]
        return env

    def sql(self, query: str, db: str = "postgres") -> str:
        argv = [self.psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", query]
        out = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        if out.returncode != 0:
            raise BenchError(f"psql on {db}: {out.stderr.strip() or out.returncode}\n  query: {query[:300]}")
        return out.stdout.strip()

    def size(self, db: str) -> int:
        return int(self.sql(f"SELECT pg_database_size({lit(db)})"))

    def databases(self) -> list[str]:
        return self.sql("SELECT datname FROM pg_database").splitlines()

    def create(self, db: str, template: str = "template0") -> None:
        self.sql(f"CREATE DATABASE {ident(db)} TEMPLATE {ident(template)}")

    def drop(self, db: str) -> None:
        force = " WITH (FORCE)" if self.server_major >= 13 else ""
        self.sql(f"DROP DATABASE IF EXISTS {ident(db)}{force}")

    def connect_info(self) -> None:
        self.server_version = self.sql("SHOW server_version").split()[0]
        self.server_major = int(self.sql("SHOW server_version_num")) // 10000
        self.psql = find_pg_tool("psql", 0)
        self.pg_dump = find_pg_tool("pg_dump", self.server_major)
        self.pg_restore = find_pg_tool("pg_restore", self.server_major)


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def clean_env() -> dict[str, str]:
    """The caller's environment without anything that would point dbsnap or Django elsewhere."""
    drop = ("DBSNAP_", "DB_", "PG", "DJANGO_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.pop("DATABASE_URL", None)
    env.pop("SQLITE_PATH", None)
    # Bytecode as users have it (pip compiles installed packages, a project writes __pycache__ on its first run):
    # without it every timed dbsnap run would compile dbsnap and the project's settings from source.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


# -- the run's context ----------------------------------------------------------------------------------------


@dataclass
class Ctx:
    args: argparse.Namespace
    pg: PG
    tmp: Path
    prefix: str
    dbsnap: str
    python: str
    my: object = None  # mysql.MY when the run includes MySQL
    others_venv: Path | None = None  # the bench's environment with django-dbbackup and DSLR (None: --no-others)
    others_versions: dict | None = None

    def db_name(self, label: str, suffix: str = "") -> str:
        # At most 40 characters, so dbsnap's scratch databases (name[:40] + "_dbsnap_new_...") keep the prefix
        # and the cleanup finds them too.
        name = f"{self.prefix}{label.lower()}" + (f"_{suffix}" if suffix else "")
        return name[:40]
