"""What opening and closing an embedded instance costs once the in-process limiter keeps
nothing on disk: its counters are rebuilt from the ledger when the instance first checks
a limit (a process that never checks one, such as ``integrity detect``, skips it).

A simulated month is ingested into a fresh embedded instance (SQLite, in-process
limiter); the instance is then opened and closed again and again. Measured twice: after
the whole month (its last ratings are a thin tail of late ones, so little is restored),
and on a ledger stopped at the end of a busy weekday mid-month (the most a rebuild
restores: two full days of ratings). Reported: ``open_app`` + first use of the limiter + ``close`` against the
floor of opening the same instance with a limiter that needs no rebuild (Redis); the
rebuild alone (two ledger reads, planning each rating through the rate-limit gate,
restoring); and, for comparison, what the JSON dump of the counters that ``close`` used
to write costs for the same month (the same counters, ``json.dump`` to a file).

    .venv/bin/python -m bench.bench_open [--seed 7] [--days 30] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._common import REDIS
from bootstrap import init_instance, open_app
from integrity.app import Settings
from integrity.clock import SystemClock
from integrity.ingest import ingest
from integrity.venues import pseudonymise_venues
from rules.ratelimit import MemoryLimiter, RateLimitGate
from rules.ratelimit.rebuild import rebuild
from simulation import WorldConfig, simulate


def median_s(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _open_use_close(settings: Settings) -> None:
    """Open, use the limiter once (the rebuild waits for its first use), close."""
    app = open_app(settings)
    try:
        if isinstance(app.limiter, MemoryLimiter):
            app.limiter.size()
    finally:
        app.close()


def measure(label: str, world: Any, ratings: list[dict[str, Any]], rounds: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        settings = Settings(home, f"sqlite:///{home / 'ledger.db'}", "memory://", home / "k")
        init_instance(settings)
        with open_app(settings) as app:
            pv = pseudonymise_venues(world.venues, app.pseudonymiser)
            app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, app.clock.now(), "b")
            app.hook.reload()
            ingest(app.hook, ratings, replay=True)
        floor_settings = Settings(home, settings.db_url, REDIS, settings.secret_file, "bench:o")
        full = median_s(lambda: _open_use_close(settings), rounds)
        floor = median_s(lambda: _open_use_close(floor_settings), rounds)
        with open_app(settings) as app:
            gate = app.hook.gates[0]
            assert isinstance(gate, RateLimitGate)
            done = rebuild(app.ledger, gate, MemoryLimiter(SystemClock()))
            alone = median_s(
                lambda: rebuild(app.ledger, gate, MemoryLimiter(SystemClock())),
                rounds,
            )
        print(f"{label}: {len(ratings):,} ratings in the ledger")
        print(
            f"  open + close   {full * 1000:6.0f} ms   (floor, the same instance on Redis: "
            f"{floor * 1000:.0f} ms; the rebuild adds {(full - floor) * 1000:.0f} ms)"
        )
        print(
            f"  rebuild alone  {alone * 1000:6.0f} ms   ({done.ratings:,} ratings restored, "
            f"{done.entries:,} limiter entries)"
        )


def old_dump_cost(world: Any) -> tuple[float, int]:
    """What close used to write for this month: every counter its ingest left."""
    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        settings = Settings(home, f"sqlite:///{home / 'ledger.db'}", "memory://", home / "k")
        init_instance(settings)
        with open_app(settings) as app:
            gate = app.hook.gates[0]
            assert isinstance(gate, RateLimitGate)
            month = MemoryLimiter(SystemClock())
            gate.limiter = month
            gate.check_many([app.hook.parse(r) for r in world.ratings], app.hook._context(True))
        target = home / "limiter.json"

        def dump() -> None:
            doc = {
                "version": 1,
                "keys": {
                    k: {"expires_at_ms": b.expires_at_ms, "entries": b.entries}
                    for k, b in month._keys.items()
                },
            }
            with target.open("w") as fh:
                json.dump(doc, fh, separators=(",", ":"))

        return median_s(dump, 3), month.size()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    world = simulate(WorldConfig(seed=args.seed, days=args.days))
    print("opening an embedded instance (SQLite + in-process limiter rebuilt from the ledger)")
    measure("after the whole month", world, world.ratings, args.rounds)
    # stop at the end of the busiest day of the month's third week
    days: dict[Any, int] = {}
    for r in world.ratings:
        day = datetime.fromisoformat(r["submitted_at"]).date()
        days[day] = days.get(day, 0) + 1
    third_week = sorted(days)[14:21]
    busiest = max(third_week, key=lambda day: days[day])
    cut = [r for r in world.ratings if datetime.fromisoformat(r["submitted_at"]).date() <= busiest]
    measure(f"stopped after {busiest} (the busiest day of the third week)", world, cut, args.rounds)
    dump, entries = old_dump_cost(world)
    print(
        f"what close used to cost (JSON dump of the month's {entries:,} counters): "
        f"{dump * 1000:.0f} ms; now close writes nothing"
    )


if __name__ == "__main__":
    main()
