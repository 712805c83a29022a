"""Rate limiting: the algorithm (the gate) apart from the storage (memory, Redis).

:func:`limiter_from_url` picks a storage backend by URL scheme;
:class:`~rules.ratelimit.gate.RateLimitGate` turns a rule set into checks for one rating.
"""

from __future__ import annotations

from integrity.clock import Clock
from integrity.errors import ConfigError
from integrity.ports import Limiter
from rules.ratelimit.breaker import BreakerState, CircuitBreaker, CircuitOpen
from rules.ratelimit.gate import RateLimitGate
from rules.ratelimit.memory import MemoryLimiter

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "MemoryLimiter",
    "RateLimitGate",
    "limiter_from_url",
]


def limiter_from_url(
    url: str, *, namespace: str = "integrity", clock: Clock | None = None
) -> Limiter:
    """A limiter for ``url``.

    ``memory://`` is an in-process :class:`MemoryLimiter` (nothing on disk: an embedded
    instance rebuilds its counters from the ledger when it opens).
    ``redis+sentinel://h1:26379,h2:26379/SERVICE[/DB]`` asks Redis Sentinel for the master.
    ``redis://``, ``rediss://`` and ``unix://`` give a
    :class:`~rules.ratelimit.redis_store.RedisLimiter` with short timeouts (0.1 s) and a
    circuit breaker driven by ``clock``.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError(f"limiter URL {url!r} has no scheme (memory://, redis://, unix://)")
    if scheme == "memory":
        if rest:
            raise ConfigError(
                f"limiter URL {url!r}: the in-process limiter keeps no file (its counters "
                "are rebuilt from the ledger when the instance opens); use memory://"
            )
        return MemoryLimiter(clock, namespace=namespace)
    if scheme == "redis+sentinel":
        from rules.ratelimit.redis_store import RedisLimiter

        return RedisLimiter.from_sentinel_url(url, namespace=namespace, clock=clock)
    if scheme in ("redis", "rediss", "unix"):
        from rules.ratelimit.redis_store import RedisLimiter

        return RedisLimiter.from_url(url, namespace=namespace, clock=clock)
    raise ConfigError(
        f"limiter URL {url!r}: unknown scheme {scheme!r} (memory, redis, rediss, unix, redis+sentinel)"
    )
