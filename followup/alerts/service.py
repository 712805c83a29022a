"""Low-score alerts: a projection of the ledger, and the people who answer them.

**The projection.** Alerts are derived from the ledger's status events, never from the
code that writes them, so the rule "exactly one alert for every counted low score"
holds whichever path a rating takes (live intake, replay, a detection hold, a review
clear or confirm, an appeal upheld or reversed, an audit void, a late ticket): :meth:`AlertService.sync`
reads the events above its cursor in id order, under one lock, and for each status
event of a rating

- that makes it count (``accepted``): opens an alert if it is a low score
  (:meth:`AlertPolicy.is_low`) and has no alert that is not void;
- that makes it stop counting (anything else): voids its alert unless that is closed,
  naming the event (an upheld appeal's ``appeal:<id>``, an audit finding ...),

moving the cursor in the same transaction (a crash on either side loses nothing and
opens nothing twice; a partial unique index allows one alert per rating that is not
void). An alert opens at the time the rating started to count: its ``received_at``
live, its own ``submitted_at`` on replay (the decision's actor is ``hook.replay``),
the clearing or reinstating event's time. On PostgreSQL an event id can commit after
a higher one: ids the cursor passes before they commit are kept as gaps and read again
until they appear (or are older than ``alert_gap_grace_s``: a rolled-back transaction
leaves ids that never appear). The composition root runs it when a process that wrote
the ledger closes, in ``serve``'s background round, and it runs before every listing
and action here.

**People.** The window's head (the service registry) acts on its window's alerts, the
hall supervisor on escalated ones, admins on all; each action is a checked transition
(:mod:`followup.alerts.model`) written with its ledger event at the version read.
Reading: admins (and the operator, nobody signed in) read all; heads their windows';
supervisors their halls' and those of windows with no supervised hall; everyone the
alerts about themselves.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from followup.acting import (
    EscalationRun,
    acting_person,
    deadline_actor,
    in_place_event,
    record_transition,
    run_deadlines,
    text_field,
)
from followup.alerts.model import (
    EVENT_KINDS,
    OPENED_KIND,
    OPERATOR_ACTOR,
    SYSTEM_ACTOR,
    Action,
    Alert,
    Callback,
    Deadline,
    Finding,
    State,
    allowed_commands,
    subject,
    transition,
)
from followup.alerts.policy import MAX_TEXT_CHARS, AlertPolicy
from followup.alerts.store import AL, EMPTY_ROW, AlertFilter, AlertStore, Scope, alert_of
from integrity.access import may_read
from integrity.catalogue import STATUS_KINDS, Kind
from integrity.clock import Clock
from integrity.errors import (
    ConfigError,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from integrity.model import REPLAY_ACTOR, Event, Status, StoredRating
from integrity.people import NOT_SIGNED_IN, People, Person
from integrity.ports import Ledger, LowMark, RatingQuery, StatusChange, UnitOfWork
from integrity.registry import RegistryService, ServiceRegistry

if TYPE_CHECKING:
    from integrity.app import App

#: The lock every writer of alerts takes (the projection, people's actions, deadlines).
LOCK = "followup.alerts"


@dataclass(frozen=True)
class SyncSummary:
    """One run of the projection: status events seen, alerts opened and voided."""

    events: int = 0
    opened: int = 0
    voided: int = 0

    def __add__(self, other: SyncSummary) -> SyncSummary:
        return SyncSummary(
            self.events + other.events, self.opened + other.opened, self.voided + other.voided
        )


@dataclass(frozen=True)
class Addressed:
    """An alert with whom it is addressed to now (the current service registry) and
    whether it is overdue at the time it was read."""

    alert: Alert
    head: str | None
    hall_id: str | None
    supervisor: str | None
    overdue: bool
    missed: tuple[Deadline, ...]


@dataclass(frozen=True)
class AlertDetail:
    """What ``alerts show`` presents: the alert, its ledger history, what may happen next
    and the rating it is about (its comment only for readers of comments)."""

    addressed: Addressed
    history: tuple[Event, ...]
    allowed_next: tuple[str, ...]
    rating: StoredRating | None
    show_comment: bool


class AlertService:
    """Low-score alerts to a window's head, answered within 24 hours."""

    def __init__(
        self,
        ledger: Ledger,
        people: People,
        clock: Clock,
        policy: AlertPolicy,
        registry: Callable[[], ServiceRegistry],
        rule_set_id: str,
        store: AlertStore | None = None,
    ) -> None:
        self.ledger = ledger
        self.people = people
        self.clock = clock
        self.policy = policy
        self.registry = registry
        self.rule_set_id = rule_set_id
        self.store = store or AlertStore(ledger)

    @classmethod
    def from_app(cls, app: App) -> AlertService:
        """Wire from an opened instance (the composition root's factory)."""
        policy = AlertPolicy.from_section(
            app.core.section("followup"), app.core.rubric, app.core.calendar, app.core.timezone
        )
        service = cls(
            app.ledger,
            app.people,
            app.clock,
            policy,
            app.get(RegistryService).current,
            app.core.rule_set_id,
        )
        service.check_schema()
        return service

    def check_schema(self) -> None:
        if not self.store.schema_ready():
            raise ConfigError(
                "the database has no alert tables; run `integrity init` to upgrade the schema"
            )

    @property
    def tz(self) -> Any:
        return self.policy.tz

    # -- the projection ---------------------------------------------------------------------

    def sync(self, now: datetime | None = None, rounds: int | None = None) -> SyncSummary:
        """Open and void alerts for the ledger's status events above the cursor (and the
        late ones in its gaps), ``rounds`` batches at most (``None``: until caught up)."""
        now = now or self.clock.now()
        total = SyncSummary()
        if self._idle():
            return total
        done = 0
        while True:
            summary, more = self._sync_batch(now, recheck_gaps=done == 0)
            total += summary
            done += 1
            if not more or (rounds is not None and done >= rounds):
                return total

    def _idle(self) -> bool:
        """Nothing new and no gaps: no need to take the lock (on SQLite that is the
        database's write lock, which intake needs)."""
        with self.ledger.reading() as conn:
            cursor = self.store.cursor(conn)
            gaps = self.store.gaps(conn)
        return cursor is not None and not gaps and (self.ledger.last_event_id() or 0) <= cursor

    def _sync_batch(self, now: datetime, recheck_gaps: bool) -> tuple[SyncSummary, bool]:
        batch = self.policy.sync_batch
        with self.ledger.unit_of_work() as uow:
            uow.lock(LOCK)
            conn = uow.connection
            cursor = self.store.cursor(conn)
            if cursor is None:  # no cursor row (the migration makes one): start at the end
                cursor = self.ledger.last_event_id() or 0
                self.store.start_cursor(conn, cursor, now)
            found: list[tuple[int, str]] = []
            ranges: list[tuple[int, int]] = []  # (after, until) holding what was found
            if recheck_gaps:
                found.extend(self._recheck_gaps(conn, now, ranges))
            heads = self.ledger.event_heads(cursor, batch)
            prev = cursor
            for eid, _ in heads:
                if eid > prev + 1:
                    self.store.add_gap(conn, prev + 1, eid - 1, now)
                prev = eid
            if heads:
                self.store.move_cursor(conn, prev, now)
                ranges.append((cursor, prev))
            found.extend(heads)
            wanted = {eid for eid, kind in found if kind in STATUS_KINDS}
            changes: list[StatusChange] = []
            # of the status changes, only those that can open or void an alert
            # (a change that stops a count matters only to a low rating, whose alert
            # may open in this batch, or to one an alert claims: of a detection run's
            # 41,929 holds on the benchmark ledger, those of low or alerted ratings)
            low = LowMark(
                self.policy.low_score_below,
                self.policy.low_dimension_at_most,
                claims=(AL.name, AL.c.claims_rating.name),
            )
            for after, until in ranges if wanted else ():
                # only what the heads showed: an id committing meanwhile is still a gap
                got = self.ledger.status_changes(after, until - after, until=until, low=low)
                changes.extend(c for c in got if c.event_id in wanted)
            changes.sort(key=lambda c: c.event_id)
            opened, voided = self._project(uow, changes, now) if changes else (0, 0)
        return SyncSummary(len(wanted), opened, voided), len(heads) == batch

    def _recheck_gaps(
        self, conn: Any, now: datetime, ranges: list[tuple[int, int]]
    ) -> list[tuple[int, str]]:
        found: list[tuple[int, str]] = []
        for lo, hi, seen_at in self.store.gaps(conn):
            heads = self.ledger.event_heads(lo - 1, hi - lo + 1, until=hi)
            expired = (now - seen_at).total_seconds() >= self.policy.gap_grace_s
            if not heads and not expired:
                continue
            self.store.drop_gap(conn, lo)
            if not expired:
                for a, b in missing_ranges(lo, hi, [i for i, _ in heads]):
                    self.store.add_gap(conn, a, b, seen_at)
            if heads:
                ranges.append((lo - 1, hi))
            found.extend(heads)
        return found

    def _project(
        self, uow: UnitOfWork, changes: Sequence[StatusChange], now: datetime
    ) -> tuple[int, int]:
        """Open and void alerts for ``changes`` (status events in id order); how many
        were opened and voided."""
        is_low = self.policy.is_low
        # what can matter: low scores that count, and anything that stops a count
        relevant = [
            c
            for c in changes
            if (is_low(c.composite, c.scores) if c.status is Status.ACCEPTED else True)
        ]
        if not relevant:
            return 0, 0
        conn = uow.connection
        claimed = self.store.claiming(conn, [c.rating_id for c in relevant])
        low_ids = sorted({c.rating_id for c in relevant if c.status is Status.ACCEPTED})
        ratings = (
            {r.rating_id: r for r in self.ledger.find_ratings(RatingQuery(ids=low_ids))}
            if low_ids
            else {}
        )
        registry: ServiceRegistry | None = None
        opened = voided = 0
        # alerts to open, written together (a replayed month opens thousands); a void
        # writes them first, so events keep the order of their causes (a change that
        # voids nothing writes nothing: the batch goes on)
        opening: list[tuple[StoredRating, StatusChange]] = []
        waiting: set[int] = set()  # their ratings

        def flush() -> None:
            if opening:
                assert registry is not None
                for alert in self._open_many(uow, opening, registry, now):
                    claimed[alert.rating_id] = alert
                opening.clear()
                waiting.clear()

        # and alerts to void, written together too; each kind is flushed before the
        # other is queued, so the events still come in the order of their causes
        voiding: list[tuple[Alert, StatusChange]] = []

        def flush_voids() -> None:
            if voiding:
                self._void_many(uow, voiding, now)
                voiding.clear()

        for c in relevant:
            if c.status is Status.ACCEPTED:
                r = ratings.get(c.rating_id)
                if (
                    claimed.get(c.rating_id) is None
                    and c.rating_id not in waiting
                    and r is not None
                ):
                    flush_voids()
                    registry = registry or self.registry()
                    opening.append((r, c))
                    waiting.add(c.rating_id)
                    opened += 1
                continue
            if c.rating_id in waiting:
                flush()  # its alert is about to open: open it, then void it
            alert = claimed.get(c.rating_id)
            if alert is not None and not alert.state.final:
                flush()
                voiding.append((alert, c))
                del claimed[c.rating_id]
                voided += 1
        flush_voids()
        flush()
        return opened, voided

    def _open_many(
        self,
        uow: UnitOfWork,
        opening: Sequence[tuple[StoredRating, StatusChange]],
        reg: ServiceRegistry,
        now: datetime,
    ) -> list[Alert]:
        """Open the alert of each ``r``, which started to count with its ``cause``: the
        alert rows in one statement, then their ``alert.opened`` events in one."""
        rows: list[dict[str, Any]] = []
        vias: list[str] = []
        for r, cause in opening:
            if cause.kind == Kind.DECISION:
                via = "replay" if cause.actor == REPLAY_ACTOR else "intake"
                opened_at = r.submitted_at if via == "replay" else cause.at
            else:
                via, opened_at = str(cause.kind), cause.at
            vias.append(via)
            rows.append(
                {
                    "rating_id": r.rating_id,
                    "claims_rating": True,
                    "window_id": r.window_id,
                    "staff_id": r.staff_id,
                    "service_type": r.service_type,
                    "channel": r.channel,
                    "state": State.OPEN.value,
                    "opened_at": opened_at,
                    "respond_by": self.policy.respond_by(opened_at),
                    "reply_by": self.policy.reply_by(opened_at),
                    "via": via[:16],
                    "cause_event_id": cause.event_id,
                    "updated_at": now,
                    "version": 1,
                }
            )
        ids = self.store.insert_many(uow, rows)
        alerts: list[Alert] = []
        events: list[Event] = []
        for (r, cause), row, via, alert_id in zip(opening, rows, vias, ids, strict=True):
            alerts.append(alert_of({**EMPTY_ROW, **row, "alert_id": alert_id}))
            window = reg.window(r.window_id)
            hall = reg.hall_of(r.window_id)
            events.append(
                Event(
                    kind=OPENED_KIND,
                    actor=SYSTEM_ACTOR,
                    at=now,
                    rating_id=r.rating_id,
                    rule_set_id=self.rule_set_id,
                    subject=subject(alert_id),
                    evidence={
                        "alert_id": alert_id,
                        "from": None,
                        "to": State.OPEN.value,
                        "version": 1,
                        "window_id": r.window_id,
                        "staff_id": r.staff_id,
                        "head": window.head if window else None,
                        "hall_id": hall.hall_id if hall else None,
                        "composite": round(r.composite, 6),
                        "via": via,
                        "cause_event_id": cause.event_id,
                        "opened_at": row["opened_at"].isoformat(),
                        "respond_by": row["respond_by"].isoformat(),
                        "reply_by": row["reply_by"].isoformat(),
                    },
                )
            )
        uow.append_many(events)
        return alerts

    def _void_many(
        self, uow: UnitOfWork, voiding: Sequence[tuple[Alert, StatusChange]], now: datetime
    ) -> None:
        """Void each ``alert``, whose rating stopped counting with its ``cause``: the
        alert rows in one statement, then their ``alert.voided`` events in order."""
        moves = [
            (alert, transition(alert.state, Action.VOID, alert.alert_id)) for alert, _ in voiding
        ]
        self.store.update_many(
            uow.connection,
            [
                (
                    alert.alert_id,
                    alert.version,
                    {
                        "state": nxt.value,
                        "claims_rating": False,
                        "voided_at": now,
                        "void_event_id": cause.event_id,
                        "updated_at": now,
                    },
                )
                for (alert, nxt), (_, cause) in zip(moves, voiding, strict=True)
            ],
        )
        uow.append_many(
            [
                self._void_event(alert, nxt, cause, now)
                for (alert, nxt), (_, cause) in zip(moves, voiding, strict=True)
            ]
        )

    def _void_event(self, alert: Alert, nxt: State, cause: StatusChange, now: datetime) -> Event:
        """The ``alert.voided`` event of ``alert``, voided by ``cause``."""
        cause_subject = cause.subject or ""
        evidence: dict[str, Any] = {
            "alert_id": alert.alert_id,
            "from": alert.state.value,
            "to": nxt.value,
            "version": alert.version + 1,
            "cause_event_id": cause.event_id,
            "cause_kind": str(cause.kind),
            "cause_actor": cause.actor,
            "cause_subject": cause.subject,
            "rating_status": cause.status.value,
        }
        if cause_subject.startswith("appeal:"):
            with contextlib.suppress(ValueError):
                evidence["appeal_id"] = int(cause_subject.split(":", 1)[1])
        return Event(
            kind=EVENT_KINDS[Action.VOID],
            actor=SYSTEM_ACTOR,
            at=now,
            rating_id=alert.rating_id,
            reasons=tuple(cause.reasons),
            rule_set_id=self.rule_set_id,
            subject=alert.subject,
            evidence=evidence,
        )

    # -- who is acting, who may read --------------------------------------------------------

    def _person(self, actor: str | None) -> Person:
        """The acting person: signed in, registered and active."""
        return acting_person(self.people, actor, "head")

    def _address(self, a: Alert, reg: ServiceRegistry, now: datetime) -> Addressed:
        window = reg.window(a.window_id)
        hall = reg.hall_of(a.window_id)
        missed = a.missed(now)
        return Addressed(
            alert=a,
            head=window.head if window else None,
            hall_id=hall.hall_id if hall else None,
            supervisor=hall.supervisor if hall else None,
            overdue=bool(missed),
            missed=missed,
        )

    def addressed(self, a: Alert) -> Addressed:
        """``a`` with whom it is addressed to now, and whether it is overdue now."""
        return self._address(a, self.registry(), self.clock.now())

    def _check_may_act(self, person: Person, ad: Addressed) -> None:
        if person.has("admin"):
            return
        pid = person.person_id
        if person.has("head") and ad.head == pid:
            return
        escalated = ad.alert.escalated_at is not None
        if person.has("supervisor") and escalated and ad.supervisor in (None, pid):
            return
        a = ad.alert
        if ad.head is None:
            whom = "the admins (its window has no head in the service registry)"
        else:
            whom = f"{ad.head}, the head of window {a.window_id}"
        later = (
            f"; it was escalated to {ad.supervisor or 'the supervisors'}"
            if escalated
            else "; the hall supervisor acts on it once it is escalated"
        )
        raise PermissionDenied(f"{pid} may not act on alert {a.alert_id}: it is for {whom}{later}")

    def _scope(self, person: Person | None, reg: ServiceRegistry) -> Scope | None:
        """The alerts ``person`` may read (``None``: every alert)."""
        if person is None or person.has("admin"):
            return None
        pid = person.person_id
        heads = (
            frozenset(w.window_id for w in reg.windows.values() if w.head == pid)
            if person.has("head")
            else frozenset()
        )
        windows, outside = heads, None
        if person.has("supervisor"):
            supervised = {h.hall_id for h in reg.halls.values() if h.supervisor is not None}
            mine = {h.hall_id for h in reg.halls.values() if h.supervisor == pid}
            windows = windows | {w.window_id for w in reg.windows.values() if w.hall_id in mine}
            # windows of no supervised hall (or no registry): every supervisor reads them
            outside = frozenset(
                w.window_id for w in reg.windows.values() if w.hall_id in supervised
            )
        return Scope(windows=windows, outside=outside, staff_id=pid, escalated_to=pid)

    def _mine(self, person: Person, reg: ServiceRegistry) -> Scope:
        """Alerts addressed to ``person`` (they head the window, or it was escalated to
        them) or about them (the staff member named)."""
        pid = person.person_id
        heads = frozenset(w.window_id for w in reg.windows.values() if w.head == pid)
        return Scope(windows=heads, staff_id=pid, escalated_to=pid)

    def _check_may_read(self, person: Person | None, ad: Addressed, reg: ServiceRegistry) -> None:
        scope = self._scope(person, reg)
        if scope is None or person is None:
            return
        a = ad.alert
        pid = person.person_id
        visible = (
            a.window_id in scope.windows
            or (scope.outside is not None and a.window_id not in scope.outside)
            or a.staff_id == pid
            or a.escalated_to == pid
        )
        if not visible:
            raise PermissionDenied(
                f"{pid} may not read alert {a.alert_id}: alerts are read by admins, the "
                "window's head, the hall's supervisor and the staff member concerned"
            )

    def _reader(self, actor: str | None) -> Person | None:
        return None if not actor else self._person(actor)

    # -- reading ----------------------------------------------------------------------------

    def listing(
        self,
        actor: str | None,
        *,
        mine: bool = False,
        overdue: bool = False,
        window_id: str | None = None,
        states: Sequence[State] = (),
    ) -> list[Addressed]:
        """The alerts ``actor`` may read (``None``: the operator, all of them), oldest
        first, after bringing the projection up to date."""
        self.sync()
        person = self._reader(actor)
        if mine and person is None:
            raise PermissionDenied("--mine needs you to be signed in: " + NOT_SIGNED_IN)
        reg = self.registry()
        now = self.clock.now()
        scope = self._mine(person, reg) if mine and person else self._scope(person, reg)
        found = self.store.find(
            AlertFilter(
                states=tuple(states),
                window_id=window_id,
                overdue_at=now if overdue else None,
                scope=scope,
            )
        )
        return [self._address(a, reg, now) for a in found]

    def show(self, actor: str | None, alert_id: int) -> AlertDetail:
        self.sync()
        person = self._reader(actor)
        reg = self.registry()
        ad = self._address(self.store.get(alert_id), reg, self.clock.now())
        self._check_may_read(person, ad, reg)
        rating: StoredRating | None
        try:
            rating = self.ledger.rating(ad.alert.rating_id)
        except NotFound:  # pragma: no cover - a foreign key keeps it
            rating = None
        return AlertDetail(
            addressed=ad,
            history=tuple(self.ledger.events_about(subject(alert_id))),
            allowed_next=allowed_commands(ad.alert.state),
            rating=rating,
            show_comment=may_read(person, "comments"),
        )

    # -- acting -----------------------------------------------------------------------------

    def acknowledge(self, actor: str | None, alert_id: int) -> Alert:
        """The window answers the alert (due within ``respond_hours`` of opening)."""
        now = self.clock.now()
        return self._act(
            actor,
            alert_id,
            Action.ACKNOWLEDGE,
            now,
            values=lambda a, pid: {"responded_at": now, "responded_by": pid},
            extra=lambda a: {"on_time": now < a.respond_by, "respond_by": a.respond_by.isoformat()},
        )

    def verify(
        self,
        actor: str | None,
        alert_id: int,
        *,
        reached: bool,
        finding: str,
        note: str,
        appeal_id: int | None = None,
    ) -> Alert:
        """The call-back's outcome and what happened. A malicious finding may link the
        staff member's appeal (its filing must be about this alert's rating)."""
        errors: list[FieldError] = []
        try:
            found = Finding(finding)
        except ValueError:
            errors.append(
                FieldError("finding", f"expected one of {', '.join(f.value for f in Finding)}")
            )
            found = Finding.SERVICE_PROBLEM
        if appeal_id is not None and found is not Finding.MALICIOUS:
            errors.append(FieldError("appeal", "an appeal is linked to a malicious finding only"))
        text, more = self._text("note", note)
        errors += more
        if errors:
            raise InvalidInput(errors, what="verification")
        callback = Callback.REACHED if reached else Callback.NOT_REACHABLE
        if appeal_id is not None:
            self._check_appeal(alert_id, appeal_id)
        now = self.clock.now()
        return self._act(
            actor,
            alert_id,
            Action.VERIFY,
            now,
            values=lambda a, pid: {
                "verified_at": now,
                "callback": callback.value,
                "finding": found.value,
                "appeal_id": appeal_id,
                "note": text,
            },
            extra=lambda a: {
                "callback": callback.value,
                "finding": found.value,
                "appeal_id": appeal_id,
                "note": text,
            },
        )

    def rectify(self, actor: str | None, alert_id: int, action: str) -> Alert:
        """What was done about it."""
        text, errors = self._text("action", action)
        if errors:
            raise InvalidInput(errors, what="rectification")
        now = self.clock.now()
        return self._act(
            actor,
            alert_id,
            Action.RECTIFY,
            now,
            values=lambda a, pid: {"rectified_at": now, "action": text},
            extra=lambda a: {"action": text},
        )

    def reply(self, actor: str | None, alert_id: int, text: str) -> Alert:
        """The reply the rater sees on their receipt (due within ``reply_working_days``).
        It is shown to the public as written, so it may not name the staff member nor
        the ticket."""
        body, errors = self._text("text", text)
        if errors:
            raise InvalidInput(errors, what="reply")
        alert = self.store.get(alert_id)
        errors = self._private_words(alert, body)
        if errors:
            raise InvalidInput(errors, what="reply")
        now = self.clock.now()
        return self._act(
            actor,
            alert_id,
            Action.REPLY,
            now,
            values=lambda a, pid: {"replied_at": now, "reply": body},
            extra=lambda a: {"text": body, "on_time": now < a.reply_by},
        )

    def close(self, actor: str | None, alert_id: int) -> Alert:
        now = self.clock.now()
        return self._act(
            actor,
            alert_id,
            Action.CLOSE,
            now,
            values=lambda a, pid: {"closed_at": now},
            extra=lambda a: {},
        )

    def _act(
        self,
        actor: str | None,
        alert_id: int,
        action: Action,
        now: datetime,
        *,
        values: Callable[[Alert, str], Mapping[str, Any]],
        extra: Callable[[Alert], Mapping[str, Any]],
    ) -> Alert:
        """The one write path of people's actions: check who, check the transition, write
        the row at the version read and its ledger event, in one transaction."""
        self.sync(now)
        person = self._person(actor)
        ad = self._address(self.store.get(alert_id), self.registry(), now)
        self._check_may_act(person, ad)
        a = ad.alert
        nxt = transition(a.state, action, alert_id)
        with self.ledger.unit_of_work() as uow:
            uow.lock(LOCK)
            record_transition(
                uow,
                self.store.update,
                id_key="alert_id",
                item_id=alert_id,
                version=a.version,
                before=a.state.value,
                after=nxt.value,
                now=now,
                kind=EVENT_KINDS[action],
                actor=person.person_id,
                rule_set_id=self.rule_set_id,
                subject=a.subject,
                values=values(a, person.person_id),
                extra=extra(a),
                rating_id=a.rating_id,
            )
        return self.store.get(alert_id)

    def _text(self, field: str, value: str | None) -> tuple[str, list[FieldError]]:
        return text_field(field, value, self.policy.min_text_chars, MAX_TEXT_CHARS)

    def _private_words(self, alert: Alert, text: str) -> list[FieldError]:
        """The reply goes to the public: it may not carry the staff member's id or name
        nor the ticket."""
        lowered = text.casefold()
        found: list[str] = []
        rating = self.ledger.rating(alert.rating_id)
        words = {"the ticket id": rating.ticket_id}
        if alert.staff_id:
            words["the staff member's id"] = alert.staff_id
            with contextlib.suppress(NotFound):
                name = self.people.get(alert.staff_id).name
                if len(name.strip()) >= 2:
                    words["the staff member's name"] = name.strip()
        for what, word in words.items():
            pattern = rf"(?<![0-9a-z]){re.escape(word.casefold())}(?![0-9a-z])"
            if word and re.search(pattern, lowered):
                found.append(what)
        if not found:
            return []
        return [
            FieldError(
                "text",
                "the reply is shown to the rater as written: leave out " + " and ".join(found),
            )
        ]

    def _check_appeal(self, alert_id: int, appeal_id: int) -> None:
        alert = self.store.get(alert_id)
        filed = [
            e
            for e in self.ledger.events_about(f"appeal:{appeal_id}")
            if e.kind == Kind.APPEAL_FILED
        ]
        if not filed:
            raise InvalidInput(
                [FieldError("appeal", f"no appeal {appeal_id}")], what="verification"
            )
        if filed[0].rating_id != alert.rating_id:
            raise InvalidInput(
                [
                    FieldError(
                        "appeal",
                        f"appeal {appeal_id} is about rating {filed[0].rating_id}, not this "
                        f"alert's rating {alert.rating_id}",
                    )
                ],
                what="verification",
            )

    # -- deadlines --------------------------------------------------------------------------

    def escalate_overdue(
        self, actor: str | None, now: datetime | None = None, *, system: bool = False
    ) -> EscalationRun:
        """Mark every deadline passed without its step (one ``alert.overdue`` per alert
        and deadline) and escalate each overdue alert to its hall's supervisor, once
        (``alert.escalated``; no supervisor known: to the admins). Idempotent. Runs as the
        person signed in (admin or supervisor), the operator (nobody), or the engine
        (``system``: ``serve``'s background round)."""
        by = deadline_actor(
            self.people,
            actor,
            system=system,
            system_actor=SYSTEM_ACTOR,
            operator_actor=OPERATOR_ACTOR,
        )
        now = now or self.clock.now()
        self.sync(now)
        reg = self.registry()
        return run_deadlines(
            self.ledger,
            LOCK,
            lambda conn: self.store.deadline_candidates(conn, now),
            lambda uow, a: self._deadlines(uow, a, reg, by, now),
        )

    def _in_place(
        self, a: Alert, action: Action, by: str, now: datetime, version: int, **extra: Any
    ) -> Event:
        """The ledger event of an action that leaves the alert in its state (a deadline
        marked, an escalation): the same evidence skeleton as every alert action."""
        return in_place_event(
            kind=EVENT_KINDS[action],
            actor=by,
            at=now,
            id_key="alert_id",
            item_id=a.alert_id,
            state=a.state.value,
            version=version,
            rule_set_id=self.rule_set_id,
            subject=a.subject,
            extra=extra,
            rating_id=a.rating_id,
        )

    def _deadlines(
        self, uow: UnitOfWork, a: Alert, reg: ServiceRegistry, by: str, now: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        values: dict[str, Any] = {"updated_at": now}
        marked: list[dict[str, Any]] = []
        missed = [
            (d, due)
            for d, due, done in (
                (Deadline.RESPOND, a.respond_by, a.respond_overdue_at),
                (Deadline.REPLY, a.reply_by, a.reply_overdue_at),
            )
            if done is None and d in a.missed(now)
        ]
        version = a.version + 1
        for deadline, due in missed:
            transition(a.state, Action.MARK_OVERDUE, a.alert_id)
            values[f"{deadline.value}_overdue_at"] = now
            ev = uow.append(
                self._in_place(
                    a,
                    Action.MARK_OVERDUE,
                    by,
                    now,
                    version,
                    deadline=deadline.value,
                    due_at=due.isoformat(),
                )
            )
            marked.append(
                {
                    "alert_id": a.alert_id,
                    "rating_id": a.rating_id,
                    "window_id": a.window_id,
                    "deadline": deadline.value,
                    "due_at": due,
                    "event_id": ev.event_id,
                }
            )
        raised: list[dict[str, Any]] = []
        if a.escalated_at is None and (missed or a.respond_overdue_at or a.reply_overdue_at):
            transition(a.state, Action.ESCALATE, a.alert_id)
            hall = reg.hall_of(a.window_id)
            to = hall.supervisor if hall else None
            values.update(escalated_at=now, escalated_to=to)
            ev = uow.append(
                self._in_place(
                    a,
                    Action.ESCALATE,
                    by,
                    now,
                    version,
                    hall_id=hall.hall_id if hall else None,
                    escalated_to=to,
                    deadlines=[d.value for d in a.missed(now)],
                )
            )
            raised.append(
                {
                    "alert_id": a.alert_id,
                    "rating_id": a.rating_id,
                    "window_id": a.window_id,
                    "hall_id": hall.hall_id if hall else None,
                    "escalated_to": to,
                    "event_id": ev.event_id,
                }
            )
        if marked or raised:
            self.store.update(uow.connection, a.alert_id, a.version, values)
        return marked, raised

    def round(self, now: datetime) -> tuple[SyncSummary, EscalationRun]:
        """``serve``'s background round: bring the projection up to date (a bounded number
        of batches), then mark and escalate what missed a deadline."""
        summary = self.sync(now, rounds=10)
        return summary, self.escalate_overdue(None, now, system=True)


def missing_ranges(lo: int, hi: int, present: Sequence[int]) -> list[tuple[int, int]]:
    """The ranges of ``[lo, hi]`` not in ``present`` (sorted ids within it)."""
    out: list[tuple[int, int]] = []
    nxt = lo
    for i in sorted(present):
        if i > nxt:
            out.append((nxt, i - 1))
        nxt = max(nxt, i + 1)
    if nxt <= hi:
        out.append((nxt, hi))
    return out
