"""``integrity detect`` and ``integrity review ...`` through click's CliRunner on a tmp SQLite instance.

One small simulated month (one hall, attacks on) is ingested through the real hook
once per module; each test works on a copy of that instance.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from factories import T0

from bootstrap import open_app
from cli import main
from integrity.app import Settings
from integrity.auth import Credentials
from integrity.people import People
from rules.ruleset import default_ruleset_text
from simulation import WorldConfig, simulate


def _invoke(home: Path, *args: str, actor: str | None = None) -> tuple[int, str, str]:
    """``integrity ARGS`` on ``home``, signed in as ``actor`` (their personal token)."""
    env = {"INTEGRITY_HOME": str(home)}
    if actor:
        env["INTEGRITY_TOKEN"] = json.loads((home / "tokens.json").read_text())[actor]
    res = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("detect_cli")
    home = base / "inst"
    world = simulate(WorldConfig(seed=4, halls=1, windows_per_hall=5, honest_ratings=3000, days=14))
    (base / "ratings.jsonl").write_text("\n".join(world.iter_jsonl()) + "\n", encoding="utf-8")
    world.venues_json(base / "venues.json")
    # the soft signals (pyod, fairness) are exercised in tests/integration; here they are
    # off, so each detect run does not pay pyod's import and JIT compilation
    rules = default_ruleset_text()
    for section in ("[detect.pyod]", "[detect.fairness]"):
        head, tail = rules.split(section, 1)
        rules = head + section + tail.replace("enabled = true", "enabled = false", 1)
    (base / "rules.toml").write_text(rules, encoding="utf-8")
    assert _invoke(home, "init", "--rules", str(base / "rules.toml"))[0] == 0
    assert _invoke(home, "venues", "load", str(base / "venues.json"))[0] == 0
    code, _, err = _invoke(home, "ingest", str(base / "ratings.jsonl"))
    assert code == 0, err
    with open_app(Settings.resolve(home=home, env={})) as app:
        People(app.ledger).upsert("admin1", roles=["admin"], at=T0)
        People(app.ledger).upsert("rev1", roles=["reviewer"], at=T0)
        People(app.ledger).upsert("staff1", roles=["staff"], at=T0)
        creds = app.get(Credentials)
        tokens = {"admin1": creds.issue(None, "admin1").token}  # bootstrap
        tokens |= {p: creds.issue("admin1", p).token for p in ("rev1", "staff1")}
    (home / "tokens.json").write_text(json.dumps(tokens))
    return home


@pytest.fixture
def home(built: Path, tmp_path: Path) -> Iterator[Path]:
    dst = tmp_path / "inst"
    shutil.copytree(built, dst)
    yield dst


def _export(home: Path) -> list[dict[str, str]]:
    code, out, _ = _invoke(home, "export", "ratings", "--format", "csv")
    assert code == 0
    return list(csv.DictReader(io.StringIO(out)))


def test_detect_prints_what_it_held_and_why_and_is_idempotent(home: Path) -> None:
    code, out, err = _invoke(home, "detect")
    assert code == 0, err
    assert "ratings analysed" in out and "held" in out
    assert "outlier." in out  # reasons table and findings name their reason codes
    first = _export(home)
    held = [r for r in first if "outlier." in r["reasons"]]
    assert held and all(r["status"] == "held" and r["counted"] == "false" for r in held)
    assert all(0.0 <= float(r["risk"]) <= 1.0 for r in first)
    assert any(float(r["risk"]) > 0 for r in first)

    code, out, _ = _invoke(home, "detect", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["held"] == 0 and doc["risk_updates"] == 0
    assert doc["up_to_date"] is not None and doc["ratings"] == 0  # nothing new: not read
    assert _export(home) == first
    code, out, _ = _invoke(home, "detect")
    assert code == 0 and "nothing changed since run" in out and "--full" in out
    code, out, _ = _invoke(home, "detect", "--full", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["held"] == 0 and doc["risk_updates"] == 0 and doc["ratings"] > 0
    assert doc["up_to_date"] is None
    assert _export(home) == first


def test_dry_run_holds_nothing(home: Path) -> None:
    code, out, _ = _invoke(home, "detect", "--dry-run", "--format", "json")
    assert code == 0 and json.loads(out)["dry_run"] is True
    assert not [r for r in _export(home) if "outlier." in r["reasons"]]


def test_detect_since_until_and_bad_dates(home: Path) -> None:
    code, out, _ = _invoke(
        home, "detect", "--since", "2026-10-08", "--until", "2026-10-15", "--format", "json"
    )
    assert code == 0
    assert json.loads(out)["ratings"] > 0
    code, _, err = _invoke(home, "detect", "--since", "yesterday")
    assert code == 1 and "since" in err


def test_review_list_show_clear_confirm(home: Path) -> None:
    assert _invoke(home, "detect")[0] == 0
    code, out, _ = _invoke(home, "review", "list", "--format", "json", actor="rev1")
    assert code == 0
    rows = json.loads(out)
    held = [r for r in rows if any(c.startswith("outlier.") for c in r["reasons"])]
    assert len(held) >= 2
    a, b = held[0]["rating_id"], held[1]["rating_id"]

    code, out, _ = _invoke(home, "review", "show", str(a), actor="rev1")
    assert code == 0 and "evidence:" in out and "threshold" in out

    code, out, _ = _invoke(
        home, "review", "clear", str(a), "--reason", "known regular customer", actor="rev1"
    )
    assert code == 0 and "cleared" in out
    code, out, _ = _invoke(
        home,
        "review",
        "confirm",
        str(b),
        "--reason",
        "same device farm",
        "--format",
        "json",
        actor="rev1",
    )
    assert code == 0 and json.loads(out)["status"] == "rejected"

    # cleared evidence does not hold it again
    assert _invoke(home, "detect")[0] == 0
    status = {int(r["rating_id"]): r["status"] for r in _export(home)}
    assert status[a] == "accepted" and status[b] == "rejected"
    code, out, err = _invoke(home, "ledger", "verify", "--strict")
    assert code == 0, out + err

    # nothing left to review on a cleared rating; a reason is required; the role is checked
    code, _, err = _invoke(
        home, "review", "clear", str(a), "--reason", "again, why not", actor="rev1"
    )
    assert code == 1 and "not held" in err
    c = held[2]["rating_id"] if len(held) > 2 else b
    code, _, err = _invoke(home, "review", "clear", str(c), "--reason", "ok", actor="rev1")
    assert code == 1 and "reason" in err
    code, _, err = _invoke(
        home, "review", "clear", str(c), "--reason", "looks fine to me", actor="staff1"
    )
    assert code == 1 and "reviewer" in err
    code, _, err = _invoke(home, "review", "list")
    assert code == 1 and "nobody is signed in" in err


def test_review_cases(home: Path) -> None:
    assert _invoke(home, "detect")[0] == 0
    code, out, _ = _invoke(home, "review", "list", "--cases", "--format", "json", actor="rev1")
    assert code == 0
    cases = json.loads(out)
    assert cases and all(c["subject"].startswith("case:window:") for c in cases)


def test_every_command_has_help() -> None:
    for args in (
        ["detect"],
        ["review"],
        ["review", "list"],
        ["review", "show"],
        ["review", "clear"],
        ["review", "confirm"],
        ["review", "case"],
        ["review", "escalate-overdue"],
    ):
        res = CliRunner().invoke(main, [*args, "--help"])
        assert res.exit_code == 0 and len(res.output) > 100
