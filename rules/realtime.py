"""Real-time checks: gates that judge a rating from its own fields and the registries.

They need no history, so they never touch the limiter: the rating's own times
(``time.submitted_before_served``, ``time.submitted_in_future``, and, live only,
``time.too_old``), a registered rating pad used at another window than its own
(``kiosk.wrong_window``), once a service registry is loaded a window it does not know
(``unknown_window``) or staff not on that window's roster that day
(``staff_not_on_roster``), a rating whose reporting period is closed
(``period.closed``), and, with ``[tickets] require_known_ticket``, a ticket the queue
system never issued (``unknown_ticket``) or one whose record names another window or
staff member (``ticket_mismatch``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from integrity.catalogue import Reason
from integrity.errors import BackendUnavailable, ConfigError
from integrity.model import Rating, ServiceRecord, Status, VenueRegistry, Verdict
from integrity.periods import ClosedPeriods
from integrity.ports import GateContext, TicketStore
from integrity.registry import ServiceRegistry
from integrity.tickets import TicketPolicy

T = TypeVar("T")

#: Clocks of intake and service systems may disagree a little (seconds).
SERVED_TOLERANCE_S = 60.0


class Snapshot(Generic[T]):
    """Configuration the gates keep from the ledger (a registry), shared by them: read
    once, and read again by ``reload`` when its version (the id of the event that
    loaded it) moved."""

    def __init__(self, read: Callable[[], T], version: Callable[[], int | None] = lambda: None):
        self._read = read
        self._version = version
        self.seen = version()
        self.registry = read()

    @classmethod
    def fixed(cls, value: T) -> Snapshot[T]:
        return cls(lambda: value)

    def reload(self) -> bool:
        """Re-read if it changed; returns whether it did."""
        now = self._version()
        if now == self.seen:
            return False
        self.registry = self._read()
        self.seen = now
        return True


class _NoStateGate:
    """What a gate without a backend answers for the rest of the Gate port."""

    name = ""
    unavailable_reason = ""

    def check(self, rating: Rating, ctx: GateContext) -> Verdict | None:
        raise NotImplementedError

    def check_many(self, ratings: Sequence[Rating], ctx: GateContext) -> list[Verdict | None]:
        return [self.check(r, ctx) for r in ratings]

    def release(self, rating: Rating, ctx: GateContext) -> None:
        """Nothing to give back: these gates record nothing."""

    def reload(self) -> bool:
        """Nothing cached from the ledger."""
        return False


class TimeGate(_NoStateGate):
    """Submitted before the service was completed, or later than the time of receipt;
    live only: submitted or served longer ago than ``max_age_s`` at receipt (a rating
    dated years back must not count into a long-closed report). Replay (ingest) judges
    history at its own time, so age is not held against it."""

    name = "time"

    def __init__(self, max_clock_skew_s: float, max_age_s: float | None = None) -> None:
        self.max_clock_skew_s = max_clock_skew_s
        self.max_age_s = max_age_s

    def check(self, rating: Rating, ctx: GateContext) -> Verdict | None:
        reasons = []
        evidence: dict[str, Any] = {}
        delay = rating.seconds_after_service
        if delay is not None and delay < -SERVED_TOLERANCE_S:
            reasons.append(Reason.SUBMITTED_BEFORE_SERVED)
            evidence["seconds_after_service"] = delay
        ahead = (rating.submitted_at - rating.received_at).total_seconds()
        if ahead > self.max_clock_skew_s:
            reasons.append(Reason.SUBMITTED_IN_FUTURE)
            evidence["seconds_ahead_of_receipt"] = ahead
        if not ctx.replay and self.max_age_s is not None:
            ages = {
                field: (rating.received_at - at).total_seconds()
                for field, at in (
                    ("submitted_at", rating.submitted_at),
                    ("served_at", rating.served_at),
                )
                if at is not None
            }
            old = {field: age for field, age in ages.items() if age > self.max_age_s}
            if old:
                reasons.append(Reason.TOO_OLD)
                evidence["too_old"] = {"max_age_s": self.max_age_s, "seconds_before_receipt": old}
        if not reasons:
            return None
        return Verdict(Status.HELD, tuple(reasons), evidence)


class KioskGate(_NoStateGate):
    """A registered rating pad rates only its own window."""

    name = "kiosk"

    def __init__(self, venues: Snapshot[VenueRegistry]) -> None:
        self.venues = venues

    def check(self, rating: Rating, ctx: GateContext) -> Verdict | None:
        kiosk = self.venues.registry.kiosk(rating.device_hash)
        if kiosk is None or rating.window_id == kiosk.window_id:
            return None
        return Verdict(
            Status.HELD,
            (Reason.KIOSK_WRONG_WINDOW,),
            {
                "kiosk": {
                    "venue_id": kiosk.venue_id,
                    "registered_window_id": kiosk.window_id,
                    "rated_window_id": rating.window_id,
                }
            },
        )

    def reload(self) -> bool:
        return self.venues.reload()


ACTIONS = {"hold": Status.HELD, "reject": Status.REJECTED, "note": Status.ACCEPTED}


class RegistryGate(_NoStateGate):
    """Once a service registry is loaded: the window must be in it, and named staff on
    its roster on the day of service (``served_at``, else ``submitted_at``, in the rule
    set's time zone). What each costs is the rule set's ``[registry]`` table: ``hold``
    (default), ``reject``, or ``note`` (counted, with the reason recorded)."""

    name = "registry"

    def __init__(
        self,
        registry: Snapshot[ServiceRegistry],
        tz: ZoneInfo,
        unknown_window: str = "hold",
        staff_not_on_roster: str = "hold",
    ) -> None:
        self.snapshot = registry
        self.tz = tz
        self.actions = {
            Reason.UNKNOWN_WINDOW: ACTIONS[unknown_window],
            Reason.STAFF_NOT_ON_ROSTER: ACTIONS[staff_not_on_roster],
        }

    @classmethod
    def from_section(
        cls, registry: Snapshot[ServiceRegistry], tz: ZoneInfo, section: Mapping[str, Any]
    ) -> RegistryGate:
        """The gate as the rule set's ``[registry]`` table configures it."""
        opts = {}
        for key in ("unknown_window", "staff_not_on_roster"):
            value = section.get(key, "hold")
            if value not in ACTIONS:
                raise ConfigError(f"[registry] {key}: {value!r} is not one of {', '.join(ACTIONS)}")
            opts[key] = str(value)
        return cls(registry, tz, **opts)

    def check(self, rating: Rating, ctx: GateContext) -> Verdict | None:
        reg = self.snapshot.registry
        if not reg.loaded:
            return None
        if reg.window(rating.window_id) is None:
            return self._verdict(Reason.UNKNOWN_WINDOW, {"window_id": rating.window_id})
        if rating.staff_id is not None:
            day = rating.occurred_at.astimezone(self.tz).date()
            if not reg.on_roster(rating.staff_id, rating.window_id, day):
                return self._verdict(
                    Reason.STAFF_NOT_ON_ROSTER,
                    {"staff_id": rating.staff_id, "window_id": rating.window_id, "day": str(day)},
                )
        return None

    def _verdict(self, reason: Reason, evidence: dict[str, Any]) -> Verdict:
        return Verdict(self.actions[reason], (reason,), {"registry": evidence})

    def reload(self) -> bool:
        return self.snapshot.reload()


class PeriodGate(_NoStateGate):
    """Holds any rating, live or replayed, whose reporting period is closed: the month
    (in the rule set's time zone) of its ``served_at``, else its ``submitted_at``. A
    closed period's reports are final; a late rating waits for review instead of
    changing them."""

    name = "period"

    def __init__(self, periods: ClosedPeriods) -> None:
        self.periods = periods

    def check(self, rating: Rating, ctx: GateContext) -> Verdict | None:
        label = self.periods.is_closed(rating.occurred_at)
        if label is None:
            return None
        return Verdict(Status.HELD, (Reason.PERIOD_CLOSED,), {"period": label})

    def reload(self) -> bool:
        """Pick up periods closed since they were read."""
        return self.periods.reload()


class TicketGate(_NoStateGate):
    """With ``[tickets] require_known_ticket``: a rating must name a ticket the queue
    system recorded (``integrity tickets load``, ``POST /v1/tickets``), at the same
    window, and with the same staff member when both name one. A ticket not recorded
    (yet: feeds lag) is held ``unknown_ticket`` and judged again when its record arrives
    or the wait runs out (:mod:`integrity.tickets`); a contradicting record holds it
    ``ticket_mismatch``. Reads the records through the core's port: one query per rating
    live, one per chunk on ingest; none at all with the setting off. When the read
    fails the rating is held ``unknown_ticket`` like any other unknown ticket (judged
    again when its record is loaded, or settled); the gate itself never raises, so the
    hook's ``unavailable_reason`` (which means "the limiter took no slots") stays the
    rate limiter's alone."""

    name = "tickets"

    def __init__(self, store: TicketStore, policy: TicketPolicy) -> None:
        self.store = store
        self.policy = policy

    def check(self, rating: Rating, ctx: GateContext) -> Verdict | None:
        return self.check_many([rating], ctx)[0]

    def check_many(self, ratings: Sequence[Rating], ctx: GateContext) -> list[Verdict | None]:
        if not self.policy.require_known_ticket or not ratings:
            return [None] * len(ratings)
        try:
            records = self.store.find([r.ticket_id for r in ratings])
        except BackendUnavailable as err:
            return [self._unknown({"unavailable": f"{self.name}: {err}"})] * len(ratings)
        return [self._verdict(r, records.get(r.ticket_id)) for r in ratings]

    def _unknown(self, more: Mapping[str, Any]) -> Verdict:
        return Verdict(
            Status.HELD,
            (Reason.UNKNOWN_TICKET,),
            {"ticket": {"known": False, "wait_hours": self.policy.wait_hours}, **more},
        )

    def _verdict(self, rating: Rating, record: ServiceRecord | None) -> Verdict | None:
        if record is None:
            return self._unknown({})
        differs = record.differences(rating.window_id, rating.staff_id)
        if not differs:
            return None
        mismatch = {
            name: {"recorded": getattr(record, name), "rated": getattr(rating, name)}
            for name in differs
        }
        return Verdict(Status.HELD, (Reason.TICKET_MISMATCH,), {"ticket": {"mismatch": mismatch}})
