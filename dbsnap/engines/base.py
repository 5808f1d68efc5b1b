"""The Engine interface, and running external tools safely (argument lists, secrets in the environment).

A restore is split into steps so the rollback pipeline can make the pair (database, migration folders) switch
as one unit: ``prepare_restore`` builds the snapshot's database beside the live one without touching it,
``swap_in`` makes it live while keeping the old one, ``finish`` drops the old one, ``undo_swap`` puts it back and
``discard`` throws the prepared copy away. Each step takes and returns a JSON-able state, which the rollback
journal records so that a killed run can be finished or undone by the next one (``recover``).
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from .. import procs
from ..errors import ConfigError, ExternalError
from ..project.compose import Compose
from ..project.databases import Database
from ..schema import Prerequisite, Schema
from ..settings import Bounds
from ..store.archive import PayloadInfo, compress_chunks, decompress_to, decompressed_chunks, read_chunks

Progress = Callable[[int], None]
# A tool's stderr line -> True when it is only progress chatter (pg_restore --verbose), kept out of error tails.
LineWatcher = Callable[[str], bool]


def set_phase(progress: Progress | None, name: str, total: int | None = None, show_bytes: bool = True) -> None:
    """Tell a progress counter that phase ``name`` started (see ``report.ProgressCounter``); plain callables
    (tests, library callers) only count bytes, so this is a no-op for them."""
    phase = getattr(progress, "phase", None)
    if phase is not None:
        phase(name, total, show_bytes)


def set_total(progress: Progress | None, total: int, note: str = "") -> None:
    """What the bytes counted are measured against (an estimate is fine), and a note shown beside it."""
    f = getattr(progress, "set_total", None)
    if f is not None:
        f(total, note)


def note_item(progress: Progress | None, detail: str, count: bool = True) -> None:
    """One more object of the current phase (``report.ProgressCounter.item``; ``count`` False: only name what
    is being worked on); a no-op for plain callables."""
    item = getattr(progress, "item", None)
    if item is not None:
        item(detail, count)


@dataclass
class DumpResult:
    """A payload written by ``Engine.dump`` and the facts recorded with it in the manifest."""

    payload: PayloadInfo
    migrations: list[list[str]]
    tables: dict[str, int]
    meta: dict = field(default_factory=dict)


class Engine(ABC):
    """One database of one engine kind. Subclasses never print; they raise DbsnapError subclasses."""

    kind: ClassVar[str]
    payload_suffix: ClassVar[str]
    # Whether prepare_restore honours state["jobs"] (with "spool_dir" and "raw_bytes") for a parallel restore.
    parallel_restore: ClassVar[bool] = False
    # The plain dump of the ecosystem's own tools that a payload is, compressed: what export writes and import
    # takes. An engine whose payload is something else (a MySQL engine's SQL, say) overrides the three below.
    plain_format: ClassVar[str] = ""

    @classmethod
    def recognizes(cls, head: bytes) -> bool:
        """Whether a file starting with ``head`` (its first 64 bytes) is this engine's plain dump."""
        return False

    @classmethod
    def recognizes_sql(cls, head: bytes) -> bool:
        """Whether a file starting with ``head`` is this engine's plain-SQL dump (which ``import_sql`` loads)."""
        return False

    def import_sql(self, src, dest: Path, progress: Progress | None = None) -> PayloadInfo:
        """Make the payload ``dest`` from a plain-SQL dump read from ``src`` (engines that recognize one)."""
        raise NotImplementedError

    @classmethod
    def export_plain(cls, payload: Path, dest: Path, progress: Progress | None = None) -> None:
        """Write the plain dump of ``payload`` to the new file ``dest`` (fsynced)."""
        decompress_to(payload, dest, progress, durable=True)

    @classmethod
    def import_plain(cls, src, dest: Path, progress: Progress | None = None) -> PayloadInfo:
        """Make the payload ``dest`` from the plain dump read from the binary stream ``src``."""
        return compress_chunks(read_chunks(src), dest, progress)

    def __init__(self, db: Database, env: dict[str, str]) -> None:
        self.db = db
        self.env = env
        # Called with the restore state whenever an engine learns something recovery needs (the rollback
        # pipeline writes it to the journal before going on).
        self.checkpoint: Callable[[dict], None] = lambda state: None
        self._cache: dict = {}  # facts that do not change during one command (server version, tool paths)
        self.bounds = Bounds()  # how long to wait on the server; the context sets the configured ones
        # The compose project whose db service runs this engine's tools (project/compose.py), when configured.
        self.compose: Compose | None = None

    def end_sessions(self, keep_idle: bool = False) -> list[str]:
        """End the other sessions on the live database before anything is changed (a rollback or reset, before
        its safety snapshot), within ``bounds.terminate_timeout``; the ones ended, described. An error naming
        the sessions that could not be ended. Engines without sessions (SQLite) have nothing to end."""
        return []

    def payload_name(self) -> str:
        return f"db-{self.db.alias}{self.payload_suffix}"

    @abstractmethod
    def preflight(self, for_restore: bool = False) -> dict:
        """Check the database is reachable and the tools usable; return versions and facts for the manifest."""

    @abstractmethod
    def dump(self, dest: Path, progress: Progress | None = None, dbname: str | None = None) -> DumpResult:
        """Write a consistent compressed copy of the database (or of ``dbname``, a clone) to the new file ``dest``."""

    @abstractmethod
    def migration_rows(self) -> list[list[str]]:
        """The live ``django_migrations`` rows as ``[app, name]``, in id order (empty if there is no table)."""

    @abstractmethod
    def drop_everything(self) -> None:
        """Remove every object (tables, views, sequences, types, functions) of the live database; the database
        itself, its owner, encoding, settings and grants stay."""

    @abstractmethod
    def restored_facts(self, payload: Path) -> dict:
        """Restore ``payload`` into a temporary database (dropped afterwards, also on Ctrl-C) and return its
        ``{"tables": {table: rows}, "migrations": [[app, name], ...]}``; the live database is not touched."""

    def other_sessions(self) -> list[str]:
        """Other open sessions on the live database, described one per line (engines with sessions only)."""
        return []

    # -- reset: what the database needs, and the proof that a history builds an empty one ---------------------

    def prerequisites(self) -> list[Prerequisite]:
        """Extensions, collations and the like that the live database has and migrations never write (in an
        order they can be created in); none for engines without such objects."""
        return []

    @abstractmethod
    def describe_schema(self, target: str | None = None) -> Schema:
        """The schema of the live database, or of scratch database ``target`` (see :mod:`dbsnap.schema`)."""

    def can_create_scratch(self) -> bool:
        """Whether this role may create the scratch database (PostgreSQL: CREATEDB, as the swap restore needs)."""
        return True

    @abstractmethod
    def create_scratch(self) -> str:
        """Create an empty database named by dbsnap's pattern for this one, for the project to migrate from
        nothing; return its name (a database name, or a file path), to pass to ``describe_schema``."""

    @abstractmethod
    def drop_scratch(self, target: str) -> None:
        """Remove a database made by ``create_scratch`` (idempotent)."""

    # -- reset --keep-data: the history rewritten in place, the data never touched --------------------------

    def replace_migration_rows(self, apps: list[str], rows: list[tuple[str, str]]) -> None:
        """In ONE transaction: delete the ``django_migrations`` rows of ``apps`` and insert ``rows`` ((app, name),
        in this order, applied = now). Killed at any moment, the table holds wholly the old rows or wholly the
        new ones; nothing else of the database is touched."""
        raise ConfigError(f"reset --keep-data is not supported on {self.kind} databases yet")

    def object_definitions(self) -> list[tuple[str, str, str, str]]:
        """The live database's objects that migrations cannot regenerate and ``--carry-sql`` can write as RunSQL:
        ``(kind, name, create_sql, drop_sql)``, with kind and name as :meth:`describe_schema` lists them under
        ``extras`` (functions, views, triggers), in an order they can be created in. None where unsupported."""
        return []

    # -- the live database kept aside by rename and put back (O(1)); PostgreSQL and SQLite -------------------

    def keep_as_clone(self, target) -> object:
        """Move the live database aside to ``target`` (PostgreSQL: a database name, sealed; SQLite: a file path),
        leaving no live database; see the engines' own docstrings for what they return."""
        raise ConfigError(f"keeping the live database aside is not supported on {self.kind} databases")

    def put_clone_in_place(self, source, expected) -> None:
        """Make ``source`` (kept by :meth:`keep_as_clone`) the live database again; refuses when one is live."""
        raise ConfigError(f"putting a kept database in place is not supported on {self.kind} databases")

    # -- the replaced database kept as the rollback's safety snapshot (clone-only), instead of dumped first ----

    def can_keep_replaced(self) -> bool:
        """Whether a restore can keep the database it replaces (see :meth:`keep_replaced`). The default (MySQL,
        PostgreSQL restoring in one transaction): no, the rollback dumps a safety snapshot first."""
        return False

    def keep_replaced(self, state: dict, clone_name: str, folder: Path) -> dict:
        """Arrange, before anything is created, that the database ``swap_in`` replaces is kept instead of
        dropped by ``finish``: PostgreSQL renames it to the sealed clone ``clone_name``; SQLite moves the file
        into ``folder`` (the staged safety snapshot). Returns the state (to be journaled)."""
        raise ConfigError(f"keeping the replaced database is not supported on {self.kind} databases")

    def dump_kept(self, dest: Path, clone: dict, folder: Path, progress: Progress | None = None) -> DumpResult:
        """Write the dump of a clone-only snapshot's database (its ``clone``, in ``folder`` for a file) to ``dest``."""
        raise ConfigError(f"clone-only snapshots are not supported on {self.kind} databases")

    def kept_clone(self, state: dict) -> tuple[dict, int]:
        """After ``finish``: the manifest's ``clone`` entry for the kept database and its size in bytes."""
        raise ConfigError(f"keeping the replaced database is not supported on {self.kind} databases")

    @abstractmethod
    def new_restore_state(self, payload: Path | None, saved: dict | None = None, consume: bool = False) -> dict:
        """Choose the names a restore will use (recorded in the journal before anything is created).

        ``payload`` None: the snapshot is clone-only (``saved["clone"]``, no dump); ``consume``: a clone is moved
        into place instead of copied (engines with clones; the others ignore it)."""

    @abstractmethod
    def prepare_restore(self, state: dict, progress: Progress | None = None) -> dict:
        """Build the snapshot's database beside the live one; the live one is not touched."""

    @abstractmethod
    def swap_in(self, state: dict) -> dict:
        """Make the prepared database live, keeping the old one; all or nothing."""

    @abstractmethod
    def undo_swap(self, state: dict) -> None:
        """Put the old database back after ``swap_in`` (idempotent)."""

    @abstractmethod
    def finish(self, state: dict) -> None:
        """Drop the old database kept by ``swap_in`` (idempotent)."""

    @abstractmethod
    def discard(self, state: dict) -> None:
        """Throw away a prepared database that was never swapped in (idempotent)."""

    @abstractmethod
    def is_swapped(self, state: dict) -> bool:
        """Whether ``swap_in`` took effect, judged from the database itself (used by recovery)."""


def tool_command(env: dict[str, str], var: str, default: str, bin_dir: str | None = None) -> list[str]:
    """The command for an external tool: ``$var`` (a command line, e.g. run inside a container), else the binary
    in ``bin_dir``, else ``default`` on PATH. Raise ExternalError naming the tool when it cannot be found."""
    if env.get(var):
        return shlex.split(env[var])
    if bin_dir:
        cand = Path(bin_dir) / default
        if cand.exists():
            return [str(cand)]
    found = shutil.which(default, path=env.get("PATH"))
    if not found:
        raise ExternalError(
            f"{default} not found on PATH",
            hint=f"install the client tools (e.g. postgresql-client) or set {var} or DBSNAP_PG_BIN",
        )
    return [found]


def run(argv: list[str], env: dict[str, str], what: str, timeout: float | None = None) -> str:
    """Run a tool to completion and return its stdout; ExternalError with the tail of stderr on failure."""
    try:
        proc = procs.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except FileNotFoundError as e:
        raise ExternalError(f"{what}: {argv[0]} not found") from e
    except subprocess.TimeoutExpired as e:
        raise ExternalError(f"{what}: {argv[0]} did not finish within {timeout:.0f} s") from e
    if proc.returncode != 0:
        raise ExternalError(f"{what} failed: {tail(proc.stderr) or f'exit code {proc.returncode}'}")
    return proc.stdout


def feed(
    argv: list[str],
    payload: Path,
    progress: Progress | None,
    env: dict,
    what: str,
    head: str = "",
    watch: LineWatcher | None = None,
    through: Callable[[Iterator[bytes]], Iterator[bytes]] | None = None,
) -> None:
    """Stream the decompressed payload (after ``head``) into a tool's stdin; ExternalError with the tail of its
    stderr if it fails. The tool is killed on any exception (Ctrl-C, a corrupt payload). With ``watch``, each
    stderr line is shown to it as it comes (phases for the progress line); lines it calls chatter are not kept.
    With ``through``, the decompressed chunks pass that filter on their way."""
    with stderr_file() as err:
        proc = procs.spawn(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE if watch else err, env=env
        )
        assert proc.stdin is not None
        reader = _watch_stderr(proc, err, watch) if watch else None
        try:
            try:
                if head:
                    proc.stdin.write(head.encode())
                chunks = decompressed_chunks(payload, progress)
                for chunk in through(chunks) if through else chunks:
                    proc.stdin.write(chunk)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the tool stopped reading: its exit code and stderr say why
            rc = proc.wait()
        except BaseException:
            procs.kill(proc)
            raise
        finally:
            if reader is not None:
                reader.join()
        if rc != 0:
            raise ExternalError(f"{what} failed: {read_tail(err) or f'exit code {rc}'}")


def run_watched(argv: list[str], env: dict, what: str, watch: LineWatcher) -> None:
    """Run a tool to completion, each stderr line shown to ``watch`` as it comes; ExternalError with the tail
    of the lines it kept on failure. The tool is killed on any exception (Ctrl-C)."""
    with stderr_file() as err:
        proc = procs.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        reader = _watch_stderr(proc, err, watch)
        try:
            rc = proc.wait()
        except BaseException:
            procs.kill(proc)
            raise
        finally:
            reader.join()
        if rc != 0:
            raise ExternalError(f"{what} failed: {read_tail(err) or f'exit code {rc}'}")


def _watch_stderr(proc: subprocess.Popen, err, watch: LineWatcher) -> threading.Thread:
    """A thread reading ``proc``'s stderr line by line until it closes: each line goes to ``watch``, and those
    that are not chatter to ``err`` (the file the error tail is read from), so unbounded output never fills a
    pipe or memory."""
    assert proc.stderr is not None
    stream = proc.stderr

    def pump() -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            try:
                chatter = watch(line)
            except Exception:  # a progress display must never break a restore
                chatter = False
            if not chatter:
                err.write(raw)
        stream.close()

    t = threading.Thread(target=pump, name="dbsnap-stderr", daemon=True)
    t.start()
    return t


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when empty)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def tail(text: str, lines: int = 3) -> str:
    """The last non-empty lines of a tool's output, joined into one line."""
    rows = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(rows[-lines:])


class BackgroundCompress:
    """A dump tool's output compressed into ``dest`` in a thread, while the caller does its own work on the same
    snapshot (counting rows, releasing a lock). An error there kills the tool's group (so it never blocks on a full
    pipe) and calls ``on_error``; :meth:`finish` raises it, or the tool's failure with the tail of its stderr."""

    def __init__(
        self,
        proc: subprocess.Popen,
        chunks: Iterable[bytes],
        dest: Path,
        progress: Progress | None,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        self.proc, self._chunks, self._dest, self._progress, self._on_error = proc, chunks, dest, progress, on_error
        self.info: PayloadInfo | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._pump, name="dbsnap-compress", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            self.info = compress_chunks(self._chunks, self._dest, self._progress)
        except BaseException as e:
            self.error = e
            self._on_error()
            procs.kill_group(self.proc)

    def join(self) -> int:
        """Wait for the thread and the tool (joined in steps, so Ctrl-C is not held up); the tool's exit code."""
        while self._thread.is_alive():
            self._thread.join(0.2)
        return self.proc.wait()

    def result(self, what: str, err) -> PayloadInfo:
        """After :meth:`join`: the payload written, or the thread's error, or the tool's failure (``what failed:``
        and the tail of its stderr)."""
        rc = self.join()
        if self.error is not None:
            raise self.error
        if rc != 0:
            raise ExternalError(f"{what} failed: {read_tail(err) or f'exit code {rc}'}")
        assert self.info is not None
        return self.info


@contextlib.contextmanager
def stderr_file():
    """A temporary file for a child's stderr: unbounded output never fills a pipe or memory."""
    with tempfile.TemporaryFile(mode="w+b") as f:
        yield f


def read_tail(f) -> str:
    f.seek(0, 2)
    size = f.tell()
    f.seek(max(0, size - 8192))
    return tail(f.read().decode(errors="replace"))
