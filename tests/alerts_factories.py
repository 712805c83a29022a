"""A small wired world for the alerts tests: an instance on a frozen clock with a service
registry (two halls, three windows, their heads and supervisors) and the people in it."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from factories import rating

from followup.alerts import AlertService
from followup.alerts.model import Alert, State
from followup.alerts.store import AlertFilter
from integrity.app import App
from integrity.model import Decision
from integrity.registry import RegistryService, parse_registry

# Monday 2026-10-12 10:00 in Shanghai (the default rule set's time zone).
MONDAY = datetime(2026, 10, 12, 2, 0, tzinfo=UTC)
LOW = {"attitude": 1, "efficiency": 2, "compliance": 2, "environment": 3, "overall": 1}
HIGH = {"attitude": 5, "efficiency": 5, "compliance": 5, "environment": 4, "overall": 5}
#: One "very dissatisfied" dimension: a composite of 4.2, but an alert all the same.
ONE_DIMENSION = {"attitude": 1, "efficiency": 5, "compliance": 5, "environment": 5, "overall": 5}
#: A 2 on one dimension: no alert (composite 4.4, no dimension at most 1).
A_TWO = {"attitude": 2, "efficiency": 5, "compliance": 5, "environment": 5, "overall": 5}
SCORES: Mapping[str, Mapping[str, int]] = {
    "low": LOW,
    "high": HIGH,
    "one": ONE_DIMENSION,
    "two": A_TWO,
}
TEXT = "Called the citizen back and explained the queue rules"

REGISTRY = {
    "halls": [
        {"hall_id": "H1", "name": "North", "supervisor": "SUP1"},
        {"hall_id": "H2", "name": "South", "supervisor": "SUP2"},
    ],
    "windows": [
        {"window_id": "W01", "hall_id": "H1", "head": "HD1"},
        {"window_id": "W02", "hall_id": "H1", "head": "HD2"},
        {"window_id": "W03", "hall_id": "H2", "head": "HD3"},
    ],
    "roster": [
        {"staff_id": "S1", "window_id": "W01", "from": "2026-01-01"},
        {"staff_id": "S2", "window_id": "W02", "from": "2026-01-01"},
        {"staff_id": "S3", "window_id": "W03", "from": "2026-01-01"},
    ],
}
#: Who works at which window (for the ratings' staff_id).
STAFF_OF = {"W01": "S1", "W02": "S2", "W03": "S3"}
_serial = itertools.count(1)


def add_people(app: App) -> None:
    at = app.clock.now()
    for pid, roles, unit, windows in (
        ("A1", ("admin",), "HQ", ()),
        ("R1", ("reviewer",), "U9", ()),
        ("R2", ("reviewer",), "U8", ()),
        ("R4", ("reviewer",), "U7", ()),
        ("HD1", ("head", "staff"), "U1", ("W01",)),
        ("HD2", ("head",), "U1", ("W02",)),
        ("HD3", ("head",), "U2", ("W03",)),
        ("SUP1", ("supervisor",), "U1", ()),
        ("SUP2", ("supervisor",), "U2", ()),
        ("S1", ("staff",), "U1", ("W01",)),
        ("S2", ("staff",), "U1", ("W02",)),
        ("S3", ("staff",), "U2", ("W03",)),
        ("AU", ("auditor",), "AUD", ()),
    ):
        app.people.upsert(pid, roles=roles, at=at, unit=unit, windows=windows)


def load_registry(app: App) -> None:
    app.get(RegistryService).load(parse_registry(REGISTRY), actor="operator")
    app.hook.reload()


def submit(
    app: App,
    scores: Mapping[str, int] = LOW,
    *,
    window: str = "W01",
    replay_at: datetime | None = None,
    **extra: Any,
) -> Decision:
    """One rating at ``window`` naming its staff member: live (judged now), or replayed
    at ``replay_at`` (its own submitted_at)."""
    doc = rating(window_id=window, staff_id=STAFF_OF.get(window, "S1"), scores=dict(scores))
    doc.update(extra)
    if replay_at is not None:
        doc["submitted_at"] = replay_at.isoformat()
        return app.validate(doc, replay=True)
    return app.validate(doc)


def alerts_of(app: App, rating_id: int) -> list[Alert]:
    return app.get(AlertService).store.find(AlertFilter(rating_ids=(rating_id,)))


def live_alert(app: App, rating_id: int) -> Alert | None:
    found = [a for a in alerts_of(app, rating_id) if a.state is not State.VOID]
    assert len(found) <= 1
    return found[0] if found else None


def one_alert(app: App, rating_id: int) -> Alert:
    app.get(AlertService).sync()
    a = live_alert(app, rating_id)
    assert a is not None, f"rating {rating_id} has no alert"
    return a


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def serial() -> int:
    return next(_serial)
