"""A small wired world for the appeals tests: an instance on a frozen clock, people, ratings.

Composition: it opens the instance through the composition root (``bootstrap``), as
only tests and ``cli.py`` may.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from appeals.service import AppealService
from bootstrap import init_instance, open_app
from integrity.app import App, Settings
from integrity.clock import FrozenClock
from integrity.people import People, StaffRecord, StaffRegistry

# Monday 2026-10-12 10:00 in Shanghai (the default rule set's time zone).
MONDAY = datetime(2026, 10, 12, 2, 0, tzinfo=UTC)
LOW = {"attitude": 1, "efficiency": 2, "compliance": 2, "environment": 3, "overall": 1}
HIGH = {"attitude": 5, "efficiency": 5, "compliance": 5, "environment": 4, "overall": 5}
_serial = itertools.count(1)


class AppealWorld:
    """An initialised instance in ``home`` (SQLite there unless ``db_url``)."""

    def __init__(
        self,
        home: Path,
        db_url: str | None = None,
        *,
        at: datetime = MONDAY,
        rules_text: str | None = None,
        init: bool = True,
    ) -> None:
        """``init=False`` opens an instance already initialised in ``home`` (for example
        a copy of a template, which is much faster than running the migrations)."""
        self.clock = FrozenClock(at)
        home.mkdir(parents=True, exist_ok=True)
        self.settings = Settings(
            home=home,
            db_url=db_url or f"sqlite:///{home / 'ledger.db'}",
            limiter_url="memory://",
            secret_file=home / "secret.key",
            namespace=f"appeals-{next(_serial)}",
        )
        if init:
            init_instance(self.settings, rules_text=rules_text, clock=self.clock)
        self.app: App = open_app(self.settings, clock=self.clock)
        self.people: People = self.app.people
        self.registry: StaffRegistry = self.app.get(StaffRegistry)
        self.service: AppealService = self.app.get(AppealService)

    def fresh_service(self) -> AppealService:
        """Another service on the same App (for races: each thread its own instance)."""
        return AppealService.from_app(self.app)

    def close(self) -> None:
        self.app.close()

    def __enter__(self) -> AppealWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def person(
        self, person_id: str, *roles: str, unit: str = "", windows: tuple[str, ...] = ()
    ) -> str:
        """Register a person directly (no role check); returns the id."""
        self.people.upsert(
            person_id,
            roles=roles or ("staff",),
            at=self.clock.now(),
            unit=unit,
            windows=windows,
        )
        return person_id

    def add_staff(self, actor: str | None, person_id: str, *roles: str, unit: str = "") -> None:
        self.registry.add(actor, StaffRecord(person_id, frozenset(roles or ("staff",)), unit=unit))

    def rating(
        self,
        *,
        staff: str | None = "S1",
        window: str = "W01",
        scores: Mapping[str, int] = LOW,
        at: datetime | None = None,
        device: str | None = None,
        ip: str | None = None,
        **extra: Any,
    ) -> int:
        """Ingest one rating (judged at its own submitted_at) and return its id."""
        n = next(_serial)
        when = at or self.clock.now() - timedelta(hours=1)
        doc: dict[str, Any] = {
            "ticket_id": f"AT-{n:07d}",
            "window_id": window,
            "service_type": "tax",
            "channel": "qr",
            "scores": dict(scores),
            "submitted_at": when.isoformat(),
            "ip": ip or f"10.{(n >> 8) & 255}.{n & 255}.9",
            "device_id": device or f"dev-{n:07d}",
            **extra,
        }
        if staff is not None:
            doc["staff_id"] = staff
        return self.app.validate(doc, replay=True).rating_id

    def advance(self, days: float = 0, hours: float = 0) -> None:
        self.clock.advance(days * 86400 + hours * 3600)
