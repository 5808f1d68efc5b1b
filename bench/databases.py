"""Building the example databases: the shop project copied, migrated and seeded, plus the bench_blob text table."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import EXAMPLE, MB, PG, BenchError, Ctx, clean_env, lit, log

SEED_CHUNK_MAX = 1000  # largest `seed --scale` per call: bounds the seeding process's memory (~60 MB of rows)
SEED_BYTES_PER_SCALE = 60_000  # first guess on PostgreSQL 15; refined after every seed call
BLOB_ROW_BYTES = 1_050  # first guess of one bench_blob row on disk; refined after every batch
BLOB_BATCH_ROWS = 100_000

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


def compile_bytecode(python: str, project: Path) -> None:
    """Write the bytecode of dbsnap and of the project copy before anything is timed (see ``clean_env``)."""
    code = (
        "import compileall, os, sys, dbsnap\n"
        "dirs = sys.argv[1:] + [os.path.dirname(dbsnap.__file__)]\n"
        "sys.exit(not all(compileall.compile_dir(d, quiet=1) for d in dirs))"
    )
    subprocess.run([python, "-c", code, str(project)], env=clean_env(), check=True, capture_output=True)


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
