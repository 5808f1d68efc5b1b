"""The report: rows and dbsnap ÷ raw tool ratios from the runs, the machine's description, the Markdown text."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from common import (
    JOBS,
    MB,
    ROOT,
    TARGET_PEAK_MB,
    TARGET_ROLLBACK_TIME,
    TARGET_SAVE_SIZE,
    TARGET_SAVE_TIME,
    Ctx,
    mb,
)
from contenders import Contender
from measure import SAMPLE_INTERVAL, SAMPLER

TIMES = "\u00d7"  # the multiplication sign of the ratios
ENGINE = {"postgresql": "PostgreSQL", "sqlite": "SQLite", "mysql": "MySQL/MariaDB", "dbsnap": "—"}
TARGET_FIXED_COST = 0.25  # seconds for `dbsnap list` on an empty store (issue 14)


def ratio_text(r: float | None, target: float | None = None, digits: int = 2) -> str:
    if r is None:
        return "—"
    text = f"{r:.{digits}f}{TIMES}"
    if target is not None:
        text += f" (≤ {target:.2f} {'✅' if r <= target else '❌'})"
    return text


def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


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
        ("my-save-dbsnap", "my-save-raw", TARGET_SAVE_TIME, TARGET_SAVE_SIZE),
        ("my-rollback-dbsnap", "my-rollback-raw", TARGET_ROLLBACK_TIME, None),
        ("sqlite-rollback-dbsnap", "sqlite-rollback-raw", None, None),
        # issue 14: the other tools, and the default rollback (safety snapshot included)
        ("pg-save-dbsnap", "pg-save-dbbackup", 1.0, None),
        ("pg-save-dbsnap", "pg-save-dslr", None, None),
        ("pg-rollback-dbsnap-safe", "pg-rollback-raw", 1.15, None),
        ("pg-rollback-dbsnap-safe", "pg-rollback-dbbackup", 1.0, None),
        ("pg-rollback-dbsnap-safe", "pg-clone-dslr", None, None),
        ("pg-clone-dbsnap-safe", "pg-clone-dslr", 1.15, None),
        ("pg-clone-dbsnap-consume", "pg-clone-dslr", None, None),
        ("pg-clone-dbsnap", "pg-clone-dslr", None, None),
        ("pg-clone-dbsnap-safe", "pg-rollback-dbbackup", 1.0, None),
        ("sqlite-save-dbsnap", "sqlite-save-dbbackup", 1.0, None),
        ("sqlite-rollback-dbsnap-safe", "sqlite-rollback-raw", None, None),
        ("sqlite-rollback-dbsnap-safe", "sqlite-rollback-cp", None, None),
        ("sqlite-rollback-dbsnap-clone", "sqlite-rollback-cp", 1.2, None),
        ("sqlite-rollback-dbsnap-consume", "sqlite-rollback-cp", None, None),
        ("sqlite-rollback-dbsnap", "sqlite-rollback-cp", None, None),
        ("sqlite-rollback-dbsnap-safe", "sqlite-rollback-dbbackup", 1.0, None),
        ("cmd-list-empty", "cmd-python", None, None),
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
        "mysql_server": ctx.my.server_version if "mysql" in ctx.args.engines else None,
        "mysql_dump": first_line([ctx.my.dump, "--version"]) if "mysql" in ctx.args.engines else None,
        "zstd": "zstd " + re.sub(r".*\b(v[\d.]+).*", r"\1", first_line(["zstd", "--version"])),
        "sqlite3": first_line(["sqlite3", "--version"]).split(" 20")[0],
        "python": platform.python_version(),
        "python_zstandard": " / libzstd ".join(zstd_lib) if zstd_lib else "?",
        "dbsnap": first_line([ctx.dbsnap, "--version"]),
        "dbsnap_commit": (commit.stdout.strip() or "?") + (" (dbsnap/ modified)" if dirty.stdout.strip() else ""),
        "repeat": ctx.args.repeat,
        "seed_share": ctx.args.seed_share,
        "rss_sampler": SAMPLER,
        "others": ctx.others_versions,
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
        f"sqlite3 {meta['sqlite3']}" + (f"; MySQL server {meta['mysql_server']}" if meta.get("mysql_server") else ""),
        f"- {meta['dbsnap']} at {meta['dbsnap_commit']}; Python {meta['python']}, zstandard {meta['python_zstandard']}",
        *(
            [
                f"- other tools (bench/.venv): django-dbbackup {o['django-dbbackup']}, DSLR {o['dslr']}, "
                f"Django {o['Django']}"
            ]
            if (o := meta.get("others"))
            else []
        ),
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
        by_raw: dict[str, list[dict]] = {}
        for p in s["pairs"]:
            by_raw.setdefault(p["raw"], []).append(p)
        labels = {r["key"]: r["contender"] for r in s["rows"]}
        for r in s["rows"]:
            if r["status"] != "ok":
                lines.append(
                    f"| {s['label']} | {ENGINE[r['engine']]} | {r['operation']} | **{r['contender']}** "
                    f"| *placeholder* | *{r['note']}* | — | — | — | | |"
                )
                continue
            name = {"dbsnap": f"**{r['contender']}**", "other": f"*{r['contender']}*"}.get(
                r["kind"], f"`{r['contender']}`".replace("|", "\\|")
            )
            rss = f"{r['peak_rss_bytes'] / MB:.0f}"
            if r["kind"] == "dbsnap":
                rss += " ✅" if r["peak_rss_bytes"] / MB <= TARGET_PEAK_MB else " ❌"
            ps = by_raw.get(r["key"], [])
            # A row compared with more than one dbsnap row names each (the default rollback and the plain one).
            t = "; ".join(
                ratio_text(p["time_ratio"], p["time_target"]) + (f" ({labels[p['dbsnap']]})" if len(ps) > 1 else "")
                for p in ps
            )
            z = "; ".join(ratio_text(p["size_ratio"], p["size_target"], 3) for p in ps if p["size_ratio"] is not None)
            runs = " ".join(f"{x['seconds']:.2f}" for x in r["runs"])
            lines.append(
                f"| {s['label']} | {ENGINE[r['engine']]} | {r['operation']} | {name} | {r['median_seconds']:.2f} "
                f"| {runs} | {r['median_cpu_seconds']:.2f} | {rss} | {mb(r['output_bytes'])} | {t} | {z} |"
            )
    lines += ["", "Targets (issues 6 and 14):", ""]
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
        for a, b, what in (
            ("pg-save-dbsnap", "pg-save-dbbackup", "save vs django-dbbackup"),
            ("pg-rollback-dbsnap-safe", "pg-rollback-raw", "default rollback (safety snapshot) vs raw pg_restore"),
            ("pg-rollback-dbsnap-safe", "pg-rollback-dbbackup", "default rollback vs django-dbbackup's restore"),
            ("pg-rollback-dbsnap-safe", "pg-clone-dslr", "default rollback (no clone) vs DSLR's restore"),
            ("pg-clone-dbsnap-safe", "pg-clone-dslr", "default rollback (clone) vs DSLR's restore"),
            ("pg-clone-dbsnap-consume", "pg-clone-dslr", "rollback --consume-clone vs DSLR's restore"),
            ("pg-clone-dbsnap-safe", "pg-rollback-dbbackup", "default rollback (clone) vs django-dbbackup's restore"),
            ("sqlite-save-dbsnap", "sqlite-save-dbbackup", "SQLite save vs django-dbbackup"),
            ("sqlite-rollback-dbsnap-safe", "sqlite-rollback-dbbackup", "SQLite default rollback vs django-dbbackup"),
            ("sqlite-rollback-dbsnap-safe", "sqlite-rollback-cp", "SQLite default rollback (dump) vs a file copy"),
            ("sqlite-rollback-dbsnap-clone", "sqlite-rollback-cp", "SQLite rollback (clone) vs a file copy"),
            ("sqlite-rollback-dbsnap-consume", "sqlite-rollback-cp", "SQLite rollback --consume-clone vs a file copy"),
        ):
            p = pairs.get((a, b))
            if p:
                checks.append(f"{what} {ratio_text(p['time_ratio'], p['time_target'])}")
        fixed = rows.get("cmd-list-empty")
        if fixed and fixed["status"] == "ok":
            ok = "✅" if fixed["median_seconds"] <= TARGET_FIXED_COST else "❌"
            checks.append(
                f"fixed cost (`dbsnap list`, empty store) {fixed['median_seconds']:.3f} s (< {TARGET_FIXED_COST} {ok})"
            )
        lines.append(f"- {s['label']}: " + "; ".join(checks))
    return "\n".join(lines) + "\n"


def speedup(what: str, gain: float) -> str:
    """One line of the targets list: how many times as fast the parallel way is (2 % counts as noise)."""
    verdict = "pays" if gain > 1.02 else "does not pay"
    return f"{what}: {gain:.2f}x as fast ({verdict})"
