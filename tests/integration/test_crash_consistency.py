"""Killed processes (SIGKILL, no clean close) with the in-process limiter, whose counters
are rebuilt from the ledger when the instance opens (its state is written with the
ledger, never dumped).

An ``integrity ingest`` killed after it has committed some chunks (twice, at different
points, with other chunk sizes than the uninterrupted run) and run again decides exactly
what an uninterrupted run decides, on SQLite and on PostgreSQL; an ``integrity serve`` killed in the middle
of a device's burst keeps limiting that burst once it is back. Real processes; the
tests wait on the lines they write, never on time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import history, make_app, pg_ledger, rating, serial
from processes import children_of, start, wait_until_dead

from integrity.adapters.sql import make_engine

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, str(ROOT / "cli.py")]


#: The ledger each home's processes use (the embedded SQLite file when absent).
LEDGERS: dict[Path, str] = {}


def embedded_env(home: Path) -> dict[str, str]:
    """The environment of a process on the embedded defaults in ``home`` (its ledger on
    PostgreSQL when the test put it there; the limiter in process either way)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRITY_")}
    env["INTEGRITY_HOME"] = str(home)
    if home in LEDGERS:
        env["INTEGRITY_DB"] = LEDGERS[home]
    return env


def new_home(path: Path, secret_from: Path | None = None, db_url: str | None = None) -> Path:
    """An initialised embedded instance (sharing another's secret key if given)."""
    path.mkdir(parents=True)
    if secret_from is not None:
        shutil.copyfile(secret_from / "secret.key", path / "secret.key")
    if db_url is not None:
        LEDGERS[path] = db_url
    make_app(path, db_url, namespace="integrity").close()
    return path


def decisions(home: Path) -> list[tuple[Any, ...]]:
    """Every decision in rating order: ticket, fingerprint, status, reasons (ids left
    out: PostgreSQL spends sequence values on a chunk a kill cut short)."""
    engine = make_engine(LEDGERS.get(home, f"sqlite:///{home / 'ledger.db'}"))
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT r.ticket_id, r.fingerprint, e.status, e.reasons "
                "FROM ratings r JOIN events e ON e.rating_id = r.rating_id "
                "AND e.kind = 'decision' ORDER BY r.rating_id"
            ).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in rows]


def ingest(home: Path, file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "ingest", *extra, str(file)],
        env=embedded_env(home),
        capture_output=True,
        text=True,
        cwd=home,
        check=False,
    )


def killed_ingest(home: Path, file: Path, commits: int) -> None:
    """``integrity ingest`` SIGKILLed once it has written ``commits`` progress lines
    (one per chunk committed: no clean close, nothing sealed)."""
    proc, out = start(
        [*CLI, "ingest", "--progress", "--chunk", "1000", str(file)],
        env=embedded_env(home),
        cwd=home,
    )
    try:
        out.wait_for("ratings committed", times=commits, what="integrity ingest")
        helpers = children_of(proc.pid)  # the process parsing the file's lines
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert helpers, "the file was parsed by no second process"
    assert wait_until_dead(helpers), "a helper process outlived the killed ingest"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ingest_killed_after_some_chunks_and_run_again_is_exact(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    # six thousand ratings over the last days (a replay must not be in the future):
    # six chunks of a thousand
    now = datetime.now(UTC).replace(microsecond=0)
    docs = history(now - timedelta(days=6), 6000, seed=23)
    assert datetime.fromisoformat(docs[-1]["submitted_at"]) < now
    file = tmp_path / "ratings.jsonl"
    file.write_text("".join(json.dumps(d) + "\n" for d in docs))

    urls: list[str | None] = [None, None]
    if backend == "postgresql":
        admin = str(request.getfixturevalue("pg_server_url"))
        urls = [request.getfixturevalue("stack").enter_context(pg_ledger(admin)) for _ in urls]
    whole = new_home(tmp_path / "whole", db_url=urls[0])
    killed = new_home(tmp_path / "killed", secret_from=whole, db_url=urls[1])

    done = ingest(whole, file)
    assert done.returncode == 0, done.stderr
    want = decisions(whole)
    assert {d[2] for d in want} == {"accepted", "rejected"}

    killed_ingest(killed, file, commits=2)
    partial = decisions(killed)
    assert 0 < len(partial) < len(want), "the kill came too late to prove anything"
    assert partial == want[: len(partial)]

    # killed again further on: the second run's counters were rebuilt from the first
    # run's ratings, and its own ratings must rebuild the third run's
    killed_ingest(killed, file, commits=4)
    more = decisions(killed)
    assert len(partial) < len(more) < len(want), "the second kill proves nothing"
    assert more == want[: len(more)]

    again = ingest(killed, file)
    assert again.returncode == 0, again.stderr
    assert decisions(killed) == want
    summary = again.stdout.splitlines()[0]
    assert summary.startswith(f"{len(docs)} lines: {len(want) - len(more)} written"), summary
    # what the killed runs wrote and never sealed was sealed by the last one, intact
    verified = subprocess.run(
        [*CLI, "ledger", "verify"], env=embedded_env(killed), cwd=killed,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "0 event(s) not yet sealed" in verified.stdout, verified.stdout


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_killed_mid_burst_keeps_limiting_it(tmp_path: Path) -> None:
    home = new_home(tmp_path / "home")
    port = free_port()
    device = f"burst-{serial()}"
    added = subprocess.run(
        [*CLI, "clients", "add", "gw"], env=embedded_env(home), cwd=home,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = added.stdout.strip().splitlines()[-1]

    def serve() -> subprocess.Popen[bytes]:
        proc, out = start([*CLI, "serve", "--port", str(port)], env=embedded_env(home), cwd=home)
        out.wait_for("Uvicorn running on", what="integrity serve")  # bound, not only started
        return proc

    def post(n: int) -> list[str]:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=10,
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            return [
                client.post(
                    "/v1/ratings", json=rating(device_id=device, window_id=f"K{serial()}")
                ).json()["status"]
                for _ in range(n)
            ]

    proc = serve()
    try:
        assert post(2) == ["accepted", "accepted"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    proc = serve()
    try:
        # device.burst allows 3 in 10 minutes: one more passes, then it is refused
        assert post(2) == ["accepted", "rejected"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
