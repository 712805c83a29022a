"""``integrity webhooks ...`` as an operator meets it, against a real local receiver."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from webhook_receiver import Receiver

from cli import main
from followup.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from rules.ruleset import default_ruleset_text


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "inst"
    monkeypatch.setenv("INTEGRITY_HOME", str(h))
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_SECRET_FILE", "INTEGRITY_ACTOR"):
        monkeypatch.delenv(var, raising=False)
    # dead letters within a test: a delivery is given up one millisecond after it is queued
    rules = tmp_path / "rules.toml"
    text = default_ruleset_text()
    assert "max_age_s = 86400.0" in text
    rules.write_text(text.replace("max_age_s = 86400.0", "max_age_s = 0.001"))
    res = run("init", "--rules", str(rules))
    assert res.exit_code == 0, res.output
    return h


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_add_shows_the_secret_once_and_the_receiver_can_verify(
    home: Path, receiver: Receiver
) -> None:
    res = run("webhooks", "add", receiver.url, "--event", "staff.added", "--event", "appeal.*")
    assert res.exit_code == 0, res.output
    assert re.match(r"webhook endpoint 1 added \(event \d+\): http://127\.0\.0\.1", res.output)
    secret = res.output.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{64}", secret)

    listed = run("webhooks", "list", "--format", "json")
    assert listed.exit_code == 0 and secret not in listed.output
    [row] = json.loads(listed.output)
    assert row["events"] == ["staff.added", "appeal.*"] and row["state"] == "enabled"
    assert secret not in (home / "ledger.db").read_bytes().decode("latin-1")

    assert run("staff", "add", "A0", "--role", "admin", "--unit", "HQ").exit_code == 0
    res = run("webhooks", "deliver")
    assert res.exit_code == 0, res.output
    assert res.output.strip() == "queued 1, delivered 1, failed 0 (will retry), dead letters 0"
    [got] = receiver.received
    assert json.loads(got.body)["kind"] == "staff.added"
    ts = got.header(TIMESTAMP_HEADER)
    assert verify(secret, ts, got.header(SIGNATURE_HEADER), got.body, now_s=int(ts))


def test_a_given_secret_is_used_and_not_printed(
    home: Path, receiver: Receiver, tmp_path: Path
) -> None:
    f = tmp_path / "receiver.secret"
    f.write_text("the-receivers-own-secret-value\n")
    res = run("webhooks", "add", receiver.url, "--event", "staff.added", "--secret-file", str(f))
    assert res.exit_code == 0, res.output
    assert "secret" not in res.output and "the-receivers-own" not in res.output
    assert run("staff", "add", "A0", "--role", "admin", "--unit", "HQ").exit_code == 0
    assert run("webhooks", "deliver").exit_code == 0
    [got] = receiver.received
    ts = got.header(TIMESTAMP_HEADER)
    assert verify(
        "the-receivers-own-secret-value", ts, got.header(SIGNATURE_HEADER), got.body, int(ts)
    )


def test_bad_input_is_one_line_on_stderr_and_exit_1(home: Path) -> None:
    res = CliRunner().invoke(main, ["webhooks", "add", "ftp://x", "--event", "nope"])
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and "invalid webhook endpoint" in res.output
    assert "url:" in res.output and "event:" in res.output
    assert run("webhooks", "add", "https://example.org/").exit_code == 2  # --event required
    for args in (
        ["disable", "9"],
        ["remove", "9"],
        ["replay", "9"],
        ["replay"],
        ["replay", "9", "--all-dead"],
        ["replay", "9", "--endpoint", "1"],
    ):
        res = run("webhooks", *args)
        assert res.exit_code == 1, (args, res.output)
        assert res.output.startswith("error: ")


def test_failures_dead_letters_and_replay(home: Path, receiver: Receiver) -> None:
    assert run("webhooks", "add", receiver.url, "--event", "staff.added").exit_code == 0
    receiver.down()
    assert run("staff", "add", "A0", "--role", "admin", "--unit", "HQ").exit_code == 0
    res = run("webhooks", "deliver")
    assert "failed 1 (will retry)" in res.output, res.output
    res = run("webhooks", "deliver")  # past the maximum age (1 ms in this rule set)
    assert "dead letters 1" in res.output, res.output

    dead = json.loads(run("webhooks", "dead", "--format", "json").output)
    assert [(d["delivery_id"], d["status"], d["attempts"]) for d in dead] == [(1, "dead", 2)]
    log = json.loads(run("webhooks", "attempts", "--delivery", "1", "--format", "json").output)
    assert [a["number"] for a in log] == [1, 2]
    assert all(a["status_code"] is None and "Connection" in a["error"] for a in log)
    csv = run("webhooks", "deliveries", "--status", "dead", "--format", "csv").output
    assert csv.splitlines()[0].startswith("delivery_id,endpoint_id,event_id,kind,status")

    receiver.up()
    res = run("webhooks", "replay", "--all-dead")
    assert res.output.strip() == "re-queued 1 dead letter(s): 1", res.output
    res = run("webhooks", "deliver")
    assert "delivered 1" in res.output, res.output
    assert len(receiver.delivered) == 1
    table = run("webhooks", "deliveries").output
    assert "delivered" in table and "HTTP 200" in table


def test_disable_enable_remove(home: Path, receiver: Receiver) -> None:
    assert run("webhooks", "add", receiver.url, "--event", "staff.added").exit_code == 0
    for verb in ("disable", "enable", "remove"):
        res = run("webhooks", verb, "1")
        assert res.exit_code == 0, res.output
        assert res.output.startswith(f"webhook endpoint 1 {verb}d: http://")
    assert "127.0.0.1" not in run("webhooks", "list").output
    assert "removed" in run("webhooks", "list", "--all").output
