"""`integrity audit ...` end to end on a fresh embedded instance, as a supervisor, an auditor
and an outside verifier meet it.

Each person signs in with a personal token: an invocation that says ``--as P`` (or, for
``pull`` and ``record``, ``--auditor P``) runs with P's token in ``INTEGRITY_TOKEN``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from audit_factories import rating_doc
from click.testing import CliRunner

from audit_sampling.estimates import COLUMNS
from bootstrap import open_app
from cli import main
from integrity.app import Settings
from integrity.auth import Credentials

SEED = "31415926535897932384"
#: The personal token of each registered person of the current test's instance.
TOKENS: dict[str, str] = {}


def _claimed(args: tuple[str, ...]) -> str | None:
    if "--as" in args:
        return args[args.index("--as") + 1]
    if args[:2] in (("audit", "pull"), ("audit", "record")) and "--auditor" in args:
        return args[args.index("--auditor") + 1]
    return None


def run(*args: str, signed_in: str | None = None) -> click.testing.Result:
    """``integrity ARGS``, signed in as ``signed_in`` or the person the arguments claim."""
    who = signed_in or _claimed(args)
    env = {"INTEGRITY_TOKEN": TOKENS[who]} if who in TOKENS else {}
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "inst"
    monkeypatch.setenv("INTEGRITY_HOME", str(h))
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_SECRET_FILE", "INTEGRITY_ACTOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    assert run("init").exit_code == 0
    start = datetime(2026, 10, 3, 1, 0, tzinfo=UTC)
    lines = []
    for w, n in {"H1-W01": 30, "H1-W02": 12, "H2-W01": 6}.items():
        for _ in range(n):
            lines.append(json.dumps(rating_doc(w, start)))
            start += timedelta(minutes=9)
    (tmp_path / "ratings.jsonl").write_text("\n".join(lines) + "\n")
    res = run("ingest", "ratings.jsonl")
    assert res.exit_code == 0, res.output
    with open_app(Settings.resolve(home=h)) as app:
        people = app.people
        now = datetime.now(UTC)
        people.upsert("boss", roles=["admin"], at=now)
        people.upsert("aud1", roles=["auditor"], at=now, name="A. Auditor")
        people.upsert("aud2", roles=["auditor"], at=now)
        creds = app.get(Credentials)
        TOKENS.clear()
        TOKENS["boss"] = creds.issue(None, "boss").token  # bootstrap: no admin can sign in
        for p in ("aud1", "aud2"):
            TOKENS[p] = creds.issue("boss", p).token
    return h


def drawn() -> None:
    res = run("audit", "frame", "--period", "2026-10", "--as", "boss")
    assert res.exit_code == 0, res.output
    res = run("audit", "draw", "1", "--seed", SEED, "--as", "boss")
    assert res.exit_code == 0, res.output


def test_the_whole_audit_from_the_command_line(home: Path, tmp_path: Path) -> None:
    res = run("audit", "frame", "--period", "2026-10", "--as", "boss")
    assert res.exit_code == 0, res.output
    assert "frame 1: 2026-10, 48 ratings in 3 windows" in res.output
    sha = re.search(r"sha256 ([0-9a-f]{64})", res.output).group(1)
    path = Path(re.search(r"file (\S+)", res.output).group(1))
    assert path.is_file() and sha[:12] in path.name
    assert "checkpoint integrity-ledger/v1 size=" in res.output

    res = run("audit", "draw", sha[:12], "--seed", SEED, "--seed-note", "dice", "--as", "boss")
    assert res.exit_code == 0, res.output
    assert "sample 1 drawn" in res.output and "15 uniform item(s) in 3 window(s)" in res.output
    again = run("audit", "draw", "1", "--seed", SEED, "--as", "boss")
    assert "already drawn (same inputs, same sample)" in again.output
    assert again.output.splitlines()[1:] == res.output.splitlines()[1:]

    res = run(
        "audit",
        "batches",
        "1",
        "--size",
        "8",
        "--auditor",
        "aud1",
        "--auditor",
        "aud2",
        "--as",
        "boss",
        "--format",
        "csv",
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [(r["batch_id"], r["auditor_id"], r["items"]) for r in rows] == [
        ("1", "aud1", "8"),
        ("2", "aud2", "7"),
    ]

    res = run("audit", "pull", "1", "--auditor", "aud1", "--format", "csv", "-o", "b1.csv")
    assert res.exit_code == 0, res.output
    manifest = json.loads(Path("b1.csv.manifest.json").read_text())
    assert manifest["seed"] == SEED and manifest["frame_sha256"] == sha
    assert manifest["file"]["name"] == "b1.csv" and len(manifest["items"]) == 8
    assert "audit-device-" not in Path("b1.csv").read_text()
    res = run("audit", "pulls", "1", "--format", "json")
    assert [p["auditor"] for p in json.loads(res.stdout)] == ["aud1"]

    # a bad findings file: every bad line is named and nothing changes
    pulled = list(csv.DictReader(io.StringIO(Path("b1.csv").read_text())))
    ids = [int(r["rating_id"]) for r in pulled]
    Path("bad.csv").write_text(
        f"rating_id,code,note\n{ids[0]},genuine,\n{ids[1]},fabricated,\n{ids[2]},forged,x\n"
    )
    res = run("audit", "record", "1", "bad.csv", "--auditor", "aud1")
    assert res.exit_code == 1
    assert "line 3: note: a note is required for fabricated" in res.stderr
    assert "line 4: code: 'forged' is not one of" in res.stderr
    assert "nothing was recorded" in res.stderr
    assert json.loads(run("audit", "report", "--format", "json").stdout)["overall"]["audited"] == 0

    # the auditor fills in the pulled CSV itself: code and note columns added
    out = io.StringIO()
    w = csv.DictWriter(out, [*pulled[0].keys(), "code", "note"], lineterminator="\n")
    w.writeheader()
    for i, r in enumerate(pulled):
        code = {0: "fabricated", 1: "not_applicable", 2: "cannot_verify"}.get(i, "genuine")
        w.writerow({**r, "code": code, "note": "" if code == "genuine" else f"call-back: {code}"})
    Path("findings.csv").write_text(out.getvalue())
    res = run("audit", "record", "1", "findings.csv", "--auditor", "aud1")
    assert res.exit_code == 0, res.output + res.stderr
    assert f"voided: {ids[0]}" in res.output
    assert f"not applicable: {ids[1]} -> replacement" in res.output

    report = json.loads(run("report", "--by", "window", "--format", "json").stdout)
    assert sum(r["voided"] for r in report) == 1
    doc = json.loads(run("audit", "report", "--format", "json").stdout)
    assert doc["overall"]["deviations"] == 2 and doc["overall"]["voided"] == 1
    assert doc["method"].startswith("exact one-sided bounds")
    table = run("audit", "report")
    assert table.exit_code == 0 and "confidence 95%" in table.output
    csv_rows = list(csv.DictReader(io.StringIO(run("audit", "report", "--format", "csv").stdout)))
    assert [r["window_id"] for r in csv_rows][-1] == "(all)"

    shown = run("audit", "show", "--format", "json")
    assert {r["window_id"] for r in json.loads(shown.stdout)} == {"H1-W01", "H1-W02", "H2-W01"}
    items = json.loads(run("audit", "show", "--items", "--format", "json").stdout)
    assert len(items) == 16  # 15 drawn + 1 replacement
    res = run("audit", "expand", "--dry-run", "--as", "boss")
    assert res.exit_code == 0 and "dry run" in res.output
    # every audit step sealed what it changed: the untouched ledger verifies clean
    res = run("ledger", "verify", "--strict")
    assert res.exit_code == 0, res.output + res.stderr

    # publish, then anyone verifies; tampering is caught and located
    res = run("audit", "publish", "1", "-o", "bundle")
    assert res.exit_code == 0, res.output
    shutil.copy("b1.csv", "bundle/b1.csv")
    shutil.copy("b1.csv.manifest.json", "bundle/b1.csv.manifest.json")
    res = run("audit", "verify", "bundle")
    assert res.exit_code == 0, res.output
    assert "ok: 16 item(s) in 3 window(s) follow from the seed and frame" in res.output
    assert "b1.csv.manifest.json: export 'b1.csv' matches" in res.output
    res = run("audit", "verify", "bundle", "--ledger")
    assert res.exit_code == 0 and "yields exactly the frame's population" in res.output
    assert run("audit", "publish", "1", "-o", "one.json", "--single").exit_code == 0
    assert run("audit", "verify", "one.json").exit_code == 0

    sample = json.loads(Path("bundle/sample.json").read_text())
    sample["seed"] = "31415926535897932385"
    Path("bundle/sample.json").write_text(json.dumps(sample))
    res = run("audit", "verify", "bundle")
    assert res.exit_code == 1
    assert "TAMPERED:" in res.output and "was the seed changed?" in res.output
    assert "b1.csv.manifest.json: seed is" in res.output
    assert "verification failed" in res.stderr


def test_refusals_are_one_line_errors(home: Path) -> None:
    drawn()
    res = run("audit", "draw", "1", "--seed", "12345678901234567890", "--as", "boss")
    assert res.exit_code == 1 and "already has sample 1" in res.stderr
    res = run("audit", "frame", "--period", "2026-10", "--as", "aud1")
    assert res.exit_code == 1 and "does not hold the admin role" in res.stderr
    run("audit", "batches", "1", "--auditor", "aud1", "--as", "boss")
    res = run("audit", "pull", "1", "--auditor", "aud2", "-o", "x.csv")
    assert res.exit_code == 1 and "not assigned to 'aud2'" in res.stderr
    assert not Path("x.csv").exists()
    res = run("audit", "pull", "1", "--auditor", "aud1", "--format", "xml", "-o", "x.csv")
    assert res.exit_code == 2  # bad usage
    res = run("audit", "report", "7")
    assert res.exit_code == 1 and "no audit sample 7" in res.stderr
    res = run("audit", "verify", "nowhere")
    assert res.exit_code == 2


def test_seeds_and_tokens(home: Path) -> None:
    assert run("audit", "frame", "--period", "2026-10", "--as", "boss").exit_code == 0
    res = run("audit", "draw", "1", "--seed", "42", "--as", "boss")
    assert res.exit_code == 1 and "at least 20 characters" in res.stderr
    res = run("audit", "token", "--auditor", "aud1", "--as", "boss")
    assert res.exit_code == 0 and len(res.output.strip()) >= 40
    res = run("audit", "auditors", "--format", "json", "--as", "boss")
    assert [a["person_id"] for a in json.loads(res.stdout)] == ["aud1", "aud2"]
    res = run("audit", "frames", "--format", "csv")
    assert res.stdout.splitlines()[1].startswith("1,2026-10,48,3,")
    res = run("ledger", "verify", "--strict")
    assert res.exit_code == 0, res.output + res.stderr


def test_auditors_need_a_supervisor_like_the_other_supervisor_commands(home: Path) -> None:
    res = run("audit", "auditors")
    assert res.exit_code == 1 and "nobody is signed in" in res.stderr
    res = run("audit", "auditors", "--as", "aud1")
    assert res.exit_code == 1 and "does not hold the admin role" in res.stderr
    res = run("audit", "auditors", "--as", "boss", "--format", "csv")
    assert res.exit_code == 0
    assert [r["person_id"] for r in csv.DictReader(io.StringIO(res.stdout))] == ["aud1", "aud2"]


def test_the_report_table_explains_its_columns_and_the_help_names_the_token(home: Path) -> None:
    drawn()
    table = run("audit", "report")
    assert table.exit_code == 0, table.output
    legend = {line.split()[0]: line for line in table.stdout.splitlines() if line.startswith("  ")}
    assert list(legend) == list(COLUMNS)  # every column, in order, with a sentence
    assert "hypergeometric" in legend["upper"] and "Clopper-Pearson" in legend["cp_upper"]
    machine = run("audit", "report", "--format", "csv").stdout
    assert "Clopper-Pearson" not in machine  # the legend is for people reading the table
    res = run("audit", "--help")
    assert res.exit_code == 0 and "integrity audit token --auditor" in res.output
    res = run("audit", "token", "--help")
    assert "Authorization: Bearer" in res.output
