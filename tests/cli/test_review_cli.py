"""``integrity review case / list --cases / list --overdue / escalate-overdue / show --format
json`` through click's CliRunner, with the clock frozen and the rule set's ``[review]``
and ``[calendar]`` set (2 working days; Monday 19 October 2026 a holiday).

One small simulated fortnight goes through ``integrity ingest`` and ``integrity detect``
once per module; each test works on a copy of that instance.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cli_runner import Cli
from factories import T0

from integrity.clock import FrozenClock
from rules.ruleset import default_ruleset_text
from simulation import WorldConfig, simulate

SHANGHAI = ZoneInfo("Asia/Shanghai")
REASON = "pressure at the counter, confirmed on camera"


def _freeze(mp: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock(T0)  # Thursday 15 October 2026, 10:00 in Shanghai
    mp.setattr("bootstrap.SystemClock", lambda: frozen)
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_ACTOR", "INTEGRITY_SECRET_FILE"):
        mp.delenv(var, raising=False)
    return frozen


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    mp = pytest.MonkeyPatch()
    _freeze(mp)
    base = tmp_path_factory.mktemp("review-cli")
    world = simulate(WorldConfig(seed=4, halls=1, windows_per_hall=5, honest_ratings=1500, days=10))
    (base / "ratings.jsonl").write_text("\n".join(world.iter_jsonl()) + "\n", encoding="utf-8")
    world.venues_json(base / "venues.json")
    rules = default_ruleset_text()
    for section in ("[detect.pyod]", "[detect.fairness]"):
        head, tail = rules.split(section, 1)
        rules = head + section + tail.replace("enabled = true", "enabled = false", 1)
    rules = rules.replace("deadline_working_days = 5", "deadline_working_days = 2").replace(
        "[calendar]\nholidays = []", '[calendar]\nholidays = ["2026-10-19"]'
    )
    (base / "rules.toml").write_text(rules, encoding="utf-8")
    run = Cli(base / "home")
    run("init", "--rules", str(base / "rules.toml"))
    run("venues", "load", str(base / "venues.json"))
    run("ingest", str(base / "ratings.jsonl"))
    run("staff", "add", "ADM", "--role", "admin", "--unit", "HQ")
    run.sign_up("ADM")  # bootstrap: the operator, while no admin can sign in
    for person, role in (("REV", "reviewer"), ("CLERK", "staff")):
        run("staff", "add", person, "--role", role, "--unit", "U1", "--as", "ADM")
        run.sign_up(person, issued_by="ADM")
    run("detect")
    yield base / "home"
    mp.undo()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    return _freeze(monkeypatch)


@pytest.fixture
def run(template: Path, tmp_path: Path, clock: FrozenClock) -> Cli:
    home = tmp_path / "home"
    shutil.copytree(template, home)
    return Cli(home)


def test_review_show_json_serialises_the_events(run: Cli) -> None:
    """It used to fail: ``Object of type Event is not JSON serializable``."""
    held = run.json("review", "list", "--as", "REV")
    doc = run.json("review", "show", str(held[0]["rating_id"]), "--as", "REV")
    assert doc["rating"]["rating_id"] == held[0]["rating_id"]
    assert doc["rating"]["status"] == "held"
    kinds = [e["kind"] for e in doc["events"]]
    assert kinds[0] == "decision" and "hold" in kinds
    hold = next(e for e in doc["events"] if e["kind"] == "hold")
    assert hold["status"] == "held" and isinstance(hold["evidence"], dict)
    assert hold["evidence"]["explanation"] and doc["flags"]
    assert doc["due"] == "2026-10-20"  # 2 working days from Thursday; Monday a holiday


def test_review_list_shows_the_deadline_from_the_rule_set(run: Cli) -> None:
    rows = run.json("review", "list", "--as", "REV")
    assert rows and {r["due"] for r in rows} == {"2026-10-20"}
    risks = [r["risk"] for r in rows]
    assert risks == sorted(risks, reverse=True)  # riskiest first, as before
    header = run("review", "list", "--as", "REV").stdout.splitlines()[0].split()
    assert "due" in header and header[-1] == "explanation"


def test_a_case_is_previewed_then_decided_as_a_unit(run: Cli) -> None:
    [case] = run.json("review", "list", "--cases", "--as", "REV")
    subject, n = case["subject"], case["held"]
    assert (case["open"], case["cleared"], case["confirmed"]) == (n, 0, 0)
    assert case["due"] == "2026-10-20" and case["opened_at"].startswith("2026-10-15")
    out = run("review", "case", subject, "--as", "REV").stdout
    assert f"{n} rating(s) held" in out and "nothing written" in out

    doc = run.json("review", "case", subject, "--channel", "kiosk", "--as", "REV")
    kiosk = doc["selected"]
    assert 0 < kiosk < n and doc["event_id"] is None

    out = run(
        "review", "case", subject, "--confirm", "--channel", "kiosk", "--to", "2026-10-15",
        "--reason", REASON, "--as", "REV",
    ).stdout  # fmt: skip
    assert f"{kiosk} rating(s) confirmed" in out and f"{n - kiosk} still held" in out
    [case] = run.json("review", "list", "--cases", "--as", "REV")
    assert (case["confirmed"], case["open"]) == (kiosk, n - kiosk)

    doc = run.json(
        "review", "case", case["window_id"], "--clear", "--reason", REASON, "--as", "REV"
    )
    assert len(doc["changed"]) == n - kiosk and doc["still_held"] == 0
    assert doc["selector"] == {
        "channels": [],
        "staff_ids": [],
        "submitted_from": None,
        "submitted_to": None,
    }
    table = run("review", "list", "--cases", "--format", "csv", "--as", "REV").stdout
    [row] = list(csv.DictReader(io.StringIO(table)))
    assert (row["held"], row["cleared"], row["confirmed"], row["open"], row["due"]) == (
        str(n), str(n - kiosk), str(kiosk), "0", "",
    )  # fmt: skip
    assert list(row) == ["subject", "window_id", "held", "cleared", "confirmed", "open",
                         "opened_at", "due", "overdue"]  # fmt: skip


def test_case_command_errors(run: Cli) -> None:
    [case] = run.json("review", "list", "--cases", "--as", "REV")
    subject = case["subject"]
    assert "--reason" in run("review", "case", subject, "--clear", "--as", "REV", code=2).stderr
    err = run("review", "case", subject, "--clear", "--reason", REASON, "--as", "CLERK", code=1)
    assert "reviewer" in err.stderr
    err = run("review", "case", subject, "--from", "yesterday", "--as", "REV", code=1)
    assert "from" in err.stderr
    err = run("review", "case", "case:window:NOPE", "--as", "REV", code=1)
    assert "no window case" in err.stderr
    run("review", "case", subject, "--channel", "fax", "--as", "REV", code=2)
    run("review", "list", "--cases", "--overdue", "--as", "REV", code=2)


def test_overdue_listed_oldest_first_and_escalated_once(run: Cli, clock: FrozenClock) -> None:
    assert run.json("review", "list", "--overdue", "--as", "ADM") == []
    assert "escalated 0 overdue" in run("review", "escalate-overdue", "--as", "REV").stdout
    # Wednesday 21st: everything held on Thursday 15th was due by the end of Tuesday 20th
    clock.set(datetime(2026, 10, 21, 9, 0, tzinfo=SHANGHAI))
    items = run.json("review", "list", "--overdue", "--as", "ADM")
    assert items and items[0]["item"].startswith("case:window:")
    assert [x["due_at"] for x in items] == sorted(x["due_at"] for x in items)
    assert all(x["due"] == "2026-10-20" and x["escalated_at"] is None for x in items)
    header = run("review", "list", "--overdue", "--as", "ADM").stdout.splitlines()[0].split()
    assert header == ["item", "window_id", "ratings", "held_since", "due", "escalated_at"]

    run("review", "escalate-overdue", "--as", "CLERK", code=1)
    doc = run.json("review", "escalate-overdue", "--as", "ADM")
    assert [x["item"] for x in doc["escalated"]] == [x["item"] for x in items]
    assert all(x["to"] == ["ADM"] for x in doc["escalated"])
    out = run("review", "escalate-overdue", "--as", "REV").stdout
    assert f"escalated 0 overdue item(s) to the admins; {len(items)} already" in out
    assert all(x["escalated_at"] for x in run.json("review", "list", "--overdue", "--as", "ADM"))


def test_every_review_command_has_help() -> None:
    for args in (["review", "case"], ["review", "escalate-overdue"], ["review", "list"]):
        res = Cli(Path("unused"))(*args, "--help")
        assert len(res.output) > 100
