"""What ``makemigrations`` cannot regenerate: found by reading migration files, without importing them.

Reading the source (``ast``) instead of importing works when the project's dependencies live only in a container,
and never runs project code. Operations the autodetector writes are regenerable; everything else (RunPython,
RunSQL, extension operations, any custom operation class) is listed with its app and file.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Operations Django's autodetector produces: makemigrations writes them again from the models.
REGENERABLE = {
    "CreateModel", "DeleteModel", "RenameModel", "AlterModelTable", "AlterModelTableComment", "AlterUniqueTogether",
    "AlterIndexTogether", "AlterOrderWithRespectTo", "AlterModelOptions", "AlterModelManagers", "AddField",
    "RemoveField", "AlterField", "RenameField", "AddIndex", "RemoveIndex", "RenameIndex", "AddConstraint",
    "RemoveConstraint", "AlterConstraint",
}  # fmt: skip


@dataclass(frozen=True)
class LostOperation:
    """One operation a reset would drop: e.g. ``catalog/migrations/0002_default_categories.py: RunPython``."""

    app: str
    file: str
    operation: str
    line: int
    detail: str = ""

    def describe(self) -> str:
        return f"{self.file}:{self.line}: {self.operation}{f' ({self.detail})' if self.detail else ''}"


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return type(node).__name__


def _assigned(tree: ast.Module, name: str) -> list[ast.expr]:
    """The values assigned to ``name`` (``name = ...``) anywhere in a migration file, in file order."""
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    ]


def _operations(tree: ast.Module) -> list[ast.expr]:
    """The elements of ``operations = [...]`` in the Migration class (or at module level)."""
    lists = [v for v in _assigned(tree, "operations") if isinstance(v, ast.List | ast.Tuple)]
    return list(lists[0].elts) if lists else []


def _detail(call: ast.Call) -> str:
    """A short hint: the function a RunPython calls, or the start of a RunSQL statement."""
    if not call.args:
        return ""
    first = call.args[0]
    if isinstance(first, ast.Name | ast.Attribute):
        return _name(first)
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        text = " ".join(first.value.split())
        return text[:60] + ("..." if len(text) > 60 else "")
    return ""


def _scan_ops(elts: list[ast.expr], app: str, rel: str, out: list[LostOperation]) -> None:
    for op in elts:
        if not isinstance(op, ast.Call):
            out.append(LostOperation(app, rel, "unknown operation", getattr(op, "lineno", 0), ast.unparse(op)[:60]))
            continue
        name = _name(op.func)
        if name in REGENERABLE:
            continue
        if name == "SeparateDatabaseAndState":
            # Only its database operations reach the database; state operations are regenerated.
            for kw in op.keywords:
                if kw.arg == "database_operations" and isinstance(kw.value, ast.List | ast.Tuple):
                    _scan_ops(list(kw.value.elts), app, rel, out)
            continue
        out.append(LostOperation(app, rel, name, op.lineno, _detail(op)))


def lost_operations(root: Path, folders: list[tuple[str, str]]) -> list[LostOperation]:
    """Every non-regenerable operation in the given ``(app, folder)`` migration folders, in file order."""
    out: list[LostOperation] = []
    for app, folder in folders:
        for path in sorted((root / folder).glob("*.py")):
            if path.name == "__init__.py":
                continue
            rel = path.relative_to(root).as_posix()
            try:
                tree = ast.parse(path.read_text(errors="replace"), filename=rel)
            except SyntaxError as e:
                out.append(LostOperation(app, rel, "unparsable file", e.lineno or 0, str(e.msg)))
                continue
            _scan_ops(_operations(tree), app, rel, out)
    return out


# -- migrations on disk, as Django's loader finds them (for status) --------------------------------------------

Row = tuple[str, str]  # (app label, migration name), as in django_migrations


def row(r: Iterable[str]) -> Row:
    """A ``django_migrations`` row (any two-item iterable) as a ``(app, name)`` tuple of strings."""
    app, name = r
    return (str(app), str(name))


def _replaces(path: Path) -> list[Row]:
    """The ``replaces = [...]`` list of a migration file, read with ``ast`` (nothing is imported or run)."""
    try:
        tree = ast.parse(path.read_text(errors="replace"), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return []
    values = _assigned(tree, "replaces")
    if not values:
        return []
    try:
        return [row(r) for r in ast.literal_eval(values[0])]
    except (ValueError, TypeError):
        return []


def disk_migrations(root: Path, folders: Iterable[tuple[str, str]]) -> dict[Row, list[Row]]:
    """``{(app, name): replaces}`` for the migration modules in the given ``(app label, folder)`` pairs, as Django's
    loader finds them: top-level ``*.py`` files whose name does not start with ``_`` or ``~``."""
    out: dict[Row, list[Row]] = {}
    for app, folder in folders:
        base = root / folder
        if not base.is_dir():
            continue
        for p in sorted(base.glob("*.py")):
            if p.is_file() and p.stem[:1] not in ("_", "~", ""):
                out[(app, p.stem)] = _replaces(p)
    return out
