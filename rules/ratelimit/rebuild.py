"""The in-process limiter's counters, rebuilt from the ledger when an instance opens.

The embedded limiter keeps nothing on disk. Its state is a function of the ledger: the
ratings whose decision consumed slots (no ``rate_limit.*``, no ``limiter_unavailable``,
no ``duplicate_ticket`` among its reasons) and that can still matter, each planned
through the rate-limit gate on the clock that judged it (replay: its own
``submitted_at``; live: its ``received_at``) and recorded without checking. So a crash
(``kill -9`` in the middle of an ``ingest``) can never leave the counters disagreeing
with what was written: a re-run decides exactly as an uninterrupted run.

"Can still matter", per clock: within the longest sliding window of the rule set, and
the current and previous calendar day (the rule set's time zone) of the latest rating
time on that clock. A replay that goes back further than that in time is judged against
fewer counters than an uninterrupted run would have kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Protocol

from integrity.catalogue import Reason
from integrity.ports import ClockTimes, GateContext, LimitCheck, SlotHolder
from rules.ratelimit.gate import RateLimitGate
from rules.ratelimit.memory import MemoryLimiter, epoch_ms

log = logging.getLogger("rules.ratelimit")

#: Reasons of a decision that recorded nothing in the limiter (all-or-nothing hits).
_NO_SLOT = frozenset({Reason.DUPLICATE_TICKET.value, Reason.LIMITER_UNAVAILABLE.value})


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild restored: ratings replanned, limiter entries added."""

    ratings: int
    entries: int


def holds_slots(reasons: Iterable[str]) -> bool:
    """Whether a decision with these reasons consumed rate-limit slots."""
    return not any(r in _NO_SLOT or r.startswith("rate_limit.") for r in reasons)


def horizon(latest: datetime, gate: RateLimitGate) -> datetime:
    """The earliest time on a clock whose ratings can still count against a hit at or
    after ``latest``: the longest sliding window back, and the start of the previous
    calendar day (a late rating may still fall on it)."""
    longest = max((rule.window_s or 0 for rule in gate.ruleset.limits), default=0)
    tz = gate.ruleset.tz
    day = latest.astimezone(tz).date() - timedelta(days=1)
    return min(latest - timedelta(seconds=longest), datetime.combine(day, time(0), tzinfo=tz))


def replay_lateness_ms(gate: RateLimitGate) -> int:
    """How far behind the latest replayed rating a replayed rating may come and still be
    judged against every counter that can matter (ms): at least as far back as any
    :func:`horizon` reaches (the longest sliding window, and the start of the previous
    calendar day, at most 49 hours back across a daylight-saving change). The in-process
    limiter keeps its keys that long in replayed time (``MemoryLimiter.bound_replay``),
    so an uninterrupted replay keeps at least what a rebuild restores."""
    longest = max((rule.window_s or 0 for rule in gate.ruleset.limits), default=0)
    return max(longest, 49 * 3600) * 1000


class SlotSource(Protocol):
    """The two read models of :class:`integrity.ports.Ledger` a rebuild needs."""

    def latest_decided(self) -> ClockTimes: ...

    def recent_slot_holders(self, since: ClockTimes) -> list[SlotHolder]: ...


def rebuild(ledger: SlotSource, gate: RateLimitGate, limiter: MemoryLimiter) -> Rebuilt:
    """Record in ``limiter`` every rating of ``ledger`` that still holds slots (see module)."""
    latest = ledger.latest_decided()
    since = ClockTimes(
        replay=None if latest.replay is None else horizon(latest.replay, gate),
        live=None if latest.live is None else horizon(latest.live, gate),
    )
    calls = [_call(h, gate) for h in ledger.recent_slot_holders(since) if holds_slots(h.reasons)]
    added = limiter.restore(calls)
    if calls:
        log.info("in-process limiter: %d entries rebuilt from %d ratings", added, len(calls))
    return Rebuilt(ratings=len(calls), entries=added)


def _call(holder: SlotHolder, gate: RateLimitGate) -> tuple[tuple[LimitCheck, ...], str, int, int]:
    r = holder.rating
    plan = gate.plan(r, GateContext(replay=holder.replay, rule_set_id=""))
    received_ms = epoch_ms(r.received_at)
    at_ms = plan.at_ms if plan.at_ms is not None else received_ms
    return plan.checks, r.fingerprint, at_ms, received_ms
