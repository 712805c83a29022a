"""How a webhook request leaves the engine: one HTTP POST, a short timeout, no redirects.

:class:`HttpTransport` uses the standard library's ``http.client`` directly: one new
connection per attempt, no proxies from the environment, no redirects (a 3xx is an
answer that is not 2xx, hence a failure), certificate checks on for ``https``. The
receiver's response body is read (up to 64 KiB) and thrown away: only the status code
is kept.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

MAX_RESPONSE_BYTES = 65536


@dataclass(frozen=True)
class Response:
    """What one attempt got: an HTTP status, or why there was none."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def summary(self) -> str:
        """One short line for the delivery log: ``HTTP 503`` or the error."""
        text = f"HTTP {self.status}" if self.status is not None else (self.error or "no answer")
        return text[:200]


class Transport(Protocol):
    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> Response: ...


class HttpTransport:
    """POST over ``http.client``; never raises for network trouble (it is a ``Response``)."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.context = context or ssl.create_default_context()

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> Response:
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn: http.client.HTTPConnection
        try:
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(
                    parts.hostname or "", parts.port, timeout=timeout_s, context=self.context
                )
            else:
                conn = http.client.HTTPConnection(
                    parts.hostname or "", parts.port, timeout=timeout_s
                )
        except ValueError as err:  # a port out of range
            return Response(None, _error(err))
        try:
            conn.request("POST", path, body=body, headers=dict(headers))
            resp = conn.getresponse()
            resp.read(MAX_RESPONSE_BYTES)
            return Response(resp.status, None if 200 <= resp.status < 300 else resp.reason[:100])
        except (OSError, http.client.HTTPException) as err:  # refused, reset, timed out, TLS
            return Response(None, _error(err))
        finally:
            conn.close()


def _error(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}"[:200] if text else type(err).__name__
