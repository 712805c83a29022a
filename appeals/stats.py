"""Appeal statistics: pure functions over :class:`~appeals.model.Appeal` (display rows are
in :mod:`appeals.views`)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from appeals.model import Appeal, State

STAT_COLUMNS = (
    "appeals",
    "admitted",
    "open",
    "decided",
    "upheld",
    "rejected",
    "uphold_rate",
    "median_days_to_decision",
    "overdue",
    "escalations",
    "reopens",
    "reversals",
)
GROUP_KEYS: dict[str, Callable[[Appeal], str]] = {
    "ground": lambda a: a.ground,
    "unit": lambda a: a.appellant_unit,
    "appellant": lambda a: a.appellant_id,
    "window": lambda a: a.window_id,
}


def summarise(appeals: Sequence[Appeal], now: datetime) -> dict[str, Any]:
    """Counts per state and the headline figures.

    ``uphold_rate`` is upheld / (upheld + rejected), ``None`` when nothing is decided;
    ``median_days_to_decision`` runs from the start of the deciding round (filing, or
    the last reopen) to the decision, in days; ``reversals`` counts rounds after a
    reopen that closed with a different outcome than the one set aside.
    """
    by_state = {s.value: 0 for s in State}
    for a in appeals:
        by_state[a.state.value] += 1
    decided = [a for a in appeals if a.state in (State.UPHELD, State.REJECTED)]
    days = [
        (a.decided_at - a.round_started_at).total_seconds() / 86400
        for a in decided
        if a.decided_at is not None
    ]
    upheld = by_state[State.UPHELD.value]
    return {
        "appeals": len(appeals),
        "admitted": len(appeals) - by_state[State.INELIGIBLE.value],
        "open": sum(1 for a in appeals if a.state.open),
        "decided": len(decided),
        "upheld": upheld,
        "rejected": by_state[State.REJECTED.value],
        "uphold_rate": (upheld / len(decided)) if decided else None,
        "median_days_to_decision": statistics.median(days) if days else None,
        "overdue": sum(1 for a in appeals if a.overdue(now)),
        "escalations": sum(a.escalations for a in appeals),
        "reopens": sum(a.reopens for a in appeals),
        "reversals": sum(a.reversals for a in appeals),
        "by_state": by_state,
    }


def summarise_by(appeals: Iterable[Appeal], by: str, now: datetime) -> list[dict[str, Any]]:
    """:func:`summarise` per group (``ground``, ``unit``, ``appellant``, ``window``)."""
    key = GROUP_KEYS[by]
    groups: dict[str, list[Appeal]] = {}
    for a in appeals:
        groups.setdefault(key(a), []).append(a)
    return [{by: k, **summarise(v, now)} for k, v in sorted(groups.items())]
