#!/usr/bin/env python3
"""Push and pull against raw boto3 (issue 20, "Speed"): the same bytes, the same S3 server, in alternation.

    .venv/bin/python bench/remote.py --size 1GB --repeat 3
    .venv/bin/python bench/remote.py --quick          # 64 MB smoke run

Builds the example project on SQLite with a table of incompressible rows (so the snapshot's payload is about
--size), saves it, starts a SeaweedFS server (tests/seaweed.py) in a temporary folder, then times in turn, each
to a fresh prefix: ``dbsnap push`` against ``upload_file`` of the snapshot's payload files with boto3's
defaults, and ``dbsnap pull`` (into an empty store) against ``download_file`` of the same objects. Wall time and
peak RSS of the whole process tree come from bench/measure.py. Prints a Markdown table and the ratios (target:
dbsnap >= 0.9x the raw throughput; peak memory flat, <= 150 MB).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import MB, ROOT, clean_env, log, parse_size, size_label
from databases import copy_project
from measure import measure

sys.path.insert(0, str(ROOT / "tests"))
import seaweed

BUCKET = "dbsnap-bench"

# argv: bucket, prefix (push) or folder (pull), then the files or keys
RAW_PUSH = """
import sys, boto3
c = boto3.client("s3")
for path in sys.argv[3:]:
    c.upload_file(path, sys.argv[1], sys.argv[2] + "/" + path.rsplit("/", 1)[1])
"""

RAW_PULL = """
import sys, boto3
c = boto3.client("s3")
for key in sys.argv[3:]:
    c.download_file(sys.argv[1], key, sys.argv[2] + "/" + key.rsplit("/", 1)[1])
"""


def build(project: Path, python: str, size: int, env: dict[str, str]) -> None:
    copy_project(project)
    subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=project, env=env, check=True)
    with sqlite3.connect(project / "db.sqlite3") as c:
        c.execute("CREATE TABLE bench_blob (b BLOB)")
        c.executemany("INSERT INTO bench_blob VALUES (randomblob(?))", [(MB,)] * max(1, size // MB))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="1GB")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    args = ap.parse_args()
    size = parse_size("64MB" if args.quick else args.size)
    repeat = 2 if args.quick else args.repeat
    work = Path(tempfile.mkdtemp(prefix="dbsnap-bench-remote-"))
    proc = None
    try:
        env = clean_env()
        project = work / "shop"
        log(f"building a {size_label(size)} SQLite project")
        build(project, args.python, size, env)
        dbsnap = [args.python, "-m", "dbsnap"]
        subprocess.run([*dbsnap, "save", "big"], cwd=project, env=env, check=True, capture_output=True)
        payloads = sorted(str(p) for p in (project / "snapshots" / "big").iterdir() if p.suffix == ".zst")
        total = sum(os.path.getsize(p) for p in payloads)
        (work / "weed").mkdir()
        proc, endpoint = seaweed.start(work / "weed", BUCKET)
        env = {**env, **seaweed.ACCESS, "AWS_ENDPOINT_URL_S3": endpoint}
        rows: dict[str, list] = {
            "dbsnap push": [],
            "boto3 upload_file": [],
            "dbsnap pull": [],
            "boto3 download_file": [],
        }
        logfile = work / "bench.log"
        for i in range(repeat):
            prefix = f"r{i}-{secrets.token_hex(3)}"
            url = f"s3://{BUCKET}/{prefix}"
            order = [
                ("dbsnap push", [*dbsnap, "push", "big", "--remote", url]),
                ("boto3 upload_file", [args.python, "-c", RAW_PUSH, BUCKET, f"raw-{prefix}", *payloads]),
            ]
            for label, argv in order if i % 2 == 0 else reversed(order):
                run, code = measure(argv, env, project, logfile)
                if code != 0:
                    raise SystemExit(f"{label} failed:\n{logfile.read_text(errors='replace')[-3000:]}")
                rows[label].append(run)
            keys = [f"raw-{prefix}/{Path(p).name}" for p in payloads]
            store = work / f"pulled-{i}"
            down = work / f"down-{i}"
            down.mkdir()
            order = [
                ("dbsnap pull", [*dbsnap, "--store", str(store), "pull", "big", "--remote", url]),
                ("boto3 download_file", [args.python, "-c", RAW_PULL, BUCKET, str(down), *keys]),
            ]
            for label, argv in order if i % 2 == 0 else reversed(order):
                run, code = measure(argv, env, project, logfile)
                if code != 0:
                    raise SystemExit(f"{label} failed:\n{logfile.read_text(errors='replace')[-3000:]}")
                rows[label].append(run)
            shutil.rmtree(store, ignore_errors=True)
            shutil.rmtree(down, ignore_errors=True)
        print(f"\n{size_label(total)} of payload, {repeat} runs each, load average {os.getloadavg()[0]:.1f}\n")
        print("| contender | median s | MB/s | peak RSS MB |\n|---|---|---|---|")
        med = {}
        for label, runs in rows.items():
            med[label] = statistics.median(r.seconds for r in runs)
            peak = max(r.peak_rss for r in runs) / MB
            print(f"| {label} | {med[label]:.2f} | {total / MB / med[label]:.0f} | {peak:.0f} |")
        print(f"\npush: {med['boto3 upload_file'] / med['dbsnap push']:.2f}x the raw throughput (target >= 0.9x)")
        print(f"pull: {med['boto3 download_file'] / med['dbsnap pull']:.2f}x the raw throughput (target >= 0.9x)")
        return 0
    finally:
        if proc is not None:
            seaweed.stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
