"""Batch ingest of a simulated month, every rule on, against a floor in the same run.

Floor: parse + pseudonymise (the engine's own parser) + bulk INSERT of the same rows
through SQLAlchemy Core into a table shaped like ``ratings`` (chunks of 500, one
transaction each). Engine: ``integrity ingest`` (hook with every gate, decision
events, status rows) and then sealing the Merkle log. Target: engine ≥ 0.5× floor.

    .venv/bin/python bench/bench_ingest.py [--seed 7] [--days 30]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from bench._common import REDIS, fresh_database, instance
from integrity.adapters import tables as t
from integrity.adapters.sql import make_engine, rating_row
from integrity.ingest import ingest
from integrity.migrate import upgrade
from integrity.model import DEFAULT_RUBRIC
from integrity.parsing import parse_rating
from integrity.pseudonym import Pseudonymiser, new_secret
from integrity.venues import pseudonymise_venues
from simulation import WorldConfig, simulate


def floor(db_url: str, objs: list[dict]) -> float:
    """Parse + pseudonymise + bulk-insert the rows the engine stores, into the same
    ``ratings`` table (same schema and indexes, created by the same migrations).

    The floor judges nothing: identical retries are dropped (the engine stores them
    once) and the first rating of each ticket claims it, so the unique keys hold.
    """
    engine = make_engine(db_url)
    upgrade(engine)
    p = Pseudonymiser(new_secret())
    t0 = time.perf_counter()
    rows: list[dict] = []
    seen: set[str] = set()
    claimed: set[str] = set()
    for obj in objs:
        r = parse_rating(obj, rubric=DEFAULT_RUBRIC, pseudonymiser=p, received_at=datetime.now(UTC))
        if r.fingerprint in seen:
            continue
        seen.add(r.fingerprint)
        rows.append(rating_row(r, "rs-floor", r.ticket_id not in claimed))
        claimed.add(r.ticket_id)
        if len(rows) == 500:
            with engine.begin() as conn:
                conn.execute(t.ratings.insert(), rows)
            rows = []
    if rows:
        with engine.begin() as conn:
            conn.execute(t.ratings.insert(), rows)
    elapsed = time.perf_counter() - t0
    engine.dispose()
    return elapsed


def engine_run(db_url: str, limiter_url: str, world: Any) -> tuple[float, float, dict[str, Any]]:
    with instance(db_url, limiter_url) as app:
        pv = pseudonymise_venues(world.venues, app.pseudonymiser)
        app.ledger.replace_venues(
            pv.venues, pv.addresses, pv.kiosks, app.clock.now(), actor="bench"
        )
        app.hook.reload()
        t0 = time.perf_counter()
        summary = ingest(app.hook, world.ratings, replay=True)
        t_ingest = time.perf_counter() - t0
        app.log.seal(app.clock.now())
        t_total = time.perf_counter() - t0
        return t_ingest, t_total, summary.as_dict()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--days", type=int, default=30)
    args = ap.parse_args()
    world = simulate(WorldConfig(seed=args.seed, days=args.days))
    n = len(world.ratings)
    print(f"batch ingest of a simulated month: {n:,} ratings, every rule on")
    for kind, limiter in (("sqlite", "memory://"), ("postgresql", REDIS)):
        with fresh_database(kind) as url:
            f = floor(url, world.ratings)
        with fresh_database(kind) as url:
            ti, tt, _summary = engine_run(url, limiter, world)
        lname = "memory" if limiter.startswith("memory") else "Redis"
        print(
            f"  {kind:<10} + {lname:<6}: floor {n / f:8,.0f}/s   ingest {n / ti:8,.0f}/s ({n / ti / (n / f):4.2f}x)"
            f"   ingest+seal {n / tt:8,.0f}/s ({(n / tt) / (n / f):4.2f}x)  (target >= 0.50x)"
        )


if __name__ == "__main__":
    main()
