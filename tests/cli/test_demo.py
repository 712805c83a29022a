"""`integrity demo` works on a fresh machine: a short simulated month, end to end."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cli import main


def test_demo_runs_end_to_end_and_stops_attacks(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "--home", str(home), "--days", "7", "--seed", "3"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "Ingested through the hook" in out and "Detection over the ledger" in out
    assert "integrity-ledger/v1 size=" in out
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if (
            len(parts) >= 5
            and parts[1].isdigit()
            and parts[0] in {"honest", "flood", "replay_duplicate"}
        ):
            rows[parts[0]] = float(parts[4])
    assert rows["honest"] <= 0.02  # honest ratings mostly count
    assert rows["replay_duplicate"] == 1.0  # every replayed ticket is stopped
    # the instance it leaves behind verifies
    res = CliRunner().invoke(main, ["ledger", "verify", "--home", str(home)])
    assert res.exit_code == 0, res.output
    # running it again replaces the instance instead of piling up
    res = CliRunner().invoke(main, ["demo", "--home", str(home), "--days", "2", "--seed", "4"])
    assert res.exit_code == 0, res.output
