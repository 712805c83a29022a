"""HTTP intake under load: ``integrity serve --workers 2`` on PostgreSQL and Redis, with a
client key, against a bare endpoint of the same framework (the floor), each in its own
process, in the same run.

16 concurrent clients (asyncio + httpx, keep-alive connections) post distinct ratings
over loopback: ``--n`` (3,000) to each server per round, in alternating rounds (floor,
engine, floor, engine ...), after a warm-up. The floor (``bench/serve_floor.py``) parses
the body and inserts one row; the engine authenticates the key, bounds the body, parses,
pseudonymises, checks every rate limit in one Redis call and writes rating, decision
event and status in one transaction. Prints throughput, p50 and p99 of both and the
ratios. Targets: engine throughput >= 0.7x the floor's, engine p99 <= 1.5x the floor's.

    .venv/bin/python -m bench.bench_serve [--n 3000] [--concurrency 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis

from bench._common import REDIS, fresh_database

ROOT = Path(__file__).resolve().parents[1]
SCORES = {"attitude": 5, "efficiency": 4, "compliance": 5, "environment": 4, "overall": 5}


def rating(i: int, tag: str) -> dict[str, Any]:
    """A distinct rating that every gate passes: its own ticket, device and /24, so no
    limit trips, served ten minutes before now (a fixed date would be held as too old)."""
    served = datetime.now(UTC) - timedelta(minutes=10)
    return {
        "ticket_id": f"B{tag}-{i}",
        "window_id": f"W{i % 12:02d}",
        "staff_id": f"S{i % 20:02d}",
        "service_type": "tax",
        "channel": "qr",
        "served_at": served.isoformat(timespec="seconds"),
        "scores": SCORES,
        "ip": f"10.{(i >> 8) & 255}.{i & 255}.7",
        "device_id": f"device-{tag}-{i}",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(args: Sequence[str], env: dict[str, str], log: Path, port: int) -> Iterator[str]:
    """Start a server process; yield its base URL once /healthz answers; stop it after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{args[2:4]} exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[2:4]} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)  # a benchmark's start-up poll, not a test
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


async def load(
    base: str, docs: list[dict[str, Any]], concurrency: int, headers: dict[str, str]
) -> tuple[float, list[float], Counter[str]]:
    """Post every doc with ``concurrency`` clients; (seconds, latencies in s, outcomes)."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for d in docs:
        queue.put_nowait(d)
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(c: httpx.AsyncClient) -> None:
        while not queue.empty():
            doc = queue.get_nowait()
            t0 = time.perf_counter()
            r = await c.post("/v1/ratings", json=doc)
            latencies.append(time.perf_counter() - t0)
            outcomes[f"{r.status_code} {r.json().get('status', '')}".strip()] += 1

    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return wall, latencies, outcomes


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 else xs[0]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=3000, help="ratings per server per round")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--async-commit",
        action="store_true",
        help="synchronous_commit=off on both databases: commits stop waiting for the WAL "
        "flush, so the CPU, not the disk, bounds both servers",
    )
    args = ap.parse_args()
    namespace = f"bench:{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        engine_db = stack.enter_context(fresh_database("postgresql"))
        floor_db = stack.enter_context(fresh_database("postgresql"))
        if args.async_commit:
            for url in (engine_db, floor_db):
                _async_commit(url)
        env = {
            **os.environ,
            "INTEGRITY_HOME": str(tmp / "home"),
            "INTEGRITY_DB": engine_db,
            "INTEGRITY_REDIS": REDIS,
            "INTEGRITY_NAMESPACE": namespace,
        }
        cli = [sys.executable, str(ROOT / "cli.py")]
        subprocess.run([*cli, "init"], env=env, cwd=ROOT, check=True, capture_output=True)
        added = subprocess.run(
            [*cli, "clients", "add", "bench-gw"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        key = added.stdout.splitlines()[-1]
        stack.callback(_forget, namespace)
        ep, fp = free_port(), free_port()
        engine = stack.enter_context(
            process(
                [*cli, "serve", "--port", str(ep), "--workers", str(args.workers)],
                env,
                tmp / "engine.log",
                ep,
            )
        )
        floor = stack.enter_context(
            process(
                [
                    sys.executable,
                    "-m",
                    "bench.serve_floor",
                    "--db",
                    floor_db,
                    "--port",
                    str(fp),
                    "--workers",
                    str(args.workers),
                ],
                dict(os.environ),
                tmp / "floor.log",
                fp,
            )
        )
        auth = {"Authorization": f"Bearer {key}"}
        targets = {"floor": (floor, {}), "engine": (engine, auth)}
        results: dict[str, dict[str, Any]] = {
            k: {"wall": 0.0, "lat": [], "n": 0, "out": Counter()} for k in targets
        }
        print(
            f"HTTP intake: {args.concurrency} concurrent clients, {args.n} distinct ratings per "
            f"server per round, {args.rounds} round(s), --workers {args.workers}, PostgreSQL + Redis"
            + (", synchronous_commit=off" if args.async_commit else "")
        )
        for name, (base, headers) in targets.items():  # warm both (connections, caches)
            docs = [rating(i, f"warm-{name}") for i in range(300)]
            asyncio.run(load(base, docs, args.concurrency, headers))
        for r in range(args.rounds):
            for name, (base, headers) in targets.items():
                docs = [rating(i, f"{name}-{r}") for i in range(args.n)]
                wall, lat, out = asyncio.run(load(base, docs, args.concurrency, headers))
                acc = results[name]
                acc["wall"] += wall
                acc["lat"] += lat
                acc["n"] += len(docs)
                acc["out"].update(out)
                print(f"  round {r + 1} {name:<6} {len(docs) / wall:8.0f} ratings/s")
        summary = {}
        for name, acc in results.items():
            summary[name] = (
                acc["n"] / acc["wall"],
                pct(acc["lat"], 50) * 1e3,
                pct(acc["lat"], 99) * 1e3,
            )
            tput, p50, p99 = summary[name]
            outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(acc["out"].items()))
            print(
                f"  {name:<6} {tput:8.0f} ratings/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   ({outcomes})"
            )
        (et, e50, e99), (ft, f50, f99) = summary["engine"], summary["floor"]
        print(
            f"  ratios: throughput {et / ft:.2f}x (target >= 0.70x: {'met' if et / ft >= 0.7 else 'NOT met'}), "
            f"p50 {e50 / f50:.2f}x, p99 {e99 / f99:.2f}x (target <= 1.50x: "
            f"{'met' if e99 / f99 <= 1.5 else 'NOT met'})"
        )


def _async_commit(url: str) -> None:
    import sqlalchemy as sa

    name = sa.engine.make_url(url).database
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" SET synchronous_commit TO off'))
    admin.dispose()


def _forget(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


if __name__ == "__main__":
    main()
