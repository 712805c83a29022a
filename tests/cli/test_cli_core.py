"""The command line as a user meets it: the reference's commands end to end on a fresh instance."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli import main

ROOT = Path(__file__).resolve().parents[2]


def rating(
    ticket: str,
    window: str,
    score: int,
    *,
    device: str,
    ip: str,
    at: str,
    served: str | None = None,
    staff: str | None = None,
) -> dict:
    r = {
        "ticket_id": ticket,
        "window_id": window,
        "scores": {
            d: score for d in ("attitude", "efficiency", "compliance", "environment", "overall")
        },
        "ip": ip,
        "device_id": device,
        "submitted_at": at,
    }
    if served:
        r["served_at"] = served
    if staff:
        r["staff_id"] = staff
    return r


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "inst"
    monkeypatch.setenv("INTEGRITY_HOME", str(h))
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_SECRET_FILE", "INTEGRITY_ACTOR"):
        monkeypatch.delenv(var, raising=False)
    res = CliRunner().invoke(main, ["init"])
    assert res.exit_code == 0, res.output
    return h


def run(*args: str, input: str | None = None) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), input=input)


def _commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        out.append(((*prefix, name), cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, (*prefix, name)))
    return out


@pytest.mark.parametrize("path", [p for p, _ in _commands(main)], ids=lambda p: " ".join(p))
def test_every_command_has_help_text(path: tuple[str, ...]) -> None:
    res = run(*path, "--help")
    assert res.exit_code == 0, res.output
    cmd = dict(_commands(main))[path]
    assert (cmd.help or "").strip(), f"`integrity {' '.join(path)}` has no help text"


def test_every_top_level_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in main.commands if f"integrity {name}" not in readme]
    assert not missing, f"README does not mention: {missing}"


def test_ingest_report_export_round_trip(home: Path, tmp_path: Path) -> None:
    lines = [
        rating(
            "T1",
            "W1",
            5,
            device="d1",
            ip="198.51.100.1",
            at="2026-10-01T09:00:00+08:00",
            staff="S1",
        ),
        rating(
            "T2",
            "W1",
            1,
            device="d2",
            ip="198.51.100.2",
            at="2026-10-01T09:05:00+08:00",
            staff="S1",
        ),
        rating(
            "T2",
            "W1",
            4,
            device="d2",
            ip="198.51.100.2",
            at="2026-10-01T09:06:00+08:00",
            staff="S1",
        ),
        rating("T3", "W2", 4, device="d3", ip="2001:db8::3", at="2026-10-02T10:00:00+08:00"),
    ]
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    res = run("ingest", str(f), "--format", "json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["written"] == 4
    assert summary["statuses"] == {"accepted": 3, "rejected": 1}
    assert summary["reasons"] == {"duplicate_ticket": 1}

    res = run("export", "ratings", "--format", "csv")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.output)))
    assert [r["ticket_id"] for r in rows] == ["T1", "T2", "T2", "T3"]
    assert {"rating_id", "ticket_id", "status", "counted", "reasons", "risk"} <= set(rows[0])
    assert [r["counted"] for r in rows] == ["true", "true", "false", "true"]
    assert rows[2]["reasons"] == "duplicate_ticket"
    assert all(0.0 <= float(r["risk"]) <= 1.0 for r in rows)

    res = run("report", "--by", "window", "--period", "2026-10", "--format", "csv")
    assert res.exit_code == 0, res.output
    rep = {r["window_id"]: r for r in csv.DictReader(io.StringIO(res.output))}
    assert rep["W1"]["counted"] == "2"
    assert float(rep["W1"]["score"]) == pytest.approx(3.0)
    assert float(rep["W1"]["low_score_rate"]) == pytest.approx(0.5)
    assert rep["W1"]["score"].split(".")[1].__len__() >= 4  # machine formats keep >= 4 decimals
    assert rep["W2"]["counted"] == "1"

    res = run("report", "--by", "window", "--period", "2026-11", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.output) == []
    res = run("ledger", "verify", "--strict")
    assert res.exit_code == 0, res.output


def test_group_with_no_counted_rating_still_appears(home: Path, tmp_path: Path) -> None:
    lines = [
        rating("A1", "W9", 5, device="dx", ip="198.51.100.9", at="2026-10-03T09:00:00+08:00"),
        rating("A2", "W9", 5, device="dx", ip="198.51.100.9", at="2026-10-03T09:01:00+08:00"),
        rating("A3", "W9", 5, device="dx", ip="198.51.100.9", at="2026-10-03T09:02:00+08:00"),
    ]
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines))
    assert run("ingest", str(f)).exit_code == 0
    # the first two count; voiding is not needed: the third is rejected by device_window.day
    res = run("report", "--by", "staff", "--format", "json")
    assert res.exit_code == 0
    (row,) = json.loads(res.output)
    assert row["staff_id"] is None and row["ratings"] == 3 and row["counted"] == 2


def test_bad_lines_exit_1_with_field_errors_and_write_nothing_for_them(
    home: Path, tmp_path: Path
) -> None:
    good = rating("G1", "W1", 5, device="d1", ip="198.51.100.1", at="2026-10-01T09:00:00+08:00")
    bad = dict(good, ticket_id="G2", scores={"attitude": 9}, ip="999.1.1.1")
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n{not json\n")
    res = run("ingest", str(f))
    assert res.exit_code == 1
    assert "line 2:" in res.stderr and "scores.attitude" in res.stderr and "ip:" in res.stderr
    assert "line 3:" in res.stderr and "not valid JSON" in res.stderr
    rows = list(csv.DictReader(io.StringIO(run("export", "ratings").output)))
    assert [r["ticket_id"] for r in rows] == ["G1"]


def test_stdin_ingest(home: Path) -> None:
    r = rating("S1", "W1", 4, device="d1", ip="198.51.100.1", at="2026-10-01T09:00:00+08:00")
    res = run("ingest", "-", "--format", "json", input=json.dumps(r) + "\n")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["written"] == 1


def test_usage_errors_exit_2(home: Path) -> None:
    assert run("report", "--by", "planet").exit_code == 2
    assert run("ingest").exit_code == 2
    assert run("no-such-command").exit_code == 2


def test_handled_errors_exit_1_with_one_line(home: Path) -> None:
    res = run("report", "--period", "2026-13")
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and "period" in res.stderr


def test_uninitialised_instance_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRITY_HOME", str(tmp_path / "nothing"))
    res = run("report")
    assert res.exit_code == 1
    assert "integrity init" in res.stderr


def test_venues_load_and_ledger_checkpoint_verify(home: Path, tmp_path: Path) -> None:
    venues = {
        "venues": [
            {
                "venue_id": "H1",
                "networks": ["198.51.100.7/32", "2001:db8:1::/64"],
                "kiosk_devices": [{"window_id": "W1", "device_id": "pad-1"}],
            }
        ]
    }
    vf = tmp_path / "v.json"
    vf.write_text(json.dumps(venues))
    res = run("venues", "load", str(vf))
    assert res.exit_code == 0, res.output
    assert "1 venues" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"venues": [{"venue_id": "H2", "networks": ["10.0.0.0/8"]}]}))
    res = run("venues", "load", str(bad))
    assert res.exit_code == 1 and "venues[0].networks[0]" in res.stderr

    # 30 citizens through the hall's Wi-Fi address in ten minutes: the venue limit applies,
    # not the ordinary per-address one (20 per 10 minutes, hold).
    lines = [
        rating(
            f"K{i}",
            f"W{i % 3}",
            5,
            device=f"phone-{i}",
            ip="198.51.100.7",
            at=f"2026-10-01T09:{i // 3:02d}:{i % 3 * 10:02d}+08:00",
        )
        for i in range(30)
    ]
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines))
    res = run("ingest", str(f), "--format", "json")
    assert json.loads(res.output)["statuses"] == {"accepted": 30}

    res = run("ledger", "checkpoint")
    assert res.exit_code == 0
    checkpoint = res.output.strip()
    assert checkpoint.startswith("integrity-ledger/v1 size=")
    more = rating("Z1", "W1", 3, device="late", ip="203.0.113.5", at="2026-10-05T09:00:00+08:00")
    f.write_text(json.dumps(more))
    assert run("ingest", str(f)).exit_code == 0
    res = run("ledger", "verify", "--checkpoint", checkpoint)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("ok:")
    res = run("ledger", "prove", "--from", checkpoint.split("size=")[1].split()[0])
    assert res.exit_code == 0 and json.loads(res.output)["proof"]
    res = run("ledger", "verify", "--checkpoint", "integrity-ledger/v1 size=1 root=" + "0" * 64)
    assert res.exit_code == 1 and "TAMPERED" in res.output
