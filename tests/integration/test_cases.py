"""Rectification cases and the month's close against a real ledger: SQLite and PostgreSQL.

Closing a month freezes its figures in the ``period.closed`` event and opens a case for
every window and staff member above the mark with enough counted ratings (1 low in 3
opens none); closing it again is refused; the next close checks each case (resolved,
unresolved and carried, too few ratings); windows in the bottom ranks two closes
running get a talk; an appeal upheld after the close is listed as an amendment with the
figures' difference; the outbox queues ``rectification.opened`` for a webhook; people
plan, note and close cases as their roles allow; due dates in working days on an
injected clock; an active case past its due date marked overdue and escalated to its
hall's supervisor once (by an operator, an admin, a supervisor or ``serve``'s round;
nobody else), to the admins when the hall has none, and nothing for final cases.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alerts_factories import HIGH, LOW, REGISTRY, add_people, load_registry, submit
from factories import backend_url, make_app

from appeals.service import AppealService
from followup.acting import EscalationRun
from followup.cases import CaseService, MonthClose
from followup.cases.model import CaseKind, State, TransitionNotAllowed
from followup.cases.service import figures_digest
from followup.webhooks import WebhookService
from integrity.app import App
from integrity.catalogue import Kind, Reason
from integrity.clock import FrozenClock
from integrity.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PolicyViolation,
)
from integrity.http import Background
from integrity.model import Status
from integrity.periods import ClosedPeriods
from integrity.registry import RegistryService, parse_registry
from rules.ruleset import default_ruleset_text

# Monday 2 November 2026, 10:00 in Shanghai: October is over.
NOV2 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
# Tuesday 1 December 2026, 10:00 in Shanghai: November is over.
DEC1 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
PLAN = "Retrain the window on the queue rules; daily checks by the head"
REASON = "Checked the ticket against the queue record"
# The due date of a case opened on 2 November: the end of Monday 30 November, Shanghai.
DUE = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOV2)


def _app(tmp_path: Path, db_url: str, clock: FrozenClock, rules: str | None = None) -> App:
    a = make_app(tmp_path / "home", db_url, clock=clock, rules_text=rules)
    add_people(a)
    load_registry(a)
    return a


@pytest.fixture
def app(tmp_path: Path, db_url: str, clock: FrozenClock) -> Iterator[App]:
    a = _app(tmp_path, db_url, clock)
    yield a
    a.close()


def month(app: App, first: date, counts: dict[str, tuple[int, int]]) -> dict[str, list[int]]:
    """Replay, in the month starting ``first``, ``(low, high)`` ratings per window (its
    staff member named), with the clock moved past the month's end (the 1st of the next,
    10:00 in Shanghai) if it was earlier; returns the rating ids per window, lows first."""
    nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    over = datetime(nxt.year, nxt.month, nxt.day, 2, 0, tzinfo=UTC)
    assert isinstance(app.clock, FrozenClock)
    app.clock.set(max(app.clock.now(), over))
    out: dict[str, list[int]] = {}
    for w, (low, high) in counts.items():
        ids = []
        for i, scores in enumerate([LOW] * low + [HIGH] * high):
            at = datetime(first.year, first.month, 2 + i, 3, 0, tzinfo=UTC)
            d = submit(app, scores, window=w, replay_at=at)
            assert d.status is Status.ACCEPTED, d
            ids.append(d.rating_id)
        out[w] = ids
    return out


def cases(app: App, **kw: object) -> list:
    return app.get(CaseService).listing(None, **kw)  # type: ignore[arg-type]


# -- the close ----------------------------------------------------------------------------


def test_close_freezes_the_figures_and_opens_cases_above_the_mark_with_enough_ratings(
    app: App, clock: FrozenClock
) -> None:
    # W01: 3 low in 10 (30 %): a window case and one for its staff member S1.
    # W02: 1 low in 3 (33 %) but too few counted: nothing.  W03: 1 in 12 (8 %): nothing.
    month(app, date(2026, 10, 1), {"W01": (3, 7), "W02": (1, 2), "W03": (1, 11)})
    res = app.get(MonthClose).close("A1", "2026-10")
    assert (res.cases_opened, res.talks_opened, res.checked) == (2, 0, ())
    assert {(c.kind, c.subject) for c in res.opened} == {
        (CaseKind.WINDOW, "W01"),
        (CaseKind.STAFF, "S1"),
    }
    w = next(c for c in res.opened if c.kind is CaseKind.WINDOW)
    assert (w.counted, w.low_scores, w.low_score_rate, w.state) == (10, 3, 0.3, State.OPEN)
    assert (w.hall_id, w.period, w.mark) == ("H1", "2026-10", 0.2)
    # the exact (Clopper-Pearson) 95 % interval of 3 in 10
    assert w.low_rate_lo == pytest.approx(0.066739, abs=1e-6)
    assert w.low_rate_hi == pytest.approx(0.652453, abs=1e-6)
    # due: 20 working days after Monday 2 November (Shanghai) -> end of Monday 30 November
    assert w.due_at == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)

    ev = app.ledger.events([res.closed.event_id])[res.closed.event_id]
    assert (ev.kind, ev.actor, ev.subject) == (Kind.PERIOD_CLOSED, "A1", "period:2026-10")
    figures = ev.evidence["figures"]
    assert ev.evidence["figures_sha256"] == figures_digest(figures) == res.figures_sha256
    by_window = {r["subject"]: r for r in figures["window"]}
    assert by_window["W02"]["counted"] == 3 and by_window["W02"]["low_score_rate"] == 0.333333
    assert {r["subject"] for r in figures["staff"]} == {"S1", "S2", "S3"}
    assert ev.evidence["opens"] == {"window": ["W01"], "staff": ["S1"], "talk": []}

    [opened] = [e for e in app.ledger.events_about(f"rectification:{w.case_id}")]
    assert (opened.kind, opened.actor) == (Kind.RECTIFICATION_OPENED, "cases")
    assert opened.evidence["head"] == "HD1" and opened.evidence["supervisor"] == "SUP1"
    assert opened.evidence["close_event_id"] == res.closed.event_id

    # the gate holds a late rating into the closed month, in this very process
    late = submit(app, HIGH, window="W03", replay_at=datetime(2026, 10, 30, 3, tzinfo=UTC))
    assert (late.status, late.reasons) == (Status.HELD, (Reason.PERIOD_CLOSED,))
    assert app.get(ClosedPeriods).labels == frozenset({"2026-10"})


def test_closing_twice_is_refused_and_a_month_not_over_cannot_close(
    app: App, clock: FrozenClock
) -> None:
    month(app, date(2026, 10, 1), {"W01": (3, 7)})
    close = app.get(MonthClose)
    close.close(None, "2026-10")  # the operator
    before = app.ledger.last_event_id()
    with pytest.raises(AlreadyExists, match=r"2026-10 is already closed \(by operator"):
        close.close("A1", "2026-10")
    with pytest.raises(PolicyViolation, match="2026-11 has not ended"):
        close.close("A1", "2026-11")
    with pytest.raises(InvalidInput):
        close.close("A1", "2026-13")
    with pytest.raises(PermissionDenied, match="admin"):
        close.close("SUP1", "2026-09")
    assert app.ledger.last_event_id() == before
    assert len(cases(app)) == 2


def test_the_next_close_checks_each_case(app: App, clock: FrozenClock) -> None:
    month(app, date(2026, 10, 1), {"W01": (3, 7), "W03": (4, 8)})
    first = app.get(MonthClose).close("A1", "2026-10")
    ids = {(c.kind, c.subject): c.case_id for c in first.opened}
    assert set(ids) == {
        (CaseKind.WINDOW, "W01"),
        (CaseKind.STAFF, "S1"),
        (CaseKind.WINDOW, "W03"),
        (CaseKind.STAFF, "S3"),
    }
    # November: W01 (and S1) fall to 1 in 10: resolved; W03 (and S3) stay at 4 in 10:
    # unresolved, carried into November's new cases.
    month(app, date(2026, 11, 1), {"W01": (1, 9), "W03": (4, 6)})
    clock.set(DEC1)
    second = app.get(MonthClose).close("A1", "2026-11")
    outcome = {ch.case.case_id: ch.outcome for ch in second.checked}
    assert outcome == {
        ids[(CaseKind.WINDOW, "W01")]: "resolved",
        ids[(CaseKind.STAFF, "S1")]: "resolved",
        ids[(CaseKind.WINDOW, "W03")]: "unresolved",
        ids[(CaseKind.STAFF, "S3")]: "unresolved",
    }
    svc = app.get(CaseService)
    old = svc.show(None, ids[(CaseKind.WINDOW, "W03")])
    assert (old.case.state, old.case.checked_period, old.case.checked_counted) == (
        State.UNRESOLVED,
        "2026-11",
        10,
    )
    assert old.case.checked_rate == 0.4
    new = next(c for c in second.opened if (c.kind, c.subject) == (CaseKind.WINDOW, "W03"))
    assert new.carried_from == old.case.case_id and old.carried_into == (new.case_id,)
    checked = old.history[-1]
    assert (checked.kind, checked.actor, checked.evidence["outcome"]) == (
        Kind.RECTIFICATION_CHECKED,
        "cases",
        "unresolved",
    )
    assert svc.show(None, ids[(CaseKind.WINDOW, "W01")]).case.state is State.RESOLVED


def test_too_few_ratings_leave_a_case_for_the_close_after(app: App, clock: FrozenClock) -> None:
    month(app, date(2026, 10, 1), {"W01": (3, 7)})
    [w, s] = sorted(app.get(MonthClose).close("A1", "2026-10").opened, key=lambda c: c.kind)
    app.get(CaseService).plan("HD1", w.case_id if w.kind is CaseKind.WINDOW else s.case_id, PLAN)
    month(app, date(2026, 11, 1), {"W01": (0, 4)})  # 4 counted: too few to judge
    clock.set(DEC1)
    res = app.get(MonthClose).close("A1", "2026-11")
    assert {ch.outcome for ch in res.checked} == {"too_few"}
    states = {c.kind: c.state for c in cases(app, period="2026-10")}
    assert states == {CaseKind.WINDOW: State.PLANNED, CaseKind.STAFF: State.OPEN}
    assert all(c.checked_period is None for c in cases(app, period="2026-10"))
    # the close of December judges them (10 counted, 1 low: resolved)
    month(app, date(2026, 12, 1), {"W01": (1, 9)})
    clock.set(datetime(2027, 1, 4, 2, tzinfo=UTC))
    res = app.get(MonthClose).close("A1", "2026-12")
    assert {ch.outcome for ch in res.checked} == {"resolved"}
    assert {c.state for c in cases(app, period="2026-10")} == {State.RESOLVED}


def test_windows_in_the_bottom_ranks_two_closes_running_get_a_talk(
    tmp_path: Path, db_url: str, clock: FrozenClock
) -> None:
    rules = default_ruleset_text().replace("talk_bottom_ranks = 3", "talk_bottom_ranks = 1")
    app = _app(tmp_path, db_url, clock, rules)
    try:
        month(app, date(2026, 10, 1), {"W01": (1, 9), "W02": (0, 10), "W03": (0, 10)})
        first = app.get(MonthClose).close("A1", "2026-10")
        assert first.talks_opened == 0  # the bottom once: no talk yet
        ev = app.ledger.events([first.closed.event_id])[first.closed.event_id]
        assert [r["subject"] for r in ev.evidence["figures"]["window"] if r["bottom"]] == ["W01"]
        month(app, date(2026, 11, 1), {"W01": (1, 9), "W02": (0, 10), "W03": (0, 10)})
        clock.set(DEC1)
        second = app.get(MonthClose).close("A1", "2026-11")
        [talk] = [c for c in second.opened if c.kind is CaseKind.TALK]
        assert (talk.subject, talk.rank, talk.period) == ("W01", 3, "2026-11")
        # talks are listed when asked for, never among the rectification cases
        assert [c.kind for c in cases(app, kinds=(CaseKind.TALK,))] == [CaseKind.TALK]
        assert all(c.kind is not CaseKind.TALK for c in cases(app))
        svc = app.get(CaseService)
        with pytest.raises(PermissionDenied):
            svc.note("HD1", talk.case_id, "The head cannot write on a supervisory talk")
        closed = svc.close("SUP1", talk.case_id, "Talk held with the window on 3 December")
        assert (closed.state, closed.closed_by) == (State.CLOSED, "SUP1")
    finally:
        app.close()


# -- amendments ---------------------------------------------------------------------------


def test_an_appeal_upheld_after_the_close_is_an_amendment(app: App, clock: FrozenClock) -> None:
    ids = month(app, date(2026, 10, 1), {"W01": (3, 7)})
    low = ids["W01"][0]
    # a low score given on 30 October: still within the 7-day filing window on 2 November
    late_low = submit(app, LOW, window="W01", replay_at=datetime(2026, 10, 30, 3, tzinfo=UTC))
    close = app.get(MonthClose)
    close.close("A1", "2026-10")
    assert close.show("2026-10").amendments == ()

    appeals = app.get(AppealService)
    filed = appeals.file("S1", late_low.rating_id, "abusive_or_unrelated", "About parking fees")
    aid = filed.appeal.appeal_id
    for r in ("R1", "R2"):
        appeals.assign("A1", aid, r)
    for r in ("R1", "R2"):
        appeals.decide(r, aid, uphold=True, reason=REASON, used_automated_evidence=False)
    assert app.ledger.current(late_low.rating_id)[0] is Status.VOIDED

    v = close.show("2026-10")
    assert v.digest_ok
    [a] = v.amendments
    assert (a.rating_id, a.kind, a.before, a.after, a.change) == (
        late_low.rating_id,
        Kind.VOID,
        "accepted",
        "voided",
        -1,
    )
    assert a.cause == f"appeal:{aid}" and Reason.APPEAL_UPHELD in a.reasons
    changes = {(c.kind, c.subject): c for c in v.changes}
    assert set(changes) == {("window", "W01"), ("staff", "S1")}
    w = changes[("window", "W01")]
    assert (w.counted_then, w.counted_now, w.low_then, w.low_now) == (11, 10, 4, 3)
    # the frozen figures and the case keep what the close saw
    assert cases(app, kinds=(CaseKind.WINDOW,))[0].counted == 11
    assert low != late_low.rating_id
    with pytest.raises(NotFound, match="not closed"):
        close.show("2026-09")


# -- webhooks -------------------------------------------------------------------------------


def test_the_outbox_queues_case_events_for_a_webhook(app: App, clock: FrozenClock) -> None:
    hooks = app.get(WebhookService)
    added = hooks.add("http://127.0.0.1:9/hook", ["rectification.*", "period.closed"])
    month(app, date(2026, 10, 1), {"W01": (3, 7)})
    app.get(MonthClose).close("A1", "2026-10")
    assert hooks.dispatch(clock.now()) == 3
    kinds = [d.kind for d in hooks.deliveries(added.endpoint.endpoint_id)]
    assert sorted(kinds) == ["period.closed", "rectification.opened", "rectification.opened"]


# -- people ---------------------------------------------------------------------------------


def test_people_plan_note_and_close_as_their_roles_allow(app: App, clock: FrozenClock) -> None:
    month(app, date(2026, 10, 1), {"W01": (3, 7), "W03": (3, 7)})
    app.get(MonthClose).close("A1", "2026-10")
    svc = app.get(CaseService)
    w1 = next(c for c in cases(app) if c.subject == "W01")
    s1 = next(c for c in cases(app) if c.subject == "S1")

    # reading: the head its window's, the supervisor the hall's, staff their own
    assert {c.subject for c in svc.listing("HD1")} == {"W01"}
    assert {c.subject for c in svc.listing("SUP1")} == {"W01", "S1"}
    assert {c.subject for c in svc.listing("SUP2")} == {"W03", "S3"}
    assert {c.subject for c in svc.listing("S1")} == {"S1"}
    assert svc.listing("R1") == []
    with pytest.raises(PermissionDenied, match="may not read case"):
        svc.show("HD3", w1.case_id)

    # acting: the head plans and notes its window's case, but may not close it
    clock.advance(3600)
    planned = svc.plan("HD1", w1.case_id, PLAN, due=date(2026, 11, 20))
    assert (planned.state, planned.planned_by, planned.plan) == (State.PLANNED, "HD1", PLAN)
    assert planned.due_at == datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
    noted = svc.note("HD1", w1.case_id, "Two staff retrained this week")
    assert (noted.state, noted.notes) == (State.IN_PROGRESS, 1)
    with pytest.raises(PermissionDenied, match="may not close"):
        svc.close("HD1", w1.case_id, "The head may not close it")
    with pytest.raises(PermissionDenied):
        svc.plan("HD2", w1.case_id, PLAN)
    with pytest.raises(PermissionDenied):
        svc.plan("S1", s1.case_id, PLAN)  # staff read their case; the supervisor acts
    with pytest.raises(InvalidInput, match="due"):
        svc.plan("SUP1", s1.case_id, PLAN, due=date(2026, 11, 1))
    with pytest.raises(InvalidInput, match="text"):
        svc.note("SUP1", s1.case_id, "short")
    done = svc.close("SUP1", w1.case_id, "The window was merged into W02")
    assert done.state is State.CLOSED
    with pytest.raises(TransitionNotAllowed, match="closed: cannot note"):
        svc.note("A1", w1.case_id, "Too late for a note on a closed case")

    history = svc.show("A1", w1.case_id).history
    assert [(e.kind, e.actor) for e in history] == [
        (Kind.RECTIFICATION_OPENED, "cases"),
        (Kind.RECTIFICATION_PLANNED, "HD1"),
        (Kind.RECTIFICATION_NOTED, "HD1"),
        (Kind.RECTIFICATION_CLOSED, "SUP1"),
    ]
    assert history[1].evidence["due_at"] == "2026-11-20T16:00:00+00:00"

    # overdue: active past its due date, on the injected clock
    assert svc.listing(None, overdue=True) == []
    clock.set(datetime(2026, 11, 30, 15, 59, tzinfo=UTC))  # the last minute of the 30th
    assert svc.listing(None, overdue=True) == []
    clock.advance(60)
    assert {c.subject for c in svc.listing(None, overdue=True)} == {"S1", "W03", "S3"}


def at_once(services: list[Any], call: Callable[[Any], object]) -> list[object]:
    """``call`` on each service in its own thread, released together: each service's
    ``registry`` read waits at a barrier until both threads have reached it. Returns
    each call's result, or the exception it raised."""
    barrier = threading.Barrier(len(services))
    for svc in services:
        read = svc.registry

        def gated(read: Callable[[], Any] = read) -> Any:
            barrier.wait(timeout=20)
            return read()

        svc.registry = gated
    results: list[object] = [None] * len(services)

    def run(i: int) -> None:
        try:
            results[i] = call(services[i])
        except Exception as err:
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(services))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_closes_of_one_month_at_once_one_wins_and_nothing_is_doubled(
    app: App, tmp_path: Path, db_url: str, clock: FrozenClock
) -> None:
    """Two processes close October at the same moment: both read the figures (a barrier
    makes sure), then write; one closes it, the other is refused whole."""
    month(app, date(2026, 10, 1), {"W01": (3, 7)})
    other = make_app(tmp_path / "home", db_url, clock=clock, init=False)
    try:
        # both read the figures (the registry, read after them), then both write
        closers = [app.get(MonthClose), other.get(MonthClose)]
        results = at_once(closers, lambda svc: svc.close("A1", "2026-10"))
        refused = [r for r in results if isinstance(r, Exception)]
        assert len(refused) == 1 and isinstance(refused[0], AlreadyExists), results
        closed = [e for e in app.ledger.events_about("period:2026-10")]
        assert [e.kind for e in closed] == [Kind.PERIOD_CLOSED]
        assert len(cases(app)) == 2
    finally:
        other.close()


# -- due dates: marked overdue and escalated --------------------------------------------------


def _four_cases(app: App) -> dict[str, int]:
    """October's close opens cases for W01 and S1 (hall H1, SUP1), W03 and S3 (H2, SUP2);
    returns their ids by subject."""
    month(app, date(2026, 10, 1), {"W01": (3, 7), "W03": (3, 7)})
    res = app.get(MonthClose).close("A1", "2026-10")
    return {c.subject: c.case_id for c in res.opened}


def test_a_case_past_its_due_date_is_marked_and_escalated_once_to_its_hall_supervisor(
    app: App, clock: FrozenClock
) -> None:
    ids = _four_cases(app)
    svc = app.get(CaseService)
    clock.advance(3600)
    svc.plan("HD1", ids["W01"], PLAN)  # planned
    svc.plan("HD3", ids["W03"], PLAN)
    svc.note("HD3", ids["W03"], "Two staff retrained this week")  # in_progress
    svc.close("SUP2", ids["S3"], "The staff member moved to another hall")  # final
    assert {c.due_at for c in cases(app)} == {DUE}

    # not yet due: nothing, and nothing written
    clock.set(DUE - timedelta(seconds=1))
    before = app.ledger.last_event_id()
    assert svc.escalate_overdue(None) == EscalationRun((), ())
    assert app.ledger.last_event_id() == before

    clock.set(DUE)  # due before this instant: overdue from it on
    run = svc.escalate_overdue(None)
    marked = {o["subject"]: (o["state"], o["due_at"]) for o in run.overdue}
    assert marked == {
        "W01": ("planned", DUE),
        "S1": ("open", DUE),
        "W03": ("in_progress", DUE),
    }
    assert {e["subject"]: e["escalated_to"] for e in run.escalated} == {
        "W01": "SUP1",
        "S1": "SUP1",
        "W03": "SUP2",
    }
    w1 = svc.store.get(ids["W01"])
    assert (w1.state, w1.overdue_at, w1.escalated_at, w1.escalated_to) == (
        State.PLANNED,
        DUE,
        DUE,
        "SUP1",
    )
    assert w1.version == 3  # opened 1, planned 2, marked and escalated together 3
    history = svc.show(None, ids["W01"]).history
    assert [(e.kind, e.actor) for e in history] == [
        (Kind.RECTIFICATION_OPENED, "cases"),
        (Kind.RECTIFICATION_PLANNED, "HD1"),
        (Kind.RECTIFICATION_OVERDUE, "operator"),
        (Kind.RECTIFICATION_ESCALATED, "operator"),
    ]
    over, up = history[2].evidence, history[3].evidence
    assert (over["case_id"], over["from"], over["to"], over["version"]) == (
        ids["W01"],
        "planned",
        "planned",
        3,
    )
    assert over["due_at"] == DUE.isoformat() and over["subject"] == "W01"
    assert (up["escalated_to"], up["hall_id"], up["kind"]) == ("SUP1", "H1", "window")
    closed = svc.store.get(ids["S3"])
    assert (closed.overdue_at, closed.escalated_at) == (None, None)
    assert app.ledger.events_about(f"rectification:{ids['S3']}")[-1].kind == (
        Kind.RECTIFICATION_CLOSED
    )

    # idempotent: a second run, later, does nothing
    clock.advance(86400)
    before = app.ledger.last_event_id()
    assert svc.escalate_overdue("A1") == EscalationRun((), ())
    assert app.ledger.last_event_id() == before
    assert {c.subject for c in svc.listing(None, overdue=True)} == {"W01", "S1", "W03"}

    # the next close checks them as any other: a final case is never marked again
    month(app, date(2026, 11, 1), {"W01": (1, 9), "W03": (1, 9)})
    clock.set(DEC1)
    app.get(MonthClose).close("A1", "2026-11")
    assert {c.state for c in cases(app, period="2026-10")} == {State.RESOLVED, State.CLOSED}
    assert svc.escalate_overdue(None) == EscalationRun((), ())


def test_who_may_escalate_and_the_supervisor_it_went_to_acts_on_it(
    app: App, clock: FrozenClock
) -> None:
    ids = _four_cases(app)
    svc = app.get(CaseService)
    clock.set(DUE)
    before = app.ledger.last_event_id()
    for who in ("HD1", "S1", "R1", "AU"):
        with pytest.raises(PermissionDenied):
            svc.escalate_overdue(who)
    assert app.ledger.last_event_id() == before
    run = svc.escalate_overdue("SUP2")  # a supervisor runs it for every hall
    assert len(run.overdue) == len(run.escalated) == 4
    assert {e.actor for e in app.ledger.events_about(f"rectification:{ids['W01']}")[1:]} == {"SUP2"}

    # the registry names another supervisor for H1 now: the case stays with SUP1, who
    # reads and acts on it; SUP2 supervises H1 now and does too
    moved = {
        **REGISTRY,
        "halls": [
            {"hall_id": "H1", "name": "North", "supervisor": "SUP2"},
            {"hall_id": "H2", "name": "South", "supervisor": "SUP2"},
        ],
    }
    app.get(RegistryService).load(parse_registry(moved), actor="operator")
    assert {c.subject for c in svc.listing("SUP1")} == {"W01", "S1"}
    noted = svc.note("SUP1", ids["W01"], "Visited the window; the checklist is up")
    assert noted.notes == 1
    svc.note("SUP2", ids["S1"], "Talked to the staff member about the queue rules")
    with pytest.raises(PermissionDenied):
        svc.note("SUP1", ids["W03"], "Not the case of a hall SUP1 supervises")


def test_a_hall_with_no_supervisor_escalates_to_the_admins(app: App, clock: FrozenClock) -> None:
    ids = _four_cases(app)
    bare = {**REGISTRY, "halls": [{"hall_id": "H1", "name": "North"}, REGISTRY["halls"][1]]}
    app.get(RegistryService).load(parse_registry(bare), actor="operator")
    clock.set(DUE + timedelta(days=3))
    run = app.get(CaseService).escalate_overdue(None)
    to = {e["subject"]: e["escalated_to"] for e in run.escalated}
    assert to == {"W01": None, "S1": None, "W03": "SUP2", "S3": "SUP2"}
    case = app.get(CaseService).store.get(ids["W01"])
    assert case.escalated_at == clock.now() and case.escalated_to is None


def test_the_servers_background_round_escalates_and_webhooks_receive_it(
    app: App, clock: FrozenClock
) -> None:
    hooks = app.get(WebhookService)
    added = hooks.add(
        "http://127.0.0.1:9/hook", ["rectification.overdue", "rectification.escalated"]
    )
    ids = _four_cases(app)
    Background(app, every=3600).round()
    assert all(c.overdue_at is None for c in cases(app))
    clock.set(DUE)
    Background(app, every=3600).round()
    w1 = app.get(CaseService).store.get(ids["W01"])
    assert (w1.overdue_at, w1.escalated_to) == (DUE, "SUP1")
    history = app.ledger.events_about(f"rectification:{ids['W01']}")
    assert [(e.kind, e.actor) for e in history[1:]] == [
        (Kind.RECTIFICATION_OVERDUE, "cases"),
        (Kind.RECTIFICATION_ESCALATED, "cases"),
    ]
    Background(app, every=3600).round()  # once: the next round changes nothing
    assert len(app.ledger.events_about(f"rectification:{ids['W01']}")) == 3
    kinds = [d.kind for d in hooks.deliveries(added.endpoint.endpoint_id)]
    assert sorted(kinds) == ["rectification.escalated"] * 4 + ["rectification.overdue"] * 4


def test_two_runs_at_once_mark_and_escalate_each_case_once(
    app: App, tmp_path: Path, db_url: str, clock: FrozenClock
) -> None:
    """Two processes run the check at the same moment (a barrier makes sure), each
    finding the cases due, then writing under the cases' lock; each case gets one of
    each."""
    ids = _four_cases(app)
    clock.set(DUE)
    other = make_app(tmp_path / "home", db_url, clock=clock, init=False)
    try:
        # both read the registry, then both look for cases due and write
        runners = [app.get(CaseService), other.get(CaseService)]
        results = at_once(runners, lambda svc: svc.escalate_overdue(None))
        assert all(isinstance(r, EscalationRun) for r in results), results
        done = sorted(len(r.escalated) for r in results)  # type: ignore[union-attr]
        assert done == [0, 4]
        for case_id in ids.values():
            kinds = [e.kind for e in app.ledger.events_about(f"rectification:{case_id}")]
            assert kinds == [
                Kind.RECTIFICATION_OPENED,
                Kind.RECTIFICATION_OVERDUE,
                Kind.RECTIFICATION_ESCALATED,
            ]
    finally:
        other.close()
