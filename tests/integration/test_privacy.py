"""Raw IP addresses and device ids are never stored and never logged (docs/reference.md, Ratings).

A few hundred ratings with distinctive addresses (IPv4, IPv6, IPv4-mapped) and device
ids go in through every intake path (Python API, ingest, HTTP single and batch) over a
registered venue with kiosk pads. Then everything the instance stored is scanned: the
SQLite file, its WAL and shared memory before and after a WAL checkpoint, every column
of every table, every file in the instance home, the Redis keys and members, and every
log record emitted on the way (SQLAlchemy's statement log included).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from factories import SCORES, T0, bearer, intake_key, make_app, pg_ledger, sqlite_url
from fastapi.testclient import TestClient

from integrity.app import App
from integrity.http import create_app
from integrity.model import Status
from integrity.venues import pseudonymise_venues

V4 = [f"198.51.100.{i}" for i in range(11, 61)]
V6 = [f"2001:db8:{i:x}::{i * 7:x}" for i in range(1, 41)]
MAPPED = [f"::ffff:192.0.2.{i}" for i in range(101, 131)]
HALL = ["198.51.100.23", "203.0.113.45", "203.0.113.46", "2001:db8:77::9"]
DEVICES = [f"PRIVDEV-{i:04d}-Q7ZK" for i in range(80)]
PADS = {"W01": "KIOSKPAD-Q7ZK-01", "W02": "KIOSKPAD-Q7ZK-02"}
NETWORKS = ["198.51.100.23/32", "203.0.113.0/24", "2001:db8:77::/64"]
REGISTRY = {
    "venues": [
        {
            "venue_id": "HALL-A",
            "networks": NETWORKS,
            "kiosk_devices": [{"window_id": w, "device_id": d} for w, d in PADS.items()],
        }
    ]
}


def textual_forms(text: str) -> set[str]:
    """Every way an address (and its /24 or /64) could be written down."""
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    out = {text, str(addr)}
    if isinstance(addr, ipaddress.IPv4Address):
        n = int(addr)
        out |= {f"::ffff:{addr}", f"::ffff:{n >> 16:x}:{n & 0xFFFF:x}", f"{addr}/32"}
        out.add(str(ipaddress.ip_network(f"{addr}/24", strict=False)))
    else:
        out |= {addr.exploded, addr.exploded.upper(), addr.compressed.upper()}
        out.add(str(ipaddress.ip_network(f"{addr}/64", strict=False)))
    return out


def binary_forms(text: str) -> set[bytes]:
    addr = ipaddress.ip_address(text)
    # 4 packed bytes would match random data by chance; 16 never do
    return {addr.packed} if isinstance(addr, ipaddress.IPv6Address) else set()


ALL_ADDRESSES = V4 + V6 + MAPPED + HALL
NEEDLES = sorted(
    {f for a in ALL_ADDRESSES for f in textual_forms(a)}
    | set(NETWORKS)
    | set(DEVICES)
    | set(PADS.values())
)
BINARY_NEEDLES = {b for a in V6 + HALL for b in binary_forms(a)}


_PATTERN = re.compile(
    b"|".join(re.escape(n) for n in sorted({n.encode() for n in NEEDLES} | BINARY_NEEDLES))
)


def leaks(blob: bytes | str, where: str) -> list[str]:
    """Every raw address, network or device id found in ``blob``."""
    data = blob.encode() if isinstance(blob, str) else blob
    return sorted({f"{where}: {m.group()!r}" for m in _PATTERN.finditer(data)})


def ratings_for(i: int) -> dict[str, Any]:
    """The i-th rating: addresses and devices repeat, so some limits trip too."""
    at = T0 - timedelta(hours=6) + timedelta(minutes=i)
    doc: dict[str, Any] = {
        "ticket_id": f"PRIV-{i:05d}",
        "window_id": f"W0{i % 3 + 1}",
        "staff_id": f"S{i % 7}",
        "service_type": "tax",
        "channel": "qr",
        "served_at": (at - timedelta(minutes=3)).isoformat(),
        "submitted_at": at.isoformat(),
        "scores": {**SCORES, "overall": i % 5 + 1},
        "ip": ALL_ADDRESSES[i % len(ALL_ADDRESSES)],
        "device_id": DEVICES[i % len(DEVICES)],
        "comment": f"rating number {i}",
    }
    if i % 10 == 0:  # a kiosk pad in the hall, sometimes at the wrong window
        doc.update(channel="kiosk", ip=HALL[i % 4], device_id=PADS["W01" if i % 20 else "W02"])
    return doc


def ingest_everything(app: App) -> list[Any]:
    pv = pseudonymise_venues(REGISTRY, app.pseudonymiser)
    app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, T0, actor="test")
    app.hook.reload()
    docs = [ratings_for(i) for i in range(320)]
    decisions = [app.validate(d) for d in docs[:60]]
    decisions += [i.decision for i in app.hook.validate_stream(docs[60:270], replay=True)]
    # refused ratings carry raw addresses too
    bad = [{**docs[0], "scores": {"overall": 9}}, {**docs[1], "ticket_id": ""}]
    with TestClient(create_app(app, seal_every_s=None), headers=bearer(intake_key(app))) as client:
        for d in docs[270:290] + bad:
            r = client.post("/v1/ratings", json=d)
            assert r.status_code in (200, 409, 422), r.text
            assert not leaks(r.text, "HTTP response")
        r = client.post("/v1/ratings:batch", json=[*docs[290:], *bad, *docs[:5]])
        assert r.status_code == 200
        assert not leaks(r.text, "HTTP response")
    app.log.checkpoint(app.clock.now())
    return decisions


def scan_tables(engine: sa.Engine) -> list[str]:
    """Every column of every table: cast to text on PostgreSQL, as stored on SQLite."""
    found: list[str] = []
    with engine.connect() as conn:
        for name in sa.inspect(engine).get_table_names():
            if engine.dialect.name == "postgresql":
                rows = conn.exec_driver_sql(f'SELECT t::text FROM "{name}" t').scalars()
                found += leaks("\n".join(rows), f"table {name}")
                continue
            chunks: list[bytes] = []
            for row in conn.exec_driver_sql(f'SELECT * FROM "{name}"'):
                for value in row:
                    if isinstance(value, bytes):
                        chunks.append(value)
                    elif value is not None:
                        chunks.append(str(value).encode())
            found += leaks(b"\n".join(chunks), f"table {name}")
    return found


def scan_files(home: Path) -> list[str]:
    found: list[str] = []
    for path in sorted(home.rglob("*")):
        if path.is_file():
            found += leaks(path.read_bytes(), f"file {path.name}")
    return found


def scan_redis(url: str, namespace: str) -> list[str]:
    """Every key of the namespace, and every member or value stored under it."""
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
    assert keys, "the limiter stored nothing: the scan would prove nothing"
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    types = pipe.execute()
    for key, kind in zip(keys, types, strict=True):
        if kind == b"zset":
            pipe.zrange(key, 0, -1)
        else:
            pipe.dump(key)
    values = pipe.execute()
    client.close()
    blob = b"\n".join(keys)
    for v in values:
        blob += b"\n" + (b"\n".join(v) if isinstance(v, list) else (v or b""))
    return leaks(blob, "redis")


def log_leaks(caplog: pytest.LogCaptureFixture) -> list[str]:
    assert caplog.records, "nothing was logged: the log scan would prove nothing"
    return leaks("\n".join(rec.getMessage() for rec in caplog.records), "logs")


def test_nothing_raw_is_stored_or_logged_on_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    db = home / "ledger.db"
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # statements and parameters
    app = make_app(home, sqlite_url(db), "memory://")
    try:
        decisions = ingest_everything(app)
    finally:
        app.close()
    assert {d.status for d in decisions} >= {Status.ACCEPTED, Status.HELD, Status.REJECTED}
    assert any(rec.name.startswith("sqlalchemy.engine") for rec in caplog.records)
    problems = log_leaks(caplog)
    caplog.clear()

    assert not (home / "limiter.json").exists()  # the limiter keeps nothing on disk
    problems += scan_files(home)  # db, -wal, -shm, as left
    engine = sa.create_engine(sqlite_url(db))
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    problems += scan_files(home)
    problems += scan_tables(engine)
    engine.dispose()
    assert not problems, problems[:20]


def test_nothing_raw_is_stored_or_logged_on_postgresql(
    pg_server_url: str,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    home = tmp_path / "home"
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # statements and parameters
    with pg_ledger(pg_server_url) as pg_url:
        app = make_app(home, pg_url, redis_url, namespace=redis_namespace)
        try:
            decisions = ingest_everything(app)
        finally:
            app.close()
        assert {d.status for d in decisions} >= {Status.ACCEPTED, Status.HELD, Status.REJECTED}
        problems = log_leaks(caplog)
        problems += scan_files(home)
        engine = sa.create_engine(pg_url)
        problems += scan_tables(engine)
        engine.dispose()
    problems += scan_redis(redis_url, redis_namespace)
    assert not problems, problems[:20]


def test_the_scan_finds_a_planted_raw_address(tmp_path: Path) -> None:
    """The scanners would see a leak: plant one raw address and one device id."""
    home = tmp_path / "home"
    app = make_app(home)
    try:
        app.validate({**ratings_for(1), "comment": f"from {V6[3]} on {DEVICES[5]}"})
    finally:
        app.close()
    engine = sa.create_engine(sqlite_url(home / "ledger.db"))
    found = scan_tables(engine) + scan_files(home)
    engine.dispose()
    assert any(V6[3] in f for f in found) and any(DEVICES[5] in f for f in found)
