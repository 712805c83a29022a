"""The appeal workflow against a real ledger: SQLite, and PostgreSQL where it matters.

Effects on the ledger (void, reinstate, every action an event), the performance report
before and after an upheld appeal, roles and separation of duties, ineligible filings
recorded, deadlines and escalation, reopening, evidence, verification, reviewer context.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from appeals_factories import HIGH, LOW, AppealWorld
from factories import backend_url

from appeals import tables as at
from appeals.model import TRANSITIONS, Action, Appeal, State, TransitionNotAllowed
from appeals.repository import AppealFilter
from integrity.catalogue import Kind, Reason, describe
from integrity.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PolicyViolation,
)
from integrity.model import Event, Status
from integrity.people import StaffRecord
from integrity.reports import performance

REASON = "The comment is abuse about parking, not my service"


def people(w: AppealWorld) -> None:
    w.person("S1", "staff", unit="U1", windows=("W01",))
    w.person("S2", "staff", unit="U1", windows=("W02",))
    w.person("R1", "reviewer", unit="U2")
    w.person("R2", "reviewer", unit="U3")
    w.person("R3", "reviewer", unit="U1")  # the appellant's unit
    w.person("R4", "reviewer", unit="U4")
    w.person("R5", "reviewer", unit="U5")
    w.person("SR", "staff", "reviewer", unit="U2")  # serves, and reviews others
    w.person("A1", "admin", unit="HQ")
    w.person("AU", "auditor", unit="AUD")


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised SQLite instance; each test works on a copy (no migrations per test)."""
    home = tmp_path_factory.mktemp("appeals-template") / "home"
    AppealWorld(home).close()
    return home


@pytest.fixture
def w(template: Path, tmp_path: Path) -> Iterator[AppealWorld]:
    shutil.copytree(template, tmp_path / "home")
    world = AppealWorld(tmp_path / "home", init=False)
    people(world)
    yield world
    world.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def bw(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppealWorld]:
    """A world on each backend."""
    world = AppealWorld(tmp_path / "home", backend_url(request, tmp_path))
    people(world)
    yield world
    world.close()


def evidence(tmp_path: Path, name: str, content: str) -> Path:
    p = tmp_path / name
    p.write_text(content)
    return p


def file_and_assign(w: AppealWorld, rid: int, *reviewers: str) -> int:
    res = w.service.file("S1", rid, "abusive_or_unrelated", REASON)
    assert res.admitted, res.ineligible
    for r in reviewers:
        w.service.assign("A1", res.appeal.appeal_id, r)
    return res.appeal.appeal_id


def decide(w: AppealWorld, who: str, aid: int, uphold: bool, auto: bool = False) -> State:
    return w.service.decide(
        who,
        aid,
        uphold=uphold,
        reason="Checked the ticket and the comment against the service record",
        used_automated_evidence=auto,
    ).state


def appeal_kinds(w: AppealWorld, aid: int) -> list[str]:
    return [e.kind for e in w.app.ledger.events_about(f"appeal:{aid}")]


# -- effects on the ledger and on performance ---------------------------------------------


def test_an_upheld_appeal_voids_the_low_score_and_the_window_score_rises(bw: AppealWorld) -> None:
    w = bw
    for _ in range(3):
        w.rating(scores=HIGH)
    low = w.rating(scores=LOW)
    before = {r["window_id"]: r for r in performance(w.app.ledger, "window", w.app.core.rubric)}
    assert before["W01"]["counted"] == 4
    assert before["W01"]["low_scores"] == 1

    aid = file_and_assign(w, low, "R1", "R2")
    assert decide(w, "R1", aid, uphold=True) is State.UNDER_REVIEW  # one vote of two
    assert w.app.ledger.current(low)[0] is Status.ACCEPTED
    assert decide(w, "R2", aid, uphold=True, auto=True) is State.UPHELD

    after = {r["window_id"]: r for r in performance(w.app.ledger, "window", w.app.core.rubric)}
    assert after["W01"]["counted"] == 3
    assert after["W01"]["voided"] == 1
    assert after["W01"]["low_scores"] == 0
    assert after["W01"]["low_score_rate"] == 0
    assert after["W01"]["score"] > before["W01"]["score"]
    staff = {r["staff_id"]: r for r in performance(w.app.ledger, "staff", w.app.core.rubric)}
    assert staff["S1"]["score"] == pytest.approx(after["W01"]["score"])

    status_events = [e for e in w.app.ledger.events_of(low) if e.status is not None]
    void = status_events[-1]
    assert (void.kind, void.status, void.reasons) == ("void", Status.VOIDED, ("appeal.upheld",))
    assert void.evidence["appeal_id"] == aid
    assert void.evidence["previous_status"] == "accepted"
    assert void.evidence["reviewers"] == ["R1", "R2"]
    assert void.evidence["used_automated_evidence"] is True
    assert void.subject == f"appeal:{aid}"
    assert void.rule_set_id == w.app.core.rule_set_id

    a = w.service.repo.get(aid)
    assert a.decided_by == "R2"
    assert a.used_automated_evidence is True
    assert appeal_kinds(w, aid) == [
        "appeal.filed",
        "appeal.assigned",
        "appeal.assigned",
        "appeal.uphold_vote",
        "appeal.upheld",
        "void",
    ]
    # Every appeal action is a ledger event, sealed into the Merkle log like the rest.
    w.app.log.seal(w.clock.now())
    report = w.app.log.verify(w.clock.now())
    assert report.ok, report.problems
    assert w.service.verify("AU") == []


def test_a_rejected_appeal_leaves_the_rating_counting(w: AppealWorld) -> None:
    low = w.rating()
    before = performance(w.app.ledger, "window", w.app.core.rubric)
    aid = file_and_assign(w, low, "R1")
    assert decide(w, "R1", aid, uphold=False) is State.REJECTED
    assert w.app.ledger.current(low) == (Status.ACCEPTED, 1)
    assert performance(w.app.ledger, "window", w.app.core.rubric) == before
    a = w.service.repo.get(aid)
    assert (a.decided_by, a.used_automated_evidence, a.closed_at is not None) == ("R1", False, True)
    assert w.service.verify("A1") == []


def test_the_rating_keeps_its_status_while_the_appeal_is_pending(w: AppealWorld) -> None:
    low = w.rating()
    aid = file_and_assign(w, low, "R1", "R2")
    w.service.request_info("R1", aid, "Please attach the ticket printout")
    w.service.respond("S1", aid, "Attached the printout of the ticket")
    decide(w, "R1", aid, uphold=True)
    w.service.escalate("A1", aid, "Supervisor should see this one")
    assert w.app.ledger.current(low) == (Status.ACCEPTED, 1)


def test_an_uphold_vote_then_a_reject_decides_rejected(w: AppealWorld) -> None:
    low = w.rating()
    aid = file_and_assign(w, low, "R1", "R2")
    decide(w, "R1", aid, uphold=True)
    assert decide(w, "R2", aid, uphold=False) is State.REJECTED
    assert w.app.ledger.current(low)[0] is Status.ACCEPTED


def test_one_reviewer_suffices_when_configured(w: AppealWorld) -> None:
    w.service.policy = dataclasses.replace(w.service.policy, uphold_reviewers=1)
    low = w.rating()
    aid = file_and_assign(w, low, "R1")
    assert decide(w, "R1", aid, uphold=True) is State.UPHELD
    assert w.app.ledger.current(low)[0] is Status.VOIDED


def test_a_held_rating_is_voided_from_held(w: AppealWorld) -> None:
    low = w.rating()
    _, v = w.app.ledger.current(low)
    w.app.ledger.append(
        Event(Kind.HOLD, "detector", w.clock.now(), low, Status.HELD, (Reason.OUTLIER_BURST,)), v
    )
    aid = file_and_assign(w, low, "R1", "R2")
    decide(w, "R1", aid, uphold=True)
    decide(w, "R2", aid, uphold=True)
    void = w.app.ledger.events_of(low)[-1]
    assert void.evidence["previous_status"] == "held"


def test_a_unique_key_taken_meanwhile_is_a_clear_conflict(bw: AppealWorld) -> None:
    """The races the version check cannot see (a second claim on the rating, a second
    vote in a round) end on the database's unique keys: a Conflict saying what
    happened, and nothing of the unit of work is written."""
    w = bw
    rid = w.rating()
    first = w.service.file("S1", rid, "system_error", REASON).appeal
    second = w.service.file("S1", rid, "system_error", REASON).appeal
    assert (first.claims_rating, second.claims_rating) == (True, False)
    repo = w.service.repo
    with (
        pytest.raises(Conflict, match="another appeal contests the same rating now"),
        w.app.ledger.unit_of_work() as uow,
    ):
        repo.update(uow, second.appeal_id, second.version, {"claims_rating": True})
    assert repo.get(second.appeal_id) == second

    aid = file_and_assign(w, w.rating(), "R1")
    vote = w.service.decide(
        "R1", aid, uphold=False, reason=REASON, used_automated_evidence=False
    ).votes[0]
    with (
        pytest.raises(Conflict, match=f"R1 already voted on appeal {aid} in round 1"),
        w.app.ledger.unit_of_work() as uow,
    ):
        repo.add_vote(uow, aid, vote)
    assert len(repo.get(aid).votes) == 1


def test_a_concurrent_status_change_fails_the_decision_cleanly(w: AppealWorld) -> None:
    """The void uses expect_version: if the rating moved in between, nothing is written."""
    low = w.rating()
    aid = file_and_assign(w, low, "R1", "R2")
    decide(w, "R1", aid, uphold=True)
    real_current = w.app.ledger.current

    def stale(rating_id: int) -> tuple[Status, int]:
        status, version = real_current(rating_id)
        w.app.ledger.append(
            Event(
                Kind.HOLD,
                "detector",
                w.clock.now(),
                rating_id,
                Status.HELD,
                (Reason.OUTLIER_BURST,),
            ),
            version,
        )
        return status, version

    w.app.ledger.current = stale  # type: ignore[method-assign]
    with pytest.raises(Conflict, match=f"rating {low} changed meanwhile"):
        decide(w, "R2", aid, uphold=True)
    w.app.ledger.current = real_current  # type: ignore[method-assign]
    a = w.service.repo.get(aid)
    assert a.state is State.UNDER_REVIEW
    assert len(a.votes) == 1
    assert "appeal.upheld" not in appeal_kinds(w, aid)


# -- filing: recorded ineligible, or refused -----------------------------------------------


def ineligible(w: AppealWorld, who: str, rid: int, code: str, ground: str = "system_error") -> None:
    res = w.service.file(who, rid, ground, REASON)
    a = res.appeal
    assert a.state is State.INELIGIBLE
    assert code in a.ineligible_reasons
    assert code in {p.code for p in res.ineligible}
    assert not a.claims_rating
    assert a.due_at is None
    filed = w.app.ledger.events_about(a.subject)
    assert [e.kind for e in filed] == ["appeal.filed"]
    assert code in filed[0].reasons
    assert filed[0].evidence["to"] == "ineligible"
    assert w.app.ledger.current(rid)[0] is not Status.VOIDED


def test_ineligible_filings_are_recorded_with_their_reasons(w: AppealWorld) -> None:
    ineligible(w, "S2", w.rating(), "not_own_rating")
    ineligible(w, "S1", w.rating(scores=HIGH), "not_low_score")
    ineligible(w, "S1", w.rating(), "ground_not_admissible", ground="disagree_with_score")
    late = w.rating(at=w.clock.now() - timedelta(days=7, seconds=1))
    ineligible(w, "S1", late, "filing_window_closed")
    twice = w.rating()
    w.service.file("S1", twice, "system_error", REASON)
    ineligible(w, "S1", twice, "already_appealed")


def test_the_monthly_quota_counts_admitted_appeals_only(w: AppealWorld) -> None:
    w.service.policy = dataclasses.replace(w.service.policy, monthly_quota=2)
    ineligible(w, "S1", w.rating(scores=HIGH), "not_low_score")  # does not count
    for _ in range(2):
        assert w.service.file("S1", w.rating(), "system_error", REASON).admitted
    ineligible(w, "S1", w.rating(), "monthly_quota_exceeded")
    assert w.service.file("S2", w.rating(staff="S2", window="W02"), "system_error", REASON).admitted


def test_a_rating_naming_no_staff_can_be_appealed_by_its_windows_staff(w: AppealWorld) -> None:
    rid = w.rating(staff=None, window="W01")
    assert w.service.file("S1", rid, "wrong_staff_or_window", REASON).admitted
    ineligible(w, "S2", w.rating(staff=None, window="W01"), "not_own_rating")


@pytest.mark.parametrize(
    ("who", "rid", "ground", "reason", "error", "needle"),
    [
        (None, 1, "system_error", REASON, PermissionDenied, "nobody is signed in"),
        ("ZZ", 1, "system_error", REASON, PermissionDenied, "not in the registry"),
        ("R1", 1, "system_error", REASON, PermissionDenied, "staff role"),
        ("S1", 1, "bad_luck", REASON, InvalidInput, "unknown ground"),
        ("S1", 1, "system_error", "short", InvalidInput, "at least 10"),
        ("S1", 999, "system_error", REASON, NotFound, "no rating 999"),
    ],
)
def test_refused_filings_write_nothing(
    w: AppealWorld,
    who: str | None,
    rid: int,
    ground: str,
    reason: str,
    error: type[Exception],
    needle: str,
) -> None:
    assert w.rating() == 1
    with pytest.raises(error, match=needle):
        w.service.file(who, rid, ground, reason)
    assert w.service.repo.find(AppealFilter()) == []
    assert not [e for e in w.app.ledger.events_of(1) if e.kind.startswith("appeal.")]


# -- roles and separation of duties --------------------------------------------------------


def test_who_may_assign(w: AppealWorld) -> None:
    aid = file_and_assign(w, w.rating())
    with pytest.raises(PermissionDenied, match="holds none of the roles admin, reviewer"):
        w.service.assign("S2", aid, "R1")
    with pytest.raises(PermissionDenied, match="only an admin assigns other people"):
        w.service.assign("R1", aid, "R2")
    with pytest.raises(PermissionDenied, match="appellant's unit"):
        w.service.assign("A1", aid, "R3")
    with pytest.raises(PermissionDenied, match="appellant's unit"):
        w.service.assign("R3", aid)
    with pytest.raises(PolicyViolation, match="does not hold the reviewer role"):
        w.service.assign("A1", aid, "S2")
    with pytest.raises(NotFound):
        w.service.assign("A1", aid, "NOBODY")
    assert w.service.assign("R1", aid).reviewers == ("R1",)
    with pytest.raises(PolicyViolation, match="already assigned"):
        w.service.assign("A1", aid, "R1")


def test_an_appellant_who_is_a_reviewer_never_handles_their_own_appeal(w: AppealWorld) -> None:
    rid = w.rating(staff="SR")
    aid = w.service.file("SR", rid, "system_error", REASON).appeal.appeal_id
    with pytest.raises(PermissionDenied, match="own appeal"):
        w.service.assign("SR", aid)
    with pytest.raises(PermissionDenied, match="own appeal"):
        w.service.assign("A1", aid, "SR")
    w.service.assign("A1", aid, "R2")
    with pytest.raises(PermissionDenied, match="own appeal"):
        w.service.decide("SR", aid, uphold=True, reason=REASON, used_automated_evidence=False)


def test_only_assigned_reviewers_decide_and_vote_once(w: AppealWorld) -> None:
    aid = file_and_assign(w, w.rating(), "R1", "R2")
    with pytest.raises(PermissionDenied, match="not assigned"):
        decide(w, "R4", aid, uphold=False)
    with pytest.raises(PermissionDenied, match="reviewer role"):
        decide(w, "AU", aid, uphold=False)
    with pytest.raises(PermissionDenied, match="reviewer role"):
        decide(w, "A1", aid, uphold=True)
    decide(w, "R1", aid, uphold=True)
    with pytest.raises(PolicyViolation, match="already voted"):
        decide(w, "R1", aid, uphold=True)
    with pytest.raises(InvalidInput, match="reason"):
        w.service.decide("R2", aid, uphold=True, reason="ok", used_automated_evidence=False)


def test_moving_the_appellant_into_the_reviewers_unit_closes_the_back_door(
    w: AppealWorld,
) -> None:
    aid = file_and_assign(w, w.rating(), "R1")
    w.person("S1", "staff", unit="U2")  # now in R1's unit
    with pytest.raises(PermissionDenied, match="appellant's unit"):
        decide(w, "R1", aid, uphold=False)


def test_only_the_appellant_responds_and_withdraws(w: AppealWorld) -> None:
    aid = file_and_assign(w, w.rating(), "R1")
    with pytest.raises(PermissionDenied, match="not assigned"):
        w.service.request_info("R2", aid, "please send the ticket")
    w.service.request_info("R1", aid, "please send the ticket")
    with pytest.raises(PermissionDenied, match="only the appellant"):
        w.service.respond("S2", aid, "here is something")
    with pytest.raises(PermissionDenied, match="only the appellant"):
        w.service.withdraw("A1", aid)
    assert w.service.withdraw("S1", aid, "no longer relevant").state is State.WITHDRAWN


def test_staff_read_only_their_own_appeals(w: AppealWorld) -> None:
    mine = file_and_assign(w, w.rating())
    theirs = w.service.file("S2", w.rating(staff="S2"), "system_error", REASON).appeal.appeal_id
    assert w.service.get("S1", mine).appeal_id == mine
    with pytest.raises(PermissionDenied, match="may not read"):
        w.service.get("S1", theirs)
    assert [a.appeal_id for a in w.service.find("S1", AppealFilter())] == [mine]
    with pytest.raises(PermissionDenied, match="only their own"):
        w.service.find("S1", AppealFilter(appellant_id="S2"))
    assert len(w.service.find("AU", AppealFilter())) == 2
    assert [a.appeal_id for a in w.service.find("R1", AppealFilter(unit="U1"))] == [mine, theirs]


def test_a_forbidden_transition_names_the_state_and_what_is_allowed(w: AppealWorld) -> None:
    aid = file_and_assign(w, w.rating())
    with pytest.raises(PolicyViolation, match=f"appeal {aid} is filed: cannot decide"):
        decide(w, "R1", aid, uphold=True)  # nobody assigned yet
    w.service.assign("A1", aid, "R1")
    decide(w, "R1", aid, uphold=False)
    with pytest.raises(PolicyViolation, match=f"appeal {aid} is rejected: cannot withdraw"):
        w.service.withdraw("S1", aid)
    with pytest.raises(PolicyViolation, match="allowed now: reopen"):
        w.service.request_info("R1", aid, "more please, thanks")


# -- information requests, deadlines, escalation -------------------------------------------


def test_request_info_and_respond_with_more_evidence(w: AppealWorld, tmp_path: Path) -> None:
    aid = file_and_assign(w, w.rating(), "R1")
    assert (
        w.service.request_info("R1", aid, "Please attach the queue ticket").state
        is State.NEEDS_INFO
    )
    a = w.service.respond(
        "S1", aid, "Here is the queue ticket", [evidence(tmp_path, "ticket.txt", "Q-17 11:02")]
    )
    assert a.state is State.UNDER_REVIEW
    assert [f.name for f in a.evidence] == ["ticket.txt"]
    msgs = [e.evidence.get("message") for e in w.app.ledger.events_about(a.subject)]
    assert "Please attach the queue ticket" in msgs and "Here is the queue ticket" in msgs
    with pytest.raises(PolicyViolation, match="cannot respond"):
        w.service.respond("S1", aid, "answering again, unasked")


def test_a_missed_deadline_escalates_and_never_upholds(w: AppealWorld) -> None:
    low = w.rating()
    aid = file_and_assign(w, low, "R1", "R2")
    decide(w, "R1", aid, uphold=True)
    other = file_and_assign(w, w.rating())
    with pytest.raises(PolicyViolation, match="not overdue yet"):
        w.service.escalate("S1", aid, "It is taking too long")
    assert w.service.find("A1", AppealFilter(overdue_at=w.clock.now())) == []
    assert w.service.escalate_overdue("A1").escalated == ()

    w.advance(days=22)  # 15 working days are three weeks
    overdue = w.service.find("A1", AppealFilter(overdue_at=w.clock.now()))
    assert [a.appeal_id for a in overdue] == [aid, other]
    with pytest.raises(PermissionDenied):
        w.service.escalate_overdue("S1")
    run = w.service.escalate_overdue("R4")
    assert [a.state for a in run.escalated] == [State.ESCALATED, State.ESCALATED]
    assert w.app.ledger.current(low) == (Status.ACCEPTED, 1)
    ev = w.app.ledger.events_about(f"appeal:{aid}")[-1]
    assert (ev.kind, ev.actor, ev.reasons) == ("appeal.escalated", "R4", ("deadline.missed",))
    assert w.service.escalate_overdue("A1").escalated == ()  # escalated once
    # Still overdue (listed), and still decidable: R2's uphold completes it.
    assert len(w.service.find("A1", AppealFilter(overdue_at=w.clock.now()))) == 2
    assert decide(w, "R2", aid, uphold=True) is State.UPHELD


def test_the_appellant_may_escalate_once_overdue(w: AppealWorld) -> None:
    aid = file_and_assign(w, w.rating(), "R1")
    w.advance(days=22)
    a = w.service.escalate("S1", aid, "No decision after three weeks")
    assert (a.state, a.escalations) == (State.ESCALATED, 1)
    assert w.service.assign("A1", aid, "R2").state is State.UNDER_REVIEW


# -- reopening -----------------------------------------------------------------------------


def test_reopen_with_new_evidence_fresh_reviewers_and_reversal(
    w: AppealWorld, tmp_path: Path
) -> None:
    low = w.rating()
    aid = file_and_assign(w, low, "R1", "R2")
    decide(w, "R1", aid, uphold=True)
    decide(w, "R2", aid, uphold=True)
    assert w.app.ledger.current(low)[0] is Status.VOIDED

    w.advance(days=2)
    a = w.service.reopen(
        "A1", aid, "Audit found the citizen's receipt", [evidence(tmp_path, "r.pdf", "receipt")]
    )
    assert (a.state, a.round, a.reviewers, a.prior_outcome) == (
        State.REOPENED,
        2,
        (),
        State.UPHELD,
    )
    assert a.due_at is not None and a.due_at > w.clock.now() + timedelta(days=14)
    assert w.app.ledger.current(low)[0] is Status.VOIDED  # unchanged while pending
    with pytest.raises(PermissionDenied, match="earlier round"):
        w.service.assign("A1", aid, "R1")
    w.service.assign("A1", aid, "R4")
    assert decide(w, "R4", aid, uphold=False) is State.REJECTED

    status_events = [e for e in w.app.ledger.events_of(low) if e.status is not None]
    assert [e.kind for e in status_events] == ["decision", "void", "reinstate"]
    assert status_events[-1].status is Status.ACCEPTED
    assert status_events[-1].reasons == ("appeal.reversed",)
    a = w.service.repo.get(aid)
    assert (a.reversals, a.reopens) == (1, 1)
    assert w.service.verify("AU") == []


def test_reopen_limits_for_the_appellant(w: AppealWorld, tmp_path: Path) -> None:
    aid = file_and_assign(w, w.rating(), "R1")
    decide(w, "R1", aid, uphold=False)
    first = evidence(tmp_path, "a.txt", "one")
    with pytest.raises(PermissionDenied, match="only the appellant"):
        w.service.reopen("S2", aid, "I know better than them", [first])
    w.service.reopen("S1", aid, "New witness statement attached", [first])
    w.service.withdraw("S1", aid)
    with pytest.raises(InvalidInput, match="new evidence"):
        w.service.reopen("S1", aid, "Same file again, please", [first])
    w.service.reopen("S1", aid, "Second new statement", [evidence(tmp_path, "b.txt", "two")])
    w.service.withdraw("S1", aid)
    with pytest.raises(PolicyViolation, match="the limit is 2"):
        w.service.reopen("S1", aid, "Third new statement", [evidence(tmp_path, "c.txt", "3")])
    w.service.reopen("A1", aid, "Admins are not limited", [evidence(tmp_path, "d.txt", "4")])


def test_the_reopen_window_binds_the_appellant_not_admins(w: AppealWorld, tmp_path: Path) -> None:
    aid = file_and_assign(w, w.rating(), "R1")
    decide(w, "R1", aid, uphold=False)
    w.advance(days=31)
    with pytest.raises(PolicyViolation, match="within 30 days"):
        w.service.reopen("S1", aid, "Found the receipt", [evidence(tmp_path, "a", "1")])
    assert w.service.reopen("A1", aid, "Audit request", [evidence(tmp_path, "b", "2")]).round == 2


def test_only_an_admin_reopens_an_ineligible_filing(w: AppealWorld, tmp_path: Path) -> None:
    late = w.rating(at=w.clock.now() - timedelta(days=9))
    aid = w.service.file("S1", late, "system_error", REASON).appeal.appeal_id
    f = evidence(tmp_path, "outage.txt", "the rating pad clock was 3 days off")
    with pytest.raises(PermissionDenied, match="only an admin"):
        w.service.reopen("S1", aid, "The pad clock was wrong", [f])
    a = w.service.reopen("A1", aid, "Pad clock was wrong; filing was on time", [f])
    assert a.claims_rating and a.state is State.REOPENED
    ineligible(w, "S1", late, "already_appealed")


def test_an_ineligible_filing_cannot_be_reopened_over_another_appeal(
    w: AppealWorld, tmp_path: Path
) -> None:
    rid = w.rating()
    first = w.service.file("S1", rid, "disagree_with_score", REASON).appeal.appeal_id
    w.service.file("S1", rid, "system_error", REASON)
    with pytest.raises(PolicyViolation, match="already contests"):
        w.service.reopen("A1", first, "Reopen the first one", [evidence(tmp_path, "x", "x")])


# -- evidence, verification, context -------------------------------------------------------


def test_evidence_is_content_addressed_and_checked(w: AppealWorld, tmp_path: Path) -> None:
    a = evidence(tmp_path, "a.txt", "same bytes")
    b = evidence(tmp_path, "b.txt", "same bytes")
    c = evidence(tmp_path, "c.txt", "other bytes")
    res = w.service.file("S1", w.rating(), "system_error", REASON, [a, b, c])
    files = w.service.evidence_files(res.appeal)
    assert len(files) == 2
    assert all(f["on_disk"] == "ok" for f in files)
    folder = w.settings.home / "evidence"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f["sha256"] for f in files)
    stored = folder / files[0]["sha256"]
    stored.chmod(0o644)
    stored.write_text("tampered")
    (folder / files[1]["sha256"]).unlink()
    problems = w.service.verify("AU")
    assert any("altered" in p for p in problems)
    assert any("missing" in p for p in problems)


def test_evidence_over_the_size_limit_is_refused(w: AppealWorld, tmp_path: Path) -> None:
    w.service.evidence.max_bytes = 5
    with pytest.raises(InvalidInput, match="limit is 5"):
        w.service.file(
            "S1", w.rating(), "system_error", REASON, [evidence(tmp_path, "a", "123456")]
        )


def test_verify_finds_an_appeal_row_edited_behind_the_ledger(w: AppealWorld) -> None:
    aid = file_and_assign(w, w.rating(), "R1")
    with pytest.raises(PermissionDenied):
        w.service.verify("R1")
    with w.app.ledger.unit_of_work() as uow:
        uow.connection.execute(
            sa.update(at.appeals).where(at.appeals.c.appeal_id == aid).values(state="upheld")
        )
    problems = w.service.verify("AU")
    assert any("stored state upheld, ledger replay gives under_review" in p for p in problems)
    assert any("upheld but rating" in p for p in problems)


def test_reviewers_see_flags_and_the_bombing_cluster(w: AppealWorld) -> None:
    now = w.clock.now()
    target = w.rating(device="pad-X", ip="203.0.113.5", at=now - timedelta(hours=2))
    w.rating(device="pad-X", ip="203.0.113.5", window="W02", at=now - timedelta(days=1))
    w.rating(device="pad-X", ip="203.0.113.5", window="W03", at=now - timedelta(days=2))
    w.rating(device="phone-2", ip="203.0.113.77", at=now - timedelta(days=1, hours=3))
    w.rating(device="pad-X", ip="203.0.113.5", window="W04", at=now - timedelta(days=5))
    w.rating(device="pad-X", ip="203.0.113.5", scores=HIGH, at=now - timedelta(hours=5))
    w.rating(staff="S2", device="pad-X", ip="203.0.113.5", at=now - timedelta(hours=3))
    hold(w, target, now)
    aid = w.service.file("S1", target, "abusive_or_unrelated", REASON).appeal.appeal_id
    ctx = w.service.context(w.service.repo.get(aid))
    assert [f.kind for f in ctx.flags] == ["hold"]
    assert ctx.flags[0].evidence["score"] == 0.97
    c = ctx.cluster
    assert c["low_ratings_nearby"] == 3  # within 3 days, low, on S1
    assert c["same_device"] == 2
    assert c["same_prefix"] == 3
    top = c["groups"][0]
    assert (top["by"], top["ratings"], top["includes_this"]) == ("prefix", 4, True)
    assert ctx.rating.rating_id == target
    assert not any(e.kind.startswith("appeal.") for e in ctx.events)


def hold(w: AppealWorld, rating_id: int, at: datetime) -> Event:
    """A detection hold as the detector writes it: the strongest finding in full, the
    others under ``also``."""
    return w.app.ledger.append(
        Event(
            Kind.HOLD,
            "detector",
            at,
            rating_id,
            Status.HELD,
            (Reason.OUTLIER_BOMBING, Reason.OUTLIER_BURST),
            evidence={
                "detector": "bombing",
                "reason": Reason.OUTLIER_BOMBING,
                "score": 0.97,
                "threshold": 0.9,
                "explanation": "4 low scores from one device",
                "also": [
                    {
                        "detector": "burst",
                        "reason": Reason.OUTLIER_BURST,
                        "score": 5.5,
                        "threshold": 4.0,
                        "explanation": "a burst of ratings at W01",
                    }
                ],
            },
        )
    )


def test_reviewers_see_every_automated_finding(w: AppealWorld) -> None:
    """Detection's holds (every finding, the ones under ``also`` too) and a case opened
    on the rating's window are the automated evidence a reviewer must weigh; a
    reviewer's clearing, another rating's hold and a case on another window are not."""
    now = w.clock.now()
    target = w.rating(window="W01")
    other = w.rating(window="W01")
    hold(w, target, now)
    hold(w, other, now)  # another rating's hold is not this one's evidence
    _, v = w.app.ledger.current(target)
    w.app.ledger.append(
        Event(Kind.CLEAR, "R9", now, target, Status.ACCEPTED, (Reason.REVIEW_CLEARED,)), v
    )
    for window, score in (("W01", 3.2), ("W02", 9.9)):
        w.app.ledger.append(
            Event(
                Kind.CASE_OPENED,
                "detector",
                now,
                subject=f"case:window:{window}",
                reasons=(Reason.OUTLIER_COERCED,),
                evidence={
                    "detector": "coerced",
                    "reason": Reason.OUTLIER_COERCED,
                    "score": score,
                    "threshold": 3.0,
                    "explanation": f"fast straight-lined top scores at {window}",
                },
            )
        )
    aid = w.service.file("S1", target, "abusive_or_unrelated", REASON).appeal.appeal_id
    ctx = w.service.context(w.service.repo.get(aid))

    assert [(e.kind, e.subject) for e in ctx.flags] == [
        ("hold", None),
        ("case.opened", "case:window:W01"),
    ]
    assert [(f.kind, f.detector, f.reason, f.score, f.threshold) for f in ctx.findings] == [
        ("hold", "bombing", "outlier.bombing", 0.97, 0.9),
        ("hold", "burst", "outlier.burst", 5.5, 4.0),
        ("case.opened", "coerced", "outlier.coerced", 3.2, 3.0),
    ]
    assert ctx.findings[1].explanation == "a burst of ratings at W01"
    assert ctx.findings[0].event_id == ctx.flags[0].event_id
    assert [e.kind for e in ctx.events] == ["decision", "hold", "clear"]


def test_a_hold_at_intake_is_automated_evidence(w: AppealWorld) -> None:
    """A rating the hook held (a real-time check) shows each reason as a finding."""
    rid = w.rating(at=w.clock.now() + timedelta(hours=2))  # submitted in the future
    assert w.app.ledger.current(rid)[0] is Status.HELD
    aid = w.service.file("S1", rid, "system_error", REASON).appeal.appeal_id
    ctx = w.service.context(w.service.repo.get(aid))
    assert [e.kind for e in ctx.flags] == ["decision"]
    assert [(f.kind, f.detector, f.reason) for f in ctx.findings] == [
        ("decision", "intake", "time.submitted_in_future")
    ]
    assert ctx.findings[0].explanation == describe(Reason.SUBMITTED_IN_FUTURE)


# -- the staff registry --------------------------------------------------------------------


def test_staff_registry_bootstrap_and_admin_rules(tmp_path: Path) -> None:
    with AppealWorld(tmp_path / "fresh") as w:
        reg = w.registry
        with pytest.raises(PermissionDenied, match="no admin yet"):
            reg.add(None, StaffRecord("S1", frozenset({"staff"})))
        reg.add(None, StaffRecord("A1", frozenset({"admin"}), unit="HQ"))
        ev = w.app.ledger.events_about("person:A1")[0]
        assert (ev.kind, ev.actor) == ("staff.added", "bootstrap")
        with pytest.raises(PermissionDenied, match="nobody is signed in"):
            reg.add(None, StaffRecord("A2", frozenset({"admin"})))
        reg.add("A1", StaffRecord("S1", frozenset({"staff"}), unit="U1", windows=("W01",)))
        with pytest.raises(Conflict, match="--update"):
            reg.add("A1", StaffRecord("S1", frozenset({"staff"})))
        with pytest.raises(PolicyViolation, match="no active admin"):
            reg.add("A1", StaffRecord("A1", frozenset({"staff"})), update=True)
        with pytest.raises(PermissionDenied, match="admin role"):
            reg.add("S1", StaffRecord("S2", frozenset({"staff"})))
        summary = reg.import_records(
            "A1",
            [
                StaffRecord("S1", frozenset({"staff"}), unit="U1", windows=("W01",)),
                StaffRecord("R1", frozenset({"reviewer"}), unit="U2"),
            ],
        )
        assert (summary.added, summary.updated, summary.unchanged) == (("R1",), (), ("S1",))
        with pytest.raises(InvalidInput, match="appears twice"):
            reg.import_records("A1", [StaffRecord("X", frozenset({"staff"}))] * 2)
        assert [p.person_id for p in reg.list("R1")] == ["A1", "R1", "S1"]
        assert [p.person_id for p in reg.list("R1", role="staff", unit="U1")] == ["S1"]
        with pytest.raises(PermissionDenied):
            reg.list("S1")


# -- the service enforces the transition table, state by state -----------------------------

COMMANDS = {
    "assign": (Action.ASSIGN,),
    "request-info": (Action.REQUEST_INFO,),
    "respond": (Action.RESPOND,),
    "decide-uphold": (Action.VOTE_UPHOLD, Action.UPHOLD),
    "decide-reject": (Action.REJECT,),
    "withdraw": (Action.WITHDRAW,),
    "escalate": (Action.ESCALATE,),
    "reopen": (Action.REOPEN,),
}


def into(w: AppealWorld, state: State, tmp_path: Path) -> int:
    """A fresh appeal driven into ``state`` through the service (R1, R2 reviewing)."""
    if state is State.INELIGIBLE:
        return w.service.file("S1", w.rating(scores=HIGH), "system_error", REASON).appeal.appeal_id
    aid = w.service.file("S1", w.rating(), "system_error", REASON).appeal.appeal_id
    if state is State.FILED:
        return aid
    if state is State.WITHDRAWN:
        w.service.withdraw("S1", aid)
        return aid
    w.service.assign("A1", aid, "R1")
    w.service.assign("A1", aid, "R2")
    if state is State.NEEDS_INFO:
        w.service.request_info("R1", aid, "Please send the ticket")
    elif state is State.ESCALATED:
        w.service.escalate("A1", aid, "Supervisor should look")
    elif state is State.UPHELD:
        decide(w, "R1", aid, uphold=True)
        decide(w, "R2", aid, uphold=True)
    elif state in (State.REJECTED, State.REOPENED):
        decide(w, "R1", aid, uphold=False)
        if state is State.REOPENED:
            new = evidence(tmp_path, f"new-{aid}.txt", f"new evidence {aid}")
            w.service.reopen("S1", aid, "New evidence attached", [new])
    assert w.service.repo.get(aid).state is state
    return aid


def attempt(w: AppealWorld, command: str, aid: int, tmp_path: Path) -> object:
    """Run ``command`` as someone who may run it whenever the state allows."""
    s = w.service
    why = "A reason that is long enough"
    if command == "assign":
        return s.assign("A1", aid, "R4")
    if command == "request-info":
        return s.request_info("R1", aid, why)
    if command == "respond":
        return s.respond("S1", aid, why)
    if command in ("decide-uphold", "decide-reject"):
        return s.decide(
            "R1", aid, uphold=command == "decide-uphold", reason=why, used_automated_evidence=False
        )
    if command == "withdraw":
        return s.withdraw("S1", aid, why)
    if command == "escalate":
        return s.escalate("A1", aid, why)
    new = evidence(tmp_path, f"reopen-{aid}.txt", f"fresh {aid}")
    return s.reopen("A1", aid, why, [new])


@pytest.mark.parametrize("state", sorted(State), ids=str)
def test_every_command_in_every_state_follows_the_table(
    w: AppealWorld, state: State, tmp_path: Path
) -> None:
    """Forbidden commands all bounce off one appeal (they write nothing); each allowed
    command gets a fresh appeal in the state and must land where the table says."""
    held = into(w, state, tmp_path)
    before = w.service.repo.get(held)
    events_before = len(w.app.ledger.events_about(before.subject))
    for command, actions in COMMANDS.items():
        allowed = [a for a in actions if (state, a) in TRANSITIONS]
        if not allowed:
            with pytest.raises(TransitionNotAllowed):
                attempt(w, command, held, tmp_path)
            continue
        aid = into(w, state, tmp_path)
        version = w.service.repo.get(aid).version
        after = attempt(w, command, aid, tmp_path)
        assert isinstance(after, Appeal)
        assert after.state in {TRANSITIONS[(state, a)] for a in allowed}, command
        assert after.version == version + 1
    assert w.service.repo.get(held) == before
    assert len(w.app.ledger.events_about(before.subject)) == events_before
