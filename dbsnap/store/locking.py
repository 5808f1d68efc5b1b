"""The store lock: one writer at a time, with the owner recorded and dead owners detected.

The lock is an ``fcntl.flock`` on ``<store>/.lock`` whose content names the holder (host, pid, command,
start time). The kernel drops a flock when its process dies, even by SIGKILL, so a lock left by a dead process
on this host is taken over without guesswork; ``dbsnap unlock`` removes the file for the rare case (a network
file system without flock) where that is not enough.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from ..errors import StoreLocked

LOCK_NAME = ".lock"


def read_owner(store_root: Path) -> dict | None:
    """The recorded holder of the lock, or None when there is no lock file."""
    try:
        return json.loads((store_root / LOCK_NAME).read_text() or "{}")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):
        return {}


def describe_owner(owner: dict | None) -> str:
    if not owner:
        return "an unknown process"
    return (
        f"pid {owner.get('pid')} on {owner.get('host')} "
        f"({owner.get('command', '?')}, since {owner.get('started', '?')})"
    )


def is_held(store_root: Path) -> bool:
    """True when a live process holds the lock right now."""
    path = store_root / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def store_lock(store_root: Path, command: str, timeout: float = 0.0) -> Iterator[dict]:
    """Hold the store lock for the duration of the block; wait up to ``timeout`` seconds, then StoreLocked.

    Yields ``{"took_over": owner}`` when the lock file of a dead process was found and taken over.
    """
    path = store_root / LOCK_NAME
    deadline = time.monotonic() + max(timeout, 0.0)
    info: dict = {"took_over": None}
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                owner = read_owner(store_root)
                raise StoreLocked(
                    f"store {store_root} is locked by {describe_owner(owner)}",
                    hint="wait for it to finish, raise --lock-timeout, or run 'dbsnap unlock' if it is gone",
                ) from None
            time.sleep(0.1)
            continue
        # The file we locked may have been unlinked by the previous holder after we opened it: only the
        # file currently at ``path`` counts.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        break
    try:
        old = os.read(fd, 65536)
        if old.strip():
            with contextlib.suppress(ValueError):
                info["took_over"] = json.loads(old)
        owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": command or " ".join(sys.argv),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(owner).encode())
        os.fsync(fd)
        yield info
    finally:
        # Unlink while still holding the flock, so a waiter that opened the old file notices (inode check).
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def force_unlock(store_root: Path) -> dict | None:
    """Remove the lock file; return the owner it recorded. Refuses while a live process on this host holds it."""
    owner = read_owner(store_root)
    if owner is None:
        return None
    if is_held(store_root):
        raise StoreLocked(f"store {store_root} is locked by {describe_owner(owner)}, which is still running")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(store_root / LOCK_NAME)
    return owner
