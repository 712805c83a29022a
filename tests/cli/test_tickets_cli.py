"""`integrity tickets load / settle` and `integrity receipt` as an operator runs them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bootstrap import open_app
from cli import main
from integrity.app import Settings
from integrity.clock import FrozenClock
from integrity.receipts import ReceiptService
from rules.ruleset import default_ruleset_text
from tests.factories import T0, rating

ON = default_ruleset_text().replace("require_known_ticket = false", "require_known_ticket = true")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock(T0)
    monkeypatch.setattr("bootstrap.SystemClock", lambda: frozen)
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_ACTOR", "INTEGRITY_SECRET_FILE"):
        monkeypatch.delenv(var, raising=False)
    return frozen


@pytest.fixture
def home(tmp_path: Path, clock: FrozenClock) -> Path:
    h = tmp_path / "inst"
    (tmp_path / "rules.toml").write_text(ON)
    run(h, "init", "--rules", str(tmp_path / "rules.toml"))
    return h


def run(home: Path, *args: str, code: int = 0) -> Result:
    res = CliRunner().invoke(main, [*args, "--home", str(home)])
    assert res.exit_code == code, (args, res.stdout, res.stderr, res.exception)
    return res


def ingest(home: Path, tmp_path: Path, *docs: dict[str, Any]) -> None:
    path = tmp_path / "ratings.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    run(home, "ingest", str(path))


def receipt_of(home: Path, rating_id: int) -> tuple[str, dict[str, Any]]:
    """A rating's receipt code, and what looking it up says (through the library)."""
    with open_app(Settings.resolve(home=home, env={})) as app:
        svc = app.get(ReceiptService)
        code = svc.code(rating_id)
        return code, svc.look_up(code).as_dict()


def test_load_lifts_the_holds_then_settle_rejects_what_never_came(
    home: Path, tmp_path: Path, clock: FrozenClock
) -> None:
    when = (T0 - timedelta(minutes=30)).isoformat()
    ingest(
        home,
        tmp_path,
        rating(ticket_id="Q-1", submitted_at=when),
        rating(ticket_id="Q-2", submitted_at=when, window_id="W01"),
        rating(ticket_id="Q-3", submitted_at=when),
    )
    csv_file = tmp_path / "tickets.csv"
    csv_file.write_text(
        "ticket_id,window_id,staff_id,served_at\n"
        f"Q-1,W01,S01,{T0.isoformat()}\n"
        f"Q-2,W02,,{T0.isoformat()}\n"
    )
    out = run(home, "tickets", "load", str(csv_file), "--format", "json").stdout
    assert json.loads(out) == {
        "lines": 2,
        "recorded": 2,
        "known": 0,
        "refused": 0,
        "ratings": {"cleared": 1, "mismatched": 1, "still_held": 0, "rejected": 0},
    }
    again = run(home, "tickets", "load", str(csv_file)).stdout
    assert "2 lines: 0 recorded, 2 already known, 0 refused" in again
    states = [receipt_of(home, i)[1]["state"] for i in (1, 2, 3)]
    assert states == ["counts", "waiting", "waiting"]

    clock.advance(72 * 3600)
    settled = json.loads(run(home, "tickets", "settle", "--format", "json").stdout)
    assert settled == {"cleared": 0, "mismatched": 0, "still_held": 0, "rejected": 1}
    code, looked_up = receipt_of(home, 3)
    shown = json.loads(run(home, "receipt", code, "--format", "json").stdout)
    assert shown == looked_up
    assert shown["state"] == "not_counted" and "never" in shown["reasons"][0]
    table = run(home, "receipt", code.lower()).stdout
    assert "not_counted" in table and "Q-3" not in table


def test_refused_lines_are_listed_and_the_rest_written(home: Path, tmp_path: Path) -> None:
    jsonl = tmp_path / "feed.jsonl"
    good = {"ticket_id": "R-1", "window_id": "W01", "served_at": T0.isoformat()}
    jsonl.write_text(
        json.dumps(good)
        + "\n{broken\n"
        + json.dumps({**good, "window_id": "W09"})
        + "\n"
        + json.dumps({**good, "ticket_id": "R-2"})
        + "\n"
    )
    res = run(home, "tickets", "load", str(jsonl), code=1)
    assert "4 lines: 2 recorded, 0 already known, 2 refused" in res.stdout
    err = res.stderr.splitlines()
    assert err[0].startswith("line 2: ") and "not valid JSON" in err[0]
    assert err[1].startswith("line 3: ") and "window_id" in err[1]
    assert err[-1].startswith("error: 2 line(s) refused")


def test_an_unknown_receipt_is_one_line_of_error(home: Path) -> None:
    res = run(home, "receipt", "00000-00000-00000-00000", code=1)
    assert res.stderr.strip() == "error: no such receipt"


def test_a_bad_csv_header_writes_nothing(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("ticket,window_id,served_at\nA,W01,2026-10-15T02:00:00Z\n")
    res = run(home, "tickets", "load", str(path), code=1)
    assert "unknown column 'ticket'" in res.stderr
