"""``integrity period ...`` and ``integrity cases ...`` end to end through ``cli.main``, on a
frozen clock: a tmp SQLite instance built through the CLI (init, registry, people,
tokens, a month of ratings ingested), closed by an admin; the cases listed as CSV with
the contract's columns; planned, noted, closed by the people the roles allow; the next
close checks them; the same commands through the server (``POST /v1/commands``, run by
:class:`integrity.remote.CommandRunner`) with the roles checked there.
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

NOV2 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
DEC1 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
PLAN = "Retrain the counter staff on the checklist"
STAFF_CSV = """person_id,name,unit,roles,windows,active
HD1,,U1,head,W01,true
HD3,,U2,head,W03,true
SUP1,,U1,supervisor,,true
SUP2,,U2,supervisor,,true
S1,Li Na,U1,staff,W01,true
S3,,U2,staff,W03,true
"""
PEOPLE = ("HD1", "HD3", "SUP1", "SUP2", "S1", "S3")
CONTRACT = ("case_id", "kind", "subject", "period", "counted", "low_score_rate", "status", "due")


def _env(mp: pytest.MonkeyPatch, frozen: FrozenClock) -> None:
    mp.setattr("bootstrap.SystemClock", lambda: frozen)
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_ACTOR", "INTEGRITY_SECRET_FILE"):
        mp.delenv(var, raising=False)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock(NOV2)
    _env(monkeypatch, frozen)
    return frozen


def ratings_file(path: Path, year: int, month: int, plan: dict[str, tuple[int, int]]) -> Path:
    """``(low, high)`` ratings per window in that month, naming the window's staff."""
    staff = {"W01": "S1", "W02": "S2", "W03": "S3"}
    docs = []
    for window, (low, high) in plan.items():
        for i, scores in enumerate([LOW] * low + [HIGH] * high):
            n = len(docs) + 1
            docs.append(
                {
                    "ticket_id": f"CS-{year}{month:02d}-{n}",
                    "window_id": window,
                    "staff_id": staff[window],
                    "scores": scores,
                    "submitted_at": datetime(year, month, 2 + i, 3, tzinfo=UTC).isoformat(),
                    "ip": f"198.51.{month}.{n}",
                    "device_id": f"device-{month}-{n}",
                }
            )
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    mp = pytest.MonkeyPatch()
    _env(mp, FrozenClock(NOV2))
    base = tmp_path_factory.mktemp("cases-cli")
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
    # October: W01 3 low in 10 (a case, and S1's); W02 1 low in 3 (too few: none);
    # W03 1 low in 12 (none)
    october = ratings_file(
        base / "oct.jsonl", 2026, 10, {"W01": (3, 7), "W02": (1, 2), "W03": (1, 11)}
    )
    assert "25 written" in run("ingest", str(october)).stdout
    yield base / "home"
    mp.undo()


@pytest.fixture
def run(template: Path, tmp_path: Path, clock: FrozenClock) -> Cli:
    home = tmp_path / "home"
    shutil.copytree(template, home)
    return Cli(home)


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_an_admin_closes_the_month_and_the_cases_list_as_csv(run: Cli) -> None:
    res = run("period", "close", "2026-10", "--as", "A1")
    assert "period 2026-10 closed by A1" in res.stdout
    assert "cases opened: 1 window, 1 staff; talks: 0" in res.stdout
    text = run("cases", "list", "--format", "csv").stdout
    header = text.splitlines()[0].split(",")
    assert all(c in header for c in CONTRACT)
    got = rows(text)
    assert [(r["case_id"], r["kind"], r["subject"], r["period"]) for r in got] == [
        ("1", "window", "W01", "2026-10"),
        ("2", "staff", "S1", "2026-10"),
    ]
    w = got[0]
    assert (w["counted"], w["low_score_rate"], w["status"], w["due"]) == (
        "10",
        "0.300000",
        "open",
        "2026-11-30",
    )
    assert (w["low_rate_lo"], w["low_rate_hi"], w["mark"]) == ("0.066740", "0.652453", "0.200000")
    assert w["overdue"] == "false"
    assert {r["kind"] for r in got} <= {"window", "staff"}

    res = run("period", "close", "2026-10", "--as", "A1", code=1)
    assert "period 2026-10 is already closed (by A1" in res.stderr
    res = run("period", "close", "2026-11", code=1)
    assert "2026-11 has not ended" in res.stderr
    res = run("period", "close", "2026-09", "--as", "SUP1", code=1)
    assert "does not hold the admin role" in res.stderr

    show = run("period", "show", "2026-10").stdout
    assert "digest_ok" in show and "true" in show and "W02" in show
    doc = run.json("period", "show", "2026-10")
    assert doc["digest_ok"] is True and doc["cases"] == 2 and doc["amendments"] == 0
    assert len(doc["figures_sha256"]) == 64
    assert run("period", "amendments", "2026-10").stdout.startswith("0 amendment(s)")
    assert run("ledger", "verify", "--strict").stdout.startswith("ok")


def test_people_work_a_case_and_the_next_close_checks_it(
    run: Cli, clock: FrozenClock, tmp_path: Path
) -> None:
    run("period", "close", "2026-10", "--as", "A1")
    clock.advance(3600)
    res = run("cases", "plan", "1", "--text", PLAN, "--due", "2026-11-25", "--as", "HD1")
    assert "case 1: planned; due by the end of 2026-11-25" in res.stdout
    doc = run.json("cases", "note", "1", "--text", "Checklist posted at the window", "--as", "HD1")
    assert doc["status"] == "in_progress"
    res = run("cases", "close", "1", "--reason", "Not the head's to close", "--as", "HD1", code=1)
    assert "HD1 may not close case 1" in res.stderr
    res = run("cases", "plan", "2", "--text", PLAN, "--as", "HD3", code=1)
    assert "may not plan case 2" in res.stderr
    res = run("cases", "plan", "1", "--text", "short", "--as", "HD1", code=1)
    assert "text" in res.stderr
    res = run("cases", "plan", "1", "--text", PLAN, "--due", "soon", "--as", "HD1", code=1)
    assert "due" in res.stderr

    assert [
        r["case_id"] for r in rows(run("cases", "list", "--format", "csv", "--as", "HD1").stdout)
    ] == ["1"]
    assert [
        r["case_id"] for r in rows(run("cases", "list", "--format", "csv", "--as", "S1").stdout)
    ] == ["2"]
    assert rows(run("cases", "list", "--format", "csv", "--as", "HD3").stdout) == []
    res = run("cases", "show", "2", "--as", "HD3", code=1)
    assert "may not read case 2" in res.stderr
    show = run.json("cases", "show", "1", "--as", "SUP1")
    assert [h["kind"] for h in show["history"]] == [
        "rectification.opened",
        "rectification.planned",
        "rectification.noted",
    ]
    assert show["head_id"] == "HD1" and show["supervisor_id"] == "SUP1"
    assert show["allowed_next"] == ["plan", "note", "close"]

    # November: W01 and S1 at 1 low in 10 -> resolved at the close of November
    clock.set(DEC1)
    november = ratings_file(tmp_path / "nov.jsonl", 2026, 11, {"W01": (1, 9)})
    run("ingest", str(november))
    res = run("period", "close", "2026-11", "--as", "A1")
    assert "earlier cases checked: 2 resolved, 0 unresolved, 0 too few" in res.stdout
    got = rows(run("cases", "list", "--period", "2026-10", "--format", "csv").stdout)
    assert [(r["status"], r["checked_period"], r["checked_rate"]) for r in got] == [
        ("resolved", "2026-11", "0.100000"),
        ("resolved", "2026-11", "0.100000"),
    ]
    assert rows(run("cases", "list", "--status", "open", "--format", "csv").stdout) == []
    table = run("cases", "show", "1").stdout
    assert "rectification.checked" in table and "resolved" in table


def test_a_late_rating_cleared_into_a_closed_month_is_an_amendment(
    run: Cli, tmp_path: Path
) -> None:
    run("period", "close", "2026-10", "--as", "A1")
    late = ratings_file(tmp_path / "late.jsonl", 2026, 10, {"W03": (1, 0)})
    late.write_text(
        late.read_text().replace("CS-202610-1", "CS-LATE-1").replace("198.51.10.1", "203.0.113.9")
    )
    out = run("ingest", str(late)).stdout
    assert "period.closed" in out  # held by the gate
    run("staff", "add", "R1", "--role", "reviewer", "--unit", "U9", "--as", "A1")
    run.sign_up("R1", issued_by="A1")
    held = json.loads(run("review", "list", "--format", "json", "--as", "R1").stdout)
    [rid] = [h["rating_id"] for h in held]
    run(
        "review", "clear", str(rid), "--reason", "The service record shows it on time", "--as", "R1"
    )
    text = run("period", "amendments", "2026-10", "--format", "csv").stdout
    [a] = rows(text)
    assert (a["rating_id"], a["kind"], a["before"], a["after"], a["counted_change"]) == (
        str(rid),
        "clear",
        "held",
        "accepted",
        "1",
    )
    doc = run.json("period", "amendments", "2026-10")
    assert doc["changes"] == [
        {
            "kind": "window",
            "subject": "W03",
            "counted_then": 12,
            "counted_now": 13,
            "low_then": 1,
            "low_now": 2,
            "rate_then": 0.083333,
            "rate_now": pytest.approx(2 / 13, abs=1e-6),
        },
        {
            "kind": "staff",
            "subject": "S3",
            "counted_then": 12,
            "counted_now": 13,
            "low_then": 1,
            "low_now": 2,
            "rate_then": 0.083333,
            "rate_now": pytest.approx(2 / 13, abs=1e-6),
        },
    ]


def test_through_the_server_roles_are_checked_there(run: Cli, clock: FrozenClock) -> None:
    import bootstrap
    import cli
    from integrity.app import Settings
    from integrity.remote import CommandRunner

    app = bootstrap.open_app(Settings.resolve(home=run.home), clock=clock)
    try:
        runner = CommandRunner(cli.main, app)
        sup, admin, head = (app.people.get(p) for p in ("SUP1", "A1", "HD1"))
        res = runner.run(sup, ["period", "close", "2026-10"], {})
        assert res.exit_code == 1 and "does not hold the admin role" in res.stderr
        res = runner.run(admin, ["period", "close", "2026-10"], {})
        assert res.exit_code == 0 and "period 2026-10 closed by A1" in res.stdout
        res = runner.run(head, ["cases", "list", "--format", "csv"], {})
        assert [r["subject"] for r in rows(res.stdout)] == ["W01"]
        res = runner.run(head, ["cases", "plan", "1", "--text", PLAN], {})
        assert res.exit_code == 0, res.stderr
        res = runner.run(app.people.get("S1"), ["period", "show", "2026-10"], {})
        assert res.exit_code == 1 and "may not read staff performance" in res.stderr
        history = app.ledger.events_about("rectification:1")
        assert [e.actor for e in history] == ["cases", "HD1"]
    finally:
        app.close()
    clock.advance(timedelta(days=1).total_seconds())


def test_cases_past_their_due_date_escalate_once_to_the_hall_supervisor(
    run: Cli, clock: FrozenClock
) -> None:
    run("period", "close", "2026-10", "--as", "A1")
    res = run("cases", "escalate-overdue")
    assert "0 case(s) marked overdue; 0 escalated" in res.stdout
    clock.set(datetime(2026, 11, 30, 16, 0, tzinfo=UTC))  # the end of the due day
    res = run("cases", "escalate-overdue", "--as", "HD1", code=1)
    assert "HD1" in res.stderr and "supervisor" in res.stderr
    res = run("cases", "escalate-overdue", "--as", "S1", code=1)
    res = run("cases", "escalate-overdue")  # the operator
    assert "2 case(s) marked overdue; 2 escalated" in res.stdout
    assert "SUP1" in res.stdout
    assert rows(run("cases", "escalate-overdue", "--format", "csv", "--as", "SUP1").stdout) == []

    got = rows(run("cases", "list", "--format", "csv").stdout)
    assert [(r["case_id"], r["overdue"], r["escalated"], r["escalated_to"]) for r in got] == [
        ("1", "true", "true", "SUP1"),
        ("2", "true", "true", "SUP1"),
    ]
    assert [
        r["case_id"] for r in rows(run("cases", "list", "--overdue", "--format", "csv").stdout)
    ] == ["1", "2"]
    show = run.json("cases", "show", "1", "--as", "SUP1")
    assert show["overdue"] is True and show["escalated_to"] == "SUP1"
    assert show["overdue_at"] == show["escalated_at"] == "2026-12-01T00:00:00+08:00"
    assert [(h["kind"], h["actor"]) for h in show["history"][1:]] == [
        ("rectification.overdue", "operator"),
        ("rectification.escalated", "operator"),
    ]
    assert show["history"][2]["text"] == "escalated to SUP1"
    table = run("cases", "show", "2").stdout
    assert "rectification.escalated" in table and "escalated to SUP1" in table
    # escalated: the hall supervisor writes on it
    run("cases", "note", "2", "--text", "Talked to the staff member about it", "--as", "SUP1")
    assert run("ledger", "verify", "--strict").stdout.startswith("ok")


def test_escalate_overdue_through_the_server(run: Cli, clock: FrozenClock) -> None:
    import bootstrap
    import cli
    from integrity.app import Settings
    from integrity.remote import CommandRunner

    app = bootstrap.open_app(Settings.resolve(home=run.home), clock=clock)
    try:
        runner = CommandRunner(cli.main, app)
        runner.run(app.people.get("A1"), ["period", "close", "2026-10"], {})
        clock.set(datetime(2026, 12, 1, 2, 0, tzinfo=UTC))
        res = runner.run(app.people.get("HD1"), ["cases", "escalate-overdue"], {})
        assert res.exit_code == 1 and "HD1" in res.stderr
        res = runner.run(app.people.get("SUP2"), ["cases", "escalate-overdue"], {})
        assert res.exit_code == 0, res.stderr
        assert "2 case(s) marked overdue; 2 escalated" in res.stdout
        history = app.ledger.events_about("rectification:1")
        assert [(e.kind, e.actor) for e in history[1:]] == [
            ("rectification.overdue", "SUP2"),
            ("rectification.escalated", "SUP2"),
        ]
    finally:
        app.close()
