"""Rectification cases and the month's close.

**The close** (:class:`MonthClose`, ``integrity period close YYYY-MM``). In one unit of
work: the month's figures per window and per staff member are computed by the report
service (counted ratings only; the low-score rate with its exact interval) and frozen
into the ``period.closed`` event (the figures and their SHA-256), with the ``periods``
row; every earlier window or staff case still active is checked against its subject's
rate in this month; a case opens for every window and staff member above the mark with
enough counted ratings (carrying an unresolved case of an earlier month); a ``talk``
opens for every window in the bottom ranks in this month and the month before. A
period closes once: again is ``AlreadyExists``. A month that has not ended cannot be
closed. Every later status change to a rating of the month is an *amendment*
(:meth:`MonthClose.amendments`): listed with its ledger event and the figures'
difference, never folded silently into the frozen figures.

**People** (:class:`CaseService`). Admins read and act on every case; the hall's
supervisor on the cases of their halls (and of windows of no supervised hall); a
window's head plans and notes its window's case; a staff member reads their own. With
nobody signed in (the operator, on the database) every case is read and the close may
run. Each action is a checked transition (:mod:`followup.cases.model`) written with
its ledger event at the version read.

**Due dates** (:meth:`CaseService.escalate_overdue`, ``integrity cases escalate-overdue``,
also ``serve``'s background round). An active case past its due date is marked overdue
(``rectification.overdue``, once) and escalated to its hall's supervisor in the current
service registry (``rectification.escalated``, once; no supervisor known: the admins),
its row and both events in one unit of work under the cases' lock. The supervisor it
was escalated to reads and acts on it even if the registry names another one later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
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
from followup.cases.model import (
    ACTIVE_STATES,
    EVENT_KINDS,
    OPENED_KIND,
    OPERATOR_ACTOR,
    OUTCOMES,
    RATE_KINDS,
    SYSTEM_ACTOR,
    Action,
    Case,
    CaseKind,
    State,
    allowed_commands,
    subject,
    transition,
)
from followup.cases.policy import MAX_TEXT_CHARS, CasePolicy, bottom_windows
from followup.cases.store import EMPTY_ROW, CaseFilter, CaseStore, case_of
from integrity.clock import Clock
from integrity.errors import (
    ConfigError,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PolicyViolation,
)
from integrity.model import Event, Status
from integrity.people import People, Person, require_any
from integrity.periods import ClosedPeriod, ClosedPeriods, parse_period
from integrity.ports import Ledger, PeriodStore, RatingQuery, UnitOfWork
from integrity.registry import RegistryService, ServiceRegistry
from integrity.reports import Period, ReportService

if TYPE_CHECKING:
    from integrity.app import App

#: The lock every writer of cases takes (the close, people's actions, due dates).
LOCK = "followup.cases"
#: Who may close a month when signed in (nobody signed in: the operator).
CLOSE_ROLES = ("admin",)
#: The format of the frozen figures in a ``period.closed`` event.
FIGURES_FORMAT = "month-figures/v1"


# -- the month's figures --------------------------------------------------------------------


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def month_figures(reports: ReportService, period: Period, policy: CasePolicy) -> dict[str, Any]:
    """Per window and per staff member of ``period``: ratings, counted, low scores,
    score, low-score rate with its exact 95 % interval, rank (windows: whether in the
    bottom ranks). Floats rounded to 6 places, rows by subject: a canonical document."""
    out: dict[str, Any] = {
        "format": FIGURES_FORMAT,
        "period": period.label,
        "rule": {
            "rectify_low_rate": policy.mark,
            "rectify_min_counted": policy.min_counted,
            "talk_bottom_ranks": policy.talk_bottom_ranks,
        },
    }
    for by in ("window", "staff"):
        rep = reports.report(by, period)
        rows: list[dict[str, Any]] = []
        for r in rep.rows:
            if r.key is None:  # ratings naming no staff member: nobody to rectify
                continue
            rows.append(
                {
                    "subject": r.key,
                    "hall_id": r.hall_id,
                    "ratings": r.ratings,
                    "counted": r.counted,
                    "low_scores": r.low_scores,
                    "score": _round(r.score),
                    "low_score_rate": _round(r.low_score_rate),
                    "low_rate_lo": _round(r.low_rate_lo),
                    "low_rate_hi": _round(r.low_rate_hi),
                    "rank": r.rank,
                }
            )
        rows.sort(key=lambda row: str(row["subject"]))
        if by == "window":
            eligible = {
                str(row["subject"]): float(row["score"])
                for row in rows
                if row["counted"] >= policy.min_counted and row["score"] is not None
            }
            bottom = bottom_windows(eligible, policy.talk_bottom_ranks)
            for row in rows:
                row["bottom"] = row["subject"] in bottom
        out[by] = rows
    return out


def figures_digest(figures: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the figures' canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(figures, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _rows(figures: Mapping[str, Any], kind: str) -> dict[str, Mapping[str, Any]]:
    return {str(r["subject"]): r for r in figures.get(kind, []) or []}


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One earlier case checked at a close: the subject's figures in the closed month."""

    case: Case  # after the check
    outcome: str  # resolved, unresolved, too_few
    counted: int
    low_score_rate: float | None


@dataclass(frozen=True)
class CloseResult:
    """What a month's close did: the period row and event, the frozen figures' digest,
    the cases opened (talks among them) and the earlier cases checked."""

    closed: ClosedPeriod
    figures_sha256: str
    opened: tuple[Case, ...]
    checked: tuple[Check, ...]

    @property
    def period(self) -> str:
        return self.closed.period

    @property
    def cases_opened(self) -> int:
        """Window and staff cases opened (talks are counted apart)."""
        return sum(1 for c in self.opened if c.kind in RATE_KINDS)

    @property
    def talks_opened(self) -> int:
        return sum(1 for c in self.opened if c.kind is CaseKind.TALK)

    def outcomes(self) -> dict[str, int]:
        out = {"resolved": 0, "unresolved": 0, "too_few": 0}
        for c in self.checked:
            out[c.outcome] += 1
        return out


@dataclass(frozen=True)
class Amendment:
    """A status change after the close to a rating of the closed month that changed
    its counted set (``change``: +1 now counts, -1 no longer counts)."""

    event_id: int
    at: datetime
    kind: str
    actor: str
    rating_id: int
    window_id: str
    staff_id: str | None
    before: str | None
    after: str
    change: int
    cause: str | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class FigureChange:
    """A subject whose figures differ now from those frozen at the close."""

    kind: str  # window or staff
    subject: str
    counted_then: int
    counted_now: int
    low_then: int
    low_now: int
    rate_then: float | None
    rate_now: float | None


@dataclass(frozen=True)
class PeriodView:
    """A closed month: when and by whom, its frozen figures and their digest (checked
    against the event), its cases, and the amendments since."""

    closed: ClosedPeriod
    figures: Mapping[str, Any]
    figures_sha256: str
    digest_ok: bool
    cases: tuple[Case, ...]
    amendments: tuple[Amendment, ...]
    changes: tuple[FigureChange, ...]


# -- the close ----------------------------------------------------------------------------


class MonthClose:
    """``integrity period close|show|amendments``: close a month, read a closed one."""

    def __init__(
        self,
        ledger: Ledger,
        people: People,
        clock: Clock,
        policy: CasePolicy,
        periods: PeriodStore,
        reports: ReportService,
        registry: Callable[[], ServiceRegistry],
        rule_set_id: str,
        store: CaseStore | None = None,
        reload: Callable[[], object] | None = None,
    ) -> None:
        self.ledger = ledger
        self.people = people
        self.clock = clock
        self.policy = policy
        self.periods = periods
        self.reports = reports
        self.registry = registry
        self.rule_set_id = rule_set_id
        self.store = store or CaseStore(ledger)
        self.reload = reload

    @classmethod
    def from_app(cls, app: App) -> MonthClose:
        closed = app.get(ClosedPeriods)
        service = cls(
            app.ledger,
            app.people,
            app.clock,
            policy_of(app),
            closed.store,
            app.get(ReportService),
            app.get(RegistryService).current,
            app.core.rule_set_id,
            reload=closed.reload,
        )
        check_schema(service.store)
        return service

    def close(self, actor: str | None, period: str) -> CloseResult:
        """Close ``period`` (``YYYY-MM``) as ``actor`` (an admin; ``None``: the operator):
        see the module's docstring. ``AlreadyExists`` when it is closed;
        ``PolicyViolation`` when the month has not ended."""
        label = parse_period(period)
        by = OPERATOR_ACTOR if not actor else require_any(self.people, actor, CLOSE_ROLES).person_id
        now = self.clock.now()
        month = Period.parse(label, self.policy.tz)
        if now < month.end:
            raise PolicyViolation(
                f"{label} has not ended (it ends {month.end.astimezone(self.policy.tz).isoformat()}): "
                "a month is closed once it is over"
            )
        for done in self.periods.closed():
            if done.period == label:  # checked again under the lock when writing
                raise_closed(done)
        as_of = self.ledger.last_event_id() or 0
        figures = month_figures(self.reports, month, self.policy)
        digest = figures_digest(figures)
        previous = self._frozen(month.previous().label)
        windows, staff = _rows(figures, "window"), _rows(figures, "staff")
        talks = (
            sorted(
                s
                for s, r in windows.items()
                if r.get("bottom") and _rows(previous, "window").get(s, {}).get("bottom")
            )
            if previous is not None
            else []
        )
        opens = {
            CaseKind.WINDOW: sorted(
                s
                for s, r in windows.items()
                if self.policy.opens(r["counted"], r["low_score_rate"])
            ),
            CaseKind.STAFF: sorted(
                s for s, r in staff.items() if self.policy.opens(r["counted"], r["low_score_rate"])
            ),
            CaseKind.TALK: talks,
        }
        reg = self.registry()
        with self.ledger.unit_of_work() as uow:
            closed = self.periods.close(
                uow,
                label,
                at=now,
                actor=by,
                evidence={
                    "figures": figures,
                    "figures_sha256": digest,
                    "as_of_event_id": as_of,
                    "opens": {k.value: v for k, v in opens.items()},
                },
            )
            uow.lock(LOCK)
            conn = uow.connection
            checked: list[Check] = []
            carried: dict[tuple[CaseKind, str], int] = {}
            earlier = self.store.find(
                CaseFilter(
                    kinds=tuple(RATE_KINDS), states=tuple(ACTIVE_STATES), before_period=label
                ),
                conn,
            )
            for old in earlier:
                rows = windows if old.kind is CaseKind.WINDOW else staff
                row = rows.get(old.subject, {})
                check = self._check(uow, old, label, row, closed, now)
                checked.append(check)
                if check.outcome == "unresolved":
                    carried[(old.kind, old.subject)] = old.case_id
            opened: list[Case] = []
            for kind, subjects in opens.items():
                rows = staff if kind is CaseKind.STAFF else windows
                for s in subjects:
                    opened.append(
                        self._open(
                            uow, kind, s, label, rows[s], carried.get((kind, s)), closed, reg, now
                        )
                    )
        if self.reload is not None:
            self.reload()  # the gate holds ratings of the month from now on, in this process
        return CloseResult(closed, digest, tuple(opened), tuple(checked))

    def _frozen(self, label: str) -> Mapping[str, Any] | None:
        """The figures frozen at ``label``'s close (``None``: not closed)."""
        for p in self.periods.closed():
            if p.period == label:
                ev = self.ledger.events([p.event_id]).get(p.event_id)
                figures = ev.evidence.get("figures") if ev is not None else None
                return figures if isinstance(figures, Mapping) else None
        return None

    def _check(
        self,
        uow: UnitOfWork,
        old: Case,
        label: str,
        row: Mapping[str, Any],
        closed: ClosedPeriod,
        now: datetime,
    ) -> Check:
        counted = int(row.get("counted", 0) or 0)
        rate = row.get("low_score_rate")
        outcome = self.policy.check(counted, rate)
        action = {
            "resolved": Action.CHECK_RESOLVED,
            "unresolved": Action.CHECK_UNRESOLVED,
            "too_few": Action.CHECK_TOO_FEW,
        }[outcome]
        nxt = transition(old.state, action, old.case_id)
        values: dict[str, Any] = {"state": nxt.value, "updated_at": now}
        if outcome != "too_few":
            values.update(
                checked_period=label, checked_counted=counted, checked_rate=rate, checked_at=now
            )
        self.store.update(uow.connection, old.case_id, old.version, values)
        uow.append(
            Event(
                kind=EVENT_KINDS[action],
                actor=SYSTEM_ACTOR,
                at=now,
                rule_set_id=self.rule_set_id,
                subject=old.ledger_subject,
                evidence={
                    "case_id": old.case_id,
                    "from": old.state.value,
                    "to": nxt.value,
                    "version": old.version + 1,
                    "outcome": OUTCOMES[action],
                    "period": label,
                    "counted": counted,
                    "low_scores": row.get("low_scores", 0),
                    "low_score_rate": rate,
                    "low_rate_lo": row.get("low_rate_lo"),
                    "low_rate_hi": row.get("low_rate_hi"),
                    "mark": self.policy.mark,
                    "min_counted": self.policy.min_counted,
                    "close_event_id": closed.event_id,
                },
            )
        )
        return Check(self.store.get(old.case_id, uow.connection), OUTCOMES[action], counted, rate)

    def _open(
        self,
        uow: UnitOfWork,
        kind: CaseKind,
        subj: str,
        label: str,
        row: Mapping[str, Any],
        carried_from: int | None,
        closed: ClosedPeriod,
        reg: ServiceRegistry,
        now: datetime,
    ) -> Case:
        due = self.policy.due_at(now)
        hall_id = row.get("hall_id")
        values: dict[str, Any] = {
            "kind": kind.value,
            "subject": subj,
            "hall_id": hall_id,
            "period": label,
            "counted": int(row["counted"]),
            "low_scores": int(row["low_scores"]),
            "low_score_rate": row.get("low_score_rate"),
            "low_rate_lo": row.get("low_rate_lo"),
            "low_rate_hi": row.get("low_rate_hi"),
            "score": row.get("score"),
            "rank": row.get("rank"),
            "mark": self.policy.mark,
            "state": State.OPEN.value,
            "opened_at": now,
            "due_at": due,
            "opened_event_id": closed.event_id,
            "carried_from": carried_from,
            "notes": 0,
            "updated_at": now,
            "version": 1,
        }
        case_id = self.store.insert(uow.connection, values)
        window = reg.window(subj) if kind is not CaseKind.STAFF else None
        hall = reg.halls.get(hall_id) if hall_id else None
        uow.append(
            Event(
                kind=OPENED_KIND,
                actor=SYSTEM_ACTOR,
                at=now,
                rule_set_id=self.rule_set_id,
                subject=subject(case_id),
                evidence={
                    "case_id": case_id,
                    "from": None,
                    "to": State.OPEN.value,
                    "version": 1,
                    "kind": kind.value,
                    "subject": subj,
                    "period": label,
                    "hall_id": hall_id,
                    "head": window.head if window else None,
                    "supervisor": hall.supervisor if hall else None,
                    "counted": values["counted"],
                    "low_scores": values["low_scores"],
                    "low_score_rate": values["low_score_rate"],
                    "low_rate_lo": values["low_rate_lo"],
                    "low_rate_hi": values["low_rate_hi"],
                    "score": values["score"],
                    "rank": values["rank"],
                    "mark": self.policy.mark,
                    "min_counted": self.policy.min_counted,
                    "due_at": due.isoformat(),
                    "carried_from": carried_from,
                    "close_event_id": closed.event_id,
                },
            )
        )
        return case_of({**EMPTY_ROW, **values, "case_id": case_id})

    # -- reading a closed month --------------------------------------------------------------

    def show(self, period: str) -> PeriodView:
        """A closed month (``NotFound`` when it is not closed): see :class:`PeriodView`."""
        label = parse_period(period)
        found = [p for p in self.periods.closed() if p.period == label]
        if not found:
            raise NotFound(f"period {label} is not closed (integrity period close {label})")
        closed = found[0]
        ev = self.ledger.events([closed.event_id])[closed.event_id]
        figures = ev.evidence.get("figures") or {}
        sealed = str(ev.evidence.get("figures_sha256") or "")
        as_of = int(ev.evidence.get("as_of_event_id") or closed.event_id)
        month = Period.parse(label, self.policy.tz)
        amendments = self._amendments(month, as_of)
        now_figures = month_figures(self.reports, month, self.policy)
        return PeriodView(
            closed=closed,
            figures=figures,
            figures_sha256=sealed,
            digest_ok=bool(figures) and figures_digest(figures) == sealed,
            cases=tuple(self.store.find(CaseFilter(period=label))),
            amendments=tuple(amendments),
            changes=tuple(figure_changes(figures, now_figures)),
        )

    def _amendments(self, month: Period, as_of: int) -> list[Amendment]:
        """Status events after ``as_of`` on ratings of ``month`` that moved a rating into
        or out of the counted set, in ledger order.

        ``as_of`` is read before the figures, so a change committed while the close read
        them is listed rather than lost (it may then already be in the frozen figures:
        the figures' difference says). Reads every status event after ``as_of`` (an
        indexed range) and the ratings they touch: the cost grows with what the ledger
        received since the close."""
        touched: set[int] = set()
        after = as_of
        while True:
            batch = self.ledger.status_changes(after, 5000)
            if not batch:
                break
            touched.update(c.rating_id for c in batch)
            after = batch[-1].event_id
        if not touched:
            return []
        ratings = self.ledger.find_ratings(
            RatingQuery(ids=sorted(touched), occurred_from=month.start, occurred_to=month.end)
        )
        out: list[Amendment] = []
        for r in ratings:
            before: Status | None = None
            for e in self.ledger.events_of(r.rating_id):
                if e.status is None or e.event_id is None:
                    continue
                if e.event_id > as_of:
                    change = int(e.status is Status.ACCEPTED) - int(before is Status.ACCEPTED)
                    if change:
                        out.append(
                            Amendment(
                                event_id=e.event_id,
                                at=e.at,
                                kind=str(e.kind),
                                actor=e.actor,
                                rating_id=r.rating_id,
                                window_id=r.window_id,
                                staff_id=r.staff_id,
                                before=before.value if before else None,
                                after=e.status.value,
                                change=change,
                                cause=e.subject,
                                reasons=tuple(e.reasons),
                            )
                        )
                before = e.status
        return sorted(out, key=lambda a: a.event_id)


def figure_changes(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[FigureChange]:
    """Subjects (windows, staff) whose counted ratings or low scores differ between the
    frozen figures and those of now."""
    out: list[FigureChange] = []
    for kind in ("window", "staff"):
        a, b = _rows(then, kind), _rows(now, kind)
        for s in sorted(set(a) | set(b)):
            x, y = a.get(s, {}), b.get(s, {})
            ct, cn = int(x.get("counted", 0) or 0), int(y.get("counted", 0) or 0)
            lt, ln = int(x.get("low_scores", 0) or 0), int(y.get("low_scores", 0) or 0)
            if (ct, lt) != (cn, ln):
                out.append(
                    FigureChange(
                        kind, s, ct, cn, lt, ln, x.get("low_score_rate"), y.get("low_score_rate")
                    )
                )
    return out


def raise_closed(done: ClosedPeriod) -> None:
    from integrity.errors import AlreadyExists

    raise AlreadyExists(
        f"period {done.period} is already closed (by {done.closed_by} at "
        f"{done.closed_at.isoformat()}); later changes to it are amendments "
        f"(integrity period amendments {done.period})"
    )


def policy_of(app: App) -> CasePolicy:
    return CasePolicy.from_section(
        app.core.section("followup"), app.core.calendar, app.core.timezone
    )


def check_schema(store: CaseStore) -> None:
    if not store.schema_ready():
        raise ConfigError(
            "the database has no rectification case tables; run `integrity init` to upgrade "
            "the schema"
        )


# -- people and their cases -------------------------------------------------------------------


@dataclass(frozen=True)
class CaseDetail:
    """What ``cases show`` presents: the case, whom it is for, its ledger history and
    what may happen next."""

    case: Case
    head: str | None
    supervisor: str | None
    overdue: bool
    history: tuple[Event, ...]
    allowed_next: tuple[str, ...]
    carried_into: tuple[int, ...] = field(default=())


class CaseService:
    """``integrity cases list|show|plan|note|close``."""

    def __init__(
        self,
        ledger: Ledger,
        people: People,
        clock: Clock,
        policy: CasePolicy,
        registry: Callable[[], ServiceRegistry],
        rule_set_id: str,
        store: CaseStore | None = None,
    ) -> None:
        self.ledger = ledger
        self.people = people
        self.clock = clock
        self.policy = policy
        self.registry = registry
        self.rule_set_id = rule_set_id
        self.store = store or CaseStore(ledger)

    @classmethod
    def from_app(cls, app: App) -> CaseService:
        service = cls(
            app.ledger,
            app.people,
            app.clock,
            policy_of(app),
            app.get(RegistryService).current,
            app.core.rule_set_id,
        )
        check_schema(service.store)
        return service

    @property
    def tz(self) -> Any:
        return self.policy.tz

    # -- reading ----------------------------------------------------------------------------

    def listing(
        self,
        actor: str | None,
        *,
        period: str | None = None,
        states: Sequence[State] = (),
        kinds: Sequence[CaseKind] = (),
        overdue: bool = False,
    ) -> list[Case]:
        """The cases ``actor`` may read (``None``: the operator, all), by id. Without
        ``kinds``: window and staff cases (talks only when asked for)."""
        label = parse_period(period) if period is not None else None
        person = self._reader(actor)
        reg = self.registry()
        now = self.clock.now()
        found = self.store.find(
            CaseFilter(
                kinds=tuple(kinds) or tuple(sorted(RATE_KINDS)),
                states=tuple(states),
                period=label,
            )
        )
        return [
            c for c in found if self._may_read(person, c, reg) and (not overdue or c.overdue(now))
        ]

    def show(self, actor: str | None, case_id: int) -> CaseDetail:
        person = self._reader(actor)
        reg = self.registry()
        case = self.store.get(case_id)
        if not self._may_read(person, case, reg):
            assert person is not None
            raise PermissionDenied(
                f"{person.person_id} may not read case {case_id}: cases are read by admins, "
                "the hall's supervisor, the window's head and the staff member concerned"
            )
        head, supervisor = self._whom(case, reg)
        later = tuple(
            c.case_id
            for c in self.store.find(CaseFilter(kinds=(case.kind,), subject=case.subject))
            if c.carried_from == case_id
        )
        return CaseDetail(
            case=case,
            head=head,
            supervisor=supervisor,
            overdue=case.overdue(self.clock.now()),
            history=tuple(self.ledger.events_about(subject(case_id))),
            allowed_next=allowed_commands(case.state),
            carried_into=later,
        )

    # -- acting -----------------------------------------------------------------------------

    def plan(self, actor: str | None, case_id: int, text: str, due: date | None = None) -> Case:
        """Write (or revise) the plan; ``due``: a new due day (the end of that local day;
        not before today), else the due date stays."""
        body, errors = self._text("text", text)
        now = self.clock.now()
        due_at: datetime | None = None
        if due is not None:
            today = now.astimezone(self.tz).date()
            if due < today:
                errors.append(FieldError("due", f"{due.isoformat()} is before today ({today})"))
            due_at = datetime.combine(due + timedelta(days=1), time(0), tzinfo=self.tz).astimezone(
                UTC
            )
        if errors:
            raise InvalidInput(errors, what="plan")

        def values(c: Case, pid: str) -> dict[str, Any]:
            out: dict[str, Any] = {"plan": body, "planned_at": now, "planned_by": pid}
            if due_at is not None:
                out["due_at"] = due_at
            return out

        return self._act(
            actor,
            case_id,
            Action.PLAN,
            now,
            values=values,
            extra=lambda c: {
                "plan": body,
                "due_at": (due_at or c.due_at).isoformat(),
                "due_before": c.due_at.isoformat(),
            },
        )

    def note(self, actor: str | None, case_id: int, text: str) -> Case:
        """Add a progress note."""
        body, errors = self._text("text", text)
        if errors:
            raise InvalidInput(errors, what="note")
        now = self.clock.now()
        return self._act(
            actor,
            case_id,
            Action.NOTE,
            now,
            values=lambda c, pid: {"notes": c.notes + 1, "last_note_at": now},
            extra=lambda c: {"text": body, "note": c.notes + 1},
        )

    def close(self, actor: str | None, case_id: int, reason: str) -> Case:
        """Close a case by hand (a supervisor or an admin), with the reason (a talk held,
        the window dissolved, the staff member left ...)."""
        body, errors = self._text("reason", reason)
        if errors:
            raise InvalidInput(errors, what="close")
        now = self.clock.now()
        return self._act(
            actor,
            case_id,
            Action.CLOSE,
            now,
            values=lambda c, pid: {"closed_at": now, "closed_by": pid, "close_reason": body},
            extra=lambda c: {"reason": body},
        )

    def _act(
        self,
        actor: str | None,
        case_id: int,
        action: Action,
        now: datetime,
        *,
        values: Callable[[Case, str], Mapping[str, Any]],
        extra: Callable[[Case], Mapping[str, Any]],
    ) -> Case:
        """The one write path of people's actions: who, the transition, the row at the
        version read and its ledger event, in one transaction."""
        person = self._person(actor)
        reg = self.registry()
        c = self.store.get(case_id)
        self._check_may_act(person, c, reg, action)
        nxt = transition(c.state, action, case_id)
        with self.ledger.unit_of_work() as uow:
            uow.lock(LOCK)
            record_transition(
                uow,
                self.store.update,
                id_key="case_id",
                item_id=case_id,
                version=c.version,
                before=c.state.value,
                after=nxt.value,
                now=now,
                kind=EVENT_KINDS[action],
                actor=person.person_id,
                rule_set_id=self.rule_set_id,
                subject=c.ledger_subject,
                values=values(c, person.person_id),
                extra=extra(c),
            )
        return self.store.get(case_id)

    def _text(self, name: str, value: str | None) -> tuple[str, list[FieldError]]:
        return text_field(name, value, self.policy.min_text_chars, MAX_TEXT_CHARS)

    # -- due dates --------------------------------------------------------------------------

    def escalate_overdue(
        self, actor: str | None, now: datetime | None = None, *, system: bool = False
    ) -> EscalationRun:
        """Mark every active case past its due date overdue (one ``rectification.overdue``
        per case) and escalate it to its hall's supervisor (one ``rectification.escalated``
        per case; no supervisor known: to the admins). Idempotent. Runs as the person
        signed in (admin or supervisor), the operator (nobody), or the engine
        (``system``: ``serve``'s background round)."""
        by = deadline_actor(
            self.people,
            actor,
            system=system,
            system_actor=SYSTEM_ACTOR,
            operator_actor=OPERATOR_ACTOR,
        )
        now = now or self.clock.now()
        reg = self.registry()
        return run_deadlines(
            self.ledger,
            LOCK,
            lambda conn: self.store.deadline_candidates(conn, now),
            lambda uow, c: self._due_date(uow, c, reg, by, now),
        )

    def _in_place(
        self, c: Case, action: Action, by: str, now: datetime, version: int, **extra: Any
    ) -> Event:
        """The ledger event of an action that leaves the case in its state (its due date
        marked, an escalation)."""
        transition(c.state, action, c.case_id)
        return in_place_event(
            kind=EVENT_KINDS[action],
            actor=by,
            at=now,
            id_key="case_id",
            item_id=c.case_id,
            state=c.state.value,
            version=version,
            rule_set_id=self.rule_set_id,
            subject=c.ledger_subject,
            extra={"kind": c.kind.value, "subject": c.subject, **extra},
        )

    def _due_date(
        self, uow: UnitOfWork, c: Case, reg: ServiceRegistry, by: str, now: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        values: dict[str, Any] = {"updated_at": now}
        version = c.version + 1
        due = c.due_at.isoformat()
        marked: list[dict[str, Any]] = []
        row = {"case_id": c.case_id, "kind": c.kind.value, "subject": c.subject}
        if c.overdue_at is None:
            values["overdue_at"] = now
            ev = uow.append(self._in_place(c, Action.MARK_OVERDUE, by, now, version, due_at=due))
            marked.append(
                {**row, "state": c.state.value, "due_at": c.due_at, "event_id": ev.event_id}
            )
        raised: list[dict[str, Any]] = []
        if c.escalated_at is None:
            _, to = self._whom(c, reg)
            values.update(escalated_at=now, escalated_to=to)
            ev = uow.append(
                self._in_place(
                    c,
                    Action.ESCALATE,
                    by,
                    now,
                    version,
                    hall_id=c.hall_id,
                    escalated_to=to,
                    due_at=due,
                )
            )
            raised.append(
                {**row, "hall_id": c.hall_id, "escalated_to": to, "event_id": ev.event_id}
            )
        if marked or raised:
            self.store.update(uow.connection, c.case_id, c.version, values)
        return marked, raised

    def round(self, now: datetime) -> EscalationRun:
        """``serve``'s background round: mark and escalate the cases past their due date."""
        return self.escalate_overdue(None, now, system=True)

    # -- who --------------------------------------------------------------------------------

    def _person(self, actor: str | None) -> Person:
        """The acting person: signed in, registered and active."""
        return acting_person(self.people, actor, "admin")

    def _reader(self, actor: str | None) -> Person | None:
        return None if not actor else self._person(actor)

    def _whom(self, c: Case, reg: ServiceRegistry) -> tuple[str | None, str | None]:
        window = reg.window(c.subject) if c.kind is not CaseKind.STAFF else None
        hall = reg.halls.get(c.hall_id) if c.hall_id else None
        return (window.head if window else None), (hall.supervisor if hall else None)

    def _supervises(self, person: Person, c: Case, reg: ServiceRegistry) -> bool:
        """The hall's supervisor, or any supervisor for a case of no supervised hall."""
        if not person.has("supervisor"):
            return False
        hall = reg.halls.get(c.hall_id) if c.hall_id else None
        return hall is None or hall.supervisor in (None, person.person_id)

    def _escalated_to(self, person: Person, c: Case) -> bool:
        """The supervisor the case was escalated to (whoever supervises the hall now)."""
        return (
            c.escalated_at is not None
            and c.escalated_to == person.person_id
            and person.has("supervisor")
        )

    def _may_read(self, person: Person | None, c: Case, reg: ServiceRegistry) -> bool:
        if person is None or person.has("admin"):
            return True
        pid = person.person_id
        if self._supervises(person, c, reg) or self._escalated_to(person, c):
            return True
        head, _ = self._whom(c, reg)
        if person.has("head") and head == pid:
            return True
        return c.kind is CaseKind.STAFF and c.subject == pid

    def _check_may_act(self, person: Person, c: Case, reg: ServiceRegistry, action: Action) -> None:
        if person.has("admin") or self._supervises(person, c, reg) or self._escalated_to(person, c):
            return
        head, supervisor = self._whom(c, reg)
        pid = person.person_id
        if (
            action is not Action.CLOSE
            and c.kind is CaseKind.WINDOW
            and person.has("head")
            and head == pid
        ):
            return
        who = (
            f"{supervisor}, the supervisor of hall {c.hall_id}" if supervisor else "the supervisors"
        )
        if c.kind is CaseKind.WINDOW and head and action is not Action.CLOSE:
            who += f", {head}, the head of window {c.subject},"
        raise PermissionDenied(
            f"{pid} may not {action.value} case {c.case_id} ({c.kind.value} {c.subject}): it is "
            f"for {who} and the admins"
        )
