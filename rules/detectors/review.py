"""Human review of held ratings: one by one, a window case as a unit, and deadlines.

* **One rating**: ``clear`` (back to ``accepted``) or ``confirm`` (``rejected``), each a
  ledger event on the rating (actor = the reviewer, a written reason) with optimistic
  concurrency on the rating's status version. Clearing records the evidence
  fingerprints the rating was held for in ``detect_cleared``, so the same evidence
  never holds it again; new evidence still can.
* **A window case** (``case:window:<id>``, opened by the coerced-scores detector) as a
  unit: one reasoned decision clears or confirms every rating the case still holds, or
  the part a selector picks (channels, staff members, a ``submitted_at`` range), in ONE
  ledger transaction: a ``clear`` / ``confirm`` status event per rating (through
  ``change_many``, applied only to ratings still ``held`` when written, so a rating a
  reviewer decided meanwhile is not changed twice) and one ``case.reviewed`` event on
  the case with the selector, the counts, the ids changed and the reason. A case's
  ratings are those held with the case's evidence fingerprint (``detect_holds``) and
  not cleared of it. Clearing leaves a rating held that other, uncleared evidence
  holds too (a device farm at a pressed window): the reviewer judged the case, not
  that; such ratings are counted and named, to be reviewed one by one.
* **Deadlines**: a held rating is due ``[review] deadline_working_days`` working days
  (the rule set's ``[calendar]``, in its time zone) after the local day it was held:
  the end of that day, exclusive. A case is due when its oldest open rating is. Items
  past due are *overdue*; ``escalate_overdue`` records one ``review.escalated`` event
  per overdue case and per overdue rating outside any case, addressed to the admins,
  once per item and deadline (``review_escalations``): an item is escalated again only
  after its deadline moved (newer ratings left open in a case, a changed rule set).

Deciding needs the ``reviewer`` role; escalating and listing overdue items the
``reviewer`` or ``admin`` role.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from integrity.calendar import WorkingCalendar, due_day
from integrity.catalogue import Kind, Reason
from integrity.clock import Clock
from integrity.errors import ConfigError, FieldError, InvalidInput, NotFound, PolicyViolation
from integrity.model import CHANNELS, Event, Status, StoredRating
from integrity.people import People, Person, require_any
from integrity.ports import Ledger, RatingQuery
from integrity.sqlkit import id_in
from rules import tables as rt

if TYPE_CHECKING:
    from integrity.app import App

ROLE = "reviewer"
OVERSIGHT_ROLES = ("reviewer", "admin")
MIN_REASON_CHARS = 5
CASE_PREFIX = "case:window:"
RATING_PREFIX = "rating:"

LIST_COLUMNS = (
    "rating_id",
    "window_id",
    "staff_id",
    "submitted_at",
    "composite",
    "risk",
    "reasons",
    "held_by",
    "due",
    "explanation",
)
CASE_COLUMNS = (
    "subject",
    "window_id",
    "held",
    "cleared",
    "confirmed",
    "open",
    "opened_at",
    "due",
    "overdue",
)
OVERDUE_COLUMNS = (
    "item",
    "window_id",
    "ratings",
    "held_since",
    "due",
    "escalated_at",
)


@dataclass(frozen=True)
class ReviewPolicy:
    """The ``[review]`` table of the rule set; every field has a default."""

    deadline_working_days: int = 5  # a held rating is due this many working days after its hold

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> ReviewPolicy:
        """Read ``[review]``; unknown keys and bad values are a :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(
                f"[review]: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        days = section.get("deadline_working_days", cls.deadline_working_days)
        if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
            raise ConfigError("[review].deadline_working_days: expected a positive integer")
        return cls(deadline_working_days=days)


@dataclass(frozen=True)
class ReviewOutcome:
    rating_id: int
    status: Status
    event_id: int
    cleared_fingerprints: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaseSelector:
    """Which of a case's held ratings a decision covers: all of them when empty.

    Every given filter must hold: ``channels`` (any of), ``staff_ids`` (any of; ``""``
    is "names no staff member"), ``submitted_from`` <= submitted_at < ``submitted_to``
    (UTC instants).
    """

    channels: tuple[str, ...] = ()
    staff_ids: tuple[str, ...] = ()
    submitted_from: datetime | None = None
    submitted_to: datetime | None = None

    def check(self) -> None:
        """``InvalidInput`` naming the option when the selector cannot match anything sensible."""
        errors = []
        bad = sorted(set(self.channels) - set(CHANNELS))
        if bad:
            errors.append(
                FieldError(
                    "channel",
                    f"unknown channel(s) {', '.join(bad)}; expected {', '.join(CHANNELS)}",
                )
            )
        if (
            self.submitted_from is not None
            and self.submitted_to is not None
            and self.submitted_from >= self.submitted_to
        ):
            errors.append(FieldError("to", "must be later than --from"))
        if errors:
            raise InvalidInput(errors, what="case selector")

    @property
    def everything(self) -> bool:
        return not (self.channels or self.staff_ids or self.submitted_from or self.submitted_to)

    def matches(self, r: StoredRating) -> bool:
        if self.channels and r.channel not in self.channels:
            return False
        if self.staff_ids and (r.staff_id or "") not in self.staff_ids:
            return False
        if self.submitted_from is not None and r.submitted_at < self.submitted_from:
            return False
        return not (self.submitted_to is not None and r.submitted_at >= self.submitted_to)

    def as_evidence(self) -> dict[str, Any]:
        return {
            "channels": sorted(self.channels),
            "staff_ids": sorted(self.staff_ids),
            "submitted_from": self.submitted_from.isoformat() if self.submitted_from else None,
            "submitted_to": self.submitted_to.isoformat() if self.submitted_to else None,
        }


@dataclass(frozen=True)
class CaseOutcome:
    """What a case decision did (or, with ``event_id`` ``None``, would do)."""

    subject: str
    decision: str  # clear | confirm | preview
    selector: CaseSelector
    selected: int  # open ratings of the case the selector matched
    changed: tuple[int, ...]  # ratings moved by this decision
    left_other_evidence: tuple[int, ...]  # clear only: other evidence still holds them
    skipped: int  # matched, but no longer held when written (decided meanwhile)
    still_held: int  # the case's ratings open after the decision
    event_id: int | None  # the case.reviewed event


@dataclass(frozen=True)
class EscalationRun:
    escalated: tuple[dict[str, Any], ...]
    already: tuple[dict[str, Any], ...]  # overdue, but escalated at this deadline before


@dataclass(frozen=True)
class _Case:
    subject: str
    fingerprint: str
    window_id: str
    opened_at: datetime
    event_id: int
    suspects: int


class ReviewService:
    """Review operations on the ledger, as a person holding the ``reviewer`` role."""

    def __init__(
        self,
        ledger: Ledger,
        people: People,
        clock: Clock,
        rule_set_id: str,
        *,
        tz: ZoneInfo | None = None,
        calendar: WorkingCalendar | None = None,
        policy: ReviewPolicy | None = None,
    ) -> None:
        self.ledger = ledger
        self.people = people
        self.clock = clock
        self.rule_set_id = rule_set_id
        self.tz = tz or ZoneInfo("UTC")
        self.calendar = calendar or WorkingCalendar()
        self.policy = policy or ReviewPolicy()

    @classmethod
    def from_app(cls, app: App) -> ReviewService:
        """Wire from an opened instance (the composition root's factory)."""
        return cls(
            app.ledger,
            app.people,
            app.clock,
            app.core.rule_set_id,
            tz=app.core.timezone,
            calendar=app.core.calendar,
            policy=ReviewPolicy.from_section(app.core.section("review")),
        )

    def _reviewer(self, actor: str | None) -> Person:
        return self.people.require(actor, ROLE)

    def due_at(self, held_at: datetime) -> datetime:
        """When a rating held at ``held_at`` is due (UTC, exclusive)."""
        return self.calendar.due_at(held_at, self.tz, self.policy.deadline_working_days)

    # -- reading ------------------------------------------------------------------------------

    def list_held(
        self,
        actor: str | None,
        *,
        reason: str | None = None,
        window_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Held ratings, riskiest first, with the finding that held each (if a detector
        did) and the review deadline (``due``: the last local day on time)."""
        self._reviewer(actor)
        found = self.ledger.find_ratings(
            RatingQuery(
                statuses=(Status.HELD,), reason=reason, window_id=window_id, order="risk",
                limit=limit,
            )
        )  # fmt: skip
        events = self.ledger.events([r.last_event_id for r in found])
        now = self.clock.now()
        out = []
        for r in found:
            ev = events.get(r.last_event_id)
            due = self.due_at(ev.at) if ev else None
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
                    "held_at": ev.at if ev else None,
                    "due": due_day(due, self.tz),
                    "due_at": due,
                    "overdue": due is not None and now >= due,
                    "explanation": ev.evidence.get("explanation", "") if ev else "",
                }
            )
        return out

    def show(self, actor: str | None, rating_id: int) -> dict[str, Any]:
        """The rating, its status and risk, every event, the evidence held / cleared, and
        (while held) when it was held and is due."""
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
        held_at = due = None
        if rating.status is Status.HELD:
            last = next((e for e in events if e.event_id == rating.last_event_id), None)
            if last is not None:
                held_at, due = last.at, self.due_at(last.at)
        return {
            "rating": rating,
            "events": events,
            "flags": flags,
            "holds": holds,
            "cleared": cleared,
            "held_at": held_at,
            "due_at": due,
            "due": due_day(due, self.tz),
        }

    def _cases(self, conn: Any, subject: str | None = None) -> list[_Case]:
        q = sa.select(rt.detect_cases).order_by(rt.detect_cases.c.opened_at)
        if subject is not None:
            q = q.where(rt.detect_cases.c.subject == subject)
        return [
            _Case(
                subject=str(x["subject"]),
                fingerprint=str(x["fingerprint"]),
                window_id=str(x["window_id"]),
                opened_at=x["opened_at"],
                event_id=int(x["event_id"]),
                suspects=int(x["ratings_held"]),
            )
            for x in conn.execute(q).mappings()
        ]

    def _members(
        self, conn: Any, fingerprints: Sequence[str]
    ) -> tuple[dict[str, set[int]], dict[int, set[str]]]:
        """For each case fingerprint, the ratings it held; for each of those ratings, the
        fingerprints that hold it and were not cleared (its live evidence)."""
        holds = rt.detect_holds.c
        by_fp: dict[str, set[int]] = {fp: set() for fp in fingerprints}
        for part in _chunks(sorted(set(fingerprints)), 500):
            for rid, fp in conn.execute(
                sa.select(holds.rating_id, holds.fingerprint).where(holds.fingerprint.in_(part))
            ):
                by_fp[str(fp)].add(int(rid))
        ids = sorted({r for s in by_fp.values() for r in s})
        live: dict[int, set[str]] = {r: set() for r in ids}
        cl = rt.detect_cleared.c
        if ids:
            dialect = conn.dialect.name
            for rid, fp in conn.execute(
                sa.select(holds.rating_id, holds.fingerprint).where(
                    id_in(dialect, holds.rating_id, ids)
                )
            ):
                live[int(rid)].add(str(fp))
            for rid, fp in conn.execute(
                sa.select(cl.rating_id, cl.fingerprint).where(id_in(dialect, cl.rating_id, ids))
            ):
                live[int(rid)].discard(str(fp))
        return by_fp, live

    def _held_since(self, ratings: Iterable[StoredRating]) -> dict[int, datetime]:
        """When each held rating was held: the time of the event that set its status."""
        rs = [r for r in ratings if r.status is Status.HELD]
        events = self.ledger.events([r.last_event_id for r in rs])
        return {r.rating_id: events[r.last_event_id].at for r in rs if r.last_event_id in events}

    def case_rows(self, actor: str | None) -> list[dict[str, Any]]:
        """Window cases (coerced high scores), oldest first: how many ratings each held,
        how many were cleared, confirmed (voided), how many are still open, when it was
        opened and when its oldest open rating is due."""
        self._reviewer(actor)
        return self._case_rows()

    # kept for callers of the earlier name
    cases = case_rows

    def _case_rows(self) -> list[dict[str, Any]]:
        with self.ledger.reading() as conn:
            cases = self._cases(conn)
            by_fp, live = self._members(conn, [c.fingerprint for c in cases])
        found = self.ledger.find_ratings(RatingQuery(ids=sorted(live))) if live else []
        ratings = {r.rating_id: r for r in found}
        since = self._held_since(ratings.values())
        opened = self.ledger.events([c.event_id for c in cases])
        now = self.clock.now()
        rows = []
        for c in cases:
            members = [ratings[r] for r in sorted(by_fp[c.fingerprint]) if r in ratings]
            cleared = [r for r in members if c.fingerprint not in live[r.rating_id]]
            rest = [r for r in members if c.fingerprint in live[r.rating_id]]
            open_ = [r for r in rest if r.status is Status.HELD]
            due = min((self.due_at(since[r.rating_id]) for r in open_ if r.rating_id in since),
                      default=None)  # fmt: skip
            ev = opened.get(c.event_id)
            rows.append(
                {
                    "subject": c.subject,
                    "window_id": c.window_id,
                    "held": len(members),
                    "cleared": len(cleared),
                    "confirmed": sum(r.status is Status.REJECTED for r in rest),
                    "voided": sum(r.status is Status.VOIDED for r in rest),
                    "open": len(open_),
                    "opened_at": c.opened_at,
                    "suspects": c.suspects,
                    "due": due_day(due, self.tz),
                    "due_at": due,
                    "overdue": due is not None and now >= due,
                    "explanation": ev.evidence.get("explanation", "") if ev else "",
                }
            )
        return rows

    # -- deciding one rating ----------------------------------------------------------------

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
        reason = _written(reason)
        status, version = self.ledger.current(rating_id)
        if status is not Status.HELD:
            raise PolicyViolation(
                f"rating {rating_id} is {status.value}, not held: nothing to review"
            )
        now = self.clock.now()
        with self.ledger.unit_of_work() as uow:
            # SQLite: the write lock before reading, so a case decision committing
            # meanwhile is seen (then the version check refuses)
            uow.lock(f"review:rating:{rating_id}")
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
            ev = _review_event(
                rating_id, codes, clear=clear, actor=person.person_id, at=now,
                rule_set_id=self.rule_set_id,
                evidence={"reason": reason, "reviewed_reasons": codes, "fingerprints": fps},
            )  # fmt: skip
            written = uow.append(ev, version)
            if clear and fps:
                self._record_cleared(conn, {rating_id: fps}, person.person_id, now,
                                     {rating_id: int(written.event_id or 0)})  # fmt: skip
        return ReviewOutcome(
            rating_id,
            ev.status or Status.HELD,
            int(written.event_id or 0),
            tuple(fps) if clear else (),
        )

    @staticmethod
    def _record_cleared(
        conn: Any,
        fps: Mapping[int, Sequence[str]],
        person_id: str,
        at: datetime,
        event_ids: Mapping[int, int],
    ) -> None:
        """Insert the ``detect_cleared`` rows not there yet (same transaction as the events)."""
        cl = rt.detect_cleared.c
        done: set[tuple[int, str]] = set()
        if fps:
            done.update(
                (int(r), str(f))
                for r, f in conn.execute(
                    sa.select(cl.rating_id, cl.fingerprint).where(
                        id_in(conn.dialect.name, cl.rating_id, fps)
                    )
                )
            )
        rows = [
            {
                "rating_id": rid,
                "fingerprint": f,
                "cleared_by": person_id,
                "cleared_at": at,
                "event_id": event_ids[rid],
            }
            for rid in sorted(fps)
            for f in sorted(set(fps[rid]))
            if (rid, f) not in done
        ]
        if rows:
            conn.execute(rt.detect_cleared.insert(), rows)

    # -- deciding a window case -------------------------------------------------------------

    def decide_case(
        self,
        actor: str | None,
        subject: str,
        *,
        clear: bool | None,
        reason: str = "",
        selector: CaseSelector | None = None,
    ) -> CaseOutcome:
        """Clear (``clear=True``) or confirm (``False``) the case's open ratings the
        selector matches, in one transaction; ``None`` previews (writes nothing, needs no
        reason). ``PolicyViolation`` when the selection holds nothing open."""
        person = self._reviewer(actor)
        selector = selector or CaseSelector()
        selector.check()
        subject = case_subject(subject)
        if clear is not None:
            reason = _written(reason)
        with self.ledger.reading() as conn:
            found = self._cases(conn, subject)
            if not found:
                raise NotFound(f"no window case {subject!r} (see `integrity review list --cases`)")
            case = found[0]
            by_fp, _ = self._members(conn, [case.fingerprint])
        members = sorted(by_fp[case.fingerprint])
        stored = {r.rating_id: r for r in self.ledger.find_ratings(RatingQuery(ids=members))}
        picked = [rid for rid in members if rid in stored and selector.matches(stored[rid])]
        if clear is None:
            return self._preview(case, selector, picked, members)
        now = self.clock.now()
        with self.ledger.unit_of_work() as uow:
            # one decision on a case at a time (SQLite: the write lock, taken before reading)
            uow.lock(f"review:{subject}")
            conn = uow.connection
            _, live = self._members(conn, [case.fingerprint])
            states = uow.states(members)
            open_ids = [
                rid
                for rid in members
                if case.fingerprint in live.get(rid, set())
                and (st := states.get(rid)) is not None
                and st.status is Status.HELD
            ]
            open_set = set(open_ids)
            todo = [rid for rid in picked if rid in open_set]
            if not todo:
                raise PolicyViolation(
                    f"{subject}: no held rating of the case matches the selection "
                    f"({len(open_ids)} still held in the case)"
                )
            other = tuple(rid for rid in todo if clear and live[rid] - {case.fingerprint})
            left = set(other)
            events = [
                _review_event(
                    rid, states[rid].reasons, clear=clear, actor=person.person_id, at=now,
                    rule_set_id=self.rule_set_id,
                    evidence={
                        "reason": reason,
                        "case": subject,
                        "reviewed_reasons": list(states[rid].reasons),
                        "fingerprints": sorted(live[rid]),
                    },
                )
                for rid in todo
                if rid not in left
            ]  # fmt: skip
            written = uow.change_many(events, only_if=lambda st: st.status is Status.HELD)
            changed = tuple(sorted(int(ev.rating_id or 0) for ev in written))
            if clear and written:
                self._record_cleared(
                    conn,
                    {
                        int(ev.rating_id or 0): sorted(live[int(ev.rating_id or 0)])
                        for ev in written
                    },
                    person.person_id,
                    now,
                    {int(ev.rating_id or 0): int(ev.event_id or 0) for ev in written},
                )
            still = len(open_ids) - len(changed)
            skipped = len(events) - len(written)
            case_ev = uow.append(
                Event(
                    kind=Kind.CASE_REVIEWED,
                    actor=person.person_id,
                    at=now,
                    subject=subject,
                    reasons=(Reason.REVIEW_CLEARED if clear else Reason.REVIEW_CONFIRMED,),
                    rule_set_id=self.rule_set_id,
                    evidence={
                        "decision": "clear" if clear else "confirm",
                        "reason": reason,
                        "selector": selector.as_evidence(),
                        "fingerprint": case.fingerprint,
                        "selected": len(todo),
                        "changed": len(changed),
                        "rating_ids": list(changed),
                        "left_other_evidence": list(other),
                        "skipped_decided_meanwhile": skipped,
                        "still_held": still,
                    },
                )
            )
        return CaseOutcome(
            subject=subject,
            decision="clear" if clear else "confirm",
            selector=selector,
            selected=len(todo),
            changed=changed,
            left_other_evidence=other,
            skipped=skipped,
            still_held=still,
            event_id=int(case_ev.event_id or 0),
        )

    def _preview(
        self, case: _Case, selector: CaseSelector, picked: list[int], members: list[int]
    ) -> CaseOutcome:
        with self.ledger.reading() as conn:
            _, live = self._members(conn, [case.fingerprint])
        stored = {r.rating_id: r for r in self.ledger.find_ratings(RatingQuery(ids=members))}
        open_ids = [
            rid
            for rid in members
            if rid in stored
            and stored[rid].status is Status.HELD
            and case.fingerprint in live.get(rid, set())
        ]
        open_set = set(open_ids)
        todo = [rid for rid in picked if rid in open_set]
        return CaseOutcome(
            subject=case.subject,
            decision="preview",
            selector=selector,
            selected=len(todo),
            changed=(),
            left_other_evidence=tuple(rid for rid in todo if live[rid] - {case.fingerprint}),
            skipped=0,
            still_held=len(open_ids),
            event_id=None,
        )

    # -- deadlines ----------------------------------------------------------------------------

    def overdue(self, actor: str | None) -> list[dict[str, Any]]:
        """Held ratings and window cases past their review deadline, oldest due first.

        A case is one item (``case:window:<id>``, ``ratings`` = its open ratings past
        due); a held rating outside any open case is an item of its own
        (``rating:<id>``). ``escalated_at`` is set when the item was escalated at its
        current deadline.
        """
        require_any(self.people, actor, OVERSIGHT_ROLES)
        return self._overdue(self.clock.now())

    def _overdue(self, now: datetime) -> list[dict[str, Any]]:
        held = self.ledger.find_ratings(RatingQuery(statuses=(Status.HELD,)))
        since = self._held_since(held)
        by_id = {r.rating_id: r for r in held}
        with self.ledger.reading() as conn:
            cases = self._cases(conn)
            by_fp, live = self._members(conn, [c.fingerprint for c in cases])
        items: list[dict[str, Any]] = []
        in_case: set[int] = set()
        for c in cases:
            open_ = [
                rid
                for rid in sorted(by_fp[c.fingerprint])
                if rid in since and c.fingerprint in live.get(rid, set())
            ]
            in_case.update(open_)
            late = [rid for rid in open_ if self.due_at(since[rid]) <= now]
            if not late:
                continue
            first = min(since[rid] for rid in open_)
            items.append(
                {
                    "item": c.subject,
                    "window_id": c.window_id,
                    "rating_id": None,
                    "ratings": len(late),
                    "open": len(open_),
                    "held_since": first,
                    "due_at": self.due_at(first),
                }
            )
        for rid, at in since.items():
            if rid in in_case or self.due_at(at) > now:
                continue
            items.append(
                {
                    "item": f"{RATING_PREFIX}{rid}",
                    "window_id": by_id[rid].window_id,
                    "rating_id": rid,
                    "ratings": 1,
                    "open": 1,
                    "held_since": at,
                    "due_at": self.due_at(at),
                }
            )
        items.sort(key=lambda x: (x["due_at"], x["held_since"], x["item"]))
        escalated = self._escalations([x["item"] for x in items])
        for x in items:
            x["due"] = due_day(x["due_at"], self.tz)
            x["escalated_at"] = escalated.get((x["item"], x["due_at"]))
        return items

    def _escalations(
        self, items: Sequence[str], conn: Any | None = None
    ) -> dict[tuple[str, datetime], datetime]:
        if conn is None:
            with self.ledger.reading() as own:
                return self._escalations(items, own)
        e = rt.review_escalations.c
        out: dict[tuple[str, datetime], datetime] = {}
        for part in _chunks(sorted(set(items)), 500):
            for item, due, at in conn.execute(
                sa.select(e.item, e.due_at, e.escalated_at).where(e.item.in_(part))
            ):
                out[(str(item), due)] = at
        return out

    def escalate_overdue(self, actor: str | None) -> EscalationRun:
        """One ``review.escalated`` event per overdue item not yet escalated at its current
        deadline, addressed to the active admins, in one transaction. A missed deadline
        escalates; it never clears nor confirms anything by itself."""
        person = require_any(self.people, actor, OVERSIGHT_ROLES)
        now = self.clock.now()
        items = self._overdue(now)
        admins = sorted(p.person_id for p in self.people.all() if p.has("admin"))
        done: list[dict[str, Any]] = []
        already: list[dict[str, Any]] = []
        if not items:
            return EscalationRun((), ())
        with self.ledger.unit_of_work() as uow:
            uow.lock("review:escalate")  # two runs at once escalate each item once
            conn = uow.connection
            seen = self._escalations([x["item"] for x in items], conn)
            rows = []
            for x in items:
                if (x["item"], x["due_at"]) in seen:
                    already.append(x)
                    continue
                ev = uow.append(
                    Event(
                        kind=Kind.REVIEW_ESCALATED,
                        actor=person.person_id,
                        at=now,
                        rating_id=x["rating_id"],
                        subject=x["item"],
                        reasons=(Reason.REVIEW_OVERDUE,),
                        rule_set_id=self.rule_set_id,
                        evidence={
                            "to_role": "admin",
                            "to": admins,
                            "window_id": x["window_id"],
                            "ratings": x["ratings"],
                            "open": x["open"],
                            "held_since": x["held_since"].isoformat(),
                            "due_at": x["due_at"].isoformat(),
                            "deadline_working_days": self.policy.deadline_working_days,
                        },
                    )
                )
                rows.append(
                    {
                        "item": x["item"],
                        "due_at": x["due_at"],
                        "window_id": x["window_id"],
                        "ratings": x["ratings"],
                        "escalated_at": now,
                        "escalated_by": person.person_id,
                        "event_id": ev.event_id,
                    }
                )
                done.append({**x, "escalated_at": now, "event_id": ev.event_id, "to": admins})
            if rows:
                conn.execute(rt.review_escalations.insert(), rows)
        return EscalationRun(tuple(done), tuple(already))


def case_subject(text: str) -> str:
    """``case:window:<id>`` for a case subject or a bare window id."""
    text = (text or "").strip()
    if not text:
        raise InvalidInput([FieldError("subject", "name a case (case:window:<id>)")], what="case")
    return text if text.startswith("case:") else f"{CASE_PREFIX}{text}"


def _written(reason: str | None) -> str:
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON_CHARS:
        raise InvalidInput(
            [FieldError("reason", f"say why, in at least {MIN_REASON_CHARS} characters")],
            what="review",
        )
    return reason


def _review_event(
    rating_id: int,
    codes: Sequence[str],
    *,
    clear: bool,
    actor: str,
    at: datetime,
    rule_set_id: str,
    evidence: Mapping[str, Any],
) -> Event:
    """A reviewer's ``clear`` (accepted, ``review.cleared``) or ``confirm`` (rejected, the
    held reasons kept plus ``review.confirmed``) on one rating."""
    return Event(
        kind=Kind.CLEAR if clear else Kind.CONFIRM,
        actor=actor,
        at=at,
        rating_id=rating_id,
        status=Status.ACCEPTED if clear else Status.REJECTED,
        reasons=(Reason.REVIEW_CLEARED,) if clear else (*codes, Reason.REVIEW_CONFIRMED),
        rule_set_id=rule_set_id,
        evidence=dict(evidence),
    )


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for lo in range(0, len(items), size):
        yield items[lo : lo + size]
