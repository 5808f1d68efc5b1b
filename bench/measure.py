"""Measuring one command: wall time, CPU time and the peak RSS of its whole process tree (psutil or /proc)."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

try:  # optional: only used when already installed, never required
    import psutil  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the normal case
    psutil = None

SAMPLE_INTERVAL = 0.02


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
