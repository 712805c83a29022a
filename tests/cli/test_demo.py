"""`integrity demo` works on a fresh machine: a short simulated month, end to end, and
leaves an instance every README journey can be walked on (people with tokens, a
registry with Chinese hall names, a month whose last ratings can still be appealed)."""

from __future__ import annotations

import csv
import io
import json
import re
import stat
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
    # the month's page and spreadsheet, written first thing, are where it says
    page = Path(re.findall(r"^  (\S+\.html)$", out, re.M)[0])
    book = Path(re.findall(r"^  (\S+\.xlsx)$", out, re.M)[0])
    assert page.parent == home and "东城政务服务中心" in page.read_text("utf-8")
    assert book.read_bytes()[:2] == b"PK"
    # people sign in with the tokens it wrote (0600, in a 0700 folder)
    tokens = home / "tokens"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o700
    for who in ("A1", "R1", "R2", "AU1", "H1-SUP", "H1-HEAD"):
        assert stat.S_IMODE((tokens / who).stat().st_mode) == 0o600, who

    def signed_in(who: str, *args: str) -> str:
        env = {"INTEGRITY_TOKEN_FILE": str(tokens / who), "INTEGRITY_HOME": str(home)}
        res = CliRunner().invoke(main, list(args), env=env)
        assert res.exit_code == 0, (who, args, res.output)
        return res.stdout

    assert "rating_id" in signed_in("R1", "review", "list")
    assert "H1" in signed_in("H1-SUP", "report", "--by", "staff", "--format", "csv")
    # the staff member it names may appeal the rating it names: admitted, not ineligible
    found = re.search(r"tokens/(\S+) \S+ appeal file (\d+) ", out)
    assert found, out
    staff, rating = found.groups()
    signed_in(
        staff,
        "appeal",
        "file",
        rating,
        "--ground",
        "abusive_or_unrelated",
        "--reason",
        "not about the service",
    )
    assert " filed " in signed_in("A1", "appeal", "list")
    # the follow-up loop was walked: the alerts' states agree with what the demo printed
    loop = re.search(
        r"Follow-up loop: (\d+) low-score alerts opened .*?; (\d+) answered within 24 hours, "
        r"(\d+) late, (\d+) rectified, replied to the rater and closed; (\d+) deadlines "
        r"missed, (\d+) alerts escalated",
        out,
        re.S,
    )
    assert loop, out
    opened, on_time, late, closed, _missed, escalated = map(int, loop.groups())
    assert opened > 0 and closed > 0 and escalated > 0 and on_time > late
    alerts = signed_in("A1", "alerts", "list", "--format", "json")
    listed = json.loads(alerts)
    assert len(listed) == opened
    assert sum(a["status"] == "closed" for a in listed) == closed
    assert sum(a["overdue"] for a in listed) > 0
    assert sum(a["escalated_to"] is not None for a in listed) == escalated
    # the latest month that ended within the demo's days is closed, its cases listed
    closed = re.search(
        r"Closed (\d{4}-\d{2}) \(integrity period close\).*?(\d+) rectification", out
    )
    assert closed, out
    month, cases = closed.group(1), int(closed.group(2))
    assert month in signed_in("A1", "period", "show", month)
    listed_cases = signed_in("A1", "cases", "list", "--period", month, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(listed_cases)))
    assert len(rows) == cases
    for row in rows:
        assert row["kind"] in {"window", "staff"} and row["period"] == month
        assert float(row["low_score_rate"]) > 0.2 and int(row["counted"]) >= 10
    # running it again replaces the instance instead of piling up
    res = CliRunner().invoke(main, ["demo", "--home", str(home), "--days", "2", "--seed", "4"])
    assert res.exit_code == 0, res.output
