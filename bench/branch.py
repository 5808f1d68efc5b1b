"""The database follows the branch: wall time of ``git checkout`` (the post-checkout hook included) between two
branches whose PostgreSQL states are kept by rename, on a database of ``--size``, beside ``dslr restore`` of the
same database when DSLR is installed (``--dslr PATH`` to its executable).

    .venv/bin/python bench/branch.py --size 1GB --repeat 5 [--dslr /path/to/venv/bin/dslr]

Builds ``branchbench_<hex>``: the example project migrated and seeded, then ``bench_blob`` filled in SQL
until ``pg_database_size`` reaches the size; a git repository of the project with ``feature/b`` (a model and a
data migration), made by the tests' own helpers (``tests/test_branch.py``: run it with the dev .venv);
``dbsnap branch install``. Prints a Markdown table; drops every database it made at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the two branches' files, as the tests make them
import test_branch as tb  # noqa: E402
from conftest import child_env, copy_example  # noqa: E402


def psql(sql: str, db: str = "postgres") -> str:
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-Atqc", sql], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)(MB|GB)", text)
    if not m:
        raise SystemExit("--size like 250MB or 1GB")
    return int(m.group(1)) << (20 if m.group(2) == "MB" else 30)


def build(tmp: Path, name: str, size: int) -> tb.Project:
    root = copy_example(tmp / "shop")
    (root / ".env").write_text(f"DB_NAME={name}\nDB_HOST=127.0.0.1\nDB_PORT=5432\nDB_USER=postgres\n")
    p = tb.Project(root, child_env(), pg_name=name)
    psql(f'CREATE DATABASE "{name}"')
    p.manage("migrate", "-v0")
    p.manage("seed", "--scale", "1")
    psql("CREATE TABLE bench_blob (id serial PRIMARY KEY, body text)", name)
    while int(psql("SELECT pg_database_size(current_database())", name)) < size:
        psql(
            "INSERT INTO bench_blob (body) SELECT (SELECT string_agg(md5(random()::text || k::text || g::text), '') "
            "FROM generate_series(1, 30) k) FROM generate_series(1, 50000) g",
            name,
        )
    psql("CHECKPOINT")
    return p


def timed(argv: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    t0 = time.monotonic()
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.monotonic() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {out.stderr.strip()}")
    return took, out.stderr + out.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1GB")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dslr", default=shutil.which("dslr"), help="the dslr executable (default: on PATH)")
    args = ap.parse_args()
    size = parse_size(args.size)
    name = f"branchbench_{secrets.token_hex(3)}"  # not dbsnap_bench_*: bench/run.py drops those
    tmp = Path(tempfile.mkdtemp(prefix="dbsnap-bench-branch-"))
    rows: list[tuple[str, list[float], str]] = []
    try:
        t0 = time.monotonic()
        p = build(tmp, name, size)
        real = int(psql("SELECT pg_database_size(current_database())", name))
        print(f"built {name}: {real >> 20} MiB in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        tb.make_repo(p)
        env = {**p.env, **tb.GIT_ID, "HOME": str(tmp)}
        first, line = timed(["git", "checkout", "feature/b"], p.root, env)
        note = line.strip().splitlines()[-1]
        rows.append(("first switch to a branch with no state (a template copy)", [first], note))
        if "was not switched" in note:  # over the hook's bound (a loaded machine): by hand, unbounded
            by_hand, out = timed([sys.executable, "-m", "dbsnap", "branch", "switch", "feature/b"], p.root, env)
            rows.append(("  the same by hand (dbsnap branch switch)", [by_hand], out.strip().splitlines()[-1]))
        p.manage("migrate", "-v0")
        hook: list[float] = []
        said: list[float] = []
        for i in range(args.repeat):
            for target in ("main", "feature/b"):
                took, out = timed(["git", "checkout", target], p.root, env)
                hook.append(took)
                m = re.search(r"in (\d+\.\d+) s", out)
                if m:
                    said.append(float(m.group(1)))
                print(f"  round {i + 1} -> {target}: {took:.2f} s", file=sys.stderr)
        rows.append(("git checkout, hook included (rename both ways)", hook, ""))
        rows.append(("  of which the switch itself (as dbsnap reports it)", said, ""))
        if args.dslr:
            url = f"postgres://postgres@127.0.0.1:5432/{name}"
            denv = {**os.environ, "DATABASE_URL": url}
            timed([args.dslr, "snapshot", "bench"], p.root, denv)
            restores = [timed([args.dslr, "restore", "bench"], p.root, denv)[0] for _ in range(args.repeat)]
            rows.append(("dslr restore (template copy; not atomic, no safety copy)", restores, ""))
            timed([args.dslr, "delete", "bench"], p.root, denv)
        else:
            rows.append(("dslr restore", [], "DSLR not installed (--dslr PATH)"))
        load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else "?"
        print(f"\n{args.size} PostgreSQL database ({real >> 20} MiB), {args.repeat} rounds, load average {load}\n")
        print("| what | median s | min s | max s | n | note |\n|---|---|---|---|---|---|")
        for what, xs, note in rows:
            if xs:
                print(f"| {what} | {statistics.median(xs):.2f} | {min(xs):.2f} | {max(xs):.2f} | {len(xs)} | {note} |")
            else:
                print(f"| {what} | | | | 0 | {note} |")
    finally:
        for db in psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{name}%'").split():
            psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        for db in psql("SELECT datname FROM pg_database WHERE datname = 'dslr_bench'").split():
            psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')  # a DSLR snapshot left by a failed run
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
