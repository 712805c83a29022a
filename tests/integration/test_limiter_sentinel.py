"""The limiter behind Redis Sentinel: a real sentinel process names the master."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from processes import start

from integrity.clock import FrozenClock
from integrity.ports import LimitCheck
from rules.ratelimit import limiter_from_url
from tests.factories import T0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sentinel_url(redis_url: str, tmp_path: Path) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    master = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor itest {master.get('host', '127.0.0.1')} {master.get('port', 6379)} 1\n"
    )
    proc, out = start([server, str(conf), "--sentinel"])
    try:
        out.wait_for("+monitor master itest", what="redis sentinel")
        yield f"redis+sentinel://127.0.0.1:{port}/itest/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_limiter_through_sentinel(sentinel_url: str, redis_namespace: str) -> None:
    limiter = limiter_from_url(sentinel_url, namespace=redis_namespace, clock=FrozenClock(T0))
    check = LimitCheck("r", f"{redis_namespace}:v1:rl:r:s", 60_000, 2, 60_000)
    at = int(T0.timestamp() * 1000)
    outcomes = [limiter.hit([check], f"m{i}", at + i) for i in range(3)]
    assert [o.allowed for o in outcomes] == [True, True, False]
    assert outcomes[2].failures[0].rule_id == "r"


def test_bad_sentinel_urls_are_clear_errors() -> None:
    from integrity.errors import BackendUnavailable

    for url in (
        "redis+sentinel://",
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://nohost/svc",
    ):
        with pytest.raises(BackendUnavailable, match="Sentinel"):
            limiter_from_url(url)
