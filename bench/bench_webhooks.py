"""The webhook outbox: following the ledger, and sending to a local receiver.

Two measurements on one fresh instance (SQLite by default, ``--backend postgresql``):

- **dispatch**: ``--events`` ledger events (one in ``--every`` of a subscribed kind,
  the rest of another kind, as decisions would be) are followed by
  ``WebhookService.dispatch``; the floor, in the same run, is reading the same
  ``(event_id, kind)`` rows with one plain ``SELECT`` (what following the ledger
  cannot avoid).
- **delivery**: the queued deliveries are sent by ``WebhookService.deliver`` to a
  ``ThreadingHTTPServer`` on 127.0.0.1 (answering 204); the floor is the same bodies
  POSTed to the same server with ``http.client``, one connection each, as the
  engine's transport does, without signing, leases or the delivery log.

    .venv/bin/python -m bench.bench_webhooks [--backend sqlite|postgresql] [--events 20000]

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.client
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import sqlalchemy as sa

from bench._common import REDIS, fresh_database, instance
from followup.webhooks import WebhookService
from followup.webhooks.model import body
from integrity.adapters import tables as t
from integrity.catalogue import Kind
from integrity.model import Event


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def write_events(app: Any, n: int, every: int) -> None:
    at = datetime.now(UTC)
    for start in range(0, n, 2000):
        with app.ledger.unit_of_work() as uow:
            for i in range(start, min(n, start + 2000)):
                kind = Kind.CASE_OPENED if i % every == 0 else Kind.STAFF_UPDATED
                uow.append(
                    Event(kind=kind, actor="bench", at=at, subject=f"window:W{i % 50:02d}",
                          evidence={"i": i, "share": 0.93})
                )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--every", type=int, default=10, help="one subscribed event in N")
    args = ap.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    limiter = "memory://" if args.backend == "sqlite" else REDIS
    with fresh_database(args.backend) as db, instance(db, limiter) as app:
        svc = app.get(WebhookService)
        svc.add(url, ["case.opened"])
        start_id = app.ledger.last_event_id() or 0
        write_events(app, args.events, args.every)

        t0 = time.perf_counter()
        with app.ledger.reading() as conn:
            rows = conn.execute(
                sa.select(t.events.c.event_id, t.events.c.kind)
                .where(t.events.c.event_id > start_id)
                .order_by(t.events.c.event_id)
            ).all()
        floor_read = time.perf_counter() - t0

        now = datetime.now(UTC)
        t0 = time.perf_counter()
        queued = svc.dispatch(now)
        dispatch_s = time.perf_counter() - t0
        print(
            f"[{args.backend}] dispatch: {len(rows)} events followed, {queued} queued in "
            f"{dispatch_s:.2f} s = {len(rows) / dispatch_s:,.0f} events/s; floor (one SELECT "
            f"of the same ids and kinds) {floor_read:.3f} s = {dispatch_s / floor_read:.1f}x"
        )

        bodies = [
            body(e) for e in app.ledger.events([i for i, _ in rows[: args.every * 200]]).values()
        ]
        t0 = time.perf_counter()
        for data in bodies:
            conn_ = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
            conn_.request("POST", "/hook", body=data, headers={"Content-Type": "application/json"})
            conn_.getresponse().read()
            conn_.close()
        floor_post = (time.perf_counter() - t0) / len(bodies)

        sent = 0
        t0 = time.perf_counter()
        while True:
            s = svc.deliver(now)
            sent += s.delivered
            if not s.delivered:
                break
        deliver_s = time.perf_counter() - t0
        per = deliver_s / sent
        print(
            f"[{args.backend}] delivery: {sent} sent in {deliver_s:.2f} s = {sent / deliver_s:,.0f}/s "
            f"({per * 1000:.2f} ms each); floor (bare POST, new connection) "
            f"{floor_post * 1000:.2f} ms = {per / floor_post:.1f}x"
        )
    server.shutdown()


if __name__ == "__main__":
    main()
