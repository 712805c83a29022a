"""What sealing a large configuration table costs: ``audit_items`` at several sizes.

``audit_items`` is the configuration table that grows: the sample of every period. It
is sealed per sample (partition column ``sample_id``): a draw, expansion, batching or
replacement digests the items of the sample it changes twice (checked against its seal
before the first write, then sealed); ``ledger verify`` digests every sample once, and
so does the first change of an older instance that sealed the table whole (before it
is switched to per-sample seals). This times
:func:`integrity.config_tables.table_digest` over N items in samples of S items (the
newest sample: what a change pays; the whole table: what verify pays), each against a
floor measured in the same run on the same table: one bare ``SELECT`` of the same
rows, every row fetched (what any digest must at least read).

    .venv/bin/python -m bench.bench_config_seal [--backend sqlite|postgresql] \
        [--sizes 100000,300000] [--sample 30000]

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


def rows(n: int, sample: int) -> list[dict[str, Any]]:
    return [
        {
            "sample_id": 1 + i // sample,
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
    ap.add_argument("--sample", type=int, default=30_000, help="items per sample")
    args = ap.parse_args()
    table = items_table()
    for n in (int(s) for s in args.sizes.split(",")):
        with fresh_database(args.backend) as url:
            engine = make_engine(url)
            try:
                table.create(engine)
                with engine.begin() as conn:
                    data = rows(n, args.sample)
                    for i in range(0, n, 20_000):
                        conn.execute(table.insert(), data[i : i + 20_000])
                samples = int(data[-1]["sample_id"])
                one = sum(1 for r in data if r["sample_id"] == 1)  # a full sample
                part = ("sample_id", 1)
                with engine.connect() as conn:

                    def bare(c: sa.Connection = conn) -> object:
                        return c.execute(sa.select(table)).all()

                    def bare_part(c: sa.Connection = conn) -> object:
                        return c.execute(sa.select(table).where(table.c.sample_id == 1)).all()

                    def whole(c: sa.Connection = conn) -> object:
                        return table_digest(c, at.audit_items.name)

                    def sample(c: sa.Connection = conn, p: tuple[str, int] = part) -> object:
                        return table_digest(c, at.audit_items.name, partition=p)

                    floor = median_s(bare)
                    digest = median_s(whole)
                    floor_part = median_s(bare_part)
                    digest_part = median_s(sample)
            finally:
                engine.dispose()
        print(
            f"[{args.backend}] audit_items, {n:,} rows in {samples} sample(s): "
            f"one sample ({one:,} items) {digest_part:.3f} s vs floor {floor_part:.3f} s "
            f"= {digest_part / floor_part:.1f}x, a change of it pays that twice "
            f"({2 * digest_part:.2f} s); every sample (ledger verify) {digest:.3f} s "
            f"({digest / n * 1e6:.2f} us/row) vs floor {floor:.3f} s = {digest / floor:.1f}x"
        )


if __name__ == "__main__":
    main()
