"""What a reviewer sees next to an appeal: the automated evidence about the rating, and
the other low ratings around it (a bombing cluster). Pure functions over the ledger's
read models (:class:`~integrity.model.StoredRating`, :class:`~integrity.model.Event`).

Automated evidence is what the engine concluded on its own, before any person looked:

* a ``hold`` event: detection held the rating; its evidence carries the strongest
  finding (``detector``, ``reason``, ``score``, ``threshold``, ``explanation``) and
  the further ones under ``also``;
* a ``decision`` event that held the rating at intake (a real-time check: rate limits,
  a kiosk at the wrong window, an impossible time), one finding per reason code;
* a ``case.opened`` event about the rating's window: detection found the window's
  scores coerced and opened a case for review.

A reviewer must say whether any of it informed their decision
(``--used-automated-evidence``), so all of it is listed, finding by finding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from integrity.catalogue import Kind, describe, is_reason
from integrity.model import Event, Status, StoredRating

#: The subject detection gives a case about one window (``case:window:<window_id>``).
WINDOW_CASE = "case:window:{window_id}"


@dataclass(frozen=True)
class Finding:
    """One automated conclusion about the rating (or its window), with where it is recorded."""

    event_id: int | None
    at: datetime
    kind: str  # the event that records it: hold, decision or case.opened
    detector: str
    reason: str
    score: float | None
    threshold: float | None
    explanation: str


@dataclass(frozen=True)
class RatingContext:
    """The rating an appeal contests, as a reviewer sees it.

    ``events``: the rating's own ledger events (appeal events left out, they are the
    appeal's history); ``flags``: the events that carry automated evidence;
    ``findings``: that evidence, one row per finding; ``cluster``: see
    :func:`cluster_summary`.
    """

    rating: StoredRating
    events: tuple[Event, ...]
    flags: tuple[Event, ...]
    findings: tuple[Finding, ...]
    cluster: Mapping[str, Any]


def is_automated_evidence(e: Event, window_id: str) -> bool:
    """Whether ``e`` records a conclusion the engine reached without a person."""
    if e.kind == Kind.HOLD:
        return True
    if e.kind == Kind.DECISION:
        return e.status is Status.HELD
    if e.kind == Kind.CASE_OPENED:
        return e.subject == WINDOW_CASE.format(window_id=window_id)
    return False


def findings_of(flags: Iterable[Event]) -> list[Finding]:
    """Every finding the events carry: a hold's strongest finding and each one under
    ``also``; a held decision's reason codes; a case's finding."""
    out: list[Finding] = []
    for e in flags:
        if e.kind == Kind.DECISION:
            for code in e.reasons:
                out.append(_finding(e, {"detector": "intake", "reason": code}))
            continue
        main = dict(e.evidence)
        if "reason" not in main and e.reasons:
            main["reason"] = e.reasons[0]
        out.append(_finding(e, main))
        for more in e.evidence.get("also", []) or []:
            if isinstance(more, Mapping):
                out.append(_finding(e, more))
    return out


def _finding(e: Event, doc: Mapping[str, Any]) -> Finding:
    reason = str(doc.get("reason") or "")
    explanation = str(doc.get("explanation") or "")
    if not explanation and is_reason(reason):
        explanation = describe(reason)
    return Finding(
        event_id=e.event_id,
        at=e.at,
        kind=str(e.kind),
        detector=str(doc.get("detector") or e.actor),
        reason=reason,
        score=_number(doc.get("score")),
        threshold=_number(doc.get("threshold")),
        explanation=explanation,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def cluster_summary(rating: StoredRating, near: Sequence[StoredRating]) -> dict[str, Any]:
    """Group the low ratings around ``rating`` by device and by network prefix.

    ``groups`` lists every device or prefix with at least two low ratings in the span
    (largest first), marking the one this rating belongs to; pseudonyms are shortened.
    """
    others = [r for r in near if r.rating_id != rating.rating_id]
    groups: list[dict[str, Any]] = []
    for label in ("device", "prefix"):
        by: dict[str, list[StoredRating]] = {}
        for r in near:
            by.setdefault(_pseudonym(r, label), []).append(r)
        for h, rows in by.items():
            if len(rows) < 2:
                continue
            groups.append(
                {
                    "by": label,
                    "pseudonym": h[:8],
                    "ratings": len(rows),
                    "includes_this": h == _pseudonym(rating, label),
                    "rating_ids": [r.rating_id for r in rows],
                    "statuses": sorted({r.status.value for r in rows}),
                }
            )
    groups.sort(key=lambda g: (-g["ratings"], not g["includes_this"], g["by"]))
    same_device = [r for r in others if r.device_hash == rating.device_hash]
    same_prefix = [r for r in others if r.prefix_hash == rating.prefix_hash]
    return {
        "low_ratings_nearby": len(others),
        "same_device": len(same_device),
        "same_prefix": len(same_prefix),
        "same_device_ids": [r.rating_id for r in same_device],
        "same_prefix_ids": [r.rating_id for r in same_prefix],
        "groups": groups,
    }


def _pseudonym(r: StoredRating, label: str) -> str:
    return r.device_hash if label == "device" else r.prefix_hash
