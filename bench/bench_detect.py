"""Time ``integrity detect`` over a ledger of about 1,000,000 ratings (target: <= 10 s, <= 2 GB).

The ledger is built fast, not through a million hook calls: the simulated benchmark
world is parsed and pseudonymised by the engine's own parser and bulk-loaded with
``SqlLedger.record_many`` (rating, decision event and status rows), every rating
``accepted`` except repeated tickets (``rejected`` / ``duplicate_ticket``) and identical
retries (stored once), with the venue registry loaded. Larger sizes (``--ratings
3000000``, ``10000000``) replicate that simulated million as whole new halls in SQL
(every id, ticket, fingerprint and pseudonym of a copy made distinct, its kiosks and
hall networks registered too), then seal the log and bring the closing projections
(the low-score alerts) up to date, as an ingest would have: the timed runs only do
detection's own work. Builds are cached in ``--home``.

Each timed run starts from an untouched copy of the built ledger, in a fresh process:

* first run: reads, analyses, writes holds, cases and a risk for every rating;
* re-run: nothing changed since, so the watermark says there is nothing to do;
* re-run ``--full``: the whole analysis again (idempotent: holds nothing, changes no risk);
* the next day: the busiest day's ratings copied to the day after the last one (new
  ids, tickets and fingerprints, the same raters and windows), sealed and projected as
  a day's ingest would leave them, then a run (the snapshot the first run kept serves
  the read of everything before the day);
* floor: one read of the columns detection needs into its frame, the same way.

Memory is counted over every process a run starts: the run's own peak RSS, the
helper process that reads SQLite through ADBC, and the worker that fits half the
detectors beside the soft signals (forked before the read, so it shares only the
imports), each at its own peak (their sum: an upper bound, they do not all peak at
once). Each is the median of ``--repeat`` runs (the machine is shared: compare with
the floor measured in the same run). Results are kept in ``<home>.results.json`` per
size, and every run prints how time and memory grow with the sizes measured so far.

    .venv/bin/python bench/bench_detect.py [--ratings 1000000] [--home /tmp/bench_detect]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bootstrap import init_instance, open_app  # noqa: E402
from integrity import heap  # noqa: E402
from integrity.adapters.sql import Pending  # noqa: E402
from integrity.app import Settings  # noqa: E402
from integrity.catalogue import Reason  # noqa: E402
from integrity.model import Kiosk, Status  # noqa: E402
from integrity.venues import pseudonymise_venues  # noqa: E402
from simulation import WorldConfig, simulate  # noqa: E402

BASE = 1_000_000  # what one simulated world holds; larger ledgers are copies of it
TARGET_S, TARGET_MB = 10.0, 2048.0


def build(home: Path, ratings: int, seed: int) -> int:
    """A cached benchmark ledger of about ``ratings`` ratings at ``home``; rows written."""
    marker = home / "built.json"
    if marker.exists():
        return int(json.loads(marker.read_text())["rows"])
    if ratings > 1.5 * BASE:
        return _replicate(home, ratings, seed)
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
            if len(batch) >= 50_000:
                app.ledger.record_many(batch)
                n += len(batch)
                batch = []
        if batch:
            app.ledger.record_many(batch)
            n += len(batch)
    marker.write_text(json.dumps({"rows": n, "seed": seed}))
    return n


def _suffix(value: str, k: int) -> str:
    """Copy ``k``'s version of a pseudonym or fingerprint: same length, its last byte
    plus ``k`` (mod 256), so copies differ from the original and from each other."""
    return value[:-2] + f"{(int(value[-2:], 16) + k) % 256:02x}"


def _replicate(home: Path, ratings: int, seed: int) -> int:
    """``ratings`` as copies of the simulated million, each copy a set of new halls."""
    base_home = home.parent / f"{home.name}-base"
    base_rows = build(base_home, BASE, seed)
    copies = max(1, round(ratings / base_rows))
    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(base_home, home, ignore=shutil.ignore_patterns("built.json"))
    settings = Settings.resolve(home=home, env={})
    init_instance(settings)
    with open_app(settings) as app:
        eng = app.ledger.engine
        with eng.begin() as conn:
            r_max = conn.exec_driver_sql("SELECT max(rating_id) FROM ratings").scalar_one()
            e_max = conn.exec_driver_sql("SELECT max(event_id) FROM events").scalar_one()
            cols = [c[1] for c in conn.exec_driver_sql("PRAGMA table_info(ratings)")]
            ev_cols = [c[1] for c in conn.exec_driver_sql("PRAGMA table_info(events)")]
            st_cols = [c[1] for c in conn.exec_driver_sql("PRAGMA table_info(rating_status)")]
            hexd = "(instr('0123456789abcdef', substr({0}, {1}, 1)) - 1)"
            last = f"({hexd.format('{0}', -2)} * 16 + {hexd.format('{0}', -1)})"
            sub = "substr({0}, 1, length({0}) - 2) || printf('%02x', (" + last + " + {1}) % 256)"
            for k in range(1, copies):
                t0 = time.perf_counter()
                special = {
                    "rating_id": f"rating_id + {k * r_max}",
                    "fingerprint": sub.format("fingerprint", k),
                    "ticket_id": f"ticket_id || '~{k}'",
                    "window_id": f"'R{k}' || window_id",
                    "staff_id": f"'R{k}' || staff_id",
                    "ip_hash": sub.format("ip_hash", k),
                    "prefix_hash": sub.format("prefix_hash", k),
                    "device_hash": sub.format("device_hash", k),
                }
                sel = ", ".join(special.get(c, c) for c in cols)
                conn.exec_driver_sql(
                    f"INSERT INTO ratings ({', '.join(cols)}) SELECT {sel} FROM ratings "
                    f"WHERE rating_id <= {r_max}"
                )
                special = {
                    "event_id": f"event_id + {k * e_max}",
                    "rating_id": f"rating_id + {k * r_max}",
                }
                sel = ", ".join(special.get(c, c) for c in ev_cols)
                conn.exec_driver_sql(
                    f"INSERT INTO events ({', '.join(ev_cols)}) SELECT {sel} FROM events "
                    f"WHERE event_id <= {e_max} AND rating_id IS NOT NULL AND kind = 'decision'"
                )
                special = {
                    "rating_id": f"rating_id + {k * r_max}",
                    "last_event_id": f"last_event_id + {k * e_max}",
                }
                sel = ", ".join(special.get(c, c) for c in st_cols)
                conn.exec_driver_sql(
                    f"INSERT INTO rating_status ({', '.join(st_cols)}) SELECT {sel} "
                    f"FROM rating_status WHERE rating_id <= {r_max}"
                )
                print(f"  copy {k}/{copies - 1}: {time.perf_counter() - t0:.0f} s", flush=True)
        # the copies' halls: their kiosks and networks registered like the original's
        with eng.connect() as conn:
            vrows = [
                (str(v), int(n))
                for v, n in conn.exec_driver_sql("SELECT venue_id, networks FROM venues")
            ]
            arows = [
                (str(h), str(kind), str(v))
                for h, kind, v in conn.exec_driver_sql(
                    "SELECT address_hash, kind, venue_id FROM venue_addresses"
                )
            ]
            krows = [
                (str(d), str(v), str(w))
                for d, v, w in conn.exec_driver_sql(
                    "SELECT device_hash, venue_id, window_id FROM kiosks"
                )
            ]
        all_v = list(vrows)
        all_a = list(arows)
        all_k = [Kiosk(venue_id=v, window_id=w, device_hash=d) for d, v, w in krows]
        for k in range(1, copies):
            all_v += [(f"R{k}{v}", n) for v, n in vrows]
            all_a += [(_suffix(h, k), kind, f"R{k}{v}") for h, kind, v in arows]
            all_k += [
                Kiosk(venue_id=f"R{k}{v}", window_id=f"R{k}{w}", device_hash=_suffix(d, k))
                for d, v, w in krows
            ]
        app.ledger.replace_venues(all_v, all_a, all_k, app.clock.now(), "bench")
        app.ledger.written = True  # the closing projections and the seal take the copies in
        t0 = time.perf_counter()
    print(f"  sealed and projected: {time.perf_counter() - t0:.0f} s", flush=True)
    rows = copies * base_rows
    (home / "built.json").write_text(json.dumps({"rows": rows, "seed": seed, "copies": copies}))
    return rows


def _add_day(home: Path) -> int:
    """The next day's ratings, as the ledger at ``home`` would have them after a day's
    ingest: its busiest day's ratings copied to the day after its last rating (new ids,
    tickets and fingerprints; the same windows, staff, addresses and devices rating
    again), each with its decision event and a status as decided (a hold of the
    original's left out); then sealed, with the alerts brought up to date, as the
    ingest's close would have. How many ratings were added."""
    settings = Settings.resolve(home=home, env={})
    with open_app(settings) as app, app.ledger.engine.begin() as conn:
        busiest, last = conn.exec_driver_sql(
            "SELECT (SELECT date(submitted_at) FROM ratings GROUP BY 1 "
            "ORDER BY count(*) DESC, 1 LIMIT 1), (SELECT max(date(submitted_at)) FROM ratings)"
        ).one()
        shift = (datetime.fromisoformat(last) - datetime.fromisoformat(busiest)).days + 1
        r_max = conn.exec_driver_sql("SELECT max(rating_id) FROM ratings").scalar_one()
        e_max = conn.exec_driver_sql("SELECT max(event_id) FROM events").scalar_one()
        cols = [c[1] for c in conn.exec_driver_sql("PRAGMA table_info(ratings)")]
        ev_cols = [c[1] for c in conn.exec_driver_sql("PRAGMA table_info(events)")]
        st_cols = [c[1] for c in conn.exec_driver_sql("PRAGMA table_info(rating_status)")]

        def moved(col: str) -> str:  # the same text form, a whole number of days later
            return (
                f"CASE WHEN {col} IS NULL THEN NULL ELSE strftime('%Y-%m-%d %H:%M:%S', "
                f"{col}, '+{shift} days') || substr({col}, 20) END"
            )

        conn.exec_driver_sql(
            "CREATE TEMP TABLE day AS SELECT rating_id FROM ratings "
            f"WHERE date(submitted_at) = '{busiest}'"
        )
        picked = "rating_id IN (SELECT rating_id FROM day)"
        hexd = "(instr('0123456789abcdef', substr(fingerprint, {0}, 1)) - 1)"
        special = {
            "rating_id": f"rating_id + {r_max}",
            # the first byte moved (a copied hall's fingerprints differ in the last one)
            "fingerprint": f"printf('%02x', ({hexd.format(1)} * 16 + {hexd.format(2)} + 1) "
            "% 256) || substr(fingerprint, 3)",
            "ticket_id": "ticket_id || '~next'",
            **{c: moved(c) for c in ("served_at", "submitted_at", "received_at", "occurred_at")},
        }
        sel = ", ".join(special.get(c, c) for c in cols)
        conn.exec_driver_sql(
            f"INSERT INTO ratings ({', '.join(cols)}) SELECT {sel} FROM ratings WHERE {picked}"
        )
        special = {
            "event_id": f"event_id + {e_max}",
            "rating_id": f"rating_id + {r_max}",
            "at": moved("at"),
        }
        sel = ", ".join(special.get(c, c) for c in ev_cols)
        conn.exec_driver_sql(
            f"INSERT INTO events ({', '.join(ev_cols)}) SELECT {sel} FROM events "
            f"WHERE {picked} AND kind = 'decision'"
        )
        decided = (
            "(SELECT {0} FROM events e WHERE e.rating_id = rating_status.rating_id "
            "AND e.kind = 'decision')"
        )
        special = {
            "rating_id": f"rating_id + {r_max}",
            "status": decided.format("e.status"),
            # the event's reasons (a JSON list) as a status row keeps them (';'-joined)
            "reasons": decided.format(
                "coalesce((SELECT group_concat(j.value, ';') FROM json_each(e.reasons) j), '')"
            ),
            "last_event_id": f"{decided.format('e.event_id')} + {e_max}",
            "risk": "0",
            "version": "1",
        }
        sel = ", ".join(special.get(c, c) for c in st_cols)
        conn.exec_driver_sql(
            f"INSERT INTO rating_status ({', '.join(st_cols)}) SELECT {sel} "
            f"FROM rating_status WHERE {picked}"
        )
        added = int(conn.exec_driver_sql("SELECT count(*) FROM day").scalar_one())
        app.ledger.written = True  # the closing projections and the seal take the day in
    return added


class _Sampler:
    """The peak, over the run, of the memory of this process and all its descendants
    together, sampled every ``every`` seconds from ``/proc``: RSS (pages a forked worker
    shares with its parent count in both) and PSS (shared pages split between them: the
    memory the processes really take). Linux only; elsewhere it reports 0."""

    def __init__(self, every: float = 0.1) -> None:
        self.every = every
        self.rss_mb = 0.0
        self.pss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _tree(pid: int) -> list[int]:
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            try:
                for task in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{task}/children") as fh:
                        todo.extend(int(c) for c in fh.read().split())
            except OSError:
                continue
        return out

    @staticmethod
    def _kb(path: str, key: str) -> int:
        try:
            with open(path) as fh:
                for line in fh:
                    if line.startswith(key):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            pids = self._tree(os.getpid())
            rss = sum(self._kb(f"/proc/{p}/status", "VmRSS:") for p in pids) / 1024
            pss = sum(self._kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids) / 1024
            self.rss_mb, self.pss_mb = max(self.rss_mb, rss), max(self.pss_mb, pss)

    def __enter__(self) -> _Sampler:
        if os.path.exists("/proc/self/status"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def _child(home: Path, what: str) -> None:
    """Run in a fresh process: detect (or the floor read) and print JSON with peak RSS."""
    heap.settle()  # the process policy of ``integrity detect`` (cli.run)
    settings = Settings.resolve(home=home, env={})
    t0 = time.perf_counter()
    out: dict[str, Any]
    with _Sampler() as sampler, open_app(settings) as app:
        if what == "floor":
            from rules.detectors.features import load_frame

            frame = load_frame(app.ledger, rubric=app.core.rubric, tz=app.core.timezone)
            out = {"rows": len(frame), "timings": {}}
        else:
            from rules.detectors.service import DetectService

            rep = app.get(DetectService).run(full=what == "full")
            out = {
                "rows": rep.ratings,
                "held": rep.held,
                "cases": len(rep.cases),
                "risk_updates": rep.risk_updates,
                "up_to_date": rep.up_to_date,
                "flags": rep.flag_counts,
                "timings": {k: round(v, 2) for k, v in rep.timings.items()},
            }
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tm = out["timings"]
    # the helper reader's peak (it has exited by the end of the read), the worker's own
    out["reader_rss_mb"] = tm.get("reader_peak_mb", 0.0)
    out["worker_rss_mb"] = tm.get("worker_peak_mb", 0.0)
    out["children_max_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out["together_rss_mb"] = sampler.rss_mb
    out["together_pss_mb"] = sampler.pss_mb
    print(json.dumps(out))


def _run(home: Path, what: str) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, __file__, "--child", what, "--home", str(home)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise SystemExit(f"{what} failed:\n{res.stderr[-4000:]}")
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    # every process together: the run's own peak plus each child's (an upper bound)
    kids = out["reader_rss_mb"] + out["worker_rss_mb"]
    out["total_mb"] = out["peak_rss_mb"] + max(kids, out["children_max_rss_mb"])
    return out


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--ratings", type=int, default=BASE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--home", type=Path, default=None)
    p.add_argument("--repeat", type=int, default=3, help="runs of each kind (median)")
    p.add_argument("--child", choices=["detect", "full", "floor"])
    args = p.parse_args(argv)
    home = args.home or Path(f"/tmp/bench_detect-{args.ratings // 1000}k")
    if args.child:
        _child(home, args.child)
        return 0
    t0 = time.perf_counter()
    rows = build(home, args.ratings, args.seed)
    init_instance(Settings.resolve(home=home, env={}))  # schema up to date (idempotent)
    print(f"ledger: {rows:,} ratings at {home} (build {time.perf_counter() - t0:.0f} s, cached)")
    work = home.parent / (home.name + "-run")
    floors, firsts, seconds, fulls, nexts = [], [], [], [], []
    added = 0
    for _ in range(args.repeat):
        floors.append(_run(home, "floor"))
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(home, work, ignore=shutil.ignore_patterns("built.json"))
        firsts.append(_run(work, "detect"))
        seconds.append(_run(work, "detect"))
        fulls.append(_run(work, "full"))
        added = _add_day(work)
        nexts.append(_run(work, "detect"))
    shutil.rmtree(work, ignore_errors=True)
    floor_s, first_s = _median(floors, "seconds"), _median(firsts, "seconds")
    second_s, full_s = _median(seconds, "seconds"), _median(fulls, "seconds")
    first, second, full = firsts[0], seconds[0], fulls[0]
    first_mb, full_mb = _median(firsts, "total_mb"), _median(fulls, "total_mb")
    print(
        f"floor (read the detection columns into the frame): {floor_s:.1f} s, "
        f"{_median(floors, 'total_mb'):.0f} MB (all processes)"
    )
    print(
        f"integrity detect, first run: {first_s:.1f} s ({first_s / floor_s:.1f}x the floor), "
        f"{first_mb:.0f} MB in all processes as the sum of each one's peak (this one "
        f"{_median(firsts, 'peak_rss_mb'):.0f}, reader {_median(firsts, 'reader_rss_mb'):.0f}, "
        f"worker {_median(firsts, 'worker_rss_mb'):.0f}); at any one time at most "
        f"{_median(firsts, 'together_rss_mb'):.0f} MB RSS, "
        f"{_median(firsts, 'together_pss_mb'):.0f} MB PSS (sampled every 0.1 s); "
        f"held {first['held']:,}, cases {first['cases']}, "
        f"risks recorded {first['risk_updates']:,}, flags {first['flags']}"
    )
    print(f"  stages (s, MB) of one: {first['timings']}")
    print(
        f"re-run, nothing new (watermark: up to date with run {second['up_to_date']}): "
        f"{second_s:.1f} s, {_median(seconds, 'total_mb'):.0f} MB"
    )
    print(
        f"re-run --full (the whole analysis again; idempotent, holds nothing new: "
        f"{all(r['held'] == 0 and r['risk_updates'] == 0 for r in fulls)}): {full_s:.1f} s "
        f"({full_s / floor_s:.1f}x the floor), {full_mb:.0f} MB"
    )
    print(f"  stages (s, MB) of one: {full['timings']}")
    next_s = _median(nexts, "seconds")
    print(
        f"the next day (its {added:,} ratings added after the runs above, sealed and "
        f"projected as an ingest leaves them): {next_s:.1f} s ({next_s / floor_s:.1f}x the "
        f"floor), {_median(nexts, 'total_mb'):.0f} MB; held {nexts[0]['held']:,}, "
        f"risks recorded {nexts[0]['risk_updates']:,}"
    )
    print(f"  stages (s, MB) of one: {nexts[0]['timings']}")
    ok = first_s <= TARGET_S and first_mb <= TARGET_MB
    print(
        f"target <= {TARGET_S:.0f} s and <= {TARGET_MB:.0f} MB in all processes (first run): "
        f"{'met' if ok else 'NOT met'}"
    )
    store = home.parent / "bench_detect.results.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    results[str(rows)] = {
        "floor_s": floor_s,
        "first_s": first_s,
        "first_mb": first_mb,
        "first_together_rss_mb": _median(firsts, "together_rss_mb"),
        "first_together_pss_mb": _median(firsts, "together_pss_mb"),
        "rerun_s": second_s,
        "full_s": full_s,
        "full_mb": full_mb,
        "next_day_s": next_s,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store.write_text(json.dumps(results, indent=2))
    sizes = sorted(results, key=int)
    if len(sizes) > 1:
        lo = results[sizes[0]]
        print(f"growth against {int(sizes[0]):,} ratings (from {store}):")
        for s in sizes:
            r = results[s]
            x = int(s) / int(sizes[0])
            together = r.get("first_together_pss_mb")
            print(
                f"  {int(s):>11,} ratings ({x:.1f}x): first run {r['first_s']:.1f} s "
                f"({r['first_s'] / lo['first_s']:.1f}x), {r['first_mb']:.0f} MB "
                f"({r['first_mb'] / lo['first_mb']:.1f}x)"
                + (f", together {together:.0f} MB PSS" if together else "")
                + f"; floor {r['floor_s']:.1f} s "
                f"({r['floor_s'] / lo['floor_s']:.1f}x); --full {r['full_s']:.1f} s, "
                f"{r['full_mb']:.0f} MB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
