"""Time ``integrity report`` over a month of about 1,000,000 ratings on PostgreSQL (target: <= 5 s).

The ledger is built fast, not through a million hook calls: synthetic ratings (200
windows in 20 halls, 1,000 staff, five rubric dimensions) are bulk-loaded with
``SqlLedger.record_many`` (COPY: rating, decision event and status rows, score
columns), 97 % accepted, 2 % held (outlier.burst), 1 % rejected (duplicate_ticket),
plus a tenth as many in the month before (the report compares with it), and a
service registry. The build is cached in its own database (``--db``) and ``--home``.

Timed, in the same run: the command as a user runs it (a fresh process: start-up,
imports, the queries, rendering CSV), the library call alone (``ReportService.report``
in this process), and the floor: ONE plain ``SELECT window_id, count(*) ... GROUP BY
window_id`` over the same month's rows. Each is the median of ``--repeat`` runs.

    .venv/bin/python bench/bench_report.py [--ratings 1000000] [--period 2026-10] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import PG_ADMIN  # noqa: E402
from bootstrap import init_instance, open_app  # noqa: E402
from integrity.app import App, Settings  # noqa: E402
from integrity.catalogue import Reason  # noqa: E402
from integrity.model import DEFAULT_RUBRIC, Rating, Status  # noqa: E402
from integrity.ports import Pending  # noqa: E402
from integrity.registry import RegistryService, parse_registry  # noqa: E402
from integrity.reports import Period, ReportService  # noqa: E402

DB_NAME = "integrity_bench_report"
WINDOWS = [f"W{i:03d}" for i in range(200)]
STAFF = [f"S{i:04d}" for i in range(1000)]


def database_url() -> str:
    return sa.engine.make_url(PG_ADMIN).set(database=DB_NAME).render_as_string(hide_password=False)


def ensure_database(rebuild: bool) -> None:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            if rebuild:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
            exists = c.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": DB_NAME}
            ).first()
            if not exists:
                c.execute(sa.text(f'CREATE DATABASE "{DB_NAME}"'))
    finally:
        admin.dispose()


def synthetic(
    rng: random.Random, n: int, period: Period, received: datetime, serial: int
) -> list[Rating]:
    """``n`` ratings served in ``period``; window quality varies so ranks spread."""
    span = (period.end - period.start).total_seconds()
    out = []
    dims = DEFAULT_RUBRIC.dimensions
    for i in range(n):
        k = serial + i
        w = rng.randrange(len(WINDOWS))
        base = 3 + (w % 7) / 3  # 3.0 .. 5.0 by window
        scores = {d: max(1, min(5, round(rng.gauss(base, 1.0)))) for d in dims}
        served = period.start + timedelta(seconds=rng.random() * span)
        out.append(
            Rating(
                ticket_id=f"B{k:09d}",
                window_id=WINDOWS[w],
                staff_id=STAFF[(w * 5 + rng.randrange(5)) % len(STAFF)]
                if rng.random() < 0.9
                else None,
                service_type=("tax", "permits", "social")[w % 3],
                channel=("qr", "kiosk", "app")[k % 3],
                served_at=served,
                submitted_at=served + timedelta(minutes=3),
                submitted_at_given=True,
                received_at=received,
                scores=scores,
                composite=DEFAULT_RUBRIC.composite(scores),
                comment=None,
                ip_hash=f"{k % 50000:032x}",
                prefix_hash=f"{k % 5000:032x}",
                device_hash=f"{k:032x}",
                fingerprint=f"{k:064x}",
            )
        )
    return out


def build(home: Path, ratings: int, period: Period, rebuild: bool) -> int:
    """Bulk-load the benchmark ledger (cached); returns the ratings in ``period``."""
    marker = home / "built.json"
    if marker.exists() and not rebuild:
        info = json.loads(marker.read_text())
        if info.get("ratings") == ratings and info.get("period") == period.label:
            try:
                with sa.create_engine(database_url()).connect() as c:
                    stored = c.execute(sa.text("SELECT count(*) FROM ratings")).scalar_one()
            except sa.exc.SQLAlchemyError:
                stored = -1
            if stored == ratings + ratings // 10:  # the database still holds this build
                return ratings
    ensure_database(rebuild=True)
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings.resolve(home=home, db=database_url(), env={})
    init_instance(settings)
    rng = random.Random(7)
    received = period.end + timedelta(days=1)
    with open_app(settings) as app:
        rs = app.core.rule_set_id
        halls = [f"H{i:02d}" for i in range(20)]
        doc = {
            "halls": [{"hall_id": h} for h in halls],
            "windows": [{"window_id": w, "hall_id": halls[i % 20]} for i, w in enumerate(WINDOWS)],
        }
        app.get(RegistryService).load(parse_registry(doc), actor="bench")
        serial = 0
        for p, n in ((period.previous(), ratings // 10), (period, ratings)):
            done = 0
            while done < n:
                chunk = synthetic(rng, min(20_000, n - done), p, received, serial)
                pend = []
                for r in chunk:
                    u = rng.random()
                    if u < 0.97:
                        pend.append(Pending(r, Status.ACCEPTED, (), {}, rs))
                    elif u < 0.99:
                        pend.append(Pending(r, Status.HELD, (Reason.OUTLIER_BURST,), {}, rs))
                    else:
                        pend.append(Pending(r, Status.REJECTED, (Reason.DUPLICATE_TICKET,), {}, rs))
                app.ledger.record_many(pend)
                done += len(chunk)
                serial += len(chunk)
                print(f"  loaded {serial:,}", end="\r", flush=True)
        print()
    # statistics, as autovacuum would gather them after a load (ANALYZE outside a
    # transaction: rolled back, it would leave the planner guessing)
    engine = sa.create_engine(database_url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(sa.text("ANALYZE"))
    engine.dispose()
    marker.write_text(
        json.dumps({"ratings": ratings, "period": period.label, "in_period": ratings})
    )
    return ratings


def median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def cli_run(home: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args, "--home", str(home), "--db", database_url()],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def floor_query(app: App, period: Period) -> int:
    r = sa.table("ratings", sa.column("window_id"), sa.column("occurred_at"))
    q = (
        sa.select(r.c.window_id, sa.func.count())
        .where(r.c.occurred_at >= period.start, r.c.occurred_at < period.end)
        .group_by(r.c.window_id)
    )
    with app.ledger.engine.connect() as conn:
        return len(conn.execute(q).all())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ratings", type=int, default=1_000_000)
    p.add_argument("--period", default="2026-10")
    p.add_argument("--home", type=Path, default=Path("/tmp/bench_report"))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rebuild", action="store_true")
    args = p.parse_args(argv)
    settings = Settings.resolve(home=args.home, db=database_url(), env={})
    period = Period.parse(args.period, ZoneInfo("Asia/Shanghai"))  # the default rule set's
    t0 = time.perf_counter()
    n = build(args.home, args.ratings, period, args.rebuild)
    print(
        f"ledger: {n:,} ratings in {period.label} (+{n // 10:,} the month before) on PostgreSQL "
        f"{DB_NAME} (build {time.perf_counter() - t0:.0f} s, cached)"
    )
    with open_app(settings) as app:
        period = Period.parse(args.period, app.core.timezone)
        floor_query(app, period)  # warm the cache: every timing reads the same pages
        floor, floor_all = median_time(lambda: floor_query(app, period), args.repeat)
        svc = app.get(ReportService)
        lib, lib_all = median_time(lambda: svc.report("window", period), args.repeat)
        staff, _ = median_time(lambda: svc.report("staff", period), args.repeat)
    startup, _ = median_time(lambda: cli_run(args.home, "report", "--help"), args.repeat)
    cmd = ("report", "--by", "window", "--period", args.period, "--format", "csv")
    cli, cli_all = median_time(lambda: cli_run(args.home, *cmd), args.repeat)
    fmt = ", ".join
    print(
        f"floor, one plain GROUP BY window_id over the month: {floor:.2f} s ({fmt(f'{x:.2f}' for x in floor_all)})"
    )
    print(
        f"library, ReportService.report by window (this month and the one before): {lib:.2f} s ({fmt(f'{x:.2f}' for x in lib_all)}) = {lib / floor:.1f}x floor"
    )
    print(
        f"library, by staff (grouped by staff and window for halls): {staff:.2f} s = {staff / floor:.1f}x floor"
    )
    print(
        f"`integrity report --by window --period {args.period} --format csv` (a fresh process): {cli:.2f} s ({fmt(f'{x:.2f}' for x in cli_all)}) = {cli / floor:.1f}x floor; of which start-up (`report --help`) {startup:.2f} s"
    )
    print(f"target <= 5 s for the command: {'met' if cli <= 5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
