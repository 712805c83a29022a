"""A real HTTP receiver for webhook tests: a ``ThreadingHTTPServer`` on 127.0.0.1.

It records every request (path, headers, body, the status it answered), can answer
the next N requests with an error, and can be down (its port closed: connections are
refused) and come back up on the same port. Every request is recorded before its
response is written, and the engine waits for the response, so a test reads
``received`` right after a round without waiting.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str:
        return {k.lower(): v for k, v in self.headers.items()}[name.lower()]


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._fail: list[int] = []
        self._lock = threading.Lock()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/integrity?tenant=t1"

    @property
    def delivered(self) -> list[Received]:
        """The requests it accepted (answered 2xx), in the order they came."""
        with self._lock:
            return [r for r in self.received if r.ok]

    def fail(self, times: int, status: int = 503) -> None:
        """Answer the next ``times`` requests with ``status``."""
        with self._lock:
            self._fail.extend([status] * times)

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = receiver._fail.pop(0) if receiver._fail else 200
                    receiver.received.append(
                        Received(self.path, dict(self.headers.items()), data, status)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.server = server

    def down(self) -> None:
        """Close the port: connections are refused until :meth:`up`."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def close(self) -> None:
        self.down()
