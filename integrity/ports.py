"""Ports: the small interfaces the core needs from the outside world.

Adapters implement them (``integrity/adapters``, ``rules/``); the composition root
(:mod:`integrity.bootstrap`) picks one of each by URL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from integrity.model import Decision, Rating, Status, Verdict

# --- rate limiting -------------------------------------------------------------------


@dataclass(frozen=True)
class LimitCheck:
    """One rule applied to one subject, ready for a storage backend.

    ``key`` is the full storage key (namespaced, schema-versioned, pseudonymised
    subject). ``window_ms`` > 0 is a sliding log: at most ``limit`` hits in any
    window ``(now - window_ms, now]``. ``window_ms`` == 0 is a fixed bucket named by
    the key itself (e.g. a calendar day): at most ``limit`` hits in the key.
    ``ttl_ms`` is how long the key must outlive its last hit.
    """

    rule_id: str
    key: str
    window_ms: int
    limit: int
    ttl_ms: int


@dataclass(frozen=True)
class LimitFailure:
    rule_id: str
    retry_after_ms: int  # when a retry could pass this rule; 0 when unknown


@dataclass(frozen=True)
class LimitOutcome:
    """All-or-nothing: ``allowed`` means every check passed and the hit was recorded in all."""

    allowed: bool
    failures: tuple[LimitFailure, ...] = ()


class Limiter(Protocol):
    """Storage backend of the sliding-log rate limiter (memory, Redis).

    ``hit`` checks every rule and, only if all pass, records ``member`` in every key;
    it is idempotent per member: a member already recorded in a key passes that key
    again without being counted twice (a retried rating never consumes two slots).
    ``at_ms`` is the rating's time in epoch milliseconds on replay, ``None`` live (the
    backend's own clock: Redis ``TIME``). Raises ``BackendUnavailable`` when the
    backend does not answer in time.
    """

    def hit(self, checks: Sequence[LimitCheck], member: str, at_ms: int | None) -> LimitOutcome: ...

    def hit_many(
        self, calls: Sequence[tuple[Sequence[LimitCheck], str, int | None]]
    ) -> list[LimitOutcome]:
        """Several ``hit`` calls in order, as if made one by one (Redis: one pipeline)."""
        ...

    def release(self, checks: Sequence[LimitCheck], member: str) -> None:
        """Remove ``member`` from every key (a refund); a no-op where it is absent."""
        ...

    def reset(self) -> None:
        """Forget every counter in this limiter's namespace (tests, demo)."""
        ...


# --- the ledger, as the hook needs it -------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """What the ledger already knows about a new rating before any gate runs."""

    existing: Decision | None  # the first decision for an identical earlier submission
    ticket_taken: bool


@dataclass(frozen=True)
class Pending:
    """A rating with its decision, ready to be written."""

    rating: Rating
    status: Status
    reasons: tuple[str, ...]
    evidence: Mapping[str, Any]
    rule_set_id: str
    retry_after_s: float | None = None


class RatingLedger(Protocol):
    """What the validation hook needs from the score ledger (SQL adapter: ``SqlLedger``)."""

    def lookup(self, fingerprint: str, ticket_id: str) -> Lookup: ...

    def lookup_many(self, ratings: Sequence[Rating]) -> list[Lookup]: ...

    def record(self, p: Pending, actor: str = "hook") -> Decision:
        """Write a rating with its decision atomically; resolve races (see SqlLedger)."""
        ...

    def record_many(self, pending: Sequence[Pending], actor: str = "hook") -> list[Decision]: ...


# --- gates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GateContext:
    """What a gate may know beyond the rating: whether this is replay (ingest) or live."""

    replay: bool
    rule_set_id: str


class Gate(Protocol):
    """One step of the validation hook after the duplicate-ticket check.

    Returns ``None`` to let the rating through, or a :class:`Verdict` (held or
    rejected, with reason codes). A gate that cannot reach its backend raises
    ``BackendUnavailable``; the hook then holds the rating with that gate's
    ``unavailable_reason``.
    """

    name: str
    unavailable_reason: str

    def check(self, rating: Rating, ctx: GateContext) -> Verdict | None: ...

    def check_many(self, ratings: Sequence[Rating], ctx: GateContext) -> list[Verdict | None]:
        """``check`` for several ratings in order (may batch backend round trips)."""
        ...

    def release(self, rating: Rating, ctx: GateContext) -> None:
        """Undo what ``check`` recorded for ``rating`` (it turned out to be a duplicate)."""
        ...
