"""Credentials on SQLite and PostgreSQL: personal tokens (issued with their event in one unit
of work, stored as SHA-256 only, expiring on the injected clock, revocable one by one),
OS accounts mapped to people, the bootstrap rule, and signing in from a token file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from factories import T0, backend_url, make_app

from integrity.adapters import tables as t
from integrity.adapters.sql import SqlUnitOfWork
from integrity.app import App
from integrity.auth import (
    DEFAULT_TTL,
    Credentials,
    parse_expiry,
    read_token,
    sign_in,
    token_hash,
)
from integrity.catalogue import Kind
from integrity.clock import FrozenClock
from integrity.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    Unauthenticated,
)
from integrity.people import ROLES


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def app(db_url: str, tmp_path: Path, clock: FrozenClock) -> Iterator[App]:
    with make_app(tmp_path / "home", db_url, clock=clock) as a:
        for pid, roles in (("A1", ["admin"]), ("R1", ["reviewer"]), ("S1", ["staff"])):
            a.people.upsert(pid, roles=roles, at=T0)
        yield a


@pytest.fixture
def creds(app: App) -> Credentials:
    return app.get(Credentials)


def admin_token(creds: Credentials) -> str:
    return creds.issue(None, "A1").token  # bootstrap: no admin can sign in yet


def events(app: App, kind: str) -> list[tuple[str, str | None, dict[str, object]]]:
    with app.ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.events.c.actor, t.events.c.subject, t.events.c.evidence)
            .where(t.events.c.kind == kind)
            .order_by(t.events.c.event_id)
        ).all()
    return [(r[0], r[1], json.loads(r[2]) if isinstance(r[2], str) else r[2]) for r in rows]


def test_a_token_is_random_shown_once_and_stored_as_its_sha256_only(
    app: App, creds: Credentials
) -> None:
    admin_token(creds)
    issued = creds.issue("A1", "R1", note="laptop")
    assert issued.token.startswith("itk_") and len(issued.token) >= 40
    assert creds.issue("A1", "R1").token != issued.token  # several per person, each its own
    c = issued.credential
    assert (c.person_id, c.created_by, c.note) == ("R1", "A1", "laptop")
    assert c.expires_at == T0 + DEFAULT_TTL
    with app.ledger.engine.connect() as conn:
        stored = conn.execute(sa.select(t.credentials)).mappings().all()
        everything = " ".join(
            str(v)
            for tbl in (t.credentials, t.events, t.people)
            for row in conn.execute(sa.select(tbl)).all()
            for v in row
        )
    assert issued.token not in everything
    assert token_hash(issued.token) in {r["token_hash"] for r in stored}
    assert [(a, s, e["credential_id"]) for a, s, e in events(app, Kind.CREDENTIAL_ISSUED)] == [
        ("bootstrap", "person:A1", 1),
        ("A1", "person:R1", 2),
        ("A1", "person:R1", 3),
    ]
    assert creds.authenticate(issued.token).person_id == "R1"


def test_issuing_is_one_unit_of_work_with_its_event(
    app: App, creds: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin_token(creds)

    def broken(self: SqlUnitOfWork, *a: object, **k: object) -> None:
        raise RuntimeError("the event could not be written")

    monkeypatch.setattr(SqlUnitOfWork, "append", broken)
    with pytest.raises(RuntimeError):
        creds.issue("A1", "R1")
    monkeypatch.undo()
    assert [c.person_id for c in creds.tokens("A1")] == ["A1"]  # no token without its event


def test_tokens_expire_on_the_clock(creds: Credentials, clock: FrozenClock) -> None:
    admin_token(creds)
    short = creds.issue("A1", "R1", expires="2d").token
    default = creds.issue("A1", "R1").token
    clock.set(T0 + timedelta(days=2) - timedelta(seconds=1))
    assert creds.authenticate(short).person_id == "R1"
    clock.set(T0 + timedelta(days=2))
    with pytest.raises(Unauthenticated, match="expired"):
        creds.authenticate(short)
    assert creds.authenticate(default).person_id == "R1"
    clock.set(T0 + DEFAULT_TTL)
    with pytest.raises(Unauthenticated, match="expired"):
        creds.authenticate(default)
    states = {c.credential_id: c.state(clock.now()) for c in creds.tokens("A1")}
    assert states == {1: "expired", 2: "expired", 3: "expired"}


@pytest.mark.parametrize(
    ("expires", "needle"),
    [("0d", "in the future"), ("400d", "at most 366 days"), ("soon", "expected 90d")],
)
def test_bad_expiries_are_field_errors(creds: Credentials, expires: str, needle: str) -> None:
    admin_token(creds)
    with pytest.raises(InvalidInput, match=needle):
        creds.issue("A1", "R1", expires=expires)
    assert [c.person_id for c in creds.tokens("A1")] == ["A1"]


def test_expiry_forms() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    assert parse_expiry("12h", T0, tz) == T0 + timedelta(hours=12)
    assert parse_expiry("2w", T0, tz) == T0 + timedelta(weeks=2)
    # a date is valid through that day in the rule set's zone
    assert parse_expiry("2026-10-20", T0, tz) == datetime(2026, 10, 20, 16, 0, tzinfo=UTC)
    assert parse_expiry("2026-10-20T08:00:00+08:00", T0, tz) == datetime(
        2026, 10, 20, 0, 0, tzinfo=UTC
    )


def test_revoking_one_token_leaves_the_others(app: App, creds: Credentials) -> None:
    admin_token(creds)
    laptop = creds.issue("A1", "R1", note="laptop")
    phone = creds.issue("A1", "R1", note="phone")
    done = creds.revoke("R1", laptop.credential.credential_id)  # one's own
    assert (done.revoked_by, done.state(T0)) == ("R1", "revoked")
    with pytest.raises(Unauthenticated, match="revoked"):
        creds.authenticate(laptop.token)
    assert creds.authenticate(phone.token).person_id == "R1"
    with pytest.raises(Conflict, match="already revoked"):
        creds.revoke("A1", laptop.credential.credential_id)
    with pytest.raises(PermissionDenied, match="only their own"):
        creds.revoke("S1", phone.credential.credential_id)
    creds.revoke("A1", phone.credential.credential_id)  # an admin revokes anyone's
    assert [(a, e["credential_id"]) for a, _, e in events(app, Kind.CREDENTIAL_REVOKED)] == [
        ("R1", laptop.credential.credential_id),
        ("A1", phone.credential.credential_id),
    ]
    with pytest.raises(NotFound):
        creds.revoke("A1", 999)


def test_who_may_issue_and_list(creds: Credentials) -> None:
    # bootstrap: nobody signed in, no admin can sign in: only an admin may be equipped
    with pytest.raises(PermissionDenied, match="no admin can sign in yet"):
        creds.issue(None, "R1")
    admin_token(creds)
    with pytest.raises(PermissionDenied, match="nobody is signed in"):
        creds.issue(None, "A1")  # closed once an admin can sign in
    with pytest.raises(PermissionDenied, match="admin role"):
        creds.issue("R1", "R1")
    with pytest.raises(NotFound):
        creds.issue("A1", "ZZ")
    creds.issue("A1", "R1")
    assert [c.person_id for c in creds.tokens("R1")] == ["R1"]  # one's own only
    with pytest.raises(PermissionDenied, match="only their own"):
        creds.tokens("R1", "A1")
    assert [c.person_id for c in creds.tokens("A1")] == ["A1", "R1"]


def test_an_inactive_person_cannot_sign_in_or_get_a_token(app: App, creds: Credentials) -> None:
    admin_token(creds)
    token = creds.issue("A1", "R1").token
    app.people.upsert("R1", roles=["reviewer"], at=T0, active=False)
    with pytest.raises(Unauthenticated, match="not active"):
        creds.authenticate(token)
    with pytest.raises(PolicyViolation, match="not active"):
        creds.issue("A1", "R1")


def test_last_use_is_recorded_at_most_once_a_minute(creds: Credentials, clock: FrozenClock) -> None:
    token = admin_token(creds)
    creds.authenticate(token)
    assert creds.get(1).last_used_at == T0
    clock.advance(30)
    creds.authenticate(token)
    assert creds.get(1).last_used_at == T0
    clock.advance(30)
    creds.authenticate(token)
    assert creds.get(1).last_used_at == T0 + timedelta(minutes=1)


def test_os_account_mapping_rules(app: App, creds: Credentials) -> None:
    # bootstrap by mapping: the operator maps an admin's account while none can sign in
    with pytest.raises(PermissionDenied, match="no admin can sign in yet"):
        creds.map_os_user(None, "bob", "R1")
    assert creds.map_os_user(None, "alice", "A1") is True
    with pytest.raises(PermissionDenied, match="nobody is signed in"):
        creds.map_os_user(None, "bob", "R1")
    with pytest.raises(PermissionDenied, match="admin role"):
        creds.map_os_user("R1", "bob", "R1")
    assert creds.map_os_user("A1", "bob", "R1") is True
    assert creds.map_os_user("A1", "bob", "R1") is False  # nothing written the second time
    with pytest.raises(InvalidInput, match="not an OS user name"):
        creds.map_os_user("A1", "bad name", "R1")
    assert sign_in(creds, None, "alice").person_id == "A1"  # type: ignore[union-attr]
    assert sign_in(creds, None, "bob").person_id == "R1"  # type: ignore[union-attr]
    assert sign_in(creds, None, "mallory") is None
    assert creds.map_os_user("A1", "bob", "S1") is True  # remapped
    assert sign_in(creds, None, "bob").person_id == "S1"  # type: ignore[union-attr]
    assert creds.unmap_os_user("A1", "bob") == "S1"
    assert sign_in(creds, None, "bob") is None
    with pytest.raises(NotFound):
        creds.unmap_os_user("A1", "bob")
    mapped = [
        (a, e["os_user"], e["person_id"]) for a, _, e in events(app, Kind.PERSON_OS_USER_MAPPED)
    ]
    assert mapped == [
        ("bootstrap", "alice", "A1"),
        ("A1", "bob", "R1"),
        ("A1", "bob", "S1"),
        ("A1", "bob", None),
    ]
    assert [r["os_user"] for r in creds.os_users("A1")] == ["alice"]


def test_a_token_wins_over_the_os_account_and_a_bad_one_never_falls_back(
    creds: Credentials,
) -> None:
    creds.map_os_user(None, "alice", "A1")
    token = creds.issue("A1", "R1").token
    assert sign_in(creds, token, "alice").person_id == "R1"  # type: ignore[union-attr]
    with pytest.raises(Unauthenticated, match="unknown token"):
        sign_in(creds, "itk_forged", "alice")


def test_every_role_the_follow_up_needs_exists() -> None:
    assert {"head", "supervisor"} <= set(ROLES)


# -- token files ------------------------------------------------------------------------------


def test_the_token_comes_from_the_environment_then_a_private_file(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    assert read_token(env, None) is None  # no default file: nobody
    default = tmp_path / "config" / "integrity" / "token"
    default.parent.mkdir(parents=True)
    default.write_text("itk_from_file\n")
    default.chmod(0o600)
    assert read_token(env, None) == "itk_from_file"
    assert read_token({**env, "INTEGRITY_TOKEN": "itk_env"}, None) == "itk_env"
    default.chmod(0o640)
    with pytest.raises(Unauthenticated, match="chmod 600"):
        read_token(env, None)
    named = tmp_path / "mine"
    named.write_text("itk_named")
    os.chmod(named, 0o600)
    assert read_token(env, named) == "itk_named"
    assert read_token({**env, "INTEGRITY_TOKEN_FILE": str(named)}, None) == "itk_named"
    with pytest.raises(Unauthenticated, match="does not exist"):
        read_token(env, tmp_path / "missing")
