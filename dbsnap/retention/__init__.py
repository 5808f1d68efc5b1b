"""Retention policies: decide which snapshots of one database to keep.

The semantics follow restic's ``forget`` policy (``--keep-last``, ``--keep-daily``, ...,
``--keep-within``, ``--keep-within-daily``, ...) with four safety changes:

1. an empty (or all-zero) policy is refused with :class:`PolicyError` instead of meaning
   "remove everything";
2. pinned snapshots are always kept (reason ``"pinned"``).  Pins are not a rule: a pinned
   snapshot still takes part in every rule, so pinning only ever adds to what is kept;
3. snapshots created at the same instant are ordered by name (greater name = newer), so the
   result never depends on the order of the input;
4. a non-empty policy that would remove every snapshot of the list raises :class:`PolicyError`.
   With the rules below this cannot actually happen (a count rule always keeps the newest
   snapshot and a ``within`` window always contains its reference snapshot; snapshots dated
   in the future of ``now`` are newer than any cut-off and therefore kept), but the check
   stays as a last line of defence.

Buckets (hour, day, ISO week, month, year) are computed in the wall time of ``tz``.  ``within``
durations are measured back from a reference instant: the newest snapshot that is not in the
future of ``now`` (or ``now`` itself when every snapshot is in the future).  Years and months are
subtracted with calendar arithmetic in ``tz`` wall time (the day is clamped to the end of the
month: Mar 31 - 1m = Feb 28/29), then weeks, days and hours as exact time spans.

This package is pure: no I/O, standard library only. :mod:`.policy` reads and describes a policy,
:mod:`.decide` applies it.
"""

from .decide import Decision, SnapshotLike, apply_policy, apply_policy_grouped, group_by_database
from .policy import COUNT_RULES, PERIODS, UNLIMITED, WITHIN_RULES, Duration, Policy, PolicyError, parse_duration

__all__ = [
    "COUNT_RULES",
    "PERIODS",
    "UNLIMITED",
    "WITHIN_RULES",
    "Decision",
    "Duration",
    "Policy",
    "PolicyError",
    "SnapshotLike",
    "apply_policy",
    "apply_policy_grouped",
    "group_by_database",
    "parse_duration",
]
