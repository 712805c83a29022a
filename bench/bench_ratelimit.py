"""Rate-limit decisions per second: one ``hit.lua`` call per rating versus one call per rule.

Runs the default rule set's six default-scope rules (device.burst, device.day,
device_window.day, ip.burst, ip.hour, prefix.burst) for the same ratings, on the same
Redis, three ways:

- ``RateLimitGate.check`` over ``RedisLimiter``: one script call (one round trip) per rating;
- ``RateLimitGate.check_many``: the same, pipelined (``hit_many``) in batches;
- the ``limits`` library's ``MovingWindowRateLimiter`` on ``RedisStorage``: one ``hit``
  (one round trip) per rule, so six per rating, and no all-or-nothing.

A Redis ``PING`` loop is measured in the same run as the floor (one round trip). Loops
are bounded, every key lives under a fresh namespace, and the keys are deleted at the end.

    .venv/bin/python bench/bench_ratelimit.py [--redis URL] [--decisions 5000]
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis
from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from integrity.model import Rating, VenueRegistry
from integrity.ports import GateContext
from rules.ratelimit.gate import RateLimitGate
from rules.ratelimit.redis_store import RedisLimiter
from rules.ruleset import LimitRule, default_ruleset

LIVE = GateContext(replay=False, rule_set_id="bench")


def make_ratings(n: int, seed: int = 7) -> list[Rating]:
    """``n`` ratings from a pool of devices and addresses (some hit limits, most do not)."""
    rnd = random.Random(seed)
    start = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        at = start + timedelta(milliseconds=50 * i)
        out.append(
            Rating(
                ticket_id=f"t{i}",
                window_id=f"W{rnd.randrange(20)}",
                staff_id=None,
                service_type="general",
                channel="qr",
                served_at=None,
                submitted_at=at,
                submitted_at_given=False,
                received_at=at,
                scores={"overall": 5},
                composite=5.0,
                comment=None,
                ip_hash=f"ip{rnd.randrange(400)}",
                prefix_hash=f"pfx{rnd.randrange(100)}",
                device_hash=f"dev{rnd.randrange(2000)}",
                fingerprint=uuid.uuid4().hex,
            )
        )
    return out


def rate(label: str, n: int, run: Callable[[], list[bool]]) -> float:
    """Run once; print and return decisions per second, and how many were admitted."""
    t0 = time.perf_counter()
    admitted = sum(run())
    elapsed = time.perf_counter() - t0
    per_s = n / elapsed
    print(f"{label:<64} {per_s:>9,.0f} /s  {elapsed:6.2f} s  admitted {admitted:,}/{n:,}")
    return per_s


def limits_item(rule: LimitRule) -> RateLimitItem:
    """The ``limits`` item closest to a rule: its window in seconds, a day for calendar_day."""
    if rule.window_s is None:
        return RateLimitItemPerDay(rule.limit, 1)
    return RateLimitItemPerSecond(rule.limit, rule.window_s)


def subject(rule: LimitRule, r: Rating) -> str:
    return {
        "device": r.device_hash,
        "ip": r.ip_hash,
        "prefix": r.prefix_hash,
        "device_window": f"{r.device_hash}:{r.window_id}",
    }[rule.key]


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for i in range(0, len(keys), 1000):
        client.unlink(*keys[i : i + 1000])
    return len(keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis", default=os.environ.get("INTEGRITY_REDIS", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--decisions", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=100, help="ratings per check_many call")
    args = parser.parse_args()
    n: int = args.decisions

    ruleset = default_ruleset()
    ratings = make_ratings(n)
    warm = make_ratings(200, seed=99)
    run_id = uuid.uuid4().hex[:10]
    ns_one, ns_many = f"bench:{run_id}:one", f"bench:{run_id}:many"
    limits_prefix = f"bench:{run_id}:limits"
    client = redis.Redis.from_url(args.redis)
    client.ping()

    one = RedisLimiter.from_url(args.redis, namespace=ns_one, socket_timeout_s=1.0)
    many = RedisLimiter.from_url(args.redis, namespace=ns_many, socket_timeout_s=1.0)
    gate_one = RateLimitGate(ruleset, one, VenueRegistry(), ns_one)
    gate_many = RateLimitGate(ruleset, many, VenueRegistry(), ns_many)
    rules = gate_one.applicable_rules(ratings[0])
    assert len(rules) == 6, [r.id for r in rules]

    storage = RedisStorage(args.redis, key_prefix=limits_prefix)
    moving = MovingWindowRateLimiter(storage)
    items = [(rule, limits_item(rule)) for rule in rules]

    def run_ours(rs: list[Rating]) -> list[bool]:
        return [gate_one.check(r, LIVE) is None for r in rs]

    def run_many(rs: list[Rating]) -> list[bool]:
        out: list[bool] = []
        for i in range(0, len(rs), args.batch):
            out.extend(v is None for v in gate_many.check_many(rs[i : i + args.batch], LIVE))
        return out

    def run_limits(rs: list[Rating]) -> list[bool]:
        return [
            all([moving.hit(item, rule.id, subject(rule, r)) for rule, item in items]) for r in rs
        ]

    print(
        f"Redis {args.redis}; {n:,} decisions of {len(rules)} rules each: {[r.id for r in rules]}"
    )
    try:
        run_ours(warm)
        run_many(warm)
        run_limits(warm)
        floor = rate("floor: PING round trips", n, lambda: [bool(client.ping()) for _ in range(n)])
        ours = rate(
            "RedisLimiter.hit via gate.check (1 script call/rating)", n, lambda: run_ours(ratings)
        )
        piped = rate(
            f"RedisLimiter.hit_many via gate.check_many (batches of {args.batch})",
            n,
            lambda: run_many(ratings),
        )
        theirs = rate(
            f"limits MovingWindowRateLimiter + RedisStorage ({len(rules)} hits/rating)",
            n,
            lambda: run_limits(ratings),
        )
        print()
        print(f"ratio hit / limits:         {ours / theirs:5.2f}x  (target >= 2x)")
        print(f"ratio hit_many / limits:    {piped / theirs:5.2f}x")
        print(f"ratio hit / PING floor:     {ours / floor:5.2f}")
    finally:
        one.reset()
        many.reset()
        removed = delete_prefix(client, limits_prefix)
        one.close()
        many.close()
        leftover = len(list(client.scan_iter(match=f"bench:{run_id}*", count=1000)))
        print(f"cleaned up ({removed:,} limits keys; {leftover} keys left)")


if __name__ == "__main__":
    main()
