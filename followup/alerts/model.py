"""The low-score alert: states, actions, the one transition table, and the alert record.

Pure: no SQL, no click. The service asks :func:`transition` before every change and
writes the answer to the ledger (one event kind per action, :data:`EVENT_KINDS`).

The loop, for one counted low score::

    open -> acknowledged -> verified -> rectified -> feedback_given -> closed
      |          |              |            |              |
      +----------+--------------+------------+--------------+--> void

``open``: waiting for the window's head to answer (within 24 hours). ``acknowledged``:
answered. ``verified``: the rater was called back (reached or not) and the unit that
handled the service found what happened (a service problem, a misunderstanding, or a
malicious rating, which may link the staff member's appeal). ``rectified``: what was
done. ``feedback_given``: the reply the rater sees on their receipt is written.
``closed``: done. ``void``: the rating stopped counting (voided, held, confirmed ...),
from any state before ``closed``. ``closed`` and ``void`` are final.

Deadlines do not move an alert: a missed one is marked (``mark_overdue``, once per
deadline) and the alert is escalated to the hall supervisor (``escalate``, once), both
in place, in the states where a deadline can still be missed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from integrity.catalogue import Kind
from integrity.errors import PolicyViolation

#: Who the ledger names for what the engine does on its own (opening, voiding, marking
#: deadlines from ``serve``'s background round).
SYSTEM_ACTOR = "alerts"
#: Who the ledger names for ``alerts escalate-overdue`` run with nobody signed in.
OPERATOR_ACTOR = "operator"


class State(enum.StrEnum):
    OPEN = "open"  # waiting for the window's answer
    ACKNOWLEDGED = "acknowledged"  # answered; the unit is looking into it
    VERIFIED = "verified"  # called back; what happened is established
    RECTIFIED = "rectified"  # what was done is recorded
    FEEDBACK_GIVEN = "feedback_given"  # the reply to the rater is written
    CLOSED = "closed"  # done
    VOID = "void"  # the rating stopped counting

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({State.CLOSED, State.VOID})
#: States in which the reply is still to be written (its deadline can be missed).
BEFORE_REPLY = frozenset({State.OPEN, State.ACKNOWLEDGED, State.VERIFIED, State.RECTIFIED})


class Action(enum.StrEnum):
    ACKNOWLEDGE = "acknowledge"
    VERIFY = "verify"
    RECTIFY = "rectify"
    REPLY = "reply"
    CLOSE = "close"
    VOID = "void"  # the engine: the rating stopped counting
    MARK_OVERDUE = "mark_overdue"  # the engine or an operator: a deadline passed
    ESCALATE = "escalate"  # the engine or an operator: to the hall supervisor


class Callback(enum.StrEnum):
    """The call-back to the rater."""

    REACHED = "reached"
    NOT_REACHABLE = "not_reachable"


class Finding(enum.StrEnum):
    """What verification found."""

    SERVICE_PROBLEM = "service_problem"  # the service fell short: rectify it
    MISUNDERSTANDING = "misunderstanding"  # the rater misunderstood; explained to them
    MALICIOUS = "malicious"  # a malicious rating (the staff member may appeal: --appeal)


class Deadline(enum.StrEnum):
    RESPOND = "respond"  # acknowledge within 24 clock hours of opening
    REPLY = "reply"  # the reply written within N working days of opening


S, A = State, Action

# The state machine: (state, action) -> next state. Anything not listed is refused.
TRANSITIONS: Mapping[tuple[State, Action], State] = {
    (S.OPEN, A.ACKNOWLEDGE): S.ACKNOWLEDGED,
    (S.ACKNOWLEDGED, A.VERIFY): S.VERIFIED,
    (S.VERIFIED, A.RECTIFY): S.RECTIFIED,
    (S.RECTIFIED, A.REPLY): S.FEEDBACK_GIVEN,
    (S.FEEDBACK_GIVEN, A.CLOSE): S.CLOSED,
    # the rating stopped counting: from every state but the final ones
    (S.OPEN, A.VOID): S.VOID,
    (S.ACKNOWLEDGED, A.VOID): S.VOID,
    (S.VERIFIED, A.VOID): S.VOID,
    (S.RECTIFIED, A.VOID): S.VOID,
    (S.FEEDBACK_GIVEN, A.VOID): S.VOID,
    # a deadline passed: marked and escalated in place, while the reply is still due
    (S.OPEN, A.MARK_OVERDUE): S.OPEN,
    (S.ACKNOWLEDGED, A.MARK_OVERDUE): S.ACKNOWLEDGED,
    (S.VERIFIED, A.MARK_OVERDUE): S.VERIFIED,
    (S.RECTIFIED, A.MARK_OVERDUE): S.RECTIFIED,
    (S.OPEN, A.ESCALATE): S.OPEN,
    (S.ACKNOWLEDGED, A.ESCALATE): S.ACKNOWLEDGED,
    (S.VERIFIED, A.ESCALATE): S.VERIFIED,
    (S.RECTIFIED, A.ESCALATE): S.RECTIFIED,
}

#: Opening is its own kind (an alert starts ``open``); then one kind per action.
OPENED_KIND = Kind.ALERT_OPENED
EVENT_KINDS: Mapping[Action, Kind] = {
    A.ACKNOWLEDGE: Kind.ALERT_ACKNOWLEDGED,
    A.VERIFY: Kind.ALERT_VERIFIED,
    A.RECTIFY: Kind.ALERT_RECTIFIED,
    A.REPLY: Kind.ALERT_REPLIED,
    A.CLOSE: Kind.ALERT_CLOSED,
    A.VOID: Kind.ALERT_VOIDED,
    A.MARK_OVERDUE: Kind.ALERT_OVERDUE,
    A.ESCALATE: Kind.ALERT_ESCALATED,
}
#: Every ledger event kind an alert's history may hold.
ALERT_KINDS = frozenset({OPENED_KIND, *EVENT_KINDS.values()})

#: What people call each action: the command that performs it.
COMMANDS: Mapping[Action, str] = {
    A.ACKNOWLEDGE: "ack",
    A.VERIFY: "verify",
    A.RECTIFY: "rectify",
    A.REPLY: "reply",
    A.CLOSE: "close",
    A.VOID: "(void: the rating stopped counting)",
    A.MARK_OVERDUE: "escalate-overdue",
    A.ESCALATE: "escalate-overdue",
}
#: The actions people take with a command on one alert.
PERSON_ACTIONS = (A.ACKNOWLEDGE, A.VERIFY, A.RECTIFY, A.REPLY, A.CLOSE)


class TransitionNotAllowed(PolicyViolation):
    """The action is not in the transition table for the alert's current state."""

    def __init__(self, state: State, action: Action, alert_id: int | None = None) -> None:
        self.state = state
        self.action = action
        allowed = ", ".join(allowed_commands(state)) or "nothing (it is final)"
        what = f"alert {alert_id}" if alert_id is not None else "the alert"
        super().__init__(
            f"{what} is {state.value}: cannot {COMMANDS[action]} (allowed now: {allowed})"
        )


def transition(state: State, action: Action, alert_id: int | None = None) -> State:
    """The next state, or :class:`TransitionNotAllowed`."""
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise TransitionNotAllowed(state, action, alert_id) from None


def allowed_commands(state: State) -> tuple[str, ...]:
    """The commands a person may run on an alert in ``state`` (in the loop's order)."""
    return tuple(COMMANDS[a] for a in PERSON_ACTIONS if (state, a) in TRANSITIONS)


@dataclass(frozen=True)
class Alert:
    """One alert with its current state; ``version`` is bumped by every action.

    Times are UTC. ``opened_at`` is when the rating started to count (its receipt live,
    its own ``submitted_at`` on replay, the clearing or reinstating event's time);
    ``respond_by`` = ``opened_at`` + 24 h, ``reply_by`` = the end of the N-th working
    day after its local day (both exclusive: due before that instant). ``via`` says how
    it started to count (``intake``, ``replay``, ``clear``, ``reinstate``);
    ``cause_event_id`` is that status event.
    """

    alert_id: int
    rating_id: int
    window_id: str
    staff_id: str | None
    service_type: str
    channel: str
    state: State
    opened_at: datetime
    respond_by: datetime
    reply_by: datetime
    via: str
    cause_event_id: int
    responded_at: datetime | None = None
    responded_by: str | None = None
    verified_at: datetime | None = None
    callback: Callback | None = None
    finding: Finding | None = None
    appeal_id: int | None = None
    note: str | None = None
    rectified_at: datetime | None = None
    action: str | None = None
    replied_at: datetime | None = None
    reply: str | None = None
    closed_at: datetime | None = None
    voided_at: datetime | None = None
    void_event_id: int | None = None
    respond_overdue_at: datetime | None = None
    reply_overdue_at: datetime | None = None
    escalated_at: datetime | None = None
    escalated_to: str | None = None
    updated_at: datetime | None = None
    version: int = 1

    @property
    def subject(self) -> str:
        return subject(self.alert_id)

    def missed(self, now: datetime) -> tuple[Deadline, ...]:
        """The deadlines passed by ``now`` without the step they ask for."""
        if self.state.final:
            return ()
        out: list[Deadline] = []
        if self.responded_at is None and now >= self.respond_by:
            out.append(Deadline.RESPOND)
        if self.state in BEFORE_REPLY and now >= self.reply_by:
            out.append(Deadline.REPLY)
        return tuple(out)

    def overdue(self, now: datetime) -> bool:
        """Still waiting for a step whose deadline has passed."""
        return bool(self.missed(now))

    def answered_on_time(self) -> bool:
        return self.responded_at is not None and self.responded_at < self.respond_by


def subject(alert_id: int) -> str:
    """The ledger subject of an alert's events: ``alert:<id>``."""
    return f"alert:{alert_id}"


# -- what the rater is told (their receipt) ------------------------------------------------

#: The stage of an alert in plain words, for the public (no names, no ids).
STAGE_WORDS: Mapping[State, str] = {
    S.OPEN: "awaiting the window's answer",
    S.ACKNOWLEDGED: "the window is looking into it",
    S.VERIFIED: "being rectified",
    S.RECTIFIED: "rectified; a reply is being written",
    S.FEEDBACK_GIVEN: "a reply has been written",
    S.CLOSED: "closed: a reply has been written",
}
ESCALATED_WORDS = "passed to the hall's supervisor"


def stage_words(alert: Alert) -> str | None:
    """The stage in plain words; ``None`` for a void alert (the rating does not count)."""
    words = STAGE_WORDS.get(alert.state)
    if words is None:
        return None
    if alert.escalated_at is not None and alert.state in BEFORE_REPLY:
        return f"{words} ({ESCALATED_WORDS})"
    return words
