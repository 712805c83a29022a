"""A circuit breaker, so a dead Redis costs one timeout per cool-down, not one per rating.

Closed: calls go through; ``failure_threshold`` consecutive failures open it. Open: every
call fails at once with :class:`CircuitOpen` (a ``BackendUnavailable``) for ``cooldown_s``
seconds. Then half-open: one trial call goes through (others still fail at once); its
success closes the breaker, its failure opens it for another cool-down. Time comes from
an injected clock.
"""

from __future__ import annotations

import enum
import threading

from integrity.clock import Clock, SystemClock
from integrity.errors import BackendUnavailable


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(BackendUnavailable):
    """Raised without touching the backend while the breaker is open."""


class CircuitBreaker:
    """Counts consecutive failures; thread-safe.

    Use as ``breaker.before_call()``, then exactly one of ``record_success()`` or
    ``record_failure()``. ``cooldown_s`` is in seconds.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        cooldown_s: float = 5.0,
        clock: Clock | None = None,
        name: str = "backend",
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must be >= 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.clock: Clock = clock or SystemClock()
        self.name = name
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None  # epoch seconds
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state(self._now())

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def before_call(self) -> None:
        """Let a call through, or raise :class:`CircuitOpen` while open (or a trial is running)."""
        with self._lock:
            state = self._state(self._now())
            if state is BreakerState.CLOSED:
                return
            if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return
            assert self._opened_at is not None
            left = max(0.0, self._opened_at + self.cooldown_s - self._now())
            raise CircuitOpen(
                f"{self.name} unavailable: circuit open after {self._failures} consecutive "
                f"failures (next trial in {left:.1f} s)",
                retry_after_s=left,
            )

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            was_trial = self._trial_in_flight
            self._trial_in_flight = False
            if was_trial or self._failures >= self.failure_threshold:
                self._opened_at = self._now()

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def _state(self, now: float) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if now < self._opened_at + self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN
