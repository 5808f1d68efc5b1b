"""A retention policy: its rules (counts per period, ``within`` durations), parsed, validated and described."""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

#: Count value meaning "no limit": every bucket is kept.
UNLIMITED = -1

#: Periods that have buckets, from the finest to the coarsest.
PERIODS: tuple[str, ...] = ("hourly", "daily", "weekly", "monthly", "yearly")
#: Count rules, in the order their reasons are listed.
COUNT_RULES: tuple[str, ...] = ("last", *PERIODS)
#: Duration rules, in the order their reasons are listed.
WITHIN_RULES: tuple[str, ...] = ("within", *(f"within_{p}" for p in PERIODS))

_ALL_RULES: tuple[str, ...] = COUNT_RULES + WITHIN_RULES

EMPTY_POLICY_MESSAGE = (
    "empty retention policy: nothing would be kept; set at least one keep rule "
    "(e.g. keep-last, keep-daily or keep-within) to a non-zero value"
)


class PolicyError(ValueError):
    """A retention policy, a duration or the snapshots given to a policy are unusable."""


def _option(rule: str) -> str:
    """The user-facing option name of a rule: ``within_daily`` -> ``keep-within-daily``."""
    return "keep-" + rule.replace("_", "-")


# --------------------------------------------------------------------------- durations

_DURATION_RE = re.compile(r"(?:[0-9]+[ymwdh])+")
_DURATION_PART_RE = re.compile(r"([0-9]+)([ymwdh])")
_UNIT_FIELDS = {"y": "years", "m": "months", "w": "weeks", "d": "days", "h": "hours"}


@dataclass(frozen=True)
class Duration:
    """A ``within`` duration such as ``1y2m3d4h`` (``text`` is the string as given)."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    text: str = field(default="", compare=False)

    def is_zero(self) -> bool:
        return not (self.years or self.months or self.weeks or self.days or self.hours)

    def __str__(self) -> str:
        if self.text:
            return self.text
        parts = [f"{getattr(self, name)}{unit}" for unit, name in _UNIT_FIELDS.items() if getattr(self, name)]
        return "".join(parts) or "0h"

    def subtract_from(self, moment: datetime, tz: tzinfo | None = None) -> datetime:
        """Return ``moment`` minus this duration, as an aware UTC datetime.

        Years and months are subtracted on the calendar in the wall time of ``tz`` (``None``:
        the system's local zone), clamping the day to the length of the month; weeks, days
        and hours are then subtracted as exact time spans.  Raises :class:`PolicyError` when
        the result falls outside the range of :class:`datetime`.
        """
        if moment.utcoffset() is None:
            raise PolicyError("cannot subtract a duration from a naive datetime")
        try:
            local = moment.astimezone(tz)
            if self.years or self.months:
                total = local.year * 12 + (local.month - 1) - (self.years * 12 + self.months)
                year, month0 = divmod(total, 12)
                if year < 1:
                    raise OverflowError
                month = month0 + 1
                day = min(local.day, calendar.monthrange(year, month)[1])
                wall = local.replace(tzinfo=None, year=year, month=month, day=day)
                local = wall.replace(tzinfo=tz) if tz is not None else wall.astimezone()
            span = timedelta(weeks=self.weeks, days=self.days, hours=self.hours)
            return local.astimezone(timezone.utc) - span
        except (OverflowError, ValueError) as exc:
            raise PolicyError(f"duration {self} reaches too far back from {moment.isoformat()}") from exc


def parse_duration(text: str) -> Duration:
    """Parse a duration like ``1y2m3d4h`` or ``2w``.

    Units: ``y`` years, ``m`` calendar months, ``w`` weeks, ``d`` days, ``h`` hours; each unit
    at most once, in any order, lower case, no signs, spaces or fractions.
    """
    if not isinstance(text, str):
        raise PolicyError(f"a duration must be a string such as '2d' or '1y2m', got {text!r}")
    stripped = text.strip()
    if not _DURATION_RE.fullmatch(stripped):
        hint = ""
        if any(c in stripped for c in "MHDWYs"):
            hint = " (units are lower case; 'm' means calendar months, minutes are not supported)"
        raise PolicyError(
            f"invalid duration {text!r}: expected <number><unit> parts with units "
            f"y (years), m (months), w (weeks), d (days), h (hours), e.g. '1y2m3d4h' or '2w'{hint}"
        )
    values: dict[str, int] = {}
    for number, unit in _DURATION_PART_RE.findall(stripped):
        name = _UNIT_FIELDS[unit]
        if name in values:
            raise PolicyError(f"invalid duration {text!r}: unit {unit!r} appears more than once")
        values[name] = int(number)
    return Duration(text=stripped, **values)


# --------------------------------------------------------------------------- policy


def _parse_count(rule: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise PolicyError(f"{_option(rule)}: expected a whole number >= 0 or 'unlimited', got {value!r}")
    if isinstance(value, int):
        if value == UNLIMITED or value >= 0:
            return value
    elif isinstance(value, str):
        cleaned = value.strip().lower()
        if cleaned == "unlimited" or cleaned == str(UNLIMITED):
            return UNLIMITED
        if cleaned.isascii() and cleaned.isdigit():
            return int(cleaned)
    raise PolicyError(f"{_option(rule)}: expected a whole number >= 0 or 'unlimited', got {value!r}")


@dataclass(frozen=True)
class Policy:
    """A retention policy.

    Count rules (``last``, ``hourly``, ``daily``, ``weekly``, ``monthly``, ``yearly``) are
    ``None`` (not set), an int >= 0, or :data:`UNLIMITED` (-1; the string ``"unlimited"`` and
    numeric strings are accepted and normalised).  Duration rules (``within``,
    ``within_hourly``, ...) are ``None`` or a duration string (see :func:`parse_duration`);
    a zero duration such as ``"0d"`` is accepted and, like a zero count, keeps nothing.
    """

    last: int | None = None
    hourly: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None
    within: str | None = None
    within_hourly: str | None = None
    within_daily: str | None = None
    within_weekly: str | None = None
    within_monthly: str | None = None
    within_yearly: str | None = None

    def __post_init__(self) -> None:
        for rule in COUNT_RULES:
            object.__setattr__(self, rule, _parse_count(rule, getattr(self, rule)))
        for rule in WITHIN_RULES:
            value = getattr(self, rule)
            if value is None:
                continue
            try:
                duration = parse_duration(value)
            except PolicyError as exc:
                raise PolicyError(f"{_option(rule)}: {exc}") from None
            object.__setattr__(self, rule, duration.text)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Policy:
        """Build a policy from e.g. a config section or CLI options.

        Keys may carry a ``keep-``/``keep_`` prefix and use dashes or underscores
        (``keep-daily``, ``daily``, ``keep_within_daily``, ``within-daily``); values may be
        ints, numeric strings or ``"unlimited"`` (counts) and duration strings (``within*``).
        ``None`` values mean "not set".  Unknown or repeated keys raise :class:`PolicyError`.
        """
        values: dict[str, Any] = {}
        origin: dict[str, Any] = {}
        for key, value in mapping.items():
            rule = None
            if isinstance(key, str):
                normalised = key.strip().lower().replace("_", "-")
                if normalised.startswith("keep-"):
                    normalised = normalised[len("keep-") :]
                rule = normalised.replace("-", "_")
            if rule not in _ALL_RULES:
                known = ", ".join(_option(r) for r in _ALL_RULES)
                raise PolicyError(f"unknown retention option {key!r} (known options: {known})")
            if rule in values:
                raise PolicyError(f"retention option {key!r} given more than once (also as {origin[rule]!r})")
            values[rule] = value
            origin[rule] = key
        return cls(**values)

    def durations(self) -> dict[str, Duration]:
        """The active (set and non-zero) duration rules, by rule name, in rule order."""
        result: dict[str, Duration] = {}
        for rule in WITHIN_RULES:
            value = getattr(self, rule)
            if value is not None:
                duration = parse_duration(value)
                if not duration.is_zero():
                    result[rule] = duration
        return result

    def is_empty(self) -> bool:
        """True when the policy keeps nothing: no rule set, or every count is 0 and no duration rule."""
        return all(not getattr(self, rule) for rule in COUNT_RULES) and not self.durations()

    def describe(self) -> str:
        """The policy in words, e.g. ``keep 5 latest, 7 daily snapshots, all within 2d``."""
        counts = []
        for rule in COUNT_RULES:
            value = getattr(self, rule)
            if value:
                amount = "all" if value == UNLIMITED else str(value)
                counts.append(f"{amount} {'latest' if rule == 'last' else rule}")
        parts = []
        if counts:
            single = len(counts) == 1 and counts[0].startswith("1 ")
            parts.append(", ".join(counts) + (" snapshot" if single else " snapshots"))
        for rule, duration in self.durations().items():
            if rule == "within":
                parts.append(f"all within {duration}")
            else:
                parts.append(f"the newest {rule.removeprefix('within_')} within {duration}")
        if not parts:
            return "keep nothing (empty policy)"
        return "keep " + ", ".join(parts)
