"""`integrity clients ...` and the client a command-line ingest records, as an operator
meets them: the key alone on the last line, once; a list that never shows it; rotate,
revoke; `ingest --client`, `export ratings --client`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli import main
from tests.factories import rating


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "inst"
    monkeypatch.setenv("INTEGRITY_HOME", str(h))
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_SECRET_FILE", "INTEGRITY_ACTOR"):
        monkeypatch.delenv(var, raising=False)
    assert CliRunner().invoke(main, ["init"]).exit_code == 0
    return h


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args))


def test_add_prints_the_key_once_on_the_last_line(home: Path) -> None:
    res = run("clients", "add", "kiosk-gw", "--hall", "H1", "--window", "W9", "--expires", "30")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    key = lines[-1]
    assert key.startswith("ik_") and " " not in key
    assert "kiosk-gw" in lines[0] and "halls H1; windows W9" in res.stdout
    listed = run("clients", "list", "--format", "json")
    assert listed.exit_code == 0
    [row] = json.loads(listed.stdout)
    assert row["name"] == "kiosk-gw" and row["state"] == "active"
    assert row["halls"] == "H1" and row["windows"] == "W9" and row["expires_at"]
    assert key.split("_")[1] == row["key_id"]
    assert key not in listed.stdout and key[20:] not in listed.stdout
    assert run("clients", "list").stdout.count("kiosk-gw") == 1  # the table form too


def test_rotate_and_revoke(home: Path) -> None:
    first = run("clients", "add", "gw").stdout.splitlines()[-1]
    rotated = run("clients", "rotate", "gw")
    assert rotated.exit_code == 0, rotated.output
    second = rotated.stdout.splitlines()[-1]
    assert second.startswith("ik_") and second != first
    revoked = run("clients", "revoke", "gw")
    assert revoked.exit_code == 0 and "revoked intake client gw" in revoked.stdout
    [row] = json.loads(run("clients", "list", "--format", "json").stdout)
    assert row["state"] == "revoked" and row["rotated_at"] and row["revoked_at"]
    again = run("clients", "revoke", "gw")
    assert again.exit_code == 1 and "revoked already" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "cli"), "reserved"),
        (("add", "bad name"), "name"),
        (("add", "gw", "--expires", "yesterday"), "expires"),
        (("rotate", "ghost"), "no intake client 'ghost'"),
    ],
)
def test_bad_client_commands_exit_1_with_one_line(
    home: Path, args: tuple[str, ...], message: str
) -> None:
    res = run("clients", *args)
    assert res.exit_code == 1
    assert message in res.stderr and res.stderr.count("\n") == 1


def test_ingest_records_the_operators_choice_of_client(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(json.dumps(rating()) for _ in range(2)) + "\n")
    g = tmp_path / "s.jsonl"
    g.write_text(json.dumps(rating()) + "\n")
    assert run("ingest", str(f)).exit_code == 0  # default: cli
    run("clients", "add", "kiosk-gw")
    assert run("ingest", str(g), "--client", "kiosk-gw").exit_code == 0
    unknown = run("ingest", str(g), "--client", "typo-gw")
    assert unknown.exit_code == 1 and "typo-gw" in unknown.stderr
    rows = list(csv.DictReader(io.StringIO(run("export", "ratings").stdout)))
    assert [r["client_id"] for r in rows] == ["cli", "cli", "kiosk-gw"]
    only = list(
        csv.DictReader(io.StringIO(run("export", "ratings", "--client", "kiosk-gw").stdout))
    )
    assert [r["rating_id"] for r in only] == [rows[2]["rating_id"]]
