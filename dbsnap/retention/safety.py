"""Retention of safety snapshots (the ones a rollback or a reset takes by itself), apart from the user's policy.

A safety snapshot is kept when it is pinned, is the one just made, is among the newest ``keep`` safety
snapshots, or is younger than ``keep_within``. Clone-only ones (a kept database instead of a dump) then count
against ``clone_budget`` bytes, newest first: a kept one that would go over the budget is removed (the one just
made and pinned ones never are, though they count). Pure: no I/O, every decision carries its reasons.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .decide import Decision
from .policy import Duration, PolicyError, parse_duration

SAFETY_ORIGINS = ("pre-rollback", "pre-reset")
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: object) -> int:
    """``"5GB"``, ``"500 MiB"``, ``"0"`` or a number of bytes -> bytes (binary units: 1 GB = 2**30 bytes)."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    m = _SIZE_RE.match(str(text)) if isinstance(text, str) else None
    if not m:
        raise PolicyError(f"a size must look like '5GB', '500MB' or a number of bytes, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


@dataclass(frozen=True)
class SafetyPolicy:
    keep: int = 3
    keep_within: Duration | None = None
    clone_budget: int | None = None  # bytes; None: no budget

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SafetyPolicy:
        """From ``safety-keep``, ``safety-keep-within`` and ``clone-budget`` (``_`` for ``-`` works too; missing
        ones take the defaults 3, 7d and 5GB); ``""`` or ``"off"`` turns the last two off."""

        def get(key: str, default: object) -> object:
            return values.get(key, values.get(key.replace("-", "_"), default))

        keep = get("safety-keep", 3)
        if isinstance(keep, str) and keep.strip().isdigit():
            keep = int(keep)
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
            raise PolicyError(f"safety-keep must be a whole number of snapshots (0 or more), got {keep!r}")
        within, budget = get("safety-keep-within", "7d"), get("clone-budget", "5GB")
        off = ("", None, "off", "none")
        return cls(
            keep=keep,
            keep_within=parse_duration(within) if within not in off else None,  # type: ignore[arg-type]
            clone_budget=parse_size(budget) if budget not in off else None,
        )

    def describe(self) -> str:
        within = f" and those younger than {self.keep_within}" if self.keep_within else ""
        budget = f"clone budget {human(self.clone_budget)}" if self.clone_budget is not None else "no clone budget"
        return f"keep the last {self.keep}{within}, {budget}"


def human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def decide_safety(
    snaps: Iterable[Any],
    policy: SafetyPolicy,
    now: datetime,
    *,
    just_made: str | None = None,
    clone_bytes: Callable[[Any], int] = lambda s: 0,
) -> list[Decision]:
    """Decisions for the safety snapshots among ``snaps`` (``origin`` in :data:`SAFETY_ORIGINS`), newest first;
    a removed one's reasons say why it goes. ``clone_bytes(s)``: what its clone-only databases take (0: dumped)."""
    safety = [s for s in snaps if getattr(s, "origin", None) in SAFETY_ORIGINS]
    safety.sort(key=lambda s: (s.created_at, s.name), reverse=True)
    cutoff = policy.keep_within.subtract_from(now) if policy.keep_within else None
    out = []
    for i, s in enumerate(safety):
        reasons = []
        if s.pinned:
            reasons.append("pinned")
        if s.name == just_made:
            reasons.append("just made")
        if i < policy.keep:
            reasons.append(f"one of the last {policy.keep} safety snapshots")
        if cutoff is not None and s.created_at >= cutoff:
            reasons.append(f"younger than {policy.keep_within}")
        why = reasons or [f"older than {policy.keep_within}" if cutoff else "", f"not among the last {policy.keep}"]
        out.append(Decision(name=s.name, keep=bool(reasons), reasons=[r for r in why if r], snapshot=s))
    if policy.clone_budget is not None:
        used = 0
        for d in out:
            size = clone_bytes(d.snapshot)
            if not d.keep or not size:
                continue
            used += size
            if used > policy.clone_budget and not ({"pinned", "just made"} & set(d.reasons)):
                used -= size
                d.keep = False
                d.reasons = [f"over the clone budget ({human(policy.clone_budget)})"]
    return out
