"""The safety snapshots' own retention (dbsnap.retention.safety): pure, and every decision says why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from dbsnap.retention import PolicyError
from dbsnap.retention.safety import SafetyPolicy, decide_safety, parse_size

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Snap:
    name: str
    created_at: datetime
    origin: str = "pre-rollback"
    pinned: bool = False
    clone: int = 0


def snaps(*ages_days: float, clone: int = 0) -> list[Snap]:
    return [Snap(f"s{i}", NOW - timedelta(days=d), clone=clone) for i, d in enumerate(ages_days)]


def kept(decisions) -> list[str]:
    return sorted(d.name for d in decisions if d.keep)


def test_last_n_or_younger_than_the_duration() -> None:
    policy = SafetyPolicy.from_mapping({"safety-keep": 2, "safety-keep-within": "3d", "clone-budget": "off"})
    ds = decide_safety(
        [*snaps(0.1, 1, 2, 5, 9), Snap("manual", NOW - timedelta(days=30), origin="manual")], policy, NOW
    )
    assert kept(ds) == ["s0", "s1", "s2"]  # the last two, and s2 younger than 3d; the manual one is not considered
    gone = {d.name: d.reasons for d in ds if not d.keep}
    assert gone == {"s3": ["older than 3d", "not among the last 2"], "s4": ["older than 3d", "not among the last 2"]}


def test_clone_budget_removes_the_oldest_kept_clone_only_ones_but_never_the_one_just_made() -> None:
    policy = SafetyPolicy(keep=10, keep_within=None, clone_budget=250)
    items = snaps(0, 1, 2, 3, clone=100)
    ds = decide_safety(items, policy, NOW, just_made="s0", clone_bytes=lambda s: s.clone)
    assert kept(ds) == ["s0", "s1"]
    assert [d.reasons for d in ds if not d.keep] == [["over the clone budget (250 B)"]] * 2
    # The one just made stays even alone over the budget; a pinned one too.
    tiny = SafetyPolicy(keep=10, keep_within=None, clone_budget=1)
    items[2] = Snap("s2", items[2].created_at, pinned=True, clone=100)
    assert kept(decide_safety(items, tiny, NOW, just_made="s0", clone_bytes=lambda s: s.clone)) == ["s0", "s2"]


def test_defaults_and_bad_values() -> None:
    p = SafetyPolicy.from_mapping({})
    assert (p.keep, str(p.keep_within), p.clone_budget) == (3, "7d", 5 << 30)
    assert parse_size("500 MiB") == 500 << 20 and parse_size("2GB") == 2 << 30 and parse_size(7) == 7
    for bad in ({"safety-keep": -1}, {"safety_keep": "x"}, {"clone-budget": "lots"}, {"safety-keep-within": "3 days"}):
        with pytest.raises(PolicyError):
            SafetyPolicy.from_mapping(bad)
