"""Hook latency per rating, live, against a floor measured in the same run.

Floor: one Redis round trip (PING) plus one single-row INSERT committed through
SQLAlchemy Core into a table shaped like ``ratings``. Target: hook ≤ 1.5× floor.
Floor and hook run in alternating rounds (and the median round counts), so a load
change on the machine hits both alike.

Beyond its floor the hook parses and pseudonymises the rating, runs one ``hit.lua`` call
(checking and recording five to seven sorted sets where the floor sends a ``PING``),
writes three rows (rating, decision event, status) where the floor writes one, and
derives the rater's receipt code. The rows go through the driver's own cursor, on a
connection kept checked out between writes (no pool checkout per rating): on SQLite three plain
statements in one transaction, on PostgreSQL one prepared statement of data-modifying
CTEs in autocommit (one round trip, no ``BEGIN``/``COMMIT``). On
SQLite, whose WAL commit costs about 0.1 ms, the fixed steps dominate the ratio: the
Lua call alone costs about three ``PING`` round trips. Each rating comes from a device and
a /24 of its own, so every limiter key it touches is new; the benchmark also prints the
Redis server's own time per ``hit.lua`` call and per ``PING`` (``INFO commandstats``,
before and after the rounds).

    .venv/bin/python -m bench.bench_hook [--n 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack

import redis
import sqlalchemy as sa

from bench._common import REDIS, fresh_database, instance, rating
from integrity.adapters.sql import make_engine


def floor_call(db_url: str, stack: ExitStack) -> Callable[[int], None]:
    engine = make_engine(db_url)
    stack.callback(engine.dispose)
    md = sa.MetaData()
    table = sa.Table(
        "floor_ratings",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(128)),
        sa.Column("window_id", sa.String(64)),
        sa.Column("scores", sa.Text),
        sa.Column("ip_hash", sa.String(32)),
        sa.Column("device_hash", sa.String(32)),
    )
    md.create_all(engine)
    client = redis.Redis.from_url(REDIS)

    def once(i: int) -> None:
        client.ping()
        with engine.begin() as conn:
            conn.execute(
                table.insert(),
                {
                    "ticket_id": f"T{i}",
                    "window_id": "W1",
                    "scores": "{}",
                    "ip_hash": "a" * 32,
                    "device_hash": "b" * 32,
                },
            )

    return once


def server_time() -> dict[str, tuple[int, int]]:
    """(calls, microseconds) the Redis server has spent on ``EVALSHA`` and ``PING`` since
    its statistics were last reset (``INFO commandstats``)."""
    client = redis.Redis.from_url(REDIS)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {
        cmd: (int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0)),
              int(stats.get(f"cmdstat_{cmd}", {}).get("usec", 0)))
        for cmd in ("evalsha", "ping")
    }  # fmt: skip


def measure(kind: str, n: int, rounds: int = 10) -> tuple[float, float, dict[str, float]]:
    """Median seconds per call of (hook, floor) over alternating rounds, and the Redis
    server's microseconds per call of the hook's ``hit.lua`` and the floor's ``PING``
    over those rounds (anything else calling the server meanwhile is counted too)."""
    with ExitStack() as stack:
        floor = floor_call(stack.enter_context(fresh_database(kind)), stack)
        app = stack.enter_context(instance(stack.enter_context(fresh_database(kind)), REDIS))
        docs = [rating(i) for i in range(n + 200)]
        for i in range(100):  # warm both paths
            floor(-1 - i)
            app.validate(docs[n + 100 + i])
        per = n // rounds
        hook_t, floor_t = [], []
        before = server_time()
        for r in range(rounds):
            t0 = time.perf_counter()
            for i in range(r * per, (r + 1) * per):
                app.validate(docs[i])
            hook_t.append((time.perf_counter() - t0) / per)
            t0 = time.perf_counter()
            for i in range(r * per, (r + 1) * per):
                floor(i)
            floor_t.append((time.perf_counter() - t0) / per)
        after = server_time()
        server = {
            cmd: (after[cmd][1] - before[cmd][1]) / max(1, after[cmd][0] - before[cmd][0])
            for cmd in after
        }
        return statistics.median(hook_t), statistics.median(floor_t), server


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    print(
        f"hook latency, live, {args.n} ratings each; floor = 1 Redis round trip + 1 single-row insert commit"
    )
    for kind in ("sqlite", "postgresql"):
        h, f, server = measure(kind, args.n)
        print(
            f"  {kind:<10} + Redis: hook {h * 1e3:7.3f} ms   floor {f * 1e3:7.3f} ms   ratio {h / f:5.2f}x  (target <= 1.50x)"
        )
        print(
            f"  {'':<10}   on the Redis server: hit.lua {server['evalsha']:.1f} us a call, "
            f"the floor's PING {server['ping']:.1f} us"
        )


if __name__ == "__main__":
    main()
