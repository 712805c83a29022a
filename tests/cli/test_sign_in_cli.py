"""Who is acting, on the command line: a person is signed in by a personal token or by the
real OS account an admin mapped, never by a typed name; ``--as`` only asserts it.

The finding behind it: a staff member voided his own low rating by typing ``--as R1``
and then ``--as R2``, and the ledger named R1 and R2. The clock is frozen (the
composition root's SystemClock is replaced); the OS account is the test's to say
(``integrity.auth.os_user`` is replaced), so nothing depends on who runs the tests.
"""

from __future__ import annotations

import json
import os
import pwd
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from appeals_factories import HIGH, LOW
from click.testing import CliRunner, Result

from integrity import auth
from integrity.adapters import tables as t
from integrity.clock import FrozenClock

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import cli  # noqa: E402

T0 = datetime(2026, 10, 12, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
REASON = "The comment is abuse about parking, not about my service"
DECISION = "Ticket record and comment checked against the service log"


class Host:
    """A shared host: one instance, and whoever the OS says is logged in (``account``)."""

    def __init__(self, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = home
        self.account: str | None = "operator"
        monkeypatch.setattr(auth, "os_user", lambda: self.account)

    def __call__(
        self, *args: str, code: int = 0, account: str | None = None, token: str | None = None
    ) -> Result:
        if account is not None:
            self.account = account
        env = {"INTEGRITY_TOKEN": token} if token else {}
        res = CliRunner().invoke(cli.main, [*args, "--home", str(self.home)], env=env)
        assert res.exit_code == code, (args, res.exit_code, res.stdout, res.stderr, res.exception)
        if code == 1:
            assert res.stderr.startswith("error: ") and len(res.stderr.splitlines()) == 1
        return res

    def actors(self) -> set[str]:
        """Every actor the ledger names."""
        engine = sa.create_engine(f"sqlite:///{self.home / 'ledger.db'}")
        with engine.connect() as conn:
            found = {r[0] for r in conn.execute(sa.select(t.events.c.actor))}
        engine.dispose()
        return found


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock(T0)
    monkeypatch.setattr("bootstrap.SystemClock", lambda: frozen)
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_SECRET_FILE"):
        monkeypatch.delenv(var, raising=False)
    return frozen


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock) -> Host:
    """Two ratings of S1 at W01 (1 high, 2 low); an admin A1 who logs in as ``alice``,
    staff S1 as ``sam``, reviewers R1 and R2 of other units with no OS account."""
    run = Host(tmp_path / "home", monkeypatch)
    run("init")
    docs = [
        {
            "ticket_id": f"T-{n}",
            "window_id": "W01",
            "staff_id": "S1",
            "scores": scores,
            "submitted_at": (T0 - timedelta(hours=2)).isoformat(),
            "ip": f"198.51.100.{n}",
            "device_id": f"device-{n}",
            "comment": "parking is a mess" if n == 2 else "",
        }
        for n, scores in ((1, HIGH), (2, LOW))
    ]
    (tmp_path / "ratings.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    run("ingest", str(tmp_path / "ratings.jsonl"))
    run("staff", "add", "A1", "--role", "admin", "--unit", "HQ", "--os-user", "alice")
    run(
        "staff", "add", "S1", "--unit", "U1", "--window", "W01", "--os-user", "sam", account="alice"
    )
    run("staff", "add", "R1", "--role", "reviewer", "--unit", "U2")
    run("staff", "add", "R2", "--role", "reviewer", "--unit", "U3")
    run.account = "operator"
    return run


def test_a_typed_name_is_not_an_identity(host: Host) -> None:
    """The finding: S1 files about his own low rating, then decides it --as R1 and --as R2."""
    host("appeal", "file", "2", "--ground", "abusive_or_unrelated", "--reason", REASON,
         account="sam")  # fmt: skip
    host("appeal", "assign", "1", "--reviewer", "R1", "--reviewer", "R2", account="alice")
    for claimed in ("R1", "R2"):
        res = host(
            "appeal", "decide", "1", "--uphold", "--reason", DECISION,
            "--no-automated-evidence", "--as", claimed, code=1, account="sam",
        )  # fmt: skip
        assert f"you are signed in as S1, not {claimed}" in res.stderr
    res = host("appeal", "decide", "1", "--uphold", "--reason", DECISION,
               "--no-automated-evidence", code=1, account="sam")  # fmt: skip
    assert "reviewer role" in res.stderr  # as himself, the role check refuses him
    assert not {"R1", "R2"} & host.actors()  # nobody who did not sign in is named
    export = json.loads(host("export", "ratings", "--format", "json").stdout)
    assert [(r["rating_id"], r["status"]) for r in export] == [(1, "accepted"), (2, "accepted")]


def test_a_claim_with_nobody_signed_in_is_refused(host: Host) -> None:
    res = host("review", "list", "--as", "R1", code=1, account="nobody-mapped")
    assert "--as R1 only checks who you are" in res.stderr
    res = host("review", "list", code=1)
    assert "nobody is signed in" in res.stderr


def test_the_os_account_comes_from_the_uid_not_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("LOGNAME", "alice")
    monkeypatch.setenv("LNAME", "alice")
    monkeypatch.setenv("USERNAME", "alice")
    assert auth.os_user() == pwd.getpwuid(os.getuid()).pw_name


def test_an_os_account_signs_its_person_in_and_a_claim_must_match(host: Host) -> None:
    res = host("staff", "add", "S2", "--unit", "U1", account="alice")  # A1 by OS account
    assert "added S2" in res.stdout
    res = host("staff", "add", "S3", "--as", "A1", account="alice")  # a true assertion
    assert "added S3" in res.stdout
    res = host("staff", "add", "S4", "--as", "R1", code=1, account="alice")
    assert "you are signed in as A1, not R1" in res.stderr
    res = host("staff", "add", "S4", code=1, account="sam")  # sam is S1: not an admin
    assert "admin role" in res.stderr
    rows = json.loads(host("staff", "os-users", "--format", "json", account="alice").stdout)
    assert [(r["os_user"], r["person_id"], r["mapped_by"]) for r in rows] == [
        ("alice", "A1", "bootstrap"),
        ("sam", "S1", "A1"),
    ]
    host("staff", "unmap-os-user", "sam", account="alice")
    res = host("appeal", "list", code=1, account="sam")
    assert "nobody is signed in" in res.stderr


def test_tokens_from_the_command_line(host: Host, clock: FrozenClock, tmp_path: Path) -> None:
    res = host("staff", "token", "issue", "R1", "--expires", "2d", "--note", "laptop",
               account="alice")  # fmt: skip
    token = res.stdout.strip()
    assert res.stdout.splitlines() == [token] and token.startswith("itk_")  # alone on stdout
    assert "token 1 for R1, expires 2026-10-14T02:00:00+00:00" in res.stderr
    # the token, not the OS account, says who acts (sam is S1; the token is R1's)
    res = host("review", "list", "--format", "json", token=token, account="sam")
    assert json.loads(res.stdout) == []
    rows = json.loads(host("staff", "token", "list", "--format", "json", token=token).stdout)
    assert [(r["credential_id"], r["person_id"], r["state"], r["note"]) for r in rows] == [
        (1, "R1", "active", "laptop")
    ]
    # a token file readable by its owner alone; anything wider is refused
    path = tmp_path / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    host("--token-file", str(path), "review", "list")
    path.chmod(0o644)
    res = host("--token-file", str(path), "review", "list", code=1)
    assert "chmod 600" in res.stderr
    # expiry on the (frozen) clock, then revocation of a second token
    clock.advance(2 * 24 * 3600)
    res = host("review", "list", token=token, code=1)
    assert "token 1 expired at 2026-10-14T02:00:00+00:00" in res.stderr
    second = host("staff", "token", "issue", "R1", account="alice").stdout.strip()
    host("review", "list", token=second)
    res = host("staff", "token", "revoke", "2", token=second)  # one's own
    assert "token 2 of R1 revoked" in res.stdout
    res = host("review", "list", token=second, code=1)
    assert "token 2 was revoked" in res.stderr
    res = host("review", "list", token="itk_forged", code=1)
    assert "unknown token" in res.stderr
    states = json.loads(host("staff", "token", "list", "--format", "json", account="alice").stdout)
    assert [r["state"] for r in states] == ["expired", "revoked"]


def test_the_first_admin_bootstraps_with_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock
) -> None:
    run = Host(tmp_path / "home", monkeypatch)
    run("init")
    run("staff", "add", "A1", "--role", "admin")  # no admin yet: anyone may add the first
    res = run("staff", "token", "issue", "R9", code=1)
    assert "not in the registry" in res.stderr or "no person" in res.stderr
    token = run("staff", "token", "issue", "A1").stdout.strip()  # no admin can sign in yet
    res = run("staff", "token", "issue", "A1", code=1)  # now one can: the door is shut
    assert "nobody is signed in" in res.stderr
    run("staff", "add", "R1", "--role", "reviewer", token=token)
    assert {"bootstrap", "A1"} <= run.actors()


def test_operator_commands_need_no_person(host: Host, tmp_path: Path) -> None:
    for args in (
        ["report", "--by", "staff"],
        ["ledger", "verify"],
        ["registry", "show"],
        ["audit", "frames"],
    ):
        host(*args, account="nobody-mapped")
        host(*args, token="itk_not_even_valid")  # they never ask who is acting
    res = host(
        "export", "ratings", "--with-comments", "--format", "json", token="itk_not_even_valid"
    )
    rows: list[dict[str, Any]] = json.loads(res.stdout)
    assert rows[1]["comment"] == "parking is a mess"  # the operator reads everything
