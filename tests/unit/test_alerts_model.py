"""The alert's state machine, written out here (not derived from the table it checks), the
low-score rule and the deadlines in Asia/Shanghai across weekends, holidays and make-up
working days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from followup.alerts.model import (
    EVENT_KINDS,
    FINAL_STATES,
    TRANSITIONS,
    Action,
    Alert,
    Deadline,
    State,
    TransitionNotAllowed,
    allowed_commands,
    stage_words,
    transition,
)
from followup.alerts.policy import AlertPolicy
from followup.webhooks.model import check_subscription, matches
from integrity.calendar import WorkingCalendar
from integrity.catalogue import KINDS
from integrity.errors import ConfigError
from integrity.model import DEFAULT_RUBRIC

SHANGHAI = ZoneInfo("Asia/Shanghai")

# The whole machine, by hand: (state, action) -> next state. Nothing else is allowed.
EXPECTED = {
    ("open", "acknowledge"): "acknowledged",
    ("acknowledged", "verify"): "verified",
    ("verified", "rectify"): "rectified",
    ("rectified", "reply"): "feedback_given",
    ("feedback_given", "close"): "closed",
    ("open", "void"): "void",
    ("acknowledged", "void"): "void",
    ("verified", "void"): "void",
    ("rectified", "void"): "void",
    ("feedback_given", "void"): "void",
    ("open", "mark_overdue"): "open",
    ("acknowledged", "mark_overdue"): "acknowledged",
    ("verified", "mark_overdue"): "verified",
    ("rectified", "mark_overdue"): "rectified",
    ("open", "escalate"): "open",
    ("acknowledged", "escalate"): "acknowledged",
    ("verified", "escalate"): "verified",
    ("rectified", "escalate"): "rectified",
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("action", list(Action))
def test_the_transition_table_is_exactly_the_loop(state: State, action: Action) -> None:
    want = EXPECTED.get((state.value, action.value))
    if want is None:
        with pytest.raises(TransitionNotAllowed) as err:
            transition(state, action, 7)
        assert f"alert 7 is {state.value}" in str(err.value)
    else:
        assert transition(state, action) is State(want)


def test_the_table_has_nothing_more() -> None:
    assert {(s.value, a.value): n.value for (s, a), n in TRANSITIONS.items()} == EXPECTED


def test_closed_and_void_are_final_and_lead_nowhere() -> None:
    assert {s.value for s in FINAL_STATES} == {"closed", "void"}
    for s in FINAL_STATES:
        assert allowed_commands(s) == ()
        assert not any(k[0] is s for k in TRANSITIONS)


def test_every_action_is_one_catalogued_event_kind() -> None:
    kinds = {str(k) for k in EVENT_KINDS.values()}
    assert kinds == {
        "alert.acknowledged",
        "alert.verified",
        "alert.rectified",
        "alert.replied",
        "alert.closed",
        "alert.voided",
        "alert.overdue",
        "alert.escalated",
    }
    assert kinds | {"alert.opened"} <= {str(k) for k in KINDS}


def test_webhooks_may_subscribe_to_the_alerts_kinds() -> None:
    patterns, errors = check_subscription(["alert.*", "alert.escalated"])
    assert errors == [] and patterns == ("alert.*", "alert.escalated")
    assert matches(patterns, "alert.overdue")


def test_a_refusal_says_what_is_allowed_now() -> None:
    with pytest.raises(TransitionNotAllowed, match=r"cannot reply \(allowed now: verify\)"):
        transition(State.ACKNOWLEDGED, Action.REPLY, 3)


# -- what counts as low --------------------------------------------------------------------


def scores(**kw: int) -> dict[str, int]:
    base = dict.fromkeys(DEFAULT_RUBRIC.dimensions, 5)
    return base | kw


def test_low_is_a_composite_below_the_mark_or_one_dimension_at_most_the_setting() -> None:
    policy = AlertPolicy.from_section({}, DEFAULT_RUBRIC)
    assert policy.is_low(2.99, scores(efficiency=1, attitude=2))
    assert not policy.is_low(3.0, scores(efficiency=3))
    assert policy.is_low(4.2, scores(attitude=1))  # "very dissatisfied" on one dimension
    assert not policy.is_low(4.4, scores(attitude=2))
    off = AlertPolicy.from_section({"low_dimension_at_most": 0}, DEFAULT_RUBRIC)
    assert not off.is_low(4.2, scores(attitude=1))
    two = AlertPolicy.from_section({"low_dimension_at_most": 2}, DEFAULT_RUBRIC)
    assert two.is_low(4.4, scores(attitude=2))


@pytest.mark.parametrize(
    "section",
    [
        {"low_dimension_at_most": 1.5},
        {"low_dimension_at_most": 9},
        {"respond_hours": 0},
        {"reply_working_days": "five"},
        {"alert_min_text_chars": True},
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(section: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"\[followup\] " + next(iter(section))):
        AlertPolicy.from_section(section, DEFAULT_RUBRIC)


# -- deadlines ------------------------------------------------------------------------------

# 2026: National Day holidays 1-7 October with make-up working days on Sunday 27
# September and Saturday 10 October (an example calendar, not the official one).
CAL = WorkingCalendar(
    holidays=frozenset(date(2026, 10, d) for d in range(1, 8)),
    working_weekends=frozenset({date(2026, 9, 27), date(2026, 10, 10)}),
)
POLICY = AlertPolicy.from_section({}, DEFAULT_RUBRIC, CAL, SHANGHAI)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("opened", "reply_due_end_of"),
    [
        # Wednesday before the holidays: Thu 8 (1), Fri 9 (2), Sat 10 make-up (3), Mon 12
        # (4), Tue 13 (5)
        ("2026-09-30 10:00", "2026-10-13"),
        # on a holiday: the working days start after it
        ("2026-10-03 09:00", "2026-10-13"),
        # a plain Friday: over the weekend to the next Friday
        ("2026-10-16 16:30", "2026-10-23"),
        # late on a Friday night, local time: still Friday's count
        ("2026-10-16 23:59", "2026-10-23"),
        # on the make-up Saturday (a working day itself; the count starts the day after)
        ("2026-10-10 11:00", "2026-10-16"),
        # Saturday 26 September: Sun 27 make-up (1), Mon 28 (2), Tue 29 (3), Wed 30 (4),
        # then the holidays, Thu 8 October (5)
        ("2026-09-26 12:00", "2026-10-08"),
    ],
)
def test_the_reply_is_due_by_the_end_of_the_fifth_working_day(
    opened: str, reply_due_end_of: str
) -> None:
    at = local(opened).astimezone(UTC)
    end = local(reply_due_end_of) + timedelta(days=1)  # local midnight after that day
    assert POLICY.reply_by(at) == end.astimezone(UTC)
    # the answer is due 24 clock hours later, holidays or not
    assert POLICY.respond_by(at) == at + timedelta(hours=24)


def alert(opened_at: datetime, **kw: object) -> Alert:
    base: dict[str, object] = {
        "alert_id": 1,
        "rating_id": 1,
        "window_id": "W01",
        "staff_id": "S1",
        "service_type": "tax",
        "channel": "qr",
        "state": State.OPEN,
        "opened_at": opened_at,
        "respond_by": POLICY.respond_by(opened_at),
        "reply_by": POLICY.reply_by(opened_at),
        "via": "intake",
        "cause_event_id": 1,
    }
    return Alert(**(base | kw))  # type: ignore[arg-type]


def test_overdue_from_the_deadline_on_and_only_while_waiting() -> None:
    t = local("2026-09-30 10:00").astimezone(UTC)
    a = alert(t)
    assert a.missed(a.respond_by - timedelta(microseconds=1)) == ()
    assert a.missed(a.respond_by) == (Deadline.RESPOND,)
    assert a.missed(a.reply_by) == (Deadline.RESPOND, Deadline.REPLY)
    answered = alert(t, state=State.ACKNOWLEDGED, responded_at=t + timedelta(hours=1))
    assert answered.missed(a.respond_by + timedelta(days=1)) == ()
    assert answered.missed(a.reply_by) == (Deadline.REPLY,)
    replied = alert(t, state=State.FEEDBACK_GIVEN, responded_at=t)
    assert not replied.overdue(a.reply_by + timedelta(days=99))
    assert not alert(t, state=State.VOID).overdue(a.reply_by)


@given(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31)))
def test_the_reply_is_due_after_five_working_days_and_at_a_local_midnight(naive: datetime) -> None:
    at = naive.replace(tzinfo=UTC)
    due = POLICY.reply_by(at)
    local_due = due.astimezone(SHANGHAI)
    assert local_due.time() == datetime.min.time()
    last_day = (local_due - timedelta(days=1)).date()
    assert CAL.is_working_day(last_day)
    assert CAL.working_days_between(at.astimezone(SHANGHAI).date(), last_day) == 5


def test_stages_in_plain_words() -> None:
    t = datetime(2026, 10, 12, 2, tzinfo=UTC)
    assert stage_words(alert(t)) == "awaiting the window's answer"
    assert stage_words(alert(t, state=State.VERIFIED)) == "being rectified"
    assert stage_words(alert(t, escalated_at=t)) == (
        "awaiting the window's answer (passed to the hall's supervisor)"
    )
    assert stage_words(alert(t, state=State.FEEDBACK_GIVEN, escalated_at=t)) == (
        "a reply has been written"
    )
    assert stage_words(alert(t, state=State.VOID)) is None
