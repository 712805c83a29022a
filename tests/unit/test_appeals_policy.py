"""Appeal policy: eligibility limits (window, quota, duplicates, grounds, low score),
working-day deadlines, separation of duties, uphold quorum, and the [appeals] knobs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appeals.policy import (
    GROUNDS,
    NOT_GROUNDS,
    AppealPolicy,
    FilingFacts,
    check_filing,
    month_bounds,
    reviewer_conflict,
    uphold_completes,
    within_filing_window,
    written_reason,
)
from integrity.errors import ConfigError, InvalidInput
from integrity.model import DEFAULT_RUBRIC, Rubric, Status

SHANGHAI = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 10, 12, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
LOW = {"attitude": 1, "efficiency": 2, "compliance": 2, "environment": 3, "overall": 1}
P = AppealPolicy()


def facts(**kw: Any) -> FilingFacts:
    base: dict[str, Any] = {
        "appellant_id": "S1",
        "appellant_windows": ("W01",),
        "rating_staff_id": "S1",
        "rating_window_id": "W01",
        "rating_status": Status.ACCEPTED,
        "composite": DEFAULT_RUBRIC.composite(LOW),
        "scores": LOW,
        "submitted_at": T,
        "filed_at": T + timedelta(days=1),
        "ground": "abusive_or_unrelated",
        "admitted_this_month": 0,
        "existing_appeal": None,
    }
    base.update(kw)
    return FilingFacts(**base)


def codes(policy: AppealPolicy, f: FilingFacts) -> set[str]:
    return {p.code for p in check_filing(policy, f)}


# -- the knobs ----------------------------------------------------------------------------


def test_defaults_follow_the_issue() -> None:
    p = AppealPolicy.from_section({}, DEFAULT_RUBRIC)
    assert p.filing_window_days == 7
    assert p.low_composite_below == 3.0
    assert p.low_dimension_at_most == 2
    assert p.uphold_reviewers == 2
    assert p.decision_due_working_days == 15


def test_the_low_mark_follows_the_rubric_unless_set() -> None:
    rubric = Rubric(weights={"a": 1.0}, low_score_below=3.5)
    assert AppealPolicy.from_section({}, rubric).low_composite_below == 3.5
    assert (
        AppealPolicy.from_section({"low_composite_below": 2.5}, rubric).low_composite_below == 2.5
    )


def test_section_values_are_read_and_dates_parsed() -> None:
    p = AppealPolicy.from_section(
        {
            "filing_window_days": 10,
            "monthly_quota": 3,
            "uphold_reviewers": 1,
            "holidays": ["2026-10-01", date(2026, 10, 2)],
            "working_weekends": ["2026-10-10"],
            "allow_window_ratings": False,
        }
    )
    assert p.filing_window_days == 10.0
    assert p.monthly_quota == 3
    assert p.uphold_reviewers == 1
    assert p.holidays == {date(2026, 10, 1), date(2026, 10, 2)}
    assert p.working_weekends == {date(2026, 10, 10)}
    assert p.allow_window_ratings is False


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"filing_window": 7}, "unknown key(s) filing_window"),
        ({"monthly_quota": "ten"}, "monthly_quota: expected an integer"),
        ({"monthly_quota": 2.5}, "monthly_quota: expected an integer"),
        ({"uphold_reviewers": 0}, "uphold_reviewers: must be positive"),
        ({"monthly_quota": -1}, "monthly_quota: must not be negative"),
        ({"filing_window_days": True}, "filing_window_days: expected a number"),
        ({"holidays": "2026-10-01"}, "holidays: expected a list"),
        ({"holidays": ["1 Oct"]}, "'1 Oct' is not a date"),
        ({"allow_window_ratings": 1}, "expected true or false"),
        (
            {"holidays": ["2026-10-10"], "working_weekends": ["2026-10-10"]},
            "both a holiday and a working weekend",
        ),
    ],
)
def test_bad_sections_are_config_errors_naming_the_key(
    section: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError, match="appeals") as err:
        AppealPolicy.from_section(section)
    assert needle in str(err.value)


# -- eligibility ----------------------------------------------------------------------------


def test_an_own_low_recent_first_appeal_on_a_ground_is_admitted() -> None:
    assert check_filing(P, facts()) == ()


@pytest.mark.parametrize("ground", sorted(GROUNDS))
def test_every_listed_ground_is_admissible(ground: str) -> None:
    assert codes(P, facts(ground=ground)) == set()


@pytest.mark.parametrize("ground", sorted(NOT_GROUNDS))
def test_disagreeing_with_the_score_is_not_a_ground(ground: str) -> None:
    problems = check_filing(P, facts(ground=ground))
    assert [p.code for p in problems] == ["ground_not_admissible"]
    assert "not a ground" in problems[0].message


def test_someone_elses_rating_is_not_yours() -> None:
    assert codes(P, facts(rating_staff_id="S2")) == {"not_own_rating"}


def test_a_rating_naming_no_staff_at_your_window_is_yours_if_allowed() -> None:
    f = facts(rating_staff_id=None, rating_window_id="W01")
    assert codes(P, f) == set()
    assert codes(AppealPolicy(allow_window_ratings=False), f) == {"not_own_rating"}
    assert codes(P, facts(rating_staff_id=None, rating_window_id="W09")) == {"not_own_rating"}


@pytest.mark.parametrize("status", [Status.REJECTED, Status.VOIDED])
def test_a_rating_that_does_not_count_cannot_be_appealed(status: Status) -> None:
    assert codes(P, facts(rating_status=status)) == {"rating_not_counted"}


def test_a_held_rating_may_be_appealed() -> None:
    assert codes(P, facts(rating_status=Status.HELD)) == set()


def test_every_reason_is_reported_at_once() -> None:
    f = facts(
        rating_staff_id="S2",
        scores={"a": 5},
        composite=5.0,
        filed_at=T + timedelta(days=30),
        existing_appeal=3,
        admitted_this_month=10,
        ground="disagree_with_score",
    )
    assert codes(P, f) == {
        "not_own_rating",
        "not_low_score",
        "filing_window_closed",
        "already_appealed",
        "monthly_quota_exceeded",
        "ground_not_admissible",
    }


scores_st = st.dictionaries(
    st.sampled_from(["attitude", "efficiency", "compliance", "environment", "overall"]),
    st.integers(1, 5),
    min_size=5,
    max_size=5,
)


@given(scores=scores_st)
def test_low_score_is_composite_below_the_mark_or_any_dimension_at_most_two(
    scores: dict[str, int],
) -> None:
    composite = DEFAULT_RUBRIC.composite(scores)
    expected = composite < 3.0 or min(scores.values()) <= 2
    assert P.is_low_score(composite, scores) is expected
    assert ("not_low_score" not in codes(P, facts(scores=scores, composite=composite))) is expected


@given(
    window_days=st.integers(1, 30),
    offset_s=st.integers(-3 * 86400, 40 * 86400),
)
def test_filing_window_boundary(window_days: int, offset_s: int) -> None:
    """Admitted from the rating's submitted_at up to and including window_days later."""
    p = AppealPolicy(filing_window_days=window_days)
    filed = T + timedelta(seconds=offset_s)
    inside = 0 <= offset_s <= window_days * 86400
    assert within_filing_window(p, T, filed) is inside
    assert ("filing_window_closed" not in codes(p, facts(filed_at=filed))) is inside


@pytest.mark.parametrize(
    ("delta", "inside"),
    [
        (timedelta(days=7), True),
        (timedelta(days=7, microseconds=1), False),
        (timedelta(0), True),
        (timedelta(microseconds=-1), False),
    ],
)
def test_filing_window_edges_to_the_microsecond(delta: timedelta, inside: bool) -> None:
    assert within_filing_window(P, T, T + delta) is inside


@given(quota=st.integers(0, 50), admitted=st.integers(0, 60))
def test_monthly_quota(quota: int, admitted: int) -> None:
    p = AppealPolicy(monthly_quota=quota)
    over = "monthly_quota_exceeded" in codes(p, facts(admitted_this_month=admitted))
    assert over is (admitted >= quota)


@given(existing=st.one_of(st.none(), st.integers(1, 10**9)))
def test_one_appeal_per_rating(existing: int | None) -> None:
    problems = {p.code: p.message for p in check_filing(P, facts(existing_appeal=existing))}
    assert ("already_appealed" in problems) is (existing is not None)
    if existing is not None:
        assert f"appeal {existing}" in problems["already_appealed"]


@given(
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    )
)
def test_month_bounds_contain_the_instant_in_local_time(at: datetime) -> None:
    start, end = month_bounds(at, SHANGHAI)
    assert start <= at < end
    assert start.astimezone(SHANGHAI).day == 1
    assert start.astimezone(SHANGHAI).hour == 0
    assert 28 <= (end - start).days <= 31


# -- deadlines ------------------------------------------------------------------------------


def test_fifteen_working_days_are_three_weeks() -> None:
    due = P.due_at(T, SHANGHAI)  # filed Monday 2026-10-12
    assert due.astimezone(SHANGHAI) == datetime(2026, 11, 3, tzinfo=SHANGHAI)


def test_a_friday_plus_one_working_day_is_monday() -> None:
    assert P.add_working_days(date(2026, 10, 16), 1) == date(2026, 10, 19)


def test_holidays_are_skipped_and_working_weekends_count() -> None:
    p = AppealPolicy(
        holidays=frozenset({date(2026, 10, 13)}), working_weekends=frozenset({date(2026, 10, 17)})
    )
    assert p.add_working_days(date(2026, 10, 12), 1) == date(2026, 10, 14)
    assert p.add_working_days(date(2026, 10, 16), 1) == date(2026, 10, 17)


def test_the_deadline_is_judged_in_the_rule_sets_time_zone() -> None:
    """Friday 20:00 UTC is already Saturday in Shanghai: the count starts from Saturday."""
    friday_evening_utc = datetime(2026, 10, 16, 20, 0, tzinfo=UTC)
    p = AppealPolicy(decision_due_working_days=1)
    assert p.due_at(friday_evening_utc, SHANGHAI) == datetime(2026, 10, 20, tzinfo=SHANGHAI)
    assert p.due_at(friday_evening_utc, ZoneInfo("UTC")) == datetime(2026, 10, 20, tzinfo=UTC)


holiday_sets = st.frozensets(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=20)


@settings(max_examples=200)
@given(
    start=st.dates(date(2026, 1, 1), date(2026, 12, 31)),
    n=st.integers(1, 40),
    holidays=holiday_sets,
)
def test_adding_working_days_lands_on_a_working_day_n_working_days_later(
    start: date, n: int, holidays: frozenset[date]
) -> None:
    p = AppealPolicy(holidays=holidays)
    end = p.add_working_days(start, n)
    assert end > start
    assert p.is_working_day(end)
    assert p.working_days_between(start, end) == n
    assert p.working_days_between(start, end - timedelta(days=1)) == n - 1


# -- separation of duties and quorum --------------------------------------------------------


def conflict(**kw: Any) -> str | None:
    base: dict[str, Any] = {
        "reviewer_id": "R1",
        "reviewer_unit": "U2",
        "appellant_id": "S1",
        "appellant_units": {"U1"},
    }
    base.update(kw)
    return reviewer_conflict(**base)


def test_a_reviewer_from_another_unit_may_review() -> None:
    assert conflict() is None


def test_the_appellant_never_reviews_their_own_appeal() -> None:
    assert "own appeal" in (conflict(reviewer_id="S1", reviewer_unit="U9") or "")


def test_nobody_from_the_appellants_unit_reviews() -> None:
    assert "appellant's unit" in (conflict(reviewer_unit="U1") or "")
    # the unit at filing and the unit now both count
    assert conflict(reviewer_unit="U3", appellant_units={"U1", "U3"}) is not None


def test_an_empty_unit_never_matches() -> None:
    assert conflict(reviewer_unit="", appellant_units={""}) is None


def test_reopened_appeals_need_fresh_reviewers_unless_configured() -> None:
    assert "earlier round" in (conflict(earlier_reviewers={"R1"}) or "")
    assert conflict(earlier_reviewers={"R1"}, fresh_reviewers=False) is None


@given(needed=st.integers(1, 5), voters=st.lists(st.sampled_from(["R1", "R2", "R3", "R4"])))
def test_an_uphold_completes_when_distinct_voters_reach_the_quorum(
    needed: int, voters: list[str]
) -> None:
    p = AppealPolicy(uphold_reviewers=needed)
    assert uphold_completes(p, voters) is (len(set(voters)) + 1 >= needed)


def test_one_uphold_is_a_vote_two_complete_by_default() -> None:
    assert not uphold_completes(P, [])
    assert uphold_completes(P, ["R1"])
    assert uphold_completes(AppealPolicy(uphold_reviewers=1), [])


def test_written_reasons_have_a_minimum_length() -> None:
    assert written_reason(P, "  long enough reason  ") == "long enough reason"
    with pytest.raises(InvalidInput, match="at least 10 characters"):
        written_reason(P, "too short")
    with pytest.raises(InvalidInput):
        written_reason(AppealPolicy(min_reason_chars=0), "   ")
