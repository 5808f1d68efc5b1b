"""Hashing payloads beside a transfer, so that a push or a pull costs one SHA-256 pass, off the transfer's path.

boto3's ``upload_file`` / ``download_fileobj`` to a seekable file move parts in parallel threads without
buffering a part in memory; hashing on the way (a stream wrapper) would force the in-order, buffered path, and
on two shared cores that path was measured at 0.65-0.8x of raw boto3. So the hash runs in a thread of its own:

- :class:`FileHasher` reads a file being uploaded, start to end (from the page cache: boto3 reads it too);
- :class:`FollowingFile` is the file a download writes into at any offset; a thread hashes the prefix written
  so far and starts its writeback now and then, so the fsync before commit finds little left to write.

SHA-256 releases the GIL on large buffers, so the hash thread runs beside the transfer threads.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from typing import BinaryIO

BLOCK = 4 << 20
WRITEBACK_EVERY = 64 << 20  # bytes hashed between two fdatasync calls of a download's file


class Hashing(io.RawIOBase):
    """Passes bytes through (read from ``src`` or written to ``dest``), counting and hashing them: for the
    in-order streams of encrypted payloads."""

    def __init__(self, src: BinaryIO | None = None, dest: BinaryIO | io.RawIOBase | None = None) -> None:
        self.src, self.dest = src, dest
        self.sha = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return self.src is not None

    def writable(self) -> bool:
        return self.dest is not None

    def readinto(self, b) -> int:  # type: ignore[override]
        assert self.src is not None
        n = self.src.readinto(b)  # type: ignore[attr-defined]
        if n:
            self.sha.update(memoryview(b)[:n])
            self.count += n
        return n or 0

    def write(self, b) -> int:  # type: ignore[override]
        assert self.dest is not None
        self.sha.update(b)
        self.count += len(b)
        self.dest.write(b)
        return len(b)


class FileHasher:
    """Hashes the file at ``path`` in a thread; ``result()`` waits and gives (bytes, hex SHA-256)."""

    def __init__(self, path: os.PathLike | str) -> None:
        self.path = path
        self.sha = hashlib.sha256()
        self.count = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="dbsnap-hash", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            buf = bytearray(BLOCK)
            view = memoryview(buf)
            with open(self.path, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    self.sha.update(view[:n])
                    self.count += n
        except BaseException as e:  # re-raised by result(), in the caller's thread
            self.error = e

    def result(self) -> tuple[int, str]:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.count, self.sha.hexdigest()


class FollowingFile(io.RawIOBase):
    """A seekable file that a parallel download writes into (``seek`` then ``write``, any order); a thread
    hashes the bytes written from offset 0 on as they become contiguous, reading them back with ``pread``.
    ``finish()`` waits for the hash of everything written and fsyncs: (bytes, hex SHA-256)."""

    def __init__(self, f: BinaryIO, path: os.PathLike | str) -> None:
        self.f = f
        self.fd = f.fileno()
        self.rfd = os.open(path, os.O_RDONLY)  # ``f`` is write-only: the hash reads through its own descriptor
        self.pos = 0
        self.contiguous = 0  # every byte below this offset is written
        self.pending: dict[int, int] = {}  # start -> end of written ranges past ``contiguous``
        self.cond = threading.Condition()
        self.closed_for_writes = False
        self.sha = hashlib.sha256()
        self.hashed = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="dbsnap-hash", daemon=True)
        self.thread.start()

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self.pos = offset
        elif whence == 1:
            self.pos += offset
        else:
            raise OSError("FollowingFile cannot seek from the end")
        return self.pos

    def tell(self) -> int:
        return self.pos

    def write(self, b) -> int:  # type: ignore[override]
        n = len(b)
        done = 0
        while done < n:
            done += os.pwrite(self.fd, memoryview(b)[done:], self.pos + done)
        start, end = self.pos, self.pos + n
        self.pos = end
        with self.cond:
            if start <= self.contiguous:
                self.contiguous = max(self.contiguous, end)
            else:
                self.pending[start] = max(end, self.pending.get(start, 0))
            merged = True
            while merged and self.pending:
                merged = False
                for s in [s for s in self.pending if s <= self.contiguous]:
                    self.contiguous = max(self.contiguous, self.pending.pop(s))
                    merged = True
            self.cond.notify()
        return n

    def _run(self) -> None:
        try:
            since_sync = 0
            while True:
                with self.cond:
                    while self.hashed >= self.contiguous and not self.closed_for_writes:
                        self.cond.wait()
                    upto = self.contiguous
                    if self.hashed >= upto and self.closed_for_writes:
                        return
                while self.hashed < upto:
                    data = os.pread(self.rfd, min(BLOCK, upto - self.hashed), self.hashed)
                    if not data:
                        raise OSError("the downloaded file is shorter than what was written")
                    self.sha.update(data)
                    self.hashed += len(data)
                    since_sync += len(data)
                if since_sync >= WRITEBACK_EVERY:
                    os.fdatasync(self.fd)  # in this thread: the download goes on meanwhile
                    since_sync = 0
        except BaseException as e:  # re-raised by finish(), in the caller's thread
            self.error = e

    def finish(self) -> tuple[int, str]:
        """Everything is written: wait for the hash, fsync the file; (contiguous bytes, hex SHA-256)."""
        with self.cond:
            self.closed_for_writes = True
            self.cond.notify()
        self.thread.join()
        os.close(self.rfd)
        if self.error is not None:
            raise self.error
        os.fsync(self.fd)
        return self.hashed, self.sha.hexdigest()

    def abandon(self) -> None:
        """Stop the hash thread after a failed download."""
        with self.cond:
            self.closed_for_writes = True
            self.contiguous = self.hashed
            self.cond.notify()
        self.thread.join()
        os.close(self.rfd)
