"""Test factories for the audit: a populated ledger and the people who act.

Ratings go through the real validation hook (``validate_stream``, replay), each
with its own ticket, address and device so no rate limit trips.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from integrity.people import People

_serial = itertools.count(1)

SCORES = {"attitude": 5, "efficiency": 4, "compliance": 5, "environment": 4, "overall": 5}


def rating_doc(window_id: str, served_at: datetime, **overrides: Any) -> dict[str, Any]:
    """One valid intake object with a fresh ticket, address and device."""
    n = next(_serial)
    doc: dict[str, Any] = {
        "ticket_id": f"AUD-{n:08d}",
        "window_id": window_id,
        "staff_id": f"S-{window_id}",
        "service_type": "tax",
        "channel": "qr",
        "scores": dict(SCORES),
        "served_at": served_at.isoformat(),
        "submitted_at": (served_at + timedelta(minutes=5)).isoformat(),
        "ip": f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}",
        "device_id": f"audit-device-{n:08d}",
    }
    doc.update(overrides)
    return doc


def populate(
    app: Any,
    counts: dict[str, int],
    start: datetime,
    spacing: timedelta = timedelta(minutes=7),
    **overrides: Any,
) -> list[int]:
    """Write ``counts[window]`` accepted-looking ratings per window from ``start``; return ids."""
    docs = []
    at = start
    for window, n in counts.items():
        for _ in range(n):
            docs.append(rating_doc(window, at, **overrides))
            at += spacing
    ids = []
    for item in app.hook.validate_stream(docs, replay=True):
        if item.decision is None:
            raise AssertionError(f"rating refused: {item.error}")
        ids.append(item.decision.rating_id)
    return ids


def register(
    app: Any,
    at: datetime,
    supervisors: Sequence[str] = ("boss",),
    auditors: Sequence[str] = ("aud1", "aud2"),
) -> People:
    """Register supervisors (role admin) and auditors (role auditor)."""
    people: People = app.people
    for p in supervisors:
        people.upsert(p, roles=["admin"], at=at, name=f"Supervisor {p}")
    for p in auditors:
        people.upsert(p, roles=["auditor"], at=at, name=f"Auditor {p}", unit="Audit Co.")
    return people
