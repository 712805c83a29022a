"""Who is acting: personal tokens, operating-system accounts, and signing in from them.

A person proves who they are with a credential, never by typing a name:

- a **personal token**: ``itk_`` and 43 random URL-safe characters (256 bits), shown
  once when issued. The database keeps only its SHA-256, with an id, who issued it,
  when it expires (default 90 days, at most 366) and when it was last used. A person
  may hold several (a laptop, a script); each is revoked on its own.
- an **operating-system account** of a shared host, mapped to a person by an admin:
  the CLI in direct-database mode reads the real uid (``pwd.getpwuid(os.getuid())``),
  never ``$USER`` or ``getpass.getuser()``, which trust the environment.

:func:`sign_in` resolves the acting person from what a process holds: a token
(``INTEGRITY_TOKEN``, else the token file, see :func:`read_token`) first, the OS
account otherwise. ``--as`` is never a way in; the CLI checks it against the result
(``integrity.cliutil.Instance.actor``). The HTTP API takes the same tokens as
``Authorization: Bearer``.

Issuing, revoking and mapping need the ``admin`` role; a person may list and revoke
their own tokens. Bootstrap: while no active admin can sign in (none holds a live
token or a mapped OS account), the operator (nobody signed in, direct-database mode)
may issue a token to, or map an OS account for, an active admin; the ledger then names
``bootstrap`` as the actor. Every change is a ledger event (``credential.issued``,
``credential.revoked``, ``person.os_user_mapped``) in the same transaction as its rows.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from integrity.adapters import tables as t
from integrity.catalogue import Kind
from integrity.clock import Clock
from integrity.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    Unauthenticated,
)
from integrity.model import Event
from integrity.people import (
    BOOTSTRAP_ACTOR,
    NOT_SIGNED_IN,
    People,
    Person,
    os_user_errors,
    os_user_event,
)
from integrity.sqlkit import translate_errors

TOKEN_PREFIX = "itk_"
#: A token's life when ``--expires`` is not given, and the longest one may have.
DEFAULT_TTL = timedelta(days=90)
MAX_TTL = timedelta(days=366)
#: ``last_used_at`` is written at most this often per token (signing in is a read).
LAST_USED_EVERY = timedelta(minutes=1)
ADMIN = "admin"

CREDENTIAL_COLUMNS = (
    "credential_id",
    "person_id",
    "state",
    "note",
    "created_at",
    "created_by",
    "expires_at",
    "last_used_at",
    "revoked_at",
    "revoked_by",
)
OS_USER_COLUMNS = ("os_user", "person_id", "mapped_at", "mapped_by")


def token_hash(token: str) -> str:
    """SHA-256 (hex) of a token: all the database ever holds of it."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def os_user() -> str | None:
    """The OS account this process really runs as (from the uid, not the environment)."""
    try:
        import pwd
    except ImportError:  # not a POSIX host: no OS sign-in
        return None
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no passwd entry (some containers)
        return None


def default_token_file(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/integrity/token``, by default ``~/.config/integrity/token``."""
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "integrity" / "token"


def read_token(env: Mapping[str, str], token_file: str | os.PathLike[str] | None) -> str | None:
    """The token this process holds: ``INTEGRITY_TOKEN``, else the token file
    (``token_file``, ``INTEGRITY_TOKEN_FILE`` or :func:`default_token_file`).

    A token file must belong to this uid and be readable by it alone (like an SSH key):
    otherwise :class:`Unauthenticated`, so a token others can read never signs in. A
    named file that does not exist is an error; the default one may be absent (None).
    """
    value = env.get("INTEGRITY_TOKEN", "").strip()
    if value:
        return value
    named = token_file or env.get("INTEGRITY_TOKEN_FILE")
    path = Path(named) if named else default_token_file(env)
    try:
        st = path.stat()
    except FileNotFoundError:
        if named:
            raise Unauthenticated(f"token file {path} does not exist") from None
        return None
    if st.st_mode & 0o077 or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        raise Unauthenticated(
            f"token file {path} is not private (mode {stat.filemode(st.st_mode)}); it must "
            f"be yours and readable by you alone: chmod 600 {path}"
        )
    text = path.read_text("utf-8").strip()
    if not text:
        raise Unauthenticated(f"token file {path} is empty")
    return text.splitlines()[-1].strip()


def parse_expiry(text: str, now: datetime, tz: ZoneInfo) -> datetime:
    """``90d``, ``12h``, ``2w`` from now; ``YYYY-MM-DD`` (valid through that day in ``tz``);
    or an RFC 3339 time with offset."""
    value = text.strip()
    m = re.fullmatch(r"(\d{1,4})\s*([hdw])", value)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return (
            now + {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]
        )
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = datetime.strptime(value, "%Y-%m-%d").date() + timedelta(days=1)
            return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise InvalidInput(
            [
                FieldError(
                    "expires",
                    f"expected 90d, 12h, 2w, YYYY-MM-DD or an RFC 3339 time, got {text!r}",
                )
            ],
            what="token",
        )
    return at.astimezone(UTC)


@dataclass(frozen=True)
class Credential:
    """One personal token, as the database knows it (never the token itself)."""

    credential_id: int
    person_id: str
    note: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None

    def state(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if now < self.expires_at else "expired"

    def row(self, now: datetime) -> dict[str, Any]:
        return {
            "credential_id": self.credential_id,
            "person_id": self.person_id,
            "state": self.state(now),
            "note": self.note,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
        }


@dataclass(frozen=True)
class Issued:
    """A token just issued: ``token`` is shown once and never stored."""

    credential: Credential
    token: str


def _credential(row: sa.RowMapping) -> Credential:
    return Credential(
        credential_id=int(row["credential_id"]),
        person_id=row["person_id"],
        note=row["note"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
    )


class Credentials:
    """Issue, list and revoke personal tokens; map OS accounts; sign people in."""

    def __init__(self, people: People, clock: Clock, tz: ZoneInfo | None = None) -> None:
        self.people = people
        self.ledger = people.ledger
        self.clock = clock
        self.tz = tz or ZoneInfo("UTC")

    # -- signing in --------------------------------------------------------------------

    def authenticate(self, token: str) -> Person:
        """The active person a live token belongs to; else :class:`Unauthenticated`."""
        now = self.clock.now()
        with translate_errors(), self.ledger.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(t.credentials).where(
                        t.credentials.c.token_hash == token_hash(token.strip())
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise Unauthenticated("unknown token")
        cred = _credential(row)
        if cred.revoked_at is not None:
            raise Unauthenticated(f"token {cred.credential_id} was revoked")
        if now >= cred.expires_at:
            raise Unauthenticated(
                f"token {cred.credential_id} expired at {cred.expires_at.isoformat()}; "
                "ask an admin for a new one"
            )
        person = self._active(cred.person_id)
        if cred.last_used_at is None or now - cred.last_used_at >= LAST_USED_EVERY:
            with translate_errors(), self.ledger.engine.begin() as conn:
                conn.execute(
                    t.credentials.update()
                    .where(t.credentials.c.credential_id == cred.credential_id)
                    .values(last_used_at=now)
                )
        return person

    def person_of_os_user(self, name: str) -> Person | None:
        """The active person an OS account is mapped to; ``None`` when it is not mapped."""
        person_id = self.people.person_of_os_user(name)
        return None if person_id is None else self._active(person_id)

    def _active(self, person_id: str) -> Person:
        try:
            person = self.people.get(person_id)
        except NotFound:
            raise Unauthenticated(f"{person_id!r} is no longer in the registry") from None
        if not person.active:
            raise Unauthenticated(f"{person_id!r} is not active")
        return person

    def admin_can_sign_in(self) -> bool:
        """Whether some active admin holds a live token or a mapped OS account."""
        admins = [p.person_id for p in self.people.all() if p.has(ADMIN)]
        if not admins:
            return False
        now = self.clock.now()
        with translate_errors(), self.ledger.engine.connect() as conn:
            token = conn.execute(
                sa.select(t.credentials.c.credential_id)
                .where(
                    t.credentials.c.person_id.in_(admins),
                    t.credentials.c.revoked_at.is_(None),
                    t.credentials.c.expires_at > now,
                )
                .limit(1)
            ).first()
            if token is not None:
                return True
            mapped = conn.execute(
                sa.select(t.os_users.c.os_user).where(t.os_users.c.person_id.in_(admins)).limit(1)
            ).first()
        return mapped is not None

    def _authorise(self, actor: str | None, person_id: str) -> str:
        """Who to record as equipping ``person_id`` with a way to sign in: an admin, or
        ``bootstrap`` when nobody is signed in, no admin can sign in yet and
        ``person_id`` is an active admin."""
        if actor is None and not self.admin_can_sign_in():
            if self._active_or_none(person_id, ADMIN):
                return BOOTSTRAP_ACTOR
            raise PermissionDenied(
                "no admin can sign in yet: first give an active admin a token "
                "(integrity staff token issue ADMIN) or map their OS account "
                "(integrity staff map-os-user ACCOUNT ADMIN)"
            )
        return self.people.require(actor, ADMIN).person_id

    def _active_or_none(self, person_id: str, role: str) -> bool:
        try:
            return self.people.get(person_id).has(role)
        except NotFound:
            return False

    # -- tokens ------------------------------------------------------------------------

    def issue(
        self,
        actor: str | None,
        person_id: str,
        *,
        expires: str | datetime | None = None,
        note: str = "",
        purpose: str = "",
    ) -> Issued:
        """A new token for an active person (admins; see the bootstrap rule), written with
        its ``credential.issued`` event in one unit of work. ``expires``: a time, or text
        for :func:`parse_expiry`; default :data:`DEFAULT_TTL` from now."""
        now = self.clock.now()
        if isinstance(expires, str):
            expires_at = parse_expiry(expires, now, self.tz)
        else:
            expires_at = expires or now + DEFAULT_TTL
        errors = []
        if expires_at <= now:
            errors.append(FieldError("expires", "must be in the future"))
        elif expires_at - now > MAX_TTL:
            errors.append(FieldError("expires", f"at most {MAX_TTL.days} days from now"))
        if len(note) > 128:
            errors.append(FieldError("note", "at most 128 characters"))
        if errors:
            raise InvalidInput(errors, what="token")
        person = self.people.get(person_id)
        by = self._authorise(actor, person_id)
        if not person.active:
            raise PolicyViolation(f"{person_id!r} is not active; activate them first")
        token = new_token()
        row = {
            "person_id": person_id,
            "token_hash": token_hash(token),
            "note": note,
            "created_at": now,
            "created_by": by,
            "expires_at": expires_at,
        }
        with self.ledger.unit_of_work() as uow:
            res = uow.connection.execute(t.credentials.insert(), row)
            key = res.inserted_primary_key
            assert key is not None
            cid = int(key[0])
            evidence = {"credential_id": cid, "expires_at": expires_at.isoformat(), "note": note}
            if purpose:
                evidence["purpose"] = purpose
            uow.append(
                Event(
                    kind=Kind.CREDENTIAL_ISSUED,
                    actor=by,
                    at=now,
                    subject=f"person:{person_id}",
                    evidence=evidence,
                )
            )
            uow.seal_tables("credentials", at=now, actor=by)
        cred = Credential(cid, person_id, note, now, by, expires_at, None, None, None)
        return Issued(cred, token)

    def get(self, credential_id: int) -> Credential:
        with translate_errors(), self.ledger.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(t.credentials).where(t.credentials.c.credential_id == credential_id)
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no token {credential_id}")
        return _credential(row)

    def tokens(self, actor: str | None, person_id: str | None = None) -> list[Credential]:
        """Tokens (of ``person_id``), oldest first: admins see everyone's, a person their own."""
        me = self._signed_in(actor)
        if not me.has(ADMIN):
            if person_id not in (None, me.person_id):
                raise PermissionDenied(f"{me.person_id!r} may list only their own tokens")
            person_id = me.person_id
        q = sa.select(t.credentials).order_by(t.credentials.c.credential_id)
        if person_id is not None:
            q = q.where(t.credentials.c.person_id == person_id)
        with translate_errors(), self.ledger.engine.connect() as conn:
            return [_credential(r) for r in conn.execute(q).mappings()]

    def revoke(self, actor: str | None, credential_id: int) -> Credential:
        """Revoke one token (admins; or its owner), with its ``credential.revoked`` event."""
        me = self._signed_in(actor)
        cred = self.get(credential_id)
        if cred.person_id != me.person_id and not me.has(ADMIN):
            raise PermissionDenied(f"{me.person_id!r} may revoke only their own tokens")
        if cred.revoked_at is not None:
            raise Conflict(f"token {credential_id} was already revoked")
        now = self.clock.now()
        with self.ledger.unit_of_work() as uow:
            done = uow.connection.execute(
                t.credentials.update()
                .where(
                    t.credentials.c.credential_id == credential_id,
                    t.credentials.c.revoked_at.is_(None),
                )
                .values(revoked_at=now, revoked_by=me.person_id)
            )
            if done.rowcount != 1:
                raise Conflict(f"token {credential_id} was already revoked")
            uow.append(
                Event(
                    kind=Kind.CREDENTIAL_REVOKED,
                    actor=me.person_id,
                    at=now,
                    subject=f"person:{cred.person_id}",
                    evidence={"credential_id": credential_id},
                )
            )
            uow.seal_tables("credentials", at=now, actor=me.person_id)
        return self.get(credential_id)

    def _signed_in(self, actor: str | None) -> Person:
        """The acting person, registered and active (any role)."""
        if not actor:
            raise PermissionDenied(NOT_SIGNED_IN)
        try:
            person = self.people.get(actor)
        except NotFound:
            raise PermissionDenied(f"{actor!r} is not in the registry") from None
        if not person.active:
            raise PermissionDenied(f"{actor!r} is not active")
        return person

    # -- OS accounts -----------------------------------------------------------------

    def map_os_user(self, actor: str | None, name: str, person_id: str) -> bool:
        """Map OS account ``name`` to an active person (admins; see the bootstrap rule);
        ``False`` when it already was (nothing written)."""
        errors = os_user_errors(name)
        if errors:
            raise InvalidInput(errors, what="OS user")
        if not self.people.get(person_id).active:
            raise PolicyViolation(f"{person_id!r} is not active; activate them first")
        by = self._authorise(actor, person_id)
        now = self.clock.now()
        with self.ledger.unit_of_work() as uow:
            changed = self.people.map_os_user(uow, name, person_id, by, now)
            if changed:
                uow.append(os_user_event(name, person_id, by, now))
                uow.seal_tables("os_users", at=now, actor=by)
        return changed

    def unmap_os_user(self, actor: str | None, name: str) -> str:
        """Remove an OS account's mapping (admins); the person it named."""
        by = self.people.require(actor, ADMIN).person_id
        now = self.clock.now()
        with self.ledger.unit_of_work() as uow:
            was = self.people.unmap_os_user(uow, name)
            if was is None:
                raise NotFound(f"OS user {name!r} is not mapped")
            uow.append(os_user_event(name, None, by, now))
            uow.seal_tables("os_users", at=now, actor=by)
        return was

    def os_users(self, actor: str | None) -> list[dict[str, Any]]:
        """Every OS account mapping (admins)."""
        self.people.require(actor, ADMIN)
        return self.people.os_users()


def sign_in(credentials: Credentials, token: str | None, account: str | None) -> Person | None:
    """The person a process acts as: its token's if it holds one (an invalid token is an
    error, never a fall-back), else its OS account's if mapped, else nobody."""
    if token:
        return credentials.authenticate(token)
    if account:
        return credentials.person_of_os_user(account)
    return None
