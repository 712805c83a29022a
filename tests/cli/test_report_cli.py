"""`integrity report`, `integrity export ratings` and `integrity staff import` as a user
meets them on a fresh embedded instance (rule set zone: Asia/Shanghai)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli import main

DIMS = ("attitude", "efficiency", "compliance", "environment", "overall")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "inst"
    monkeypatch.setenv("INTEGRITY_HOME", str(h))
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_SECRET_FILE", "INTEGRITY_ACTOR"):
        monkeypatch.delenv(var, raising=False)
    assert CliRunner().invoke(main, ["init"]).exit_code == 0
    return h


def run(*args: str, input: str | None = None) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), input=input)


def ingest(tmp_path: Path, rows: list[tuple[str, str | None, int, str]]) -> None:
    """(window, staff, score, served_at) per rating, each from its own device and /24."""
    lines = []
    for i, (window, staff, score, served) in enumerate(rows):
        doc = {
            "ticket_id": f"T{i}",
            "window_id": window,
            "scores": dict.fromkeys(DIMS, score),
            "ip": f"198.51.{i}.7",
            "device_id": f"d{i}",
            "served_at": served,
            "submitted_at": served,
            "comment": f"comment {i}",
        }
        if staff:
            doc["staff_id"] = staff
        lines.append(json.dumps(doc))
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(lines) + "\n")
    res = run("ingest", str(f))
    assert res.exit_code == 0, res.output


OCT = "2026-10-15T10:00:00+08:00"
SEP = "2026-09-15T10:00:00+08:00"


def test_report_table_has_a_heading_labels_and_machine_formats_keep_decimals(
    home: Path, tmp_path: Path
) -> None:
    ingest(
        tmp_path,
        [("W1", "S1", 5, OCT), ("W1", None, 2, OCT), ("W2", "S2", 4, OCT), ("W1", "S1", 3, SEP)],
    )
    res = run("report", "--by", "staff", "--period", "2026-10")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("Performance by staff, 2026-10 (2026-10-01 00:00:00 +08:00 to")
    assert "compared with 2026-09" in lines[0]
    assert lines[1].split()[:3] == ["staff_id", "rank", "ratings"]
    assert lines[-1].startswith("(no staff named)")
    assert res.stderr == ""

    res = run("report", "--by", "staff", "--period", "2026-10", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["staff_id"] for r in rows] == ["S1", "S2", ""]  # empty, not the label
    s1 = rows[0]
    assert (s1["rank"], s1["prev_score"], s1["score_change"]) == ("1", "3.000000", "2.000000")
    assert s1["attitude"] == "5.000000" and s1["low_rate_hi"].startswith("0.")
    assert len(s1["low_rate_hi"].split(".")[1]) >= 4

    res = run("report", "--by", "staff", "--period", "2026-10", "--format", "json")
    data = json.loads(res.stdout)
    assert data[-1]["staff_id"] is None and data[0]["top_reasons"] == []


def test_report_periods_from_to_quarter_week(home: Path, tmp_path: Path) -> None:
    ingest(
        tmp_path,
        [
            ("W1", "S1", 5, "2026-10-01T00:10:00+08:00"),
            ("W1", "S1", 1, "2026-10-11T09:00:00+08:00"),
        ],
    )

    def counted(*args: str) -> int:
        res = run("report", *args, "--format", "json")
        assert res.exit_code == 0, res.output
        return sum(r["counted"] for r in json.loads(res.stdout))

    assert counted("--from", "2026-10-01", "--to", "2026-10-10") == 1
    assert counted("--from", "2026-10-01", "--to", "2026-10-11") == 2
    assert counted("--period", "2026-Q4") == 2
    assert counted("--period", "2026-W40") == 1  # 28 Sep .. 4 Oct
    assert counted("--period", "2026-W41") == 1  # 5 .. 11 Oct
    assert counted("--period", "2026-W42") == 0
    assert counted("--window", "W2") == 0


def test_an_empty_report_says_so_on_stderr_in_table_format(home: Path) -> None:
    res = run("report", "--period", "2026-11")
    assert res.exit_code == 0
    assert res.stderr.startswith("note: no ratings in 2026-11 (2026-11-01 00:00:00 +08:00")
    assert res.stderr.count("\n") == 1
    res = run("report", "--period", "2026-11", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.stdout) == [] and res.stderr == ""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--by", "hall"], "registry"),
        (["--hall", "H1"], "registry"),
        (["--period", "2026-10", "--from", "2026-10-01", "--to", "2026-10-02"], "not both"),
        (["--from", "2026-10-01"], "go together"),
        (["--period", "2026-W54"], "ISO week"),
        (["--from", "2026-10-05", "--to", "2026-10-01"], "before"),
    ],
)
def test_report_errors_are_one_line(home: Path, args: list[str], needle: str) -> None:
    res = run("report", *args)
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and needle in res.stderr


def test_report_by_hall_and_hall_filter_with_a_registry(home: Path, tmp_path: Path) -> None:
    ingest(tmp_path, [("W1", "S1", 5, OCT), ("W2", "S1", 3, OCT), ("W3", "S2", 4, OCT)])
    reg = tmp_path / "reg.json"
    reg.write_text(
        json.dumps(
            {
                "halls": [{"hall_id": "H1"}, {"hall_id": "H2"}],
                "windows": [
                    {"window_id": "W1", "hall_id": "H1"},
                    {"window_id": "W2", "hall_id": "H1"},
                ],
            }
        )
    )
    assert run("registry", "load", str(reg)).exit_code == 0
    res = run("report", "--by", "hall", "--format", "json")
    assert [(r["hall_id"], r["rank"], r["counted"]) for r in json.loads(res.stdout)] == [
        ("H1", 1, 2),
        (None, None, 1),
    ]
    assert "(not in the registry)" in run("report", "--by", "hall").stdout
    res = run("report", "--hall", "H1", "--format", "json")
    got = [(r["window_id"], r["hall_id"], r["hall_rank"]) for r in json.loads(res.stdout)]
    assert got == [("W1", "H1", 1), ("W2", "H1", 2)]


def test_export_columns_local_times_and_comments_for_the_operator_only(
    home: Path, tmp_path: Path
) -> None:
    ingest(tmp_path, [("W1", "S1", 5, "2026-10-15T02:00:00Z")])
    res = run("export", "ratings")
    assert res.exit_code == 0, res.output
    [row] = list(csv.DictReader(io.StringIO(res.stdout)))
    assert row["served_at"] == "2026-10-15T10:00:00+08:00"
    assert row["submitted_at"] == "2026-10-15T10:00:00+08:00"
    assert [row[d] for d in DIMS] == ["5"] * 5
    assert (row["window_id"], row["staff_id"], row["channel"]) == ("W1", "S1", "qr")
    assert "comment" not in row and "hall_id" not in row

    res = run("export", "ratings", "--with-comments", "--format", "json")
    assert json.loads(res.stdout)[0]["comment"] == "comment 0"

    # in direct-database mode the operator reads everything; who else may is the read
    # policy's, applied through the server (tests/integration/test_server_mode.py)


def sign_in_as_a1(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first admin's own token, for the rest of the test (``INTEGRITY_TOKEN``)."""
    res = run("staff", "token", "issue", "A1")  # the operator, while no admin can sign in
    assert res.exit_code == 0, res.output
    monkeypatch.setenv("INTEGRITY_TOKEN", res.stdout.strip().splitlines()[-1])


def test_staff_import_reads_standard_input(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("staff", "add", "A1", "--role", "admin").exit_code == 0
    sign_in_as_a1(monkeypatch)
    res = run("staff", "import", "-", "--as", "A1", input="person_id,roles\nS7,staff\n")
    assert res.exit_code == 0, res.output
    assert "1 added" in res.stdout
    jl = '{"person_id": "R7", "roles": ["reviewer"]}\n'
    res = run("staff", "import", "-", "--as", "A1", input=jl)
    assert res.exit_code == 0 and "1 added" in res.stdout
    res = run("staff", "import", "-", "--as", "A1", input="no header here\n")
    assert res.exit_code == 2 and "--input-format" in res.stderr


def test_staff_import_prints_one_problem_per_line_and_writes_nothing(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("staff", "add", "A1", "--role", "admin").exit_code == 0
    sign_in_as_a1(monkeypatch)
    bad = tmp_path / "roster.csv"  # the registry's roster given as a staff file
    bad.write_text(
        "person_id,window_id,from\n" + "".join(f"S{i},W1,2026-10-01\n" for i in range(70))
    )
    res = run("staff", "import", str(bad), "--as", "A1")
    assert res.exit_code == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 71
    assert lines[0].startswith("line 2: unknown field(s) from, window_id")
    assert lines[-1] == "error: invalid staff file: 70 problem(s); nothing was written"
    listed = json.loads(run("staff", "list", "--as", "A1", "--format", "json").stdout)
    assert [p["person_id"] for p in listed] == ["A1"]
