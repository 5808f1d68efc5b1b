"""Confinement: the one place that decides whether a path or database name read from disk may be used.

A manifest, an archive and a journal are bytes anyone who can write the store could have written. Before
dbsnap deletes, replaces, restores into or drops anything those bytes name, the name goes through here:

- a migration folder must be one of the project's own migration folders as discovered *now*;
- an archive member or a manifest file entry must be a regular file (or folder) inside one of those folders;
- a payload must be a plain file name inside the snapshot folder;
- a path in a journal must be inside the store, or be one of the live/staged/backup paths dbsnap derives for a
  migration folder or a SQLite database of this project;
- a database name in a journal or manifest must be the live name of one of this project's databases, or a
  name dbsnap derives from it (``<live>_dbsnap_<kind>_<hex...>``).

Anything else raises :class:`IntegrityError` (exit 6) before anything is touched. The rules take plain data
(:class:`Rules`), so this module depends on nothing above the store.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, IntegrityError

# Keys of a journal's database state that hold database names (PostgreSQL); a new journal field that holds a
# database name should use one of these or end in "_db", so that it is confined without a change here.
DB_NAME_KEYS = frozenset({"live", "scratch", "old", "clone", "new", "target", "source"})
# Engines whose journal states name databases (schemas) on a server, rather than files.
SERVER_KINDS = frozenset({"postgresql", "mysql"})
# What dbsnap derives from a live PostgreSQL name: "<live[:N]>_dbsnap_<kind>_<hex>[_<hex>...]".
_DERIVED_RE = re.compile(r"^(?P<base>.*)_dbsnap_[a-z]+(?:_[0-9a-f]+)+$")
# Derived SQLite siblings of a live file "x": "x.dbsnap-<kind>", ".x.dbsnap-<kind>-<hex>", and SQLite's own
# "-wal" / "-shm" / "-journal" files of either.
_SQLITE_SUFFIX_RE = re.compile(r"^(?:\.dbsnap-[a-z]+(?:-[0-9a-f]+)?)?(?:-wal|-shm|-journal)?$")


@dataclass(frozen=True)
class DatabaseRule:
    alias: str
    kind: str
    name: str  # PostgreSQL database name, or the SQLite file's absolute path


@dataclass
class Rules:
    """What this project allows: its root, its migration folders (relative), its store and its databases.

    ``folders`` None means the project is unknown (a store read outside any project): paths are then only
    checked for shape, and nothing may be restored.
    """

    root: Path | None
    folders: list[str] | None
    store: Path
    databases: list[DatabaseRule] = field(default_factory=list)


def _rel_path(value: object, what: str) -> PurePosixPath:
    """A relative POSIX path without '..', empty parts or a leading slash; IntegrityError otherwise."""
    if not isinstance(value, str) or not value or "\\" in value or "\0" in value:
        raise IntegrityError(f"{what}: invalid path {value!r}")
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts or value.startswith("/") or p.as_posix() != value.rstrip("/"):
        raise IntegrityError(f"{what}: path {value!r} escapes its folder (absolute, '..' or not normalized)")
    return p


def _resolved_inside(path: Path, base: Path) -> bool:
    """True when ``path`` (symlinks resolved) is ``base`` or lies under it."""
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(base))
    except ValueError:
        return False
    return True


def check_folder(rules: Rules, value: object, what: str) -> str:
    """A migration folder path from a manifest or journal: one of the project's own folders, inside its root."""
    rel = _rel_path(value, what).as_posix()
    if rules.folders is None:
        return rel
    if rel not in rules.folders:
        raise IntegrityError(f"{what}: {rel!r} is not one of this project's migration folders")
    if rules.root is not None and not _resolved_inside(rules.root / rel, rules.root):
        raise IntegrityError(f"{what}: {rel!r} resolves outside the project root")
    return rel


def folder_of(path: str, folders: list[str]) -> str | None:
    """The folder of ``folders`` that ``path`` (relative) lies in, the deepest one first."""
    for d in sorted(folders, key=len, reverse=True):
        if path.startswith(d.rstrip("/") + "/"):
            return d
    return None


def check_member_path(value: object, folders: list[str], what: str) -> str:
    """A file path from an archive or a manifest's file list: relative, and inside one of ``folders``."""
    rel = _rel_path(value, what).as_posix()
    if folder_of(rel, folders) is None:
        raise IntegrityError(f"{what}: {rel} is outside the snapshot's migration folders")
    return rel


def check_payload(value: object, snap_dir: Path, what: str) -> str:
    """A payload file name: a plain name in the snapshot folder (no separator, no dot start)."""
    if not isinstance(value, str) or not value or "/" in value or "\\" in value or value.startswith("."):
        raise IntegrityError(f"{what}: payload {value!r} is not a file name inside the snapshot folder")
    if not _resolved_inside(snap_dir / value, snap_dir):
        raise IntegrityError(f"{what}: payload {value!r} resolves outside the snapshot folder")
    return value


def derived_db_name(rules: Rules, alias: str | None, value: object, what: str) -> str:
    """A PostgreSQL database (or MySQL schema) name: a live name of this project or one dbsnap derives from it."""
    pg = [d for d in rules.databases if d.kind in SERVER_KINDS and (alias is None or d.alias == alias)]
    if isinstance(value, str) and value:
        for d in pg:
            if value == d.name:
                return value
            # The base is the live name cut to what the derivation keeps (24 or 40 characters), never less.
            m = _DERIVED_RE.match(value)
            if m and len(m.group("base")) >= min(len(d.name), 24) and d.name.startswith(m.group("base")):
                return value
    raise IntegrityError(f"{what}: database name {value!r} is not one dbsnap derives for this project")


def check_manifest(rules: Rules, manifest: dict, snap_dir: Path, name: str) -> list[str]:
    """Every path and name the manifest holds, confined; returns its migration folders (relative paths)."""
    what = f"snapshot {name!r}"
    mig = manifest.get("migrations")
    files = manifest.get("files")
    dbs = manifest.get("databases")
    if not isinstance(mig, dict) or not isinstance(files, dict) or not isinstance(dbs, dict):
        raise IntegrityError(f"{what}: manifest.json has no usable migrations, files or databases")
    for fname in files:
        check_payload(fname, snap_dir, what)
    folders = []
    for f in mig.get("folders") or []:
        if not isinstance(f, dict):
            raise IntegrityError(f"{what}: invalid migration folder entry {f!r}")
        folders.append(check_folder(rules, f.get("path"), what))
    for i, a in enumerate(folders):
        for b in folders[i + 1 :]:
            if a == b or a.startswith(b + "/") or b.startswith(a + "/"):
                raise IntegrityError(f"{what}: migration folders {a!r} and {b!r} overlap")
    for f in mig.get("files") or []:
        if not isinstance(f, dict):
            raise IntegrityError(f"{what}: invalid migration file entry {f!r}")
        check_member_path(f.get("path"), folders, what)
    payloads = [mig.get("payload")]
    for alias, d in dbs.items():
        if not isinstance(d, dict):
            raise IntegrityError(f"{what}: invalid database entry {alias!r}")
        if d.get("payload") is None and isinstance(d.get("clone"), dict):
            if d["clone"].get("file") is not None:  # a clone-only SQLite database: its file in the folder
                check_payload(d["clone"]["file"], snap_dir, what)
            continue  # clone-only: no dump (the clone is checked below)
        payloads.append(d.get("payload"))
    for payload in payloads:
        if check_payload(payload, snap_dir, what) not in files:
            raise IntegrityError(f"{what}: payload {payload!r} is not in the manifest's checksummed files")
    check_clones(rules, manifest, name)
    return folders


def check_clones(rules: Rules, manifest: dict, name: str) -> None:
    """Every server-side clone a manifest names must be a name dbsnap derives for this project's database."""
    dbs = manifest.get("databases")
    if not isinstance(dbs, dict) or not rules.databases:
        return
    rearmed = manifest.get("rearmed") if isinstance(manifest.get("rearmed"), dict) else {}
    for alias, d in dbs.items():
        for clone in (d.get("clone") if isinstance(d, dict) else None, rearmed.get(alias)):
            if not clone or (isinstance(clone, dict) and clone.get("file") is not None and "name" not in clone):
                continue  # none, or a kept SQLite file (confined as a file of the snapshot folder)
            value = clone.get("name") if isinstance(clone, dict) else clone
            derived_db_name(rules, alias, value, f"snapshot {name!r}: clone")


def _allowed_path(rules: Rules, path: Path) -> bool:
    if _resolved_inside(path, rules.store):
        return True
    if rules.root is not None:
        for rel in rules.folders or []:
            live = rules.root / rel
            if path in (live, live.parent / f".{live.name}.dbsnap-new", live.parent / f".{live.name}.dbsnap-old"):
                return _resolved_inside(path.parent, rules.root)
            if live in path.parents:  # a file inside a migration folder (reset deletes and regenerates them)
                return _resolved_inside(path, live)
    for d in rules.databases:
        if d.kind == "sqlite":
            live = Path(d.name)
            if path == live:
                return True
            for stem in (live.name, f".{live.name}"):
                rest = path.name[len(stem) :] if path.name.startswith(stem) else None
                if path.parent == live.parent and rest is not None and _SQLITE_SUFFIX_RE.match(rest):
                    return True
    return False


def check_journal(rules: Rules, journal: object) -> dict:
    """Confine every path and database name a journal holds, whatever its kind; return it unchanged.

    Walks the whole document: absolute paths anywhere must be allowed (:func:`_allowed_path`), migration folder
    entries (``path``) must be this project's folders, and each database entry's names must be derived for its
    alias. Unknown fields that hold neither are left alone, so new journal kinds need no change here.
    """
    if not isinstance(journal, dict):
        raise IntegrityError("the store's journal is not a JSON object")
    by_alias = {d.alias: d for d in rules.databases}

    def walk(node: object, key: str | None, alias: str | None) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("alias"), str):
                alias = node["alias"]
                if alias not in by_alias:
                    raise IntegrityError(f"journal: database alias {alias!r} is not configured in this project")
            if "path" in node and "live" in node and isinstance(node.get("path"), str):
                check_folder(rules, node["path"], "journal")
                if rules.root is not None and node.get("live") != str(rules.root / node["path"]):
                    raise IntegrityError(f"journal: folder {node['path']!r} does not match its live path")
            for k, v in node.items():
                walk(v, k, alias)
        elif isinstance(node, list):
            for v in node:
                walk(v, key, alias)
        elif isinstance(node, str):
            if node.startswith("/") or node.startswith("~") or (os.sep != "/" and os.path.isabs(node)):
                if not _allowed_path(rules, Path(os.path.normpath(node))) or ".." in Path(node).parts:
                    raise IntegrityError(f"journal: path {node} is outside the project's migration folders and store")
            elif "/" in node and " " not in node and ".." in PurePosixPath(node).parts:
                raise IntegrityError(f"journal: path {node} escapes its folder ('..')")
            elif alias is not None and key is not None and (key in DB_NAME_KEYS or key.endswith("_db")):
                db = by_alias[alias]
                if db.kind in SERVER_KINDS:
                    derived_db_name(rules, alias, node, "journal")

    walk(journal, None, None)
    return journal


def check_store_placement(rules: Rules) -> None:
    """Refuse a store that a rollback could replace: inside (or equal to) a migration folder or its swap copies."""
    if rules.root is None:
        return
    store = Path(os.path.realpath(rules.store))
    for rel in rules.folders or []:
        live = Path(os.path.realpath(rules.root / rel))
        for replaced in (live, live.parent / f".{live.name}.dbsnap-new", live.parent / f".{live.name}.dbsnap-old"):
            if store == replaced or replaced in store.parents:
                raise ConfigError(
                    f"the store {rules.store} is inside migration folder {rel}, which a rollback replaces",
                    hint="put the store elsewhere (--store, DBSNAP_DIR or [tool.dbsnap] store); "
                    "the default is <project root>/snapshots",
                )
