"""What a user sees while dbsnap works: the CLI run under a pseudo-terminal on a real database (issue 14).

On a terminal a save shows bytes against the database's size with a percentage and an ETA, a rollback names its
phases (data, indexes and constraints, swap) with their elapsed time, and the line never sits still for more than
a second. Without a terminal, or with --json, none of it is written.
"""

from __future__ import annotations

import itertools
import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from conftest import Project

LIVE = "\x1b[K"  # the progress line redraws itself with "\r" + erase-to-end-of-line


def on_terminal(p: Project, *args: str, env: dict | None = None, stdout_pipe: bool = False):
    """Run dbsnap with stderr (and stdout unless ``stdout_pipe``) on a pseudo-terminal, 120 columns wide.
    Returns (exit code, [(seconds since start, text read)], stdout text when piped)."""
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    # The child sees a 120-column terminal (shutil.get_terminal_size reads $COLUMNS first).
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbsnap", *args],
        cwd=p.root,
        env={**p.env, "COLUMNS": "120", **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout_pipe else slave,
        stderr=slave,
    )
    os.close(slave)
    started, chunks = time.monotonic(), []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append((time.monotonic() - started, data.decode(errors="replace")))
            elif proc.poll() is not None:
                break
        out = proc.stdout.read().decode() if stdout_pipe else ""
        return proc.wait(timeout=120), chunks, out
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def live_lines(chunks) -> list[tuple[float, str]]:
    """Every redraw of the progress line, with the time it was read."""
    out = []
    for t, text in chunks:
        for piece in text.split("\r"):
            if piece.startswith(LIVE):
                out.append((t, piece[len(LIVE) :].strip()))
    return out


def longest_silence(chunks, start: float, end: float) -> float:
    times = [start] + [t for t, _ in chunks if start <= t <= end] + [end]
    return max(b - a for a, b in itertools.pairwise(times))


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_a_slow_phase_ticks_on_a_terminal_and_json_or_a_pipe_get_none_of_it(pg_shop: Project) -> None:
    p = pg_shop
    p.ok("save", "base")
    # The rollback pauses 1.5 s after checking its result (a real fault point): the line must keep moving.
    pause = {"DBSNAP_FAULT": "rollback.before-finish:sleep", "DBSNAP_FAULT_SECONDS": "1.5"}
    rc, chunks, _ = on_terminal(p, "rollback", "base", "--yes", "--no-safety-snapshot", env=pause)
    assert rc == 0, "".join(t for _, t in chunks)
    lines = live_lines(chunks)
    checking = [(t, line) for t, line in lines if line.startswith("swap checking the result:")]
    assert len(checking) >= 4, lines  # redrawn every 0.25 s through the pause
    elapsed = [float(re.search(r": (\d+\.\d) s", line).group(1)) for _, line in checking]
    assert elapsed == sorted(elapsed) and elapsed[-1] - elapsed[0] >= 1.0, checking
    assert longest_silence(chunks, checking[0][0], checking[-1][0]) < 1.0
    text = "".join(t for _, t in chunks)
    assert "rolled back to base" in text

    # --json: stdout is one JSON document, and the terminal gets the step lines but no progress line.
    rc, chunks, out = on_terminal(
        p, "rollback", "base", "--yes", "--no-safety-snapshot", "--json", env=pause, stdout_pipe=True
    )
    assert rc == 0
    assert json.loads(out)["snapshot"] == "base"
    assert LIVE not in out and "\r" not in out
    assert live_lines(chunks) == [] and "restoring default" in "".join(t for _, t in chunks)

    # Not a terminal (a pipe, a log file): no progress line either.
    proc = p.dbsnap("rollback", "base", "--yes", "--no-safety-snapshot", env=pause)
    assert proc.returncode == 0
    assert "\r" not in proc.stderr and LIVE not in proc.stderr
    assert "swapping in default" in proc.stderr


@pytest.fixture
def pg_big(pg_shop: Project) -> Project:
    """pg_shop with a ~100 MB table (100 000 rows of 960 characters) and an index on it: a save and a
    rollback that take seconds, so their progress has something to show."""
    pg_shop.sql(
        "CREATE TABLE big (id serial PRIMARY KEY, body text NOT NULL); "
        "INSERT INTO big (body) SELECT repeat(md5(i::text), 30) FROM generate_series(1, 100000) i; "
        "CREATE INDEX big_body ON big (body text_pattern_ops)"
    )
    return pg_shop


# pg_dump behind a pipe that passes 4 MB every 0.1 s (DBSNAP_PG_DUMP is a documented command prefix): on a quiet
# machine the ~100 MB dump otherwise ends within one redraw, and the percentage has no time to move.
SLOW_PG_DUMP = """
import subprocess, sys, time
proc = subprocess.Popen(["pg_dump", *sys.argv[1:]], stdout=subprocess.PIPE)
while chunk := proc.stdout.read(4 << 20):
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    time.sleep(0.1)
sys.exit(proc.wait())
"""


@pytest.mark.slow
def test_save_shows_a_moving_percentage_and_rollback_its_phases(pg_big: Project, tmp_path) -> None:
    p = pg_big
    slow = tmp_path / "slow_pg_dump.py"
    slow.write_text(SLOW_PG_DUMP)
    rc, chunks, _ = on_terminal(p, "save", "base", env={"DBSNAP_PG_DUMP": f"{sys.executable} {slow}"})
    assert rc == 0, "".join(t for _, t in chunks)
    dump = [line for _, line in live_lines(chunks) if line.startswith("dump default:")]
    percents = [int(m.group(1)) for line in dump if (m := re.search(r"  (\d+)%", line))]
    assert len(percents) >= 2 and percents == sorted(percents) and percents[-1] > percents[0], dump
    assert any("ETA " in line for line in dump), dump
    assert all("MB database)" in line for line in dump), dump  # the database's size beside the count
    assert "saved base" in "".join(t for _, t in chunks)

    for jobs in ("1", "2"):
        p.sql("DELETE FROM big WHERE id % 2 = 0")
        rc, chunks, _ = on_terminal(p, "rollback", "base", "--yes", "--jobs", jobs)
        text = "".join(t for _, t in chunks)
        assert rc == 0, text
        phases = [line.split(":")[0] for _, line in live_lines(chunks)]
        seen = list(dict.fromkeys(phases))  # in order of first appearance
        for name in ("restore default data", "restore default indexes and constraints", "swap"):
            assert any(s.startswith(name) for s in seen), (jobs, seen)
        assert seen.index("restore default data") < seen.index("restore default indexes and constraints"), seen
        dumping = [t for t, line in live_lines(chunks) if line.startswith("dump default")]
        restore_start = next(t for t, s in live_lines(chunks) if s.startswith("restore default"))
        end = next(t for t, s in chunks if "rolled back to base" in s)
        assert longest_silence(chunks, dumping[0] if dumping else restore_start, end) < 1.0, (jobs, text)
        assert p.sql("SELECT count(*) FROM big")[0][0] == 100000
