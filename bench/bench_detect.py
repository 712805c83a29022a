"""Time ``integrity detect`` over a ledger of about 1,000,000 ratings (target: <= 20 s, <= 2 GB).

The ledger is built fast, not through a million hook calls: the simulated benchmark
world is parsed and pseudonymised by the engine's own parser and bulk-loaded with
``SqlLedger.record_many`` (rating, decision event and status rows), every rating
``accepted`` except repeated tickets (``rejected`` / ``duplicate_ticket``) and identical
retries (stored once), with the venue registry loaded. The build is cached in
``--home``. Then detect runs in a fresh process (its own peak RSS), twice: the first
run writes holds, the second must change nothing (idempotency), and is timed too.

Floor measured in the same run: one full read of the columns detection needs
(``SELECT`` of the same rows into pandas), so the ratio says how much of the time
is analysis rather than I/O.

    .venv/bin/python bench/bench_detect.py [--ratings 1000000] [--home /tmp/bench_detect]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bootstrap import init_instance, open_app  # noqa: E402
from integrity.adapters.sql import Pending  # noqa: E402
from integrity.app import Settings  # noqa: E402
from integrity.catalogue import Reason  # noqa: E402
from integrity.model import Status  # noqa: E402
from integrity.venues import pseudonymise_venues  # noqa: E402
from simulation import WorldConfig, simulate  # noqa: E402


def build(home: Path, ratings: int, seed: int) -> int:
    """Bulk-load a benchmark world into a fresh instance at ``home``; returns rows written."""
    marker = home / "built.json"
    if marker.exists():
        return int(json.loads(marker.read_text())["rows"])
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings.resolve(home=home, env={})
    init_instance(settings)
    world = simulate(WorldConfig.benchmark(seed, ratings))
    n = 0
    with open_app(settings) as app:
        pv = pseudonymise_venues(world.venues, app.pseudonymiser)
        app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, app.clock.now(), "bench")
        rs = app.core.rule_set_id
        now = datetime.now(UTC)
        seen: set[str] = set()
        claimed: set[str] = set()
        batch: list[Pending] = []
        for obj in world.iter_ratings():
            r = app.hook.parse(obj, received_at=now)
            if r.fingerprint in seen:
                continue
            seen.add(r.fingerprint)
            if r.ticket_id in claimed:
                batch.append(Pending(r, Status.REJECTED, (Reason.DUPLICATE_TICKET,), {}, rs))
            else:
                claimed.add(r.ticket_id)
                batch.append(Pending(r, Status.ACCEPTED, (), {}, rs))
            if len(batch) >= 5000:
                app.ledger.record_many(batch)
                n += len(batch)
                batch = []
        if batch:
            app.ledger.record_many(batch)
            n += len(batch)
    marker.write_text(json.dumps({"rows": n, "seed": seed}))
    return n


def _child(home: Path, what: str) -> None:
    """Run in a fresh process: detect (or the floor read) and print JSON with peak RSS."""
    settings = Settings.resolve(home=home, env={})
    t0 = time.perf_counter()
    out: dict[str, Any]
    with open_app(settings) as app:
        if what == "floor":
            from rules.detectors.features import load_frame

            frame = load_frame(app.ledger, rubric=app.core.rubric, tz=app.core.timezone)
            out = {"rows": len(frame)}
        else:
            from rules.detectors.service import DetectService

            rep = app.get(DetectService).run()
            out = {
                "rows": rep.ratings,
                "held": rep.held,
                "cases": len(rep.cases),
                "flags": rep.flag_counts,
                "timings": {k: round(v, 2) for k, v in rep.timings.items()},
            }
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the soft signals run in a forked worker: report its peak too
    out["worker_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(out))


def _run(home: Path, what: str) -> dict:
    res = subprocess.run(
        [sys.executable, __file__, "--child", what, "--home", str(home)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ratings", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--home", type=Path, default=Path("/tmp/bench_detect"))
    p.add_argument("--child", choices=["detect", "floor"])
    args = p.parse_args(argv)
    if args.child:
        _child(args.home, args.child)
        return 0
    t0 = time.perf_counter()
    rows = build(args.home, args.ratings, args.seed)
    init_instance(Settings.resolve(home=args.home, env={}))  # schema up to date (idempotent)
    print(
        f"ledger: {rows:,} ratings at {args.home} (build {time.perf_counter() - t0:.0f} s, cached)"
    )
    # every timed run starts from the same untouched copy of the built ledger
    work = args.home.parent / (args.home.name + "-run")
    floor = _run(args.home, "floor")
    print(
        f"floor (read the detection columns into pandas): {floor['seconds']:.1f} s, {floor['peak_rss_mb']:.0f} MB"
    )
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(args.home, work, ignore=shutil.ignore_patterns("built.json"))
    first = _run(work, "detect")
    print(
        f"integrity detect, first run: {first['seconds']:.1f} s, peak RSS {first['peak_rss_mb']:.0f} MB "
        f"(pyod/fairness worker {first['worker_rss_mb']:.0f} MB), "
        f"held {first['held']:,}, cases {first['cases']}, flags {first['flags']}"
    )
    print(f"  stages (s): {first['timings']}")
    second = _run(work, "detect")
    print(
        f"integrity detect, second run (idempotent, holds nothing new: {second['held'] == 0}): "
        f"{second['seconds']:.1f} s, peak RSS {second['peak_rss_mb']:.0f} MB"
    )
    print(f"  stages (s): {second['timings']}")
    ratio = first["seconds"] / max(floor["seconds"], 1e-9)
    ok = first["seconds"] <= 20 and first["peak_rss_mb"] <= 2048
    print(
        f"ratio to floor: {ratio:.1f}x; target <= 20 s and <= 2048 MB: {'met' if ok else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
