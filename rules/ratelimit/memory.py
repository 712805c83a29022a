"""The in-process rate-limit store: the reference semantics, and the embedded default.

:class:`MemoryLimiter` behaves exactly like :class:`~rules.ratelimit.redis_store.RedisLimiter`
running ``hit.lua`` (the contract suite in ``tests/contract/test_limiter.py`` runs one set
of tests against both). It holds one lock, so it is safe across threads of one process,
and it can :meth:`~MemoryLimiter.snapshot` its counters to a JSON file and
:meth:`~MemoryLimiter.load` them back, so the embedded instance keeps its counters
between command-line runs.
"""

from __future__ import annotations

import bisect
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from integrity.clock import Clock, SystemClock
from integrity.errors import ConfigError
from integrity.ports import LimitCheck, LimitFailure, LimitOutcome

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SNAPSHOT_VERSION = 1
_SWEEP_EVERY = 10_000  # hits between sweeps of expired keys


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
        if not all(isinstance(v, int) for v in (c.window_ms, c.limit, c.ttl_ms)):
            raise ValueError(f"check {c.rule_id!r}: window_ms, limit and ttl_ms must be integers")
        if c.limit < 1:
            raise ValueError(f"check {c.rule_id!r}: limit must be >= 1, got {c.limit}")
        if c.window_ms < 0:
            raise ValueError(f"check {c.rule_id!r}: window_ms must be >= 0, got {c.window_ms}")
        if c.ttl_ms < 1:
            raise ValueError(f"check {c.rule_id!r}: ttl_ms must be >= 1, got {c.ttl_ms}")
        if not c.key:
            raise ValueError(f"check {c.rule_id!r}: empty key")


@dataclass
class _Bucket:
    """One key: its members sorted by (score, member), like a Redis sorted set."""

    entries: list[tuple[int, str]] = field(default_factory=list)
    scores: dict[str, int] = field(default_factory=dict)
    expires_at_ms: int | None = None

    def trim(self, upto: int) -> None:
        """Drop every entry with score <= ``upto`` (ms)."""
        cut = bisect.bisect_right(self.entries, upto, key=_score)
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
        score = self.scores.pop(member, None)
        if score is not None:
            self.entries.remove((score, member))

    def add(self, score: int, member: str) -> None:
        """Add ``member`` unless present (``ZADD NX``)."""
        if member in self.scores:
            return
        self.scores[member] = score
        bisect.insort(self.entries, (score, member))


def _score(entry: tuple[int, str]) -> int:
    return entry[0]


class MemoryLimiter:
    """Sliding-log limiter in process memory; same semantics as ``hit.lua``.

    A hit at ``now`` counts the recorded hits in ``(now - window_ms, now]``: hits recorded
    later than ``now`` (replay out of time order) are not counted, so only a replay in
    time order is judged exactly as live. ``clock`` gives the time of a live hit
    (``at_ms=None``) and the time key expiry is measured against (Redis: its own clock). ``namespace`` limits what :meth:`reset`
    forgets to keys starting with ``namespace + ":"``. ``path`` is the default file of
    :meth:`snapshot` and :meth:`load`.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        namespace: str = "integrity",
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.namespace = namespace
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._keys: dict[str, _Bucket] = {}
        self._hits_since_sweep = 0

    # --- Limiter port ------------------------------------------------------------------

    def hit(self, checks: Sequence[LimitCheck], member: str, at_ms: int | None) -> LimitOutcome:
        """Check every rule; record ``member`` at ``at_ms`` (ms; ``None``: clock) in all or none."""
        validate_checks(checks, member)
        with self._lock:
            return self._hit(checks, member, at_ms)

    def hit_many(
        self, calls: Sequence[tuple[Sequence[LimitCheck], str, int | None]]
    ) -> list[LimitOutcome]:
        """Several :meth:`hit` calls in order, under one lock acquisition."""
        for checks, member, _ in calls:
            validate_checks(checks, member)
        with self._lock:
            return [self._hit(checks, member, at_ms) for checks, member, at_ms in calls]

    def release(self, checks: Sequence[LimitCheck], member: str) -> None:
        """Give back the slots ``member`` holds in these keys (a refund; no-op where absent)."""
        with self._lock:
            for check in checks:
                bucket = self._keys.get(check.key)
                if bucket is not None:
                    bucket.remove(member)

    def reset(self) -> None:
        """Forget every counter whose key starts with ``namespace + ":"``."""
        prefix = self.namespace + ":"
        with self._lock:
            for key in [k for k in self._keys if k.startswith(prefix)]:
                del self._keys[key]

    # --- persistence -------------------------------------------------------------------

    def snapshot(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write every live counter to a JSON file (atomically: temp file + rename)."""
        target = self._target(path)
        with self._lock:
            now = self._clock_ms()
            self._sweep(now)
            doc = {
                "version": _SNAPSHOT_VERSION,
                "namespace": self.namespace,
                "keys": {
                    key: {"expires_at_ms": b.expires_at_ms, "entries": b.entries}
                    for key, b in self._keys.items()
                },
            }
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, separators=(",", ":"))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def load(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Replace the counters with a snapshot's; ``False`` (and no change) if no file exists.

        Keys that have expired since the snapshot are dropped. A file that is not a
        snapshot raises :class:`ConfigError`.
        """
        source = self._target(path)
        try:
            text = source.read_text("utf-8")
        except FileNotFoundError:
            return False
        try:
            keys = _parse_snapshot(json.loads(text))
        except (ValueError, TypeError, KeyError) as err:
            raise ConfigError(f"{source}: not a rate-limit snapshot: {err}") from err
        with self._lock:
            self._keys = keys
            self._sweep(self._clock_ms())
        return True

    # --- internals ---------------------------------------------------------------------

    def _target(self, path: str | os.PathLike[str] | None) -> Path:
        if path is not None:
            return Path(path)
        if self.path is None:
            raise ValueError("no snapshot path given and none configured")
        return self.path

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

    def _hit(self, checks: Sequence[LimitCheck], member: str, at_ms: int | None) -> LimitOutcome:
        clock_ms = self._clock_ms()
        now = clock_ms if at_ms is None else int(at_ms)
        self._hits_since_sweep += 1
        if self._hits_since_sweep >= _SWEEP_EVERY:
            self._sweep(clock_ms)

        failures: list[LimitFailure] = []
        for check in checks:
            bucket = self._live(check.key, clock_ms)
            if bucket is None:
                continue  # an empty key: count 0 < limit, and the member is not in it
            if check.window_ms > 0:
                bucket.trim(now - check.window_ms)
                if not bucket.entries:
                    del self._keys[check.key]  # Redis drops an empty sorted set
                    continue
            if member in bucket.scores:
                continue
            if check.window_ms > 0:
                start, stop = bucket.in_window(now - check.window_ms, now)
                count = stop - start
            else:
                start, count = 0, len(bucket.entries)
            if count >= check.limit:
                retry = 0
                if check.window_ms > 0:
                    # the entry that must leave the window for the count to drop below limit
                    score = bucket.entries[start + count - check.limit][0]
                    retry = score + check.window_ms - now
                failures.append(LimitFailure(check.rule_id, retry))

        if failures:
            return LimitOutcome(allowed=False, failures=tuple(failures))
        for check in checks:
            bucket = self._live(check.key, clock_ms)
            if bucket is None:
                bucket = self._keys[check.key] = _Bucket()
            bucket.add(now, member)
            expires = clock_ms + check.ttl_ms
            if bucket.expires_at_ms is None or bucket.expires_at_ms < expires:
                bucket.expires_at_ms = expires
        return LimitOutcome(allowed=True)

    def _sweep(self, clock_ms: int) -> None:
        self._hits_since_sweep = 0
        for key in list(self._keys):
            self._live(key, clock_ms)


def _parse_snapshot(doc: Any) -> dict[str, _Bucket]:
    if not isinstance(doc, dict) or doc.get("version") != _SNAPSHOT_VERSION:
        raise ValueError(f"expected a snapshot of version {_SNAPSHOT_VERSION}")
    out: dict[str, _Bucket] = {}
    for key, raw in dict(doc["keys"]).items():
        bucket = _Bucket(
            expires_at_ms=None if raw["expires_at_ms"] is None else int(raw["expires_at_ms"])
        )
        for score, member in raw["entries"]:
            bucket.add(int(score), str(member))
        if bucket.entries:
            out[str(key)] = bucket
    return out
