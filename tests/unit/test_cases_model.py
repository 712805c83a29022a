"""The rectification case's state machine, written out here (not derived from the table it
checks); the rule that opens and checks a case (1 low score in 3 opens none); the exact
binomial interval beside the rate; the bottom ranks; due dates in working days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from followup.cases.model import (
    EVENT_KINDS,
    FINAL_STATES,
    OPENED_KIND,
    TRANSITIONS,
    Action,
    State,
    TransitionNotAllowed,
    allowed_commands,
    transition,
)
from followup.cases.policy import CasePolicy, bottom_windows
from followup.cases.service import figure_changes, figures_digest
from integrity.calendar import WorkingCalendar
from integrity.catalogue import KINDS
from integrity.errors import ConfigError
from integrity.reports import clopper_pearson

SHANGHAI = ZoneInfo("Asia/Shanghai")

# The whole machine, by hand: (state, action) -> next state. Nothing else is allowed.
EXPECTED = {
    ("open", "plan"): "planned",
    ("planned", "plan"): "planned",
    ("in_progress", "plan"): "in_progress",
    ("open", "note"): "open",
    ("planned", "note"): "in_progress",
    ("in_progress", "note"): "in_progress",
    ("open", "close"): "closed",
    ("planned", "close"): "closed",
    ("in_progress", "close"): "closed",
    ("open", "check_resolved"): "resolved",
    ("planned", "check_resolved"): "resolved",
    ("in_progress", "check_resolved"): "resolved",
    ("open", "check_unresolved"): "unresolved",
    ("planned", "check_unresolved"): "unresolved",
    ("in_progress", "check_unresolved"): "unresolved",
    ("open", "check_too_few"): "open",
    ("planned", "check_too_few"): "planned",
    ("in_progress", "check_too_few"): "in_progress",
    # past the due date: marked and escalated in place, while active
    ("open", "mark_overdue"): "open",
    ("planned", "mark_overdue"): "planned",
    ("in_progress", "mark_overdue"): "in_progress",
    ("open", "escalate"): "open",
    ("planned", "escalate"): "planned",
    ("in_progress", "escalate"): "in_progress",
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("action", list(Action))
def test_every_move_is_allowed_or_refused_as_written(state: State, action: Action) -> None:
    want = EXPECTED.get((state.value, action.value))
    if want is None:
        with pytest.raises(TransitionNotAllowed, match=f"case 7 is {state.value}"):
            transition(state, action, 7)
    else:
        assert transition(state, action, 7).value == want
    assert {(s.value, a.value): n.value for (s, a), n in TRANSITIONS.items()} == EXPECTED


def test_final_states_allow_nothing_and_every_action_has_a_catalogued_kind() -> None:
    assert {State.RESOLVED, State.UNRESOLVED, State.CLOSED} == FINAL_STATES
    for s in FINAL_STATES:
        assert allowed_commands(s) == ()
        assert not any(st_ == s for st_, _ in TRANSITIONS)
    assert allowed_commands(State.OPEN) == ("plan", "note", "close")
    assert {OPENED_KIND, *EVENT_KINDS.values()} <= set(KINDS)
    assert str(OPENED_KIND) == "rectification.opened"
    assert str(EVENT_KINDS[Action.MARK_OVERDUE]) == "rectification.overdue"
    assert str(EVENT_KINDS[Action.ESCALATE]) == "rectification.escalated"


def test_one_low_score_in_three_opens_no_case_and_the_check_needs_enough_ratings() -> None:
    p = CasePolicy()
    assert (p.mark, p.min_counted) == (0.20, 10)
    assert not p.opens(3, 1 / 3)  # 33 % but only 3 counted
    assert not p.opens(9, 5 / 9)
    assert p.opens(10, 0.3)
    assert not p.opens(10, 0.2)  # at the mark is not above it
    assert not p.opens(0, None)
    assert p.check(3, 1 / 3) == "too_few"
    assert p.check(0, None) == "too_few"
    assert p.check(10, 0.2) == "resolved"
    assert p.check(10, 0.0) == "resolved"
    assert p.check(12, 0.25) == "unresolved"


@settings(deadline=None)  # the first call imports scipy.stats
@given(st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_the_interval_is_scipys_exact_binomial_interval(kn: tuple[int, int]) -> None:
    from scipy.stats import binomtest

    k, n = kn
    want = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    lo, hi = clopper_pearson(k, n)
    assert lo == pytest.approx(want.low, abs=1e-9)
    assert hi == pytest.approx(want.high, abs=1e-9)
    assert lo <= k / n <= hi


def test_bottom_ranks_take_ties_and_need_more_windows_than_ranks() -> None:
    scores = {"W1": 4.5, "W2": 3.1, "W3": 3.1, "W4": 4.0, "W5": 4.8}
    assert bottom_windows(scores, 1) == {"W2", "W3"}  # tied last: both
    assert bottom_windows(scores, 2) == {"W2", "W3"}
    assert bottom_windows(scores, 3) == {"W2", "W3", "W4"}
    assert bottom_windows(scores, 0) == frozenset()
    assert bottom_windows({"W1": 3.0, "W2": 4.0, "W3": 5.0}, 3) == frozenset()


def test_policy_reads_followup_and_due_dates_count_working_days() -> None:
    cal = WorkingCalendar(
        holidays=frozenset({date(2026, 10, d) for d in range(1, 9)}),
        working_weekends=frozenset({date(2026, 10, 10)}),
    )
    p = CasePolicy.from_section({"case_working_days": 3}, cal, SHANGHAI)
    # closed Wednesday 30 September 10:00 Shanghai; 1-8 October are holidays; Saturday
    # 10 October is worked: 9, 10, 12 October -> due by the end of Monday 12 October
    opened = datetime(2026, 9, 30, 2, tzinfo=UTC)
    assert p.due_at(opened) == datetime(2026, 10, 12, 16, tzinfo=UTC)
    assert CasePolicy.from_section({}).case_working_days == 20
    for bad in ({"case_working_days": 0}, {"talk_bottom_ranks": -1}, {"case_working_days": 1.5}):
        with pytest.raises(ConfigError, match=r"\[followup\]"):
            CasePolicy.from_section(bad)


def test_the_digest_is_canonical_and_changes_are_per_subject() -> None:
    a = {"window": [{"subject": "W1", "counted": 10, "low_scores": 3}], "staff": []}
    b = {"staff": [], "window": [{"low_scores": 3, "counted": 10, "subject": "W1"}]}
    assert figures_digest(a) == figures_digest(b)
    now = {"window": [{"subject": "W1", "counted": 9, "low_scores": 2}], "staff": []}
    [c] = figure_changes(a, now)
    assert (c.kind, c.subject, c.counted_then, c.counted_now, c.low_then, c.low_now) == (
        "window",
        "W1",
        10,
        9,
        3,
        2,
    )
    assert figure_changes(a, b) == []
