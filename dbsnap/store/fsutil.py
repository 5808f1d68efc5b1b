"""File-system primitives with crash guarantees: atomic writes, durable renames, private permissions."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO

from .. import faults

FILE_MODE = 0o600
DIR_MODE = 0o700


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing and make it 0700; return it."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def create_private(path: Path, mode: int = FILE_MODE, buffering: int = -1) -> BinaryIO:
    """Open a new file for writing, created with ``mode`` (0600 by default); FileExistsError if ``path`` exists,
    so nothing is ever written through someone else's file or symlink."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb", buffering=buffering)


def atomic_write(path: Path, data: bytes | str, mode: int = FILE_MODE) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new one, never a mix.

    The bytes go to a temporary file in the same directory, are fsynced, then renamed over ``path``.
    """
    if isinstance(data, str):
        data = data.encode()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")  # the shape ATOMIC_DEBRIS matches
    try:
        with create_private(tmp, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        faults.point("fsutil.atomic-write-before-rename")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


# The temporary file of an atomic_write killed before its rename: ``.<name>.<8 hex>.tmp``.
ATOMIC_DEBRIS = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


def atomic_debris(folder: Path) -> list[Path]:
    """The files in ``folder`` (not below) that a killed atomic_write left behind."""
    try:
        return sorted(p for p in folder.iterdir() if ATOMIC_DEBRIS.fullmatch(p.name) and p.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []


_RENAME_EXCHANGE = 2
_libc = None


def _libc_fn(name: str):
    global _libc
    if _libc is None:
        found = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(found, use_errno=True) if found else False
    return getattr(_libc, name, None) if _libc else None


class Writeback:
    """Starts the kernel writing a file's pages out while the file is still being written (Linux
    ``sync_file_range(SYNC_FILE_RANGE_WRITE)``: asynchronous, no wait), so that the ``fsync`` which makes it
    durable at the end finds little left to write: the disk works while the dump or the decompression does,
    instead of after it (with 24 GB of RAM nothing is written back on its own before a few GB are dirty). It
    guarantees nothing by itself: the caller still fsyncs. Elsewhere, or on a file that refuses it, nothing."""

    STEP = 16 << 20

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.started = 0  # where the range not yet handed to the kernel begins
        fn = _libc_fn("sync_file_range")
        if fn is not None:
            fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        self.fn = fn

    def wrote(self, total: int) -> None:
        """``total`` bytes have been passed to the file so far (a buffered writer may hold back its last
        buffer: each call hands the kernel everything from the last start to the end of the file)."""
        if self.fn is None or total - self.started < self.STEP:
            return
        if self.fn(self.fd, self.started, 0, 2) != 0:  # 2 = SYNC_FILE_RANGE_WRITE; nbytes 0: to the end
            self.fn = None  # not a regular file, or not supported: the final fsync does it all
            return
        self.started = max(0, total - (4 << 20))  # what a buffered writer may still hold is taken next time


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the kernel or file system does not support it, so the caller can fall back.
    """
    fn = _libc_fn("renameat2")
    if fn is None:
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        fsync_dir(a.parent)
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
        return False
    raise OSError(err, os.strerror(err), str(a))


def remove_tree(path: Path) -> None:
    """Delete a file or directory tree if it exists; missing is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=False)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in bounded chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def move_file(src: Path, dest: Path) -> None:
    """Move the file ``src`` to the new name ``dest``, durably: a rename where both are on one file system (O(1)),
    else a copy to a temporary name beside ``dest``, fsynced and renamed, and only then ``src`` removed. Killed at
    any moment, ``src`` or ``dest`` holds the whole file (both, for a moment, across file systems)."""
    if dest.exists():
        raise FileExistsError(f"{dest} exists")
    try:
        os.rename(src, dest)
    except OSError as e:
        if e.errno != 18:  # EXDEV: another file system
            raise
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
        try:
            shutil.copy2(src, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.rename(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        fsync_dir(dest.parent)
        os.unlink(src)
    fsync_dir(dest.parent)
    fsync_dir(src.parent)
