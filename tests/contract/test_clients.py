"""Intake clients on SQLite and PostgreSQL: keys made, listed, rotated, revoked and expired;
a key is stored only as its hash; every change is a sealed ledger event; scopes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from factories import T0, backend_url, make_app

from integrity.app import App
from integrity.catalogue import Kind
from integrity.clients import IntakeClients, client_rows, key_id_of
from integrity.clock import FrozenClock
from integrity.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from integrity.registry import RegistryService, parse_registry


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> Iterator[App]:
    with make_app(tmp_path / "home", db_url) as a:
        yield a


def svc(app: App) -> IntakeClients:
    return app.get(IntakeClients)


def test_a_new_key_authenticates_its_client_and_is_never_listed(app: App) -> None:
    client, key = svc(app).add("kiosk-gw", halls=["H1"], windows=["W9"])
    assert key.startswith("ik_") and key_id_of(key) == client.key_id and len(key) > 50
    assert svc(app).authenticate(key).name == "kiosk-gw"
    rows = client_rows(svc(app).all(), app.clock.now())
    assert rows == [
        {
            "name": "kiosk-gw",
            "state": "active",
            "halls": "H1",
            "windows": "W9",
            "key_id": client.key_id,
            "created_at": T0.isoformat(),
            "expires_at": "",
            "rotated_at": "",
            "revoked_at": "",
        }
    ]
    assert key not in repr(rows) and key not in repr(client)
    [ev] = app.ledger.events_about("client:kiosk-gw")
    assert ev.kind == Kind.CLIENT_ADDED and ev.actor == "operator"
    assert ev.evidence == {
        "name": "kiosk-gw",
        "key_id": client.key_id,
        "halls": ["H1"],
        "windows": ["W9"],
        "expires_at": None,
    }
    assert key not in repr(ev)


def test_the_raw_key_is_nowhere_in_the_database(app: App, db_url: str, tmp_path: Path) -> None:
    _, key = svc(app).add("kiosk-gw")
    _, rotated = svc(app).rotate("kiosk-gw")
    app.log.seal(app.clock.now())
    digest = hashlib.sha256(rotated.encode()).hexdigest()
    if db_url.startswith("sqlite"):
        db = Path(db_url.removeprefix("sqlite:///"))
        files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]  # and its WAL
        blob = b"".join(p.read_bytes() for p in files)
        assert digest.encode() in blob  # the scan reads what is stored
        for k in (key, rotated):
            assert k.encode() not in blob
            assert k.split("_", 2)[2].encode() not in blob  # not even the secret part
    else:
        with app.ledger.engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            text = "\n".join(
                "\n".join(conn.exec_driver_sql(f'SELECT t::text FROM "{n}" t').scalars())
                for n in names
            )
        assert digest in text
        for k in (key, rotated):
            assert k not in text and k.split("_", 2)[2] not in text


def test_wrong_malformed_and_unknown_keys_are_refused(app: App) -> None:
    client, key = svc(app).add("kiosk-gw")
    forged = f"ik_{client.key_id}_{'A' * 43}"  # the public key id with a guessed secret
    for bad in (forged, key[:-1], key + "x", "ik_000000000000_" + "A" * 43, "", "Bearer x"):
        with pytest.raises(Unauthenticated):
            svc(app).authenticate(bad)
    assert svc(app).authenticate(key).name == "kiosk-gw"


def test_rotate_gives_a_new_key_and_the_old_one_stops_working(app: App) -> None:
    first, old = svc(app).add("kiosk-gw", windows=["W1"])
    rotated, new = svc(app).rotate("kiosk-gw")
    assert new != old and rotated.key_id != first.key_id
    assert rotated.windows == ("W1",) and rotated.rotated_at == app.clock.now()
    assert svc(app).authenticate(new).name == "kiosk-gw"
    with pytest.raises(Unauthenticated):
        svc(app).authenticate(old)
    kinds = [e.kind for e in app.ledger.events_about("client:kiosk-gw")]
    assert kinds == [Kind.CLIENT_ADDED, Kind.CLIENT_ROTATED]
    last = app.ledger.events_about("client:kiosk-gw")[-1]
    assert last.evidence == {
        "name": "kiosk-gw",
        "key_id": rotated.key_id,
        "previous_key_id": first.key_id,
    }


def test_revoke_refuses_the_key_for_good(app: App) -> None:
    _, key = svc(app).add("kiosk-gw")
    revoked = svc(app).revoke("kiosk-gw")
    assert revoked.state(app.clock.now()) == "revoked"
    with pytest.raises(Unauthenticated, match="revoked"):
        svc(app).authenticate(key)
    with pytest.raises(Conflict):
        svc(app).revoke("kiosk-gw")
    with pytest.raises(Conflict):
        svc(app).rotate("kiosk-gw")
    with pytest.raises(AlreadyExists):
        svc(app).add("kiosk-gw")
    assert [r["state"] for r in client_rows(svc(app).all(), app.clock.now())] == ["revoked"]
    assert app.ledger.events_about("client:kiosk-gw")[-1].kind == Kind.CLIENT_REVOKED


def test_an_expired_key_is_refused(app: App) -> None:
    clock = app.clock
    assert isinstance(clock, FrozenClock)
    _, in_days = svc(app).add("two-days", expires="2")
    # a date: the key works through that whole day in the rule set's zone (Shanghai)
    _, by_date = svc(app).add("by-date", expires="2026-10-16")
    clock.advance(2 * 86400 - 1)  # T0 is 10:00 on the 15th in Shanghai: now 09:59:59 on the 17th
    assert svc(app).authenticate(in_days).name == "two-days"
    with pytest.raises(Unauthenticated, match="expired"):
        svc(app).authenticate(by_date)  # ended at midnight of the 16th, Shanghai time
    clock.advance(1)
    with pytest.raises(Unauthenticated, match="expired"):
        svc(app).authenticate(in_days)
    states = {r["name"]: r["state"] for r in client_rows(svc(app).all(), clock.now())}
    assert states == {"by-date": "expired", "two-days": "expired"}


@pytest.mark.parametrize(
    ("name", "kwargs", "field"),
    [
        ("", {}, "name"),
        ("cli", {}, "name"),
        ("open", {}, "name"),
        ("has space", {}, "name"),
        ("x" * 65, {}, "name"),
        ("ok", {"windows": ["a;b"]}, "window"),
        ("ok", {"expires": "0"}, "expires"),
        ("ok", {"expires": "2020-01-01"}, "expires"),
        ("ok", {"expires": "soon"}, "expires"),
    ],
)
def test_bad_names_scopes_and_expiries_are_refused(
    app: App, name: str, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        svc(app).add(name, **kwargs)  # type: ignore[arg-type]
    assert field in {e.field for e in err.value.errors}
    assert svc(app).all() == []


def test_unknown_clients_cannot_be_rotated_or_revoked(app: App) -> None:
    with pytest.raises(NotFound):
        svc(app).rotate("ghost")
    with pytest.raises(NotFound):
        svc(app).revoke("ghost")


def test_another_process_sees_a_revocation_at_its_next_reload(
    app: App, db_url: str, tmp_path: Path
) -> None:
    """A server keeps clients in memory: a new key works at once (an unknown key id reads
    the table), a revocation from elsewhere takes effect at its background round."""
    server = make_app(tmp_path / "home", db_url, init=False)
    try:
        _, key = svc(app).add("kiosk-gw")
        assert svc(server).authenticate(key).name == "kiosk-gw"  # read on the miss
        svc(app).revoke("kiosk-gw")
        assert svc(server).authenticate(key).name == "kiosk-gw"  # until its round
        assert svc(server).reload() is True
        with pytest.raises(Unauthenticated, match="revoked"):
            svc(server).authenticate(key)
    finally:
        server.close()


def test_scopes_admit_their_windows_only(app: App) -> None:
    by_window, _ = svc(app).add("one-window", windows=["W1"])
    by_hall, _ = svc(app).add("one-hall", halls=["H1"])
    anywhere, _ = svc(app).add("anywhere")
    svc(app).admit(by_window, "W1")
    svc(app).admit(anywhere, "W7")
    with pytest.raises(PermissionDenied, match="'W2'"):
        svc(app).admit(by_window, "W2")
    with pytest.raises(PermissionDenied, match="no service registry is loaded"):
        svc(app).admit(by_hall, "H1-W01")
    app.get(RegistryService).load(
        parse_registry(
            {
                "halls": [{"hall_id": "H1"}, {"hall_id": "H2"}],
                "windows": [
                    {"window_id": "H1-W01", "hall_id": "H1"},
                    {"window_id": "H2-W01", "hall_id": "H2"},
                ],
            }
        ),
        actor="operator",
    )
    app.hook.reload()  # what a server's background round does
    svc(app).admit(by_hall, "H1-W01")
    for window in ("H2-W01", "nowhere"):
        with pytest.raises(PermissionDenied, match="may not submit"):
            svc(app).admit(by_hall, window)


def test_client_events_are_sealed_and_verify(app: App) -> None:
    svc(app).add("a")
    svc(app).rotate("a")
    svc(app).revoke("a")
    app.log.seal(app.clock.now())
    report = app.log.verify(app.clock.now())
    assert report.ok and report.unsealed == 0, report.problems
