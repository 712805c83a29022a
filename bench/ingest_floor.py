"""The floor of ``bench_ingest``: the least a batch intake of the same file must do.

Reads the JSON Lines file, decodes each line, pseudonymises ip, /24-or-/64 prefix and
device with HMAC-SHA256, parses the two timestamps, computes the weighted composite,
and bulk-inserts the rows through SQLAlchemy Core (``executemany``, 1,000 rows per
transaction) into a table shaped like the ledger's ``ratings`` (same columns, keys and
indexes), created by this process. It judges nothing: an identical line is dropped and
the first rating of a ticket claims it, so the unique keys hold. SQLite gets the
ledger's own settings (WAL, ``synchronous=NORMAL``). Run by ``bench/bench_ingest.py``
as a process of its own, timed whole:

    .venv/bin/python -m bench.ingest_floor --db sqlite:///x.db ratings.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from integrity.adapters import tables as t

#: The default rule set's rubric weights (rules/default_ruleset.toml).
WEIGHTS = {
    "attitude": 0.2,
    "efficiency": 0.3,
    "compliance": 0.25,
    "environment": 0.15,
    "overall": 0.1,
}
CHUNK = 1000


def engine_for(url: str) -> sa.Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith("sqlite"):
        return sa.create_engine(url)
    engine = sa.create_engine(url)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", required=True)
    ap.add_argument("file")
    args = ap.parse_args()
    key = secrets.token_bytes(32)

    def mac(domain: str, value: str) -> str:
        return hmac.new(key, f"{domain}\x00{value}".encode(), hashlib.sha256).hexdigest()[:32]

    engine = engine_for(args.db)
    t.ratings.create(engine)
    insert = t.ratings.insert()
    now = datetime.now(UTC)
    seen: set[str] = set()
    claimed: set[str] = set()
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        with engine.begin() as conn:
            conn.execute(insert, rows)
        rows.clear()

    with open(args.file, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            fp = hashlib.sha256(line.encode()).hexdigest()
            if fp in seen:
                continue
            seen.add(fp)
            o = json.loads(line)
            addr = ipaddress.ip_address(o["ip"])
            net = ipaddress.ip_network(f"{addr}/{24 if addr.version == 4 else 64}", strict=False)
            served = o.get("served_at")
            served = datetime.fromisoformat(served).astimezone(UTC) if served else None
            submitted = o.get("submitted_at")
            submitted = datetime.fromisoformat(submitted).astimezone(UTC) if submitted else now
            scores = o["scores"]
            ticket = o["ticket_id"]
            rows.append(
                {
                    "fingerprint": fp,
                    "ticket_id": ticket,
                    "claims_ticket": ticket not in claimed,
                    "window_id": o["window_id"],
                    "staff_id": o.get("staff_id"),
                    "service_type": o.get("service_type", "general"),
                    "channel": o.get("channel", "qr"),
                    "served_at": served,
                    "submitted_at": submitted,
                    "submitted_at_given": "submitted_at" in o,
                    "received_at": now,
                    "occurred_at": served or submitted,
                    "scores": json.dumps(scores, sort_keys=True, separators=(",", ":")),
                    "composite": sum(WEIGHTS[d] * v for d, v in scores.items()),
                    "comment": o.get("comment"),
                    "ip_hash": mac("ip", str(addr)),
                    "prefix_hash": mac("prefix", str(net)),
                    "device_hash": mac("device", o["device_id"]),
                    "rule_set_id": "floor",
                    "client_id": "cli",
                }
            )
            claimed.add(ticket)
            if len(rows) == CHUNK:
                flush()
    if rows:
        flush()
    engine.dispose()


if __name__ == "__main__":
    main()
