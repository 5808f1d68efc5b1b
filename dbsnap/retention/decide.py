"""Applying a policy: which snapshots of one database it keeps, and why (see the package docstring for the rules)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any, Protocol, TypeVar

from .policy import COUNT_RULES, EMPTY_POLICY_MESSAGE, Policy, PolicyError


class SnapshotLike(Protocol):
    """What :func:`apply_policy` needs from a snapshot."""

    @property
    def name(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...

    @property
    def pinned(self) -> bool: ...


@dataclass
class Decision:
    """Whether one snapshot is kept, and why (``reasons`` is empty for a removed snapshot)."""

    name: str
    keep: bool
    reasons: list[str]
    snapshot: Any = field(default=None, repr=False, compare=False)


def _bucket_hourly(local: datetime) -> Hashable:
    return (local.year, local.month, local.day, local.hour)


def _bucket_daily(local: datetime) -> Hashable:
    return (local.year, local.month, local.day)


def _bucket_weekly(local: datetime) -> Hashable:
    iso = local.isocalendar()
    return (iso[0], iso[1])


def _bucket_monthly(local: datetime) -> Hashable:
    return (local.year, local.month)


def _bucket_yearly(local: datetime) -> Hashable:
    return local.year


_BUCKETS: dict[str, Callable[[datetime], Hashable]] = {
    "hourly": _bucket_hourly,
    "daily": _bucket_daily,
    "weekly": _bucket_weekly,
    "monthly": _bucket_monthly,
    "yearly": _bucket_yearly,
}

_NO_BUCKET = object()


def _require_aware(moment: Any, what: str) -> None:
    if not isinstance(moment, datetime):
        raise PolicyError(f"{what} must be a datetime, got {moment!r}")
    if moment.utcoffset() is None:
        raise PolicyError(f"{what} is a naive datetime ({moment.isoformat()}); a timezone-aware one is required")


def _order_key(snapshot: SnapshotLike) -> tuple[datetime, str]:
    return (snapshot.created_at.astimezone(timezone.utc), snapshot.name)


def _sorted_newest_first(snapshots: Iterable[SnapshotLike]) -> list[SnapshotLike]:
    items = list(snapshots)
    seen: set[str] = set()
    for snapshot in items:
        _require_aware(snapshot.created_at, f"created_at of snapshot {snapshot.name!r}")
        if snapshot.name in seen:
            raise PolicyError(f"snapshot name {snapshot.name!r} appears more than once")
        seen.add(snapshot.name)
    return sorted(items, key=_order_key, reverse=True)


def _rule_reasons(ordered: list[SnapshotLike], policy: Policy, now: datetime, tz: tzinfo | None) -> list[list[str]]:
    """Reasons given by the rules (not pins) for each snapshot of ``ordered`` (newest first)."""
    reasons: list[list[str]] = [[] for _ in ordered]
    if not ordered:
        return reasons
    local = [s.created_at.astimezone(tz) for s in ordered]

    for rule in COUNT_RULES:
        remaining = getattr(policy, rule)
        if not remaining:
            continue
        last_bucket: Any = _NO_BUCKET
        last_kept = -1
        for index, moment in enumerate(local):
            if remaining == 0:
                break
            bucket = index if rule == "last" else _BUCKETS[rule](moment)
            if bucket != last_bucket:
                reasons[index].append(f"{rule} snapshot")
                last_bucket = bucket
                last_kept = index
                if remaining > 0:
                    remaining -= 1
        if remaining != 0 and last_kept != len(ordered) - 1:
            # Budget left after walking every snapshot: also keep the oldest one (restic).
            reasons[-1].append(f"oldest {rule} snapshot")

    durations = policy.durations()
    if durations:
        reference = next((s.created_at for s in ordered if s.created_at <= now), now)
        for rule, duration in durations.items():
            cutoff = duration.subtract_from(reference, tz)
            inside = [i for i, s in enumerate(ordered) if s.created_at > cutoff]
            if rule == "within":
                for index in inside:
                    reasons[index].append(f"within {duration}")
                continue
            period = rule.removeprefix("within_")
            last_bucket = _NO_BUCKET
            for index in inside:
                bucket = _BUCKETS[period](local[index])
                if bucket != last_bucket:
                    reasons[index].append(f"{period} within {duration}")
                    last_bucket = bucket
    return reasons


def apply_policy(
    snapshots: Iterable[SnapshotLike],
    policy: Policy,
    now: datetime,
    tz: tzinfo | None = None,
) -> list[Decision]:
    """Decide, for every snapshot of ONE database, whether ``policy`` keeps it.

    ``snapshots`` must be the complete list for that database; each needs ``name``,
    timezone-aware ``created_at`` and ``pinned``.  ``tz`` is the zone whose wall time defines
    the hour/day/week/month/year buckets (``None``: the system's local zone, with its DST rules
    applied per instant; prefer passing a :class:`zoneinfo.ZoneInfo`).  Returns one
    :class:`Decision` per snapshot, newest first (same instant: greater name first).

    Raises :class:`PolicyError` for an empty policy, naive datetimes, duplicate names, or
    when the policy would remove every snapshot.
    """
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a Policy, got {type(policy).__name__}")
    if policy.is_empty():
        raise PolicyError(EMPTY_POLICY_MESSAGE)
    _require_aware(now, "now")
    ordered = _sorted_newest_first(snapshots)
    decisions = []
    for snapshot, rule_reasons in zip(ordered, _rule_reasons(ordered, policy, now, tz), strict=True):
        reasons = (["pinned"] if getattr(snapshot, "pinned", False) else []) + rule_reasons
        decisions.append(Decision(snapshot.name, bool(reasons), reasons, snapshot))
    if decisions and not any(d.keep for d in decisions):
        raise PolicyError(
            f"retention policy ({policy.describe()}) would remove every one of the "
            f"{len(decisions)} snapshot(s); refusing"
        )
    return decisions


K = TypeVar("K", bound=Hashable)
S = TypeVar("S")


def group_by_database(snapshots: Iterable[S], key: Callable[[S], K] | str) -> dict[K, list[S]]:
    """Group snapshots by database.

    ``key`` is a function of a snapshot or the name of one of its attributes.  Groups are
    returned in sorted key order when the keys can be sorted, else in first-seen order.
    """
    get: Callable[[S], Any] = (lambda s: getattr(s, key)) if isinstance(key, str) else key
    groups: dict[Any, list[S]] = {}
    for snapshot in snapshots:
        groups.setdefault(get(snapshot), []).append(snapshot)
    try:
        order = sorted(groups)
    except TypeError:
        return groups
    return {k: groups[k] for k in order}


def apply_policy_grouped(
    groups: Mapping[K, Iterable[SnapshotLike]],
    policy: Policy,
    now: datetime,
    tz: tzinfo | None = None,
) -> dict[K, list[Decision]]:
    """Apply ``policy`` separately to each database's snapshots (see :func:`apply_policy`)."""
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a Policy, got {type(policy).__name__}")
    if policy.is_empty():
        raise PolicyError(EMPTY_POLICY_MESSAGE)
    result: dict[K, list[Decision]] = {}
    for key, snapshots in groups.items():
        try:
            result[key] = apply_policy(snapshots, policy, now, tz)
        except PolicyError as exc:
            raise PolicyError(f"database {key!r}: {exc}") from exc
    return result
