"""``integrity alerts ...`` end to end through ``cli.main``, on a frozen clock.

A tmp SQLite instance built through the CLI: init -> registry load -> staff import ->
tokens -> ingest (two low scores at W01, one at W03, a high one). The alerts open when
the ingest command closes (the close hook), at each rating's own time. People run their
commands signed in with their own tokens (``--as`` only asserts it); listing with
nobody signed in is the operator's.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alerts_factories import HIGH, LOW, REGISTRY
from cli_runner import Cli

from integrity.clock import FrozenClock

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

T0 = datetime(2026, 10, 12, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
NOTE = "Called the citizen back; the form was explained badly"
STAFF_CSV = """person_id,name,unit,roles,windows,active
HD1,,U1,head,W01,true
HD3,,U2,head,W03,true
SUP1,,U1,supervisor,,true
SUP2,,U2,supervisor,,true
S1,Li Na,U1,staff,W01,true
S3,,U2,staff,W03,true
R1,,U9,reviewer,,true
"""
PEOPLE = ("HD1", "HD3", "SUP1", "SUP2", "S1", "S3", "R1")


def _env(mp: pytest.MonkeyPatch, frozen: FrozenClock) -> None:
    mp.setattr("bootstrap.SystemClock", lambda: frozen)
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_ACTOR", "INTEGRITY_SECRET_FILE"):
        mp.delenv(var, raising=False)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock(T0)
    _env(monkeypatch, frozen)
    return frozen


def ratings_file(path: Path) -> Path:
    """Ratings 1 and 2 low at W01 (S1), 3 high at W01, 4 low at W03 (S3)."""
    docs = []
    for n, (window, staff, scores, minutes) in enumerate(
        [("W01", "S1", LOW, 30), ("W01", "S1", LOW, 20), ("W01", "S1", HIGH, 10),
         ("W03", "S3", LOW, 5)],
        start=1,
    ):  # fmt: skip
        docs.append(
            {
                "ticket_id": f"AL-{n}",
                "window_id": window,
                "staff_id": staff,
                "scores": scores,
                "submitted_at": (T0 - timedelta(minutes=minutes)).isoformat(),
                "ip": f"198.51.100.{n}",
                "device_id": f"device-{n}",
                "comment": "the counter ignored me",
            }
        )
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    mp = pytest.MonkeyPatch()
    _env(mp, FrozenClock(T0))
    base = tmp_path_factory.mktemp("alerts-cli")
    run = Cli(base / "home")
    run("init")
    (base / "registry.json").write_text(json.dumps(REGISTRY))
    run("registry", "load", str(base / "registry.json"))
    run("staff", "add", "A1", "--role", "admin", "--unit", "HQ")
    run.sign_up("A1")
    (base / "staff.csv").write_text(STAFF_CSV)
    run("staff", "import", str(base / "staff.csv"), "--as", "A1")
    for person in PEOPLE:
        run.sign_up(person, issued_by="A1")
    out = run("ingest", str(ratings_file(base / "ratings.jsonl"))).stdout
    assert "4 written" in out
    yield base / "home"
    mp.undo()


@pytest.fixture
def run(template: Path, tmp_path: Path, clock: FrozenClock) -> Cli:
    home = tmp_path / "home"
    shutil.copytree(template, home)
    return Cli(home)


def test_the_operator_lists_every_alert_without_a_credential(run: Cli) -> None:
    text = run("alerts", "list", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == (
        "alert_id,rating_id,window_id,staff_id,head_id,opened_at,respond_by,reply_by,"
        "status,responded_at,overdue,escalated_to"
    )
    assert [(r["alert_id"], r["rating_id"], r["window_id"], r["head_id"]) for r in rows] == [
        ("1", "1", "W01", "HD1"),
        ("2", "2", "W01", "HD1"),
        ("3", "4", "W03", "HD3"),
    ]
    # replayed: opened at each rating's own time; RFC 3339 with the rule set's offset
    assert rows[0]["opened_at"] == "2026-10-12T09:30:00+08:00"
    assert rows[0]["respond_by"] == "2026-10-13T09:30:00+08:00"
    assert rows[0]["reply_by"] == "2026-10-20T00:00:00+08:00"
    assert {r["overdue"] for r in rows} == {"false"} and {r["status"] for r in rows} == {"open"}
    doc = run.json("alerts", "list", "--window", "W03")
    assert doc[0]["overdue"] is False and doc[0]["responded_at"] is None
    assert "2026-10-12 09:55:00 +08:00" in run("alerts", "list").stdout  # tables: local time


def test_the_loop_through_the_command_line(run: Cli, clock: FrozenClock) -> None:
    clock.advance(3600)
    res = run("alerts", "ack", "1", "--as", "HD1")
    assert "alert 1: acknowledged (on time)" in res.stdout and "2026-10-19" in res.stdout
    res = run("alerts", "ack", "1", "--as", "HD1", code=1)
    assert "alert 1 is acknowledged: cannot ack (allowed now: verify)" in res.stderr
    res = run("alerts", "verify", "1", "--finding", "service_problem", "--note", NOTE,
              "--as", "HD1", code=2)  # fmt: skip
    assert "--reached or --not-reachable" in res.stderr
    doc = run.json(
        "alerts", "verify", "1", "--reached", "--finding", "service_problem", "--note", NOTE,
        "--as", "HD1",
    )  # fmt: skip
    assert (doc["status"], doc["callback"], doc["finding"]) == (
        "verified",
        "reached",
        "service_problem",
    )
    run("alerts", "rectify", "1", "--action", "Rewrote the form's instructions", "--as", "HD1")
    res = run("alerts", "reply", "1", "--text", "Li Na will call you back", "--as", "HD1", code=1)
    assert "leave out the staff member's name" in res.stderr
    reply = "Thank you: the form now says which documents to bring."
    run("alerts", "reply", "1", "--text", reply, "--as", "HD1")
    run("alerts", "close", "1", "--as", "HD1")

    show = run.json("alerts", "show", "1", "--as", "S1")  # the staff member concerned reads it
    assert (show["status"], show["reply"], show["allowed_next"]) == ("closed", reply, [])
    assert [h["kind"] for h in show["history"]] == [
        "alert.opened",
        "alert.acknowledged",
        "alert.verified",
        "alert.rectified",
        "alert.replied",
        "alert.closed",
    ]
    assert [h["actor"] for h in show["history"]][1:] == ["HD1"] * 5
    assert "comment" not in show["rating"]  # staff do not read comments
    assert run.json("alerts", "show", "1")["rating"]["comment"] == "the counter ignored me"
    table = run("alerts", "show", "1", "--as", "HD1").stdout
    assert "status" in table and "closed" in table and "alert.replied" in table
    assert run("ledger", "verify", "--strict").stdout.startswith("ok")


def test_who_may_act_and_read(run: Cli) -> None:
    res = run("alerts", "ack", "3", "--as", "HD1", code=1)
    assert "HD1 may not act on alert 3: it is for HD3, the head of window W03" in res.stderr
    res = run("alerts", "ack", "3", "--as", "SUP2", code=1)
    assert "once it is escalated" in res.stderr
    run("alerts", "ack", "3", "--as", "A1")
    res = run("alerts", "ack", "1", code=1)  # nobody signed in
    assert "nobody is signed in" in res.stderr
    res = run("alerts", "ack", "1", "--as", "HD3", signed_in="HD1", code=1)
    assert "you are signed in as HD1, not HD3" in res.stderr

    def ids(*args: str) -> list[int]:
        return [r["alert_id"] for r in run.json("alerts", "list", *args)]

    assert ids("--as", "HD1") == [1, 2]
    assert ids("--as", "SUP2") == [3]
    assert ids("--mine", "--as", "S3") == [3]
    assert ids("--as", "R1") == []
    assert ids("--status", "acknowledged") == [3]
    res = run("alerts", "list", "--mine", code=1)
    assert "--mine needs you to be signed in" in res.stderr
    res = run("alerts", "show", "3", "--as", "S1", code=1)
    assert "may not read alert 3" in res.stderr


def test_missed_deadlines_escalate_once_to_the_hall_supervisor(
    run: Cli, clock: FrozenClock
) -> None:
    run("alerts", "ack", "2", "--as", "HD1")
    clock.advance(24 * 3600)
    assert [r["alert_id"] for r in run.json("alerts", "list", "--overdue")] == [1, 3]
    res = run("alerts", "escalate-overdue")
    assert "2 missed deadline(s) marked; 2 alert(s) escalated" in res.stdout
    rows = list(
        csv.DictReader(io.StringIO(run("alerts", "escalate-overdue", "--format", "csv").stdout))
    )
    assert rows == []
    listed = {r["alert_id"]: r for r in run.json("alerts", "list")}
    assert (listed[1]["escalated_to"], listed[3]["escalated_to"]) == ("SUP1", "SUP2")
    assert listed[1]["overdue"] is True and listed[2]["overdue"] is False
    run("alerts", "ack", "3", "--as", "SUP2")  # escalated: its hall supervisor acts
    res = run("alerts", "escalate-overdue", "--as", "HD1", code=1)
    assert "HD1" in res.stderr

    report = run.json("report", "--by", "window", "--period", "2026-10")
    w01 = next(r for r in report if r["window_id"] == "W01")
    assert (w01["alerts_opened"], w01["answered_in_24h"], w01["alerts_overdue"]) == (2, 0.5, 1)
    header = run("report", "--by", "hall", "--format", "csv").stdout.splitlines()[0]
    assert header.endswith(",alerts_opened,answered_in_24h,alerts_overdue")
