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

This file is the entry point (options, the loop over sizes, cleanup); the work is done by the modules beside
it, listed in bench/README.md ("Files").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from common import (
    MB,
    PG,
    RESULTS,
    ROOT,
    TARGET_PEAK_MB,
    TARGET_ROLLBACK_TIME,
    TARGET_SAVE_SIZE,
    TARGET_SAVE_TIME,
    BenchError,
    Ctx,
    log,
    parse_size,
    size_label,
)
from contenders import Group, fixed_cost_group, pg_groups, run_group, sqlite_groups
from databases import Built, build_pg, build_sqlite, compile_bytecode
from measure import tail
from mysql import MY, build_mysql, drop_all, mysql_groups
from others import DEFAULT_VENV, add_others, ensure_venv
from report import machine_info, pairs_for, render, row


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
        add_others(ctx, label, pg_built, groups)
        built.append(pg_built)
    if "sqlite" in ctx.args.engines:
        sq = build_sqlite(ctx, label, pg_built, target)
        result["built"]["sqlite"] = sq.as_dict()
        groups += sqlite_groups(ctx, label, sq)
        add_others(ctx, label, sq, groups)
        built.append(sq)
    if "mysql" in ctx.args.engines:
        my_built = build_mysql(ctx, label, target)
        result["built"]["mysql"] = my_built.as_dict()
        groups += mysql_groups(ctx, label, my_built)
        built.append(my_built)
    for b in built:
        compile_bytecode(ctx.python, b.project)
    if built:
        groups.insert(0, fixed_cost_group(ctx, label, built[0]))
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
                # DSLR's own databases are dslr_<unix time>_<name>, the name carrying the prefix (others.py).
                if name.startswith(prefix) or (name.startswith("dslr_") and prefix in name):
                    log(f"dropping database {name}")
                    ctx.pg.drop(name)
        except BenchError as e:
            log(f"cleanup: {e}")
    if "mysql" in ctx.args.engines:
        drop_all(ctx.my, prefix)
    shutil.rmtree(ctx.tmp / label if label else ctx.tmp, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", default="250MB", help="target size(s), comma-separated: 50MB,250MB,1GB (MB = MiB)")
    p.add_argument("--repeat", type=int, default=None, help="runs per contender (default 3; 2 with --quick)")
    p.add_argument("--out", type=Path, help="JSON output (default bench/results/<UTC timestamp>.json; .md beside it)")
    p.add_argument("--keep", action="store_true", help="keep the databases and the temporary folder")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: one ~20 MB size")
    p.add_argument("--engines", default="pg,sqlite,mysql", help="pg,sqlite,mysql (default all three)")
    p.add_argument("--seed-share", type=float, default=0.5, help="share of the size from `seed` (default 0.5)")
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", default="5432")
    p.add_argument("--pg-user", default="postgres", help="needs CREATEDB; password from $PGPASSWORD")
    p.add_argument("--my-host", default="127.0.0.1")
    p.add_argument("--my-port", default="3306")
    p.add_argument("--my-user", default="root", help="MySQL/MariaDB role that may create schemas (no password)")
    p.add_argument("--dbsnap", help="dbsnap command (default: .venv/bin/dbsnap, else dbsnap on PATH)")
    p.add_argument("--python", help="interpreter with Django for manage.py (default: .venv/bin/python, else this one)")
    p.add_argument("--no-others", action="store_true", help="leave out django-dbbackup and DSLR")
    p.add_argument(
        "--others-venv",
        type=Path,
        default=DEFAULT_VENV,
        help="environment for django-dbbackup and DSLR (default bench/.venv)",
    )
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
    if not args.engines or args.engines - {"pg", "sqlite", "mysql"}:
        p.error("--engines takes pg, sqlite, mysql or a comma-separated list of them")
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
    ctx.my = MY(args.my_host, args.my_port, args.my_user)
    if not args.no_others and args.engines & {"pg", "sqlite"}:
        ctx.others_venv = args.others_venv.resolve()
        ctx.others_versions = ensure_venv(ctx.others_venv)
    if "mysql" in args.engines:
        ctx.my.connect_info()
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
