"""The appeal state machine: every allowed and every forbidden transition.

The allowed moves are written out here, one literal triple each, and compared with
``appeals.model.TRANSITIONS``: a change to the table must be made twice, on purpose.
Every other (state, action) pair is forbidden.
"""

from __future__ import annotations

import itertools

import pytest

from appeals.model import (
    ACTION_OF_KIND,
    COMMANDS,
    DEADLINE_STATES,
    EVENT_KINDS,
    FINAL_STATES,
    TRANSITIONS,
    Action,
    State,
    TransitionNotAllowed,
    allowed_actions,
    allowed_commands,
    initial_state,
    transition,
)
from integrity.errors import PolicyViolation

S, A = State, Action

#: (state, action) -> next state, as the appeal workflow is specified: 27 allowed moves.
ALLOWED = [
    # filed: admitted, waiting for a reviewer
    (S.FILED, A.ASSIGN, S.UNDER_REVIEW),
    (S.FILED, A.WITHDRAW, S.WITHDRAWN),
    (S.FILED, A.ESCALATE, S.ESCALATED),
    # under_review
    (S.UNDER_REVIEW, A.ASSIGN, S.UNDER_REVIEW),
    (S.UNDER_REVIEW, A.REQUEST_INFO, S.NEEDS_INFO),
    (S.UNDER_REVIEW, A.VOTE_UPHOLD, S.UNDER_REVIEW),
    (S.UNDER_REVIEW, A.UPHOLD, S.UPHELD),
    (S.UNDER_REVIEW, A.REJECT, S.REJECTED),
    (S.UNDER_REVIEW, A.WITHDRAW, S.WITHDRAWN),
    (S.UNDER_REVIEW, A.ESCALATE, S.ESCALATED),
    # needs_info: waiting for the appellant
    (S.NEEDS_INFO, A.ASSIGN, S.NEEDS_INFO),
    (S.NEEDS_INFO, A.RESPOND, S.UNDER_REVIEW),
    (S.NEEDS_INFO, A.WITHDRAW, S.WITHDRAWN),
    (S.NEEDS_INFO, A.ESCALATE, S.ESCALATED),
    # escalated: supervisors look at it; never escalated again
    (S.ESCALATED, A.ASSIGN, S.UNDER_REVIEW),
    (S.ESCALATED, A.REQUEST_INFO, S.NEEDS_INFO),
    (S.ESCALATED, A.VOTE_UPHOLD, S.ESCALATED),
    (S.ESCALATED, A.UPHOLD, S.UPHELD),
    (S.ESCALATED, A.REJECT, S.REJECTED),
    (S.ESCALATED, A.WITHDRAW, S.WITHDRAWN),
    # reopened: a new round, waiting for fresh reviewers
    (S.REOPENED, A.ASSIGN, S.UNDER_REVIEW),
    (S.REOPENED, A.WITHDRAW, S.WITHDRAWN),
    (S.REOPENED, A.ESCALATE, S.ESCALATED),
    # final states: only a reopen leaves them
    (S.UPHELD, A.REOPEN, S.REOPENED),
    (S.REJECTED, A.REOPEN, S.REOPENED),
    (S.WITHDRAWN, A.REOPEN, S.REOPENED),
    (S.INELIGIBLE, A.REOPEN, S.REOPENED),
]
FORBIDDEN = sorted(
    (s, a)
    for s, a in itertools.product(State, Action)
    if (s, a) not in {(x, y) for x, y, _ in ALLOWED}
)


def test_the_table_is_exactly_the_written_out_moves() -> None:
    assert len(ALLOWED) == 27
    assert len({(s, a) for s, a, _ in ALLOWED}) == 27  # no pair listed twice
    assert dict(TRANSITIONS) == {(s, a): t for s, a, t in ALLOWED}


def test_the_workflow_names_exactly_these_states() -> None:
    assert {s.value for s in State} == {
        "filed",
        "ineligible",
        "under_review",
        "needs_info",
        "upheld",
        "rejected",
        "withdrawn",
        "escalated",
        "reopened",
    }
    assert {s.value for s in FINAL_STATES} == {"upheld", "rejected", "withdrawn", "ineligible"}


@pytest.mark.parametrize(("state", "action", "target"), ALLOWED, ids=str)
def test_allowed_transition(state: State, action: Action, target: State) -> None:
    assert TRANSITIONS[(state, action)] is target
    assert transition(state, action) is target
    assert action in allowed_actions(state)


@pytest.mark.parametrize(("state", "action"), FORBIDDEN, ids=str)
def test_forbidden_transition(state: State, action: Action) -> None:
    with pytest.raises(TransitionNotAllowed) as err:
        transition(state, action, appeal_id=7)
    assert isinstance(err.value, PolicyViolation)  # the CLI's exit 1, one line
    msg = str(err.value)
    assert f"appeal 7 is {state.value}: cannot {COMMANDS[action]} (allowed now: " in msg
    assert "\n" not in msg
    assert action not in allowed_actions(state)


def test_the_table_is_complete_and_forbidden_is_its_complement() -> None:
    assert len(ALLOWED) + len(FORBIDDEN) == len(State) * len(Action)
    assert len(ALLOWED) == 27
    assert not set(FORBIDDEN) & set(TRANSITIONS)


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
def test_final_states_only_reopen(state: State) -> None:
    assert allowed_actions(state) == (Action.REOPEN,)
    assert transition(state, Action.REOPEN) is State.REOPENED


@pytest.mark.parametrize("state", sorted(set(State) - FINAL_STATES))
def test_open_states_cannot_reopen_but_can_be_withdrawn(state: State) -> None:
    assert Action.REOPEN not in allowed_actions(state)
    assert transition(state, Action.WITHDRAW) is State.WITHDRAWN


def test_filing_is_the_only_way_into_filed_and_ineligible() -> None:
    assert initial_state(True) is State.FILED
    assert initial_state(False) is State.INELIGIBLE
    targets = set(TRANSITIONS.values())
    assert State.FILED not in targets
    assert State.INELIGIBLE not in targets


def test_only_a_decision_reaches_upheld_or_rejected() -> None:
    """A missed deadline escalates; nothing but a reviewer's decision upholds."""
    into_upheld = {a for (_, a), t in TRANSITIONS.items() if t is State.UPHELD}
    into_rejected = {a for (_, a), t in TRANSITIONS.items() if t is State.REJECTED}
    assert into_upheld == {Action.UPHOLD}
    assert into_rejected == {Action.REJECT}
    assert {t for (_, a), t in TRANSITIONS.items() if a is Action.ESCALATE} == {State.ESCALATED}


def test_every_state_is_reachable_and_every_open_state_can_finish() -> None:
    seen = {State.FILED, State.INELIGIBLE}
    frontier = list(seen)
    while frontier:
        s = frontier.pop()
        for a in allowed_actions(s):
            t = transition(s, a)
            if t not in seen:
                seen.add(t)
                frontier.append(t)
    assert seen == set(State)
    for s in set(State) - FINAL_STATES:
        reach, todo = set(), [s]
        while todo:
            x = todo.pop()
            for a in allowed_actions(x):
                t = transition(x, a)
                if t not in reach:
                    reach.add(t)
                    todo.append(t)
        assert reach & FINAL_STATES, s


def test_escalated_is_not_escalated_again_and_deadlines_apply_to_the_rest() -> None:
    assert Action.ESCALATE not in allowed_actions(State.ESCALATED)
    assert (set(State) - FINAL_STATES) - {State.ESCALATED} == DEADLINE_STATES
    for s in DEADLINE_STATES:
        assert transition(s, Action.ESCALATE) is State.ESCALATED


def test_every_action_has_one_ledger_event_kind() -> None:
    assert set(EVENT_KINDS) == set(Action)
    assert len(set(EVENT_KINDS.values())) == len(Action)
    assert all(k.startswith("appeal.") for k in EVENT_KINDS.values())
    assert {ACTION_OF_KIND[k] for k in EVENT_KINDS.values()} == set(Action)


def test_messages_speak_in_commands() -> None:
    assert set(COMMANDS) == set(Action)
    assert allowed_commands(State.UNDER_REVIEW) == (
        "assign",
        "request-info",
        "decide",
        "withdraw",
        "escalate",
    )
    assert allowed_commands(State.REJECTED) == ("reopen",)
    with pytest.raises(
        TransitionNotAllowed,
        match=r"is filed: cannot decide \(allowed now: assign, withdraw, escalate\)",
    ):
        transition(State.FILED, Action.VOTE_UPHOLD)
