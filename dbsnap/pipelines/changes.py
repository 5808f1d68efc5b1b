"""Pure comparisons over plain data: file hashes, ``django_migrations`` rows, row counts, file contents.

No I/O: ``status`` and ``diff`` (:mod:`.compare`) gather the data, these functions compare it, so they are tested
without a database.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..project.migration_scan import Row, row


@dataclass
class FileChanges:
    """Paths (relative to the project root) added, removed and changed from one side to the other, sorted."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def file_changes(before: dict[str, str], after: dict[str, str]) -> FileChanges:
    """Compare two ``{path: sha256}`` maps."""
    return FileChanges(
        added=sorted(after.keys() - before.keys()),
        removed=sorted(before.keys() - after.keys()),
        changed=sorted(p for p in before.keys() & after.keys() if before[p] != after[p]),
    )


def row_changes(before: Iterable[Iterable[str]], after: Iterable[Iterable[str]]) -> tuple[list[Row], list[Row]]:
    """``(added, removed)`` django_migrations rows, each in the order of its side (id order), without repeats."""
    b = list(dict.fromkeys(row(r) for r in before))
    a = list(dict.fromkeys(row(r) for r in after))
    bs, as_ = set(b), set(a)
    return [r for r in a if r not in bs], [r for r in b if r not in as_]


@dataclass
class TableChange:
    """One table whose row count differs; ``None`` on the side where the table does not exist."""

    table: str
    before: int | None
    after: int | None

    @property
    def delta(self) -> int:
        return (self.after or 0) - (self.before or 0)

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed"


def table_changes(before: dict[str, int], after: dict[str, int]) -> list[TableChange]:
    """Tables added, removed or with a different row count, by name."""
    return [
        TableChange(t, before.get(t), after.get(t))
        for t in sorted(before.keys() | after.keys())
        if t not in before or t not in after or before[t] != after[t]
    ]


def history_problems(
    rows: Iterable[Iterable[str]], disk: dict[Row, list[Row]], own_apps: Iterable[str]
) -> tuple[list[Row], list[Row]]:
    """``(unapplied, stale)``: migrations on disk with no row, and rows of the project's own apps with no file.

    ``disk`` maps each migration on disk to what it ``replaces`` (empty unless squashed). A squashed migration
    counts as applied when all it replaces is; a row of a migration that a squashed one on disk replaces is not
    stale. Rows of other apps (django.contrib, third-party) are not judged.
    """
    applied = {row(r) for r in rows}
    own = set(own_apps)
    unapplied = [
        key
        for key, replaces in sorted(disk.items())
        if key not in applied and not (replaces and all(r in applied for r in replaces))
    ]
    known = set(disk) | {r for reps in disk.values() for r in reps}
    stale = [r for r in dict.fromkeys(row(x) for x in rows) if r[0] in own and r not in known]
    return unapplied, stale


def unified_patch(path: str, before: bytes, after: bytes, a: str = "a", b: str = "b") -> str:
    """A unified diff of one file, labelled ``a/path`` and ``b/path`` (``patch -p1`` applies it in the project
    root); binary or non-UTF-8 content gives a one-line notice instead."""
    try:
        old, new = before.decode(), after.decode()
    except UnicodeDecodeError:
        return f"Binary files {a}/{path} and {b}/{path} differ\n"
    if "\0" in old or "\0" in new:
        return f"Binary files {a}/{path} and {b}/{path} differ\n"
    out = []
    for line in difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"{a}/{path}", f"{b}/{path}"
    ):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
