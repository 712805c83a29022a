"""Human review of held ratings: list, show, clear (back to ``accepted``), confirm (``rejected``).

Every action needs a registered person with the ``reviewer`` role and a reason, and
is a ledger event on the rating (``clear`` / ``confirm``, actor = the reviewer) with
optimistic concurrency on the rating's status version. Clearing records the evidence
fingerprints the rating was held for in ``detect_cleared``, so the same evidence never
holds it again; new evidence still can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from integrity.catalogue import Kind, Reason
from integrity.clock import Clock
from integrity.errors import FieldError, InvalidInput, PolicyViolation
from integrity.model import Event, Status
from integrity.people import People, Person
from integrity.ports import Ledger, RatingQuery
from rules import tables as rt

ROLE = "reviewer"
MIN_REASON_CHARS = 5

LIST_COLUMNS = (
    "rating_id",
    "window_id",
    "staff_id",
    "submitted_at",
    "composite",
    "risk",
    "reasons",
    "held_by",
    "explanation",
)
CASE_COLUMNS = ("subject", "window_id", "opened_at", "ratings_held", "explanation")


@dataclass(frozen=True)
class ReviewOutcome:
    rating_id: int
    status: Status
    event_id: int
    cleared_fingerprints: tuple[str, ...] = ()


class ReviewService:
    """Review operations on the ledger, as a person holding the ``reviewer`` role."""

    def __init__(self, ledger: Ledger, people: People, clock: Clock, rule_set_id: str) -> None:
        self.ledger = ledger
        self.people = people
        self.clock = clock
        self.rule_set_id = rule_set_id

    def _reviewer(self, actor: str | None) -> Person:
        return self.people.require(actor, ROLE)

    # -- reading ------------------------------------------------------------------------------

    def list_held(
        self,
        actor: str | None,
        *,
        reason: str | None = None,
        window_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Held ratings, riskiest first, with the finding that held each (if a detector did)."""
        self._reviewer(actor)
        found = self.ledger.find_ratings(
            RatingQuery(
                statuses=(Status.HELD,), reason=reason, window_id=window_id, order="risk",
                limit=limit,
            )
        )  # fmt: skip
        events = self.ledger.events([r.last_event_id for r in found])
        out = []
        for r in found:
            ev = events.get(r.last_event_id)
            out.append(
                {
                    "rating_id": r.rating_id,
                    "window_id": r.window_id,
                    "staff_id": r.staff_id,
                    "submitted_at": r.submitted_at,
                    "composite": r.composite,
                    "risk": r.risk,
                    "reasons": list(r.reasons),
                    "held_by": ev.actor if ev else "",
                    "explanation": ev.evidence.get("explanation", "") if ev else "",
                }
            )
        return out

    def show(self, actor: str | None, rating_id: int) -> dict[str, Any]:
        """The rating, its status and risk, every event, and the evidence held / cleared."""
        self._reviewer(actor)
        rating = self.ledger.rating(rating_id)
        events = self.ledger.events_of(rating_id)
        with self.ledger.reading() as conn:
            holds = [
                dict(x)
                for x in conn.execute(
                    sa.select(rt.detect_holds).where(rt.detect_holds.c.rating_id == rating_id)
                ).mappings()
            ]
            cleared = [
                dict(x)
                for x in conn.execute(
                    sa.select(rt.detect_cleared).where(rt.detect_cleared.c.rating_id == rating_id)
                ).mappings()
            ]
        flags = [
            f
            for e in events
            if e.kind == Kind.HOLD
            for f in [dict(e.evidence), *e.evidence.get("also", [])]
        ]
        return {
            "rating": rating,
            "events": events,
            "flags": flags,
            "holds": holds,
            "cleared": cleared,
        }

    def cases(self, actor: str | None) -> list[dict[str, Any]]:
        """Window-level findings (coerced high scores) opened for review."""
        self._reviewer(actor)
        with self.ledger.reading() as conn:
            rows = [
                dict(x)
                for x in conn.execute(
                    sa.select(rt.detect_cases).order_by(rt.detect_cases.c.opened_at)
                ).mappings()
            ]
        events = self.ledger.events([x["event_id"] for x in rows])
        for row in rows:
            ev = events.get(row["event_id"])
            row["explanation"] = ev.evidence.get("explanation", "") if ev else ""
        return rows

    # -- deciding -----------------------------------------------------------------------------

    def clear(self, actor: str | None, rating_id: int, reason: str) -> ReviewOutcome:
        """Held -> accepted; the evidence it was held for is never used on it again."""
        return self._decide(actor, rating_id, reason, clear=True)

    def confirm(self, actor: str | None, rating_id: int, reason: str) -> ReviewOutcome:
        """Held -> rejected (the hold stands); the reasons it was held for are kept."""
        return self._decide(actor, rating_id, reason, clear=False)

    def _decide(
        self, actor: str | None, rating_id: int, reason: str, *, clear: bool
    ) -> ReviewOutcome:
        person = self._reviewer(actor)
        reason = (reason or "").strip()
        if len(reason) < MIN_REASON_CHARS:
            raise InvalidInput(
                [FieldError("reason", f"say why, in at least {MIN_REASON_CHARS} characters")],
                what="review",
            )
        status, version = self.ledger.current(rating_id)
        if status is not Status.HELD:
            raise PolicyViolation(
                f"rating {rating_id} is {status.value}, not held: nothing to review"
            )
        now = self.clock.now()
        with self.ledger.unit_of_work() as uow:
            conn = uow.connection
            state = uow.states([rating_id]).get(rating_id)
            codes = list(state.reasons) if state else []
            fps = [
                str(f)
                for (f,) in conn.execute(
                    sa.select(rt.detect_holds.c.fingerprint).where(
                        rt.detect_holds.c.rating_id == rating_id
                    )
                )
            ]
            ev = Event(
                kind=Kind.CLEAR if clear else Kind.CONFIRM,
                actor=person.person_id,
                at=now,
                rating_id=rating_id,
                status=Status.ACCEPTED if clear else Status.REJECTED,
                reasons=(Reason.REVIEW_CLEARED,) if clear else (*codes, Reason.REVIEW_CONFIRMED),
                rule_set_id=self.rule_set_id,
                evidence={
                    "reason": reason,
                    "reviewed_reasons": codes,
                    "fingerprints": fps,
                },
            )
            written = uow.append(ev, version)
            if clear and fps:
                done = {
                    str(f)
                    for (f,) in conn.execute(
                        sa.select(rt.detect_cleared.c.fingerprint).where(
                            rt.detect_cleared.c.rating_id == rating_id
                        )
                    )
                }
                rows = [
                    {
                        "rating_id": rating_id,
                        "fingerprint": f,
                        "cleared_by": person.person_id,
                        "cleared_at": now,
                        "event_id": written.event_id,
                    }
                    for f in fps
                    if f not in done
                ]
                if rows:
                    conn.execute(rt.detect_cleared.insert(), rows)
        return ReviewOutcome(
            rating_id,
            ev.status or Status.HELD,
            int(written.event_id or 0),
            tuple(fps) if clear else (),
        )
