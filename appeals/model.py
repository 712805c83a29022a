"""The appeal domain: states, actions, the transition table, and the appeal record.

Pure: no SQL, no click. The transition table is the whole state machine; the service
asks :func:`transition` before every change and writes the answer to the ledger.

States: ``filed``, ``ineligible``, ``under_review``, ``needs_info``, ``upheld``,
``rejected``, ``withdrawn``, ``escalated``, ``reopened``. ``upheld``, ``rejected``,
``withdrawn`` and ``ineligible`` are final except through ``reopen``. Every action is
one ledger event kind from :class:`~integrity.catalogue.Kind`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from integrity.catalogue import Kind
from integrity.errors import PolicyViolation


class State(enum.StrEnum):
    FILED = "filed"  # admitted, waiting for a reviewer
    INELIGIBLE = "ineligible"  # recorded, not admitted: the reasons say why
    UNDER_REVIEW = "under_review"  # one or more reviewers assigned
    NEEDS_INFO = "needs_info"  # a reviewer asked the appellant for more
    UPHELD = "upheld"  # the rating is voided
    REJECTED = "rejected"  # the rating stands
    WITHDRAWN = "withdrawn"  # the appellant gave up
    ESCALATED = "escalated"  # overdue or contested: a supervisor looks at it
    REOPENED = "reopened"  # a final appeal opened again with new evidence

    @property
    def final(self) -> bool:
        return self in FINAL_STATES

    @property
    def open(self) -> bool:
        return not self.final


FINAL_STATES = frozenset({State.UPHELD, State.REJECTED, State.WITHDRAWN, State.INELIGIBLE})
OPEN_STATES = frozenset(State) - FINAL_STATES
# Open states whose deadline can still be missed (escalated ones already were).
DEADLINE_STATES = frozenset({State.FILED, State.UNDER_REVIEW, State.NEEDS_INFO, State.REOPENED})


class Action(enum.StrEnum):
    """What a person does to an appeal after filing it."""

    ASSIGN = "assign"
    REQUEST_INFO = "request_info"
    RESPOND = "respond"
    VOTE_UPHOLD = "vote_uphold"  # an uphold vote that does not yet complete the quorum
    UPHOLD = "uphold"  # the uphold vote that completes it
    REJECT = "reject"
    WITHDRAW = "withdraw"
    ESCALATE = "escalate"
    REOPEN = "reopen"


S, A = State, Action

# The state machine: (state, action) -> next state. Anything not listed is forbidden.
TRANSITIONS: Mapping[tuple[State, Action], State] = {
    (S.FILED, A.ASSIGN): S.UNDER_REVIEW,
    (S.FILED, A.WITHDRAW): S.WITHDRAWN,
    (S.FILED, A.ESCALATE): S.ESCALATED,
    (S.UNDER_REVIEW, A.ASSIGN): S.UNDER_REVIEW,
    (S.UNDER_REVIEW, A.REQUEST_INFO): S.NEEDS_INFO,
    (S.UNDER_REVIEW, A.VOTE_UPHOLD): S.UNDER_REVIEW,
    (S.UNDER_REVIEW, A.UPHOLD): S.UPHELD,
    (S.UNDER_REVIEW, A.REJECT): S.REJECTED,
    (S.UNDER_REVIEW, A.WITHDRAW): S.WITHDRAWN,
    (S.UNDER_REVIEW, A.ESCALATE): S.ESCALATED,
    (S.NEEDS_INFO, A.ASSIGN): S.NEEDS_INFO,
    (S.NEEDS_INFO, A.RESPOND): S.UNDER_REVIEW,
    (S.NEEDS_INFO, A.WITHDRAW): S.WITHDRAWN,
    (S.NEEDS_INFO, A.ESCALATE): S.ESCALATED,
    (S.ESCALATED, A.ASSIGN): S.UNDER_REVIEW,
    (S.ESCALATED, A.REQUEST_INFO): S.NEEDS_INFO,
    (S.ESCALATED, A.VOTE_UPHOLD): S.ESCALATED,
    (S.ESCALATED, A.UPHOLD): S.UPHELD,
    (S.ESCALATED, A.REJECT): S.REJECTED,
    (S.ESCALATED, A.WITHDRAW): S.WITHDRAWN,
    (S.REOPENED, A.ASSIGN): S.UNDER_REVIEW,
    (S.REOPENED, A.WITHDRAW): S.WITHDRAWN,
    (S.REOPENED, A.ESCALATE): S.ESCALATED,
    (S.UPHELD, A.REOPEN): S.REOPENED,
    (S.REJECTED, A.REOPEN): S.REOPENED,
    (S.WITHDRAWN, A.REOPEN): S.REOPENED,
    (S.INELIGIBLE, A.REOPEN): S.REOPENED,
}

# Ledger event kinds, one per action; filing is its own kind (to filed or ineligible).
FILED_KIND = Kind.APPEAL_FILED
EVENT_KINDS: Mapping[Action, Kind] = {
    A.ASSIGN: Kind.APPEAL_ASSIGNED,
    A.REQUEST_INFO: Kind.APPEAL_INFO_REQUESTED,
    A.RESPOND: Kind.APPEAL_RESPONDED,
    A.VOTE_UPHOLD: Kind.APPEAL_UPHOLD_VOTE,
    A.UPHOLD: Kind.APPEAL_UPHELD,
    A.REJECT: Kind.APPEAL_REJECTED,
    A.WITHDRAW: Kind.APPEAL_WITHDRAWN,
    A.ESCALATE: Kind.APPEAL_ESCALATED,
    A.REOPEN: Kind.APPEAL_REOPENED,
}
ACTION_OF_KIND: Mapping[str, Action] = {str(k): a for a, k in EVENT_KINDS.items()}
#: Every ledger event kind an appeal's history may hold.
APPEAL_KINDS = frozenset({FILED_KIND, *EVENT_KINDS.values()})


# What people call each action: the command that performs it (three are `decide`).
COMMANDS: Mapping[Action, str] = {
    A.ASSIGN: "assign",
    A.REQUEST_INFO: "request-info",
    A.RESPOND: "respond",
    A.VOTE_UPHOLD: "decide",
    A.UPHOLD: "decide",
    A.REJECT: "decide",
    A.WITHDRAW: "withdraw",
    A.ESCALATE: "escalate",
    A.REOPEN: "reopen",
}


class TransitionNotAllowed(PolicyViolation):
    """The action is not in the transition table for the appeal's current state."""

    def __init__(self, state: State, action: Action, appeal_id: int | None = None) -> None:
        self.state = state
        self.action = action
        allowed = ", ".join(allowed_commands(state)) or "nothing"
        what = f"appeal {appeal_id}" if appeal_id is not None else "the appeal"
        super().__init__(
            f"{what} is {state.value}: cannot {COMMANDS[action]} (allowed now: {allowed})"
        )


def transition(state: State, action: Action, appeal_id: int | None = None) -> State:
    """The next state, or :class:`TransitionNotAllowed`."""
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise TransitionNotAllowed(state, action, appeal_id) from None


def allowed_actions(state: State) -> tuple[Action, ...]:
    return tuple(a for a in Action if (state, a) in TRANSITIONS)


def allowed_commands(state: State) -> tuple[str, ...]:
    """The commands that may act on an appeal in ``state``, in the table's order."""
    return tuple(dict.fromkeys(COMMANDS[a] for a in allowed_actions(state)))


def initial_state(eligible: bool) -> State:
    """The state a filing starts in: admitted, or recorded as ineligible."""
    return State.FILED if eligible else State.INELIGIBLE


@dataclass(frozen=True)
class Vote:
    """One reviewer's decision vote in one review round."""

    reviewer_id: str
    vote: str  # "uphold" or "reject"
    reason: str
    used_automated_evidence: bool
    at: datetime
    round: int


@dataclass(frozen=True)
class EvidenceFile:
    """A file attached to an appeal, stored by its SHA-256 (hex)."""

    sha256: str
    name: str
    size: int  # bytes
    round: int
    added_by: str
    added_at: datetime


@dataclass(frozen=True)
class Appeal:
    """One appeal with its current state; ``version`` is bumped by every action.

    ``reviewers`` and ``votes`` are those of the current review ``round`` (a reopen
    starts a new round); ``past_reviewers`` everyone who reviewed an earlier round.
    ``claims_rating`` is true for the one admitted appeal a rating can have.
    """

    appeal_id: int
    rating_id: int
    appellant_id: str
    appellant_unit: str
    window_id: str
    ground: str
    reason: str
    state: State
    ineligible_reasons: tuple[str, ...]
    round: int
    filed_at: datetime
    round_started_at: datetime
    due_at: datetime | None
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None
    used_automated_evidence: bool | None
    prior_outcome: State | None
    reversals: int
    escalations: int
    reopens: int
    closed_at: datetime | None
    updated_at: datetime
    version: int
    claims_rating: bool
    reviewers: tuple[str, ...] = ()
    votes: tuple[Vote, ...] = ()
    evidence: tuple[EvidenceFile, ...] = ()
    past_reviewers: frozenset[str] = field(default_factory=frozenset)

    @property
    def subject(self) -> str:
        return f"appeal:{self.appeal_id}"

    @property
    def uphold_voters(self) -> frozenset[str]:
        return frozenset(v.reviewer_id for v in self.votes if v.vote == "uphold")

    def overdue(self, now: datetime) -> bool:
        """Open, with a deadline, and the deadline has passed."""
        return self.state.open and self.due_at is not None and now >= self.due_at
