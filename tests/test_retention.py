"""Tests for dbsnap.retention (pure retention-policy logic)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from dbsnap.retention import (
    UNLIMITED,
    Decision,
    Duration,
    Policy,
    PolicyError,
    apply_policy,
    apply_policy_grouped,
    decide,
    group_by_database,
    parse_duration,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


@dataclass(frozen=True)
class Snap:
    name: str
    created_at: datetime
    pinned: bool = False
    database: str = "default"


def t(text: str, tz=UTC) -> datetime:
    """An aware datetime from 'YYYY-MM-DD[ HH:MM[:SS]]' in ``tz``."""
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def series(*stamps: str) -> list[Snap]:
    """Snapshots named after their UTC timestamp."""
    return [Snap(stamp, t(stamp)) for stamp in stamps]


def kept(decisions: list[Decision]) -> dict[str, list[str]]:
    return {d.name: d.reasons for d in decisions if d.keep}


NOW = t("2021-03-15 00:00")

# (policy, snapshots, now, {kept name: reasons}); every other snapshot must be removed.
CASES = [
    pytest.param(
        Policy(last=3),
        series("2021-03-10 10:00", "2021-03-10 11:00", "2021-03-10 12:00", "2021-03-10 13:00", "2021-03-10 14:00"),
        NOW,
        {
            "2021-03-10 14:00": ["last snapshot"],
            "2021-03-10 13:00": ["last snapshot"],
            "2021-03-10 12:00": ["last snapshot"],
        },
        id="last",
    ),
    pytest.param(
        Policy(last="unlimited"),
        series("2021-03-10 10:00", "2021-03-10 10:00:01", "2021-01-01 00:00"),
        NOW,
        {
            "2021-03-10 10:00:01": ["last snapshot"],
            "2021-03-10 10:00": ["last snapshot"],
            "2021-01-01 00:00": ["last snapshot"],
        },
        id="last-unlimited",
    ),
    pytest.param(
        Policy(hourly=2),
        series("2021-03-10 10:05", "2021-03-10 10:40", "2021-03-10 11:10", "2021-03-10 11:50", "2021-03-10 12:30"),
        NOW,
        {"2021-03-10 12:30": ["hourly snapshot"], "2021-03-10 11:50": ["hourly snapshot"]},
        id="hourly",
    ),
    pytest.param(
        Policy(daily=2),
        series("2021-03-10 08:00", "2021-03-10 20:00", "2021-03-09 08:00", "2021-03-09 20:00", "2021-03-08 20:00"),
        NOW,
        {"2021-03-10 20:00": ["daily snapshot"], "2021-03-09 20:00": ["daily snapshot"]},
        id="daily",
    ),
    pytest.param(
        Policy(daily=5),
        series(*(f"2021-03-{day:02d} 12:00" for day in (10, 9, 7, 6, 5, 4, 3))),
        NOW,
        {f"2021-03-{day:02d} 12:00": ["daily snapshot"] for day in (10, 9, 7, 6, 5)},
        id="daily-missing-day-reaches-further-back",
    ),
    pytest.param(
        # 2021-03-01 (Mon) .. 03-07 (Sun) is ISO week 9; 03-08 is week 10; 02-22 is week 8.
        Policy(weekly=2),
        series("2021-02-22 12:00", "2021-03-01 12:00", "2021-03-03 12:00", "2021-03-07 12:00", "2021-03-08 12:00"),
        NOW,
        {"2021-03-08 12:00": ["weekly snapshot"], "2021-03-07 12:00": ["weekly snapshot"]},
        id="weekly",
    ),
    pytest.param(
        # 2020-12-31 (Thu) and 2021-01-01 (Fri) are both in ISO week 2020-W53; 2020-12-27 is W52.
        Policy(weekly=2),
        series("2020-12-27 12:00", "2020-12-31 12:00", "2021-01-01 12:00"),
        NOW,
        {"2021-01-01 12:00": ["weekly snapshot"], "2020-12-27 12:00": ["weekly snapshot"]},
        id="weekly-iso-week-across-new-year",
    ),
    pytest.param(
        Policy(monthly=2),
        series("2021-01-15 12:00", "2021-01-31 12:00", "2021-02-10 12:00", "2021-03-01 12:00", "2021-03-10 12:00"),
        NOW,
        {"2021-03-10 12:00": ["monthly snapshot"], "2021-02-10 12:00": ["monthly snapshot"]},
        id="monthly",
    ),
    pytest.param(
        Policy(yearly=2),
        series("2019-06-01 12:00", "2020-01-01 12:00", "2020-12-31 12:00", "2021-01-01 12:00", "2021-03-05 12:00"),
        NOW,
        {"2021-03-05 12:00": ["yearly snapshot"], "2020-12-31 12:00": ["yearly snapshot"]},
        id="yearly",
    ),
    pytest.param(
        # Budget left (7 > 3 days): the oldest snapshot is kept although its day already has one.
        Policy(daily=7),
        series("2021-03-10 12:00", "2021-03-09 12:00", "2021-03-08 18:00", "2021-03-08 06:00"),
        NOW,
        {
            "2021-03-10 12:00": ["daily snapshot"],
            "2021-03-09 12:00": ["daily snapshot"],
            "2021-03-08 18:00": ["daily snapshot"],
            "2021-03-08 06:00": ["oldest daily snapshot"],
        },
        id="oldest-kept-while-budget-left",
    ),
    pytest.param(
        # Budget exhausted on 03-08 18:00: the oldest snapshot is not kept.
        Policy(daily=3),
        series("2021-03-10 12:00", "2021-03-09 12:00", "2021-03-08 18:00", "2021-03-08 06:00"),
        NOW,
        {
            "2021-03-10 12:00": ["daily snapshot"],
            "2021-03-09 12:00": ["daily snapshot"],
            "2021-03-08 18:00": ["daily snapshot"],
        },
        id="oldest-not-kept-when-budget-exhausted",
    ),
    pytest.param(
        Policy(daily=UNLIMITED),
        series(
            "2021-03-10 20:00",
            "2021-03-10 08:00",
            "2021-03-09 20:00",
            "2021-03-09 08:00",
            "2021-03-08 20:00",
            "2021-03-08 08:00",
        ),
        NOW,
        {
            "2021-03-10 20:00": ["daily snapshot"],
            "2021-03-09 20:00": ["daily snapshot"],
            "2021-03-08 20:00": ["daily snapshot"],
            "2021-03-08 08:00": ["oldest daily snapshot"],
        },
        id="daily-unlimited",
    ),
    pytest.param(
        Policy(monthly="unlimited"),
        series("2020-11-30 12:00", "2020-12-01 12:00", "2020-12-31 12:00", "2021-01-01 12:00"),
        NOW,
        {
            "2021-01-01 12:00": ["monthly snapshot"],
            "2020-12-31 12:00": ["monthly snapshot"],
            "2020-11-30 12:00": ["monthly snapshot"],
        },
        id="monthly-unlimited",
    ),
    pytest.param(
        # Union; a snapshot kept by `last` still uses a daily slot.
        Policy(last=2, daily=2),
        series("2021-03-10 20:00", "2021-03-10 08:00", "2021-03-09 12:00", "2021-03-08 12:00"),
        NOW,
        {
            "2021-03-10 20:00": ["last snapshot", "daily snapshot"],
            "2021-03-10 08:00": ["last snapshot"],
            "2021-03-09 12:00": ["daily snapshot"],
        },
        id="rules-union-and-shared-slots",
    ),
    pytest.param(
        Policy(last=1, daily=2, monthly=2, yearly=5),
        series(
            "2020-06-15 12:00",
            "2021-01-10 12:00",
            "2021-02-20 12:00",
            "2021-02-21 12:00",
            "2021-03-09 12:00",
            "2021-03-10 12:00",
        ),
        NOW,
        {
            "2021-03-10 12:00": ["last snapshot", "daily snapshot", "monthly snapshot", "yearly snapshot"],
            "2021-03-09 12:00": ["daily snapshot"],
            "2021-02-21 12:00": ["monthly snapshot"],
            "2020-06-15 12:00": ["yearly snapshot"],
        },
        id="combined-rules",
    ),
    pytest.param(
        # Reference = newest snapshot (03-10 12:00); 03-08 12:00 is exactly 2d older: not kept.
        Policy(within="2d"),
        series("2021-03-10 12:00", "2021-03-08 12:00:01", "2021-03-08 12:00", "2021-03-01 12:00"),
        t("2021-03-12 00:00"),
        {"2021-03-10 12:00": ["within 2d"], "2021-03-08 12:00:01": ["within 2d"]},
        id="within-strict-boundary",
    ),
    pytest.param(
        Policy(within="1w"),
        series("2021-03-10 12:00", "2021-03-03 12:00:01", "2021-03-03 12:00"),
        NOW,
        {"2021-03-10 12:00": ["within 1w"], "2021-03-03 12:00:01": ["within 1w"]},
        id="within-weeks",
    ),
    pytest.param(
        # Mar 31 - 1m = Feb 28 (clamped to the end of February).
        Policy(within="1m"),
        series("2021-03-31 12:00", "2021-02-28 13:00", "2021-02-28 12:00", "2021-02-27 12:00"),
        t("2021-04-01 00:00"),
        {"2021-03-31 12:00": ["within 1m"], "2021-02-28 13:00": ["within 1m"]},
        id="within-month-clamped",
    ),
    pytest.param(
        # Leap year: Mar 31 - 1m = Feb 29.
        Policy(within="1m"),
        series("2020-03-31 12:00", "2020-02-29 13:00", "2020-02-29 12:00", "2020-02-28 12:00"),
        t("2020-04-01 00:00"),
        {"2020-03-31 12:00": ["within 1m"], "2020-02-29 13:00": ["within 1m"]},
        id="within-month-clamped-leap-year",
    ),
    pytest.param(
        # 2021-05-20 10:00 - 1y2m = 2020-03-20 10:00, - 3d4h = 2020-03-17 06:00.
        Policy(within="1y2m3d4h"),
        series("2021-05-20 10:00", "2020-03-17 06:01", "2020-03-17 06:00"),
        t("2021-06-01 00:00"),
        {"2021-05-20 10:00": ["within 1y2m3d4h"], "2020-03-17 06:01": ["within 1y2m3d4h"]},
        id="within-compound-duration",
    ),
    pytest.param(
        # The future snapshot is ignored for the reference (03-09 12:00) but kept (newer than the cut-off).
        Policy(within="1d"),
        series("2021-03-12 12:00", "2021-03-09 12:00", "2021-03-08 12:00:01", "2021-03-08 12:00"),
        t("2021-03-10 00:00"),
        {
            "2021-03-12 12:00": ["within 1d"],
            "2021-03-09 12:00": ["within 1d"],
            "2021-03-08 12:00:01": ["within 1d"],
        },
        id="within-reference-ignores-future",
    ),
    pytest.param(
        # Every snapshot is in the future: the reference is `now`, and they are all kept.
        Policy(within="1d"),
        series("2021-03-05 12:00", "2021-03-04 12:00"),
        t("2021-03-01 00:00"),
        {"2021-03-05 12:00": ["within 1d"], "2021-03-04 12:00": ["within 1d"]},
        id="within-all-in-future",
    ),
    pytest.param(
        # Window: after 2021-03-07 20:00.
        Policy(within_daily="3d"),
        series(
            "2021-03-10 20:00",
            "2021-03-10 08:00",
            "2021-03-09 12:00",
            "2021-03-08 12:00",
            "2021-03-07 20:00",
            "2021-03-07 12:00",
        ),
        t("2021-03-11 00:00"),
        {
            "2021-03-10 20:00": ["daily within 3d"],
            "2021-03-09 12:00": ["daily within 3d"],
            "2021-03-08 12:00": ["daily within 3d"],
        },
        id="within-daily",
    ),
    pytest.param(
        Policy(within_hourly="3h"),
        series("2021-03-10 12:30", "2021-03-10 12:10", "2021-03-10 11:50", "2021-03-10 10:00", "2021-03-10 09:30"),
        NOW,
        # Window: after 09:30 (exactly 3h before the reference is out).
        {
            "2021-03-10 12:30": ["hourly within 3h"],
            "2021-03-10 11:50": ["hourly within 3h"],
            "2021-03-10 10:00": ["hourly within 3h"],
        },
        id="within-hourly",
    ),
    pytest.param(
        Policy(within_weekly="2w"),
        series("2021-03-10 12:00", "2021-03-08 12:00", "2021-03-05 12:00", "2021-03-01 12:00", "2021-02-24 12:00"),
        NOW,
        {"2021-03-10 12:00": ["weekly within 2w"], "2021-03-05 12:00": ["weekly within 2w"]},
        id="within-weekly",
    ),
    pytest.param(
        Policy(within_monthly="1y"),
        series("2021-03-10 12:00", "2021-02-20 12:00", "2021-02-10 12:00", "2020-03-10 12:00", "2020-03-11 12:00"),
        NOW,
        {
            "2021-03-10 12:00": ["monthly within 1y"],
            "2021-02-20 12:00": ["monthly within 1y"],
            "2020-03-11 12:00": ["monthly within 1y"],
        },
        id="within-monthly",
    ),
    pytest.param(
        Policy(within_yearly="2y"),
        series("2021-03-10 12:00", "2020-12-31 12:00", "2020-06-01 12:00", "2019-03-10 12:00"),
        NOW,
        {"2021-03-10 12:00": ["yearly within 2y"], "2020-12-31 12:00": ["yearly within 2y"]},
        id="within-yearly",
    ),
    pytest.param(
        Policy(last=1, within="1d", within_daily="5d"),
        series("2021-03-10 12:00", "2021-03-10 06:00", "2021-03-08 12:00", "2021-03-01 12:00"),
        NOW,
        {
            "2021-03-10 12:00": ["last snapshot", "within 1d", "daily within 5d"],
            "2021-03-10 06:00": ["within 1d"],
            "2021-03-08 12:00": ["daily within 5d"],
        },
        id="counts-and-durations",
    ),
    pytest.param(
        Policy(within="0d", daily=1),
        series("2021-03-10 12:00", "2021-03-10 06:00"),
        NOW,
        {"2021-03-10 12:00": ["daily snapshot"]},
        id="zero-duration-is-inactive",
    ),
    pytest.param(
        Policy(last=0, weekly=1),
        series("2021-03-10 12:00", "2021-03-09 12:00"),
        NOW,
        {"2021-03-10 12:00": ["weekly snapshot"]},
        id="zero-count-is-inactive",
    ),
]


@pytest.mark.parametrize(("policy", "snapshots", "now", "expected"), CASES)
def test_rules(policy, snapshots, now, expected):
    decisions = apply_policy(snapshots, policy, now, tz=UTC)
    assert kept(decisions) == expected
    assert len(decisions) == len(snapshots)
    for decision in decisions:
        if decision.name not in expected:
            assert decision.keep is False
            assert decision.reasons == []
    # Newest first.
    instants = [d.snapshot.created_at for d in decisions]
    assert instants == sorted(instants, reverse=True)
    assert all(d.snapshot.name == d.name for d in decisions)


@pytest.mark.parametrize(("policy", "snapshots", "now", "expected"), CASES)
def test_input_order_does_not_matter(policy, snapshots, now, expected):
    reference = apply_policy(snapshots, policy, now, tz=UTC)
    rng = random.Random(1234)
    for _ in range(20):
        shuffled = list(snapshots)
        rng.shuffle(shuffled)
        assert apply_policy(shuffled, policy, now, tz=UTC) == reference
        assert apply_policy(tuple(shuffled), policy, now, tz=UTC) == reference


@pytest.mark.parametrize(("policy", "snapshots", "now", "expected"), CASES)
def test_idempotent(policy, snapshots, now, expected):
    first = apply_policy(snapshots, policy, now, tz=UTC)
    survivors = [d.snapshot for d in first if d.keep]
    second = apply_policy(survivors, policy, now, tz=UTC)
    assert [d.name for d in second] == [s.name for s in survivors]
    assert all(d.keep for d in second)


@pytest.mark.parametrize(("policy", "snapshots", "now", "expected"), CASES)
def test_pinning_only_adds(policy, snapshots, now, expected):
    rng = random.Random(99)
    for _ in range(5):
        pinned = {s.name for s in snapshots if rng.random() < 0.4}
        with_pins = [replace(s, pinned=s.name in pinned) for s in snapshots]
        decisions = apply_policy(with_pins, policy, now, tz=UTC)
        for decision in decisions:
            rule_reasons = expected.get(decision.name, [])
            if decision.name in pinned:
                assert decision.keep
                assert decision.reasons == ["pinned", *rule_reasons]
            else:
                assert decision.reasons == rule_reasons


def test_ties_are_ordered_by_name():
    same = t("2021-03-10 12:00")
    snapshots = [
        Snap("alpha", same),
        # The same instant written in another offset.
        Snap("beta", same.astimezone(timezone(timedelta(hours=5)))),
        Snap("aardvark", same - timedelta(seconds=1)),
    ]
    decisions = apply_policy(snapshots, Policy(last=1), NOW, tz=UTC)
    assert [d.name for d in decisions] == ["beta", "alpha", "aardvark"]
    assert kept(decisions) == {"beta": ["last snapshot"]}
    decisions = apply_policy(snapshots, Policy(daily=1), NOW, tz=UTC)
    assert kept(decisions) == {"beta": ["daily snapshot"]}


def test_dst_fall_back_in_berlin():
    # 2021-10-31: clocks go back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
    cest = datetime(2021, 10, 31, 2, 30, tzinfo=BERLIN, fold=0)
    cet = datetime(2021, 10, 31, 2, 30, tzinfo=BERLIN, fold=1)
    assert cest.utcoffset() == timedelta(hours=2)
    assert cet.utcoffset() == timedelta(hours=1)
    # Names chosen so that name order and instant order disagree.
    snapshots = [Snap("b-cest", cest), Snap("a-cet", cet)]
    now = datetime(2021, 11, 1, tzinfo=BERLIN)

    decisions = apply_policy(snapshots, Policy(last=5), now, tz=BERLIN)
    assert [d.name for d in decisions] == ["a-cet", "b-cest"]

    # Same wall-clock hour -> one hourly bucket.
    assert kept(apply_policy(snapshots, Policy(hourly=1), now, tz=BERLIN)) == {"a-cet": ["hourly snapshot"]}
    assert kept(apply_policy(snapshots, Policy(hourly=2), now, tz=BERLIN)) == {
        "a-cet": ["hourly snapshot"],
        "b-cest": ["oldest hourly snapshot"],
    }
    # In UTC they are two different hours.
    assert kept(apply_policy(snapshots, Policy(hourly=2), now, tz=UTC)) == {
        "a-cet": ["hourly snapshot"],
        "b-cest": ["hourly snapshot"],
    }


def test_buckets_use_the_given_zone():
    # 2021-03-09 23:30 UTC is already 2021-03-10 00:30 in Berlin.
    snapshots = series("2021-03-10 06:00", "2021-03-09 23:30", "2021-03-09 20:00")
    assert kept(apply_policy(snapshots, Policy(daily=2), NOW, tz=UTC)) == {
        "2021-03-10 06:00": ["daily snapshot"],
        "2021-03-09 23:30": ["daily snapshot"],
    }
    assert kept(apply_policy(snapshots, Policy(daily=2), NOW, tz=BERLIN)) == {
        "2021-03-10 06:00": ["daily snapshot"],
        "2021-03-09 20:00": ["daily snapshot"],
    }


@pytest.fixture
def berlin_local_zone(monkeypatch):
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("berlin_local_zone")
def test_default_zone_is_the_local_zone():
    cest = datetime(2021, 10, 31, 2, 30, tzinfo=BERLIN, fold=0)
    cet = datetime(2021, 10, 31, 2, 30, tzinfo=BERLIN, fold=1)
    summer = datetime(2021, 7, 31, 23, 30, tzinfo=BERLIN)
    snapshots = [
        Snap("cest", cest),
        Snap("cet", cet),
        Snap("summer", summer),
        Snap("mid", t("2021-08-15 12:00")),
    ]
    now = datetime(2021, 11, 1, tzinfo=BERLIN)
    for policy in (Policy(hourly=1, monthly=3), Policy(within="3m"), Policy(within_monthly="3m")):
        assert apply_policy(snapshots, policy, now) == apply_policy(snapshots, policy, now, tz=BERLIN)
    assert Duration(months=3).subtract_from(cet) == Duration(months=3).subtract_from(cet, BERLIN)


def test_pins():
    snapshots = [
        Snap("new", t("2021-03-10 12:00"), pinned=True),
        Snap("mid", t("2021-03-09 12:00")),
        Snap("old", t("2021-01-01 12:00"), pinned=True),
    ]
    decisions = apply_policy(snapshots, Policy(last=1), NOW, tz=UTC)
    # The pinned newest snapshot still uses the only `last` slot: pins never take slots away.
    assert kept(decisions) == {"new": ["pinned", "last snapshot"], "old": ["pinned"]}
    assert [d.keep for d in decisions] == [True, False, True]


@pytest.mark.parametrize(
    "policy",
    [
        Policy(),
        Policy(last=0),
        Policy(last=0, hourly=0, daily=0, weekly=0, monthly=0, yearly=0),
        Policy(within="0d"),
        Policy(daily=0, within_daily="0h"),
        Policy.from_mapping({}),
    ],
)
def test_empty_policy_is_refused(policy):
    assert policy.is_empty()
    with pytest.raises(PolicyError, match="empty retention policy: nothing would be kept"):
        apply_policy(series("2021-03-10 12:00"), policy, NOW, tz=UTC)
    with pytest.raises(PolicyError, match="empty retention policy"):
        apply_policy([], policy, NOW, tz=UTC)
    with pytest.raises(PolicyError, match="empty retention policy"):
        apply_policy_grouped({"default": series("2021-03-10 12:00")}, policy, NOW, tz=UTC)


@pytest.mark.parametrize(
    "policy",
    [
        Policy(last=1),
        Policy(yearly=UNLIMITED),
        Policy(within="1h"),
        Policy(within_yearly="1y"),
        Policy(last=0, daily=1),
    ],
)
def test_non_empty_policy(policy):
    assert not policy.is_empty()


def test_removing_everything_is_refused(monkeypatch):
    # The rules cannot produce this; simulate a rule engine that keeps nothing to test the guard.
    monkeypatch.setattr(decide, "_rule_reasons", lambda ordered, *args: [[] for _ in ordered])
    with pytest.raises(PolicyError, match="would remove every one of the 2 snapshot"):
        apply_policy(series("2021-03-10 12:00", "2021-03-09 12:00"), Policy(last=1), NOW, tz=UTC)
    with pytest.raises(PolicyError, match=r"database 'db1': .*would remove every"):
        apply_policy_grouped({"db1": series("2021-03-10 12:00")}, Policy(last=1), NOW, tz=UTC)
    # A pinned snapshot is kept, so the guard does not fire.
    pinned = [Snap("p", t("2021-03-09 12:00"), pinned=True), *series("2021-03-10 12:00")]
    assert kept(apply_policy(pinned, Policy(last=1), NOW, tz=UTC)) == {"p": ["pinned"]}


def test_no_snapshots():
    assert apply_policy([], Policy(last=1), NOW, tz=UTC) == []


def test_naive_datetimes_are_rejected():
    with pytest.raises(PolicyError, match=r"'naive'.*naive datetime"):
        apply_policy([Snap("naive", datetime(2021, 3, 10, 12))], Policy(last=1), NOW, tz=UTC)
    with pytest.raises(PolicyError, match="now is a naive datetime"):
        apply_policy(series("2021-03-10 12:00"), Policy(last=1), datetime(2021, 3, 15), tz=UTC)
    with pytest.raises(PolicyError, match="naive"):
        Duration(days=1).subtract_from(datetime(2021, 3, 15))


def test_duplicate_names_are_rejected():
    snapshots = [Snap("x", t("2021-03-10 12:00")), Snap("x", t("2021-03-09 12:00"))]
    with pytest.raises(PolicyError, match="'x' appears more than once"):
        apply_policy(snapshots, Policy(last=1), NOW, tz=UTC)


def test_policy_type_is_checked():
    with pytest.raises(TypeError):
        apply_policy([], {"keep-last": 1}, NOW)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1y2m3d4h", Duration(years=1, months=2, days=3, hours=4)),
        ("2w", Duration(weeks=2)),
        ("2d", Duration(days=2)),
        ("36h", Duration(hours=36)),
        ("4h1d", Duration(days=1, hours=4)),
        ("1m1w", Duration(months=1, weeks=1)),
        (" 3d ", Duration(days=3)),
        ("0d", Duration()),
        ("010d", Duration(days=10)),
    ],
)
def test_parse_duration(text, expected):
    duration = parse_duration(text)
    assert duration == expected
    assert str(duration) == text.strip()
    assert duration.is_zero() == (expected == Duration())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid duration ''"),
        ("2", "invalid duration '2'"),
        ("d", "invalid duration"),
        ("1x", "units y \\(years\\), m \\(months\\), w \\(weeks\\), d \\(days\\), h \\(hours\\)"),
        ("1.5d", "invalid duration"),
        ("-1d", "invalid duration"),
        ("+1d", "invalid duration"),
        ("1 d", "invalid duration"),
        ("1d 2h", "invalid duration"),
        ("1M", "minutes are not supported"),
        ("2D", "lower case"),
        ("30s", "invalid duration"),
        ("1d1d", "unit 'd' appears more than once"),
        ("2 days", "invalid duration"),
        (5, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_parse_duration_rejects(text, message):
    with pytest.raises(PolicyError, match=message):
        parse_duration(text)


def test_duration_str_without_text():
    assert str(Duration(years=1, hours=4)) == "1y4h"
    assert str(Duration()) == "0h"


@pytest.mark.parametrize(
    ("duration", "moment", "tz", "expected"),
    [
        ("1m", t("2021-03-31 12:00"), UTC, t("2021-02-28 12:00")),
        ("1m", t("2020-03-31 12:00"), UTC, t("2020-02-29 12:00")),
        ("1y", t("2020-02-29 12:00"), UTC, t("2019-02-28 12:00")),
        ("13m", t("2021-01-15 00:00"), UTC, t("2019-12-15 00:00")),
        ("1y2m3d4h", t("2021-05-20 10:00"), UTC, t("2020-03-17 06:00")),
        ("2w", t("2021-03-15 00:00"), UTC, t("2021-03-01 00:00")),
        # Months on the Berlin calendar: 1 April 00:30 CEST - 1m = 1 March 00:30 CET.
        ("1m", t("2021-04-01 00:30", BERLIN), BERLIN, t("2021-03-01 00:30", BERLIN)),
        # Days are exact 24h spans, even across the DST change.
        ("1d", t("2021-03-28 12:00", BERLIN), BERLIN, t("2021-03-27 11:00", BERLIN)),
    ],
)
def test_subtract_from(duration, moment, tz, expected):
    result = parse_duration(duration).subtract_from(moment, tz)
    assert result == expected
    assert result.tzinfo is UTC


def test_subtract_from_too_far_back():
    with pytest.raises(PolicyError, match="reaches too far back"):
        parse_duration("2021y").subtract_from(t("2021-03-10 12:00"), UTC)
    with pytest.raises(PolicyError, match="reaches too far back"):
        parse_duration("999999999d").subtract_from(t("2021-03-10 12:00"), UTC)
    with pytest.raises(PolicyError, match="reaches too far back"):
        apply_policy(series("2021-03-10 12:00"), Policy(within="3000y"), NOW, tz=UTC)


# --------------------------------------------------------------------------- policy construction


def test_policy_constructor_normalises():
    policy = Policy(last=5, daily=7, within="2d")
    assert (policy.last, policy.daily, policy.within, policy.hourly) == (5, 7, "2d", None)
    assert Policy(last="unlimited").last == UNLIMITED
    assert Policy(last=" Unlimited ").last == UNLIMITED
    assert Policy(last=-1).last == UNLIMITED
    assert Policy(daily="7").daily == 7
    assert Policy(within=" 2d ").within == "2d"
    assert Policy(daily="7") == Policy(daily=7)
    assert Policy(within_daily="1m").durations() == {"within_daily": Duration(months=1)}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"last": -2}, "keep-last: expected a whole number >= 0 or 'unlimited', got -2"),
        ({"daily": "seven"}, "keep-daily: expected a whole number"),
        ({"daily": 1.5}, "keep-daily: expected a whole number"),
        ({"daily": "1.5"}, "keep-daily: expected a whole number"),
        ({"weekly": True}, "keep-weekly: expected a whole number"),
        ({"yearly": ""}, "keep-yearly: expected a whole number"),
        ({"within": "2 days"}, "keep-within: invalid duration '2 days'"),
        ({"within_monthly": 2}, "keep-within-monthly: a duration must be a string"),
    ],
)
def test_policy_constructor_rejects(kwargs, message):
    with pytest.raises(PolicyError, match=message):
        Policy(**kwargs)


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (
            {"keep-daily": 7, "keep-within": "2d", "keep-last": "unlimited"},
            Policy(daily=7, within="2d", last=UNLIMITED),
        ),
        ({"keep_within_daily": "1m", "keep_weekly": "4"}, Policy(within_daily="1m", weekly=4)),
        ({"within-hourly": "12h", "monthly": 6, "yearly": None}, Policy(within_hourly="12h", monthly=6)),
        ({"KEEP-HOURLY": "24", "Within_Yearly": "10y"}, Policy(hourly=24, within_yearly="10y")),
        ({"last": 0}, Policy(last=0)),
    ],
)
def test_from_mapping(mapping, expected):
    assert Policy.from_mapping(mapping) == expected


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"keep-dayly": 7}, "unknown retention option 'keep-dayly'"),
        ({"keep": 7}, "unknown retention option 'keep'"),
        ({"keep-within-minutely": "1h"}, "unknown retention option 'keep-within-minutely'"),
        ({1: 7}, "unknown retention option 1"),
        ({"keep-daily": 7, "daily": 3}, "'daily' given more than once \\(also as 'keep-daily'\\)"),
        ({"keep-daily": "seven"}, "keep-daily: expected a whole number >= 0 or 'unlimited', got 'seven'"),
        ({"keep-last": -5}, "keep-last: expected a whole number"),
        ({"keep-within": "2x"}, "keep-within: invalid duration '2x'"),
        ({"keep-within": 2}, "keep-within: a duration must be a string"),
    ],
)
def test_from_mapping_rejects(mapping, message):
    with pytest.raises(PolicyError, match=message):
        Policy.from_mapping(mapping)


def test_policy_error_is_a_value_error():
    assert issubclass(PolicyError, ValueError)


@pytest.mark.parametrize(
    ("policy", "text"),
    [
        (
            Policy(last=5, daily=7, weekly=4, within="2d", within_daily="1m"),
            "keep 5 latest, 7 daily, 4 weekly snapshots, all within 2d, the newest daily within 1m",
        ),
        (Policy(last=1), "keep 1 latest snapshot"),
        (Policy(daily=1, monthly=1), "keep 1 daily, 1 monthly snapshots"),
        (Policy(hourly=UNLIMITED, yearly=3), "keep all hourly, 3 yearly snapshots"),
        (Policy(last=0, within="1y2m3d4h"), "keep all within 1y2m3d4h"),
        (
            Policy(within_hourly="1d", within_weekly="2w", within_monthly="1y", within_yearly="10y"),
            "keep the newest hourly within 1d, the newest weekly within 2w, the newest monthly within 1y, "
            "the newest yearly within 10y",
        ),
        (Policy(daily=3, within="0d"), "keep 3 daily snapshots"),
        (Policy(), "keep nothing (empty policy)"),
    ],
)
def test_describe(policy, text):
    assert policy.describe() == text


# --------------------------------------------------------------------------- several databases


def test_group_by_database():
    a1 = Snap("a1", t("2021-03-10 12:00"), database="zeta")
    b1 = Snap("b1", t("2021-03-10 12:00"), database="alpha")
    a2 = Snap("a2", t("2021-03-09 12:00"), database="zeta")
    groups = group_by_database([a1, b1, a2], "database")
    assert groups == {"alpha": [b1], "zeta": [a1, a2]}
    assert list(groups) == ["alpha", "zeta"]
    assert group_by_database([a1, b1, a2], lambda s: s.database.upper()) == {"ALPHA": [b1], "ZETA": [a1, a2]}
    assert group_by_database([], "database") == {}


def test_group_by_database_with_unsortable_keys():
    a = Snap("a", t("2021-03-10 12:00"), database="x")
    b = Snap("b", t("2021-03-10 12:00"), database="y")
    keys = {"x": ("x", 1), "y": (None,)}
    groups = group_by_database([a, b], lambda s: keys[s.database])
    assert list(groups) == [("x", 1), (None,)]


def test_apply_policy_grouped():
    snapshots = [
        Snap("main-new", t("2021-03-10 12:00"), database="main"),
        Snap("main-old", t("2021-03-09 12:00"), database="main"),
        Snap("other-old", t("2021-01-01 12:00"), database="other"),
        # Same name in another database is fine.
        Snap("shared", t("2021-01-01 10:00"), database="other"),
        Snap("shared", t("2021-03-01 10:00"), database="main"),
    ]
    result = apply_policy_grouped(group_by_database(snapshots, "database"), Policy(last=1), NOW, tz=UTC)
    assert {key: kept(decisions) for key, decisions in result.items()} == {
        "main": {"main-new": ["last snapshot"]},
        "other": {"other-old": ["last snapshot"]},
    }
    assert [d.name for d in result["main"]] == ["main-new", "main-old", "shared"]
    assert apply_policy_grouped({}, Policy(last=1), NOW, tz=UTC) == {}
