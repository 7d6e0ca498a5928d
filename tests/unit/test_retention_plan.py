from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wpfarm_assets.backups.retention import plan_retention

UTC = timezone.utc


def daily_history(last: date, days: int, hour: int = 2) -> list[datetime]:
    return [datetime(last.year, last.month, last.day, hour, tzinfo=UTC) - timedelta(days=i) for i in range(days)]


def test_two_years_of_daily_backups_keep_exactly_52_with_the_expected_dates():
    plan = plan_retention(daily_history(date(2026, 11, 27), 730))  # Friday 27 November 2026
    by_tier = defaultdict(list)
    for time, tier in plan.items():
        by_tier[tier].append(time.date())
    assert len(plan) == 52
    assert sorted(by_tier["daily"]) == [date(2026, 11, 14) + timedelta(days=i) for i in range(14)]
    # The three newest weeks' Sundays (22nd, 15th) are daily already; Sunday 8 November is the first weekly.
    assert sorted(by_tier["weekly"]) == [date(2026, 5, 17) + timedelta(weeks=i) for i in range(26)]
    # November's newest is daily; May's newest (Sunday 31 May) is weekly: both months pass without counting.
    assert sorted(by_tier["monthly"]) == [
        date(2025, 10, 31), date(2025, 11, 30), date(2025, 12, 31), date(2026, 1, 31), date(2026, 2, 28),
        date(2026, 3, 31), date(2026, 4, 30), date(2026, 6, 30), date(2026, 7, 31), date(2026, 8, 31),
        date(2026, 9, 30), date(2026, 10, 31),
    ]


def test_a_short_history_keeps_everything_it_can_and_the_oldest():
    times = daily_history(date(2026, 1, 10), 20)
    plan = plan_retention(times)
    assert min(times) in plan and max(times) in plan
    assert sum(1 for t in plan.values() if t == "daily") == 14


def test_the_newest_backup_of_each_day_is_the_daily_one():
    morning = datetime(2026, 3, 1, 1, tzinfo=UTC)
    evening = datetime(2026, 3, 1, 23, tzinfo=UTC)
    assert plan_retention([morning, evening], daily=1, weekly=0, monthly=0) == {evening: "daily"}


def test_days_are_utc_days_whatever_the_offset_of_the_input():
    cet = timezone(timedelta(hours=1))
    late = datetime(2026, 3, 2, 0, 30, tzinfo=cet)  # 23:30 UTC on 1 March
    early = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
    assert plan_retention([late, early], daily=1, weekly=0, monthly=0) == {late: "daily"}


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_retention([datetime(2026, 1, 1)])  # noqa: DTZ001 - naive on purpose


def test_iso_weeks_cross_the_year():
    # Thursday 1 January 2026 and Sunday 4 January are ISO week 2026-W01; Monday 29 Dec 2025 too.
    monday = datetime(2025, 12, 29, tzinfo=UTC)
    sunday = datetime(2026, 1, 4, tzinfo=UTC)
    assert plan_retention([monday, sunday], daily=0, weekly=1, monthly=0) == {sunday: "weekly"}


# An independent reference: group by period first, then walk the periods' newest backups.
def reference(times, daily, weekly, monthly):
    times = sorted({t.astimezone(UTC) for t in times})
    rules = [
        ("daily", daily, lambda t: t.date()),
        ("weekly", weekly, lambda t: t.date() - timedelta(days=t.weekday())),  # the Monday of its week
        ("monthly", monthly, lambda t: t.strftime("%Y-%m")),
    ]
    kept = {}
    for name, wanted, period_of in rules:
        if wanted <= 0:
            continue
        newest = defaultdict(lambda: None)
        for t in times:
            newest[period_of(t)] = t  # ascending: the last one seen is the newest
        taken = 0
        for t in sorted(newest.values(), reverse=True):
            if taken == wanted:
                break
            if t in kept:
                continue
            kept[t] = name
            taken += 1
        if taken < wanted and times and times[0] not in kept:
            kept[times[0]] = name
    return kept


instants = st.datetimes(min_value=datetime(2023, 12, 1), max_value=datetime(2026, 2, 1)).map(  # noqa: DTZ001 - hypothesis bounds are naive
    lambda d: d.replace(tzinfo=UTC)
)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=-8)), timezone(timedelta(hours=5, minutes=30))])


@st.composite
def histories(draw):
    """Runs of daily backups with gaps, extra backups on some days, times near midnight and year ends."""
    times = []
    for _ in range(draw(st.integers(0, 6))):
        start = draw(instants)
        for day in range(draw(st.integers(1, 120))):
            if draw(st.integers(0, 9)) == 0:
                continue  # a gap
            base = start + timedelta(days=day)
            times.append(base)
            for _ in range(draw(st.integers(0, 2))):
                times.append(base + timedelta(hours=draw(st.integers(-23, 23))))
    times += draw(st.lists(instants, max_size=20))
    tz = draw(offsets)
    return [t.astimezone(tz) for t in times]


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(0, 20), st.integers(0, 30), st.integers(0, 15))
def test_matches_the_reference_on_random_histories(times, daily, weekly, monthly):
    plan = plan_retention(times, daily, weekly, monthly)
    assert plan == reference(times, daily, weekly, monthly)
    if times and daily:
        assert max(times) in plan  # the newest backup is always kept
    counts = defaultdict(int)
    for tier in plan.values():
        counts[tier] += 1
    assert counts["daily"] <= daily and counts["weekly"] <= weekly and counts["monthly"] <= monthly
    assert set(plan) <= {t.astimezone(UTC) for t in times}
