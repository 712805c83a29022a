"""`integrity report page|book` and `integrity publish [verify]` as the operator meets
them on a fresh embedded instance; `integrity report` keeps working as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli import main

DIMS = ("attitude", "efficiency", "compliance", "environment", "overall")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "inst"
    monkeypatch.setenv("INTEGRITY_HOME", str(h))
    for var in ("INTEGRITY_DB", "INTEGRITY_REDIS", "INTEGRITY_SECRET_FILE"):
        monkeypatch.delenv(var, raising=False)
    assert run("init").exit_code == 0
    reg = tmp_path / "registry.json"
    reg.write_text(
        json.dumps(
            {
                "halls": [{"hall_id": "H1", "name": "东城政务服务中心"}],
                "windows": [{"window_id": w, "hall_id": "H1"} for w in ("W01", "W02")],
            },
            ensure_ascii=False,
        )
    )
    assert run("registry", "load", str(reg)).exit_code == 0
    lines = []
    for i in range(24):
        at = f"2026-10-{1 + i % 28:02d}T10:00:00+08:00"
        lines.append(
            json.dumps(
                {
                    "ticket_id": f"T{i}",
                    "window_id": "W01" if i % 2 else "W02",
                    "scores": dict.fromkeys(DIMS, 2 if i % 5 == 0 else 5),
                    "ip": f"198.51.{i}.7",
                    "device_id": f"d{i}",
                    "served_at": at,
                    "submitted_at": at,
                }
            )
        )
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(lines) + "\n")
    assert run("ingest", str(f)).exit_code == 0
    return h


def test_report_page_book_and_the_table_as_before(home: Path, tmp_path: Path) -> None:
    res = run("report", "--by", "window", "--period", "2026-10", "--format", "csv")
    assert res.exit_code == 0 and res.stdout.startswith("window_id,hall_id,rank")
    assert run("report", "table", "--period", "2026-10").exit_code == 0
    page = tmp_path / "p.html"
    res = run("report", "page", "--period", "2026-10", "-o", str(page))
    assert res.exit_code == 0, res.output
    assert f"wrote {page}" in res.stdout and "the page of 2026-10" in res.stdout
    html = page.read_text("utf-8")
    assert "东城政务服务中心" in html and html.count("<svg ") >= 4
    for args in (
        ("report", "book", "-o", str(tmp_path / "b.xlsx")),
        ("report", "page", "-o", str(tmp_path / "c.xlsx")),
    ):
        res = run(*args, "--period", "2026-10")
        assert res.exit_code == 0, res.output
        assert Path(args[-1]).read_bytes()[:2] == b"PK" and "spreadsheet" in res.stdout
    res = run("report", "page", "--period", "2026-13", "-o", str(page))
    assert res.exit_code == 1 and res.stderr.startswith("error: invalid period: period:")


def test_publish_then_verify_and_a_tampered_release_fails(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "release"
    res = run("publish", "--period", "2026-10", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert "manifest SHA-256" in res.stdout and "integrity-ledger/v1 size=" in res.stdout
    res = run("publish", "verify", str(out))
    assert res.exit_code == 0 and res.stdout.strip().endswith("verifies")
    (out / "windows.csv").write_text("window_id\n")
    res = run("publish", "verify", str(out))
    assert (
        res.exit_code == 1
        and "FAIL: windows.csv: " in res.stderr
        and "does NOT verify" in res.stderr
    )
    res = run("publish", "--period", "2026-10", "-o", str(out))
    assert res.exit_code == 1 and "not an empty folder" in res.stderr
    assert (
        "release.published: a period's public release" in run("explain", "release.published").stdout
    )
