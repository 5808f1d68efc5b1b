"""The contenders (dbsnap and the raw tools, per engine and operation) and timing them in alternation."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import JOBS, MB, PG, BenchError, Ctx, ident, log, mb
from databases import Built, pg_counts, sqlite_counts
from measure import Run, measure, tail


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

    def safety_deleted(i: int) -> int:
        size = check(db)
        _delete_snapshots_but(ctx, b, store, {"base", "cbase"})  # the safety snapshot this run made
        return size

    rollback = [
        Contender(
            "pg-rollback-dbsnap-safe",
            "dbsnap rollback (default: safety snapshot)",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "rollback", "base", "--yes"),
            env,
            b.project,
            after=safety_deleted,
        ),
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

    # The target row is the first: what a user runs (safety snapshot included) on a snapshot with a clone.
    clone[:0] = [
        Contender(
            "pg-clone-dbsnap-safe",
            "dbsnap rollback (clone, default: safety snapshot)",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "rollback", "cbase", "--yes"),
            env,
            b.project,
            after=safety_deleted,
        ),
        Contender(
            "pg-clone-dbsnap-consume",
            "dbsnap rollback --consume-clone (safety snapshot, clone re-armed)",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "rollback", "cbase", "--yes", "--consume-clone"),
            env,
            b.project,
            after=safety_deleted,
        ),
        Contender(
            "pg-clone-dbsnap",
            "dbsnap rollback (clone, --no-safety-snapshot)",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "rollback", "cbase", "--yes", "--no-safety-snapshot"),
            env,
            b.project,
            after=lambda i: check(db),
        ),
    ]
    return [
        Group("postgresql", "save", save),
        Group("postgresql", "rollback", rollback, prepare_rollback),
        Group("postgresql", "rollback (clone)", clone, prepare_clone),
    ]


def _size_then_drop(pg: PG, db: str) -> int:
    size = pg.size(db)
    pg.drop(db)
    return size


def _delete_snapshots_but(ctx: Ctx, b: Built, store: Path, keep: set[str]) -> None:
    out = subprocess.run(
        dbsnap_argv(ctx, b, store, "list", "--json"), env=b.env, cwd=b.project, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise BenchError(f"dbsnap list failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    for snap in json.loads(out.stdout):
        if snap["name"] not in keep:
            run_quiet(dbsnap_argv(ctx, b, store, "-q", "delete", snap["name"], "--yes"), b.env, b.project, "delete")


def fixed_cost_group(ctx: Ctx, label: str, b: Built) -> Group:
    """The fixed cost of one command: ``dbsnap list`` on an empty store, against starting the interpreter alone."""
    empty = ctx.tmp / label / "empty-store"
    python = str(Path(ctx.dbsnap).with_name("python")) if Path(ctx.dbsnap).with_name("python").exists() else ctx.python
    return Group(
        "dbsnap",
        "fixed cost",
        [
            Contender(
                "cmd-list-empty",
                "dbsnap list (empty store)",
                "dbsnap",
                lambda i: dbsnap_argv(ctx, b, empty, "list"),
                b.env,
                b.project,
            ),
            Contender(
                "cmd-python",
                "python -c pass (interpreter start)",
                "raw",
                lambda i: [python, "-c", "pass"],
                b.env,
                b.project,
            ),
        ],
    )


def sqlite_groups(ctx: Ctx, label: str, b: Built) -> list[Group]:
    work = ctx.tmp / label / "sqlite"
    store = work / "store"
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    env, live = b.env, Path(b.name)
    raw, zst = out / "raw.sqlite3", out / "raw.sqlite3.zst"
    dot_backup = f".backup '{raw}'"
    base_zst = out / "base.sqlite3.zst"
    base_raw = out / "base.sqlite3"

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
        run_quiet(dbsnap_argv(ctx, b, store, "-q", "save", "cbase", "--clone"), env, b.project, "dbsnap save --clone")
        run_quiet(
            bash(
                f"sqlite3 {q(live)} {q(dot_backup)} && cp {q(raw)} {q(base_raw)}"
                f" && zstd -3 -T0 -q --rm {q(raw)} -o {q(base_zst)}"
            ),
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

    def safety_deleted(i: int) -> int:
        size = check(i)
        _delete_snapshots_but(ctx, b, store, {"base", "cbase"})
        return size

    rollback = [
        Contender(
            "sqlite-rollback-dbsnap-safe",
            "dbsnap rollback (default: safety snapshot)",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "rollback", "base", "--yes"),
            env,
            b.project,
            after=safety_deleted,
        ),
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
            "sqlite-rollback-dbsnap-clone",
            "dbsnap rollback (save --clone: the kept file copied; safety snapshot)",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "rollback", "cbase", "--yes"),
            env,
            b.project,
            after=safety_deleted,
        ),
        Contender(
            "sqlite-rollback-dbsnap-consume",
            "dbsnap rollback --consume-clone (renamed in, re-armed; safety snapshot)",
            "dbsnap",
            lambda i: dbsnap_argv(ctx, b, store, "rollback", "cbase", "--yes", "--consume-clone"),
            env,
            b.project,
            after=safety_deleted,
        ),
        # The anchor for SQLite: a plain copy of the file (no decompression), then the rename.
        Contender(
            "sqlite-rollback-cp",
            "cp base.sqlite3 db.new && mv db.new db",
            "raw",
            lambda i: bash(f"cp {q(base_raw)} {q(new)} && mv -f {q(new)} {q(live)}"),
            env,
            work,
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
