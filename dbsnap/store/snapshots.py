"""The on-disk snapshot store: staged in ``.tmp/``, committed by rename, never modified after commit.

A snapshot is visible in the store only once complete: payloads and manifest are written into a staging folder
under ``.tmp/``, fsynced, then the folder is renamed into place. Kill -9 at any moment leaves either no snapshot
or a whole one; debris under ``.tmp/`` is removed by the next locked run.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .. import faults
from ..errors import ConfigError, IntegrityError, SnapshotNotFound, UsageError
from .fsutil import atomic_debris, atomic_write, exchange, fsync_dir, private_dir, remove_tree, sha256_file

FORMAT = "dbsnap-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MIGRATIONS_PAYLOAD = "migrations.tar.zst"  # the tar of the migration folders, beside the database payloads
TMP = ".tmp"
JOURNAL = ".journal.json"
MARKER = ".dbsnap-store"  # present in every store: how dbsnap tells its store from any other folder
MARKER_TEXT = '{"format": "dbsnap-store", "format_version": 1}\n'
# What a store made before the marker existed may hold besides snapshot folders: such a store is adopted.
_STORE_ENTRIES = {".gitignore", TMP, JOURNAL, ".lock", MARKER}
# Payload names a snapshot folder holds: a folder without a manifest is called damaged only if it has one.
_PAYLOAD_RE = re.compile(r"^(db-.+\.zst|migrations\.tar\.zst)$")
MAX_NAME = 100
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Fields changed after commit: pin/unpin, and ``rearmed`` (the clone made again after ``rollback
# --consume-clone`` renamed the recorded one into place: ``{alias: {name, oid}}``, written only by dbsnap);
# everything else is sealed by manifest_sha256 (and the keyed seal).
MUTABLE_FIELDS = ("pinned", "manifest_sha256", "seal", "rearmed")
REQUIRED_FIELDS = (
    "format",
    "format_version",
    "name",
    "created_at",
    "origin",
    "databases",
    "migrations",
    "files",
)


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid snapshot name, else raise UsageError saying why."""
    if not name:
        raise UsageError("invalid snapshot name: empty")
    if len(name) > MAX_NAME:
        raise UsageError(f"invalid snapshot name {name[:20]!r}...: longer than {MAX_NAME} characters")
    if ".." in name or "/" in name or "\\" in name:
        raise UsageError(f"invalid snapshot name {name!r}: no path separators or '..'")
    if name.startswith("."):
        raise UsageError(f"invalid snapshot name {name!r}: must not start with a dot")
    if not _NAME_RE.match(name):
        raise UsageError(
            f"invalid snapshot name {name!r}: use letters, digits, '.', '_' and '-' only (no path separators or '..')"
        )
    if name == "latest":
        raise UsageError("invalid snapshot name 'latest': it is reserved for the newest snapshot")
    return name


def canonical(manifest: dict) -> bytes:
    """The canonical JSON of the manifest's sealed fields: what the checksum and the keyed seal cover."""
    sealed = {k: v for k, v in manifest.items() if k not in MUTABLE_FIELDS}
    return json.dumps(sealed, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def manifest_digest(manifest: dict) -> str:
    """SHA-256 over the canonical JSON of the manifest's sealed fields (catches accidents, not forgers)."""
    return hashlib.sha256(canonical(manifest)).hexdigest()


def dump_manifest(manifest: dict) -> str:
    manifest = dict(manifest)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def _is_manifest(path: Path) -> bool:
    try:
        return path.is_file() and json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _looks_like_snapshot(folder: Path) -> bool:
    try:
        return any(p.name == MANIFEST or _PAYLOAD_RE.match(p.name) for p in folder.iterdir())
    except OSError:
        return False


@dataclass
class Snapshot:
    """A committed snapshot: its folder and parsed manifest."""

    name: str
    path: Path
    manifest: dict

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest["created_at"].replace("Z", "+00:00"))

    @property
    def pinned(self) -> bool:
        return bool(self.manifest.get("pinned"))

    @property
    def origin(self) -> str:
        return self.manifest.get("origin", "manual")

    @property
    def size(self) -> int:
        return sum(f["bytes"] for f in self.manifest.get("files", {}).values())

    @property
    def databases(self) -> dict:
        """The manifest's databases, each with its current clone (a re-armed one replaces the recorded one)."""
        dbs = self.manifest.get("databases", {})
        rearmed = self.manifest.get("rearmed")
        if not isinstance(rearmed, dict) or not rearmed or not isinstance(dbs, dict):
            return dbs
        return {a: {**d, "clone": rearmed[a]} if a in rearmed and isinstance(d, dict) else d for a, d in dbs.items()}

    def dumped_clone_files(self) -> set[str]:
        """The kept database files of databases that also have a dump (SQLite ``save --clone``)."""
        return {
            d["clone"]["file"]
            for d in self.databases.values()
            if isinstance(d, dict)
            and d.get("payload") is not None
            and isinstance(d.get("clone"), dict)
            and isinstance(d["clone"].get("file"), str)
        }

    def clone_files(self) -> dict[str, str]:
        """``{file: sha256}`` of the database files kept in the snapshot folder (clone-only SQLite databases)."""
        out = {}
        for d in self.manifest.get("databases", {}).values():
            clone = d.get("clone") if isinstance(d, dict) else None
            if isinstance(clone, dict) and isinstance(clone.get("file"), str):
                out[clone["file"]] = str(clone.get("sha256"))
        return out


class Store:
    """A snapshot store rooted at a folder (``snapshots/`` by default)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    @property
    def tmp(self) -> Path:
        return self.root / TMP

    @property
    def journal_path(self) -> Path:
        return self.root / JOURNAL

    def is_store(self) -> bool:
        """True for a folder that is a dbsnap store: it has the marker, or (made before the marker) holds
        snapshots or only what a store holds."""
        if (self.root / MARKER).is_file():
            return True
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return False
        if not entries:
            return False
        if any(p.is_dir() and _is_manifest(p / MANIFEST) for p in entries if not p.name.startswith(".")):
            return True
        gi = self.root / ".gitignore"
        return {p.name for p in entries} <= _STORE_ENTRIES and gi.is_file() and gi.read_text() == "*\n"

    def check_usable(self) -> None:
        """ConfigError (nothing written) when the folder exists, is not empty and is not a dbsnap store."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"the store {self.root} is not a folder")
        if self.root.is_dir() and any(self.root.iterdir()) and not self.is_store():
            raise ConfigError(
                f"{self.root} is not a dbsnap store (no {MARKER}) and is not empty; refusing to use it",
                hint="point --store / DBSNAP_DIR at an empty or new folder",
            )

    def ensure(self) -> None:
        """Create the store (0700) with its marker, ``.gitignore`` and staging folder if missing; refuse a
        non-empty folder that is not a store before changing anything in it."""
        self.check_usable()
        if not self.root.exists():
            self._create()
        private_dir(self.root)
        if not (self.root / MARKER).is_file():
            atomic_write(self.root / MARKER, MARKER_TEXT)
        gi = self.root / ".gitignore"
        if not gi.exists():
            atomic_write(gi, "*\n")
        private_dir(self.tmp)

    def _create(self) -> None:
        """Make a new store whole or not at all: its skeleton is built in a private folder beside it and renamed
        into place, so a concurrent dbsnap never sees a half-made store (a folder without its marker, which it
        would refuse as "not a dbsnap store"). When another process wins the race, its store is used."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        building = private_dir(self.root.parent / f".{self.root.name}.{secrets.token_hex(4)}.new")
        try:
            atomic_write(building / MARKER, MARKER_TEXT)
            atomic_write(building / ".gitignore", "*\n")
            private_dir(building / TMP)
            try:
                os.rename(building, self.root)  # fails when the store appeared meanwhile
            except OSError:
                if not self.root.is_dir():
                    raise
            else:
                fsync_dir(self.root.parent)
        finally:
            remove_tree(building)

    def clean_tmp(self) -> list[str]:
        """Remove debris left by killed runs: everything in ``.tmp/``, and the temporary files of interrupted
        atomic writes anywhere in the store (its root: the journal, ``.gitignore``; each snapshot folder: a
        manifest being re-pinned). Call only while holding the store lock."""
        removed = []
        if self.tmp.is_dir():
            for p in self.tmp.iterdir():
                remove_tree(p)
                removed.append(p.name)
        if not self.root.is_dir():
            return removed
        folders = [self.root] + [p for p in self.root.iterdir() if p.is_dir() and p.name != TMP and not p.is_symlink()]
        for folder in folders:
            for p in atomic_debris(folder):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                removed.append(p.relative_to(self.root).as_posix())
        return removed

    # -- staging and commit -------------------------------------------------------------------------------

    def stage(self, name: str) -> Path:
        """A fresh private staging folder for snapshot ``name``."""
        self.ensure()
        path = self.tmp / f"{name}.{secrets.token_hex(4)}"
        path.mkdir(mode=0o700)
        return path

    def commit(self, staged: Path, name: str, force: bool = False) -> Snapshot:
        """Move a complete staged snapshot into place; with ``force`` replace an existing one atomically."""
        validate_name(name)
        for p in staged.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(staged)
        dest = self.root / name
        faults.point("store.before-commit")
        if dest.exists():
            if not force:
                raise UsageError(f"snapshot {name!r} already exists", hint="use --force to replace it")
            if not exchange(staged, dest):
                # No atomic exchange here: move the old one aside first; a crash between the two renames
                # leaves the old snapshot in .tmp, and the new one too, which is the best this file system allows.
                aside = self.tmp / f"{name}.replaced.{secrets.token_hex(4)}"
                os.rename(dest, aside)
                os.rename(staged, dest)
                staged = aside
            remove_tree(staged)
        else:
            os.rename(staged, dest)
        fsync_dir(self.root)
        return self.get(name)

    # -- reading ------------------------------------------------------------------------------------------

    def _load(self, path: Path) -> Snapshot | None:
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict):
            return None
        return Snapshot(name=path.name, path=path, manifest=manifest)

    def list(self) -> list[Snapshot]:
        """Committed snapshots, oldest first (ties by name)."""
        if not self.root.is_dir() or not self.is_store():
            return []
        snaps = []
        for p in self.root.iterdir():
            if p.name.startswith(".") or not p.is_dir():
                continue
            s = self._load(p)
            if s is None:
                continue
            try:
                s.created_at  # noqa: B018 - a manifest whose date does not parse is damaged, not listed
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            snaps.append(s)
        return sorted(snaps, key=lambda s: (s.created_at, s.name))

    def damaged(self) -> list[str]:
        """Folders that look like snapshots (a manifest.json or a payload file) but have no usable manifest: not
        listed, removable by delete --force. Any other folder is not dbsnap's and is never called damaged."""
        if not self.root.is_dir() or not self.is_store():
            return []
        good = {s.name for s in self.list()}
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name not in good and _looks_like_snapshot(p)
        )

    def exists(self, name: str) -> bool:
        return (self.root / name / MANIFEST).is_file()

    def get(self, name: str) -> Snapshot:
        """The snapshot called ``name`` (``latest`` = the newest one not taken by a rollback as its safety
        snapshot); SnapshotNotFound suggests close names."""
        snaps = self.list()
        if name == "latest":
            # A rollback's own safety snapshot is its undo, not "the latest state to go back to": counting it
            # would make 'rollback latest' twice in a row flip between the two states.
            chosen = [s for s in snaps if s.origin != "pre-rollback"]
            if not chosen:
                raise SnapshotNotFound(
                    f"no snapshots in {self.root}"
                    if not snaps
                    else "'latest' skips rollback safety snapshots, and there is no other snapshot",
                    hint="create one with 'dbsnap save'" if not snaps else f"name it: {snaps[-1].name}",
                )
            return chosen[-1]
        if not name.startswith(".") and "/" not in name:
            for s in snaps:
                if s.name == name:
                    return s
        if _NAME_RE.match(name) and name in self.damaged():
            # The folder is there but list() skipped it: a damaged snapshot, not a missing one.
            raise IntegrityError(
                f"snapshot {name!r} is damaged: {MANIFEST} is missing, unreadable or incomplete",
                hint=f"'dbsnap delete {name} --force' removes it",
            )
        close = difflib.get_close_matches(name, [s.name for s in snaps], n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "run 'dbsnap list' to see the snapshots"
        raise SnapshotNotFound(f"snapshot {name!r} not found in {self.root}", hint=hint)

    # -- changing ---------------------------------------------------------------------------------------------

    def delete(self, snap: Snapshot) -> None:
        """Remove a snapshot: it disappears at once (rename into .tmp), then its files are deleted."""
        self.ensure()
        aside = self.tmp / f"{snap.name}.deleted.{secrets.token_hex(4)}"
        os.rename(snap.path, aside)
        fsync_dir(self.root)
        remove_tree(aside)

    def set_pinned(self, snap: Snapshot, pinned: bool) -> Snapshot:
        """Pin or unpin a snapshot by rewriting its manifest atomically (the only post-commit change)."""
        self.verify_manifest(snap)
        manifest = dict(snap.manifest)
        manifest["pinned"] = pinned
        atomic_write(snap.path / MANIFEST, dump_manifest(manifest))
        return self.get(snap.name)

    # -- integrity ----------------------------------------------------------------------------------------

    def verify_manifest(self, snap: Snapshot) -> None:
        """Check the manifest's format, required fields and seal; raise IntegrityError naming the problem."""
        m = snap.manifest
        if m.get("format") != FORMAT:
            raise IntegrityError(f"snapshot {snap.name!r}: {MANIFEST} is not a dbsnap manifest")
        if m.get("format_version") != FORMAT_VERSION:
            raise IntegrityError(
                f"snapshot {snap.name!r}: unknown manifest format version {m.get('format_version')!r} "
                f"(this dbsnap reads version {FORMAT_VERSION})",
                hint="upgrade dbsnap",
            )
        missing = [k for k in REQUIRED_FIELDS if k not in m]
        if missing:
            raise IntegrityError(f"snapshot {snap.name!r}: {MANIFEST} lacks {', '.join(missing)}")
        if m.get("manifest_sha256") != manifest_digest(m):
            raise IntegrityError(f"snapshot {snap.name!r}: {MANIFEST} was modified after the snapshot was taken")

    def file_identity(self, snap: Snapshot) -> dict[str, tuple[int, int, int]]:
        """(inode, size, mtime) of every file: unchanged identity means unchanged bytes since a verification."""
        out = {}
        for p in sorted(snap.path.iterdir()):
            st = p.stat()
            out[p.name] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return out

    def verify_checksums(self, snap: Snapshot) -> None:
        """Check the manifest, then every payload's size and SHA-256; no extra or missing files allowed."""
        self.verify_manifest(snap)
        files: dict = snap.manifest["files"]
        present = {p.name for p in snap.path.iterdir()} - {MANIFEST}
        kept = snap.clone_files()
        extra = sorted(present - set(files) - set(kept))
        if extra:
            raise IntegrityError(f"snapshot {snap.name!r}: unexpected file {extra[0]} (not in the manifest)")
        dumped = snap.dumped_clone_files()
        for fname, sha in sorted(kept.items()):
            if fname in files:
                raise IntegrityError(f"snapshot {snap.name!r}: {fname} is both a payload and a kept database file")
            if not (snap.path / fname).is_file():
                if fname in dumped:
                    continue  # consumed by rollback --consume-clone and not re-armed: the dump is restored instead
                raise IntegrityError(
                    f"snapshot {snap.name!r} is clone-only and its kept database file {fname} vanished: "
                    "it holds no database"
                )
            if sha256_file(snap.path / fname) != sha:
                raise IntegrityError(f"snapshot {snap.name!r}: kept database file {fname} fails its SHA-256 checksum")
        for fname, meta in sorted(files.items()):
            path = snap.path / fname
            if not path.is_file():
                raise IntegrityError(f"snapshot {snap.name!r}: payload {fname} is missing")
            size = path.stat().st_size
            if size != meta["bytes"]:
                raise IntegrityError(
                    f"snapshot {snap.name!r}: payload {fname} is {size} bytes, the manifest says {meta['bytes']}"
                )
            if sha256_file(path) != meta["sha256"]:
                raise IntegrityError(f"snapshot {snap.name!r}: payload {fname} fails its SHA-256 checksum")

    # -- rollback journal -----------------------------------------------------------------------------------

    def has_journal(self) -> bool:
        return self.journal_path.exists()

    def read_journal(self) -> dict | None:
        """The journal as parsed JSON, unconfined: only display it; anything that acts on it takes it from
        ``pipelines.rollback.pending_journal``, which confines it first. IntegrityError if it is not JSON."""
        try:
            data = json.loads(self.journal_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise IntegrityError(
                f"the store's journal {self.journal_path} is unreadable ({e})",
                hint="restore the state by hand from its safety snapshot, then remove the journal",
            ) from e
        return data

    def write_journal(self, journal: dict) -> None:
        self.ensure()
        atomic_write(self.journal_path, json.dumps(journal, indent=2, sort_keys=True))

    def clear_journal(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.journal_path.unlink()
        fsync_dir(self.root)
