"""Child processes that die with dbsnap, and SIGTERM/SIGHUP handled like Ctrl-C.

Every external command (manage.py, pg_dump, pg_restore, psql, the discovery child) is started by :func:`spawn`:
in its own process group (so dbsnap can stop it and whatever it started with one ``killpg``, and a terminal's
Ctrl-C reaches dbsnap only, which then undoes its work in order), and on Linux with ``PR_SET_PDEATHSIG``, so the
kernel kills it when dbsnap dies, by ``kill -9`` too: an orphaned ``manage.py migrate`` never keeps running.

The parent-death signal fires when the *thread* that started the child ends, so children are started from the
thread that waits for them (dbsnap's main thread). A command run through ``docker compose exec`` dies as a
client only; what runs inside the container is the container's business.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import weakref
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1
_live: weakref.WeakSet[subprocess.Popen] = weakref.WeakSet()


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


# Looked up once in the parent: the child, between fork and exec, only calls what is already resolved.
_prctl = _load_prctl()


def _in_child(parent: int) -> Callable[[], None]:
    def setup() -> None:
        os.setpgid(0, 0)
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # dbsnap died before the request took effect: do not outlive it
                os._exit(1)

    return setup


def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(argv, ...)`` in a new process group that is killed when dbsnap dies."""
    proc = subprocess.Popen(argv, preexec_fn=_in_child(os.getpid()), **kwargs)
    _live.add(proc)
    return proc


def spawn_outliving(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    """Like :func:`spawn` (own process group, stopped with dbsnap on a signal or an error) but not killed by the
    kernel when dbsnap dies: for a child that must be allowed to finish what it was already told, such as a psql
    that has been sent COMMIT. It must end by itself at the end of its input."""
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    _live.add(proc)
    return proc


def kill(proc: subprocess.Popen) -> None:
    """Kill ``proc``'s whole process group (it and what it started) and reap it. Idempotent."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()
    _live.discard(proc)


def kill_group(proc: subprocess.Popen) -> None:
    """Send SIGKILL to ``proc``'s process group without reaping it (for helper threads; the starter waits)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def kill_all() -> None:
    """Kill every child :func:`spawn` started that may still run (the CLI's last word on any failure)."""
    for proc in list(_live):
        kill(proc)


def run(
    argv: list[str], *, timeout: float | None = None, input: str | None = None, **kwargs: Any
) -> subprocess.CompletedProcess:
    """Like ``subprocess.run``: wait for ``argv`` and return its output; on a timeout, Ctrl-C, SIGTERM or any
    other exception the child's whole process group is killed before the exception goes on."""
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    proc = spawn(argv, **kwargs)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException:
        kill(proc)
        raise
    # The tool may have left something running in its group (a background job): it does not outlive its step.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    _live.discard(proc)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


# -- signals -------------------------------------------------------------------------------------------------


class Signalled(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived: raised in the main thread so every undo that handles Ctrl-C runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_name(exc: BaseException) -> str:
    """``SIGTERM`` for a :class:`Signalled` exception, ``SIGINT`` for a plain KeyboardInterrupt."""
    return signal.Signals(getattr(exc, "signum", signal.SIGINT)).name


def exit_code(exc: BaseException) -> int:
    """128 + the signal number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


_stopping = {"signal": 0}


def _handler(signum: int, frame: object) -> None:
    # Only the first signal interrupts; later ones (systemd and docker repeat SIGTERM) must not break the undo
    # the first one started. kill -9 still ends dbsnap, and the journal covers that.
    if _stopping["signal"]:
        return
    _stopping["signal"] = signum
    raise Signalled(signum)


def install_signal_handlers() -> None:
    """SIGINT, SIGTERM and SIGHUP raise :class:`Signalled` (the CLI calls this; the library never does)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _handler)
