"""The public release: written from a real ledger, recorded as a ledger event, and
checked with no database (checksums, formats, counts that add up, ranks that follow
from scores); staff are named only when the rule set says so."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import backend_url, make_app
from publishing_factories import HALLS, NOW, Month, build_month

from integrity.app import App
from integrity.catalogue import Kind
from integrity.clock import FrozenClock
from integrity.errors import ConfigError, Conflict
from integrity.reports import Period
from publishing import Releases
from publishing.release import MANIFEST_FILE, RELEASE_FILE, staff_names_allowed
from publishing.verify import verify_release


@pytest.fixture(params=["sqlite", "postgresql"])
def month(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[App, Month]]:
    app = make_app(tmp_path / "home", backend_url(request, tmp_path), clock=FrozenClock(NOW))
    made = build_month(app)
    yield app, made
    app.close()


def publish(app: App, out: Path) -> dict:
    done = app.get(Releases).publish(Period.month("2026-10", app.core.timezone), out, "boss")
    return dict(done.document) | {"_manifest_sha256": done.manifest_sha256, "_event": done.event_id}


def rewrite(folder: Path, name: str, text: str) -> None:
    """Change a file and update the manifest to match (a careless or dishonest editor)."""
    (folder / name).write_text(text, "utf-8")
    man = json.loads((folder / MANIFEST_FILE).read_text())
    for entry in man["files"]:
        if entry["path"] == name:
            data = text.encode()
            entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (folder / MANIFEST_FILE).write_text(json.dumps(man))


def test_a_release_holds_the_public_figures_and_verifies(
    month: tuple[App, Month], tmp_path: Path
) -> None:
    app, made = month
    out = tmp_path / "release"
    doc = publish(app, out)
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "excluded.csv",
        "halls.csv",
        "index.html",
        "manifest.json",
        "release.json",
        "windows.csv",
    ]
    t = doc["totals"]
    assert t["received"] == t["counted"] + t["held"] + t["rejected"] + t["voided"]
    assert doc["excluded_by_stage"] == {"hook": 2, "detection": 1, "audit": 1, "appeal": 1}
    assert doc["appeals"]["upheld"] == doc["excluded_by_stage"]["appeal"] == 1
    assert (
        doc["audit"]["sample_id"] == made.sample_id and doc["audit"]["overall"]["deviations"] == 1
    )
    assert {h["name"] for h in doc["halls"]} == set(HALLS.values())
    assert "staff" not in doc and doc["staff_names"] is False  # the default rule set
    assert not (out / "staff.csv").exists()
    html = (out / "index.html").read_text()
    assert HALLS["H1"] in html and "李娜" not in html and "<script" not in html
    # recorded: a checkpoint first, then the release event with the manifest's SHA-256
    manifest_bytes = (out / MANIFEST_FILE).read_bytes()
    assert hashlib.sha256(manifest_bytes).hexdigest() == doc["_manifest_sha256"]
    [ev] = [e for e in app.ledger.events_about("release:2026-10")]
    assert ev.kind == Kind.RELEASE_PUBLISHED and ev.actor == "boss"
    assert ev.evidence["manifest_sha256"] == doc["_manifest_sha256"]
    assert ev.evidence["checkpoint"] == doc["checkpoint"]
    size = int(doc["checkpoint"].split("size=")[1].split()[0])
    assert size > 0 and app.log.verify(NOW, checkpoint=doc["checkpoint"]).ok
    v = verify_release(out)
    assert v.ok, v.problems
    assert any("counts add up and ranks follow from scores" in n for n in v.notes)
    with pytest.raises(Conflict, match="not an empty folder"):
        publish(app, out)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, Path]]:
    base = tmp_path_factory.mktemp("release")
    app = make_app(base / "home", clock=FrozenClock(NOW))
    build_month(app)
    publish(app, base / "release")
    yield app, base / "release"
    app.close()


def copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_verify_names_a_changed_file(published: tuple[App, Path], tmp_path: Path) -> None:
    _, src = published
    out = copy(src, tmp_path / "r")
    (out / "windows.csv").write_text((out / "windows.csv").read_text().replace("H1-W01", "H1-W09"))
    v = verify_release(out)
    assert not v.ok and any(p.startswith("windows.csv: SHA-256") for p in v.problems)
    (out / "halls.csv").unlink()
    assert any(
        "halls.csv: listed in the manifest but missing" in p for p in verify_release(out).problems
    )
    (out / "notes.txt").write_text("mine")
    assert any("not in the manifest" in n for n in verify_release(out).notes)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["windows"][0].__setitem__("rank", 2), "has rank 2, its score ranks 1"),
        (
            lambda d: d["windows"][0].__setitem__("counted", d["windows"][0]["counted"] + 1),
            "received is not counted",
        ),
        (
            lambda d: d["totals"].__setitem__("held", d["totals"]["held"] + 1),
            "totals: received is not",
        ),
        (lambda d: d["excluded_by_stage"].__setitem__("hook", 9), "excluded_by_stage adds up"),
        (lambda d: d["halls"][0].__setitem__("received", 999), "its windows add up to"),
        (
            lambda d: d.__setitem__("checkpoint", "integrity-ledger/v1 size=3 root=XYZ"),
            "checkpoint: malformed",
        ),
        (lambda d: d["windows"][0].__setitem__("low_score_rate", 0.9), "low_score_rate is not"),
        (lambda d: d["audit"]["overall"].__setitem__("deviations", 99), "deviations <= audited"),
        (lambda d: d["appeals"].__setitem__("filed", 5), "appeals: filed is not"),
        (lambda d: d.__setitem__("staff", []), "names staff although staff_names is false"),
    ],
)
def test_verify_checks_the_release_is_consistent(
    published: tuple[App, Path], tmp_path: Path, change: object, problem: str
) -> None:
    _, src = published
    out = copy(src, tmp_path / "r")
    doc = json.loads((out / RELEASE_FILE).read_text())
    change(doc)  # type: ignore[operator]
    rewrite(out, RELEASE_FILE, json.dumps(doc, ensure_ascii=False, indent=2))
    v = verify_release(out)
    assert not v.ok and any(problem in p for p in v.problems), v.problems


def test_csv_files_must_agree_with_the_json(published: tuple[App, Path], tmp_path: Path) -> None:
    _, src = published
    out = copy(src, tmp_path / "r")
    rows = list(csv.reader(io.StringIO((out / "windows.csv").read_text())))
    rows[1][rows[0].index("score")] = "4.99"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    rewrite(out, "windows.csv", buf.getvalue())
    v = verify_release(out)
    assert any("windows.csv: line 2 score" in p for p in v.problems), v.problems


def test_staff_are_published_only_when_the_rule_set_allows(tmp_path: Path) -> None:
    assert staff_names_allowed({}) is False
    assert staff_names_allowed({"staff_names": True}) is True
    with pytest.raises(ConfigError, match="staff_names"):
        staff_names_allowed({"staff_names": "yes"})
    from rules.ruleset import default_ruleset_text

    text = default_ruleset_text().replace("staff_names = false", "staff_names = true")
    assert "staff_names = true" in text
    app = make_app(tmp_path / "home", clock=FrozenClock(NOW), rules_text=text)
    try:
        build_month(app)
        doc = publish(app, tmp_path / "release")
    finally:
        app.close()
    assert doc["staff_names"] is True and {s["staff_id"] for s in doc["staff"]} == {
        "S1",
        "S2",
        "S3",
        "S9",
    }
    assert "李娜" in (tmp_path / "release" / "staff.csv").read_text()
    assert verify_release(tmp_path / "release").ok
