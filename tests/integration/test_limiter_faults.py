"""A Redis that is down: errors become BackendUnavailable, and the breaker stops calling it.

Connection attempts are counted with a redis-py ``Connection`` subclass, so the tests
assert that an open breaker did not touch the network, instead of timing anything.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
import redis
from redis.connection import Connection

from integrity.clock import FrozenClock
from integrity.errors import BackendUnavailable
from integrity.model import Rating
from integrity.ports import GateContext, LimitCheck
from rules.ratelimit import BreakerState, CircuitBreaker, CircuitOpen, RateLimitGate
from rules.ratelimit.redis_store import IDLE_HITTERS, RedisLimiter
from rules.ruleset import default_ruleset

T0 = 1_700_000_000_000
START = datetime(2024, 5, 1, tzinfo=UTC)
UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused


class CountingConnection(Connection):
    """Counts every socket connect; refuses to connect while ``down`` is set."""

    attempts: ClassVar[int] = 0
    down: ClassVar[bool] = False

    def _connect(self) -> socket.socket:
        type(self).attempts += 1
        if type(self).down:
            raise ConnectionRefusedError("injected fault: Redis is down")
        return super()._connect()


@pytest.fixture
def counting() -> type[CountingConnection]:
    class Fresh(CountingConnection):
        attempts = 0
        down = False

    return Fresh


def limiter_for(
    url: str, conn: type[Connection], clock: FrozenClock, ns: str = "f"
) -> RedisLimiter:
    return RedisLimiter.from_url(url, namespace=ns, clock=clock, retries=0, connection_class=conn)


def check(ns: str = "f") -> list[LimitCheck]:
    return [LimitCheck("k", f"{ns}:k", 60_000, 5, 60_000)]


def test_unreachable_redis_raises_backend_unavailable_then_opens(
    counting: type[CountingConnection],
) -> None:
    clock = FrozenClock(START)
    limiter = limiter_for(UNREACHABLE, counting, clock)
    for n in range(1, 4):
        with pytest.raises(BackendUnavailable) as info:
            limiter.hit(check(), "m", T0)
        assert not isinstance(info.value, CircuitOpen)
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        assert counting.attempts == n
    assert limiter.breaker.state is BreakerState.OPEN

    # open: fails at once, without a connection attempt, for every entry point
    with pytest.raises(CircuitOpen, match="circuit open after 3 consecutive failures") as opened:
        limiter.hit(check(), "m", T0)
    assert opened.value.retry_after_s == limiter.breaker.cooldown_s  # the clock is frozen
    assert info.value.retry_after_s is None  # a refused connection does not say when
    with pytest.raises(CircuitOpen):
        limiter.hit_many([(check(), "m", T0)])
    with pytest.raises(CircuitOpen):
        limiter.reset()
    assert counting.attempts == 3


def test_hit_many_and_reset_errors_are_backend_unavailable(
    counting: type[CountingConnection],
) -> None:
    limiter = limiter_for(UNREACHABLE, counting, FrozenClock(START))
    with pytest.raises(BackendUnavailable):
        limiter.hit_many([(check(), "m", T0), (check(), "n", None)])
    with pytest.raises(BackendUnavailable):
        limiter.reset()
    assert counting.attempts == 2


def test_default_client_retries_once_and_uses_short_timeouts() -> None:
    limiter = RedisLimiter.from_url(UNREACHABLE)
    kwargs: dict[str, Any] = limiter.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.1
    assert kwargs["socket_connect_timeout"] == 0.1
    assert limiter.client.get_retry().get_retries() == 1  # type: ignore[union-attr]
    assert limiter.breaker.failure_threshold == 3 and limiter.breaker.cooldown_s == 5.0


def test_breaker_recovers_through_one_half_open_trial(
    redis_url: str, redis_namespace: str, counting: type[CountingConnection]
) -> None:
    clock = FrozenClock(START)
    limiter = limiter_for(redis_url, counting, clock, redis_namespace)
    counting.down = True
    for _ in range(3):
        with pytest.raises(BackendUnavailable):
            limiter.hit(check(redis_namespace), "m", T0)
    assert limiter.breaker.state is BreakerState.OPEN
    counting.down = False  # Redis is back, but the breaker does not know yet

    clock.advance(4.999)
    with pytest.raises(CircuitOpen):
        limiter.hit(check(redis_namespace), "m", T0)
    assert counting.attempts == 3

    clock.advance(0.001)
    assert limiter.breaker.state is BreakerState.HALF_OPEN
    assert limiter.hit(check(redis_namespace), "m", T0).allowed  # the trial
    assert counting.attempts == 4
    assert limiter.breaker.state is BreakerState.CLOSED
    assert limiter.hit(check(redis_namespace), "n", T0).allowed
    assert counting.attempts == 4  # pooled connection reused


def test_a_failed_trial_reopens_at_once(
    redis_url: str, redis_namespace: str, counting: type[CountingConnection]
) -> None:
    clock = FrozenClock(START)
    limiter = limiter_for(redis_url, counting, clock, redis_namespace)
    counting.down = True
    for _ in range(3):
        with pytest.raises(BackendUnavailable):
            limiter.hit(check(redis_namespace), "m", T0)
    clock.advance(5)
    with pytest.raises(BackendUnavailable) as info:
        limiter.hit(check(redis_namespace), "m", T0)  # the trial, still down
    assert not isinstance(info.value, CircuitOpen)
    assert counting.attempts == 4
    # one failed trial is enough to open again, for a full cool-down
    assert limiter.breaker.state is BreakerState.OPEN
    clock.advance(4.9)
    with pytest.raises(CircuitOpen):
        limiter.hit(check(redis_namespace), "m", T0)
    assert counting.attempts == 4
    counting.down = False
    clock.advance(0.1)
    assert limiter.hit(check(redis_namespace), "m", T0).allowed
    assert limiter.breaker.state is BreakerState.CLOSED


def test_half_open_lets_only_one_trial_through() -> None:
    clock = FrozenClock(START)
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=1.0, clock=clock)
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # one failure is not enough
    breaker.before_call()
    breaker.record_success()
    assert breaker.consecutive_failures == 0  # a success resets the count
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.advance(1)
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # a second caller while the trial runs
    breaker.record_success()
    breaker.before_call()
    assert breaker.state is BreakerState.CLOSED


def test_gate_propagates_backend_unavailable(counting: type[CountingConnection]) -> None:
    limiter = limiter_for(UNREACHABLE, counting, FrozenClock(START))
    gate = RateLimitGate(default_ruleset(), limiter, namespace="f")
    r = Rating(
        ticket_id="t1",
        window_id="W1",
        staff_id=None,
        service_type="general",
        channel="qr",
        served_at=None,
        submitted_at=START,
        submitted_at_given=False,
        received_at=START,
        scores={"overall": 5},
        composite=5.0,
        comment=None,
        ip_hash="i",
        prefix_hash="p",
        device_hash="d",
        fingerprint="fp",
    )
    ctx = GateContext(replay=False, rule_set_id="rs-x")
    with pytest.raises(BackendUnavailable):
        gate.check(r, ctx)
    with pytest.raises(BackendUnavailable):
        gate.check_many([r, r], ctx)


def test_script_cache_loss_is_recovered(redis_url: str, redis_namespace: str) -> None:
    """A server without the script (restart, failover) answers NOSCRIPT; both paths reload it.

    The script is made unknown by giving the limiter a sha no server has, rather than by
    SCRIPT FLUSH, which would disturb other users of a shared Redis.
    """
    limiter = RedisLimiter.from_url(redis_url, namespace=redis_namespace)
    c = check(redis_namespace)
    real_sha = limiter._script.sha
    assert limiter.hit(c, "a", T0).allowed
    limiter._script.sha = "0" * 40
    assert limiter.hit(c, "b", T0).allowed
    assert limiter._script.sha == real_sha
    limiter._script.sha = "0" * 40
    outs = limiter.hit_many([(c, m, T0) for m in "cdefg"])
    assert [o.allowed for o in outs] == [True, True, True, False, False]
    assert limiter._script.sha == real_sha
    assert limiter.breaker.state is BreakerState.CLOSED


def test_a_killed_connection_is_replaced_by_the_retry(redis_url: str, redis_namespace: str) -> None:
    """Single hits keep their connections between calls; when the server drops one (restart,
    idle timeout, ``CLIENT KILL``), the client's retry connects again and the hit counts
    once. Without retries the hit fails as unavailable and the next one reconnects."""
    c = check(redis_namespace)
    for retries, first_ok in ((1, True), (0, False)):
        limiter = RedisLimiter.from_url(redis_url, namespace=redis_namespace, retries=retries)
        assert limiter.hit(c, f"a{retries}", T0).allowed
        held = list(limiter._idle)[-1]
        admin = redis.Redis.from_url(redis_url)
        held.send_command("CLIENT", "ID")
        assert admin.client_kill_filter(_id=held.read_response()) == 1
        if first_ok:
            assert limiter.hit(c, f"b{retries}", T0).allowed
        else:
            with pytest.raises(BackendUnavailable):
                limiter.hit(c, f"b{retries}", T0)
            assert limiter.hit(c, f"b{retries}", T0).allowed
        limiter.close()
    members = redis.Redis.from_url(redis_url).zrange(c[0].key, 0, -1)
    assert sorted(members) == [b"a0", b"a1", b"b0", b"b1"]


def test_a_forked_child_hits_on_a_connection_of_its_own(
    redis_url: str, redis_namespace: str
) -> None:
    """A connection kept between hits is never used across a fork: the child would share
    the parent's socket and read its replies."""
    limiter = RedisLimiter.from_url(redis_url, namespace=redis_namespace)
    c = check(redis_namespace)
    assert limiter.hit(c, "parent-1", T0).allowed
    parents = list(limiter._idle)[-1]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: hit, and say whether it used a connection of its own
        ok = False
        try:
            ok = limiter.hit(c, "child", T0).allowed and list(limiter._idle)[-1] is not parents
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert list(limiter._idle)[-1] is parents
    assert limiter.hit(c, "parent-2", T0).allowed
    members = redis.Redis.from_url(redis_url).zrange(c[0].key, 0, -1)
    assert sorted(members) == [b"child", b"parent-1", b"parent-2"]


def test_a_thread_that_ends_leaves_no_connection_checked_out(
    redis_url: str, redis_namespace: str
) -> None:
    """Single hits keep at most ``IDLE_HITTERS`` connections between calls, whatever
    thread made them: threads that hit once and end (as a server's thread pool retires
    idle ones) leave no connection checked out of the pool for good."""
    limiter = RedisLimiter.from_url(redis_url, namespace=redis_namespace)
    c = check(redis_namespace)
    for i in range(12):  # one after another: each thread finds the one kept before
        worker = threading.Thread(target=lambda i=i: limiter.hit(c, f"t{i}", T0))
        worker.start()
        worker.join()
    pool = limiter.client.connection_pool
    assert len(limiter._idle) == 1 and len(pool._in_use_connections) == 1  # type: ignore[attr-defined]
    taken = [limiter._take() for _ in range(IDLE_HITTERS + 3)]  # as concurrent hits
    for conn in taken:
        limiter._give_back(conn)
    assert len(limiter._idle) == IDLE_HITTERS
    assert len(pool._in_use_connections) == IDLE_HITTERS  # type: ignore[attr-defined]
    limiter.close()
