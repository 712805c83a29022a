"""Report periods (months, quarters, ISO weeks, ranges of days in the rule set's time
zone, and the period before each), the exact interval of a share, ranks with ties and
the rectify rule: the pure parts of the reports library."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binomtest

from integrity.errors import ConfigError, InvalidInput
from integrity.reports import Period, RectifyRule, clopper_pearson, competition_ranks, local_time

SHANGHAI = ZoneInfo("Asia/Shanghai")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_quarter_bounds_are_local_midnights_in_shanghai() -> None:
    q4 = Period.parse("2026-Q4", SHANGHAI)
    assert (q4.kind, q4.label) == ("quarter", "2026-Q4")
    assert q4.start == utc(2026, 9, 30, 16)  # 1 October 00:00 +08:00
    assert q4.end == utc(2026, 12, 31, 16)  # 1 January 2027 00:00 +08:00
    assert (q4.first_day, q4.last_day, q4.days) == (date(2026, 10, 1), date(2026, 12, 31), 92)
    assert Period.parse("2026-q1", SHANGHAI).label == "2026-Q1"
    assert Period.parse("2026-Q1", SHANGHAI).previous().label == "2025-Q4"
    assert Period.parse("2026-Q3", SHANGHAI).previous() == Period.parse("2026-Q2", SHANGHAI)


def test_iso_week_bounds_and_the_week_across_new_year() -> None:
    w43 = Period.parse("2026-W43", SHANGHAI)
    assert (w43.first_day, w43.last_day) == (date(2026, 10, 19), date(2026, 10, 25))
    assert w43.start == utc(2026, 10, 18, 16) and w43.end - w43.start == timedelta(days=7)
    # 1 January 2026 is a Thursday: 2026 has 53 ISO weeks, the last one ends in 2027
    w53 = Period.parse("2026-W53", SHANGHAI)
    assert (w53.first_day, w53.last_day) == (date(2026, 12, 28), date(2027, 1, 3))
    assert Period.parse("2027-W01", SHANGHAI).previous() == w53
    assert w53.previous().label == "2026-W52"
    with pytest.raises(InvalidInput) as info:
        Period.parse("2025-W53", SHANGHAI)  # 2025 has 52 weeks
    assert info.value.errors[0].field == "period"


def test_month_previous_and_lengths() -> None:
    assert Period.parse("2026-01", SHANGHAI).previous().label == "2025-12"
    feb = Period.parse("2026-03", SHANGHAI).previous()
    assert (feb.label, feb.days) == ("2026-02", 28)
    assert Period.month("2026-10", SHANGHAI) == Period.parse("2026-10", SHANGHAI)


def test_a_range_of_days_includes_both_ends_and_its_previous_has_the_same_length() -> None:
    r = Period.between("2026-10-01", "2026-10-10", SHANGHAI)
    assert (r.kind, r.label, r.days) == ("range", "2026-10-01..2026-10-10", 10)
    assert r.start == utc(2026, 9, 30, 16) and r.end == utc(2026, 10, 10, 16)
    prev = r.previous()
    assert (prev.first_day, prev.last_day) == (date(2026, 9, 21), date(2026, 9, 30))
    one = Period.between(date(2026, 10, 5), date(2026, 10, 5), SHANGHAI)
    assert one.days == 1 and one.previous().label == "2026-10-04..2026-10-04"
    with pytest.raises(InvalidInput) as info:
        Period.between("2026-10-10", "2026-10-01", SHANGHAI)
    assert info.value.errors[0].field == "to"
    with pytest.raises(InvalidInput) as info:
        Period.between("10/01/2026", "2026-10-01", SHANGHAI)
    assert info.value.errors[0].field == "from"


@pytest.mark.parametrize(
    "bad", ["2026-13", "2026-Q5", "2026-Q0", "2026-W00", "2026-W54", "Oct", ""]
)
def test_bad_periods_are_field_errors(bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Period.parse(bad, SHANGHAI)
    assert info.value.errors[0].field == "period"


@given(st.dates(date(2000, 1, 3), date(2099, 12, 1)), st.sampled_from(["month", "quarter", "week"]))
def test_periods_tile_time_without_gaps(day: date, kind: str) -> None:
    """The period of a day, and the one before it, meet exactly; the day is inside."""
    text = {
        "month": day.strftime("%Y-%m"),
        "quarter": f"{day.year}-Q{(day.month - 1) // 3 + 1}",
        "week": f"{day.isocalendar()[0]}-W{day.isocalendar()[1]:02d}",
    }[kind]
    p = Period.parse(text, SHANGHAI)
    assert p.first_day is not None and p.last_day is not None
    assert p.first_day <= day <= p.last_day
    assert p.previous().end == p.start
    assert p.previous().kind == kind


def test_local_time_shows_the_zone_offset() -> None:
    assert local_time(utc(2026, 10, 15, 2), SHANGHAI) == "2026-10-15 10:00:00 +08:00"
    p = Period.parse("2026-10", SHANGHAI)
    assert p.describe() == "2026-10 (2026-10-01 00:00:00 +08:00 to 2026-11-01 00:00:00 +08:00)"


@given(st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_clopper_pearson_equals_scipys_exact_interval(kn: tuple[int, int]) -> None:
    k, n = kn
    lo, hi = clopper_pearson(k, n)
    want = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert lo == pytest.approx(want.low, abs=1e-9) and hi == pytest.approx(want.high, abs=1e-9)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_ranks_share_ties_and_skip() -> None:
    assert competition_ranks({"a": 4.0, "b": 4.5, "c": 4.0, "d": 3.0}) == {
        "b": 1,
        "a": 2,
        "c": 2,
        "d": 4,
    }
    # sums taken in another order differ in the last bits: still a tie
    assert competition_ranks({"x": 0.1 + 0.2, "y": 0.3}) == {"x": 1, "y": 1}
    assert competition_ranks({}) == {}


@given(st.dictionaries(st.text(min_size=1, max_size=3), st.sampled_from([1.0, 2.5, 3.0, 4.55])))
def test_rank_is_one_plus_the_groups_strictly_better(scores: dict[str, float]) -> None:
    ranks = competition_ranks(scores)
    for k, s in scores.items():
        assert ranks[k] == 1 + sum(1 for v in scores.values() if v > s)


def test_rectify_rule_needs_a_rate_above_the_mark_and_enough_counted() -> None:
    rule = RectifyRule.from_section({"rectify_low_rate": 0.2, "rectify_min_counted": 10})
    assert rule.applies(10, 0.3)
    assert not rule.applies(9, 0.9)  # too few counted
    assert not rule.applies(50, 0.2)  # at the mark is not above it
    assert not rule.applies(0, None)
    assert RectifyRule.from_section({}) == RectifyRule(0.20, 10)
    for bad in ({"rectify_low_rate": 1.5}, {"rectify_min_counted": 0}, {"rectify_low_rate": "x"}):
        with pytest.raises(ConfigError):
            RectifyRule.from_section(bad)
