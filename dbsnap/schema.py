"""Semantic schema comparison: what two databases' schemas mean, not how their objects are named or ordered.

Engines describe a database (:meth:`dbsnap.engines.base.Engine.describe_schema`) as a :class:`Schema`; the pure
function :func:`compare` says how two descriptions differ, one readable :class:`Difference` each. Used by reset's
proof that the fresh history builds an empty database, and meant for ``reset --keep-data`` (issue 15) and
``status``/``diff``.

What counts, per table: each column's type (with length/precision), nullability, default, identity/generated
kind and collation; constraints by definition (PostgreSQL's ``pg_get_constraintdef``, SQLite's foreign keys and
CHECK clauses); indexes by definition with the index name taken out (partial-index WHERE clauses kept);
sequences by what they are (owned by ``table.column``, type, increment...). What does not count: object names of
constraints and indexes, column order, the gaps that dropped columns leave. Objects migrations cannot regenerate
(extensions, collations, text-search objects, functions, triggers, views) are kept apart, under ``extras``, so a
caller can report them separately.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    type: str  # as the engine spells it, with length/precision: "character varying(150)", "numeric(10,2)"
    nullable: bool
    default: str | None = None
    identity: str = ""  # PostgreSQL: "a"/"d" identity, "s" stored generated; SQLite: "pk" for the rowid key
    collation: str = ""  # empty: the database default

    def describe(self) -> str:
        parts = [self.type, "NULL" if self.nullable else "NOT NULL"]
        if self.default is not None:
            parts.append(f"DEFAULT {self.default}")
        if self.identity:
            parts.append(f"identity={self.identity}")
        if self.collation:
            parts.append(f"COLLATE {self.collation}")
        return " ".join(parts)


@dataclass
class Table:
    """Constraints and indexes are counted, not just listed: a second UNIQUE (name) beside the models' own is a
    difference (a redundant index the fresh history would not make)."""

    columns: dict[str, Column] = field(default_factory=dict)
    constraints: Counter[str] = field(default_factory=Counter)  # definitions: "FOREIGN KEY (user_id) REFERENCES ..."
    indexes: Counter[str] = field(default_factory=Counter)  # definitions without the index name


@dataclass
class Schema:
    """One database's schema, as an engine describes it (JSON-ready with :meth:`to_dict`)."""

    engine: str
    tables: dict[str, Table] = field(default_factory=dict)
    sequences: set[str] = field(default_factory=set)
    extras: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> name -> definition

    def to_dict(self) -> dict:
        return {
            "engine": self.engine,
            "tables": {
                name: {
                    "columns": {c: vars(col) for c, col in sorted(t.columns.items())},
                    "constraints": sorted(t.constraints.elements()),
                    "indexes": sorted(t.indexes.elements()),
                }
                for name, t in sorted(self.tables.items())
            },
            "sequences": sorted(self.sequences),
            "extras": {k: dict(sorted(v.items())) for k, v in sorted(self.extras.items())},
        }

    @classmethod
    def from_dict(cls, d: dict) -> Schema:
        return cls(
            engine=str(d["engine"]),
            tables={
                name: Table(
                    columns={c: Column(**col) for c, col in t["columns"].items()},
                    constraints=Counter(t["constraints"]),
                    indexes=Counter(t["indexes"]),
                )
                for name, t in d["tables"].items()
            },
            sequences=set(d.get("sequences", [])),
            extras={k: dict(v) for k, v in d.get("extras", {}).items()},
        )


@dataclass(frozen=True)
class Prerequisite:
    """Something a database has that a model or a migration may need before any table exists, and that
    makemigrations never writes: an extension, a collation, a text-search dictionary or configuration. ``facts``
    are what it takes to create it again (engine-specific, JSON-ready)."""

    kind: str  # "extension", "collation", "text search dictionary", "text search configuration"
    name: str
    facts: dict = field(default_factory=dict, compare=False, hash=False)

    def describe(self) -> str:
        return self.name if self.kind == "extension" else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Difference:
    """One way ``actual`` differs from ``expected``: e.g. column ``orders_order.note``: NOT NULL vs NULL."""

    kind: str  # "table", "column", "constraint", "index", "sequence", or an extras kind ("extension", "view"...)
    object: str
    expected: str | None  # None: absent on that side
    actual: str | None
    extra: bool = False  # an object migrations cannot regenerate (listed apart)

    def describe(self) -> str:
        if self.expected is None:
            return f"{self.kind} {self.object}: unexpected ({self.actual})"
        if self.actual is None:
            return f"{self.kind} {self.object}: missing ({self.expected})"
        return f"{self.kind} {self.object}: expected {self.expected}, found {self.actual}"

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "object": self.object,
            "expected": self.expected,
            "actual": self.actual,
            "extra": self.extra,
        }


def not_regenerated(diffs: list[Difference]) -> tuple[list[Difference], list[Difference]]:
    """``(drift, only_in_actual_extras)``: the objects migrations cannot regenerate (functions, triggers, views,
    extensions...) that ``actual`` has and ``expected`` lacks, apart from every other difference. A history that
    lacks them still describes the tables; the caller lists them (and may carry them) instead of refusing."""
    apart = [d for d in diffs if d.extra and d.expected is None]
    return [d for d in diffs if d not in apart], apart


def table(diffs: list[Difference], expected: str = "EXPECTED", actual: str = "FOUND") -> str:
    """Every difference, one row each, in aligned columns (nothing cut: a definition is shown whole)."""
    rows = [("KIND", "OBJECT", expected, actual)]
    rows += [(d.kind, d.object, d.expected or "(absent)", d.actual or "(absent)") for d in diffs]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in rows)


def _sets(kind: str, where: str, expected: Counter[str], actual: Counter[str]) -> list[Difference]:
    out = [Difference(kind, where, d, None) for d in sorted((expected - actual).elements())]
    return out + [Difference(kind, where, None, d) for d in sorted((actual - expected).elements())]


def compare(expected: Schema, actual: Schema) -> list[Difference]:
    """Every difference between two descriptions (empty: the schemas mean the same), tables first, extras last."""
    out: list[Difference] = []
    for name in sorted(expected.tables.keys() | actual.tables.keys()):
        a, b = expected.tables.get(name), actual.tables.get(name)
        if a is None or b is None:
            have = a or b
            assert have is not None
            text = f"{len(have.columns)} columns"
            out.append(Difference("table", name, text if a else None, text if b else None))
            continue
        for col in sorted(a.columns.keys() | b.columns.keys()):
            ca, cb = a.columns.get(col), b.columns.get(col)
            if ca != cb:
                out.append(
                    Difference("column", f"{name}.{col}", ca.describe() if ca else None, cb.describe() if cb else None)
                )
        out += _sets("constraint", name, a.constraints, b.constraints)
        out += _sets("index", name, a.indexes, b.indexes)
    out += [Difference("sequence", d, d, None) for d in sorted(expected.sequences - actual.sequences)]
    out += [Difference("sequence", d, None, d) for d in sorted(actual.sequences - expected.sequences)]
    for kind in sorted(expected.extras.keys() | actual.extras.keys()):
        ea, eb = expected.extras.get(kind, {}), actual.extras.get(kind, {})
        for name in sorted(ea.keys() | eb.keys()):
            if ea.get(name) != eb.get(name):
                out.append(Difference(kind, name, ea.get(name), eb.get(name), extra=True))
    return out


def explain(diffs: list[Difference], limit: int = 5) -> str:
    """The first ``limit`` differences on one line, with how many more there are."""
    shown = "; ".join(d.describe() for d in diffs[:limit])
    return shown + (f" (and {len(diffs) - limit} more)" if len(diffs) > limit else "")
