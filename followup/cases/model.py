"""The rectification case: kinds, states, actions, the one transition table, the record.

Pure: no SQL, no click. The service asks :func:`transition` before every change and
writes the answer to the ledger (one event kind per action, :data:`EVENT_KINDS`).

A month's close (``integrity period close YYYY-MM``) opens a case for every window and
staff member whose low-score rate is above the rule set's mark with enough counted
ratings (kinds ``window`` and ``staff``), and a ``talk`` for every window in the bottom
ranks two closes running (the hall supervisor talks to the window). Then::

    open -> planned -> in_progress -> resolved     (the next close: the rate fell to the mark)
      |        |            |     \\-> unresolved  (the next close: still above; carried
      |        |            |                       into that close's new case)
      +--------+------------+-------> closed        (closed by hand, with a reason)

``plan`` writes (or revises) the plan and its due date; ``note`` adds a progress note
(a planned case is then ``in_progress``). The check runs at the next close for window
and staff cases only; with too few counted ratings in that month to judge, the case
is left as it is and checked again at the close after (``rectification.checked`` with
outcome ``too_few``). ``resolved``, ``unresolved`` and ``closed`` are final.

A due date passed does not move a case: an active case past ``due_at`` is marked
(``mark_overdue``, once) and escalated to its hall's supervisor (``escalate``, once),
both in place, as the alerts' deadlines are.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from integrity.catalogue import Kind
from integrity.errors import PolicyViolation

#: Who the ledger names for what the engine does on its own (the close's checks, due
#: dates marked from ``serve``'s background round).
SYSTEM_ACTOR = "cases"
#: Who the ledger names for a close or ``escalate-overdue`` run with nobody signed in.
OPERATOR_ACTOR = "operator"


class CaseKind(enum.StrEnum):
    WINDOW = "window"  # a window's low-score rate above the mark
    STAFF = "staff"  # a staff member's low-score rate above the mark
    TALK = "talk"  # a window in the bottom ranks two closes running: a supervisory talk


#: The kinds a month's rate decides (checked at the next close).
RATE_KINDS = frozenset({CaseKind.WINDOW, CaseKind.STAFF})


class State(enum.StrEnum):
    OPEN = "open"  # opened by a close: waiting for a plan
    PLANNED = "planned"  # a plan and its due date are written
    IN_PROGRESS = "in_progress"  # progress notes are being written
    RESOLVED = "resolved"  # checked at the next close: the rate is no longer above the mark
    UNRESOLVED = "unresolved"  # checked at the next close: still above (carried into a new case)
    CLOSED = "closed"  # closed by hand with a reason (a talk held, a window dissolved ...)

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({State.RESOLVED, State.UNRESOLVED, State.CLOSED})
ACTIVE_STATES = frozenset({State.OPEN, State.PLANNED, State.IN_PROGRESS})


class Action(enum.StrEnum):
    PLAN = "plan"
    NOTE = "note"
    CLOSE = "close"  # by hand, with a reason
    CHECK_RESOLVED = "check_resolved"  # the next close: at or below the mark
    CHECK_UNRESOLVED = "check_unresolved"  # the next close: still above the mark
    CHECK_TOO_FEW = "check_too_few"  # the next close: too few counted ratings to judge
    MARK_OVERDUE = "mark_overdue"  # the engine or an operator: the due date passed
    ESCALATE = "escalate"  # the engine or an operator: to the hall supervisor


S, A = State, Action

# The state machine: (state, action) -> next state. Anything not listed is refused.
TRANSITIONS: Mapping[tuple[State, Action], State] = {
    (S.OPEN, A.PLAN): S.PLANNED,
    (S.PLANNED, A.PLAN): S.PLANNED,  # a revised plan
    (S.IN_PROGRESS, A.PLAN): S.IN_PROGRESS,
    (S.OPEN, A.NOTE): S.OPEN,
    (S.PLANNED, A.NOTE): S.IN_PROGRESS,
    (S.IN_PROGRESS, A.NOTE): S.IN_PROGRESS,
    (S.OPEN, A.CLOSE): S.CLOSED,
    (S.PLANNED, A.CLOSE): S.CLOSED,
    (S.IN_PROGRESS, A.CLOSE): S.CLOSED,
    (S.OPEN, A.CHECK_RESOLVED): S.RESOLVED,
    (S.PLANNED, A.CHECK_RESOLVED): S.RESOLVED,
    (S.IN_PROGRESS, A.CHECK_RESOLVED): S.RESOLVED,
    (S.OPEN, A.CHECK_UNRESOLVED): S.UNRESOLVED,
    (S.PLANNED, A.CHECK_UNRESOLVED): S.UNRESOLVED,
    (S.IN_PROGRESS, A.CHECK_UNRESOLVED): S.UNRESOLVED,
    (S.OPEN, A.CHECK_TOO_FEW): S.OPEN,
    (S.PLANNED, A.CHECK_TOO_FEW): S.PLANNED,
    (S.IN_PROGRESS, A.CHECK_TOO_FEW): S.IN_PROGRESS,
    # the due date passed: marked and escalated in place, while the case is active
    (S.OPEN, A.MARK_OVERDUE): S.OPEN,
    (S.PLANNED, A.MARK_OVERDUE): S.PLANNED,
    (S.IN_PROGRESS, A.MARK_OVERDUE): S.IN_PROGRESS,
    (S.OPEN, A.ESCALATE): S.OPEN,
    (S.PLANNED, A.ESCALATE): S.PLANNED,
    (S.IN_PROGRESS, A.ESCALATE): S.IN_PROGRESS,
}

#: Opening is its own kind (a case starts ``open``); then one kind per action (the
#: three outcomes of a check share one kind, the outcome in its evidence).
OPENED_KIND = Kind.RECTIFICATION_OPENED
EVENT_KINDS: Mapping[Action, Kind] = {
    A.PLAN: Kind.RECTIFICATION_PLANNED,
    A.NOTE: Kind.RECTIFICATION_NOTED,
    A.CLOSE: Kind.RECTIFICATION_CLOSED,
    A.CHECK_RESOLVED: Kind.RECTIFICATION_CHECKED,
    A.CHECK_UNRESOLVED: Kind.RECTIFICATION_CHECKED,
    A.CHECK_TOO_FEW: Kind.RECTIFICATION_CHECKED,
    A.MARK_OVERDUE: Kind.RECTIFICATION_OVERDUE,
    A.ESCALATE: Kind.RECTIFICATION_ESCALATED,
}
#: The outcome a check's event records.
OUTCOMES: Mapping[Action, str] = {
    A.CHECK_RESOLVED: "resolved",
    A.CHECK_UNRESOLVED: "unresolved",
    A.CHECK_TOO_FEW: "too_few",
}
#: What people call each action.
COMMANDS: Mapping[Action, str] = {
    A.PLAN: "plan",
    A.NOTE: "note",
    A.CLOSE: "close",
    A.CHECK_RESOLVED: "(the next period close)",
    A.CHECK_UNRESOLVED: "(the next period close)",
    A.CHECK_TOO_FEW: "(the next period close)",
    A.MARK_OVERDUE: "escalate-overdue",
    A.ESCALATE: "escalate-overdue",
}
PERSON_ACTIONS = (A.PLAN, A.NOTE, A.CLOSE)


class TransitionNotAllowed(PolicyViolation):
    """The action is not in the transition table for the case's current state."""

    def __init__(self, state: State, action: Action, case_id: int | None = None) -> None:
        self.state = state
        self.action = action
        allowed = ", ".join(allowed_commands(state)) or "nothing (it is final)"
        what = f"case {case_id}" if case_id is not None else "the case"
        super().__init__(
            f"{what} is {state.value}: cannot {COMMANDS[action]} (allowed now: {allowed})"
        )


def transition(state: State, action: Action, case_id: int | None = None) -> State:
    """The next state, or :class:`TransitionNotAllowed`."""
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise TransitionNotAllowed(state, action, case_id) from None


def allowed_commands(state: State) -> tuple[str, ...]:
    """The commands a person may run on a case in ``state``."""
    return tuple(COMMANDS[a] for a in PERSON_ACTIONS if (state, a) in TRANSITIONS)


@dataclass(frozen=True)
class Case:
    """One case with its current state; ``version`` is bumped by every action.

    ``subject``: the window id (kinds ``window``, ``talk``) or the staff id. ``period``:
    the closed month that opened it, with the subject's figures in it (``counted``,
    ``low_scores``, ``low_score_rate`` and its exact 95 % interval, ``score``, ``rank``
    among windows for a talk), and the mark it was above. ``due_at``: UTC, exclusive.
    ``carried_from``: the unresolved case of the month before it continues.
    ``checked_*``: the next close's check (the month and the subject's figures in it).
    ``overdue_at``: when it was marked overdue (past ``due_at`` while active);
    ``escalated_at``, ``escalated_to``: when and to whom it was escalated (the hall's
    supervisor; ``None`` with ``escalated_at`` set: the admins).
    """

    case_id: int
    kind: CaseKind
    subject: str
    hall_id: str | None
    period: str
    counted: int
    low_scores: int
    low_score_rate: float | None
    low_rate_lo: float | None
    low_rate_hi: float | None
    score: float | None
    rank: int | None
    mark: float
    state: State
    opened_at: datetime
    due_at: datetime
    opened_event_id: int
    carried_from: int | None = None
    plan: str | None = None
    planned_at: datetime | None = None
    planned_by: str | None = None
    notes: int = 0
    last_note_at: datetime | None = None
    checked_period: str | None = None
    checked_counted: int | None = None
    checked_rate: float | None = None
    checked_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    close_reason: str | None = None
    overdue_at: datetime | None = None
    escalated_at: datetime | None = None
    escalated_to: str | None = None
    updated_at: datetime | None = None
    version: int = 1

    @property
    def ledger_subject(self) -> str:
        return subject(self.case_id)

    def overdue(self, now: datetime) -> bool:
        """Still active past its due date."""
        return self.state in ACTIVE_STATES and now >= self.due_at


def subject(case_id: int) -> str:
    """The ledger subject of a case's events: ``rectification:<id>``."""
    return f"rectification:{case_id}"
