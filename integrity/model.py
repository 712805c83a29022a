"""The domain model: plain dataclasses, no SQLAlchemy, no web framework.

A :class:`Rating` exists only after parsing and pseudonymisation: raw IP
addresses and device ids never reach this module's types.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from integrity.catalogue import Reason

CHANNELS = ("kiosk", "qr", "app", "sms", "web", "phone")

#: The actor of a decision judged live, at the time of receipt (HTTP, ``validate``).
HOOK_ACTOR = "hook"
#: The actor of a decision judged on replay, at the rating's own ``submitted_at``
#: (``ingest``). Which clock judged a rating is what rebuilding the in-process
#: limiter's counters from the ledger needs to know.
REPLAY_ACTOR = "hook.replay"

# The five verbal levels used nationally, in English and in Chinese, mapped to 1..5.
VERBAL_LEVELS = {
    "very satisfied": 5,
    "satisfied": 4,
    "basically satisfied": 3,
    "dissatisfied": 2,
    "very dissatisfied": 1,
    "非常满意": 5,
    "满意": 4,
    "基本满意": 3,
    "不满意": 2,
    "非常不满意": 1,
}


class Status(enum.StrEnum):
    ACCEPTED = "accepted"  # passed every gate; counts toward performance
    HELD = "held"  # flagged; waits for review; does not count until cleared
    REJECTED = "rejected"  # broke a hard rule
    VOIDED = "voided"  # excluded later: upheld appeal or audit finding

    @property
    def counted(self) -> bool:
        return self is Status.ACCEPTED


@dataclass(frozen=True)
class Rubric:
    """Dimensions, their weights (any positive numbers; normalised) and the integer scale."""

    weights: Mapping[str, float]
    scale_min: int = 1
    scale_max: int = 5
    low_score_below: float = 3.0

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValueError("a rubric needs at least one dimension")
        if any(w <= 0 or not math.isfinite(w) for w in self.weights.values()):
            raise ValueError("rubric weights must be positive")
        if self.scale_min >= self.scale_max:
            raise ValueError("rubric scale_min must be below scale_max")

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def composite(self, scores: Mapping[str, int]) -> float:
        """Weighted mean of the scores, on the rubric's scale."""
        total = sum(self.weights.values())
        return sum(self.weights[d] * scores[d] for d in self.weights) / total

    def is_low(self, composite: float) -> bool:
        return composite < self.low_score_below


DEFAULT_RUBRIC = Rubric(
    weights={
        "attitude": 0.20,
        "efficiency": 0.30,
        "compliance": 0.25,
        "environment": 0.15,
        "overall": 0.10,
    }
)


@dataclass(frozen=True)
class Rating:
    """A parsed, pseudonymised rating, before or after it is written.

    Times are timezone-aware UTC. ``ip_hash``, ``prefix_hash`` and ``device_hash``
    are keyed hashes (see :mod:`integrity.pseudonym`); ``fingerprint`` identifies
    the submission's content, so an identical retry has the same fingerprint.
    """

    ticket_id: str
    window_id: str
    staff_id: str | None
    service_type: str
    channel: str
    served_at: datetime | None
    submitted_at: datetime
    submitted_at_given: bool
    received_at: datetime
    scores: Mapping[str, int]
    composite: float
    comment: str | None
    ip_hash: str
    prefix_hash: str
    device_hash: str
    fingerprint: str
    rating_id: int | None = None
    # The intake client that sent it (``integrity clients``; ``cli`` for ingest, ``open``
    # for a server in open mode); None through the Python API. Not part of the content:
    # an identical submission from another client is still an identical retry.
    client_id: str | None = None

    @property
    def occurred_at(self) -> datetime:
        """The time a report period is judged by: ``served_at``, else ``submitted_at``."""
        return self.served_at or self.submitted_at

    @property
    def seconds_after_service(self) -> float | None:
        if self.served_at is None:
            return None
        return (self.submitted_at - self.served_at).total_seconds()


@dataclass(frozen=True)
class Verdict:
    """What one gate concluded about one rating: a status other than accepted, and why."""

    status: Status
    reasons: tuple[str, ...]
    evidence: Mapping[str, Any] = field(default_factory=dict)
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Decision:
    """The hook's answer for one rating (docs/reference.md, Decisions)."""

    rating_id: int
    status: Status
    reasons: tuple[str, ...]
    rule_set_id: str
    retry_after_s: float | None = None
    replayed: bool = False  # True when this answers an identical retry: nothing was written
    # The rater's receipt code (integrity/receipts.py): derived from the rating id with the
    # instance's secret key, never stored; the hook fills it in. Not part of equality.
    receipt: str | None = field(default=None, compare=False)

    @property
    def counted(self) -> bool:
        return self.status.counted

    @property
    def duplicate_ticket(self) -> bool:
        return Reason.DUPLICATE_TICKET in self.reasons

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rating_id": self.rating_id,
            "status": self.status.value,
            "counted": self.counted,
            "reasons": list(self.reasons),
            "rule_set_id": self.rule_set_id,
        }
        if self.retry_after_s is not None:
            out["retry_after_s"] = round(self.retry_after_s, 3)
        if self.replayed:
            out["replayed"] = True
        if self.receipt is not None:
            out["receipt"] = self.receipt
        return out


@dataclass(frozen=True)
class Event:
    """One entry on the ledger. A status change when ``status`` is set, a record otherwise.

    ``kind`` names what happened (``decision``, ``hold``, ``clear``, ``confirm``, ``void``,
    ``appeal.filed``, ``audit.finding`` ...); ``actor`` who did it (``hook``, ``detector``,
    a person's id).
    """

    kind: str
    actor: str
    at: datetime
    rating_id: int | None = None
    status: Status | None = None
    reasons: tuple[str, ...] = ()
    rule_set_id: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    subject: str | None = None  # what a non-rating event is about: "appeal:12", "audit:batch:3"
    event_id: int | None = None


def void_event(
    rating_id: int,
    *,
    actor: str,
    at: datetime,
    reasons: tuple[str, ...],
    subject: str,
    evidence: Mapping[str, Any],
    rule_set_id: str | None = None,
) -> Event:
    """The status event that excludes a rating for good (an upheld appeal, an audit
    finding): kind ``void``, status ``voided``, citing what voided it in ``subject``."""
    from integrity.catalogue import Kind

    return Event(
        kind=Kind.VOID,
        actor=actor,
        at=at,
        rating_id=rating_id,
        status=Status.VOIDED,
        reasons=reasons,
        rule_set_id=rule_set_id,
        subject=subject,
        evidence=evidence,
    )


@dataclass(frozen=True)
class RatingState:
    """A rating's current status as the ledger holds it; ``version`` moves with every change."""

    status: Status
    version: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class StoredRating:
    """A rating as stored (pseudonymised), with its current status and detector risk."""

    rating_id: int
    fingerprint: str  # identifies the submission's content (an identical retry shares it)
    ticket_id: str
    claims_ticket: bool  # the ticket's one rating (False: a later one, rejected as duplicate)
    window_id: str
    staff_id: str | None
    service_type: str
    channel: str
    served_at: datetime | None
    submitted_at: datetime
    received_at: datetime
    occurred_at: datetime
    scores: Mapping[str, int]
    composite: float
    comment: str | None
    ip_hash: str
    prefix_hash: str
    device_hash: str
    rule_set_id: str
    status: Status
    reasons: tuple[str, ...]
    risk: float
    version: int
    last_event_id: int  # the event that set the current status
    client_id: str | None = None  # the intake client that sent it (None: not recorded)

    @property
    def counted(self) -> bool:
        return self.status.counted


@dataclass(frozen=True)
class IntakeClient:
    """A service allowed to submit ratings over HTTP (``integrity clients``).

    Its key is never stored: only ``key_hash`` (SHA-256 of the key, hex) and ``key_id``
    (the key's public prefix, shown by ``clients list``). A client scoped to halls
    and/or windows may submit only for those windows (a hall's windows come from the
    service registry); one with no scope may submit for any window.
    """

    name: str
    key_id: str
    key_hash: str = field(repr=False)
    halls: tuple[str, ...] = ()
    windows: tuple[str, ...] = ()
    created_at: datetime | None = None
    expires_at: datetime | None = None
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def scoped(self) -> bool:
        return bool(self.halls or self.windows)

    def state(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


@dataclass(frozen=True)
class ServiceRecord:
    """The queue system's record of one service (a ticket): which window served it, who
    (when the queue system knows), and when it was completed (aware UTC).

    ``recorded_at`` and ``client_id`` (who sent it: an intake client, or ``cli``) say
    where the record came from; they are not part of what the record says, so two
    records are the same service exactly when :meth:`same_service` holds.
    """

    ticket_id: str
    window_id: str
    staff_id: str | None
    served_at: datetime
    recorded_at: datetime | None = field(default=None, compare=False)
    client_id: str | None = field(default=None, compare=False)

    def same_service(self, other: ServiceRecord) -> bool:
        """Whether ``other`` says exactly what this record says (an idempotent resend)."""
        return (self.ticket_id, self.window_id, self.staff_id, self.served_at) == (
            other.ticket_id,
            other.window_id,
            other.staff_id,
            other.served_at,
        )

    def differences(self, window_id: str, staff_id: str | None) -> tuple[str, ...]:
        """The fields of a rating (its window, its staff member) that contradict this
        record: the window always; the staff member only when both name one (a rater
        may not know who served, and a queue system may not record it)."""
        out: list[str] = []
        if window_id != self.window_id:
            out.append("window_id")
        if staff_id is not None and self.staff_id is not None and staff_id != self.staff_id:
            out.append("staff_id")
        return tuple(out)


@dataclass(frozen=True)
class Kiosk:
    """A rating pad fixed at one window of one venue (device id pseudonymised)."""

    venue_id: str
    window_id: str
    device_hash: str


@dataclass(frozen=True)
class VenueRegistry:
    """The registered halls, pseudonymised: lookups by hash only.

    ``ip_hashes`` maps a pseudonymised single address to its venue; ``prefix_hashes``
    maps a pseudonymised /24 (IPv4) or /64 (IPv6) prefix to its venue (a network
    registered as a whole prefix or larger). ``kiosks`` maps a device hash to its pad.
    """

    ip_hashes: Mapping[str, str] = field(default_factory=dict)
    prefix_hashes: Mapping[str, str] = field(default_factory=dict)
    kiosks: Mapping[str, Kiosk] = field(default_factory=dict)

    def venue_of_address(self, ip_hash: str, prefix_hash: str) -> str | None:
        return self.ip_hashes.get(ip_hash) or self.prefix_hashes.get(prefix_hash)

    def kiosk(self, device_hash: str) -> Kiosk | None:
        return self.kiosks.get(device_hash)
