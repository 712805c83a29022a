"""Low-score alerts against a real ledger: SQLite and PostgreSQL.

The one rule (exactly one alert for every counted low score, void when it stops
counting) under every path a rating takes, drawn at random; the real review and appeal
services; the close hook and ``serve``'s background round; deadlines and escalation on
an injected clock; who may read and act; the receipt's view; the report's figures; ids
committed out of order on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alerts_factories import (
    A_TWO,
    HIGH,
    LOW,
    MONDAY,
    ONE_DIMENSION,
    SCORES,
    TEXT,
    add_people,
    alerts_of,
    hours,
    live_alert,
    load_registry,
    one_alert,
    submit,
)
from factories import backend_url, make_app
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from appeals.service import AppealService
from followup.alerts import AlertService, AlertView
from followup.alerts.model import Alert, State, TransitionNotAllowed
from followup.alerts.store import AlertFilter
from integrity.app import App
from integrity.catalogue import Kind, Reason
from integrity.clock import FrozenClock
from integrity.errors import Conflict, InvalidInput, PermissionDenied
from integrity.http import Background
from integrity.model import Event, Status, void_event
from integrity.ports import RatingQuery
from integrity.receipts import ReceiptService
from integrity.reports import ReportService
from rules.detectors.review import ReviewService
from rules.ruleset import default_ruleset_text

REASON = "Checked the ticket against the queue record"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY)


@pytest.fixture
def app(tmp_path: Path, db_url: str, clock: FrozenClock) -> Iterator[App]:
    a = make_app(tmp_path / "home", db_url, clock=clock)
    add_people(a)
    load_registry(a)
    yield a
    a.close()


@pytest.fixture
def svc(app: App) -> AlertService:
    return app.get(AlertService)


# -- opening ------------------------------------------------------------------------------


def test_a_counted_low_score_opens_one_alert_at_its_receipt(
    app: App, svc: AlertService, clock: FrozenClock
) -> None:
    low = submit(app, LOW).rating_id
    one = submit(app, ONE_DIMENSION).rating_id
    high = submit(app, HIGH).rating_id
    two = submit(app, A_TWO).rating_id
    received = clock.now()
    assert alerts_of(app, low) == []  # a projection: nothing until it runs
    clock.advance(90)
    summary = svc.sync()
    assert (summary.opened, summary.voided) == (2, 0)
    assert svc.sync().opened == 0  # the cursor moved: nothing twice

    a = one_alert(app, low)
    assert (a.state, a.via, a.window_id, a.staff_id) == (State.OPEN, "intake", "W01", "S1")
    assert a.opened_at == received  # when it started to count, not when the projection ran
    assert a.respond_by == received + hours(24)
    # Monday 10:00 Shanghai + 5 working days: due by the end of Monday 19 October
    assert a.reply_by == datetime.fromisoformat("2026-10-19T16:00:00+00:00")
    assert one_alert(app, one).opened_at == received
    assert alerts_of(app, high) == [] and alerts_of(app, two) == []

    [opened] = app.ledger.events_about(f"alert:{a.alert_id}")
    assert (opened.kind, opened.actor, opened.rating_id) == (Kind.ALERT_OPENED, "alerts", low)
    assert opened.evidence["head"] == "HD1" and opened.evidence["hall_id"] == "H1"
    assert opened.evidence["respond_by"] == a.respond_by.isoformat()


def test_a_replayed_low_score_opens_at_its_own_time(
    app: App, svc: AlertService, clock: FrozenClock
) -> None:
    then = clock.now() - timedelta(days=3)
    rid = submit(app, LOW, replay_at=then).rating_id
    a = one_alert(app, rid)
    assert (a.via, a.opened_at, a.respond_by) == ("replay", then, then + hours(24))
    assert a.overdue(clock.now())  # history: its answer was due two days ago


def test_a_rating_held_at_intake_gets_its_alert_when_a_reviewer_clears_it(
    app: App, svc: AlertService, clock: FrozenClock
) -> None:
    future = (clock.now() + hours(2)).isoformat()
    rid = submit(app, LOW, submitted_at=future).rating_id
    assert app.ledger.current(rid)[0] is Status.HELD
    svc.sync()
    assert alerts_of(app, rid) == []
    clock.advance(3600)
    app.get(ReviewService).clear("R1", rid, REASON)
    a = one_alert(app, rid)
    assert (a.via, a.opened_at) == ("clear", clock.now())


def test_alerts_void_when_the_rating_stops_counting_and_reopen_when_it_counts_again(
    app: App, svc: AlertService, clock: FrozenClock
) -> None:
    rid = submit(app, LOW).rating_id
    first = one_alert(app, rid)
    _hold(app, rid)
    svc.sync()
    [void] = alerts_of(app, rid)
    assert void.state is State.VOID and void.alert_id == first.alert_id
    events = app.ledger.events_about(first.subject)
    assert events[-1].kind == Kind.ALERT_VOIDED
    assert events[-1].reasons == (Reason.OUTLIER_BURST,)
    assert events[-1].evidence["cause_kind"] == "hold"

    clock.advance(600)
    app.get(ReviewService).clear("R1", rid, REASON)
    second = one_alert(app, rid)
    assert second.alert_id != first.alert_id
    assert (second.via, second.opened_at) == ("clear", clock.now())

    app.get(ReviewService)  # the same rating held again and confirmed: void for good
    _hold(app, rid)
    app.get(ReviewService).confirm("R1", rid, REASON)
    svc.sync()
    assert [a.state for a in alerts_of(app, rid)] == [State.VOID, State.VOID]


def test_an_alert_opened_under_an_earlier_low_line_is_voided_when_its_rating_stops_counting(
    app: App, svc: AlertService
) -> None:
    """The projection reads a change that stops a count only for a rating that is low
    or that an alert claims: a rating low under the line of its alert's day, no longer
    low under today's, still has its alert voided when it is held."""
    rid = submit(app, LOW).rating_id
    first = one_alert(app, rid)
    svc.policy = dataclasses.replace(svc.policy, low_score_below=1.0, low_dimension_at_most=0)
    other = submit(app, LOW).rating_id  # not low under the new line: no alert
    assert svc.sync().opened == 0 and alerts_of(app, other) == []
    _hold(app, rid)
    _hold(app, other)
    assert svc.sync().voided == 1
    [void] = alerts_of(app, rid)
    assert void.state is State.VOID and void.alert_id == first.alert_id
    assert alerts_of(app, other) == []


def test_an_upheld_appeal_voids_the_alert_and_says_which_and_a_reversal_opens_a_new_one(
    app: App, svc: AlertService, clock: FrozenClock, tmp_path: Path
) -> None:
    appeals = app.get(AppealService)
    rid = submit(app, LOW).rating_id
    first = one_alert(app, rid)
    filed = appeals.file("S1", rid, "abusive_or_unrelated", "The comment is about parking fees")
    aid = filed.appeal.appeal_id
    for r in ("R1", "R2"):
        appeals.assign("A1", aid, r)
    for r in ("R1", "R2"):
        appeals.decide(r, aid, uphold=True, reason=REASON, used_automated_evidence=False)
    assert app.ledger.current(rid)[0] is Status.VOIDED
    svc.sync()
    voided = app.ledger.events_about(first.subject)[-1]
    assert voided.kind == Kind.ALERT_VOIDED
    assert voided.evidence["appeal_id"] == aid
    assert voided.evidence["cause_subject"] == f"appeal:{aid}"
    assert voided.reasons == (Reason.APPEAL_UPHELD,)

    clock.advance(86400)
    receipt = tmp_path / "receipt.txt"
    receipt.write_text("the citizen's receipt")
    appeals.reopen("A1", aid, "The citizen's receipt turned up after all", [receipt])
    appeals.assign("A1", aid, "R4")
    appeals.decide("R4", aid, uphold=False, reason=REASON, used_automated_evidence=False)
    assert app.ledger.current(rid)[0] is Status.ACCEPTED
    second = one_alert(app, rid)
    assert (second.via, second.opened_at) == ("reinstate", clock.now())


def test_a_closed_alert_stays_closed_whatever_happens_to_its_rating(
    app: App, svc: AlertService
) -> None:
    rid = submit(app, LOW).rating_id
    a = one_alert(app, rid)
    _walk(svc, a.alert_id, "HD1", to=State.CLOSED)
    _void(app, rid, "audit:sample:1", Reason.AUDIT_FABRICATED)
    svc.sync()
    assert [x.state for x in alerts_of(app, rid)] == [State.CLOSED]
    _reinstate(app, rid, "audit:sample:1")
    svc.sync()
    assert [x.state for x in alerts_of(app, rid)] == [State.CLOSED]  # it has its alert


# -- every path, at random -----------------------------------------------------------------

# What can happen, weighted so that the same few ratings go through many paths.
OP_NAMES = (
    *["live"] * 3,
    *["replay"] * 2,
    "future",
    *["hold"] * 3,
    *["clear"] * 3,
    "confirm",
    *["uphold"] * 2,
    *["reverse"] * 2,
    "audit",
    *["step"] * 3,
    *["sync"] * 2,
    "advance",
)
SCORE_KINDS = ("low", "low", "one", "high", "two")
OPS = st.tuples(st.sampled_from(OP_NAMES), st.integers(0, 9))
_appeal_ids = itertools.count(10_000)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(OPS, min_size=10, max_size=40))
def test_exactly_one_alert_for_every_counted_low_score_on_every_path(
    app: App, svc: AlertService, clock: FrozenClock, ops: list[tuple[str, int]]
) -> None:
    """Random sequences of what can happen to ratings (live intake, replay, a hold at
    intake or by detection, review clear and confirm, an appeal upheld and reversed, an
    audit void, people answering alerts), with the projection run at random points."""
    review = app.get(ReviewService)
    rids: list[int] = []
    started: dict[int, datetime] = {}  # when each rating last started to count
    for op, arg in ops:
        now = clock.now()
        if op in ("live", "replay", "future"):
            scores = SCORES[SCORE_KINDS[arg % len(SCORE_KINDS)]]
            if op == "live":
                d = submit(app, scores)
                started[d.rating_id] = now
            elif op == "replay":
                d = submit(app, scores, replay_at=now - hours(5))
                started[d.rating_id] = now - hours(5)
            else:
                d = submit(app, scores, submitted_at=(now + hours(2)).isoformat())
                assert d.status is Status.HELD
            rids.append(d.rating_id)
            continue
        if op == "sync":
            svc.sync()
            continue
        if op == "advance":
            clock.advance((arg + 1) * 3600)
            continue
        if not rids:
            continue
        rid = rids[-1 - arg % min(3, len(rids))]  # mostly the last few: long histories
        status = app.ledger.current(rid)[0]
        if op == "hold" and status is Status.ACCEPTED:
            _hold(app, rid)
        elif op == "clear" and status is Status.HELD:
            review.clear("R1", rid, REASON)
            started[rid] = now
        elif op == "confirm" and status is Status.HELD:
            review.confirm("R1", rid, REASON)
        elif op == "uphold" and status is not Status.VOIDED:
            _void(app, rid, f"appeal:{next(_appeal_ids)}", Reason.APPEAL_UPHELD)
        elif op == "audit" and status is not Status.VOIDED:
            _void(app, rid, "audit:sample:1", Reason.AUDIT_FABRICATED)
        elif op == "reverse" and status is Status.VOIDED:
            last = [e for e in app.ledger.events_of(rid) if e.status is not None][-1]
            appealed = str(last.subject).startswith("appeal:")
            if appealed and _reinstate(app, rid, str(last.subject)) is Status.ACCEPTED:
                started[rid] = now
        elif op == "step":
            svc.sync()
            a = live_alert(app, rid)
            if a is not None and not a.state.final:
                _step(svc, a, "A1")
    check_the_rule(app, svc, rids, started)


def check_the_rule(
    app: App, svc: AlertService, rids: list[int], started: dict[int, datetime]
) -> None:
    svc.sync()
    if not rids:
        return
    by_rating: dict[int, list[Alert]] = defaultdict(list)
    for a in svc.store.find(AlertFilter(rating_ids=rids)):
        by_rating[a.rating_id].append(a)
    for r in app.ledger.find_ratings(RatingQuery(ids=rids)):
        mine = by_rating[r.rating_id]
        live = [a for a in mine if a.state is not State.VOID]
        low = svc.policy.is_low(r.composite, r.scores)
        assert len(live) <= 1, (r.rating_id, mine)
        if not low:
            assert mine == []
        elif r.status is Status.ACCEPTED:
            assert len(live) == 1, (r.rating_id, r.status, mine)
            if not live[0].state.final:
                assert live[0].opened_at == started[r.rating_id], (r.rating_id, live[0])
        else:
            assert all(a.state.final for a in mine), (r.rating_id, r.status, mine)
        event(f"alerts per rating: {len(mine)}")
        for a in mine:  # the ledger tells the same story as the table
            event(f"alert {a.state.value}")
            kinds = Counter(e.kind for e in app.ledger.events_about(a.subject))
            assert kinds[Kind.ALERT_OPENED] == 1
            assert kinds[Kind.ALERT_VOIDED] == (a.state is State.VOID)
            assert kinds[Kind.ALERT_CLOSED] == (a.state is State.CLOSED)


# -- the close hook and the server's round --------------------------------------------------


def test_a_process_that_wrote_opens_its_alerts_and_seals_them_when_it_closes(
    tmp_path: Path, db_url: str, clock: FrozenClock
) -> None:
    first = make_app(tmp_path / "home", db_url, clock=clock)
    rid = submit(first, LOW).rating_id
    first.close()
    again = make_app(tmp_path / "home", db_url, clock=clock, init=False)
    try:
        store = again.get(AlertService).store
        [a] = store.find(AlertFilter(rating_ids=(rid,)))  # read without syncing
        assert a.state is State.OPEN
        assert again.log.seal(clock.now()) == 0  # its events were sealed at close
    finally:
        again.close()


def test_the_servers_background_round_opens_and_escalates(
    app: App, svc: AlertService, clock: FrozenClock
) -> None:
    rid = submit(app, LOW, window="W03").rating_id
    Background(app, every=3600).round()
    a = live_alert(app, rid)
    assert a is not None and a.escalated_at is None
    clock.advance(24 * 3600)
    Background(app, every=3600).round()
    a = live_alert(app, rid)
    assert a is not None and (a.escalated_to, a.escalated_at) == ("SUP2", clock.now())
    kinds = [e.kind for e in app.ledger.events_about(a.subject)]
    assert kinds == [Kind.ALERT_OPENED, Kind.ALERT_OVERDUE, Kind.ALERT_ESCALATED]


# -- deadlines and escalation ----------------------------------------------------------------


def test_escalation_marks_each_missed_deadline_once_and_escalates_once(
    app: App, svc: AlertService, clock: FrozenClock
) -> None:
    rid = submit(app, LOW).rating_id
    a = one_alert(app, rid)
    clock.set(a.respond_by - timedelta(seconds=1))
    assert svc.escalate_overdue(None).overdue == ()
    assert not svc.listing(None, overdue=True)
    clock.set(a.respond_by)  # due before this instant: overdue from it on
    run = svc.escalate_overdue(None)
    assert [(o["alert_id"], o["deadline"]) for o in run.overdue] == [(a.alert_id, "respond")]
    assert [(e["alert_id"], e["escalated_to"]) for e in run.escalated] == [(a.alert_id, "SUP1")]
    again = svc.escalate_overdue(None)
    assert (again.overdue, again.escalated) == ((), ())
    [listed] = svc.listing(None, overdue=True)
    assert listed.alert.alert_id == a.alert_id

    svc.acknowledge("SUP1", a.alert_id)  # escalated: its hall supervisor may act now
    assert not svc.listing(None, overdue=True)  # answered; the reply is not due yet
    clock.set(a.reply_by)
    run = svc.escalate_overdue("A1")
    assert [o["deadline"] for o in run.overdue] == ["reply"] and run.escalated == ()
    events = app.ledger.events_about(a.subject)
    assert [e.kind for e in events].count(Kind.ALERT_ESCALATED) == 1
    assert events[-1].actor == "A1" and events[-1].evidence["deadline"] == "reply"
    with pytest.raises(PermissionDenied):
        svc.escalate_overdue("HD1")  # heads do not escalate


def test_deadlines_follow_the_rule_sets_calendar_in_shanghai(tmp_path: Path) -> None:
    """National Day week off, make-up Saturday: an alert opened on Wednesday 30 September
    answers by Thursday 10:00 (clock hours) and replies by the end of Tuesday 13 October."""
    rules = (
        default_ruleset_text()
        .replace("holidays = []", f"holidays = {[f'2026-10-0{d}' for d in range(1, 8)]}")
        .replace("working_weekends = []", 'working_weekends = ["2026-09-27", "2026-10-10"]')
    )
    clock = FrozenClock(datetime.fromisoformat("2026-09-30T10:00:00+08:00"))
    app = make_app(tmp_path / "home", clock=clock, rules_text=rules)
    try:
        add_people(app)
        svc = app.get(AlertService)
        a = one_alert(app, submit(app, LOW).rating_id)
        assert a.respond_by == datetime.fromisoformat("2026-10-01T10:00:00+08:00")
        assert a.reply_by == datetime.fromisoformat("2026-10-14T00:00:00+08:00")
        svc.acknowledge("A1", a.alert_id)
        clock.set(datetime.fromisoformat("2026-10-13T23:59:59+08:00"))
        assert svc.escalate_overdue(None).overdue == ()
        clock.set(datetime.fromisoformat("2026-10-14T00:00:00+08:00"))
        [missed] = svc.escalate_overdue(None).overdue
        assert (missed["deadline"], missed["due_at"]) == ("reply", a.reply_by)
    finally:
        app.close()


def test_a_reply_on_time_is_never_overdue(app: App, svc: AlertService, clock: FrozenClock) -> None:
    rid = submit(app, LOW).rating_id
    a = one_alert(app, rid)
    clock.advance(3600)
    _walk(svc, a.alert_id, "HD1", to=State.FEEDBACK_GIVEN)
    clock.set(a.reply_by + timedelta(days=30))
    assert svc.escalate_overdue(None).overdue == ()
    assert not svc.addressed(svc.store.get(a.alert_id)).overdue


# -- who may read and act ----------------------------------------------------------------------


def test_the_windows_head_acts_the_supervisor_once_escalated_admins_always(
    app: App, svc: AlertService, clock: FrozenClock
) -> None:
    a = one_alert(app, submit(app, LOW, window="W01").rating_id)
    for who in ("HD2", "HD3", "SUP1", "SUP2", "S1", "R1", "AU"):
        with pytest.raises(PermissionDenied):
            svc.acknowledge(who, a.alert_id)
    with pytest.raises(PermissionDenied, match="signed in"):
        svc.acknowledge(None, a.alert_id)
    svc.acknowledge("HD1", a.alert_id)

    b = one_alert(app, submit(app, LOW, window="W01").rating_id)
    clock.advance(25 * 3600)
    svc.escalate_overdue(None)
    with pytest.raises(PermissionDenied):
        svc.acknowledge("SUP2", b.alert_id)  # another hall's supervisor
    svc.acknowledge("SUP1", b.alert_id)
    c = one_alert(app, submit(app, LOW, window="W03").rating_id)
    svc.acknowledge("A1", c.alert_id)


def test_who_reads_which_alerts(app: App, svc: AlertService) -> None:
    ids = {w: one_alert(app, submit(app, LOW, window=w).rating_id).alert_id for w in STAFF}

    def seen(who: str | None, **kw: bool) -> set[int]:
        return {x.alert.alert_id for x in svc.listing(who, **kw)}

    assert seen(None) == seen("A1") == set(ids.values())  # the operator, an admin
    assert seen("HD1") == {ids["W01"]}  # a head: their window (HD1 is staff too: none of theirs)
    assert seen("SUP1") == {ids["W01"], ids["W02"]}  # a supervisor: their hall
    assert seen("S3") == {ids["W03"]}  # staff: about themselves
    assert seen("R1") == set()
    assert seen("S1", mine=True) == {ids["W01"]}
    assert seen("HD2", mine=True) == {ids["W02"]}
    with pytest.raises(PermissionDenied, match="signed in"):
        svc.listing(None, mine=True)
    assert seen(None, window_id="W02") == {ids["W02"]}
    assert svc.show("S3", ids["W03"]).addressed.head == "HD3"
    with pytest.raises(PermissionDenied):
        svc.show("S3", ids["W01"])
    assert not svc.show("HD1", ids["W01"]).show_comment  # the read policy: heads read no comments
    assert svc.show("SUP1", ids["W01"]).show_comment


STAFF = ("W01", "W02", "W03")


def test_without_a_registry_alerts_have_no_head_admins_act_supervisors_read(
    tmp_path: Path, clock: FrozenClock
) -> None:
    app = make_app(tmp_path / "home", clock=clock)
    try:
        add_people(app)
        svc = app.get(AlertService)
        a = one_alert(app, submit(app, LOW, window="W09").rating_id)
        assert svc.addressed(a).head is None
        assert {x.alert.alert_id for x in svc.listing("SUP2")} == {a.alert_id}
        assert svc.listing("HD1") == []
        with pytest.raises(PermissionDenied, match="admins"):
            svc.acknowledge("HD1", a.alert_id)
        svc.acknowledge("A1", a.alert_id)
        clock.advance(40 * 86400)
        [escalated] = svc.escalate_overdue(None).escalated
        assert escalated["escalated_to"] is None  # no hall: to the admins
        svc.verify("SUP2", a.alert_id, reached=True, finding="service_problem", note=TEXT)
    finally:
        app.close()


# -- the loop's steps --------------------------------------------------------------------------


def test_the_loop_step_by_step_with_what_each_step_records(
    app: App, svc: AlertService, clock: FrozenClock
) -> None:
    rid = submit(app, LOW).rating_id
    a = one_alert(app, rid)
    with pytest.raises(TransitionNotAllowed, match="allowed now: ack"):
        svc.verify("HD1", a.alert_id, reached=True, finding="service_problem", note=TEXT)
    clock.advance(3600)
    a = svc.acknowledge("HD1", a.alert_id)
    assert (a.state, a.responded_by, a.responded_at) == (State.ACKNOWLEDGED, "HD1", clock.now())
    with pytest.raises(TransitionNotAllowed, match="acknowledged: cannot ack"):
        svc.acknowledge("HD1", a.alert_id)
    a = svc.verify("HD1", a.alert_id, reached=False, finding="misunderstanding", note=TEXT)
    assert (a.callback, a.finding, a.note) == ("not_reachable", "misunderstanding", TEXT)
    a = svc.rectify("HD1", a.alert_id, "Put up a sign about the queue order")
    a = svc.reply("HD1", a.alert_id, "Thank you; we have put up a sign about the queue order.")
    a = svc.close("HD1", a.alert_id)
    assert a.state is State.CLOSED and a.version == 6
    events = app.ledger.events_about(a.subject)
    assert [e.kind for e in events] == [
        Kind.ALERT_OPENED,
        Kind.ALERT_ACKNOWLEDGED,
        Kind.ALERT_VERIFIED,
        Kind.ALERT_RECTIFIED,
        Kind.ALERT_REPLIED,
        Kind.ALERT_CLOSED,
    ]
    assert [e.evidence["version"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert all(e.actor == "HD1" for e in events[1:]) and all(e.rating_id == rid for e in events)
    assert events[1].evidence["on_time"] is True
    with pytest.raises(TransitionNotAllowed, match="final"):
        svc.close("HD1", a.alert_id)


def test_bad_answers_are_field_errors_and_change_nothing(app: App, svc: AlertService) -> None:
    rid = submit(app, LOW).rating_id
    other = submit(app, LOW, window="W02").rating_id
    a = one_alert(app, rid)
    svc.acknowledge("HD1", a.alert_id)
    before = app.ledger.last_event_id()
    for kwargs, field in (
        ({"finding": "rude", "note": TEXT}, "finding"),
        ({"finding": "service_problem", "note": "short"}, "note"),
        ({"finding": "service_problem", "note": TEXT, "appeal_id": 1}, "appeal"),
        ({"finding": "malicious", "note": TEXT, "appeal_id": 999}, "appeal"),
    ):
        with pytest.raises(InvalidInput) as err:
            svc.verify("HD1", a.alert_id, reached=True, **kwargs)  # type: ignore[arg-type]
        assert [e.field for e in err.value.errors] == [field]
    filed = app.get(AppealService).file(
        "S2", other, "abusive_or_unrelated", "The comment is about parking fees"
    )
    with pytest.raises(InvalidInput, match="not this alert's rating"):
        svc.verify(
            "HD1",
            a.alert_id,
            reached=True,
            finding="malicious",
            note=TEXT,
            appeal_id=filed.appeal.appeal_id,
        )
    assert app.ledger.last_event_id() == before + 1  # the appeal's filing only
    svc.verify("HD1", a.alert_id, reached=True, finding="service_problem", note=TEXT)
    svc.rectify("HD1", a.alert_id, "Retrained the counter on the new form")
    ticket = app.ledger.rating(rid).ticket_id
    for text in (f"Sorry: S1 will be retrained ({ticket})", "Our colleague s1 apologises."):
        with pytest.raises(InvalidInput, match="shown to the rater"):
            svc.reply("HD1", a.alert_id, text)


def test_a_malicious_finding_links_the_staff_members_appeal(app: App, svc: AlertService) -> None:
    rid = submit(app, LOW).rating_id
    a = one_alert(app, rid)
    svc.acknowledge("HD1", a.alert_id)
    filed = app.get(AppealService).file(
        "S1", rid, "abusive_or_unrelated", "The comment is about parking fees"
    )
    aid = filed.appeal.appeal_id
    a = svc.verify("HD1", a.alert_id, reached=True, finding="malicious", note=TEXT, appeal_id=aid)
    assert (a.finding, a.appeal_id) == ("malicious", aid)


def test_a_stale_version_is_a_conflict(app: App, svc: AlertService) -> None:
    a = one_alert(app, submit(app, LOW).rating_id)
    svc.acknowledge("HD1", a.alert_id)
    with pytest.raises(Conflict, match="changed meanwhile"), app.ledger.unit_of_work() as uow:
        svc.store.update(uow.connection, a.alert_id, a.version, {"state": "acknowledged"})


# -- what others read ---------------------------------------------------------------------------


def test_the_receipt_reads_the_stage_in_plain_words_and_the_reply(
    app: App, svc: AlertService
) -> None:
    view = app.get(AlertView)
    high = submit(app, HIGH).rating_id
    rid = submit(app, LOW).rating_id
    svc.sync()
    assert view.stage(high) is None
    assert view.stage(rid) == ("awaiting the window's answer", None)
    a = one_alert(app, rid)
    reply = "Thank you; the counter now explains the forms first."
    stages = []
    for step in ("ack", "verify", "rectify", "reply", "close"):
        _step(svc, svc.store.get(a.alert_id), "HD1", reply=reply)
        stages.append(view.stage(rid))
        assert step
    assert stages == [
        ("the window is looking into it", None),
        ("being rectified", None),
        ("rectified; a reply is being written", None),
        ("a reply has been written", reply),
        ("closed: a reply has been written", reply),
    ]
    other = submit(app, LOW).rating_id
    svc.sync()
    _hold(app, other)
    svc.sync()
    assert view.stage(other) is None  # void: the rating does not count


def test_the_raters_receipt_shows_the_windows_reply_through_the_wired_view(
    app: App, svc: AlertService
) -> None:
    """The composition root wires the alerts' view into receipts: what a rater sees."""
    d = submit(app, LOW)
    a = one_alert(app, d.rating_id)
    receipts = app.get(ReceiptService)
    before = receipts.look_up(d.receipt).as_dict()["follow_up"]
    assert before is not None and "awaiting the window's answer" in str(before.values())
    reply = "Thank you; the counter now explains the forms first."
    for _ in ("ack", "verify", "rectify", "reply"):
        _step(svc, svc.store.get(a.alert_id), "HD1", reply=reply)
    after = receipts.look_up(d.receipt).as_dict()
    assert reply in after["follow_up"].values()
    # nothing personal (the receipt code itself is random letters and digits: left out)
    shown = str({k: v for k, v in after.items() if k != "receipt"})
    assert "S1" not in shown and "W01" not in shown


def test_reports_carry_the_alerts_figures_per_window_staff_and_hall(
    app: App, svc: AlertService, clock: FrozenClock
) -> None:
    on_time = one_alert(app, submit(app, LOW, window="W01").rating_id)
    late = one_alert(app, submit(app, LOW, window="W01").rating_id)
    waiting = one_alert(app, submit(app, LOW, window="W03").rating_id)
    void = one_alert(app, submit(app, LOW, window="W02").rating_id)
    _hold(app, void.rating_id)
    svc.acknowledge("HD1", on_time.alert_id)
    clock.advance(30 * 3600)
    svc.acknowledge("HD1", late.alert_id)
    reports = app.get(ReportService)
    period = reports.period("2026-10")
    rows = {r.key: r.followup for r in reports.report("window", period).rows}
    assert rows["W01"] == {"alerts_opened": 2, "answered_in_24h": 0.5, "alerts_overdue": 1}
    assert rows["W03"] == {"alerts_opened": 1, "answered_in_24h": 0.0, "alerts_overdue": 1}
    assert rows["W02"] == {"alerts_opened": 0, "answered_in_24h": None, "alerts_overdue": 0}
    halls = {r.key: r.followup for r in reports.report("hall", period).rows}
    assert halls["H1"] == {"alerts_opened": 2, "answered_in_24h": 0.5, "alerts_overdue": 1}
    staff = {r.key: r.followup for r in reports.report("staff", period).rows}
    assert staff["S3"]["alerts_opened"] == 1
    november = {r.key: r.followup for r in reports.report("window", reports.period("2026-11")).rows}
    assert all(f.get("alerts_opened", 0) == 0 for f in november.values())
    assert waiting.window_id == "W03"


# -- PostgreSQL: ids that commit out of order ---------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_status_event_committed_after_a_higher_id_is_still_projected(
    app: App, svc: AlertService
) -> None:
    first = submit(app, LOW).rating_id
    one_alert(app, first)
    slow = app.ledger.unit_of_work()
    uow = slow.__enter__()
    try:
        state = uow.states([first])[first]
        held = uow.append(_hold_event(first, app.clock.now()), state.version)
        later = submit(app, LOW).rating_id  # commits with a higher event id
        svc.sync()  # the cursor passes the hold's id before it commits
        assert one_alert(app, later).cause_event_id > int(held.event_id or 0)
        assert live_alert(app, first) is not None
    finally:
        slow.__exit__(None, None, None)
    svc.sync()  # the gap is read again
    assert live_alert(app, first) is None
    assert [a.state for a in alerts_of(app, first)] == [State.VOID]


# -- helpers ------------------------------------------------------------------------------------


def _hold_event(rid: int, at: datetime) -> Event:
    return Event(
        kind=Kind.HOLD,
        actor="detector",
        at=at,
        rating_id=rid,
        status=Status.HELD,
        reasons=(Reason.OUTLIER_BURST,),
        evidence={"explanation": "a burst"},
    )


def _hold(app: App, rid: int) -> None:
    """Hold a counted rating as detection does."""
    app.ledger.append(_hold_event(rid, app.clock.now()), app.ledger.current(rid)[1])


def _void(app: App, rid: int, subject: str, reason: str) -> None:
    """Void a rating as an upheld appeal or an audit finding does."""
    status, version = app.ledger.current(rid)
    evidence: dict[str, object] = {"previous_status": status.value}
    if subject.startswith("appeal:"):
        evidence["appeal_id"] = int(subject.split(":")[1])
    app.ledger.append(
        void_event(
            rid,
            actor="R1",
            at=app.clock.now(),
            reasons=(reason,),
            subject=subject,
            evidence=evidence,
        ),
        version,
    )


def _reinstate(app: App, rid: int, subject: str) -> Status:
    """A reversal gives the rating back the status it had before its void."""
    _, version = app.ledger.current(rid)
    last = [e for e in app.ledger.events_of(rid) if e.status is not None][-1]
    previous = Status(str(last.evidence.get("previous_status", "accepted")))
    app.ledger.append(
        Event(
            kind=Kind.REINSTATE,
            actor="R1",
            at=app.clock.now(),
            rating_id=rid,
            status=previous,
            reasons=(Reason.APPEAL_REVERSED,),
            subject=subject,
            evidence={"void_event_id": last.event_id},
        ),
        version,
    )
    return previous


def _step(svc: AlertService, a: Alert, who: str, reply: str = TEXT) -> Alert:
    """The next step of the loop on ``a``, as ``who``."""
    if a.state is State.OPEN:
        return svc.acknowledge(who, a.alert_id)
    if a.state is State.ACKNOWLEDGED:
        return svc.verify(who, a.alert_id, reached=True, finding="service_problem", note=TEXT)
    if a.state is State.VERIFIED:
        return svc.rectify(who, a.alert_id, "Explained the forms at the counter first")
    if a.state is State.RECTIFIED:
        return svc.reply(who, a.alert_id, reply)
    return svc.close(who, a.alert_id)


def _walk(svc: AlertService, alert_id: int, who: str, to: State) -> Alert:
    a = svc.store.get(alert_id)
    while a.state is not to:
        a = _step(svc, a, who)
    return a


def test_voids_in_bulk_apply_each_at_its_version_or_none(app: App, svc: AlertService) -> None:
    """Alerts voided together (a detection run holds thousands of low scores) are one
    statement; if one alert moved meanwhile, its ``Conflict`` rolls all of them back."""
    rids = [submit(app, LOW).rating_id for _ in range(3)]
    alerts = [one_alert(app, rid) for rid in rids]
    values = {"state": State.VOID.value, "claims_rating": False}
    stale = alerts[1]
    with (
        pytest.raises(Conflict, match=f"alert {stale.alert_id} changed meanwhile"),
        app.ledger.unit_of_work() as uow,
    ):
        svc.store.update_many(
            uow.connection,
            [(a.alert_id, a.version + (1 if a is stale else 0), values) for a in alerts],
        )
    assert [one_alert(app, rid).state for rid in rids] == [State.OPEN] * 3
    with app.ledger.unit_of_work() as uow:
        svc.store.update_many(uow.connection, [(a.alert_id, a.version, values) for a in alerts])
    after = [alerts_of(app, rid) for rid in rids]
    assert [[(a.state, a.version) for a in got] for got in after] == [[(State.VOID, 2)]] * 3
