"""Hook latency per rating, live, against a floor measured in the same run.

Floor: one Redis round trip (PING) plus one single-row INSERT committed through
SQLAlchemy Core into a table shaped like ``ratings``. Target: hook ≤ 1.5× floor.

    .venv/bin/python bench/bench_hook.py [--n 2000]
"""

from __future__ import annotations

import argparse
import time

import redis
import sqlalchemy as sa

from bench._common import REDIS, fresh_database, instance, per_call, rating
from integrity.adapters.sql import make_engine


def floor(db_url: str, n: int) -> float:
    engine = make_engine(db_url)
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

    try:
        return per_call(once, n)
    finally:
        engine.dispose()


def hook(db_url: str, n: int) -> float:
    with instance(db_url, REDIS) as app:
        ratings = [rating(i) for i in range(n + 200)]
        return per_call(lambda i: app.validate(ratings[i]), n)


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
        with fresh_database(kind) as url:
            f = floor(url, args.n)
        with fresh_database(kind) as url:
            t0 = time.perf_counter()
            h = hook(url, args.n)
            del t0
        print(
            f"  {kind:<10} + Redis: hook {h * 1e3:7.3f} ms   floor {f * 1e3:7.3f} ms   ratio {h / f:5.2f}x  (target <= 1.50x)"
        )


if __name__ == "__main__":
    main()
