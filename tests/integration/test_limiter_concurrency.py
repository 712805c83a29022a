"""Many threads against one limit: exactly ``limit`` are admitted, on real Redis and in memory."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from integrity.clock import SystemClock
from integrity.ports import LimitCheck, Limiter, LimitOutcome
from rules.ratelimit import MemoryLimiter
from rules.ratelimit.redis_store import RedisLimiter

THREADS = 16
HITS_PER_THREAD = 50
T0 = 1_700_000_000_000
HOUR_MS = 3_600_000


def hammer(
    hit: Callable[[int, int], LimitOutcome],
    threads: int = THREADS,
    per_thread: int = HITS_PER_THREAD,
) -> list[LimitOutcome]:
    """Run ``hit(thread, i)`` from every thread at once; return every outcome."""
    start = threading.Barrier(threads)
    results: list[list[LimitOutcome]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                results[t].append(hit(t, i))
        except BaseException as err:  # surfaced in the main thread below
            errors.append(err)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors, errors
    return [o for rs in results for o in rs]


@pytest.fixture(params=["redis", "memory"])
def limiter(request: pytest.FixtureRequest) -> Iterator[tuple[Limiter, str]]:
    if request.param == "memory":
        yield MemoryLimiter(SystemClock(), namespace="mem"), "mem"
        return
    url: str = request.getfixturevalue("redis_url")
    ns: str = request.getfixturevalue("redis_namespace")
    # a pool big enough for every thread; short timeouts as in production
    redis_limiter = RedisLimiter.from_url(url, namespace=ns, socket_timeout_s=2.0)
    yield redis_limiter, ns
    redis_limiter.close()


@pytest.mark.parametrize("limit", [1, 37, 799])
def test_exactly_limit_admitted_under_contention(limiter: tuple[Limiter, str], limit: int) -> None:
    lim, ns = limiter
    one = LimitCheck("one", f"{ns}:one", HOUR_MS, limit, HOUR_MS)
    wide = LimitCheck("wide", f"{ns}:wide", 0, 10_000, HOUR_MS)
    outcomes = hammer(lambda t, i: lim.hit([one, wide], f"m{t}-{i}", T0))
    admitted = sum(o.allowed for o in outcomes)
    assert admitted == min(limit, THREADS * HITS_PER_THREAD)
    # all or nothing under contention: the other key holds exactly the admitted members
    probe = LimitCheck("wide", f"{ns}:wide", 0, admitted + 1, HOUR_MS)
    assert lim.hit([probe], "probe-1", T0).allowed
    assert not lim.hit([probe], "probe-2", T0).allowed


def test_exactly_limit_admitted_live(limiter: tuple[Limiter, str]) -> None:
    lim, ns = limiter
    c = LimitCheck("live", f"{ns}:live", HOUR_MS, 25, HOUR_MS)
    outcomes = hammer(lambda t, i: lim.hit([c], f"m{t}-{i}", None))
    assert sum(o.allowed for o in outcomes) == 25


def test_concurrent_retries_of_few_ratings_take_one_slot_each(
    limiter: tuple[Limiter, str],
) -> None:
    lim, ns = limiter
    c = LimitCheck("retry", f"{ns}:retry", HOUR_MS, 5, HOUR_MS)
    # every thread submits the same 8 ratings over and over: 5 fit, and they keep passing
    seen: dict[str, set[bool]] = {}
    lock = threading.Lock()

    def hit(t: int, i: int) -> LimitOutcome:
        member = f"rating-{i % 8}"
        out = lim.hit([c], member, T0)
        with lock:
            seen.setdefault(member, set()).add(out.allowed)
        return out

    hammer(hit, per_thread=40)
    admitted = [m for m, results in seen.items() if True in results]
    assert len(admitted) == 5
    # no slot frees within the hour, so each rating was either always admitted or never
    assert all(len(results) == 1 for results in seen.values())
    for m in admitted:
        assert lim.hit([c], m, T0 + 1).allowed
    assert not lim.hit([c], "rating-new", T0 + 1).allowed


def test_hit_many_batches_from_threads_admit_exactly_limit(limiter: tuple[Limiter, str]) -> None:
    lim, ns = limiter
    c = LimitCheck("batch", f"{ns}:batch", HOUR_MS, 100, HOUR_MS)

    def batch(t: int, i: int) -> LimitOutcome:
        return _fold(lim.hit_many([([c], f"m{t}-{i}-{k}", T0) for k in range(10)]))

    outcomes = hammer(batch, per_thread=5)
    assert sum(len(o.failures) for o in outcomes) == THREADS * 5 * 10 - 100


def _fold(outs: list[LimitOutcome]) -> LimitOutcome:
    """Fold a batch into one outcome whose failures are the batch's rejected hits."""
    failures = tuple(f for o in outs for f in o.failures)
    return LimitOutcome(allowed=not failures, failures=failures)
