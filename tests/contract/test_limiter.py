"""One semantic suite for the Limiter port, run against every backend (memory, real Redis).

Times are explicit (``at_ms``) or come from an injected clock; nothing sleeps.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrity.clock import FrozenClock
from integrity.errors import ConfigError
from integrity.ports import LimitCheck, Limiter, LimitFailure, LimitOutcome
from rules.ratelimit import MemoryLimiter, limiter_from_url, memory
from rules.ratelimit.memory import epoch_ms
from rules.ratelimit.redis_store import RedisLimiter

T0 = 1_700_000_000_000  # epoch ms, an arbitrary replay time
BIG_TTL = 10**9  # ms: keys never expire while a test runs
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

ALLOWED = LimitOutcome(allowed=True)


@dataclass
class Backend:
    """A limiter under test, its key namespace, and its notion of 'now' (epoch ms)."""

    name: str
    limiter: Limiter
    ns: str
    now_ms: Callable[[], int]
    make: Callable[[str], Limiter]  # another limiter of the same kind for a namespace

    def key(self, name: str) -> str:
        return f"{self.ns}:{name}"

    def check(
        self,
        name: str,
        *,
        window_ms: int,
        limit: int,
        ttl_ms: int = BIG_TTL,
        rule: str | None = None,
    ) -> LimitCheck:
        return LimitCheck(rule or name, self.key(name), window_ms, limit, ttl_ms)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        clock = FrozenClock(START)
        yield Backend(
            "memory",
            MemoryLimiter(clock, namespace="mem"),
            "mem",
            lambda: epoch_ms(clock.now()),
            lambda n: MemoryLimiter(clock, namespace=n),
        )
        return
    url: str = request.getfixturevalue("redis_url")
    ns: str = request.getfixturevalue("redis_namespace")
    limiter = RedisLimiter.from_url(url, namespace=ns)

    def server_ms() -> int:
        sec, usec = limiter.client.time()
        return sec * 1000 + usec // 1000

    made: list[RedisLimiter] = []

    def make(n: str) -> Limiter:
        other = RedisLimiter.from_url(url, namespace=n)
        made.append(other)
        return other

    yield Backend("redis", limiter, ns, server_ms, make)
    for other in made:
        other.reset()
        other.close()
    limiter.close()


def fail(*pairs: tuple[str, int]) -> LimitOutcome:
    return LimitOutcome(
        allowed=False, failures=tuple(LimitFailure(rule, retry) for rule, retry in pairs)
    )


# --- exact limits, window edges ------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_admits_exactly_limit_hits_in_a_window(backend: Backend, limit: int) -> None:
    c = backend.check("k", window_ms=60_000, limit=limit)
    for i in range(limit):
        assert backend.limiter.hit([c], f"m{i}", T0 + i) == ALLOWED
    out = backend.limiter.hit([c], "over", T0 + limit)
    assert not out.allowed
    assert out.failures == (LimitFailure("k", T0 + 60_000 - (T0 + limit)),)


def test_hit_exactly_one_window_old_is_outside(backend: Backend) -> None:
    c = backend.check("k", window_ms=1_000, limit=1)
    assert backend.limiter.hit([c], "a", T0) == ALLOWED
    assert backend.limiter.hit([c], "b", T0 + 999) == fail(("k", 1))
    assert backend.limiter.hit([c], "c", T0 + 1_000) == ALLOWED
    assert backend.limiter.hit([c], "d", T0 + 1_999) == fail(("k", 1))


def test_a_rejected_hit_takes_no_slot(backend: Backend) -> None:
    c = backend.check("k", window_ms=1_000, limit=2)
    assert backend.limiter.hit([c], "a", T0) == ALLOWED
    assert backend.limiter.hit([c], "b", T0 + 500) == ALLOWED
    assert backend.limiter.hit([c], "c", T0 + 900) == fail(("k", 100))
    # only a and b were recorded: once a leaves the window, one slot is free
    assert backend.limiter.hit([c], "d", T0 + 1_000) == ALLOWED
    assert backend.limiter.hit([c], "e", T0 + 1_100) == fail(("k", 400))


# --- retry_after ---------------------------------------------------------------------


def test_retry_after_is_when_the_oldest_in_window_hit_leaves(backend: Backend) -> None:
    c = backend.check("k", window_ms=1_000, limit=2)
    assert backend.limiter.hit([c], "a", T0 + 100) == ALLOWED
    assert backend.limiter.hit([c], "b", T0 + 300) == ALLOWED
    assert backend.limiter.hit([c], "c", T0 + 500) == fail(("k", 600))
    assert backend.limiter.hit([c], "c", T0 + 1_099) == fail(("k", 1))


def test_retry_after_over_the_limit_uses_the_entry_that_must_expire(backend: Backend) -> None:
    # Three hits under a looser rule on the same key, then a stricter one (limit 1):
    # two entries must leave before the count drops below 1; the last of them is at +300.
    loose = backend.check("k", window_ms=1_000, limit=3)
    for i, t in enumerate((100, 200, 300)):
        assert backend.limiter.hit([loose], f"m{i}", T0 + t) == ALLOWED
    strict = backend.check("k", window_ms=1_000, limit=1)
    assert backend.limiter.hit([strict], "x", T0 + 400) == fail(("k", 300 + 1_000 - 400))
    limit2 = backend.check("k", window_ms=1_000, limit=2)
    assert backend.limiter.hit([limit2], "x", T0 + 400) == fail(("k", 200 + 1_000 - 400))


# --- all or nothing, several failures ------------------------------------------------


def test_a_failing_rule_records_nothing_in_the_other_keys(backend: Backend) -> None:
    tight = backend.check("tight", window_ms=60_000, limit=1)
    loose = backend.check("loose", window_ms=60_000, limit=2)
    assert backend.limiter.hit([tight, loose], "m0", T0) == ALLOWED
    assert backend.limiter.hit([tight, loose], "m1", T0 + 1) == fail(("tight", 59_999))
    # m1 was not recorded in `loose`: it still has one free slot, then none
    assert backend.limiter.hit([loose], "m2", T0 + 2) == ALLOWED
    assert backend.limiter.hit([loose], "m3", T0 + 3) == fail(("loose", 59_997))


def test_every_failing_rule_is_reported_in_check_order(backend: Backend) -> None:
    a = backend.check("a", window_ms=10_000, limit=1)
    b = backend.check("b", window_ms=0, limit=1)
    c = backend.check("c", window_ms=10_000, limit=5)
    assert backend.limiter.hit([a, b, c], "m0", T0) == ALLOWED
    assert backend.limiter.hit([b, c, a], "m1", T0 + 10) == fail(("b", 0), ("a", 9_990))


def test_no_checks_is_allowed(backend: Backend) -> None:
    assert backend.limiter.hit([], "m", T0) == ALLOWED
    assert backend.limiter.hit_many([([], "m", None), ([], "n", T0)]) == [ALLOWED, ALLOWED]


def test_bad_checks_are_refused_before_any_call(backend: Backend) -> None:
    with pytest.raises(ValueError, match="limit"):
        backend.limiter.hit([backend.check("k", window_ms=1, limit=0)], "m", T0)
    with pytest.raises(ValueError, match="ttl_ms"):
        backend.limiter.hit([backend.check("k", window_ms=1, limit=1, ttl_ms=0)], "m", T0)
    with pytest.raises(ValueError, match="integers"):
        backend.limiter.hit([LimitCheck("k", backend.key("k"), 1.5, 1, 10)], "m", T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="member"):
        backend.limiter.hit([backend.check("k", window_ms=1, limit=1)], "", T0)


# --- idempotent per member -----------------------------------------------------------


def test_a_retried_member_passes_and_is_not_counted_twice(backend: Backend) -> None:
    c = backend.check("k", window_ms=60_000, limit=2)
    assert backend.limiter.hit([c], "r1", T0) == ALLOWED
    for t in (1, 2, 3):  # retries of the same rating (e.g. after a crash before the ledger)
        assert backend.limiter.hit([c], "r1", T0 + t) == ALLOWED
    assert backend.limiter.hit([c], "r2", T0 + 4) == ALLOWED
    assert backend.limiter.hit([c], "r3", T0 + 5) == fail(("k", 59_995))
    assert backend.limiter.hit([c], "r1", T0 + 6) == ALLOWED  # still a retry, still passes


def test_a_retry_keeps_its_first_time(backend: Backend) -> None:
    c = backend.check("k", window_ms=1_000, limit=1)
    assert backend.limiter.hit([c], "r1", T0) == ALLOWED
    assert backend.limiter.hit([c], "r1", T0 + 900) == ALLOWED
    # the slot frees when the first hit leaves the window, not the retry
    assert backend.limiter.hit([c], "r2", T0 + 1_000) == ALLOWED


def test_idempotence_is_per_key(backend: Backend) -> None:
    a = backend.check("a", window_ms=60_000, limit=1)
    b = backend.check("b", window_ms=60_000, limit=1)
    assert backend.limiter.hit([a], "r1", T0) == ALLOWED
    assert backend.limiter.hit([b], "other", T0) == ALLOWED
    # r1 passes `a` as a retry but `b` is full: the hit fails on `b` only
    assert backend.limiter.hit([a, b], "r1", T0 + 1) == fail(("b", 59_999))


def test_a_member_that_left_the_window_counts_again(backend: Backend) -> None:
    c = backend.check("k", window_ms=1_000, limit=1)
    assert backend.limiter.hit([c], "r1", T0) == ALLOWED
    assert backend.limiter.hit([c], "r1", T0 + 1_000) == ALLOWED
    assert backend.limiter.hit([c], "r2", T0 + 1_500) == fail(("k", 500))


# --- fixed buckets -------------------------------------------------------------------


def test_fixed_bucket_counts_every_member_whatever_its_time(backend: Backend) -> None:
    day = backend.check("day", window_ms=0, limit=2)
    assert backend.limiter.hit([day], "a", T0) == ALLOWED
    assert backend.limiter.hit([day], "b", T0 + 10 * 86_400_000) == ALLOWED
    assert backend.limiter.hit([day], "c", T0 - 86_400_000) == fail(("day", 0))
    assert backend.limiter.hit([day], "a", T0 + 1) == ALLOWED  # retry
    other_day = LimitCheck("day", backend.key("day:2024-05-02"), 0, 2, BIG_TTL)
    assert backend.limiter.hit([other_day], "c", T0) == ALLOWED


# --- hit_many, live mode, reset, expiry ----------------------------------------------


def test_hit_many_equals_sequential_hits(backend: Backend) -> None:
    def calls(ns: str) -> list[tuple[list[LimitCheck], str, int | None]]:
        a = LimitCheck("a", f"{ns}:a", 1_000, 2, BIG_TTL)
        b = LimitCheck("b", f"{ns}:b", 0, 3, BIG_TTL)
        out: list[tuple[list[LimitCheck], str, int | None]] = []
        for i in range(12):
            checks = [a, b] if i % 3 else [a]
            member = f"m{i % 5}"
            out.append((checks, member, T0 + 250 * i))
        out.insert(4, ([], "nothing", T0))
        return out

    ns_many, ns_seq = f"{backend.ns}:many", f"{backend.ns}:seq"
    many = backend.make(ns_many).hit_many(calls(ns_many))
    seq_limiter = backend.make(ns_seq)
    seq = [seq_limiter.hit(c, m, t) for c, m, t in calls(ns_seq)]
    assert many == seq
    assert any(not o.allowed for o in many) and any(o.allowed for o in many)


def test_live_hits_use_the_backend_clock(backend: Backend) -> None:
    c = backend.check("k", window_ms=60_000, limit=1)
    before = backend.now_ms()
    assert backend.limiter.hit([c], "live", None) == ALLOWED
    after = backend.now_ms()
    # a replayed hit at `after` sees the live hit in its window
    out = backend.limiter.hit([c], "probe", after)
    assert not out.allowed
    (failure,) = out.failures
    # retry_after = live time + window - after, with before <= live time <= after
    assert before + 60_000 - after <= failure.retry_after_ms <= 60_000
    # ... and a replayed hit one window after `after` does not see it
    assert backend.limiter.hit([c], "probe", after + 60_000) == ALLOWED


def test_live_hit_on_redis_is_scored_with_server_time(redis_url: str, redis_namespace: str) -> None:
    limiter = RedisLimiter.from_url(redis_url, namespace=redis_namespace)
    key = f"{redis_namespace}:live"
    sec, usec = limiter.client.time()
    before = sec * 1000 + usec // 1000
    assert limiter.hit([LimitCheck("k", key, 60_000, 5, 60_000)], "m", None) == ALLOWED
    sec, usec = limiter.client.time()
    after = sec * 1000 + usec // 1000
    score = limiter.client.zscore(key, "m")
    assert score is not None and before <= score <= after
    assert 0 < limiter.client.pttl(key) <= 60_000


def test_ttl_is_set_and_never_shortened_on_redis(redis_url: str, redis_namespace: str) -> None:
    limiter = RedisLimiter.from_url(redis_url, namespace=redis_namespace)
    key = f"{redis_namespace}:ttl"
    limiter.hit([LimitCheck("k", key, 0, 5, 500_000)], "a", T0)
    assert 490_000 < limiter.client.pttl(key) <= 500_000
    limiter.hit([LimitCheck("k", key, 0, 5, 1_000)], "b", T0)
    assert limiter.client.pttl(key) > 490_000
    limiter.hit([LimitCheck("k", key, 0, 5, 900_000)], "c", T0)
    assert limiter.client.pttl(key) > 890_000


def test_reset_forgets_the_namespace_only(backend: Backend) -> None:
    c = backend.check("k", window_ms=60_000, limit=1)
    outsider_ns = f"{backend.ns}x"  # shares the prefix text, not the namespace
    outsider = backend.make(outsider_ns)
    o = LimitCheck("o", f"{outsider_ns}:k", 60_000, 1, BIG_TTL)
    if backend.name == "memory":
        # one in-process store per limiter: the outsider must live in the same store
        outsider = backend.limiter
    assert outsider.hit([o], "m0", T0) == ALLOWED
    assert backend.limiter.hit([c], "m0", T0) == ALLOWED
    assert not backend.limiter.hit([c], "m1", T0).allowed
    backend.limiter.reset()
    assert backend.limiter.hit([c], "m1", T0) == ALLOWED
    assert not outsider.hit([o], "m1", T0).allowed


def test_memory_keys_expire_after_ttl_on_the_clock() -> None:
    clock = FrozenClock(START)
    limiter = MemoryLimiter(clock, namespace="t")
    c = LimitCheck("day", "t:day", 0, 1, 5_000)
    assert limiter.hit([c], "a", T0) == ALLOWED
    clock.advance(4.999)
    assert not limiter.hit([c], "b", T0).allowed
    clock.advance(0.001)
    assert limiter.hit([c], "b", T0) == ALLOWED


def test_hit_reports_the_keys_it_newly_recorded_the_member_in(backend: Backend) -> None:
    """What a refund may give back: never a key a retry found the member in already."""
    a = backend.check("a", window_ms=60_000, limit=2)
    b = backend.check("b", window_ms=0, limit=2)
    first = backend.limiter.hit([a], "m", T0)
    assert first == ALLOWED and first.added == (0,)
    again = backend.limiter.hit([a, b], "m", T0 + 1)
    assert again == ALLOWED and again.added == (1,)  # already in a: only b is new
    assert backend.limiter.hit([a, b], "m", T0 + 2).added == ()
    assert backend.limiter.hit([a], "n", T0 + 3).added == (0,)
    refused = backend.limiter.hit([b, a], "o", T0 + 4)
    assert not refused.allowed and refused.added == ()
    many = backend.limiter.hit_many([([a, b], "m", T0 + 5), ([b], "p", T0 + 5)])
    assert [o.added for o in many] == [(), (0,)]


def test_release_of_what_a_hit_added_leaves_the_rest(backend: Backend) -> None:
    a = backend.check("a", window_ms=60_000, limit=1)
    b = backend.check("b", window_ms=60_000, limit=1)
    assert backend.limiter.hit([a], "m", T0) == ALLOWED
    out = backend.limiter.hit([a, b], "m", T0 + 1)
    backend.limiter.release([[a, b][i] for i in out.added], "m")
    assert not backend.limiter.hit([a], "x", T0 + 2).allowed  # m still holds a
    assert backend.limiter.hit([b], "x", T0 + 2) == ALLOWED  # b was given back


def test_memory_restore_records_without_checking() -> None:
    clock = FrozenClock(START)
    now = epoch_ms(START)
    limiter = MemoryLimiter(clock, namespace="t")
    burst = LimitCheck("burst", "t:burst", 60_000, 2, 60_000)
    day = LimitCheck("day", "t:day", 0, 1, 10_000)
    added = limiter.restore(
        [
            ([burst], "a", T0, now),
            ([burst, day], "b", T0 + 1, now),
            ([burst], "c", T0 + 2, now),  # over the limit: restored all the same
            ([burst], "c", T0 + 3, now),  # already there: not twice
        ]
    )
    assert added == 4 and limiter.size() == 4
    assert limiter.hit([burst], "d", T0 + 4) == fail(("burst", 59_997))
    assert limiter.hit([burst, day], "b", T0 + 5) == ALLOWED  # a retry is still a retry
    assert not limiter.hit([day], "z", T0).allowed
    clock.advance(10)  # the day key lives 10 s past the hit it was restored from
    assert limiter.hit([day], "z", T0) == ALLOWED
    # a key whose life ended before the restore is not restored at all
    late = MemoryLimiter(clock, namespace="t")
    assert late.restore([([day], "y", T0, now)]) == 1
    assert late.size() == 0


def test_memory_url_with_a_file_is_refused() -> None:
    with pytest.raises(ConfigError, match="rebuilt from the ledger"):
        limiter_from_url("memory:///tmp/limiter.json")


def test_limiter_from_url_picks_backend_by_scheme() -> None:
    assert isinstance(limiter_from_url("memory://"), MemoryLimiter)
    redis_limiter = limiter_from_url("redis://127.0.0.1:6379/0", namespace="n")
    assert isinstance(redis_limiter, RedisLimiter) and redis_limiter.namespace == "n"
    assert isinstance(limiter_from_url("unix:///tmp/redis.sock"), RedisLimiter)
    with pytest.raises(ConfigError, match="unknown scheme"):
        limiter_from_url("memcached://localhost")
    with pytest.raises(ConfigError, match="no scheme"):
        limiter_from_url("localhost:6379")


# --- property: every backend agrees with a reference model ---------------------------

# Three rules a hit may carry: two sliding logs of different windows and a fixed bucket.
RULES = (("s", 1_000, 2), ("l", 5_000, 3), ("f", 0, 4))


class Reference:
    """The semantics, stated as plainly as possible (hits in time order only)."""

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, int]] = {}  # key -> member -> recorded time

    def hit(self, rules: list[tuple[str, int, int]], member: str, now: int) -> LimitOutcome:
        failures = []
        for rule, window, limit in rules:
            live = {
                m: t for m, t in self.keys.get(rule, {}).items() if window == 0 or t > now - window
            }
            if member in live:
                continue
            if len(live) >= limit:
                retry = 0
                if window:
                    times = sorted(live.values())
                    retry = times[len(times) - limit] + window - now
                failures.append(LimitFailure(rule, retry))
        if failures:
            return LimitOutcome(False, tuple(failures))
        for rule, window, _ in rules:
            entries = self.keys.setdefault(rule, {})
            if member not in entries or (window and entries[member] <= now - window):
                entries[member] = now
        return ALLOWED


hits = st.lists(
    st.tuples(
        st.lists(st.sampled_from(RULES), min_size=1, max_size=3, unique=True),
        st.sampled_from(["a", "b", "c", "d", "e", "f"]),
        st.integers(min_value=0, max_value=1_500),  # ms since the previous hit
    ),
    max_size=40,
)


def _run(
    limiter: Limiter, ns: str, ops: list[tuple[list[tuple[str, int, int]], str, int]]
) -> list[LimitOutcome]:
    out = []
    now = T0
    for rules, member, gap in ops:
        now += gap
        checks = [LimitCheck(r, f"{ns}:{r}", w, lim, BIG_TTL) for r, w, lim in rules]
        out.append(limiter.hit(checks, member, now))
    return out


def _reference(ops: list[tuple[list[tuple[str, int, int]], str, int]]) -> list[LimitOutcome]:
    ref = Reference()
    now = T0
    out = []
    for rules, member, gap in ops:
        now += gap
        out.append(ref.hit(rules, member, now))
    return out


@contextmanager
def index_at(n: int) -> Iterator[None]:
    """Keys index their members once they hold more than ``n`` entries (the default
    holds back until 8, more than these tests' keys ever hold)."""
    saved = memory._INDEX_AT
    memory._INDEX_AT = n
    try:
        yield
    finally:
        memory._INDEX_AT = saved


@given(ops=hits)
@settings(max_examples=300, deadline=None)
def test_memory_matches_the_reference_model(
    ops: list[tuple[list[tuple[str, int, int]], str, int]],
) -> None:
    expected = _reference(ops)
    for n in (memory._INDEX_AT, 2, 0):  # members looked through, indexed later, at once
        with index_at(n):
            limiter = MemoryLimiter(FrozenClock(START), namespace="p")
            assert _run(limiter, "p", ops) == expected, f"index at {n}"


# Hits at any time order, and refunds of what a hit added.
with_releases = st.lists(
    st.tuples(
        st.lists(st.sampled_from(RULES), min_size=1, max_size=3, unique=True),
        st.sampled_from(["a", "b", "c", "d", "e", "f"]),
        st.integers(min_value=-2_000, max_value=2_000),
        st.booleans(),  # given back right after
    ),
    max_size=60,
)


@given(ops=with_releases)
@settings(max_examples=200, deadline=None)
def test_memory_decides_alike_whether_its_keys_index_their_members(
    ops: list[tuple[list[tuple[str, int, int]], str, int, bool]],
) -> None:
    """What the limiter decides, and what it then holds, does not depend on when a key
    starts indexing its members: through hits out of time order, trims and refunds."""

    def run() -> tuple[list[LimitOutcome], int]:
        limiter = MemoryLimiter(FrozenClock(START), namespace="p")
        out, now = [], T0
        for rules, member, gap, give_back in ops:
            now += gap
            checks = [LimitCheck(r, f"p:{r}", w, lim, BIG_TTL) for r, w, lim in rules]
            out.append(limiter.hit(checks, member, now))
            if give_back:
                limiter.release(checks, member)
        return out, limiter.size()

    with index_at(memory._INDEX_AT):
        looked_through = run()
    for n in (0, 1, 3):
        with index_at(n):
            assert run() == looked_through, f"index at {n}"


@given(ops=hits)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_redis_matches_the_reference_model(
    redis_url: str, ops: list[tuple[list[tuple[str, int, int]], str, int]]
) -> None:
    ns = f"itest:{uuid.uuid4().hex[:12]}"
    limiter = RedisLimiter.from_url(redis_url, namespace=ns)
    try:
        assert _run(limiter, ns, ops) == _reference(ops)
    finally:
        limiter.reset()
        limiter.close()


# Out of order (replay of unsorted history): no simple reference, but both backends agree.
unordered = st.lists(
    st.tuples(
        st.lists(st.sampled_from(RULES), min_size=1, max_size=3, unique=True),
        st.sampled_from(["a", "b", "c", "d", "e", "f"]),
        st.integers(min_value=-2_000, max_value=2_000),
    ),
    max_size=40,
)


@given(ops=unordered)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_memory_and_redis_agree_on_unordered_hits(
    redis_url: str, ops: list[tuple[list[tuple[str, int, int]], str, int]]
) -> None:
    ns = f"itest:{uuid.uuid4().hex[:12]}"
    redis_limiter = RedisLimiter.from_url(redis_url, namespace=ns)
    try:
        memory = MemoryLimiter(FrozenClock(START), namespace=ns)
        assert _run(memory, ns, ops) == _run(redis_limiter, ns, ops)
    finally:
        redis_limiter.reset()
        redis_limiter.close()
