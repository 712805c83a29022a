"""What sealing a large configuration table costs: ``audit_items`` at several sizes.

Every unit of work that writes a configuration table digests the whole table twice
(checked against its seal before the first write, then sealed), and ``ledger verify``
digests it once. ``audit_items`` is the one that grows: the sample of every period.
This times :func:`integrity.config_tables.table_digest` over N items against a floor
measured in the same run on the same table: one bare ``SELECT`` of the same columns,
every row fetched (what any digest must at least read).

    .venv/bin/python -m bench.bench_config_seal [--backend sqlite|postgresql] [--sizes 100000,300000]

No target set. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

import audit_sampling.tables as at
from bench._common import fresh_database
from integrity.adapters.sql import make_engine
from integrity.config_tables import table_digest


def items_table() -> sa.Table:
    """``audit_items``'s columns and key, without its foreign keys (no ratings here)."""
    src = at.audit_items
    cols = [sa.Column(c.name, c.type, primary_key=c.primary_key) for c in src.columns]
    return sa.Table(src.name, sa.MetaData(), *cols)


def rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "sample_id": 1 + i // 50_000,
            "rating_id": i + 1,
            "window_id": f"H{i % 500:03d}-W{i % 7:02d}",
            "rank": i % 97 + 1,
            "risk_rank": None if i % 10 else i // 10,
            "ticket": f"T-{i:012d}",
            "risk": (i % 1000) / 1000,
            "added": "draw",
            "batch_id": 1 + i // 25,
        }
        for i in range(n)
    ]


def median_s(fn: Callable[[], Any], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--sizes", default="100000,300000")
    args = ap.parse_args()
    table = items_table()
    for n in (int(s) for s in args.sizes.split(",")):
        with fresh_database(args.backend) as url:
            engine = make_engine(url)
            try:
                table.create(engine)
                with engine.begin() as conn:
                    data = rows(n)
                    for i in range(0, n, 20_000):
                        conn.execute(table.insert(), data[i : i + 20_000])
                with engine.connect() as conn:

                    def bare(c: sa.Connection = conn) -> object:
                        return c.execute(sa.select(table)).all()

                    def sealed(c: sa.Connection = conn) -> object:
                        return table_digest(c, at.audit_items.name)

                    floor = median_s(bare)
                    digest = median_s(sealed)
            finally:
                engine.dispose()
        print(
            f"[{args.backend}] audit_items, {n:,} rows: digest {digest:.3f} s "
            f"({digest / n * 1e6:.2f} us/row) vs floor (bare SELECT) {floor:.3f} s "
            f"= {digest / floor:.1f}x; a change that writes the table pays it twice "
            f"({2 * digest:.2f} s), ledger verify once"
        )


if __name__ == "__main__":
    main()
