"""`integrity ledger ...` as an operator meets it: checkpoints kept outside the database (a
file, a witness over HTTP), verify --checkpoints and --strict, a tampered rule set, and the
modes of the instance's files."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import pytest
import sqlalchemy as sa
from audit_factories import rating_doc
from cli_runner import Cli
from click.testing import CliRunner

from bootstrap import open_app
from cli import main
from integrity import merkle
from integrity.adapters import tables as t
from integrity.app import Settings


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "inst"
    monkeypatch.setenv("INTEGRITY_HOME", str(h))
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_SECRET_FILE", "INTEGRITY_ACTOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    res = run("init")
    assert res.exit_code == 0, res.output
    return h


def ingest(tmp_path: Path, n: int, name: str = "ratings.jsonl") -> None:
    start = datetime(2026, 10, 3, 1, 0, tzinfo=UTC)
    lines = [json.dumps(rating_doc("W1", start + timedelta(minutes=9 * i))) for i in range(n)]
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    res = run("ingest", str(tmp_path / name))
    assert res.exit_code == 0, res.output


def engine(home: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{home / 'ledger.db'}")


class Witness:
    """A real HTTP server on a free local port that keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        witness = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/broken":
                    self.send_response(500)
                    self.end_headers()
                    return
                witness.received.append(
                    {"path": self.path, "type": self.headers["Content-Type"], **json.loads(body)}
                )
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Witness:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def witness() -> Iterator[Witness]:
    with Witness() as w:
        yield w


def test_checkpoints_to_a_file_and_a_witness_then_verify_against_the_file(
    home: Path, tmp_path: Path, witness: Witness
) -> None:
    ingest(tmp_path, 5)
    kept = tmp_path / "elsewhere" / "checkpoints.txt"
    kept.parent.mkdir()
    res = run("ledger", "checkpoint", "--out", str(kept), "--witness", witness.url + "/log")
    assert res.exit_code == 0, res.output
    first = res.stdout.strip()
    size, root = merkle.parse_checkpoint(first)
    assert witness.received == [
        {
            "path": "/log",
            "type": "application/json",
            "checkpoint": first,
            "origin": "integrity-ledger/v1",
            "size": size,
            "root": root.hex(),
            "at": witness.received[0]["at"],
        }
    ]
    datetime.fromisoformat(witness.received[0]["at"])  # a time
    ingest(tmp_path, 3, "more.jsonl")
    res = run("ledger", "checkpoint", "--out", str(kept))
    assert res.exit_code == 0, res.output
    lines = kept.read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith(first + " at=")
    assert lines[1].startswith(res.stdout.strip() + " at=")

    res = run("ledger", "verify", "--checkpoints", str(kept), "--strict")
    assert res.exit_code == 0, res.output
    assert f"2 checkpoint(s) from {kept} hold" in res.stdout

    # an edit of a rating sealed before both checkpoints: each line is named
    with engine(home).begin() as conn:
        conn.execute(t.ratings.update().where(t.ratings.c.rating_id == 2).values(composite=1.0))
    res = run("ledger", "verify", "--checkpoints", str(kept))
    assert res.exit_code == 1
    assert f"does not extend the checkpoint on line 1 of {kept} (size {size})" in res.stdout
    assert f"does not extend the checkpoint on line 2 of {kept}" in res.stdout


def test_a_checkpoint_file_with_a_bad_line_is_refused_by_line(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "cp.txt"
    res = run("ledger", "checkpoint", "--out", str(f))
    assert res.exit_code == 0, res.output
    with open(f, "a") as fh:
        fh.write("\n# a comment\nintegrity-ledger/v1 size=3 root=xyz\n")
    res = run("ledger", "verify", "--checkpoints", str(f))
    assert res.exit_code == 1
    assert f"{f} line 4: malformed checkpoint" in res.stderr


def test_a_witness_that_fails_is_an_error_but_the_checkpoint_is_kept(
    home: Path, tmp_path: Path, witness: Witness
) -> None:
    f = tmp_path / "cp.txt"
    res = run("ledger", "checkpoint", "--out", str(f), "--witness", witness.url + "/broken")
    assert res.exit_code == 1
    assert "refused the checkpoint: HTTP 500" in res.stderr
    assert "integrity-ledger/v1 size=" in res.stderr and "is recorded" in res.stderr
    assert len(f.read_text().splitlines()) == 1
    res = run("ledger", "checkpoint", "--witness", "ftp://example.org/x")
    assert res.exit_code == 1 and "http:// or https://" in res.stderr


def test_unsealed_events_warn_and_fail_strict_until_sealed(home: Path, tmp_path: Path) -> None:
    ingest(tmp_path, 2)
    now = datetime.now(UTC)
    with engine(home).begin() as conn:
        eid = conn.execute(
            t.events.insert()
            .values(
                kind="staff.added",
                actor="intruder",
                subject="person:X",
                reasons="[]",
                evidence="{}",
                at=now,
            )
            .returning(t.events.c.event_id)
        ).scalar_one()
    res = run("ledger", "verify")
    assert res.exit_code == 0, res.output
    assert "1 event(s) not yet sealed" in res.stdout
    assert "warning: 1 event(s) not yet in the log: they carry no tamper evidence" in res.stderr
    assert f"{eid} staff.added by intruder" in res.stderr
    res = run("ledger", "verify", "--strict")
    assert res.exit_code == 1
    assert "1 event(s) not sealed (--strict)" in res.stderr
    assert run("ledger", "seal").exit_code == 0
    res = run("ledger", "verify", "--strict")
    assert res.exit_code == 0, res.output


def test_a_rule_set_edited_in_the_database_stops_the_instance_but_not_verify(
    home: Path, tmp_path: Path
) -> None:
    ingest(tmp_path, 2)
    with engine(home).begin() as conn:
        rs_id, text = conn.execute(sa.select(t.rule_sets.c.rule_set_id, t.rule_sets.c.text)).one()
        conn.execute(t.rule_sets.update().values(text=text.replace("limit = 8\n", "limit = 300\n")))
    res = run("report")
    assert res.exit_code == 1
    assert f"the stored text of the active rule set {rs_id} does not hash to its id" in res.stderr
    assert "integrity ledger verify" in res.stderr
    res = run("ledger", "verify")
    assert res.exit_code == 1
    assert f"TAMPERED: rule set {rs_id}: its stored text hashes to" in res.stdout
    assert "TAMPERED: table rule_sets differs from what event" in res.stdout


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_instance_is_private_from_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    """Home 0700, secret key and SQLite ledger 0600 (its -wal and -shm too), whatever the
    umask, and never by a chmod after the fact."""

    def no_chmod(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a file was chmod-ed after it was created")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    h = tmp_path / "inst"
    monkeypatch.setenv("INTEGRITY_HOME", str(h))
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_SECRET_FILE"):
        monkeypatch.delenv(var, raising=False)
    old = os.umask(umask)
    try:
        res = run("init")
        assert res.exit_code == 0, res.output
        assert _mode(h) == 0o700
        assert _mode(h / "secret.key") == 0o600
        assert _mode(h / "ledger.db") == 0o600
        with open_app(Settings.resolve(home=h)) as app:
            app.people.upsert("A1", roles=["admin"], at=datetime.now(UTC))
            for suffix in ("-wal", "-shm"):  # exist while a connection is open
                assert _mode(h / f"ledger.db{suffix}") == 0o600, suffix
    finally:
        os.umask(old)


REGISTRY = {
    "halls": [{"hall_id": "H1", "name": "Hall one", "supervisor": "A1"}],
    "windows": [{"window_id": "W1", "hall_id": "H1", "head": "S1", "service_types": ["tax"]}],
    "roster": [{"staff_id": "S-W1", "window_id": "W1", "from": "2026-01-01"}],
}


def test_the_configuration_commands_leave_a_ledger_that_verifies_strictly(
    home: Path, tmp_path: Path
) -> None:
    """staff, venues, registry, ingest, seal, checkpoint, prove: then verify --strict; and
    an edit of each configuration they wrote is named by table."""
    (tmp_path / "staff.csv").write_text(
        "person_id,name,unit,roles,windows,active\nS1,,U1,staff,W1,true\nR1,,U2,reviewer,,true\n"
    )
    venues = {"venues": [{"venue_id": "H1", "networks": ["198.51.100.7/32"]}]}
    (tmp_path / "venues.json").write_text(json.dumps(venues))
    (tmp_path / "registry.json").write_text(json.dumps(REGISTRY))
    user = Cli(home)
    user("staff", "add", "A1", "--role", "admin", "--unit", "HQ")
    user.sign_up("A1")
    for args in (
        ("staff", "import", str(tmp_path / "staff.csv"), "--as", "A1"),
        ("staff", "add", "S1", "--role", "staff", "--window", "W1", "--update", "--as", "A1"),
        ("staff", "list", "--as", "A1"),
        ("venues", "load", str(tmp_path / "venues.json")),
        ("registry", "load", str(tmp_path / "registry.json")),
        ("registry", "show"),
    ):
        user(*args)
    ingest(tmp_path, 4)
    assert run("ledger", "seal").exit_code == 0
    assert run("ledger", "checkpoint").exit_code == 0
    assert run("ledger", "prove", "--from", "1").exit_code == 0
    res = run("ledger", "verify", "--strict")
    assert res.exit_code == 0, res.output + res.stderr

    for table, values in (
        (t.people, {"roles": "admin"}),
        (t.venues, {"networks": 5}),
        (t.windows, {"head": "R1"}),
        (t.roster, {"window_id": "W1", "staff_id": "S-X"}),
    ):
        with engine(home).begin() as conn:
            before = [dict(r) for r in conn.execute(sa.select(table)).mappings()]
            conn.execute(table.update().values(**values))
        res = run("ledger", "verify")
        assert res.exit_code == 1
        assert f"TAMPERED: table {table.name} differs from what event" in res.stdout
        with engine(home).begin() as conn:
            conn.execute(table.delete())
            conn.execute(table.insert(), before)
    res = run("ledger", "verify", "--strict")
    assert res.exit_code == 0, res.output + res.stderr
