"""`integrity serve` as an operator runs it: a real process, real HTTP, PostgreSQL and Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from processes import Output, start

from tests.factories import rating

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def workers() -> int:
    """Worker processes of the server under test (tests override by parametrising)."""
    return 1


@dataclass
class Server:
    """A running ``integrity serve`` process and the lines it logs, as they come, with an
    intake client's key (``integrity clients add``)."""

    base: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    out: Output
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10, headers=self.headers)

    def wait_for(self, text: str, times: int = 1) -> None:
        self.out.wait_for(text, times, what="integrity serve")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def server(
    tmp_path: Path, pg_url: str, redis_url: str, redis_namespace: str, workers: int
) -> Iterator[Server]:
    env = dict(os.environ)
    env.update(
        INTEGRITY_HOME=str(tmp_path / "home"),
        INTEGRITY_DB=pg_url,
        INTEGRITY_REDIS=redis_url,
        INTEGRITY_NAMESPACE=redis_namespace,
    )
    cli = [sys.executable, str(ROOT / "cli.py")]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True, cwd=tmp_path)
    added = subprocess.run(
        [*cli, "clients", "add", "test-gw"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    key = added.stdout.splitlines()[-1]  # what scripts do: $(integrity clients add ... | tail -1)
    port = free_port()
    proc, out = start(
        [*cli, "serve", "--port", str(port), "--workers", str(workers)], env=env, cwd=tmp_path
    )
    srv = Server(f"http://127.0.0.1:{port}", env, proc, out, key)
    try:
        srv.wait_for("Application startup complete", times=workers)
        if workers == 1:  # one process binds its socket after startup (a supervisor, before)
            srv.wait_for("Uvicorn running on")
        yield srv
    finally:
        srv.stop()


def test_serve_over_real_http(server: Server, tmp_path: Path) -> None:
    env = server.env
    doc = rating()
    with server.client() as client:
        first = client.post("/v1/ratings", json=doc)
        assert first.status_code == 200, first.text
        body = first.json()
        assert {"rating_id", "status", "counted", "reasons"} <= set(body)
        assert body["status"] == "accepted" and body["counted"] is True

        again = client.post("/v1/ratings", json=doc)
        assert again.status_code == 200 and again.json()["rating_id"] == body["rating_id"]

        other = dict(doc, scores={**doc["scores"], "attitude": 1})
        dup = client.post("/v1/ratings", json=other)
        assert dup.status_code == 409 and dup.json()["reasons"] == ["duplicate_ticket"]

        bad = client.post("/v1/ratings", json={**doc, "ticket_id": ""})
        assert bad.status_code == 422
        assert any(e["field"] == "ticket_id" for e in bad.json()["errors"])

        batch = client.post("/v1/ratings:batch", json=[rating(), {"nope": 1}, rating()])
        assert batch.status_code == 200
        results = batch.json()["results"]
        assert [r["status"] for r in results] == ["accepted", None, "accepted"]

        health = client.get("/healthz").json()
        assert health == {**health, "status": "ok", "ledger": "ok", "limiter": "ok"}

    # a server that stops has sealed everything it wrote (its background's last round)
    server.stop()
    cli = [sys.executable, str(ROOT / "cli.py")]
    res = subprocess.run(
        [*cli, "ledger", "verify"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "(0 event(s) not yet sealed)" in res.stdout, res.stdout


def test_running_server_picks_up_a_new_venue_registry(server: Server, tmp_path: Path) -> None:
    env = server.env
    hall_ip = "198.51.100.77"
    venues = tmp_path / "venues.json"
    venues.write_text('{"venues": [{"venue_id": "H1", "networks": ["198.51.100.77/32"]}]}')
    cli = [sys.executable, str(ROOT / "cli.py")]
    res = subprocess.run(
        [*cli, "venues", "load", str(venues)], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    server.wait_for("configuration reloaded")  # the server's background round
    with server.client() as client:
        statuses = [
            client.post("/v1/ratings", json=rating(ip=hall_ip)).json()["status"] for _ in range(25)
        ]
    # an ordinary address holds ratings past 20 in ten minutes (ip.burst); a hall's does not
    assert statuses == ["accepted"] * 25


@pytest.mark.parametrize("workers", [2])
def test_two_worker_processes_share_one_ledger_and_limiter(server: Server) -> None:
    base = server.base
    device = "one-phone-many-tickets"
    with server.client() as client:
        # new connections spread over both workers; the device limit (3 per 10 minutes)
        # is one limit across them, and every rating gets its own id
        bodies = [
            client.post("/v1/ratings", json=rating(device_id=device, window_id=f"W{i}")).json()
            for i in range(5)
        ]
        doc = rating()
        first = client.post("/v1/ratings", json=doc).json()
        again = httpx.post(
            f"{base}/v1/ratings", json=doc, timeout=10, headers=server.headers
        ).json()
    assert [b["status"] for b in bodies] == ["accepted"] * 3 + ["rejected"] * 2
    assert len({b["rating_id"] for b in bodies}) == 5
    assert again["rating_id"] == first["rating_id"] and again.get("replayed") is True
