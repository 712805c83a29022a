"""The month's close: what freezing a simulated month and opening its cases costs.

On a fresh instance (SQLite + the in-process limiter, then PostgreSQL + Redis) a
simulated October (31 days, Asia/Shanghai) is replayed through the hook, then
``MonthClose.close`` closes it: the month's figures by window and by staff (the report
service), their SHA-256 into the ``period.closed`` event, and every case opened, in one
transaction. Floor, in the same run: the two performance reports alone (by window, by
staff), which the close cannot avoid. Also: ``period show`` right after the close (the
frozen figures, recomputed figures and the scan for amendments).

    .venv/bin/python -m bench.bench_close [--seed 7]

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bench._common import REDIS, fresh_database, instance
from followup.cases import MonthClose
from integrity.ingest import ingest
from integrity.reports import ReportService
from integrity.venues import pseudonymise_venues
from simulation import WorldConfig, simulate

OCTOBER = "2026-10"


def run(kind: str, limiter: str, world: Any) -> None:
    with fresh_database(kind) as url, instance(url, limiter) as app:
        pv = pseudonymise_venues(world.venues, app.pseudonymiser)
        app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, app.clock.now(), "bench")
        app.hook.reload()
        ingest(app.hook, world.ratings, replay=True)
        reports = app.get(ReportService)
        period = reports.period(OCTOBER)
        floors = []
        for _ in range(3):
            t0 = time.perf_counter()
            reports.report("window", period)
            reports.report("staff", period)
            floors.append(time.perf_counter() - t0)
        floor = statistics.median(floors)
        close = app.get(MonthClose)
        t0 = time.perf_counter()
        res = close.close(None, OCTOBER)
        t_close = time.perf_counter() - t0
        t0 = time.perf_counter()
        view = close.show(OCTOBER)
        t_show = time.perf_counter() - t0
        print(
            f"  {kind:<10}: close {t_close:.2f} s ({res.cases_opened} cases opened, "
            f"{len(view.figures['window'])} windows and {len(view.figures['staff'])} staff "
            f"frozen) vs floor (the two reports) {floor:.2f} s = {t_close / floor:.2f}x; "
            f"period show {t_show:.2f} s = {t_show / floor:.2f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    start = datetime(2026, 10, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    world = simulate(WorldConfig(seed=args.seed, days=31, start=start))
    print(f"the month's close after a simulated October: {len(world.ratings):,} ratings")
    run("sqlite", "memory://", world)
    run("postgresql", REDIS, world)


if __name__ == "__main__":
    main()
