"""What the webhook outbox talks about: endpoints, deliveries, attempts, and the body sent.

The body of a notification is a JSON object made from one ledger event only (the ledger
never holds raw addresses or device ids, so neither does the body)::

    {"event_id": 57, "kind": "case.opened", "at": "2026-10-15T02:00:00+00:00",
     "subject": "window:W01", "rating_id": null, "status": null,
     "reasons": ["outlier.coerced"], "evidence": {...}, "actor": "detector"}

``at`` is RFC 3339 in UTC with its offset. The bytes are canonical (sorted keys, no
spaces, UTF-8), so every attempt and every endpoint gets the same body for one event.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from integrity.catalogue import KINDS
from integrity.errors import FieldError
from integrity.model import Event


class EndpointState(enum.StrEnum):
    ENABLED = "enabled"  # events are queued and sent
    DISABLED = "disabled"  # paused: later events are not queued; what is queued waits
    REMOVED = "removed"  # gone: secret wiped, pending deliveries cancelled


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its (next) attempt
    DELIVERED = "delivered"  # the receiver answered 2xx
    DEAD = "dead"  # still failing at the maximum age: a dead letter (replayable)
    CANCELLED = "cancelled"  # its endpoint was removed before it was delivered


@dataclass(frozen=True)
class Endpoint:
    """An endpoint as listings show it: never its secret."""

    endpoint_id: int
    url: str
    events: tuple[str, ...]
    state: EndpointState
    since_event_id: int
    until_event_id: int | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    pending: int = 0
    dead: int = 0

    def wants(self, event_id: int, kind: str) -> bool:
        """Whether this endpoint receives event ``event_id`` of ``kind``: one of its kinds,
        after its ``webhook.added``/``webhook.enabled`` event and, when disabled, before
        its ``webhook.disabled`` event."""
        if self.state is EndpointState.REMOVED or event_id <= self.since_event_id:
            return False
        if self.until_event_id is not None and event_id >= self.until_event_id:
            return False
        return matches(self.events, kind)


@dataclass(frozen=True)
class Added:
    """A new endpoint and, when the engine made the secret, the secret (shown once)."""

    endpoint: Endpoint
    secret: str | None
    event_id: int


@dataclass(frozen=True)
class Delivery:
    delivery_id: int
    endpoint_id: int
    event_id: int
    kind: str
    status: DeliveryStatus
    attempts: int
    queued_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_result: str | None
    finished_at: datetime | None

    @property
    def idempotency_key(self) -> str:
        """The same on every attempt: ``<event id>-<endpoint id>``."""
        return idempotency_key(self.event_id, self.endpoint_id)


@dataclass(frozen=True)
class Attempt:
    attempt_id: int
    delivery_id: int
    number: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


@dataclass(frozen=True)
class RoundSummary:
    """One round of the outbox: deliveries queued, then attempts made and how they ended."""

    queued: int = 0
    delivered: int = 0
    failed: int = 0  # failed attempts that will be retried
    dead: int = 0  # failed attempts that made a dead letter

    def __add__(self, other: RoundSummary) -> RoundSummary:
        return RoundSummary(
            self.queued + other.queued,
            self.delivered + other.delivered,
            self.failed + other.failed,
            self.dead + other.dead,
        )


def idempotency_key(event_id: int, endpoint_id: int) -> str:
    return f"{event_id}-{endpoint_id}"


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def body(ev: Event) -> bytes:
    """The JSON body for one ledger event (see the module docstring)."""
    doc = {
        "event_id": ev.event_id,
        "kind": str(ev.kind),
        "at": rfc3339(ev.at),
        "subject": ev.subject,
        "rating_id": ev.rating_id,
        "status": ev.status.value if ev.status is not None else None,
        "reasons": [str(r) for r in ev.reasons],
        "evidence": dict(ev.evidence),
        "actor": ev.actor,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# -- subscriptions ------------------------------------------------------------------------


def matches(patterns: Sequence[str], kind: str) -> bool:
    """Whether a subscription to ``patterns`` wants events of ``kind``: a kind itself, or
    a family ``appeal.*`` (every kind starting ``appeal.``, including kinds added later)."""
    return any(p == kind or (p.endswith(".*") and kind.startswith(p[:-1])) for p in patterns)


def check_subscription(patterns: Sequence[str]) -> tuple[tuple[str, ...], list[FieldError]]:
    """The patterns, de-duplicated in order, and an error for each that names no kind of
    the catalogue (a family must match at least one kind today)."""
    out: list[str] = []
    errors: list[FieldError] = []
    for raw in patterns:
        p = raw.strip()
        family = p.endswith(".*") and len(p) > 2
        known = p in KINDS or (family and any(k.startswith(p[:-1]) for k in KINDS))
        if not known:
            errors.append(
                FieldError(
                    "event",
                    f"{raw!r} is not an event kind of the catalogue (README, Event kinds) "
                    "nor a family of them such as 'appeal.*'",
                )
            )
        elif p not in out:
            out.append(p)
    if not patterns:
        errors.append(FieldError("event", "at least one event kind is required"))
    return tuple(out), errors
