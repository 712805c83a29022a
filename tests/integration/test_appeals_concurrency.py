"""Races: two reviewers deciding one appeal at the same moment, and two staff filing
about one rating at the same moment, on PostgreSQL and on SQLite. One wins cleanly;
the other gets a clear Conflict (deciding) or is recorded as ineligible (filing); the
ledger stays whole. A barrier inside the service (after each thread has read, before
it writes) makes the race certain rather than likely.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from appeals_factories import AppealWorld
from factories import backend_url

from appeals.model import State
from appeals.service import AppealService
from integrity.errors import Conflict
from integrity.model import Status

REASON = "Checked the ticket and the comment against the service record"


def _world(url: str | None, tmp_path: Path) -> AppealWorld:
    world = AppealWorld(tmp_path / "home", url)
    world.person("S1", "staff", unit="U1", windows=("W01",))
    world.person("S3", "staff", unit="U1", windows=("W01",))
    for r, unit in (("R1", "U2"), ("R2", "U3"), ("R4", "U4")):
        world.person(r, "reviewer", unit=unit)
    world.person("A1", "admin", unit="HQ")
    return world


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def bw(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppealWorld]:
    world = _world(backend_url(request, tmp_path), tmp_path)
    yield world
    world.close()


def gate(svc: AppealService, method: str, barrier: threading.Barrier, before: bool = False) -> None:
    """Make the first call of ``svc.repo.<method>`` wait for the other thread (after the
    call, or ``before`` it)."""
    original = getattr(svc.repo, method)
    first = [True]

    def gated(*args: Any, **kwargs: Any) -> Any:
        if before and first[0]:
            first[0] = False
            barrier.wait(timeout=20)
        result = original(*args, **kwargs)
        if first[0]:
            first[0] = False
            barrier.wait(timeout=20)
        return result

    setattr(svc.repo, method, gated)


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads at once; each result is a value or the exception raised."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as err:
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_two_reviewers_deciding_at_once_one_wins_the_other_gets_a_conflict(
    bw: AppealWorld,
) -> None:
    """On PostgreSQL the loser's UPDATE waits for the winner's row lock, then finds a new
    version; on SQLite it waits for the write lock, then does the same."""
    w = bw
    for _ in range(4):
        rid = w.rating()
        aid = w.service.file("S1", rid, "abusive_or_unrelated", REASON).appeal.appeal_id
        for r in ("R1", "R2", "R4"):
            w.service.assign("A1", aid, r)
        w.service.decide("R1", aid, uphold=True, reason=REASON, used_automated_evidence=False)

        barrier = threading.Barrier(2)
        upholder, rejecter = w.fresh_service(), w.fresh_service()
        gate(upholder, "get", barrier)
        gate(rejecter, "get", barrier)
        results = race(
            partial(
                upholder.decide,
                "R2",
                aid,
                uphold=True,
                reason=REASON,
                used_automated_evidence=True,
            ),
            partial(
                rejecter.decide,
                "R4",
                aid,
                uphold=False,
                reason=REASON,
                used_automated_evidence=False,
            ),
        )
        conflicts = [r for r in results if isinstance(r, Conflict)]
        wins = [r for r in results if not isinstance(r, Exception)]
        assert len(wins) == 1 and len(conflicts) == 1, results
        msg = str(conflicts[0])
        assert f"appeal {aid} changed meanwhile" in msg
        assert "someone acted first" in msg and "\n" not in msg

        final = w.service.repo.get(aid)
        assert final.state is wins[0].state
        assert final.state in (State.UPHELD, State.REJECTED)
        assert len(final.votes) == 2  # R1's earlier vote and the winner's
        events = w.app.ledger.events_about(f"appeal:{aid}")
        decisions = [e for e in events if e.kind in ("appeal.upheld", "appeal.rejected")]
        assert len(decisions) == 1
        voids = [e for e in events if e.kind == "void"]
        status, _ = w.app.ledger.current(rid)
        if final.state is State.UPHELD:
            assert len(voids) == 1 and status is Status.VOIDED
        else:
            assert voids == [] and status is Status.ACCEPTED
    assert w.service.verify("A1") == []


def test_two_staff_filing_about_one_rating_at_once_one_is_admitted(bw: AppealWorld) -> None:
    """PostgreSQL: both read "no claim", both insert; the partial unique index on admitted
    appeals decides and the loser is recorded as ineligible. SQLite: the filings
    serialise on the write lock and the second sees the first's claim."""
    w = bw
    rid = w.rating(staff=None, window="W01")  # both S1 and S3 serve W01
    barrier = threading.Barrier(2)
    first, second = w.fresh_service(), w.fresh_service()
    pg = w.app.ledger.dialect == "postgresql"
    for svc in (first, second):
        if pg:
            gate(svc, "claim_of", barrier)
        else:
            gate(svc, "lock_person", barrier, before=True)
    results = race(
        lambda: first.file("S1", rid, "wrong_staff_or_window", REASON),
        lambda: second.file("S3", rid, "wrong_staff_or_window", REASON),
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    admitted = [r for r in results if r.admitted]
    refused = [r for r in results if not r.admitted]
    assert len(admitted) == 1 and len(refused) == 1
    assert refused[0].appeal.state is State.INELIGIBLE
    assert [p.code for p in refused[0].ineligible] == ["already_appealed"]
    assert f"appeal {admitted[0].appeal.appeal_id}" in refused[0].ineligible[0].message
    assert w.service.repo.claim_of(rid) == admitted[0].appeal.appeal_id
