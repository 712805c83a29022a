"""Intake clients: the services allowed to submit ratings over HTTP, each with its own key.

An operator registers a client (``integrity clients add kiosk-gw --hall H1``) and hands
its key to that service; ``integrity serve`` refuses intake without a valid key (401)
and refuses a rating for a window outside the client's scope (403). Every rating
records the client that sent it (``ratings.client_id``, and the decision's evidence).

Keys: ``ik_<key id>_<secret>``, the secret from :func:`secrets.token_urlsafe` (256
bits). Only the SHA-256 of the whole key is stored; the key id (12 hex digits, public)
finds the client's row, and the presented key's hash is compared in constant time.
A key is printed once, when it is made (``add``, ``rotate``). Revoked and expired keys
are refused. Each change is a ledger event (``client.added``, ``client.rotated``,
``client.revoked``), made by the operator (direct database access; no person role).

A server keeps the clients in memory: a key it does not know makes it read the table
again (a new or rotated key works at once), and its background round re-reads it every
few seconds (a rotated-away or revoked key stops working within that round).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from integrity.clock import Clock
from integrity.errors import FieldError, InvalidInput, PermissionDenied, Unauthenticated
from integrity.model import IntakeClient
from integrity.ports import ClientStore
from integrity.registry import ServiceRegistry

KEY_PREFIX = "ik"
#: Names that are not clients but what ratings record when no key is involved.
CLI_CLIENT = "cli"  # `integrity ingest` (the operator's choice: --client NAME or this)
OPEN_CLIENT = "open"  # a server started with --open-intake, for a request without a key
RESERVED = (CLI_CLIENT, OPEN_CLIENT)
ACTOR = "operator"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_SCOPE_ITEM = re.compile(r"^[^;\s][^;]{0,63}$")
_KEY = re.compile(r"^ik_([0-9a-f]{12})_[A-Za-z0-9_\-]{32,}$")

CLIENT_COLUMNS = (
    "name",
    "state",
    "halls",
    "windows",
    "key_id",
    "created_at",
    "expires_at",
    "rotated_at",
    "revoked_at",
)


def key_hash(key: str) -> str:
    """SHA-256 of a key (hex): all that is stored of it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh ``(key id, key)``: ``ik_<12 hex>_<43 url-safe characters>``."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(key: str) -> str | None:
    """The key id a presented key names, or None when it is not shaped like a key."""
    m = _KEY.fullmatch(key)
    return m.group(1) if m else None


def parse_expiry(text: str, now: datetime, tz: ZoneInfo) -> datetime:
    """``--expires``: a number of days from ``now``, or a date YYYY-MM-DD (the key works
    through that whole day in ``tz``, the rule set's time zone). Must lie ahead."""
    text = text.strip()
    when: datetime
    if text.isdigit():
        days = int(text)
        if days < 1:
            raise InvalidInput([FieldError("expires", "a number of days must be >= 1")], "client")
        when = now + timedelta(days=days)
    else:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                [FieldError("expires", f"expected DAYS or a date YYYY-MM-DD, got {text!r}")],
                "client",
            ) from None
        when = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    if when <= now:
        raise InvalidInput([FieldError("expires", f"{text} is already past")], "client")
    return when


def _check_name(name: str) -> list[FieldError]:
    if not _NAME.fullmatch(name):
        return [
            FieldError(
                "name",
                "1-64 characters of letters, digits, '_', '.', '-' (a letter or digit first)",
            )
        ]
    if name in RESERVED:
        return [FieldError("name", f"{name!r} is reserved (what ratings record without a key)")]
    return []


def _check_scope(kind: str, items: Iterable[str]) -> list[FieldError]:
    return [
        FieldError(kind, f"{item!r}: 1-64 characters, no ';'")
        for item in items
        if not _SCOPE_ITEM.fullmatch(item)
    ]


class IntakeClients:
    """Registering clients, and checking a presented key and a rating's window.

    ``registry`` gives the current service registry (a hall scope is resolved through
    it: ``ServiceRegistry.hall_of(window)``).
    """

    def __init__(
        self,
        store: ClientStore,
        clock: Clock,
        tz: ZoneInfo,
        registry: Callable[[], ServiceRegistry] = ServiceRegistry,
    ) -> None:
        self.store = store
        self.clock = clock
        self.tz = tz
        self.registry = registry
        self._lock = threading.Lock()
        self._by_key_id: dict[str, IntakeClient] | None = None

    # -- the operator's commands --------------------------------------------------------

    def add(
        self,
        name: str,
        *,
        halls: Sequence[str] = (),
        windows: Sequence[str] = (),
        expires: str | None = None,
    ) -> tuple[IntakeClient, str]:
        """Register ``name``; returns the client and its key (shown once, never stored)."""
        errors = _check_name(name) + _check_scope("hall", halls) + _check_scope("window", windows)
        if errors:
            raise InvalidInput(errors, what="client")
        now = self.clock.now()
        expires_at = parse_expiry(expires, now, self.tz) if expires else None
        key_id, key = new_key()
        client = IntakeClient(
            name=name,
            key_id=key_id,
            key_hash=key_hash(key),
            halls=tuple(dict.fromkeys(halls)),
            windows=tuple(dict.fromkeys(windows)),
            created_at=now,
            expires_at=expires_at,
        )
        stored = self.store.add(client, now, ACTOR)
        self.refresh()
        return stored, key

    def rotate(self, name: str) -> tuple[IntakeClient, str]:
        """A new key for ``name``; the old one stops working. Returns the client and key."""
        key_id, key = new_key()
        client = self.store.rotate(name, key_id, key_hash(key), self.clock.now(), ACTOR)
        self.refresh()
        return client, key

    def revoke(self, name: str) -> IntakeClient:
        """Revoke ``name`` for good (its key stops working; a new client needs a new name)."""
        client = self.store.revoke(name, self.clock.now(), ACTOR)
        self.refresh()
        return client

    def all(self) -> list[IntakeClient]:
        """Every client (revoked ones too), by name."""
        return self.store.all()

    def known(self, name: str) -> bool:
        """Whether ``name`` is a registered client (in any state)."""
        return any(c.name == name for c in self.store.all())

    def unknown_scope(self, client: IntakeClient) -> list[str]:
        """Halls and windows of the client's scope the loaded registry does not know."""
        reg = self.registry()
        if not reg.loaded:
            return []
        return [f"hall {h}" for h in client.halls if h not in reg.halls] + [
            f"window {w}" for w in client.windows if w not in reg.windows
        ]

    # -- intake ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the clients again (after a change, and on a key this process does not know)."""
        clients = self.store.all()
        with self._lock:
            self._by_key_id = {c.key_id: c for c in clients}

    def reload(self) -> bool:
        """The background round: read the clients again; returns whether they changed."""
        before = self._by_key_id
        self.refresh()
        return before != self._by_key_id

    def authenticate_cached(self, key: str) -> IntakeClient | None:
        """The client a key belongs to, from memory only: ``None`` when this process does
        not know the key's id (ask :meth:`authenticate`, which reads the table). Raises
        ``Unauthenticated`` for a malformed, wrong, revoked or expired key."""
        key_id = key_id_of(key)
        if key_id is None:
            raise Unauthenticated("not an intake client key (integrity clients add)")
        known = self._by_key_id
        if known is None or key_id not in known:
            return None
        return self._check(known[key_id], key)

    def authenticate(self, key: str) -> IntakeClient:
        """The active client ``key`` belongs to; ``Unauthenticated`` otherwise."""
        found = self.authenticate_cached(key)
        if found is not None:
            return found
        self.refresh()
        client = (self._by_key_id or {}).get(key_id_of(key) or "")
        if client is None:
            # hash anyway, so an unknown key id costs what a known one does
            hmac.compare_digest(key_hash(key), "0" * 64)
            raise Unauthenticated("unknown client key")
        return self._check(client, key)

    def _check(self, client: IntakeClient, key: str) -> IntakeClient:
        if not hmac.compare_digest(client.key_hash, key_hash(key)):
            raise Unauthenticated("unknown client key")
        state = client.state(self.clock.now())
        if state == "revoked":
            raise Unauthenticated(f"the key of client {client.name!r} was revoked")
        if state == "expired":
            raise Unauthenticated(
                f"the key of client {client.name!r} expired at {_iso(client.expires_at)}"
            )
        return client

    def admit(self, client: IntakeClient, window_id: str) -> None:
        """``PermissionDenied`` unless ``client`` may submit ratings for ``window_id``."""
        if not client.scoped or window_id in client.windows:
            return
        if client.halls:
            reg = self.registry()
            if not reg.loaded:
                raise PermissionDenied(
                    f"client {client.name!r} is scoped to hall(s) {', '.join(client.halls)}, "
                    "but no service registry is loaded, so the hall of window "
                    f"{window_id!r} is unknown (integrity registry load)"
                )
            hall = reg.hall_of(window_id)
            if hall is not None and hall.hall_id in client.halls:
                return
        raise PermissionDenied(
            f"client {client.name!r} may not submit ratings for window {window_id!r} "
            f"(its scope: {scope_text(client)})"
        )


def scope_text(client: IntakeClient) -> str:
    parts = []
    if client.halls:
        parts.append("halls " + ", ".join(client.halls))
    if client.windows:
        parts.append("windows " + ", ".join(client.windows))
    return "; ".join(parts) or "any window"


def _iso(when: datetime | None) -> str:
    return when.isoformat() if when else ""


def client_rows(clients: Iterable[IntakeClient], now: datetime) -> list[dict[str, Any]]:
    """Rows for ``clients list`` (never a key or its hash)."""
    return [
        {
            "name": c.name,
            "state": c.state(now),
            "halls": ";".join(c.halls),
            "windows": ";".join(c.windows),
            "key_id": c.key_id,
            "created_at": _iso(c.created_at),
            "expires_at": _iso(c.expires_at),
            "rotated_at": _iso(c.rotated_at),
            "revoked_at": _iso(c.revoked_at),
        }
        for c in clients
    ]


__all__ = [
    "CLIENT_COLUMNS",
    "CLI_CLIENT",
    "OPEN_CLIENT",
    "IntakeClients",
    "client_rows",
    "key_hash",
    "key_id_of",
    "parse_expiry",
]
