"""Service records and receipts: what they cost, against floors measured in the same run.

- **Ticket gate, live**: hook latency per rating with ``[tickets] require_known_ticket``
  on (every ticket recorded, so one lookup per rating) against the same hook with it
  off, in alternating rounds (the median round counts).
- **Loading records**: ``ServiceRecords.load`` (1,000 records per transaction, each
  checked against the known records, plus the re-judging query) against a bare
  ``executemany`` of the same rows into a table shaped like ``service_records``.
- **Late arrival**: loading the records of ratings held ``unknown_ticket`` (each one
  lifted by a ``clear`` event in the same transaction), per rating.
- **Receipts**: deriving a code; looking one up (decode + one ledger read) against the
  ledger read alone.

    .venv/bin/python -m bench.bench_tickets [--backend sqlite|postgresql] [--n 2000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench._common import REDIS, fresh_database, per_call, rating
from bootstrap import init_instance, open_app
from integrity.adapters.sql import make_engine
from integrity.app import App, Settings
from integrity.ingest import ingest
from integrity.ports import GateContext
from integrity.receipts import ReceiptService
from integrity.tickets import Line, ServiceRecords
from rules.ruleset import default_ruleset_text

ON = default_ruleset_text().replace("require_known_ticket = false", "require_known_ticket = true")
SERVED = "2026-10-01T09:00:00+08:00"


@contextmanager
def instance(db_url: str, rules_text: str | None, limiter: str) -> Iterator[App]:
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(
            Path(home),
            db_url,
            limiter,
            Path(home) / "secret.key",
            namespace=f"bt:{uuid.uuid4().hex[:8]}",
        )
        init_instance(settings, rules_text=rules_text)
        app = open_app(settings)
        try:
            yield app
        finally:
            app.limiter.reset()
            app.close()


def record_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "ticket_id": doc["ticket_id"],
        "window_id": doc["window_id"],
        "staff_id": doc["staff_id"],
        "served_at": doc["served_at"],
    }


def alternate(
    a: Callable[[int], object], b: Callable[[int], object], n: int, rounds: int = 10
) -> tuple[float, float]:
    """Median seconds per call of ``a`` and ``b`` over alternating rounds."""
    per = n // rounds
    ta, tb = [], []
    for r in range(rounds):
        t0 = time.perf_counter()
        for i in range(r * per, (r + 1) * per):
            a(i)
        ta.append((time.perf_counter() - t0) / per)
        t0 = time.perf_counter()
        for i in range(r * per, (r + 1) * per):
            b(i)
        tb.append((time.perf_counter() - t0) / per)
    return statistics.median(ta), statistics.median(tb)


def gate_alone(kind: str, n: int) -> float:
    """Seconds per ``TicketGate.check`` of a parsed rating (its one query), gate on."""
    with ExitStack() as stack:
        app = stack.enter_context(
            instance(stack.enter_context(fresh_database(kind)), ON, "memory://")
        )
        docs = [rating(i) for i in range(n)]
        app.get(ServiceRecords).record([record_of(d) for d in docs], client_id="bench")
        parsed = [app.hook.parse(d) for d in docs]
        gate = next(g for g in app.hook.gates if g.name == "tickets")
        ctx = GateContext(replay=False, rule_set_id=app.core.rule_set_id)
        assert gate.check(parsed[0], ctx) is None
        return per_call(lambda i: gate.check(parsed[i % n], ctx), n)


def gate_latency(kind: str, n: int, limiter: str) -> tuple[float, float]:
    with ExitStack() as stack:
        off = stack.enter_context(
            instance(stack.enter_context(fresh_database(kind)), None, limiter)
        )
        on = stack.enter_context(instance(stack.enter_context(fresh_database(kind)), ON, limiter))
        docs_off = [rating(i) for i in range(n + 100)]
        docs_on = [rating(i) for i in range(n + 100)]
        # the same records in both ledgers: the only difference is the gate
        on.get(ServiceRecords).record([record_of(d) for d in docs_on], client_id="bench")
        off.get(ServiceRecords).record([record_of(d) for d in docs_off], client_id="bench")
        for i in range(n, n + 100):  # warm both
            off.validate(docs_off[i])
            on.validate(docs_on[i])
        d = on.validate(docs_on[0])
        assert "unknown_ticket" not in d.reasons and "ticket_mismatch" not in d.reasons
        return alternate(
            lambda i: on.validate(docs_on[i + 1]), lambda i: off.validate(docs_off[i + 1]), n - 1
        )


def load_throughput(kind: str, n: int) -> tuple[float, float]:
    """Records per second: the service's load, and a bare executemany of the same rows."""
    with ExitStack() as stack:
        app = stack.enter_context(
            instance(stack.enter_context(fresh_database(kind)), ON, "memory://")
        )
        recs = [record_of(rating(i)) for i in range(n)]
        t0 = time.perf_counter()
        summary = app.get(ServiceRecords).load(
            (Line(i + 1, r) for i, r in enumerate(recs)), client_id="bench"
        )
        engine_t = time.perf_counter() - t0
        assert summary.recorded == n, summary.as_dict()
        engine = make_engine(stack.enter_context(fresh_database(kind)))
        stack.callback(engine.dispose)
        md = sa.MetaData()
        table = sa.Table(
            "floor_records",
            md,
            sa.Column("ticket_id", sa.String(128), primary_key=True),
            sa.Column("window_id", sa.String(64), nullable=False),
            sa.Column("staff_id", sa.String(64)),
            sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("client_id", sa.String(64), nullable=False),
        )
        md.create_all(engine)
        now = datetime.now(UTC)
        served = datetime.fromisoformat(SERVED)
        t0 = time.perf_counter()
        for lo in range(0, n, 1000):
            with engine.begin() as conn:
                conn.execute(
                    table.insert(),
                    [
                        {**r, "served_at": served, "recorded_at": now, "client_id": "bench"}
                        for r in recs[lo : lo + 1000]
                    ],
                )
        floor_t = time.perf_counter() - t0
        return n / engine_t, n / floor_t


def late_arrival(kind: str, n: int) -> tuple[float, int]:
    """Seconds per held rating lifted by its late record, and how many were lifted."""
    with ExitStack() as stack:
        app = stack.enter_context(
            instance(stack.enter_context(fresh_database(kind)), ON, "memory://")
        )
        docs = [rating(i) for i in range(n)]
        served = datetime.fromisoformat(SERVED)
        for i, d in enumerate(docs):  # ten minutes apart: no rate limit holds them too
            d["served_at"] = SERVED  # history, replayed
            d["submitted_at"] = (served + timedelta(minutes=5 + 10 * i)).isoformat()
        ingest(app.hook, docs)
        recs = [record_of(d) for d in docs]
        t0 = time.perf_counter()
        summary = app.get(ServiceRecords).load(
            (Line(i + 1, r) for i, r in enumerate(recs)), client_id="bench"
        )
        return (time.perf_counter() - t0) / n, summary.rejudged.cleared


def receipts(kind: str, n: int) -> tuple[float, float, float]:
    """Seconds per code derived, per lookup, per bare ledger read of the rating."""
    with ExitStack() as stack:
        app = stack.enter_context(
            instance(stack.enter_context(fresh_database(kind)), None, "memory://")
        )
        ingest(app.hook, [rating(i) for i in range(n)])
        svc = app.get(ReceiptService)
        t0 = time.perf_counter()
        codes = [svc.code(i) for i in range(1, n + 1)]
        derive = (time.perf_counter() - t0) / n
        look, read = alternate(
            lambda i: svc.look_up(codes[i]), lambda i: app.ledger.rating(i + 1), n
        )
        return derive, look, read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--records", type=int, default=20000)
    args = ap.parse_args()
    limiter = REDIS
    on, off = gate_latency(args.backend, args.n, limiter)
    print(
        f"{args.backend} + Redis, live hook per rating: ticket gate on {on * 1000:.2f} ms, "
        f"off {off * 1000:.2f} ms = {on / off:.2f}x"
    )
    print(f"the ticket gate alone (one query): {gate_alone(args.backend, args.n) * 1000:.3f} ms")
    mine, floor = load_throughput(args.backend, args.records)
    print(
        f"loading {args.records} records: {mine:,.0f}/s vs bare executemany {floor:,.0f}/s "
        f"= {mine / floor:.2f}x"
    )
    per, cleared = late_arrival(args.backend, args.n)
    print(f"late records lifting {cleared} held ratings: {per * 1000:.3f} ms per rating")
    derive, look, read = receipts(args.backend, args.n)
    print(
        f"receipts: derive {derive * 1e6:.1f} us; lookup {look * 1000:.3f} ms vs ledger read "
        f"{read * 1000:.3f} ms = {look / read:.2f}x"
    )


if __name__ == "__main__":
    main()
