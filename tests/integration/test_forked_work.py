"""Work forked to other processes (``integrity.forking``).

A batch file's lines are parsed there, by two processes where there are two processors
(``integrity.ingest.parse_jsonl``): what comes back is exactly what parsing in process
gives, refused lines included, in order, and a
file ingested that way is decided exactly as its decoded objects are. What a process
wrote is sealed there at close, beside the closing hooks (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alerts_factories import alerts_of
from factories import SCORES, T0, backend_url, history, make_app, rating, sqlite_url

from integrity import ingest as ingest_module
from integrity.app import App
from integrity.errors import InvalidInput
from integrity.ingest import ingest, judge, parse_jsonl
from integrity.log import MerkleLog
from integrity.ports import RatingQuery


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    a = make_app(tmp_path / "home")
    try:
        yield a
    finally:
        a.close()


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


def _lines(docs: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(d) for d in docs]


def _flat(parsed: list[Any]) -> list[Any]:
    """Comparable values: a rating as itself, a refusal as its field errors."""
    return [
        ("refused", p.what, p.errors) if isinstance(p, InvalidInput) else ("rating", p)
        for p in parsed
    ]


def test_lines_parsed_in_forked_processes_equal_those_parsed_here(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "BLOCK", 40)  # several blocks from a short file
    lines = _lines([rating() for _ in range(230)])
    lines[0] = '{"ticket_id": "T-1",'  # not JSON
    lines[77] = json.dumps(rating(scores={"attitude": 9}))  # a field error
    lines[120] = json.dumps(rating(ip="not-an-address", device_id=""))  # two
    lines[-1] = "[1, 2]"  # JSON, not an object
    lines.insert(50, "   ")  # blank lines are skipped, not counted
    text = "\n".join(lines) + "\n\n"

    here = list(parse_jsonl(app.hook, io.StringIO(text), client_id="cli", workers=False))
    stream = parse_jsonl(app.hook, io.StringIO(text), client_id="cli", workers=True)
    first = next(stream)
    children = len(multiprocessing.active_children())
    assert children == ingest_module.parsers() == min(2, os.cpu_count() or 1), children
    there = [first, *stream]

    assert len(here) == 230
    assert _flat(there) == _flat(here)
    refused = [i for i, p in enumerate(here) if isinstance(p, InvalidInput)]
    assert refused == [0, 77, 120, 229]
    assert here[0].errors[0].field == "(line)"
    assert {e.field for e in here[120].errors} == {"ip", "device_id"}
    assert all(p.client_id == "cli" for p in here if not isinstance(p, InvalidInput))


def test_a_file_is_decided_as_its_decoded_objects_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "BLOCK", 100)
    docs = history(T0, 900, seed=5)  # limits trip, retries and second ratings of tickets
    lines = _lines(docs)
    lines[300] = "not json"
    home = tmp_path / "home"
    by_file = make_app(home, sqlite_url(tmp_path / "a.db"))
    by_objects = make_app(home, sqlite_url(tmp_path / "b.db"))
    try:
        parsed = parse_jsonl(by_file.hook, io.StringIO("\n".join(lines)), workers=True)
        from_file = judge(by_file.hook, parsed, chunk=128)
        objs = [json.loads(x) if i != 300 else "not an object" for i, x in enumerate(lines)]
        from_objects = ingest(by_objects.hook, objs, chunk=128)
        rows_a = [(r.fingerprint, r.status) for r in by_file.ledger.find_ratings(RatingQuery())]
        rows_b = [(r.fingerprint, r.status) for r in by_objects.ledger.find_ratings(RatingQuery())]
    finally:
        by_file.close()
        by_objects.close()
    assert from_file.as_dict() == from_objects.as_dict()
    assert from_file.as_dict()["statuses"].keys() >= {"accepted", "rejected"}
    assert [line for line, _ in from_file.errors] == [301]
    assert rows_a == rows_b and len(rows_a) == from_file.written


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=["backend"])
def test_what_a_batch_wrote_is_sealed_by_a_forked_process(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At close the sealer runs in a second process (its own connections) while the
    closing hooks run here; everything ends sealed, and this process's connections
    still work after the child has gone."""
    calls = tmp_path / "seal-calls"
    plain_seal = MerkleLog.seal

    def seal(log: MerkleLog, now: Any, limit: int | None = None) -> int:
        n = plain_seal(log, now, limit)
        with calls.open("a") as fh:  # the child appends too: inherited by the fork
            fh.write(f"{os.getpid()} {n}\n")
        return n

    monkeypatch.setattr(MerkleLog, "seal", seal)
    app = make_app(tmp_path / "home", backend)
    ran_beside: list[int] = []
    app.closing.append(lambda: ran_beside.append(os.getpid()))
    summary = judge(app.hook, app.hook.parse_each(history(T0, 300, seed=3)))
    app.close()

    seals = [tuple(map(int, line.split())) for line in calls.read_text().splitlines()]
    by_child = [n for pid, n in seals if pid != os.getpid()]
    assert ran_beside == [os.getpid()]
    # the batch's decisions (one event per rating written), sealed over there
    assert by_child and by_child[0] >= summary.written > 250
    again = make_app(tmp_path / "home", backend, init=False)
    try:
        report = again.log.verify(again.clock.now())
        assert report.strict_ok, report  # verified, and no event left unsealed
    finally:
        again.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=["backend"])
def test_an_ingest_refreshes_statistics_beside_its_writes_and_still_forks_its_sealer(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``integrity ingest`` refreshes the planner's statistics once, in a thread, as
    soon as enough is committed (not at close, where the alerts wait for it), and ends
    with that thread gone, so the seal at close is still forked."""
    from click.testing import CliRunner

    import cli
    from integrity.adapters.sql import SqlLedger

    monkeypatch.setattr(ingest_module, "ANALYZE_AFTER", 120)
    calls: list[tuple[str, int]] = []
    plain_analyze = SqlLedger.analyze

    def analyze(ledger: SqlLedger) -> None:
        with ledger.engine.connect() as conn:
            committed = conn.exec_driver_sql("SELECT count(*) FROM ratings").scalar_one()
        calls.append((threading.current_thread().name, committed))
        plain_analyze(ledger)

    monkeypatch.setattr(SqlLedger, "analyze", analyze)
    plain_seal = MerkleLog.seal
    pids = tmp_path / "seal-pids"

    def seal(log: MerkleLog, now: Any, limit: int | None = None) -> int:
        with pids.open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        return plain_seal(log, now, limit)

    monkeypatch.setattr(MerkleLog, "seal", seal)
    home = tmp_path / "home"
    make_app(home, backend).close()
    data = tmp_path / "month.jsonl"
    data.write_text("\n".join(_lines(history(T0, 300, seed=5))) + "\n")
    res = CliRunner().invoke(
        cli.main,
        ["ingest", str(data), "--chunk", "50", "--home", str(home), "--db", backend],
    )
    assert res.exit_code == 0, (res.output, res.exception)
    assert threading.active_count() == 1

    # once, in a thread of its own, after the chunks that made 120 were committed
    assert len(calls) == 1, calls
    name, committed = calls[0]
    assert name == "analyze"
    assert committed >= 120
    sealed_by = [int(line) for line in pids.read_text().split()]
    assert any(pid != os.getpid() for pid in sealed_by), "the seal at close was not forked"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=["backend"])
def test_the_parsing_process_seals_what_a_batch_committed_while_it_runs(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the log, the second process also catches up between blocks with what is
    committed: the closing hooks (the alerts' projection), then a seal. At least what
    was there before the batch, never the batch's last chunk (written after the last
    line was parsed); the rest at close, and everything verifies."""
    monkeypatch.setattr(ingest_module, "BLOCK", 40)
    monkeypatch.setattr(ingest_module, "SEAL_EVERY", 2)
    app = make_app(tmp_path / "home", backend)
    try:
        before = app.log.head().size
        low_id = app.validate(rating(scores=dict.fromkeys(SCORES, 1))).rating_id
        earlier = ingest(app.hook, history(T0 - timedelta(days=2), 49, seed=7))
        assert alerts_of(app, low_id) == []  # the projection runs at close, or beside
        text = "\n".join(_lines(history(T0, 400, seed=11))) + "\n"
        parsed = parse_jsonl(
            app.hook, io.StringIO(text), client_id="cli", log=app.log, closing=app.closing
        )
        summary = judge(app.hook, parsed, chunk=60)
        sealed_during = app.log.head().size - before
        # its alert, opened over there, and that event sealed too
        assert len(alerts_of(app, low_id)) == 1
        assert earlier.written + 2 <= sealed_during < earlier.written + summary.written
        assert app.log.verify(app.clock.now()).ok
    finally:
        app.close()
    again = make_app(tmp_path / "home", backend, init=False)
    try:
        report = again.log.verify(again.clock.now())
        assert report.strict_ok, report
        assert again.log.head().size - before >= summary.written
    finally:
        again.close()


def test_a_seal_above_an_id_leaves_what_is_below_to_the_next_full_seal(app: App) -> None:
    ids = [app.validate(rating()).rating_id for _ in range(3)]
    assert ids
    app.log.seal(app.clock.now())
    low = app.ledger.last_event_id() or 0
    for _ in range(4):
        app.validate(rating())
    mid = low + 2
    start = app.log.head().size
    assert app.log.seal(app.clock.now(), above=mid) == (app.ledger.last_event_id() or 0) - mid
    assert app.log.head().size == start + 2
    assert not app.log.verify(app.clock.now()).strict_ok  # two events left unsealed below
    assert app.log.seal(app.clock.now()) == 2
    assert app.log.verify(app.clock.now()).strict_ok
