"""The in-process rate-limit store: the reference semantics, and the embedded default.

:class:`MemoryLimiter` behaves exactly like :class:`~rules.ratelimit.redis_store.RedisLimiter`
running ``hit.lua`` (the contract suite in ``tests/contract/test_limiter.py`` runs one set
of tests against both). It holds one lock, so it is safe across threads of one process.
It keeps nothing on disk: an embedded instance rebuilds its counters from the ledger when
it opens (:meth:`~MemoryLimiter.restore`, driven by :mod:`rules.ratelimit.rebuild`), so a
crash can never leave them disagreeing with the ratings written.
"""

from __future__ import annotations

import bisect
import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from integrity.clock import Clock, SystemClock
from integrity.ports import LimitCheck, LimitFailure, LimitOutcome

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Keys touched by hits between sweeps of expired keys: at least this many, and at least
# as many as the last sweep kept. A sweep visits the keys kept plus at most the keys
# touched since, so it costs O(1) per key touched however many keys there are, and the
# keys held stay within twice what a sweep keeps (plus this many). Keys expire by the
# clock, like Redis keys; a replay (hits at given times) also drops the keys its replayed
# time has left behind (``MemoryLimiter.bound_replay``), or replaying a year would keep
# them all.
_SWEEP_EVERY = 10_000


def epoch_ms(at: datetime) -> int:
    """A timezone-aware datetime as integer epoch milliseconds (floor)."""
    if at.tzinfo is None:
        raise ValueError("epoch_ms needs a timezone-aware datetime")
    return (at - _EPOCH) // timedelta(milliseconds=1)


def validate_checks(checks: Sequence[LimitCheck], member: str) -> None:
    """Raise ``ValueError`` for a check no backend could honour (limit < 1, ttl_ms < 1 ...)."""
    if not isinstance(member, str) or not member:
        raise ValueError("a limiter member must be a non-empty string")
    for c in checks:
        window_ms, limit, ttl_ms = c.window_ms, c.limit, c.ttl_ms
        if not (isinstance(window_ms, int) and isinstance(limit, int) and isinstance(ttl_ms, int)):
            raise ValueError(f"check {c.rule_id!r}: window_ms, limit and ttl_ms must be integers")
        if limit < 1:
            raise ValueError(f"check {c.rule_id!r}: limit must be >= 1, got {limit}")
        if window_ms < 0:
            raise ValueError(f"check {c.rule_id!r}: window_ms must be >= 0, got {window_ms}")
        if ttl_ms < 1:
            raise ValueError(f"check {c.rule_id!r}: ttl_ms must be >= 1, got {ttl_ms}")
        if not c.key:
            raise ValueError(f"check {c.rule_id!r}: empty key")


#: Entries a key holds before it keeps an index of its members (member -> score): below
#: it, a member is found by a look through the few entries. Most keys hold one entry (a
#: device's, an address's, a device's at a window), and a dict per key was about a third
#: of the embedded limiter's memory in a dense month's replay.
_INDEX_AT = 8


@dataclass(slots=True)
class _Bucket:
    """One key: its members sorted by (score, member), like a Redis sorted set."""

    entries: list[tuple[int, str]] = field(default_factory=list)
    #: member -> score, once the key has held more than :data:`_INDEX_AT` entries
    #: (``None`` before: the entries are looked through)
    scores: dict[str, int] | None = None
    expires_at_ms: int | None = None
    #: The latest hit time (ms; replayed or clock) plus the key's ttl: no hit at or after
    #: it can count this key's entries (a sliding log has trimmed them all by then; a
    #: calendar day's key is named by a day that is over).
    until_ms: int = 0

    def score_of(self, member: str) -> int | None:
        """``member``'s score, or ``None`` when it is not in the key (``ZSCORE``)."""
        scores = self.scores
        if scores is not None:
            return scores.get(member)
        for score, m in self.entries:
            if m == member:
                return score
        return None

    def trim(self, upto: int) -> None:
        """Drop every entry with score <= ``upto`` (ms)."""
        cut = bisect.bisect_right(self.entries, upto, key=_score)
        if self.scores is not None:
            for _, member in self.entries[:cut]:
                del self.scores[member]
        del self.entries[:cut]

    def in_window(self, lo_excl: int, hi_incl: int) -> tuple[int, int]:
        """Index range [start, stop) of the entries with lo_excl < score <= hi_incl."""
        start = bisect.bisect_right(self.entries, lo_excl, key=_score)
        stop = bisect.bisect_right(self.entries, hi_incl, key=_score)
        return start, max(start, stop)

    def remove(self, member: str) -> None:
        """Remove ``member`` if present (``ZREM``)."""
        score = self.score_of(member)
        if score is not None:
            if self.scores is not None:
                del self.scores[member]
            self.entries.remove((score, member))

    def add(self, score: int, member: str) -> bool:
        """Add ``member`` unless present (``ZADD NX``); returns whether it was added."""
        if self.score_of(member) is not None:
            return False
        _insert(self, score, member)
        return True


def _insert(bucket: _Bucket, score: int, member: str) -> None:
    """Add ``member``, known not to be in ``bucket``, at ``score`` (and index the key's
    members once it holds more than :data:`_INDEX_AT`)."""
    entries = bucket.entries
    entry = (score, member)
    if not entries or entries[-1] < entry:
        entries.append(entry)  # in time order: the usual case
    else:
        bisect.insort(entries, entry)
    scores = bucket.scores
    if scores is not None:
        scores[member] = score
    elif len(entries) > _INDEX_AT:
        bucket.scores = {m: sc for sc, m in entries}


def _score(entry: tuple[int, str]) -> int:
    return entry[0]


@functools.cache
def _all_added(n: int) -> LimitOutcome:
    """The outcome of a hit recorded in all of its ``n`` keys (frozen: shared)."""
    return LimitOutcome(allowed=True, added=tuple(range(n)))


class MemoryLimiter:
    """Sliding-log limiter in process memory; same semantics as ``hit.lua``.

    A hit at ``now`` counts the recorded hits in ``(now - window_ms, now]``: hits recorded
    later than ``now`` (replay out of time order) are not counted, so only a replay in
    time order is judged exactly as live. ``clock`` gives the time of a live hit
    (``at_ms=None``) and the time key expiry is measured against (Redis: its own clock).
    ``namespace`` limits what :meth:`reset` forgets to keys starting with ``namespace + ":"``.
    """

    def __init__(self, clock: Clock | None = None, *, namespace: str = "integrity") -> None:
        self.clock: Clock = clock or SystemClock()
        self.namespace = namespace
        self._lock = threading.Lock()
        self._keys: dict[str, _Bucket] = {}
        self._touched_since_sweep = 0  # keys touched by hits since the last sweep
        self._kept_at_sweep = 0  # keys the last sweep kept
        #: how far behind the latest replayed hit a replayed hit may come (ms), or None:
        #: keys are then dropped by the clock only (see ``bound_replay``)
        self._lateness_ms: int | None = None
        self._replayed_ms: int | None = None  # the latest hit time given (``at_ms``)
        self._pending: Callable[[], object] | None = None
        self._pending_lock = threading.Lock()

    def defer(self, fill: Callable[[], object]) -> None:
        """Run ``fill`` (which restores the counters, e.g. a rebuild from the ledger) just
        before the first hit, release or size, not now: a process that never checks a
        limit (``integrity detect``, reports) never pays for it."""
        self._pending = fill

    def bound_replay(self, lateness_ms: int) -> None:
        """Also drop keys by the hit times given (replayed time), not only by the clock.

        A replay (``integrity ingest`` of history) gives each hit its own time, and its
        keys would otherwise live ``ttl_ms`` past the *clock* time of their last hit, so a
        long replay kept every key it ever touched. Bounded, a key is dropped once the
        latest replayed hit time is ``lateness_ms`` past the key's last hit plus its ttl:
        the counters then hold what the busiest stretch of replayed time needs, not the
        whole replay.

        Decisions are unchanged for every hit no more than ``lateness_ms`` earlier than
        the latest replayed hit (a hit at or after a key's last hit plus its ttl counts
        none of its entries). An even later one is judged without the dropped keys, as
        a rebuild from the ledger judges it (``rules.ratelimit.rebuild.horizon``).
        """
        if lateness_ms < 0:
            raise ValueError(f"lateness_ms must be >= 0, got {lateness_ms}")
        self._lateness_ms = int(lateness_ms)

    def keys(self) -> int:
        """How many keys the counters hold (tests, benchmarks)."""
        self._ready()
        with self._lock:
            return len(self._keys)

    def _ready(self) -> None:
        if self._pending is None:
            return
        with self._pending_lock:
            fill, self._pending = self._pending, None
            if fill is not None:
                try:
                    fill()
                except BaseException:
                    self._pending = fill  # not filled: try again on the next use
                    raise

    # --- Limiter port ------------------------------------------------------------------

    def hit(self, checks: Sequence[LimitCheck], member: str, at_ms: int | None) -> LimitOutcome:
        """Check every rule; record ``member`` at ``at_ms`` (ms; ``None``: clock) in all or none."""
        validate_checks(checks, member)
        self._ready()
        with self._lock:
            return self._hit(checks, member, at_ms)

    def hit_many(
        self, calls: Sequence[tuple[Sequence[LimitCheck], str, int | None]]
    ) -> list[LimitOutcome]:
        """Several :meth:`hit` calls in order, under one lock acquisition and one reading
        of the clock (the batch is judged as of one instant)."""
        for checks, member, _ in calls:
            validate_checks(checks, member)
        self._ready()
        with self._lock:
            clock_ms = self._clock_ms()
            hit = self._hit
            return [hit(checks, member, at_ms, clock_ms) for checks, member, at_ms in calls]

    def release(self, checks: Sequence[LimitCheck], member: str) -> None:
        """Give back the slots ``member`` holds in these keys (a refund; no-op where absent)."""
        self._ready()
        with self._lock:
            for check in checks:
                bucket = self._keys.get(check.key)
                if bucket is not None:
                    bucket.remove(member)

    def reset(self) -> None:
        """Forget every counter whose key starts with ``namespace + ":"``."""
        prefix = self.namespace + ":"
        self._pending = None  # what a deferred rebuild would restore is forgotten too
        with self._lock:
            for key in [k for k in self._keys if k.startswith(prefix)]:
                del self._keys[key]

    def restore(self, calls: Sequence[tuple[Sequence[LimitCheck], str, int, int]]) -> int:
        """Record members without checking any limit: counters rebuilt from the ratings a
        ledger kept (see :mod:`rules.ratelimit.rebuild`).

        Each call is ``(checks, member, at_ms, recorded_at_ms)``: the member goes into
        every key at score ``at_ms`` (unless already there, like a hit), and the key lives
        ``ttl_ms`` past ``recorded_at_ms``, the clock time of the original hit, so a key
        that would have expired by now is dropped as it would have been. Returns how many
        entries were added.
        """
        for checks, member, _, _ in calls:
            validate_checks(checks, member)
        added = 0
        with self._lock:
            clock_ms = self._clock_ms()
            for checks, member, at_ms, recorded_at_ms in calls:
                for check in checks:
                    bucket = self._live(check.key, clock_ms)
                    if bucket is None:
                        bucket = self._keys[check.key] = _Bucket()
                    added += bucket.add(int(at_ms), member)
                    expires = int(recorded_at_ms) + check.ttl_ms
                    if bucket.expires_at_ms is None or bucket.expires_at_ms < expires:
                        bucket.expires_at_ms = expires
                    until = int(at_ms) + check.ttl_ms
                    if bucket.until_ms < until:
                        bucket.until_ms = until
            self._sweep(clock_ms)
        return added

    def size(self) -> int:
        """How many entries the counters hold, over every key (tests, benchmarks)."""
        self._ready()
        with self._lock:
            return sum(len(b.entries) for b in self._keys.values())

    # --- internals ---------------------------------------------------------------------

    def _clock_ms(self) -> int:
        return epoch_ms(self.clock.now())

    def _live(self, key: str, clock_ms: int) -> _Bucket | None:
        bucket = self._keys.get(key)
        if (
            bucket is not None
            and bucket.expires_at_ms is not None
            and bucket.expires_at_ms <= clock_ms
        ):
            del self._keys[key]
            return None
        return bucket

    def _hit(
        self,
        checks: Sequence[LimitCheck],
        member: str,
        at_ms: int | None,
        clock_ms: int | None = None,
    ) -> LimitOutcome:
        # Written for speed (ingest runs it for every rating): the steps of _live, trim,
        # in_window and add inlined, with the same results.
        if clock_ms is None:
            clock_ms = self._clock_ms()
        if at_ms is None:
            now = clock_ms
        else:
            now = int(at_ms)
            if self._replayed_ms is None or now > self._replayed_ms:
                self._replayed_ms = now
        self._touched_since_sweep += len(checks)
        touched = self._touched_since_sweep
        if touched >= _SWEEP_EVERY and touched >= self._kept_at_sweep:
            self._sweep(clock_ms)
        keys = self._keys

        failures: list[LimitFailure] = []
        for rule_id, key, window_ms, limit, _ in checks:  # LimitCheck's fields, unpacked
            bucket = keys.get(key)
            if bucket is None:
                continue  # an empty key: count 0 < limit, and the member is not in it
            expires = bucket.expires_at_ms
            if expires is not None and expires <= clock_ms:
                del keys[key]
                continue
            entries = bucket.entries
            if window_ms > 0:
                lo = now - window_ms
                if entries and entries[0][0] <= lo:  # trim: drop scores <= lo
                    cut = bisect.bisect_right(entries, lo, key=_score)
                    scores = bucket.scores
                    if scores is not None:
                        for _, gone in entries[:cut]:
                            del scores[gone]
                    del entries[:cut]
                if not entries:
                    del keys[key]  # Redis drops an empty sorted set
                    continue
            if bucket.score_of(member) is not None:
                continue
            if window_ms > 0:
                # every entry left is above lo: the window is entries[0:stop]
                start = 0
                count = (
                    len(entries)
                    if entries[-1][0] <= now
                    else bisect.bisect_right(entries, now, key=_score)
                )
            else:
                start, count = 0, len(entries)
            if count >= limit:
                retry = 0
                if window_ms > 0:
                    # the entry that must leave the window for the count to drop below limit
                    score = entries[start + count - limit][0]
                    retry = score + window_ms - now
                failures.append(LimitFailure(rule_id, retry))

        if failures:
            return LimitOutcome(allowed=False, failures=tuple(failures))
        added = []
        for i, (_, key, _, _, ttl_ms) in enumerate(checks):
            bucket = keys.get(key)  # the loop above dropped every expired one
            if bucket is None:
                bucket = keys[key] = _Bucket()
            entries = bucket.entries
            if not entries and bucket.scores is None:  # a new key: the usual case, inlined
                entries.append((now, member))
                added.append(i)
            elif bucket.add(now, member):
                added.append(i)
            expires = clock_ms + ttl_ms
            if bucket.expires_at_ms is None or bucket.expires_at_ms < expires:
                bucket.expires_at_ms = expires
            until = now + ttl_ms
            if bucket.until_ms < until:
                bucket.until_ms = until
        if len(added) == len(checks):  # the usual case: one shared (immutable) outcome
            return _all_added(len(added))
        return LimitOutcome(allowed=True, added=tuple(added))

    def _sweep(self, clock_ms: int) -> None:
        """Drop the keys expired by the clock and, when bounded, those the replayed time
        has left behind (see :meth:`bound_replay`)."""
        self._touched_since_sweep = 0
        keys = self._keys
        behind: int | None = None
        if self._lateness_ms is not None and self._replayed_ms is not None:
            behind = self._replayed_ms - self._lateness_ms
        # kept keys copied into a new dict (a dict never shrinks as keys are deleted)
        if behind is None:
            kept = {
                k: b
                for k, b in keys.items()
                if b.expires_at_ms is None or b.expires_at_ms > clock_ms
            }
        else:
            kept = {
                k: b
                for k, b in keys.items()
                if (b.expires_at_ms is None or b.expires_at_ms > clock_ms) and b.until_ms > behind
            }
        self._keys = kept
        self._kept_at_sweep = len(kept)
