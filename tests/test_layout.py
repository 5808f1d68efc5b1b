"""The folder layout is the architecture: imports go downward only, and each outside library stays in its wing.

Read from the source with ``ast`` (imports inside functions count too), so a new module that breaks the layering
fails here, not in a review.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dbsnap"

# Higher layers may import lower ones, never the other way; wings on one layer do not import each other.
LAYERS = {
    "dbsnap.__main__": 8,
    "dbsnap.django": 8,  # manage.py dbsnap: the same CLI, as a Django app (an adapter, like cli/)
    "dbsnap.cli": 7,
    "dbsnap.api": 6,
    "dbsnap.pipelines": 5,
    "dbsnap.context": 4,
    "dbsnap.engines": 3,
    "dbsnap.project": 2,
    "dbsnap.store": 2,
    "dbsnap.settings": 2,
    "dbsnap.schedule": 2,
    "dbsnap.retention": 1,
    "dbsnap.schema": 1,
    "dbsnap.report": 1,
    "dbsnap.lazy": 1,  # stand-ins for the pipeline modules, imported on first use (api.py)
    "dbsnap.errors": 1,
    "dbsnap.faults": 1,
    "dbsnap.procs": 1,  # child processes in their own group, dying with dbsnap; SIGTERM/SIGHUP like Ctrl-C
    "dbsnap": 0,  # the package face: __version__ only
}

# Outside libraries and the only places that may import them.
CONFINED = {
    # scripts run in the project's interpreter (imported only by the Django app, where Django is configured already)
    "django": ("dbsnap.project.child", "dbsnap.django"),
    "dj_database_url": ("dbsnap.project.databases",),
    "psycopg": ("dbsnap.engines.postgresql",),
    "MySQLdb": ("dbsnap.engines.mysql",),
    "click": ("dbsnap.cli",),
    "zstandard": ("dbsnap.store.archive",),
    "boto3": ("dbsnap.store.remote.s3",),
    "botocore": ("dbsnap.store.remote.s3",),
    "cryptography": ("dbsnap.store.remote.crypt",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module ``name`` imports (absolute names; ``from X import y`` counts y when it is one of ``known``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            found.update(subs or [target])
    return found


def wing(name: str) -> str:
    """The entry of LAYERS a module belongs to: its top-level module or subpackage."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def internal_graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: {i for i in imports(n, p, mods) if i in mods and i != n} for n, p in mods.items()}


def test_every_module_has_a_layer() -> None:
    missing = sorted({wing(n) for n in modules()} - LAYERS.keys())
    assert not missing, f"modules outside the layer map (add them to LAYERS and to the README's map): {missing}"


def test_imports_go_downward_only() -> None:
    upward = []
    for name, deps in internal_graph().items():
        for dep in deps:
            a, b = wing(name), wing(dep)
            if a != b and not LAYERS[b] < LAYERS[a]:
                upward.append(f"{name} (layer {LAYERS[a]}) imports {dep} (layer {LAYERS[b]})")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_loops() -> None:
    graph = internal_graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    loops: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                loops.append(" -> ".join([*stack[stack.index(d) :], d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not loops, "\n".join(loops)


@pytest.mark.parametrize("library", sorted(CONFINED))
def test_outside_libraries_stay_in_their_wing(library: str) -> None:
    allowed = CONFINED[library]
    mods = modules()
    offenders = [
        n
        for n, p in mods.items()
        if any(i == library or i.startswith(library + ".") for i in imports(n, p, mods))
        and not any(n == a or n.startswith(a + ".") for a in allowed)
    ]
    assert not offenders, f"{library} imported outside {allowed}: {offenders}"


def test_importing_dbsnap_does_not_load_django_or_psycopg() -> None:
    code = (
        "import sys, dbsnap.api, dbsnap.cli, dbsnap.django\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'psycopg', 'MySQLdb'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
