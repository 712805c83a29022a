"""The core's working-day calendar (integrity/calendar.py): weekends, holidays, make-up
weekend days, deadlines as instants in the rule set's time zone; the rule set's
``[calendar]`` and ``[review]`` tables; appeals counting in the same calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appeals.policy import AppealPolicy
from integrity.calendar import WorkingCalendar, due_day
from integrity.config import parse_core_config
from integrity.errors import ConfigError
from rules.detectors.review import ReviewPolicy
from rules.ruleset import default_ruleset_text, load_ruleset

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Thursday 2026-10-15, 10:00 in Shanghai
THU = datetime(2026, 10, 15, 2, 0, tzinfo=UTC)
# a holiday on Monday 19 October, made up on Saturday 24 October
CAL = WorkingCalendar(
    holidays=frozenset({date(2026, 10, 19)}), working_weekends=frozenset({date(2026, 10, 24)})
)


def local(at: datetime) -> datetime:
    return at.astimezone(SHANGHAI)


def test_five_working_days_from_a_thursday_cross_the_weekend() -> None:
    due = WorkingCalendar().due_at(THU, SHANGHAI, 5)  # Fri, Mon, Tue, Wed, Thu
    assert local(due) == datetime(2026, 10, 23, tzinfo=SHANGHAI)
    assert due_day(due, SHANGHAI) == "2026-10-22"


def test_a_holiday_pushes_the_deadline_and_a_make_up_saturday_counts() -> None:
    # Fri 16, (Mon 19 holiday), Tue 20, Wed 21, Thu 22, Fri 23
    assert due_day(CAL.due_at(THU, SHANGHAI, 5), SHANGHAI) == "2026-10-23"
    # ... Fri 23, Sat 24 (made up): the sixth working day is the Saturday
    assert due_day(CAL.due_at(THU, SHANGHAI, 6), SHANGHAI) == "2026-10-24"
    assert due_day(WorkingCalendar().due_at(THU, SHANGHAI, 6), SHANGHAI) == "2026-10-23"


def test_the_local_day_decides_not_the_utc_day() -> None:
    """Friday 20:00 UTC is already Saturday in Shanghai: counting starts from Saturday."""
    friday_evening_utc = datetime(2026, 10, 16, 20, 0, tzinfo=UTC)
    assert local(WorkingCalendar().due_at(friday_evening_utc, SHANGHAI, 1)) == datetime(
        2026, 10, 20, tzinfo=SHANGHAI
    )
    assert WorkingCalendar().due_at(friday_evening_utc, ZoneInfo("UTC"), 1) == datetime(
        2026, 10, 20, tzinfo=UTC
    )


def test_a_date_cannot_be_both_a_holiday_and_a_working_weekend() -> None:
    with pytest.raises(ConfigError, match="both a holiday and a working weekend"):
        CAL.merged(working_weekends={date(2026, 10, 19)})


@settings(max_examples=200)
@given(
    start=st.dates(date(2026, 1, 1), date(2026, 12, 31)),
    n=st.integers(1, 40),
    holidays=st.frozensets(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=20),
)
def test_adding_working_days_lands_on_a_working_day(
    start: date, n: int, holidays: frozenset[date]
) -> None:
    cal = WorkingCalendar(holidays=holidays)
    end = cal.add_working_days(start, n)
    assert end > start and cal.is_working_day(end)
    assert cal.working_days_between(start, end) == n
    assert cal.working_days_between(start, end - timedelta(days=1)) == n - 1


def test_the_rule_set_calendar_is_parsed_once_by_the_core() -> None:
    text = default_ruleset_text().replace(
        "[calendar]\nholidays = []\nworking_weekends = []",
        '[calendar]\nholidays = ["2026-10-19", 2026-10-20]\nworking_weekends = ["2026-10-24"]',
    )
    core = parse_core_config(text)
    assert core.calendar.holidays == {date(2026, 10, 19), date(2026, 10, 20)}
    assert core.calendar.working_weekends == {date(2026, 10, 24)}
    assert load_ruleset(text).core.calendar == core.calendar
    assert parse_core_config(default_ruleset_text()).calendar == WorkingCalendar()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[calendar]\nholidays = "2026-10-01"', r"\[calendar\].holidays: expected a list"),
        ('[calendar]\nholidays = ["1 Oct"]', "'1 Oct' is not a date"),
        ("[calendar]\nbridges = []", "unknown key"),
        ('calendar = "x"', "'calendar' must be a table"),
    ],
)
def test_a_bad_calendar_names_the_key(table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_core_config(f'name = "t"\n{table}\n')


def test_appeals_count_in_the_core_calendar_plus_their_own_days() -> None:
    shared = WorkingCalendar(holidays=frozenset({date(2026, 10, 19)}))
    p = AppealPolicy.from_section({"decision_due_working_days": 1}, None, shared)
    assert p.add_working_days(date(2026, 10, 16), 1) == date(2026, 10, 20)  # Mon is a holiday
    # [appeals] holidays (rule sets written before [calendar]) are added to the shared ones
    p = AppealPolicy.from_section(
        {"decision_due_working_days": 1, "holidays": ["2026-10-20"]}, None, shared
    )
    assert p.add_working_days(date(2026, 10, 16), 1) == date(2026, 10, 21)
    with pytest.raises(ConfigError, match=r"\[appeals\] with \[calendar\]"):
        AppealPolicy.from_section({"working_weekends": ["2026-10-19"]}, None, shared)


def test_review_deadline_is_configured_in_working_days() -> None:
    assert ReviewPolicy.from_section({}).deadline_working_days == 5
    assert ReviewPolicy.from_section({"deadline_working_days": 3}).deadline_working_days == 3
    rules = load_ruleset(default_ruleset_text())
    assert ReviewPolicy.from_section(rules.section("review")) == ReviewPolicy(5)
    for bad in ({"deadline_working_days": 0}, {"deadline_working_days": "5"}, {"days": 5}):
        with pytest.raises(ConfigError, match=r"\[review\]"):
            ReviewPolicy.from_section(bad)
