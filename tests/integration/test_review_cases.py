"""Review that ends, on real ledgers (SQLite and PostgreSQL): a detected window case
decided as a unit (all of it, or the part a selector picks) in one transaction; review
deadlines in working days of the rule set's calendar (Asia/Shanghai, a holiday and a
make-up Saturday), overdue lists and idempotent escalation; concurrency with single
decisions; roles.

The case is a real one: a small simulated fortnight (one hall, every attack on) goes
through the validation hook, then ``DetectService.run()`` opens it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from factories import T0, backend_url, make_app, rating

from integrity.adapters import tables as t
from integrity.app import App
from integrity.calendar import WorkingCalendar
from integrity.catalogue import Kind, Reason
from integrity.clock import FrozenClock
from integrity.errors import Conflict, InvalidInput, NotFound, PermissionDenied, PolicyViolation
from integrity.model import Event, Status
from integrity.people import People
from integrity.ports import RatingQuery
from integrity.venues import pseudonymise_venues
from rules import tables as rt
from rules.detectors.review import CaseSelector, ReviewPolicy, ReviewService
from rules.detectors.service import DetectService
from simulation import WorldConfig, simulate

SHANGHAI = ZoneInfo("Asia/Shanghai")
WORLD = WorldConfig(seed=4, halls=1, windows_per_hall=5, honest_ratings=1500, days=10)
# Monday 19 October 2026 a holiday, made up on Saturday 24 October
CALENDAR = WorkingCalendar(
    holidays=frozenset({date(2026, 10, 19)}), working_weekends=frozenset({date(2026, 10, 24)})
)
REASON = "pressure at the counter confirmed by the hall supervisor"


def _people(app: App) -> None:
    people = People(app.ledger)
    people.upsert("rev1", roles=["reviewer"], at=T0)
    people.upsert("rev2", roles=["reviewer"], at=T0)
    people.upsert("adm", roles=["admin"], at=T0)
    people.upsert("adm2", roles=["admin", "staff"], at=T0)
    people.upsert("clerk", roles=["staff"], at=T0)


def _review(app: App) -> ReviewService:
    """The service as wired, on the Shanghai calendar with a holiday and a make-up day."""
    svc = app.get(ReviewService)
    svc.calendar = CALENDAR
    svc.tz = SHANGHAI
    svc.policy = ReviewPolicy(deadline_working_days=5)
    return svc


def _detected(app: App) -> str:
    """Ingest the simulated world through the hook and run detection; the case opened."""
    world = simulate(WORLD)
    pv = pseudonymise_venues(world.venues, app.pseudonymiser)
    app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, T0, actor="test")
    app.hook.reload()
    for item in app.hook.validate_stream(world.ratings, replay=True, chunk=1000):
        assert item.decision is not None
    det = app.get(DetectService)
    det.config = dataclasses.replace(
        det.config, pyod={"enabled": False}, fairness={"enabled": False}
    )
    rep = det.run()
    assert rep.cases, "the simulated world has a coerced window"
    return rep.cases[0]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def app(url: str, tmp_path: Path, clock: FrozenClock) -> Iterator[App]:
    a = make_app(tmp_path / "home", url, clock=clock)
    _people(a)
    yield a
    a.close()


@pytest.fixture
def case(app: App) -> str:
    return _detected(app)


def _case_ratings(app: App, subject: str) -> list[int]:
    """The ratings the case's evidence held (rules' own table)."""
    with app.ledger.reading() as conn:
        fp = conn.execute(
            sa.select(rt.detect_cases.c.fingerprint).where(rt.detect_cases.c.subject == subject)
        ).scalar_one()
        return sorted(
            int(r)
            for (r,) in conn.execute(
                sa.select(rt.detect_holds.c.rating_id).where(rt.detect_holds.c.fingerprint == fp)
            )
        )


def _status(app: App, ids: list[int]) -> dict[int, Status]:
    return {r.rating_id: r.status for r in app.ledger.find_ratings(RatingQuery(ids=ids))}


def _review_events(app: App, rid: int) -> list[Event]:
    return [e for e in app.ledger.events_of(rid) if e.kind in (Kind.CLEAR, Kind.CONFIRM)]


def _event_count(app: App) -> int:
    with app.ledger.reading() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar_one())


def _case_row(svc: ReviewService, subject: str) -> dict[str, Any]:
    return next(r for r in svc.case_rows("rev1") if r["subject"] == subject)


# -- a case decided as a unit -----------------------------------------------------------------


def test_clearing_a_detected_case_is_one_transaction_with_one_case_event(
    app: App, case: str
) -> None:
    svc = _review(app)
    ids = _case_ratings(app, case)
    assert len(ids) > 20 and set(_status(app, ids).values()) == {Status.HELD}
    row = _case_row(svc, case)
    assert (row["held"], row["open"], row["cleared"], row["confirmed"]) == (
        len(ids),
        len(ids),
        0,
        0,
    )
    assert row["due"] == "2026-10-23"  # held Thursday 15th: Mon 19th is a holiday

    preview = svc.decide_case("rev1", case, clear=None)
    assert preview.event_id is None and preview.selected == len(ids) == preview.still_held
    before = _event_count(app)
    assert _event_count(app) == before  # a preview writes nothing

    out = svc.decide_case("rev1", case, clear=True, reason=REASON)
    assert out.changed == tuple(ids) and out.still_held == 0 and out.skipped == 0
    assert _event_count(app) == before + len(ids) + 1
    assert set(_status(app, ids).values()) == {Status.ACCEPTED}
    for rid in ids:
        [ev] = _review_events(app, rid)
        assert ev.kind == Kind.CLEAR and ev.actor == "rev1"
        assert ev.reasons == (Reason.REVIEW_CLEARED,)
        assert ev.evidence["case"] == case and ev.evidence["reason"] == REASON
    [reviewed] = [e for e in app.ledger.events_about(case) if e.kind == Kind.CASE_REVIEWED]
    assert reviewed.event_id == out.event_id and reviewed.actor == "rev1"
    assert reviewed.evidence["decision"] == "clear" and reviewed.evidence["reason"] == REASON
    assert reviewed.evidence["changed"] == len(ids) and reviewed.evidence["rating_ids"] == ids
    assert reviewed.evidence["still_held"] == 0
    assert reviewed.evidence["selector"]["channels"] == []
    # cleared evidence is recorded like a single clear, so detection never holds them again
    with app.ledger.reading() as conn:
        cleared = {
            int(r)
            for (r,) in conn.execute(
                sa.select(rt.detect_cleared.c.rating_id).where(
                    rt.detect_cleared.c.event_id.in_(
                        [e.event_id for rid in ids for e in _review_events(app, rid)]
                    )
                )
            )
        }
    assert cleared == set(ids)
    app.get(DetectService).run()
    assert set(_status(app, ids).values()) == {Status.ACCEPTED}
    row = _case_row(svc, case)
    assert (row["held"], row["open"], row["cleared"], row["due"]) == (len(ids), 0, len(ids), None)

    with pytest.raises(PolicyViolation, match="no held rating"):
        svc.decide_case("rev2", case, clear=False, reason=REASON)


def test_a_selector_decides_part_of_a_case_and_the_rest_stays_held(app: App, case: str) -> None:
    svc = _review(app)
    ids = _case_ratings(app, case)
    stored = {r.rating_id: r for r in app.ledger.find_ratings(RatingQuery(ids=ids))}
    times = sorted(r.submitted_at for r in stored.values())
    cut = times[len(times) // 2]
    kiosk = {rid for rid, r in stored.items() if r.channel == "kiosk"}
    picked = {rid for rid in kiosk if stored[rid].submitted_at >= cut}
    assert picked and picked != set(ids)
    sel = CaseSelector(channels=("kiosk",), submitted_from=cut)
    assert svc.decide_case("rev1", case, clear=None, selector=sel).selected == len(picked)

    out = svc.decide_case("rev1", case, clear=False, reason=REASON, selector=sel)
    assert set(out.changed) == picked and out.still_held == len(ids) - len(picked)
    st = _status(app, ids)
    assert {rid for rid, s in st.items() if s is Status.REJECTED} == picked
    assert {rid for rid, s in st.items() if s is Status.HELD} == set(ids) - picked
    for rid in picked:
        [ev] = _review_events(app, rid)
        assert ev.kind == Kind.CONFIRM and ev.reasons[-1] == Reason.REVIEW_CONFIRMED
        assert Reason.OUTLIER_COERCED in ev.reasons
    [reviewed] = [e for e in app.ledger.events_about(case) if e.kind == Kind.CASE_REVIEWED]
    assert reviewed.evidence["selector"] == {
        "channels": ["kiosk"],
        "staff_ids": [],
        "submitted_from": cut.isoformat(),
        "submitted_to": None,
    }
    row = _case_row(svc, case)
    assert (row["confirmed"], row["open"]) == (len(picked), len(ids) - len(picked))

    # the rest, by staff member and an earlier time range: a second decision
    staff = {stored[rid].staff_id or "" for rid in set(ids) - picked}
    rest = svc.decide_case(
        "rev2", case, clear=True, reason=REASON,
        selector=CaseSelector(staff_ids=tuple(sorted(staff)), submitted_to=times[-1] + timedelta(1)),
    )  # fmt: skip
    assert set(rest.changed) == set(ids) - picked and rest.still_held == 0


def test_a_case_clear_leaves_held_what_other_evidence_holds_too(app: App, case: str) -> None:
    svc = _review(app)
    ids = _case_ratings(app, case)
    farm = ids[0]
    with app.ledger.unit_of_work() as uow:  # a device-farm finding on one of the case's ratings
        uow.connection.execute(
            rt.detect_holds.insert(),
            {"rating_id": farm, "fingerprint": "farmfarmfarmfarm", "detector": "lockstep",
             "reason": "outlier.lockstep", "event_id": 0, "run_id": 0},
        )  # fmt: skip
    assert svc.decide_case("rev1", case, clear=None).left_other_evidence == (farm,)
    out = svc.decide_case("rev1", case, clear=True, reason=REASON)
    assert out.left_other_evidence == (farm,) and farm not in out.changed
    assert out.still_held == 1 and _status(app, [farm])[farm] is Status.HELD
    # confirming is not limited: the rest of the evidence only adds to it
    out = svc.decide_case("rev1", case, clear=False, reason=REASON)
    assert out.changed == (farm,) and out.still_held == 0


def test_case_decisions_check_role_reason_subject_and_selector(app: App, case: str) -> None:
    svc = _review(app)
    for who in ("clerk", "adm", None, "nobody"):
        with pytest.raises(PermissionDenied):
            svc.decide_case(who, case, clear=True, reason=REASON)
    with pytest.raises(InvalidInput, match="reason"):
        svc.decide_case("rev1", case, clear=True, reason="ok")
    with pytest.raises(InvalidInput, match="channel"):
        svc.decide_case("rev1", case, clear=True, reason=REASON,
                        selector=CaseSelector(channels=("fax",)))  # fmt: skip
    with pytest.raises(InvalidInput, match="later than"):
        svc.decide_case("rev1", case, clear=True, reason=REASON,
                        selector=CaseSelector(submitted_from=T0, submitted_to=T0))  # fmt: skip
    with pytest.raises(NotFound):
        svc.decide_case("rev1", "case:window:NOPE", clear=True, reason=REASON)
    with pytest.raises(PolicyViolation, match="no held rating"):
        svc.decide_case("rev1", case, clear=True, reason=REASON,
                        selector=CaseSelector(submitted_to=datetime(2000, 1, 1, tzinfo=UTC)))  # fmt: skip
    # a bare window id names its case
    assert svc.decide_case("rev1", case.split(":")[-1], clear=None).subject == case


# -- concurrency --------------------------------------------------------------------------------


class _Interleaved:
    """The ledger, with something run just before the next unit of work begins."""

    def __init__(self, ledger: Any, before: Any) -> None:
        self._ledger, self._before = ledger, before

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def unit_of_work(self) -> AbstractContextManager[Any]:
        if self._before is not None:
            before, self._before = self._before, None
            before()
        return self._ledger.unit_of_work()  # type: ignore[no-any-return]


def test_a_rating_cleared_while_the_case_decision_runs_is_not_changed_twice(
    app: App, case: str, url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    ids = _case_ratings(app, case)
    other = make_app(tmp_path / "home", url, clock=clock, init=False)  # another worker
    try:
        single = other.get(ReviewService)
        svc = _review(app)
        svc.ledger = _Interleaved(  # type: ignore[assignment]
            app.ledger, lambda: single.clear("rev2", ids[0], "a regular, known to the hall")
        )
        out = svc.decide_case("rev1", case, clear=False, reason=REASON)
    finally:
        other.close()
    assert ids[0] not in out.changed and set(out.changed) == set(ids[1:])
    [ev] = _review_events(app, ids[0])
    assert ev.kind == Kind.CLEAR and ev.actor == "rev2" and "case" not in ev.evidence
    assert _status(app, [ids[0]])[ids[0]] is Status.ACCEPTED


def test_a_single_decision_read_before_a_case_decision_committed_is_refused(
    app: App, case: str, url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    ids = _case_ratings(app, case)
    other = make_app(tmp_path / "home", url, clock=clock, init=False)  # another worker
    try:
        case_svc = other.get(ReviewService)
        single = _review(app)
        single.ledger = _Interleaved(  # type: ignore[assignment]
            app.ledger, lambda: case_svc.decide_case("rev2", case, clear=False, reason=REASON)
        )
        with pytest.raises(Conflict, match="changed meanwhile"):
            single.clear("rev1", ids[0], "a regular, known to the hall")
    finally:
        other.close()
    [ev] = _review_events(app, ids[0])
    assert ev.kind == Kind.CONFIRM and ev.evidence["case"] == case
    with pytest.raises(PolicyViolation, match="not held"):
        single.clear("rev1", ids[0], "a regular, known to the hall")


def test_concurrent_single_and_case_decisions_change_each_rating_once(
    app: App, case: str, url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    ids = _case_ratings(app, case)
    singles = ids[: min(12, len(ids))]
    other = make_app(tmp_path / "home", url, clock=clock, init=False)
    go = threading.Barrier(2)
    done: dict[str, Any] = {"single": [], "errors": []}

    def case_decision() -> None:
        go.wait()
        try:
            done["case"] = _review(app).decide_case("rev1", case, clear=True, reason=REASON)
        except PolicyViolation as err:  # every one of them was decided singly first
            done["case_error"] = err

    def single_decisions() -> None:
        svc = other.get(ReviewService)
        go.wait()
        for rid in singles:
            try:
                svc.confirm("rev2", rid, "same straight-lined fives, same minute")
                done["single"].append(rid)
            except (Conflict, PolicyViolation) as err:
                done["errors"].append((rid, err))

    try:
        threads = [
            threading.Thread(target=case_decision),
            threading.Thread(target=single_decisions),
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        other.close()
    by_case = set(done["case"].changed) if "case" in done else set()
    assert not by_case & set(done["single"])
    assert by_case | set(done["single"]) == set(ids)
    for rid in ids:
        assert len(_review_events(app, rid)) == 1
    st = _status(app, ids)
    assert all(st[rid] is Status.REJECTED for rid in done["single"])
    assert all(st[rid] is Status.ACCEPTED for rid in by_case)


# -- deadlines, overdue, escalation ---------------------------------------------------------------


def _hold(app: App, rid: int, at: datetime) -> None:
    """Hold an accepted rating as detection would (a finding outside any case), at ``at``."""
    state = app.ledger.current(rid)
    app.ledger.append(
        Event(kind=Kind.HOLD, actor="detector", at=at, rating_id=rid, status=Status.HELD,
              reasons=(Reason.OUTLIER_BURST,), evidence={"explanation": "a burst"}),
        state[1],
    )  # fmt: skip


def _accepted(app: App, n: int) -> list[int]:
    out = []
    for _ in range(n):
        d = app.hook.validate(rating(submitted_at=T0.isoformat()))
        assert d.status is Status.ACCEPTED
        out.append(d.rating_id)
    return out


def test_deadlines_count_working_days_in_shanghai_across_a_weekend_and_a_holiday(
    app: App, clock: FrozenClock
) -> None:
    svc = _review(app)
    a, b = _accepted(app, 2)
    _hold(app, a, T0)  # Thursday 15 October, 10:00 in Shanghai
    friday_late = datetime(2026, 10, 16, 20, 0, tzinfo=UTC)  # Saturday 04:00 in Shanghai
    _hold(app, b, friday_late)
    rows = {r["rating_id"]: r for r in svc.list_held("rev1")}
    # a: Fri 16, (Mon 19 holiday), Tue 20, Wed 21, Thu 22, Fri 23
    # b: counted from Saturday 17: Tue 20, Wed 21, Thu 22, Fri 23, Sat 24 (made up)
    assert (rows[a]["due"], rows[b]["due"]) == ("2026-10-23", "2026-10-24")
    assert svc.show("rev1", a)["due"] == "2026-10-23"

    end_of_23rd = datetime(2026, 10, 24, tzinfo=SHANGHAI)
    clock.set(end_of_23rd - timedelta(microseconds=1))
    assert svc.overdue("adm") == []
    clock.set(end_of_23rd)
    assert [x["item"] for x in svc.overdue("adm")] == [f"rating:{a}"]
    clock.set(datetime(2026, 10, 25, tzinfo=SHANGHAI))
    late = svc.overdue("rev1")
    assert [x["item"] for x in late] == [f"rating:{a}", f"rating:{b}"]  # oldest due first
    assert late[0]["due"] == "2026-10-23" and late[0]["escalated_at"] is None


def test_escalation_is_addressed_to_admins_once_per_deadline(
    app: App, case: str, clock: FrozenClock
) -> None:
    svc = _review(app)
    ids = _case_ratings(app, case)
    [lone] = _accepted(app, 1)
    _hold(app, lone, T0 + timedelta(days=1))  # Friday: due Saturday 24th (19th a holiday)
    assert svc.escalate_overdue("rev1").escalated == ()

    clock.set(datetime(2026, 10, 27, tzinfo=SHANGHAI))
    items = svc.overdue("adm")
    names = [x["item"] for x in items]
    # the case is one item (none of its ratings is listed alone); detection's other holds
    # (Thursday 15th, due 23rd) come before the lone rating (Friday 16th, due 24th)
    assert names[0] == case and names[-1] == f"rating:{lone}"
    assert not {f"rating:{rid}" for rid in ids} & set(names)
    assert items[0]["ratings"] == len(ids) and items[0]["due"] == "2026-10-23"
    assert items[-1]["due"] == "2026-10-24"
    assert [x["due_at"] for x in items] == sorted(x["due_at"] for x in items)
    before = _event_count(app)
    run = svc.escalate_overdue("adm")
    assert [x["item"] for x in run.escalated] == names and run.already == ()
    assert _event_count(app) == before + len(names)
    [esc] = [e for e in app.ledger.events_about(case) if e.kind == Kind.REVIEW_ESCALATED]
    assert esc.evidence["to"] == ["adm", "adm2"] and esc.evidence["to_role"] == "admin"
    assert esc.reasons == (Reason.REVIEW_OVERDUE,) and esc.actor == "adm"
    assert esc.evidence["ratings"] == len(ids)
    [lone_esc] = [e for e in app.ledger.events_of(lone) if e.kind == Kind.REVIEW_ESCALATED]
    assert lone_esc.subject == f"rating:{lone}" and lone_esc.status is None
    assert _status(app, [lone])[lone] is Status.HELD  # escalation decides nothing

    # idempotent: nothing new until a deadline moves
    again = svc.escalate_overdue("rev1")
    assert again.escalated == () and len(again.already) == len(names)
    assert _event_count(app) == before + len(names)
    assert all(x["escalated_at"] is not None for x in svc.overdue("adm"))

    # the deadline moves: the lone rating is cleared, held again later, and overdue again
    svc.clear("rev1", lone, "checked: a real visit")
    _hold(app, lone, clock.now())  # Tuesday 27th: due Tuesday 3 November
    assert [x["item"] for x in svc.escalate_overdue("adm").escalated] == []
    clock.set(datetime(2026, 11, 4, tzinfo=SHANGHAI))
    assert [x["item"] for x in svc.escalate_overdue("adm").escalated] == [f"rating:{lone}"]


def test_a_case_deadline_moves_to_its_oldest_open_rating(
    app: App, case: str, clock: FrozenClock
) -> None:
    svc = _review(app)
    ids = _case_ratings(app, case)
    # later ratings join the case (a later detection run, same evidence): held on the 27th
    newer = _accepted(app, 2)
    with app.ledger.reading() as conn:
        fp = conn.execute(
            sa.select(rt.detect_cases.c.fingerprint).where(rt.detect_cases.c.subject == case)
        ).scalar_one()
    clock.set(datetime(2026, 10, 27, 10, 0, tzinfo=SHANGHAI))
    for rid in newer:
        _hold(app, rid, clock.now())
        with app.ledger.unit_of_work() as uow:
            uow.connection.execute(
                rt.detect_holds.insert(),
                {"rating_id": rid, "fingerprint": fp, "detector": "coerced",
                 "reason": "outlier.coerced", "event_id": 0, "run_id": 0},
            )  # fmt: skip
    assert case in [x["item"] for x in svc.escalate_overdue("adm").escalated]
    out = svc.decide_case("rev1", case, clear=False, reason=REASON,
                          selector=CaseSelector(submitted_to=T0))  # fmt: skip
    assert set(out.changed) == set(ids) and out.still_held == 2
    row = _case_row(svc, case)
    assert row["open"] == 2  # only the newer ones are left: due Tuesday 3 November
    assert row["due"] == "2026-11-03" and not row["overdue"]
    assert case not in [x["item"] for x in svc.overdue("adm")]
    clock.set(datetime(2026, 11, 3, 23, 59, tzinfo=SHANGHAI))
    assert case not in [x["item"] for x in svc.escalate_overdue("adm").escalated]
    clock.set(datetime(2026, 11, 4, tzinfo=SHANGHAI))
    [item] = [x for x in svc.escalate_overdue("adm").escalated if x["item"] == case]
    assert item["ratings"] == 2 and item["due"] == "2026-11-03"


def test_overdue_and_escalation_need_the_reviewer_or_admin_role(app: App) -> None:
    svc = _review(app)
    for who in ("clerk", None, "nobody"):
        with pytest.raises(PermissionDenied):
            svc.overdue(who)
        with pytest.raises(PermissionDenied):
            svc.escalate_overdue(who)
    assert svc.overdue("adm") == [] and svc.overdue("rev1") == []
    with pytest.raises(PermissionDenied):
        svc.list_held("adm")  # reading held ratings is the reviewers' work
    with pytest.raises(PermissionDenied):
        svc.case_rows("clerk")
