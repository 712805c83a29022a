"""Low-score alerts: what the projection costs after a simulated month is ingested.

On a fresh instance (SQLite + the in-process limiter, then PostgreSQL + Redis) a
simulated month is replayed through the hook (``ingest``), then the alerts' projection
(``AlertService.sync``: every status event since the start, one alert per counted low
score) runs once, as it does when ``integrity ingest`` closes. Floor, in the same run:
one plain ``SELECT`` of what the projection cannot avoid reading (each status event's
rating, status, composite and scores, joined, in id order). Also: the projection's share
of ingest + projection, and one incremental round after 500 more ratings (what
``serve``'s background round does every 2 s).

    .venv/bin/python -m bench.bench_alerts [--seed 7] [--days 30]

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from bench._common import REDIS, fresh_database, instance
from followup.alerts import AlertService
from integrity.adapters import tables as t
from integrity.ingest import ingest
from integrity.venues import pseudonymise_venues
from simulation import WorldConfig, simulate


def floor_read(app: Any, after: int) -> tuple[float, int]:
    e, r = t.events.c, t.ratings.c
    q = (
        sa.select(e.event_id, e.rating_id, e.status, r.composite, r.scores)
        .join_from(t.events, t.ratings, e.rating_id == r.rating_id)
        .where(e.event_id > after, e.status.is_not(None))
        .order_by(e.event_id)
    )
    t0 = time.perf_counter()
    with app.ledger.reading() as conn:
        n = len(conn.execute(q).all())
    return time.perf_counter() - t0, n


def run(kind: str, limiter: str, world: Any) -> None:
    with fresh_database(kind) as url, instance(url, limiter) as app:
        pv = pseudonymise_venues(world.venues, app.pseudonymiser)
        app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, app.clock.now(), "bench")
        app.hook.reload()
        svc = app.get(AlertService)
        svc.sync()
        with app.ledger.reading() as conn:
            start = svc.store.cursor(conn) or 0
        head, tail = world.ratings[:-500], world.ratings[-500:]
        t0 = time.perf_counter()
        ingest(app.hook, head, replay=True)
        t_ingest = time.perf_counter() - t0
        f, n = floor_read(app, start)
        t0 = time.perf_counter()
        s = svc.sync()
        t_sync = time.perf_counter() - t0
        share = t_sync / (t_ingest + t_sync)
        print(
            f"  {kind:<10}: {s.events:,} status events, {s.opened:,} alerts opened: projection "
            f"{t_sync:.2f} s = {s.events / t_sync:,.0f} events/s; floor (one SELECT of {n:,} "
            f"joined rows) {f:.3f} s = {t_sync / f:.1f}x; ingest {t_ingest:.1f} s, so the "
            f"projection is {share:.0%} of ingest + projection"
        )
        ingest(app.hook, tail, replay=True)
        t0 = time.perf_counter()
        s = svc.sync()
        t_round = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_ = svc.escalate_overdue(None, app.clock.now() + timedelta(days=40))
        t_esc = time.perf_counter() - t0
        print(
            f"  {kind:<10}: a round after 500 more ratings: {s.events} events, {s.opened} "
            f"opened in {t_round * 1000:.0f} ms; escalating every alert of the month "
            f"({len(run_.escalated):,} escalated, {len(run_.overdue):,} deadlines) "
            f"{t_esc:.2f} s"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--days", type=int, default=30)
    args = ap.parse_args()
    world = simulate(WorldConfig(seed=args.seed, days=args.days))
    print(f"alerts projection after a simulated month: {len(world.ratings):,} ratings")
    run("sqlite", "memory://", world)
    run("postgresql", REDIS, world)


if __name__ == "__main__":
    main()
