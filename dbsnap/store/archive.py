"""Streaming zstd with SHA-256 on the fly, and the tar of migration folders.

Everything here works on bounded chunks: memory stays flat whatever the size of the dump. The SHA-256 recorded
for a payload is that of the compressed file, so verification never needs to decompress.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import zstandard

from ..errors import IntegrityError
from .confine import check_member_path
from .fsutil import Writeback, create_private

CHUNK = 1 << 20
FILE_MODE = 0o644  # restored migration files: never the archive's mode bits (a forged 0777 or setuid stays out)
FOLDER_MODE = 0o755
LEVEL = 3
MAX_THREADS = 4


@dataclass(frozen=True)
class PayloadInfo:
    """What the manifest records for one payload file."""

    bytes: int
    sha256: str
    raw_bytes: int


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to ``f``."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.sha.update(b)
        self.count += len(b)
        self.f.write(b)
        return len(b)


def _compressor() -> zstandard.ZstdCompressor:
    # Several workers keep compression ahead of pg_dump; each holds its own buffers, so their number is capped
    # (one level-3 worker already does ~200 MB/s): memory stays flat on a 64-core server too.
    return zstandard.ZstdCompressor(level=LEVEL, threads=min(os.cpu_count() or 1, MAX_THREADS), write_checksum=True)


def compress_chunks(chunks: Iterable[bytes], dest: Path, progress: Callable[[int], None] | None = None) -> PayloadInfo:
    """Compress ``chunks`` into a new file ``dest`` (created 0600, fsynced), hashing the compressed bytes.

    ``progress`` is called with the number of uncompressed bytes taken, for progress reporting.
    """
    raw = 0
    with create_private(dest, buffering=CHUNK) as f:
        hf = _HashingFile(f)
        wb = Writeback(f.fileno())
        with _compressor().stream_writer(hf, closefd=False) as w:
            for chunk in chunks:
                raw += len(chunk)
                if progress:
                    progress(len(chunk))
                w.write(chunk)
                wb.wrote(hf.count)
        f.flush()
        os.fsync(f.fileno())
    return PayloadInfo(bytes=hf.count, sha256=hf.sha.hexdigest(), raw_bytes=raw)


def read_chunks(f: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    """Yield ``f``'s bytes in chunks until EOF."""
    while chunk := f.read(size):
        yield chunk


def decompressed_chunks(path: Path, on_compressed: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """Yield the decompressed content of a zstd file; raise IntegrityError if it is truncated or corrupt.

    ``on_compressed`` is called with the number of compressed bytes consumed, for progress reporting.
    """
    dctx = zstandard.ZstdDecompressor()
    obj = dctx.decompressobj()
    seen_frame = False
    frames = 0
    try:
        with open(path, "rb") as f:
            for chunk in read_chunks(f):
                if on_compressed:
                    on_compressed(len(chunk))
                data = chunk
                while data:
                    out = obj.decompress(data)
                    seen_frame = True
                    if out:
                        yield out
                    if obj.eof:
                        # Several frames may follow each other; start a new decompressor on the rest.
                        frames += 1
                        data = obj.unused_data
                        obj = dctx.decompressobj()
                        seen_frame = False
                    else:
                        data = b""
    except zstandard.ZstdError as e:
        raise IntegrityError(f"{path.name}: corrupt zstd data ({e})") from e
    if frames == 0 and not seen_frame:
        raise IntegrityError(f"{path.name}: empty payload (no zstd frame)")
    if seen_frame:
        raise IntegrityError(f"{path.name}: truncated zstd stream (the last frame is incomplete)")


def decompress_to(path: Path, dest: Path, progress: Callable[[int], None] | None = None, durable: bool = False) -> None:
    """Decompress the zstd file ``path`` into the new private file ``dest`` (FileExistsError if it exists),
    fsynced with ``durable``. IntegrityError if the stream is corrupt; the caller removes a partial ``dest``."""
    with create_private(dest, buffering=CHUNK) as f:
        wb = Writeback(f.fileno()) if durable else None
        written = 0
        for chunk in decompressed_chunks(path, progress):
            f.write(chunk)
            if wb is not None:
                written += len(chunk)
                wb.wrote(written)
        if durable:
            f.flush()
            os.fsync(f.fileno())


def check_stream(path: Path) -> int:
    """Read a zstd file to its end without writing anything; return the decompressed size."""
    return sum(len(c) for c in decompressed_chunks(path))


class _ChunkReader(io.RawIOBase):
    """A file-like reader over an iterator of chunks (lets ``tarfile`` read a decompressed stream)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        while not self.buf:
            try:
                self.buf = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


def _skip(name: str) -> bool:
    return name == "__pycache__" or name.endswith((".pyc", ".pyo"))


def list_folder(folder: Path) -> list[Path]:
    """The files of a migration folder that a snapshot keeps: everything but bytecode caches, sorted."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _skip(d))
        out.extend(Path(dirpath) / n for n in sorted(filenames) if not _skip(n))
    return out


def pack_folders(root: Path, folders: list[str], dest: Path) -> tuple[PayloadInfo, list[dict]]:
    """Tar + zstd the given folders (paths relative to ``root``) into ``dest``.

    Returns the payload info and one ``{path, bytes, sha256}`` entry per file, paths relative to ``root``.
    """
    files: list[dict] = []
    with create_private(dest) as f:
        hf = _HashingFile(f)
        with _compressor().stream_writer(hf, closefd=False) as zw, tarfile.open(fileobj=zw, mode="w|") as tar:
            for rel in folders:
                base = root / rel
                for path in list_folder(base):
                    relpath = path.relative_to(root).as_posix()
                    data = path.read_bytes()
                    info = tar.gettarinfo(str(path), arcname=relpath)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                    files.append({"path": relpath, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        f.flush()
        os.fsync(f.fileno())
    return PayloadInfo(bytes=hf.count, sha256=hf.sha.hexdigest(), raw_bytes=sum(x["bytes"] for x in files)), files


def open_archive(path: Path) -> tarfile.TarFile:
    """A migrations archive opened for streaming reads (``for member in tar``), decompressed on the fly."""
    return tarfile.open(fileobj=io.BufferedReader(_ChunkReader(decompressed_chunks(path)), CHUNK), mode="r|")


def member_kind(m: tarfile.TarInfo) -> str:
    """What a tar member is, in words: "file", "folder", "symlink", "hardlink", "device", "FIFO" or "special"."""
    if m.isfile():
        return "file"
    if m.isdir():
        return "folder"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    if m.ischr() or m.isblk():
        return "device"
    if m.isfifo():
        return "FIFO"
    return "special"


def _mode_like(replaced: Path | None, default: int) -> int:
    """The permission bits of the file or folder being replaced (without setuid/setgid/sticky), else ``default``."""
    try:
        return os.stat(replaced).st_mode & 0o777 if replaced is not None else default
    except OSError:
        return default


def unpack_folders(src: Path, targets: dict[str, Path], live: dict[str, Path] | None = None) -> None:
    """Extract the archive's files into staging folders.

    ``targets`` maps each archived folder (relative path) to the directory its content goes to; ``live`` maps it
    to the folder it will replace, whose files' modes are kept (0644 files / 0755 folders where there is none).
    Members must be regular files or directories under one of those folders; anything else is an integrity
    error. The archive's own mode bits are never applied.
    """
    live = live or {}
    for folder, t in targets.items():
        t.mkdir(parents=True, exist_ok=True)
        os.chmod(t, _mode_like(live.get(folder), FOLDER_MODE))
    folders = list(targets)
    with open_archive(src) as tar:
        for m in tar:
            rel = check_member_path(m.name.rstrip("/"), folders, src.name)
            folder = next(d for d in sorted(folders, key=len, reverse=True) if rel.startswith(d.rstrip("/") + "/"))
            sub = PurePosixPath(rel).relative_to(folder)
            dest = targets[folder] / sub
            replaced = live[folder] / sub if folder in live else None
            kind = member_kind(m)
            if kind == "folder":
                dest.mkdir(parents=True, exist_ok=True)
                os.chmod(dest, _mode_like(replaced, FOLDER_MODE))
                continue
            if kind != "file":
                raise IntegrityError(f"{src.name}: {m.name} is a {kind}, not a regular file")
            dest.parent.mkdir(parents=True, exist_ok=True)
            fobj = tar.extractfile(m)
            assert fobj is not None
            try:
                # O_EXCL: never written through a file or symlink already there (a member given twice).
                with create_private(dest) as out:
                    for chunk in read_chunks(fobj):  # type: ignore[arg-type]
                        out.write(chunk)
            except FileExistsError:
                raise IntegrityError(f"{src.name}: {m.name} appears twice in the archive") from None
            os.chmod(dest, _mode_like(replaced, FILE_MODE))
            os.utime(dest, (m.mtime, m.mtime))
