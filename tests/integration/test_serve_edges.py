"""`integrity serve` at its edges, as a real process on raw sockets: request heads that never
finish, bodies past the bounds (declared and streamed), forwarded headers, what the log
shows, open mode. Embedded SQLite and limiter: one worker, nothing shared."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from processes import Output, start

from integrity.http import REQUEST_TIMEOUT, proxy_options
from tests.factories import rating

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, str(ROOT / "cli.py")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    port: int
    key: str
    proc: subprocess.Popen[bytes]
    out: Output
    seen: list[str]  # what it wrote until it listened

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), source_address=(source, 0))
        sock.settimeout(60)  # a safety net: the server must act long before
        return sock

    def stop(self) -> str:
        """Stop the server; everything it wrote."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        lines = list(self.seen)
        while (line := self.out.lines.get(timeout=60)) is not None:
            lines.append(line)
        return "".join(lines)

    def wait_until_listening(self) -> None:
        """Read its output up to the line saying it listens (one worker: after startup)."""
        while True:
            line = self.out.lines.get(timeout=60)
            if line is None:
                pytest.fail("integrity serve exited:\n" + "".join(self.seen))
            self.seen.append(line)
            if "Uvicorn running on" in line:
                return


def _launch(home: Path, running: list[Served], *options: str) -> Served:
    env = {**os.environ, "INTEGRITY_HOME": str(home / "home")}
    for name in ("INTEGRITY_DB", "INTEGRITY_REDIS"):
        env.pop(name, None)
    subprocess.run([*CLI, "init"], env=env, check=True, capture_output=True, cwd=home)
    added = subprocess.run(
        [*CLI, "clients", "add", "edge-gw"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=home,
    )
    port = free_port()
    proc, out = start([*CLI, "serve", "--port", str(port), *options], env=env, cwd=home)
    served = Served(port, added.stdout.splitlines()[-1], proc, out, [])
    running.append(served)
    served.wait_until_listening()
    return served


PROXY, OTHER = "127.0.0.3", "127.0.0.4"


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module: a 1 s deadline on request heads, one trusted proxy."""
    running: list[Served] = []
    try:
        yield _launch(
            tmp_path_factory.mktemp("edge"),
            running,
            "--header-timeout",
            "1",
            "--trusted-proxy",
            f"{PROXY}/32",
        )
    finally:
        for s in running:
            s.stop()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    running: list[Served] = []
    yield lambda *options: _launch(tmp_path, running, *options)
    for s in running:
        if s.proc.poll() is None:
            s.stop()


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def request_head(path: str, key: str, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_a_request_head_that_never_finishes_is_closed(edge: Served) -> None:
    s = edge
    slow = s.connect()
    slow.sendall(b"POST /v1/ratings HT")  # half a request line, then nothing
    # meanwhile a whole request on another connection is answered
    assert httpx.get(f"{s.base}/healthz", timeout=30).status_code == 200
    answer = read_until_closed(slow)  # blocks until the server gives up on the head
    assert answer.startswith(b"HTTP/1.1 408"), answer
    slow.close()

    # a kept-alive connection that starts its next request's head and stalls: the same
    kept = s.connect()
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = kept.recv(65536)
    assert first.startswith(b"HTTP/1.1 200"), first
    kept.sendall(b"GET /heal")
    rest = first + read_until_closed(kept)
    assert rest.count(b"HTTP/1.1 200") == 1 and rest.endswith(REQUEST_TIMEOUT), rest
    kept.close()

    # one that says nothing at all is closed too, silently (like an idle keep-alive)
    idle = s.connect()
    assert read_until_closed(idle) == b""
    idle.close()


def test_a_declared_body_past_the_bound_is_413_before_a_byte_of_it_is_sent(
    edge: Served,
) -> None:
    s = edge
    sock = s.connect()
    # 200 MB announced, none sent: the answer comes at once, and the connection closes
    sock.sendall(request_head("/v1/ratings", s.key, "Content-Length: 209715200\r\n"))
    answer = read_until_closed(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"1048576 bytes" in answer
    with httpx.Client(base_url=s.base, headers=s.headers, timeout=30) as c:
        big = [rating(comment="z" * 1900) for _ in range(4500)]  # ~9 MB > max_batch_bytes
        assert c.post("/v1/ratings:batch", json=big).status_code == 413
        assert c.post("/v1/ratings", json=rating()).status_code == 200  # still serving


def test_a_streamed_body_is_refused_once_it_passes_the_bound(edge: Served) -> None:
    s = edge
    sock = s.connect()
    sock.sendall(request_head("/v1/ratings", s.key, "Transfer-Encoding: chunked\r\n"))
    piece = b"x" * 65536
    for _ in range(16):  # exactly max_body_bytes (1 MiB) ...
        sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
    sock.sendall(b"1\r\nx\r\n")  # ... and one byte more; the body never ends
    answer = read_until_closed(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer


def test_the_log_never_shows_a_client_address_forwarded_or_not(edge: Served) -> None:
    s = edge
    forwarded = ["203.0.113.77", "198.51.100.250"]
    for source, claimed in ((PROXY, forwarded[0]), (OTHER, forwarded[1])):
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(base_url=s.base, transport=transport, timeout=30) as c:
            headers = {"X-Forwarded-For": claimed, **s.headers}
            assert c.post("/v1/ratings", json=rating(ip="192.0.2.5"), headers=headers).is_success
            assert c.post("/v1/ratings", json={"x": 1}, headers=headers).status_code == 422
            unkeyed = {"X-Forwarded-For": claimed}
            assert c.post("/v1/ratings", json=rating(), headers=unkeyed).status_code == 401
    # everything the server wrote up to the access line of the last request
    output = list(s.seen)
    while not (output and '"POST /v1/ratings HTTP/1.1" 401' in output[-1]):
        line = s.out.lines.get(timeout=60)
        assert line is not None, "".join(output)
        output.append(line)
    text = "".join(output)
    assert text.count('"POST /v1/ratings HTTP/1.1" 200') >= 2  # the access log was on
    for address in (PROXY, OTHER, *forwarded, "192.0.2.5"):
        assert address not in text, f"{address} in the server's output:\n{text}"


def test_forwarded_headers_count_only_from_trusted_proxies() -> None:
    """What ``--trusted-proxy`` sets up in uvicorn: X-Forwarded-For replaces the peer
    only when the peer is in a trusted network; with no --trusted-proxy, never."""
    import asyncio

    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    assert proxy_options(()) == {"proxy_headers": False, "forwarded_allow_ips": None}

    async def peer(scope: dict, receive: object, send: Callable[..., object]) -> None:  # type: ignore[type-arg]
        body = scope["client"][0].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[misc]
        await send({"type": "http.response.body", "body": body})  # type: ignore[misc]

    options = proxy_options(["10.9.0.0/16"])
    assert options["proxy_headers"] is True
    app = ProxyHeadersMiddleware(peer, trusted_hosts=options["forwarded_allow_ips"])  # type: ignore[arg-type]

    async def seen(client: str) -> str:
        transport = httpx.ASGITransport(app=app, client=(client, 4000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
            r = await c.get("/", headers={"X-Forwarded-For": "203.0.113.9"})
            return r.text

    assert asyncio.run(seen("10.9.1.1")) == "203.0.113.9"  # a trusted proxy
    assert asyncio.run(seen("10.8.1.1")) == "10.8.1.1"  # anyone else


def test_open_intake_is_loud_in_the_servers_log(serve: Callable[..., Served]) -> None:
    s = serve("--open-intake")
    with httpx.Client(base_url=s.base, timeout=30) as c:
        r = c.post("/v1/ratings", json=rating())
        assert r.status_code == 200 and r.json()["status"] == "accepted"
        assert c.post("/v1/ratings:batch", json=[rating()]).status_code == 200
    output = s.stop()
    assert "OPEN INTAKE" in output  # at startup
    assert output.count("open intake: a request without a client key") == 2
