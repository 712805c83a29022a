"""Real-time checks: gates that judge a rating from its own fields and the venue registry.

They need no history, so they never touch the limiter: the rating's own times
(``time.submitted_before_served``, ``time.submitted_in_future``) and a registered rating
pad used at another window than its own (``kiosk.wrong_window``). Each holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from integrity.catalogue import Reason
from integrity.model import Rating, Status, VenueRegistry, Verdict
from integrity.ports import GateContext

#: Clocks of intake and service systems may disagree a little (seconds).
SERVED_TOLERANCE_S = 60.0


class VenueSource:
    """The venue registry as gates see it, shared by them: read from the ledger, and read
    again by ``reload`` when its version (the last ``venues.loaded`` event) moved."""

    def __init__(
        self,
        read: Callable[[], VenueRegistry],
        version: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._read = read
        self._version = version
        self.seen = version()
        self.registry = read()

    @classmethod
    def fixed(cls, registry: VenueRegistry) -> VenueSource:
        return cls(lambda: registry)

    def reload(self) -> bool:
        """Re-read the registry if it changed; returns whether it did."""
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
    """Submitted before the service was completed, or later than the time of receipt."""

    name = "time"

    def __init__(self, max_clock_skew_s: float) -> None:
        self.max_clock_skew_s = max_clock_skew_s

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
        if not reasons:
            return None
        return Verdict(Status.HELD, tuple(reasons), evidence)


class KioskGate(_NoStateGate):
    """A registered rating pad rates only its own window."""

    name = "kiosk"

    def __init__(self, venues: VenueSource) -> None:
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
