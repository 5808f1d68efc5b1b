#!/usr/bin/env python3
"""Benchmark dbsnap against the raw tools it wraps (issue 6, "The benchmark").

    python bench/run.py --size 250MB
    python bench/run.py --size 50MB,250MB,1GB --repeat 3
    python bench/run.py --quick                      # ~20 MB smoke run

For each size it builds a PostgreSQL database (the example project, migrated and seeded, plus a table of random
text) and an SQLite database holding the same project data, then times the contenders in alternation (each round
starts with the next contender), ``--repeat`` times each, and reports the median wall time, the peak memory of
the whole process tree and the output size. It prints a Markdown table and writes the same data as JSON (and the
table as .md next to it). Databases and temporary folders are removed at the end, also after a failure or Ctrl-C,
unless ``--keep``.

Standard library only: memory is sampled with psutil when it happens to be importable, else by polling VmRSS of
the process and all its descendants in /proc every 20 ms. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

try:  # optional: only used when already installed, never required
    import psutil  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the normal case
    psutil = None

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "shop"
RESULTS = ROOT / "bench" / "results"
MB = 1024 * 1024  # sizes are binary megabytes, like pg_size_pretty
TIMES = "\u00d7"  # the multiplication sign of the ratios
ENGINE = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}

# Targets of issue 6 (ratios dbsnap / raw tool, same run, same database).
TARGET_SAVE_TIME = 1.10
TARGET_SAVE_SIZE = 1.02
TARGET_ROLLBACK_TIME = 1.25
TARGET_PEAK_MB = 150.0
JOBS = 2  # parallel jobs of the --jobs contenders: one per core of the machines this was written on

SEED_CHUNK_MAX = 1000  # largest `seed --scale` per call: bounds the seeding process's memory (~60 MB of rows)
SEED_BYTES_PER_SCALE = 60_000  # first guess on PostgreSQL 15; refined after every seed call
BLOB_ROW_BYTES = 1_050  # first guess of one bench_blob row on disk; refined after every batch
BLOB_BATCH_ROWS = 100_000
SAMPLE_INTERVAL = 0.02

# 128 words; a body is 26 groups of "word word word <16 hex digits>", about 930 characters (below the TOAST
# threshold, so pg_database_size counts the text as it is). Dumped and zstd-compressed, it shrinks about 2.3x:
# random hex barely compresses, the words do, like real text columns next to hashes, tokens and ids.
_WORDS_TEXT = (
    "time year people way day man thing woman life child world school state family student group country problem "
    "hand part place case week company system program question work government number night point home water room "
    "mother area money story fact month lot right study book eye job word business issue side kind head house "
    "service friend father power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war history party result "
    "change morning reason research girl guy moment air teacher force education order shipped paid pending "
    "customer product price quantity invoice address street delivery refund basket discount coupon review rating "
    "parcel warehouse supplier stock return ticket label manager account email"
)
WORDS = _WORDS_TEXT.split()
assert len(WORDS) == 128, len(WORDS)
BLOB_GROUPS = 26


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


def ratio_text(r: float | None, target: float | None = None, digits: int = 2) -> str:
    if r is None:
        return "—"
    text = f"{r:.{digits}f}{TIMES}"
    if target is not None:
        text += f" (≤ {target:.2f} {'✅' if r <= target else '❌'})"
    return text


# -- peak memory of a process tree ----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return out


def _children_by_scan() -> dict[int, list[int]]:
    """ppid -> pids of every process, for kernels without /proc/<pid>/task/<tid>/children."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(name))
    return tree


HAS_CHILDREN_FILE = os.path.exists(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/children")


def process_tree(root: int) -> list[int]:
    if psutil is not None:
        try:
            p = psutil.Process(root)
            return [root, *(c.pid for c in p.children(recursive=True))]
        except psutil.Error:
            return []
    scan = None if HAS_CHILDREN_FILE else _children_by_scan()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(_children(pid) if scan is None else scan.get(pid, []))
    return out


def rss_bytes(pid: int) -> int:
    if psutil is not None:
        try:
            return psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0  # gone, or a zombie (no VmRSS line)


SAMPLER = "psutil" if psutil is not None else "/proc VmRSS" + ("" if HAS_CHILDREN_FILE else " (full /proc scan)")


class TreeSampler(threading.Thread):
    """Sum of RSS over a process and all its descendants, sampled every 20 ms; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="bench-rss", daemon=True)
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self.max_procs = 0
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            pids = process_tree(self.pid)
            total = sum(rss_bytes(p) for p in pids)
            self.peak = max(self.peak, total)
            self.max_procs = max(self.max_procs, len(pids))
            self.samples += 1
            if self._done.wait(SAMPLE_INTERVAL):
                return

    def finish(self) -> None:
        self._done.set()
        self.join()


@dataclass
class Run:
    seconds: float
    peak_rss: int  # bytes, whole process tree
    output_bytes: int | None
    samples: int
    max_processes: int
    cpu_seconds: float  # user + system time of the process and the descendants it waited for (not the server's)
    load_before: float

    def as_dict(self) -> dict:
        return {
            "seconds": round(self.seconds, 4),
            "peak_rss_bytes": self.peak_rss,
            "output_bytes": self.output_bytes,
            "rss_samples": self.samples,
            "max_processes": self.max_processes,
            "cpu_seconds": round(self.cpu_seconds, 4),
            "loadavg_1min_before": round(self.load_before, 2),
        }


def _stop_tree(proc: subprocess.Popen, pids: list[int]) -> None:
    """After an interrupt: let the child clean up (it got SIGINT from the terminal too), then kill what is left."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            pid, _ = os.waitpid(proc.pid, os.WNOHANG)
            if pid == 0:
                time.sleep(0.1)
                continue
        break
    else:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(proc.pid, 0)
    proc.returncode = -1
    for pid in pids:
        if pid != proc.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def measure(argv: list[str], env: dict[str, str], cwd: Path, logfile: Path) -> tuple[Run, int]:
    """Run ``argv`` once: wall time, peak RSS of its process tree; returns (run, exit code)."""
    load = os.getloadavg()[0]
    with open(logfile, "ab") as out:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            pids = process_tree(proc.pid)
            sampler.finish()
            _stop_tree(proc, pids)
            raise
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.finish()
    # usage.ru_maxrss is not used: a forked child starts with its parent's high-water mark (this script's).
    cpu = usage.ru_utime + usage.ru_stime
    run = Run(seconds, sampler.peak, None, sampler.samples, sampler.max_procs, cpu, load)
    return run, proc.returncode


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


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


def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


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


def compile_bytecode(python: str, project: Path) -> None:
    """Write the bytecode of dbsnap and of the project copy before anything is timed (see ``clean_env``)."""
    code = (
        "import compileall, os, sys, dbsnap\n"
        "dirs = sys.argv[1:] + [os.path.dirname(dbsnap.__file__)]\n"
        "sys.exit(not all(compileall.compile_dir(d, quiet=1) for d in dirs))"
    )
    subprocess.run([python, "-c", code, str(project)], env=clean_env(), check=True, capture_output=True)


# -- data ------------------------------------------------------------------------------------------------------


def blob_expr_pg() -> str:
    word = f"(v.w)[1 + floor(random() * {len(WORDS)})::int]"
    hexa = "substr(md5(random()::text), 1, 16)"
    return " || ' ' || ".join([word, word, word, hexa] * BLOB_GROUPS)


def blob_expr_sqlite() -> str:
    # Words padded to 16 characters in one string, picked by offset; 16 hex digits from randomblob.
    word = f"rtrim(substr(:vocab, 1 + (abs(random()) % {len(WORDS)}) * 16, 16))"
    hexa = "lower(hex(randomblob(8)))"
    return " || ' ' || ".join([word, word, word, hexa] * BLOB_GROUPS)


VOCAB_PADDED = "".join(w.ljust(16) for w in WORDS)
PG_WORDS_ARRAY = "ARRAY[" + ",".join(lit(w) for w in WORDS) + "]::text[]"


@dataclass
class Built:
    """One database built for a size: what is in it."""

    engine: str
    name: str  # database name (PostgreSQL) or file path (SQLite)
    project: Path
    env: dict[str, str]
    bytes: int = 0
    seed_scales: list[int] = field(default_factory=list)
    blob_rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "engine": self.engine,
            "name": self.name,
            "bytes": self.bytes,
            "mb": round(self.bytes / MB, 1),
            "seed_scales": self.seed_scales,
            "seed_scale_total": sum(self.seed_scales),
            "blob_rows": self.blob_rows,
            "row_counts": self.counts,
            "build_seconds": round(self.seconds, 1),
        }


COUNT_TABLES = ("accounts_user", "catalog_product", "orders_order", "orders_orderitem", "bench_blob")
COUNT_SQL = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in COUNT_TABLES)


def pg_counts(pg: PG, db: str) -> dict[str, int]:
    return dict(zip(COUNT_TABLES, map(int, pg.sql(COUNT_SQL, db).split("|")), strict=True))


def sqlite_counts(path: str) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(zip(COUNT_TABLES, conn.execute(COUNT_SQL).fetchone(), strict=True))
    finally:
        conn.close()


def copy_project(dest: Path) -> None:
    shutil.copytree(
        EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.sqlite3*", "snapshots", ".env")
    )


def manage(b: Built, python: str, *args: str) -> None:
    out = subprocess.run([python, "manage.py", *args], cwd=b.project, env=b.env, capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} ({b.engine}) failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")


def build_pg(ctx: Ctx, label: str, target: int) -> Built:
    t0 = time.monotonic()
    db = ctx.db_name(label)
    ctx.pg.create(db)
    b = Built("postgresql", db, ctx.tmp / label / "pg" / "shop", {})
    copy_project(b.project)
    b.env = {**ctx.pg.env, "DB_NAME": db, "DB_HOST": ctx.pg.host, "DB_PORT": ctx.pg.port, "DB_USER": ctx.pg.user}
    if os.environ.get("PGPASSWORD"):
        b.env["DB_PASSWORD"] = os.environ["PGPASSWORD"]
    log(f"{label}: PostgreSQL database {db}: migrate")
    manage(b, ctx.python, "migrate", "-v0")
    size = ctx.pg.size(db)
    seed_target = int(target * ctx.args.seed_share)
    per_scale = float(SEED_BYTES_PER_SCALE)
    while seed_target - size > per_scale:
        scale = max(1, min(SEED_CHUNK_MAX, math.ceil((seed_target - size) / per_scale)))
        log(f"{label}: seed --scale {scale} ({size / MB:.1f} MB of {seed_target / MB:.0f} MB for the project data)")
        manage(b, ctx.python, "seed", "--scale", str(scale))
        b.seed_scales.append(scale)
        new = ctx.pg.size(db)
        per_scale = max((new - size) / scale, 1000.0)
        size = new
    ctx.pg.sql(
        "CREATE TABLE bench_blob (id serial PRIMARY KEY, body text NOT NULL); "
        "ALTER TABLE bench_blob SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)",
        db,
    )
    size = ctx.pg.size(db)
    per_row = float(BLOB_ROW_BYTES)
    expr = blob_expr_pg()
    while target - size > 100 * per_row:
        rows = max(100, min(BLOB_BATCH_ROWS, int((target - size) / per_row)))
        log(f"{label}: bench_blob += {rows} rows ({size / MB:.1f} MB of {target / MB:.0f} MB)")
        ctx.pg.sql(
            f"INSERT INTO bench_blob (body) SELECT {expr} FROM (SELECT {PG_WORDS_ARRAY} AS w) v, "
            f"generate_series(1, {rows})",
            db,
        )
        b.blob_rows += rows
        new = ctx.pg.size(db)
        per_row = max((new - size) / rows, 100.0)
        size = new
    # Background autovacuum on freshly restored copies would add noise to the next timing: off for the bench's
    # tables (a table option, so dumps and restores carry it); the build vacuums and checkpoints once instead.
    tables = ctx.pg.sql(
        "SELECT string_agg(quote_ident(relname), ',') FROM pg_class "
        "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace",
        db,
    ).split(",")
    ctx.pg.sql(
        "; ".join(
            f"ALTER TABLE {t} SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)" for t in tables
        ),
        db,
    )
    log(f"{label}: VACUUM ANALYZE + CHECKPOINT")
    ctx.pg.sql("VACUUM ANALYZE", db)
    with contextlib.suppress(BenchError):  # CHECKPOINT needs superuser or pg_checkpoint
        ctx.pg.sql("CHECKPOINT")
    b.bytes = ctx.pg.size(db)
    b.counts = pg_counts(ctx.pg, db)
    b.seconds = time.monotonic() - t0
    log(f"{label}: PostgreSQL {b.bytes / MB:.1f} MB (seed scales {b.seed_scales}, {b.blob_rows} blob rows)")
    return b


def build_sqlite(ctx: Ctx, label: str, pg_built: Built | None, target: int) -> Built:
    """The same project data as the PostgreSQL database (same seed calls, same number of blob rows)."""
    t0 = time.monotonic()
    project = ctx.tmp / label / "sqlite" / "shop"
    b = Built("sqlite", str(project / "db.sqlite3"), project, {**clean_env()})
    copy_project(project)
    log(f"{label}: SQLite database {b.name}: migrate")
    manage(b, ctx.python, "migrate", "-v0")
    if pg_built is not None:
        scales, blob_rows = pg_built.seed_scales, pg_built.blob_rows
    else:  # no PostgreSQL in this run: rough guess for the same share of project data
        total = max(1, int(target * ctx.args.seed_share / SEED_BYTES_PER_SCALE))
        scales = [min(SEED_CHUNK_MAX, total - i) for i in range(0, total, SEED_CHUNK_MAX)]
        blob_rows = int(target * (1 - ctx.args.seed_share) / BLOB_ROW_BYTES)
    for scale in scales:
        log(f"{label}: SQLite seed --scale {scale}")
        manage(b, ctx.python, "seed", "--scale", str(scale))
        b.seed_scales.append(scale)
    conn = sqlite3.connect(b.name, isolation_level=None)
    try:
        conn.execute("CREATE TABLE bench_blob (id integer PRIMARY KEY AUTOINCREMENT, body text NOT NULL)")
        expr = blob_expr_sqlite()
        done = 0
        while done < blob_rows:
            rows = min(BLOB_BATCH_ROWS, blob_rows - done)
            log(f"{label}: SQLite bench_blob += {rows} rows")
            conn.execute(
                f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
                f"INSERT INTO bench_blob (body) SELECT {expr} FROM n",
                {"vocab": VOCAB_PADDED},
            )
            done += rows
        b.blob_rows = done
    finally:
        conn.close()
    b.bytes = os.path.getsize(b.name)
    b.counts = sqlite_counts(b.name)
    b.seconds = time.monotonic() - t0
    log(f"{label}: SQLite {b.bytes / MB:.1f} MB")
    return b


# -- contenders --------------------------------------------------------------------------------------------------


@dataclass
class Contender:
    """One command to time. ``before``/``after`` run untimed around every run; ``after`` returns the output size."""

    key: str
    label: str
    kind: str  # "dbsnap" or "raw"
    argv: Callable[[int], list[str]]
    env: dict[str, str]
    cwd: Path
    before: Callable[[int], None] = lambda i: None
    after: Callable[[int], int | None] = lambda i: None
    runs: list[Run] = field(default_factory=list)

    def command(self) -> str:
        argv = self.argv(0)
        return argv[-1] if argv[:3] == ["bash", "-o", "pipefail"] else shlex.join(argv)


@dataclass
class Group:
    """Contenders timed against each other, after an untimed ``prepare``; placeholders are rows without numbers."""

    engine: str
    name: str
    contenders: list[Contender]
    prepare: Callable[[], None] | None = None
    placeholders: list[dict] = field(default_factory=list)


def bash(script: str) -> list[str]:
    return ["bash", "-o", "pipefail", "-c", script]


def q(x: str | Path) -> str:
    return shlex.quote(str(x))


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_group(ctx: Ctx, label: str, group: str, contenders: list[Contender]) -> None:
    """Alternate the contenders, ``repeat`` rounds; round r starts with contender r (mod n) to spread order bias."""
    n = len(contenders)
    for r in range(ctx.args.repeat):
        for j in range(n):
            c = contenders[(r + j) % n]
            i = len(c.runs)
            c.before(i)
            logfile = ctx.tmp / "logs" / f"{label}-{c.key}.log"
            run, rc = measure(c.argv(i), c.env, c.cwd, logfile)
            if rc != 0:
                raise BenchError(f"{label} {group}: {c.label} exited with {rc}:\n{tail(logfile)}")
            run.output_bytes = c.after(i)
            c.runs.append(run)
            log(
                f"{label} {group} #{i + 1} {c.label}: {run.seconds:.2f} s, peak {run.peak_rss / MB:.1f} MB, "
                f"output {mb(run.output_bytes)} MB (load {run.load_before:.1f})"
            )


def dbsnap_argv(ctx: Ctx, b: Built, store: Path, *args: str) -> list[str]:
    return [ctx.dbsnap, "--project", str(b.project), "--store", str(store), *args]


def run_quiet(argv: list[str], env: dict[str, str], cwd: Path, what: str) -> None:
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchError(f"{what} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")


def pg_groups(ctx: Ctx, label: str, b: Built) -> list[Group]:
    pg, db = ctx.pg, b.name
    work = ctx.tmp / label / "pg"
    store = work / "store"
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    env = b.env

    def dbsnap_saved(i: int) -> int:
        snap = store / f"s{i}"
        size = folder_bytes(snap)
        run_quiet(dbsnap_argv(ctx, b, store, "-q", "delete", f"s{i}", "--yes"), env, b.project, "dbsnap delete")
        return size

    def file_size(path: Path) -> Callable[[int], int]:
        def after(i: int) -> int:
            size = path.stat().st_size
            path.unlink()
            return size

        return after

    zst, fc, fd = out / "raw.dump.zst", out / "raw.dump", out / "raw.dir"
    spool = out / "spool.dump"

    def dir_size(path: Path) -> Callable[[int], int]:
        def after(i: int) -> int:
            size = folder_bytes(path)
            shutil.rmtree(path)
            return size

        return after

    save = [
        Contender(
            "pg-save-dbsnap",
            "dbsnap save",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "save", f"s{i}"),
            env,
            b.project,
            after=dbsnap_saved,
        ),
        Contender(
            "pg-save-zstd",
            "pg_dump -Fc -Z0 | zstd -3 -T0",
            "raw",
            lambda i: bash(f"{q(pg.pg_dump)} -Fc -Z0 {q(db)} | zstd -3 -T0 -q > {q(zst)}"),
            pg.env,
            work,
            after=file_size(zst),
        ),
        Contender(
            "pg-save-fc",
            "pg_dump -Fc",
            "raw",
            lambda i: bash(f"{q(pg.pg_dump)} -Fc {q(db)} > {q(fc)}"),
            pg.env,
            work,
            after=file_size(fc),
        ),
        # Would a parallel, directory-format dump beat the one stream? pg_dump 15 compresses a directory only with
        # gzip, so each file is zstd-compressed afterwards, as dbsnap would have to.
        Contender(
            "pg-save-dir",
            f"pg_dump -Fd -j {JOBS} -Z0 + zstd per file",
            "raw",
            lambda i: bash(
                f"{q(pg.pg_dump)} -Fd -j {JOBS} -Z0 -f {q(fd)} {q(db)} && zstd -3 -T0 -q --rm {q(fd)}/*.dat"
            ),
            pg.env,
            work,
            after=dir_size(fd),
        ),
    ]

    # Rollback: from one snapshot / one file made once (untimed).
    base_zst = out / "base.dump.zst"
    fresh = ctx.db_name(label, "fresh")
    expected = b.counts

    def prepare_rollback() -> None:
        log(f"{label}: preparing the rollback sources (dbsnap save base, pg_dump -Fc -Z0 | zstd)")
        run_quiet(dbsnap_argv(ctx, b, store, "-q", "save", "base"), env, b.project, "dbsnap save base")
        run_quiet(
            bash(f"{q(pg.pg_dump)} -Fc -Z0 {q(db)} | zstd -3 -T0 -q > {q(base_zst)}"), pg.env, work, "pg_dump base"
        )

    def check(dbname: str) -> int:
        got = pg_counts(pg, dbname)
        if got != expected:
            raise BenchError(f"{label}: {dbname} after restore has {got}, expected {expected}")
        return pg.size(dbname)

    def fresh_after(i: int) -> int:
        size = check(fresh)
        pg.drop(fresh)
        return size

    rollback = [
        Contender(
            "pg-rollback-dbsnap",
            "dbsnap rollback (dump, --jobs auto)",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "rollback", "base", "--yes", "--no-safety-snapshot"),
            env,
            b.project,
            after=lambda i: check(db),
        ),
        Contender(
            "pg-rollback-dbsnap-j1",
            "dbsnap rollback --jobs 1 (one stream)",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "rollback", "base", "--yes", "--no-safety-snapshot", "--jobs", "1"),
            env,
            b.project,
            after=lambda i: check(db),
        ),
        Contender(
            "pg-rollback-dbsnap-jn",
            f"dbsnap rollback --jobs {JOBS}",
            "dbsnap",
            lambda i: dbsnap_argv(
                ctx, b, store, "rollback", "base", "--yes", "--no-safety-snapshot", "--jobs", str(JOBS)
            ),
            env,
            b.project,
            after=lambda i: check(db),
        ),
        Contender(
            "pg-rollback-raw",
            "zstd -dc | pg_restore -d fresh_db",
            "raw",
            lambda i: bash(f"zstd -dc -q {q(base_zst)} | {q(pg.pg_restore)} -d {q(fresh)}"),
            pg.env,
            work,
            before=lambda i: pg.create(fresh),
            after=fresh_after,
        ),
        Contender(
            "pg-rollback-raw-jn",
            f"zstd -dc > file && pg_restore -j {JOBS} -d fresh_db file",
            "raw",
            lambda i: bash(
                f"zstd -dc -q {q(base_zst)} > {q(spool)} && {q(pg.pg_restore)} -j {JOBS} -d {q(fresh)} {q(spool)}"
                f" && rm -f {q(spool)}"
            ),
            pg.env,
            work,
            before=lambda i: pg.create(fresh),
            after=fresh_after,
        ),
    ]
    copy = ctx.db_name(label, "tpl")
    strategy = " STRATEGY FILE_COPY" if pg.server_major >= 15 else ""
    clone_sql = f"CREATE DATABASE {ident(copy)} TEMPLATE {ident(db)}{strategy}"
    clone = [
        Contender(
            "pg-clone-template",
            f"CREATE DATABASE … TEMPLATE{strategy}",
            "raw",
            lambda i: [pg.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", clone_sql],
            pg.env,
            work,
            after=lambda i: _size_then_drop(pg, copy),
        ),
    ]

    def prepare_clone() -> None:
        log(f"{label}: preparing the clone source (dbsnap save cbase --clone)")
        run_quiet(dbsnap_argv(ctx, b, store, "-q", "save", "cbase", "--clone"), env, b.project, "dbsnap save --clone")

    clone.insert(
        0,
        Contender(
            "pg-clone-dbsnap",
            "dbsnap rollback (clone)",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "rollback", "cbase", "--yes", "--no-safety-snapshot"),
            env,
            b.project,
            after=lambda i: check(db),
        ),
    )
    return [
        Group("postgresql", "save", save),
        Group("postgresql", "rollback", rollback, prepare_rollback),
        Group("postgresql", "rollback (clone)", clone, prepare_clone),
    ]


def _size_then_drop(pg: PG, db: str) -> int:
    size = pg.size(db)
    pg.drop(db)
    return size


def sqlite_groups(ctx: Ctx, label: str, b: Built) -> list[Group]:
    work = ctx.tmp / label / "sqlite"
    store = work / "store"
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    env, live = b.env, Path(b.name)
    raw, zst = out / "raw.sqlite3", out / "raw.sqlite3.zst"
    dot_backup = f".backup '{raw}'"
    base_zst = out / "base.sqlite3.zst"

    def dbsnap_saved(i: int) -> int:
        size = folder_bytes(store / f"s{i}")
        run_quiet(dbsnap_argv(ctx, b, store, "-q", "delete", f"s{i}", "--yes"), env, b.project, "dbsnap delete")
        return size

    def zst_size(i: int) -> int:
        size = zst.stat().st_size
        zst.unlink()
        return size

    backup = f"sqlite3 {q(live)} {q(dot_backup)} && zstd -3 -T0 -q --rm {q(raw)} -o {q(zst)}"
    save = [
        Contender(
            "sqlite-save-dbsnap",
            "dbsnap save",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "save", f"s{i}"),
            env,
            b.project,
            after=dbsnap_saved,
        ),
        Contender(
            "sqlite-save-raw",
            'sqlite3 ".backup" + zstd -3 -T0',
            "raw",
            lambda i: bash(backup),
            env,
            work,
            after=zst_size,
        ),
    ]

    def prepare_rollback() -> None:
        log(f"{label}: preparing the SQLite rollback sources")
        run_quiet(dbsnap_argv(ctx, b, store, "-q", "save", "base"), env, b.project, "dbsnap save base")
        run_quiet(
            bash(f"sqlite3 {q(live)} {q(dot_backup)} && zstd -3 -T0 -q --rm {q(raw)} -o {q(base_zst)}"),
            env,
            work,
            "sqlite3 .backup base",
        )

    def check(i: int) -> int:
        got = sqlite_counts(str(live))
        if got != b.counts:
            raise BenchError(f"{label}: SQLite after restore has {got}, expected {b.counts}")
        return live.stat().st_size

    new = live.with_name(live.name + ".new")
    rollback = [
        Contender(
            "sqlite-rollback-dbsnap",
            "dbsnap rollback",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "rollback", "base", "--yes", "--no-safety-snapshot"),
            env,
            b.project,
            after=check,
        ),
        Contender(
            "sqlite-rollback-raw",
            "zstd -dc > db.new && mv db.new db",
            "raw",
            lambda i: bash(f"zstd -dc -q {q(base_zst)} > {q(new)} && mv -f {q(new)} {q(live)}"),
            env,
            work,
            after=check,
        ),
    ]
    return [Group("sqlite", "save", save), Group("sqlite", "rollback", rollback, prepare_rollback)]


# -- the run -------------------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    args: argparse.Namespace
    pg: PG
    tmp: Path
    prefix: str
    dbsnap: str
    python: str

    def db_name(self, label: str, suffix: str = "") -> str:
        # At most 40 characters, so dbsnap's scratch databases (name[:40] + "_dbsnap_new_...") keep the prefix
        # and the cleanup finds them too.
        name = f"{self.prefix}{label.lower()}" + (f"_{suffix}" if suffix else "")
        return name[:40]


def row(c: Contender, group: str, engine: str) -> dict:
    secs = [r.seconds for r in c.runs]
    outs = [r.output_bytes for r in c.runs if r.output_bytes is not None]
    return {
        "key": c.key,
        "engine": engine,
        "operation": group,
        "contender": c.label,
        "kind": c.kind,
        "command": c.command(),
        "status": "ok",
        "median_seconds": round(statistics.median(secs), 4),
        "min_seconds": round(min(secs), 4),
        "max_seconds": round(max(secs), 4),
        "median_cpu_seconds": round(statistics.median(r.cpu_seconds for r in c.runs), 4),
        "peak_rss_bytes": max(r.peak_rss for r in c.runs),
        "output_bytes": int(statistics.median(outs)) if outs else None,
        "runs": [r.as_dict() for r in c.runs],
    }


def placeholder(key: str, engine: str, group: str, label: str, why: str) -> dict:
    return {
        "key": key,
        "engine": engine,
        "operation": group,
        "contender": label,
        "kind": "dbsnap",
        "command": None,
        "status": "placeholder",
        "note": why,
        "median_seconds": None,
        "peak_rss_bytes": None,
        "output_bytes": None,
        "runs": [],
    }


def pairs_for(rows: dict[str, dict]) -> list[dict]:
    """dbsnap / raw tool ratios, with the issue's targets where there is one."""
    spec = [
        ("pg-save-dbsnap", "pg-save-zstd", TARGET_SAVE_TIME, TARGET_SAVE_SIZE),
        ("pg-save-dbsnap", "pg-save-fc", None, None),
        ("pg-save-dbsnap", "pg-save-dir", None, TARGET_SAVE_SIZE),
        ("pg-rollback-dbsnap", "pg-rollback-raw", TARGET_ROLLBACK_TIME, None),
        ("pg-rollback-dbsnap", "pg-rollback-raw-jn", None, None),
        ("pg-clone-dbsnap", "pg-clone-template", 1.20, None),
        ("sqlite-save-dbsnap", "sqlite-save-raw", None, None),
        ("sqlite-rollback-dbsnap", "sqlite-rollback-raw", None, None),
    ]
    out = []
    for a, b, t_time, t_size in spec:
        if a not in rows or b not in rows:
            continue
        ra, rb = rows[a], rows[b]
        ok = ra["status"] == "ok" and rb["status"] == "ok"
        time_ratio = ra["median_seconds"] / rb["median_seconds"] if ok and rb["median_seconds"] else None
        size_ratio = None
        if ok and ra["operation"] == "save" and ra["output_bytes"] and rb["output_bytes"]:
            size_ratio = ra["output_bytes"] / rb["output_bytes"]
        out.append(
            {
                "dbsnap": a,
                "raw": b,
                "time_ratio": None if time_ratio is None else round(time_ratio, 4),
                "time_target": t_time,
                "time_ok": None if time_ratio is None or t_time is None else time_ratio <= t_time,
                "size_ratio": None if size_ratio is None else round(size_ratio, 5),
                "size_target": t_size,
                "size_ok": None if size_ratio is None or t_size is None else size_ratio <= t_size,
            }
        )
    return out


def bench_size(ctx: Ctx, target: int) -> dict:
    label = size_label(target)
    log(f"=== {label}: building")
    result: dict = {"label": label, "target_bytes": target, "built": {}, "rows": []}
    groups: list[Group] = []
    built: list[Built] = []
    pg_built = None
    if "pg" in ctx.args.engines:
        pg_built = build_pg(ctx, label, target)
        result["built"]["postgresql"] = pg_built.as_dict()
        groups += pg_groups(ctx, label, pg_built)
        built.append(pg_built)
    if "sqlite" in ctx.args.engines:
        sq = build_sqlite(ctx, label, pg_built, target)
        result["built"]["sqlite"] = sq.as_dict()
        groups += sqlite_groups(ctx, label, sq)
        built.append(sq)
    for b in built:
        compile_bytecode(ctx.python, b.project)
    for g in groups:
        if g.prepare:
            g.prepare()
        log(
            f"=== {label}: {g.engine} {g.name}: {', '.join(c.label for c in g.contenders)}, {ctx.args.repeat} runs each"
        )
        run_group(ctx, f"{label}-{g.engine}", g.name, g.contenders)
        result["rows"] += g.placeholders + [row(c, g.name, g.engine) for c in g.contenders]
    result["pairs"] = pairs_for({r["key"]: r for r in result["rows"]})
    return result


def machine_info(ctx: Ctx) -> dict:
    mem = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "dbsnap"], capture_output=True)
    zstd_lib = subprocess.run(
        [ctx.python, "-c", "import zstandard as z; print(z.__version__, '.'.join(map(str, z.ZSTD_VERSION)))"],
        capture_output=True,
        text=True,
    ).stdout.split()
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "mem_total_bytes": mem,
        "kernel": platform.release(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "postgresql_server": ctx.pg.server_version if "pg" in ctx.args.engines else None,
        "pg_dump": first_line([ctx.pg.pg_dump, "--version"]) if "pg" in ctx.args.engines else None,
        "pg_restore": first_line([ctx.pg.pg_restore, "--version"]) if "pg" in ctx.args.engines else None,
        "zstd": "zstd " + re.sub(r".*\b(v[\d.]+).*", r"\1", first_line(["zstd", "--version"])),
        "sqlite3": first_line(["sqlite3", "--version"]).split(" 20")[0],
        "python": platform.python_version(),
        "python_zstandard": " / libzstd ".join(zstd_lib) if zstd_lib else "?",
        "dbsnap": first_line([ctx.dbsnap, "--version"]),
        "dbsnap_commit": (commit.stdout.strip() or "?") + (" (dbsnap/ modified)" if dirty.stdout.strip() else ""),
        "repeat": ctx.args.repeat,
        "seed_share": ctx.args.seed_share,
        "rss_sampler": SAMPLER,
    }


def render(meta: dict, sizes: list[dict]) -> str:
    """The Markdown report: a header, one table for all sizes, then the targets."""
    gib = meta["mem_total_bytes"] / (1024 * MB)
    lines = [
        f"## dbsnap benchmark, {meta['date']}",
        "",
        f"- machine: `{meta['host']}`, {meta['nproc']} CPUs ({meta['cpu'] or '?'}), {gib:.1f} GiB RAM, "
        f"Linux {meta['kernel']}; load average at start {meta['loadavg_start'][0]}, at end {meta['loadavg_end'][0]}",
        f"- PostgreSQL server {meta['postgresql_server'] or '—'}; {meta['pg_dump'] or ''}; {meta['zstd']}; "
        f"sqlite3 {meta['sqlite3']}",
        f"- {meta['dbsnap']} at {meta['dbsnap_commit']}; Python {meta['python']}, zstandard {meta['python_zstandard']}",
        f"- {meta['repeat']} runs per contender, alternated; median wall time; peak RSS = max over runs of the "
        f"whole process tree ({meta['rss_sampler']}, every {SAMPLE_INTERVAL * 1000:.0f} ms); MB = MiB",
    ]
    for s in sizes:
        parts = []
        for engine, b in s["built"].items():
            parts.append(
                f"{ENGINE[engine]} {b['mb']} MB (seed scale {b['seed_scale_total']} + {b['blob_rows']} bench_blob rows)"
            )
        lines.append(f"- {s['label']}: " + "; ".join(parts))
    lines += [
        "",
        "| size | engine | operation | contender | median s | runs s | CPU s | peak RSS MB | output MB "
        "| dbsnap ÷ this: time | dbsnap ÷ this: size |",
        "|---|---|---|---|--:|---|--:|--:|--:|---|---|",
    ]
    for s in sizes:
        by_raw = {p["raw"]: p for p in s["pairs"]}
        for r in s["rows"]:
            if r["status"] != "ok":
                lines.append(
                    f"| {s['label']} | {ENGINE[r['engine']]} | {r['operation']} | **{r['contender']}** "
                    f"| *placeholder* | *{r['note']}* | — | — | — | | |"
                )
                continue
            name = f"**{r['contender']}**" if r["kind"] == "dbsnap" else f"`{r['contender']}`".replace("|", "\\|")
            rss = f"{r['peak_rss_bytes'] / MB:.0f}"
            if r["kind"] == "dbsnap":
                rss += " ✅" if r["peak_rss_bytes"] / MB <= TARGET_PEAK_MB else " ❌"
            p = by_raw.get(r["key"])
            t = ratio_text(p["time_ratio"], p["time_target"]) if p else ""
            z = ratio_text(p["size_ratio"], p["size_target"], 3) if p and p["size_ratio"] is not None else ""
            runs = " ".join(f"{x['seconds']:.2f}" for x in r["runs"])
            lines.append(
                f"| {s['label']} | {ENGINE[r['engine']]} | {r['operation']} | {name} | {r['median_seconds']:.2f} "
                f"| {runs} | {r['median_cpu_seconds']:.2f} | {rss} | {mb(r['output_bytes'])} | {t} | {z} |"
            )
    lines += ["", "Targets (issue 6):", ""]
    for s in sizes:
        pairs = {(p["dbsnap"], p["raw"]): p for p in s["pairs"]}
        rows = {r["key"]: r for r in s["rows"]}
        checks = []
        p = pairs.get(("pg-save-dbsnap", "pg-save-zstd"))
        if p:
            checks.append(f"save time {ratio_text(p['time_ratio'], TARGET_SAVE_TIME)}")
            checks.append(f"save size {ratio_text(p['size_ratio'], TARGET_SAVE_SIZE, 3)}")
        p = pairs.get(("pg-rollback-dbsnap", "pg-rollback-raw"))
        if p:
            checks.append(f"rollback time {ratio_text(p['time_ratio'], TARGET_ROLLBACK_TIME)}")
        peaks = [r["peak_rss_bytes"] for r in rows.values() if r["kind"] == "dbsnap" and r["status"] == "ok"]
        if peaks:
            peak = max(peaks) / MB
            checks.append(f"dbsnap peak RSS {peak:.0f} MB (≤ {TARGET_PEAK_MB:.0f} {'✅' if peak <= 150 else '❌'})")
        p = pairs.get(("pg-clone-dbsnap", "pg-clone-template"))
        if p:
            checks.append(f"clone rollback {ratio_text(p['time_ratio'], 1.20)}")
        j1, jn = rows.get("pg-rollback-dbsnap-j1"), rows.get("pg-rollback-dbsnap-jn")
        if j1 and jn and j1["status"] == jn["status"] == "ok" and jn["median_seconds"]:
            gain = j1["median_seconds"] / jn["median_seconds"]
            checks.append(speedup(f"rollback --jobs {JOBS} vs one stream", gain))
        d, z = rows.get("pg-save-dir"), rows.get("pg-save-zstd")
        if d and z and d["status"] == z["status"] == "ok" and d["median_seconds"]:
            gain = z["median_seconds"] / d["median_seconds"]
            checks.append(speedup("parallel directory dump vs one stream", gain))
        lines.append(f"- {s['label']}: " + "; ".join(checks))
    return "\n".join(lines) + "\n"


def speedup(what: str, gain: float) -> str:
    """One line of the targets list: how many times as fast the parallel way is (2 % counts as noise)."""
    verdict = "pays" if gain > 1.02 else "does not pay"
    return f"{what}: {gain:.2f}x as fast ({verdict})"


def cleanup(ctx: Ctx, keep: bool, label: str | None = None) -> None:
    """Drop the run's databases (those of one size with ``label``) and remove its temporary files."""
    if keep:
        if label is None:
            log(f"--keep: databases {ctx.prefix}* and folder {ctx.tmp} are left in place")
        return
    prefix = ctx.db_name(label) if label else ctx.prefix
    if "pg" in ctx.args.engines:
        try:
            for name in ctx.pg.databases():
                if name.startswith(prefix):
                    log(f"dropping database {name}")
                    ctx.pg.drop(name)
        except BenchError as e:
            log(f"cleanup: {e}")
    shutil.rmtree(ctx.tmp / label if label else ctx.tmp, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", default="250MB", help="target size(s), comma-separated: 50MB,250MB,1GB (MB = MiB)")
    p.add_argument("--repeat", type=int, default=None, help="runs per contender (default 3; 2 with --quick)")
    p.add_argument("--out", type=Path, help="JSON output (default bench/results/<UTC timestamp>.json; .md beside it)")
    p.add_argument("--keep", action="store_true", help="keep the databases and the temporary folder")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: one ~20 MB size")
    p.add_argument("--engines", default="pg,sqlite", help="pg,sqlite (default both)")
    p.add_argument("--seed-share", type=float, default=0.5, help="share of the size from `seed` (default 0.5)")
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", default="5432")
    p.add_argument("--pg-user", default="postgres", help="needs CREATEDB; password from $PGPASSWORD")
    p.add_argument("--dbsnap", help="dbsnap command (default: .venv/bin/dbsnap, else dbsnap on PATH)")
    p.add_argument("--python", help="interpreter with Django for manage.py (default: .venv/bin/python, else this one)")
    p.add_argument("--tmp", type=Path, help="parent folder for the temporary files (default: the system's)")
    args = p.parse_args(argv)
    try:
        sizes = ["20MB"] if args.quick else [s for s in args.size.split(",") if s.strip()]
        args.sizes = [parse_size(s) for s in sizes]
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    if not args.sizes or min(args.sizes) < 10 * MB:
        p.error("--size: give one or more sizes of at least 10MB (an empty project database is about 8 MB)")
    if args.repeat is None:
        args.repeat = 2 if args.quick else 3
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if not 0 <= args.seed_share <= 1:
        p.error("--seed-share must be between 0 and 1")
    args.engines = {e.strip() for e in args.engines.split(",") if e.strip()}
    if not args.engines or args.engines - {"pg", "sqlite"}:
        p.error("--engines takes pg, sqlite or both")
    return args


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    venv = ROOT / ".venv" / "bin"
    dbsnap = args.dbsnap or (str(venv / "dbsnap") if (venv / "dbsnap").exists() else shutil.which("dbsnap"))
    python = args.python or (str(venv / "python") if (venv / "python").exists() else sys.executable)
    if not dbsnap:
        raise BenchError("dbsnap not found: install it (make venv) or pass --dbsnap")
    for tool in ("zstd", "bash") + (("sqlite3",) if "sqlite" in args.engines else ()):
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found on PATH")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    pg = PG(args.pg_host, args.pg_port, args.pg_user)
    if "pg" in args.engines:
        pg.connect_info()
    tmp = Path(tempfile.mkdtemp(prefix="dbsnap-bench-", dir=args.tmp))
    (tmp / "logs").mkdir()
    ctx = Ctx(args, pg, tmp, f"dbsnap_bench_{secrets.token_hex(3)}_", dbsnap, python)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"{stamp}.json"
    log(f"work folder {tmp}, databases {ctx.prefix}*, results {out}")
    meta = machine_info(ctx)
    sizes = []
    try:
        for target in args.sizes:
            sizes.append(bench_size(ctx, target))
            cleanup(ctx, args.keep, size_label(target))  # free the disk before the next size
    except KeyboardInterrupt:
        raise
    except BaseException:
        log(f"failed; logs of the timed commands were in {tmp / 'logs'}")
        if args.keep:
            raise
        with contextlib.suppress(OSError):
            for f in sorted((tmp / "logs").iterdir()):
                print(f"--- {f.name}\n{tail(f, 8)}", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish the cleanup even on a second Ctrl-C
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup(ctx, args.keep)
    meta["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report = render(meta, sizes)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": "dbsnap-bench",
        "version": 1,
        "meta": meta,
        "targets": {
            "save_time_ratio": TARGET_SAVE_TIME,
            "save_size_ratio": TARGET_SAVE_SIZE,
            "rollback_time_ratio": TARGET_ROLLBACK_TIME,
            "dbsnap_peak_rss_mb": TARGET_PEAK_MB,
            "clone_rollback_time_ratio": 1.20,
        },
        "sizes": sizes,
        "markdown": report,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(report)
    print(report)
    log(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
