"""Batch ingest, whole process, against a floor script run on the same file in the same run.

For each size (a simulated month of about N ratings: ``WorldConfig.benchmark``) and each
backend, alternating, ``--repeat`` times (the median counts):

- floor: ``bench/ingest_floor.py`` in a process of its own: decode each line,
  pseudonymise ip, prefix and device (HMAC-SHA256), parse the times, compute the
  composite, bulk-insert through SQLAlchemy Core into a table shaped like ``ratings``;
- engine: ``integrity init``, ``integrity venues load`` and ``integrity ingest`` as the
  operator runs them (three processes: every rule on, decision events, sealing at
  close, the low-score alerts' projection), on SQLite and on PostgreSQL (COPY) with
  the in-process limiter, and on PostgreSQL with Redis (one ``hit.lua`` call per
  rating, pipelined).

Every module is compiled to bytecode first, as an installed package is. Prints each
step's median seconds, ratings/s, the ratio floor time / engine time
(target >= 0.5x), the peak resident memory of the last ingest and floor processes, how
the rate holds within the last ingest (microseconds per rating in each fifth of the file,
from its ``--progress`` lines, as the ledger grows), and per size how the rate holds
(every step's time per rating must not grow with the size).

    .venv/bin/python -m bench.bench_ingest [--sizes 30000,300000] [--repeat 3]
        [--backends sqlite,postgresql,postgresql+redis] [--seed 7]

Last measured (2 shared cores; README, Benchmarks): a 29,648-rating month SQLite
0.66x, PostgreSQL 0.53x (median of 3, the fifth session of 2026-12-05/06; PostgreSQL
0.48-0.62x across runs and sessions); 297,818 ratings SQLite 0.97x, PostgreSQL 0.81x. Within one
ingest of the 2,959,597-rating month on SQLite, 261-296 us a rating in every stretch
of 250,000 from 0.5M to 3M (more per rating than the 1M month, which is a third as
dense: the in-process limiter's live counters). 3M runs take 10-50 minutes a backend.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import redis

from bench._common import REDIS, fresh_database
from simulation import WorldConfig, simulate

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(ROOT / "cli.py")]
STEPS = ("init", "venues", "ingest")


def write_world(n: int, seed: int, out: Path) -> int:
    world = simulate(WorldConfig.benchmark(seed, n))
    world.to_jsonl(out / "ratings.jsonl")
    world.venues_json(out / "venues.json")
    return len(world)


#: the peak resident memory (MB) of each step's last process, by step (GNU time's %M:
#: the rusage a parent gets back counts the pages a forked child shared with it before
#: its exec, here the bench's own, with the whole world in memory)
PEAK_MB: dict[str, float] = {}
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None


#: (seconds since the step started, ratings committed) at each progress line of the
#: last ingest (``integrity ingest --progress``), by backend
PROGRESS: dict[str, list[tuple[float, int]]] = {}
COMMITTED = re.compile(r"ingest: (\d+) ratings committed")


def run(
    cmd: list[str],
    env: dict[str, str],
    step: str = "",
    progress: list[tuple[float, int]] | None = None,
) -> float:
    """Run ``cmd`` to its end; seconds elapsed (its peak RSS goes to ``PEAK_MB[step]``).
    With ``progress``, each ``ratings committed`` line it writes to stderr is appended
    with the time it came, as it comes."""
    if GNU_TIME is not None:
        cmd = [GNU_TIME, "-f", "peak_kb=%M", *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stderr is not None
    err: list[str] = []
    for line in proc.stderr:
        err.append(line)
        if progress is not None and (got := COMMITTED.search(line)) is not None:
            progress.append((time.perf_counter() - t0, int(got.group(1))))
    proc.wait()
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{''.join(err)[-3000:]}")
    peaks = [line for line in err if line.startswith("peak_kb=")]
    if step and peaks:
        PEAK_MB[step] = int(peaks[-1].split("=", 1)[1]) / 1024
    return elapsed


def within(progress: list[tuple[float, int]], parts: int = 5) -> list[float]:
    """Microseconds per rating in each of ``parts`` equal stretches of what was committed
    (from the first progress line: the start-up is not a rating's cost)."""
    if len(progress) < parts + 1:
        return []
    t_first, n_first = progress[0]
    n_last = progress[-1][1]
    out, prev = [], (t_first, n_first)
    for k in range(1, parts + 1):
        goal = n_first + (n_last - n_first) * k / parts
        t, n = next(p for p in progress if p[1] >= goal)
        if n > prev[1]:
            out.append((t - prev[0]) / (n - prev[1]) * 1e6)
        prev = (t, n)
    return out


#: backend -> (database kind, limiter); the floor runs on the same database kind
BACKENDS = {
    "sqlite": ("sqlite", "memory://"),
    "postgresql": ("postgresql", "memory://"),
    "postgresql+redis": ("postgresql", REDIS),
}


def floor_once(backend: str, data: Path) -> float:
    with fresh_database(BACKENDS[backend][0]) as url:
        cmd = [sys.executable, "-m", "bench.ingest_floor", "--db", url, str(data / "ratings.jsonl")]
        return run(cmd, dict(os.environ), "floor")


def engine_once(backend: str, data: Path) -> dict[str, float]:
    kind, limiter = BACKENDS[backend]
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database(kind))
        home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        progress: list[tuple[float, int]] = []  # this ingest's progress lines
        PROGRESS[backend] = progress
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRITY_")}
        env.update(INTEGRITY_HOME=str(home), INTEGRITY_DB=url, INTEGRITY_REDIS=limiter)
        if limiter == REDIS:
            ns = f"bench-ingest-{uuid.uuid4().hex[:8]}"
            env.update(INTEGRITY_NAMESPACE=ns)
            stack.callback(_forget, ns)
        times = {
            "init": run([*CLI, "init"], env, "init"),
            "venues": run([*CLI, "venues", "load", str(data / "venues.json")], env, "venues"),
            "ingest": run(
                [*CLI, "ingest", "--progress", str(data / "ratings.jsonl")],
                env,
                "ingest",
                progress,
            ),
        }
        return times


def _forget(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=5000))
    for i in range(0, len(keys), 5000):
        client.unlink(*keys[i : i + 5000])
    client.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="30000,300000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backends", default=",".join(BACKENDS), help=", ".join(BACKENDS))
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    # Bytecode for every module, as an installed package has (PYTHONDONTWRITEBYTECODE,
    # set on some machines, would otherwise make each process compile what it imports).
    for pkg in ("integrity", "rules", "appeals", "audit_sampling", "followup", "publishing"):
        compileall.compile_dir(ROOT / pkg, quiet=1)
    compileall.compile_file(ROOT / "cli.py", quiet=1)
    compileall.compile_file(ROOT / "bootstrap.py", quiet=1)
    kinds = args.backends.split(",")
    print("batch ingest, whole process (init + venues load + ingest, sealing included)")
    print("floor: decode + HMAC ip/prefix/device + times + composite + SQLAlchemy Core bulk insert")
    per_rating: dict[str, list[tuple[int, dict[str, float]]]] = {k: [] for k in kinds}
    for size in sizes:
        with tempfile.TemporaryDirectory() as d:
            data = Path(d)
            n = write_world(size, args.seed, data)
            repeat = args.repeat if n <= 100_000 else 1
            print(f"\n{n:,} ratings (median of {repeat})")
            for kind in kinds:
                floors: list[float] = []
                engines: list[dict[str, float]] = []
                for _ in range(repeat):
                    floors.append(floor_once(kind, data))
                    engines.append(engine_once(kind, data))
                f = statistics.median(floors)
                steps = {s: statistics.median(e[s] for e in engines) for s in STEPS}
                total = statistics.median(sum(e.values()) for e in engines)
                per_rating[kind].append((n, {**steps, "floor": f, "total": total}))
                print(
                    f"  {kind:<16}: floor {f:6.2f} s {n / f:8,.0f}/s | engine {total:6.2f} s "
                    f"{n / total:8,.0f}/s (init {steps['init']:.2f} + venues {steps['venues']:.2f} "
                    f"+ ingest {steps['ingest']:.2f}) | ratio {f / total:4.2f}x (target >= 0.50x) "
                    f"| peak RSS: ingest {PEAK_MB.get('ingest', 0):,.0f} MB, "
                    f"floor {PEAK_MB.get('floor', 0):,.0f} MB",
                    flush=True,
                )
                fifths = within(PROGRESS.get(kind, []))
                if fifths:
                    print(
                        "      within the last ingest, us per rating in each fifth of the "
                        "file as the ledger grows: " + ", ".join(f"{u:.0f}" for u in fifths),
                        flush=True,
                    )
    if len(sizes) > 1:
        print("\nhow the rate holds: microseconds per rating, per step")
        for kind in kinds:
            for n, steps in per_rating[kind]:
                cells = "  ".join(f"{k} {v / n * 1e6:7.1f}" for k, v in steps.items())
                print(f"  {kind:<16} {n:>9,}: {cells}")


if __name__ == "__main__":
    main()
