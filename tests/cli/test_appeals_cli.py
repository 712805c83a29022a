"""``integrity appeal ...`` and ``integrity staff ...`` end to end through ``cli.main``.

A tmp SQLite instance: init -> ingest ratings through the hook -> staff add/import ->
tokens for everyone -> appeal file -> assign -> decide ... -> report, show, list, stats,
verify. Each invocation that says ``--as P`` runs signed in with P's personal token
(``INTEGRITY_TOKEN``), so ``--as`` is the assertion it now is. Exit codes:
0 success, 1 a handled error with one line on stderr, 2 bad usage. The clock is frozen
(the composition root's SystemClock is replaced), so nothing depends on today's date.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from appeals_factories import HIGH, LOW
from cli_runner import Cli
from click.testing import CliRunner

from appeals import tables as at
from appeals.commands import appeal_group
from integrity.clock import FrozenClock
from integrity.commands import staff as staff_group

# `tests/cli` is a folder named like the root module: under a bare `pytest` (not
# `python -m pytest`) it would shadow `cli.py` as a namespace package.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import cli  # noqa: E402

T0 = datetime(2026, 10, 12, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
REASON = "The comment is abuse about parking, not about my service"
DECISION = "Ticket record and comment checked against the service log"
STAFF_CSV = """person_id,name,unit,roles,windows,active
S1,Li Na,U1,staff,W01,true
S2,Wang Wei,U1,staff,W02,true
R1,,U2,reviewer,,true
R2,,U3,reviewer,,true
R3,,U1,reviewer,,true
AU,,AUD,auditor,,true
"""


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock(T0)
    monkeypatch.setattr("bootstrap.SystemClock", lambda: frozen)
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_ACTOR", "INTEGRITY_SECRET_FILE"):
        monkeypatch.delenv(var, raising=False)
    return frozen


def ratings_file(path: Path) -> Path:
    """Ratings 1-3 high and 4 low for S1 at W01, 5 low for S2 at W02, 6 low for S1 (old)."""
    docs = []
    for n, (staff, window, scores, hours) in enumerate(
        [
            ("S1", "W01", HIGH, 5),
            ("S1", "W01", HIGH, 4),
            ("S1", "W01", HIGH, 3),
            ("S1", "W01", LOW, 2),
            ("S2", "W02", LOW, 2),
            ("S1", "W01", LOW, 24 * 9),
        ],
        start=1,
    ):
        docs.append(
            {
                "ticket_id": f"CLI-{n}",
                "window_id": window,
                "staff_id": staff,
                "scores": scores,
                "submitted_at": (T0 - timedelta(hours=hours)).isoformat(),
                "ip": f"198.51.100.{n}",
                "device_id": f"device-{n}",
            }
        )
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An instance with six ratings and the staff registry, built through the CLI."""
    mp = pytest.MonkeyPatch()
    frozen = FrozenClock(T0)
    mp.setattr("bootstrap.SystemClock", lambda: frozen)
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_ACTOR", "INTEGRITY_SECRET_FILE"):
        mp.delenv(var, raising=False)
    base = tmp_path_factory.mktemp("appeals-cli")
    run = Cli(base / "home")
    run("init")
    out = run("ingest", str(ratings_file(base / "ratings.jsonl"))).stdout
    assert "6 written" in out
    (base / "staff.csv").write_text(STAFF_CSV)
    # bootstrap: nobody signed in, no admin yet
    res = run("staff", "add", "A1", "--role", "admin", "--unit", "HQ")
    assert "added A1" in res.stdout
    tokens = {"A1": run("staff", "token", "issue", "A1").stdout.strip()}  # bootstrap too
    (base / "home" / "tokens.json").write_text(json.dumps(tokens))
    res = run("staff", "import", str(base / "staff.csv"), "--as", "A1")
    assert "6 added, 0 updated, 0 unchanged" in res.stdout
    for person in ("S1", "S2", "R1", "R2", "R3", "AU"):
        tokens[person] = run("staff", "token", "issue", person, "--as", "A1").stdout.strip()
    (base / "home" / "tokens.json").write_text(json.dumps(tokens))
    yield base / "home"
    mp.undo()


@pytest.fixture
def run(template: Path, tmp_path: Path, clock: FrozenClock) -> Cli:
    home = tmp_path / "home"
    shutil.copytree(template, home)
    return Cli(home)


def window_score(run: Cli, window: str) -> float:
    rows = run.json("report", "--by", "window")
    return next(r["score"] for r in rows if r["window_id"] == window)


def test_file_assign_decide_uphold_end_to_end(run: Cli, tmp_path: Path, clock: FrozenClock) -> None:
    before = window_score(run, "W01")
    proof = tmp_path / "screenshot.txt"
    proof.write_text("comment: 'the parking lot is dirty' - not my counter")

    doc = run.json(
        "appeal", "file", "4", "--ground", "abusive_or_unrelated", "--reason", REASON,
        "--evidence", str(proof), "--as", "S1",
    )  # fmt: skip
    assert (doc["appeal_id"], doc["state"], doc["due"]) == (1, "filed", "2026-11-02")
    assert len(doc["evidence"]) == 1

    res = run("appeal", "assign", "1", "--reviewer", "R1", "--as", "A1")
    assert "R1 reviewing" in res.stdout
    run("appeal", "assign", "1", signed_in="R2")  # self-assignment
    res = run("appeal", "assign", "1", "--reviewer", "R3", "--as", "A1", code=1)
    assert "appellant's unit" in res.stderr

    res = run(
        "appeal", "decide", "1", "--uphold", "--reason", DECISION, "--no-automated-evidence",
        "--as", "R1",
    )  # fmt: skip
    assert "uphold vote 1 of 2 recorded" in res.stdout
    assert window_score(run, "W01") == pytest.approx(before)  # still counting
    doc = run.json(
        "appeal", "decide", "1", "--uphold", "--reason", DECISION, "--used-automated-evidence",
        "--as", "R2",
    )  # fmt: skip
    assert doc["state"] == "upheld"
    assert doc["used_automated_evidence"] is True
    assert "rating 4 is voided" in doc["message"]
    assert window_score(run, "W01") > before

    export = run("export", "ratings").stdout.splitlines()
    assert any(line.startswith("4,") and ",voided,false,appeal.upheld," in line for line in export)

    show = run.json("appeal", "show", "1", "--as", "R1")
    kinds = [h["kind"] for h in show["history"]]
    assert kinds == [
        "appeal.filed",
        "appeal.assigned",
        "appeal.assigned",
        "appeal.uphold_vote",
        "appeal.upheld",
        "void",
    ]
    assert show["rating"]["status"] == "voided"
    assert show["allowed_next"] == ["reopen"]
    assert [v["reviewer"] for v in show["votes"]] == ["R1", "R2"]
    assert show["evidence"][0]["on_disk"] == "ok"
    assert "cluster" in show and "flags" in show
    assert show["findings"] == []  # nothing automated held rating 4

    mine = run("appeal", "show", "1", "--as", "S1").stdout
    assert "Appeal 1: upheld" in mine and "History (ledger)" in mine
    assert "Detector flags" not in mine  # the rating's context is for reviewers

    stats = run.json("appeal", "stats", "--as", "AU")
    assert (stats["upheld"], stats["uphold_rate"], stats["by_state"]["upheld"]) == (1, 1.0, 1)
    assert run("appeal", "verify", "--as", "AU").stdout.startswith("ok")
    assert run("ledger", "verify", "--strict").stdout.startswith("ok")
    rows = run.json("appeal", "evidence", "1", "--as", "S1")
    assert rows[0]["name"] == "screenshot.txt"


def test_reject_request_info_and_list_filters(run: Cli) -> None:
    run("appeal", "file", "4", "--ground", "system_error", "--reason", REASON, "--as", "S1")
    run("appeal", "file", "5", "--ground", "system_error", "--reason", REASON, "--as", "S2")
    run("appeal", "assign", "1", "--reviewer", "R1", "--as", "A1")
    res = run("appeal", "request-info", "1", "--message", "Please attach the ticket", "--as", "R1")
    assert "waiting for S1" in res.stdout
    run("appeal", "respond", "1", "--message", "The ticket is Q-17", "--as", "S1")
    res = run(
        "appeal", "decide", "1", "--reject", "--reason", DECISION, "--no-automated-evidence",
        "--as", "R1",
    )  # fmt: skip
    assert "rating 4 stands" in res.stdout

    everyone = run.json("appeal", "list", "--as", "R2")
    assert [(a["appeal_id"], a["state"]) for a in everyone] == [(1, "rejected"), (2, "filed")]
    own = run.json("appeal", "list", "--as", "S2")
    assert [a["appeal_id"] for a in own] == [2]
    assert (
        run.json("appeal", "list", "--state", "filed", "--unit", "U1", "--as", "R2")[0]["appellant"]
        == "S2"
    )
    assert run.json("appeal", "list", "--period", "2026-09", "--as", "R2") == []
    csv_out = run("appeal", "list", "--reviewer", "R1", "--format", "csv", "--as", "R2").stdout
    assert csv_out.splitlines()[0].startswith("appeal_id,rating_id,appellant")
    assert len(csv_out.splitlines()) == 2
    table = run("appeal", "stats", "--by", "appellant", "--as", "R2").stdout
    assert "S1" in table and "S2" in table


def test_ineligible_filings_are_recorded_and_exit_zero(run: Cli) -> None:
    res = run("appeal", "file", "1", "--ground", "system_error", "--reason", REASON, "--as", "S1")
    assert "recorded as ineligible: not_low_score" in res.stdout
    doc = run.json(
        "appeal", "file", "6", "--ground", "disagree_with_score", "--reason", REASON, "--as", "S1"
    )
    assert doc["state"] == "ineligible"
    assert {p["code"] for p in doc["ineligible"]} == {
        "filing_window_closed",
        "ground_not_admissible",
    }
    doc = run.json(
        "appeal", "file", "5", "--ground", "system_error", "--reason", REASON, "--as", "S1"
    )
    assert [p["code"] for p in doc["ineligible"]] == ["not_own_rating"]
    assert run.json("appeal", "stats", "--as", "R1")["by_state"]["ineligible"] == 3


def test_deadlines_escalate_overdue(run: Cli, clock: FrozenClock) -> None:
    run("appeal", "file", "4", "--ground", "system_error", "--reason", REASON, "--as", "S1")
    assert "0 overdue appeal(s) escalated" in run("appeal", "escalate-overdue", "--as", "A1").stdout
    assert run.json("appeal", "list", "--overdue", "--as", "A1") == []
    ahead = run.json(
        "appeal", "list", "--overdue", "--at", "2026-11-03T00:00:00+08:00", "--as", "A1"
    )
    assert [a["appeal_id"] for a in ahead] == [1]

    clock.advance(22 * 86400)
    assert [a["appeal_id"] for a in run.json("appeal", "list", "--overdue", "--as", "A1")] == [1]
    doc = run.json("appeal", "escalate-overdue", "--as", "R1")
    assert [a["state"] for a in doc["escalated"]] == ["escalated"]
    stats = run.json("appeal", "stats", "--as", "A1")
    assert (stats["overdue"], stats["escalations"], stats["upheld"]) == (1, 1, 0)


def test_verify_exits_1_when_an_appeal_row_disagrees_with_the_ledger(run: Cli) -> None:
    run("appeal", "file", "4", "--ground", "system_error", "--reason", REASON, "--as", "S1")
    engine = sa.create_engine(f"sqlite:///{run.home / 'ledger.db'}")
    with engine.begin() as conn:
        conn.execute(sa.update(at.appeals).values(state="rejected"))
    engine.dispose()
    res = run("appeal", "verify", "--as", "AU", code=1)
    assert "MISMATCH: appeal 1: stored state rejected, ledger replay gives filed" in res.stdout
    assert "appeal verification found 1 problem(s)" in res.stderr
    doc = json.loads(run("appeal", "verify", "--as", "AU", "--format", "json", code=1).stdout)
    assert doc["ok"] is False and len(doc["problems"]) == 1


def test_withdraw_and_reopen_with_new_evidence(run: Cli, tmp_path: Path) -> None:
    run("appeal", "file", "4", "--ground", "system_error", "--reason", REASON, "--as", "S1")
    run("appeal", "withdraw", "1", "--as", "S1")
    new = tmp_path / "receipt.txt"
    new.write_text("receipt Q-17")
    res = run(
        "appeal", "reopen", "1", "--reason", "Found the receipt after all", "--evidence", str(new),
        "--as", "S1",
    )  # fmt: skip
    assert "reopened (round 2)" in res.stdout
    run("appeal", "escalate", "1", "--reason", "Please look at this soon", "--as", "A1")
    assert run.json("appeal", "show", "1", "--as", "S1")["appeal"]["state"] == "escalated"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["appeal", "decide", "1", "--reason", DECISION, "--no-automated-evidence", "--as", "R1"], "--uphold or --reject"),
        (["appeal", "decide", "1", "--reject", "--reason", DECISION, "--as", "R1"], "--used-automated-evidence"),
        (["appeal", "file", "4", "--ground", "i_disagree", "--reason", REASON, "--as", "S1"], "i_disagree"),
        (["appeal", "file", "four", "--ground", "system_error", "--reason", REASON], "four"),
        (["appeal", "file", "4", "--ground", "system_error", "--as", "S1"], "--reason"),
        (["appeal", "reopen", "1", "--reason", REASON, "--as", "S1"], "--evidence"),
        (["appeal", "list", "--state", "pending"], "pending"),
        (["staff", "add", "X", "--role", "boss"], "boss"),
        (["staff", "import", "-", "--as", "A1"], "--input-format"),
    ],
)  # fmt: skip
def test_bad_usage_exits_2(run: Cli, args: list[str], needle: str) -> None:
    res = run(*args, code=2)
    assert needle in res.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["appeal", "file", "4", "--ground", "system_error", "--reason", REASON], "nobody is signed in"),
        (["appeal", "file", "4", "--ground", "system_error", "--reason", REASON, "--as", "ZZ"], "--as ZZ only checks who you are"),
        (["appeal", "file", "4", "--ground", "system_error", "--reason", REASON, "--as", "R1"], "staff role"),
        (["appeal", "file", "99", "--ground", "system_error", "--reason", REASON, "--as", "S1"], "no rating 99"),
        (["appeal", "file", "4", "--ground", "system_error", "--reason", "short", "--as", "S1"], "at least 10"),
        (["appeal", "show", "7", "--as", "R1"], "no appeal 7"),
        (["appeal", "stats", "--as", "S1"], "holds none of the roles"),
        (["appeal", "list", "--period", "2026-13", "--as", "R1"], "expected YYYY-MM"),
        (["appeal", "verify", "--as", "R1"], "holds none of the roles auditor, admin"),
        (["staff", "add", "S9"], "nobody is signed in"),
        (["staff", "add", "S9", "--as", "R1"], "admin role"),
        (["staff", "add", "S1", "--as", "A1"], "--update"),
        (["staff", "list", "--as", "S1"], "holds none of the roles"),
    ],
)  # fmt: skip
def test_handled_errors_exit_1_with_one_line(run: Cli, args: list[str], needle: str) -> None:
    res = run(*args, code=1)
    assert needle in res.stderr


def test_decisions_after_the_end_and_by_the_wrong_people_exit_1(run: Cli) -> None:
    run("appeal", "file", "4", "--ground", "system_error", "--reason", REASON, "--as", "S1")
    res = run("appeal", "assign", "1", "--as", "S1", code=1)
    assert "holds none of the roles admin, reviewer" in res.stderr
    run("appeal", "assign", "1", "--reviewer", "R1", "--as", "A1")
    decide = ["appeal", "decide", "1", "--reject", "--reason", DECISION, "--no-automated-evidence"]
    res = run(*decide, "--as", "R2", code=1)
    assert "not assigned" in res.stderr
    run(*decide, "--as", "R1")
    res = run(*decide, "--as", "R1", code=1)
    assert "already voted" in res.stderr or "is rejected" in res.stderr
    res = run("appeal", "withdraw", "1", "--as", "S1", code=1)
    assert "appeal 1 is rejected: cannot withdraw (allowed now: reopen)" in res.stderr


def test_staff_commands(run: Cli, tmp_path: Path) -> None:
    people = run.json("staff", "list", "--as", "R1")
    assert [p["person_id"] for p in people] == ["A1", "AU", "R1", "R2", "R3", "S1", "S2"]
    res = run(
        "staff", "add", "S9", "--unit", "U7", "--window", "W09", "--window", "W10",
        "--role", "staff", "--role", "reviewer", "--as", "A1", "--format", "json",
    )  # fmt: skip
    doc = json.loads(res.stdout)
    assert doc == [
        {
            "person_id": "S9",
            "name": "",
            "unit": "U7",
            "roles": ["reviewer", "staff"],
            "windows": ["W09", "W10"],
            "active": True,
        }
    ]
    run("staff", "add", "S9", "--unit", "U7", "--inactive", "--update", "--as", "A1")
    assert "S9" not in [p["person_id"] for p in run.json("staff", "list", "--as", "A1")]
    assert "S9" in [p["person_id"] for p in run.json("staff", "list", "--all", "--as", "A1")]
    assert [
        p["person_id"] for p in run.json("staff", "list", "--role", "reviewer", "--as", "A1")
    ] == [
        "R1",
        "R2",
        "R3",
    ]
    jl = tmp_path / "more.jsonl"
    jl.write_text('{"person_id": "R9", "roles": ["reviewer"], "unit": "U9"}\n')
    assert "1 added" in run("staff", "import", str(jl), "--as", "A1").stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("person_id,roles\nX1,boss\n")
    # a bad staff file lists one problem per line, then the error
    res = run.runner.invoke(
        cli.main, ["staff", "import", str(bad), "--as", "A1", "--home", str(run.home)]
    )
    assert res.exit_code == 1
    assert res.stderr.splitlines()[0].startswith("line 2.roles")
    assert res.stderr.splitlines()[-1].startswith("error: invalid staff file: 1 problem(s)")
    res = run("staff", "add", "A1", "--role", "staff", "--update", "--as", "A1", code=1)
    assert "no active admin" in res.stderr
    events = run("ledger", "verify").stdout
    assert events.startswith("ok")


def _commands(group: click.Group) -> list[tuple[str, click.Command]]:
    """Every command under ``group`` (subgroups' commands as ``sub name``)."""
    out: list[tuple[str, click.Command]] = []
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += [(f"{name} {n}", c) for n, c in _commands(cmd)]
        else:
            out.append((name, cmd))
    return out


@pytest.mark.parametrize(
    ("name", "command"),
    [(f"appeal {n}", c) for n, c in _commands(appeal_group)]
    + [(f"staff {n}", c) for n, c in _commands(staff_group)],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_command_has_help_format_and_actor(name: str, command: click.Command) -> None:
    assert command.help and len(command.help) > 20, name
    opts = {o for p in command.params for o in getattr(p, "opts", [])}
    assert {"--format", "--as", "--home", "--db"} <= opts, name
    fmt = next(p for p in command.params if getattr(p, "name", "") == "fmt")
    assert {"table", "json"} <= set(fmt.type.choices), name  # type: ignore[attr-defined]
    res = CliRunner().invoke(cli.main, [*name.split(), "--help"])
    assert res.exit_code == 0 and "Usage:" in res.stdout


def test_staff_help_explains_the_bootstrap() -> None:
    res = CliRunner().invoke(cli.main, ["staff", "--help"])
    assert "first admin" in res.stdout and "staff token issue A1" in res.stdout
    assert "--os-user" in res.stdout
