"""MySQL/MariaDB in the bench: the server helper, the database build (the shop project plus bench_blob, as for
PostgreSQL) and the contenders: dbsnap save against the dump tool piped into zstd, dbsnap rollback against
``zstd -dc | mysql`` into a fresh schema."""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
import time
from dataclasses import dataclass

from common import MB, BenchError, Ctx, clean_env, log
from contenders import Contender, Group, bash, dbsnap_argv, folder_bytes, q, run_quiet
from databases import (
    BLOB_BATCH_ROWS,
    BLOB_GROUPS,
    BLOB_ROW_BYTES,
    COUNT_SQL,
    COUNT_TABLES,
    SEED_BYTES_PER_SCALE,
    SEED_CHUNK_MAX,
    WORDS,
    Built,
    copy_project,
    manage,
)


def mident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass
class MY:
    host: str
    port: str
    user: str
    client: str = "mysql"
    dump: str = "mysqldump"
    server_version: str = ""

    def base(self) -> list[str]:
        return ["-h", self.host, "-P", self.port, "-u", self.user]

    def sql(self, query: str, db: str | None = None) -> str:
        argv = [self.client, *self.base(), "-N", "-B", "-e", query] + ([db] if db else [])
        out = subprocess.run(argv, env=clean_env(), capture_output=True, text=True)
        if out.returncode != 0:
            raise BenchError(f"mysql on {db}: {out.stderr.strip() or out.returncode}\n  query: {query[:300]}")
        return out.stdout.strip()

    def size(self, db: str) -> int:
        """Data and index bytes of the schema (InnoDB's statistics, refreshed first)."""
        tables = self.sql(
            f"SELECT GROUP_CONCAT(CONCAT('`', TABLE_NAME, '`')) FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = '{db}' AND TABLE_TYPE = 'BASE TABLE'"
        )
        if tables and tables != "NULL":
            self.sql(f"ANALYZE TABLE {tables}", db)
        got = self.sql(
            "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = '{db}'"
        )
        return int(got)

    def databases(self) -> list[str]:
        return self.sql("SHOW DATABASES").splitlines()

    def create(self, db: str) -> None:
        self.sql(f"CREATE DATABASE {mident(db)} CHARACTER SET utf8mb4")

    def drop(self, db: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {mident(db)}")

    def connect_info(self) -> None:
        self.client = shutil.which("mariadb") or shutil.which("mysql") or "mysql"
        self.server_version = self.sql("SELECT VERSION()")
        if "mariadb" in self.server_version.lower():
            self.dump = shutil.which("mariadb-dump") or "mysqldump"
        else:
            self.dump = shutil.which("mysqldump") or "mysqldump"


def counts(my: MY, db: str) -> dict[str, int]:
    return dict(zip(COUNT_TABLES, map(int, my.sql(COUNT_SQL, db).split("\t")), strict=True))


def blob_expr() -> str:
    words = ", ".join("'" + w + "'" for w in WORDS)
    word = f"ELT(1 + FLOOR(RAND() * {len(WORDS)}), {words})"
    hexa = "SUBSTR(MD5(RAND()), 1, 16)"
    return "CONCAT_WS(' ', " + ", ".join([word, word, word, hexa] * BLOB_GROUPS) + ")"


def build_mysql(ctx: Ctx, label: str, target: int) -> Built:
    my = ctx.my
    t0 = time.monotonic()
    db = ctx.db_name(label, "my")
    my.create(db)
    b = Built("mysql", db, ctx.tmp / label / "mysql" / "shop", {})
    copy_project(b.project)
    b.env = {**clean_env(), "DB_ENGINE": "mysql", "DB_NAME": db, "DB_HOST": my.host, "DB_PORT": my.port}
    b.env["DB_USER"] = my.user
    log(f"{label}: MySQL schema {db}: migrate")
    manage(b, ctx.python, "migrate", "-v0")
    size = my.size(db)
    seed_target = int(target * ctx.args.seed_share)
    per_scale = float(SEED_BYTES_PER_SCALE)
    while seed_target - size > per_scale:
        scale = max(1, min(SEED_CHUNK_MAX, math.ceil((seed_target - size) / per_scale)))
        log(f"{label}: MySQL seed --scale {scale} ({size / MB:.1f} MB of {seed_target / MB:.0f} MB)")
        manage(b, ctx.python, "seed", "--scale", str(scale))
        b.seed_scales.append(scale)
        new = my.size(db)
        per_scale = max((new - size) / scale, 1000.0)
        size = new
    my.sql("CREATE TABLE bench_blob (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT NOT NULL)", db)
    per_row = float(BLOB_ROW_BYTES)
    expr = blob_expr()
    while target - size > 100 * per_row:
        rows = max(100, min(BLOB_BATCH_ROWS, int((target - size) / per_row)))
        log(f"{label}: MySQL bench_blob += {rows} rows ({size / MB:.1f} MB of {target / MB:.0f} MB)")
        depth = "max_recursive_iterations" if "mariadb" in my.server_version.lower() else "cte_max_recursion_depth"
        my.sql(
            f"SET SESSION {depth} = 100000000; "
            f"INSERT INTO bench_blob (body) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
            f"WHERE i < {rows}) SELECT {expr} FROM n",
            db,
        )
        b.blob_rows += rows
        new = my.size(db)
        per_row = max((new - size) / rows, 100.0)
        size = new
    b.bytes = my.size(db)
    b.counts = counts(my, db)
    b.seconds = time.monotonic() - t0
    log(f"{label}: MySQL {b.bytes / MB:.1f} MB (seed scales {b.seed_scales}, {b.blob_rows} blob rows)")
    return b


def mysql_groups(ctx: Ctx, label: str, b: Built) -> list[Group]:
    my, db = ctx.my, b.name
    work = ctx.tmp / label / "mysql"
    store, out = work / "store", work / "out"
    out.mkdir(parents=True, exist_ok=True)
    env = b.env
    base = " ".join(q(x) for x in my.base())
    dump = f"{q(my.dump)} {base} --single-transaction --routines --triggers --events --hex-blob {q(db)}"
    zst, base_zst = out / "raw.sql.zst", out / "base.sql.zst"
    fresh = ctx.db_name(label, "myfresh")

    def dbsnap_saved(i: int) -> int:
        size = folder_bytes(store / f"s{i}")
        run_quiet(dbsnap_argv(ctx, b, store, "-q", "delete", f"s{i}", "--yes"), env, b.project, "dbsnap delete")
        return size

    def zst_size(i: int) -> int:
        size = zst.stat().st_size
        zst.unlink()
        return size

    save = [
        Contender(
            "my-save-dbsnap", "dbsnap save", "dbsnap", lambda i: dbsnap_argv(ctx, b, store, "save", f"s{i}"),
            env, b.project, after=dbsnap_saved,
        ),
        Contender(
            "my-save-raw", "mysqldump --single-transaction | zstd -3 -T0", "raw",
            lambda i: bash(f"{dump} | zstd -3 -T0 -q > {q(zst)}"), env, work, after=zst_size,
        ),
    ]  # fmt: skip

    def prepare_rollback() -> None:
        log(f"{label}: preparing the MySQL rollback sources")
        run_quiet(dbsnap_argv(ctx, b, store, "-q", "save", "base"), env, b.project, "dbsnap save base")
        run_quiet(bash(f"{dump} | zstd -3 -T0 -q > {q(base_zst)}"), env, work, "mysqldump base")

    def check(name: str) -> int:
        got = counts(my, name)
        if got != b.counts:
            raise BenchError(f"{label}: {name} after restore has {got}, expected {b.counts}")
        return my.size(name)

    def fresh_after(i: int) -> int:
        size = check(fresh)
        my.drop(fresh)
        return size

    rollback = [
        Contender(
            "my-rollback-dbsnap", "dbsnap rollback", "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "rollback", "base", "--yes", "--no-safety-snapshot"),
            env, b.project, after=lambda i: check(db),
        ),
        Contender(
            "my-rollback-raw", "zstd -dc | mysql fresh_db", "raw",
            lambda i: bash(f"zstd -dc -q {q(base_zst)} | {q(my.client)} {base} {q(fresh)}"), env, work,
            before=lambda i: my.create(fresh), after=fresh_after,
        ),
    ]  # fmt: skip
    return [Group("mysql", "save", save), Group("mysql", "rollback", rollback, prepare_rollback)]


def drop_all(my: MY, prefix: str) -> None:
    with contextlib.suppress(BenchError):
        for name in my.databases():
            if name.startswith(prefix):
                log(f"dropping schema {name}")
                my.drop(name)
