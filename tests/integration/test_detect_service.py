"""The detect run on real ledgers (SQLite and PostgreSQL): holds as events with evidence,
idempotency, cleared evidence not used again, window cases, risk, reviewer role.

A small simulated fortnight (one hall, every attack on) goes through the real hook.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from factories import T0, backend_url, make_app

from integrity.adapters import tables as t
from integrity.app import App
from integrity.errors import PermissionDenied, PolicyViolation
from integrity.model import Status
from integrity.people import People
from integrity.reports import export_ratings
from integrity.venues import pseudonymise_venues
from rules import tables as rt
from rules.detectors.review import ReviewService
from rules.detectors.service import DetectService
from simulation import WorldConfig, simulate

WORLD = WorldConfig(seed=4, halls=1, windows_per_hall=5, honest_ratings=3000, days=14)


def _fast(app: App) -> DetectService:
    """The service without the soft signals (pyod's import and JIT cost seconds per run)."""
    svc = DetectService.from_app(app)
    svc.config = dataclasses.replace(
        svc.config, pyod={"enabled": False}, fairness={"enabled": False}
    )
    return svc


def _world_app(home: Path, url: str | None) -> App:
    a = make_app(home, url)
    world = simulate(WORLD)
    pv = pseudonymise_venues(world.venues, a.pseudonymiser)
    a.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, T0, actor="test")
    a.hook.reload()
    for item in a.hook.validate_stream(world.ratings, replay=True, chunk=1000):
        assert item.decision is not None
    People(a.ledger).upsert("rev1", roles=["reviewer"], at=T0)
    People(a.ledger).upsert("clerk", roles=["staff"], at=T0)
    return a


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    a = _world_app(tmp_path / "home", backend_url(request, tmp_path))
    yield a
    a.close()


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[App]:
    a = _world_app(tmp_path / "home", None)
    yield a
    a.close()


def _events(app: App) -> int:
    with app.ledger.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar_one())


def _statuses(app: App) -> dict[int, tuple[str, int, float]]:
    with app.ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                t.rating_status.c.rating_id,
                t.rating_status.c.status,
                t.rating_status.c.version,
                t.rating_status.c.risk,
            )
        ).all()
    return {int(r[0]): (r[1], int(r[2]), float(r[3])) for r in rows}


def test_detect_holds_with_evidence_and_twice_changes_nothing(app: App) -> None:
    svc = DetectService.from_app(app)
    rep = svc.run()
    assert rep.held > 0 and rep.cases
    holds = [
        e
        for rid, (st, _, _) in _statuses(app).items()
        if st == "held"
        for e in app.ledger.events_of(rid)
        if e.kind == "hold"
    ]
    assert holds
    for e in holds:
        assert e.actor == "detector" and e.status is Status.HELD
        assert all(code.startswith("outlier.") for code in e.reasons)
        for key in ("detector", "score", "threshold", "params", "explanation"):
            assert key in e.evidence
        assert e.evidence["explanation"].endswith(")") or e.evidence["explanation"].endswith(".")
        assert e.evidence["params"]["budget"] > 0 and e.evidence["fingerprint"]
    case = rep.cases[0]
    opened = app.ledger.events_about(case)
    assert [e.kind for e in opened] == ["case.opened"] and opened[0].evidence["suspect_ratings"] > 0

    before_events, before = _events(app), _statuses(app)
    again = svc.run(full=True)  # the whole analysis again: nothing new
    assert again.held == 0 and again.cases == [] and again.risk_updates == 0
    assert again.ratings == rep.ratings and again.up_to_date is None
    assert _events(app) == before_events
    assert _statuses(app) == before
    # and without --full: nothing changed since, so nothing is read at all
    third = svc.run()
    assert third.up_to_date == again.run_id and third.ratings == 0 and third.run_id is None
    assert _events(app) == before_events and _statuses(app) == before

    risks = [r["risk"] for r in export_ratings(app.ledger)]
    assert all(0.0 <= r <= 1.0 for r in risks) and max(risks) > 0


def test_a_cleared_rating_is_not_held_again_by_the_same_evidence(sqlite_app: App) -> None:
    app = sqlite_app
    svc = _fast(app)
    svc.run()
    review = ReviewService(app.ledger, People(app.ledger), app.clock, app.core.rule_set_id)
    held = review.list_held("rev1", reason="outlier.")
    a, b = held[0]["rating_id"], held[1]["rating_id"]
    out = review.clear("rev1", a, "regular customer, checked the ticket")
    assert out.status is Status.ACCEPTED and out.cleared_fingerprints
    review.confirm("rev1", b, "same device as the farm")
    svc.run()
    st = _statuses(app)
    assert st[a][0] == "accepted" and st[b][0] == "rejected"
    with app.ledger.engine.connect() as conn:
        cleared = conn.execute(
            sa.select(rt.detect_cleared.c.fingerprint).where(rt.detect_cleared.c.rating_id == a)
        ).all()
    assert {f for (f,) in cleared} == set(out.cleared_fingerprints)
    kinds = [e.kind for e in app.ledger.events_of(a)]
    assert kinds.count("hold") == 1 and kinds[-1] == "clear"
    shown = review.show("rev1", a)
    assert shown["cleared"] and shown["flags"]
    with pytest.raises(PolicyViolation):
        review.clear("rev1", a, "already cleared once")
    with pytest.raises(PermissionDenied):
        review.confirm("clerk", held[2]["rating_id"], "I do not like it")
    with pytest.raises(PermissionDenied):
        review.list_held(None)


def test_detect_by_time_window_only_holds_in_range(sqlite_app: App) -> None:
    app = sqlite_app
    svc = _fast(app)
    since = WORLD.start.replace(day=WORLD.start.day + 6)
    rep = svc.run(since=since)
    assert rep.ratings > 0
    with app.ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.ratings.c.submitted_at)
            .join(t.rating_status, t.rating_status.c.rating_id == t.ratings.c.rating_id)
            .join(rt.detect_holds, rt.detect_holds.c.rating_id == t.ratings.c.rating_id)
        ).all()
    assert rows and all(r[0] >= since for r in rows)


def test_partitioned_reads_load_the_same_frame(app: App) -> None:
    """Many small partitions (dictionary-encoded chunk by chunk) give the same frame as one."""
    from rules.detectors.features import load_frame

    kw = {"rubric": app.core.rubric, "tz": app.core.timezone}
    one = load_frame(app.ledger, chunk=10**9, **kw).frame
    two = load_frame(app.ledger, chunk=300, **kw).frame
    cols = [
        "rating_id",
        "window_id",
        "staff_id",
        "device_hash",
        "prefix_hash",
        "submitted_s",
        "dev",
        "counted",
        "dup",
    ]
    a = one[cols].sort_values("rating_id").reset_index(drop=True)
    b = two[cols].sort_values("rating_id").reset_index(drop=True)
    for c in ("window_id", "staff_id", "device_hash", "prefix_hash"):
        assert a[c].astype(object).equals(b[c].astype(object))
    # codes may differ, groupings may not
    assert (
        a.groupby("dev")["rating_id"].min().sort_values().to_numpy()
        == b.groupby("dev")["rating_id"].min().sort_values().to_numpy()
    ).all()
    assert a["counted"].equals(b["counted"]) and a["dup"].equals(b["dup"])
    assert len(a) == len(b) > 1000


def test_every_read_path_loads_the_same_frame(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """The columnar read (SQLite: the ADBC helper process; PostgreSQL: ADBC in process)
    and the DBAPI cursor give identical frames: values, categories and their codes."""
    import integrity.adapters.sql as sql_adapter
    from rules.detectors.features import load_frame

    kw = {"rubric": app.core.rubric, "tz": app.core.timezone, "chunk": 700}
    app.ledger.adbc = False
    plain = load_frame(app.ledger, **kw).frame
    app.ledger.adbc = True
    monkeypatch.setattr(sql_adapter, "BULK_SCAN_ROWS", 0)  # a large read: the fast path
    fast = load_frame(app.ledger, **kw).frame
    assert len(plain) == len(fast) > 1000
    assert list(plain.columns) == list(fast.columns)
    for c in plain.columns:
        a, b = plain[c], fast[c]
        if isinstance(a.dtype, pd.CategoricalDtype):
            assert list(a.cat.categories) == list(b.cat.categories), c
            assert (a.cat.codes.to_numpy() == b.cat.codes.to_numpy()).all(), c
        else:
            assert a.equals(b), c
    # and a time range (partitions of occurred_at) through the fast path too
    since = WORLD.start.replace(day=WORLD.start.day + 6)
    part = load_frame(app.ledger, since=since, **kw).frame
    assert 0 < int(part["in_scope"].sum()) < len(part) <= len(plain)


def test_the_watermark_skips_only_when_nothing_detection_reads_changed(sqlite_app: App) -> None:
    """A whole-ledger run is skipped only when a full run would change nothing: a new
    rating, a reviewer's decision, a venue reload or another rule set each make the next
    run analyse everything again, and what it then does is what a full run does."""
    from factories import rating

    app = sqlite_app
    svc = _fast(app)
    first = svc.run()
    assert first.run_id and first.up_to_date is None
    assert svc.run().up_to_date == first.run_id  # nothing new
    assert svc.run(since=WORLD.start).up_to_date is None  # a range is always analysed
    assert svc.run(dry_run=True).up_to_date is None  # and so is a dry run
    assert svc.run().up_to_date == first.run_id  # neither moved the watermark

    # a new rating: analysed again, and it is a full run's result
    app.validate(rating(), replay=True)
    rerun = svc.run()
    assert rerun.up_to_date is None and rerun.ratings == first.ratings + 1
    assert svc.run().up_to_date == rerun.run_id
    full = svc.run(full=True)
    assert full.held == 0 and full.risk_updates == 0

    # a reviewer's decision (a status event)
    review = ReviewService(app.ledger, People(app.ledger), app.clock, app.core.rule_set_id)
    held = review.list_held("rev1", reason="outlier.")
    review.clear("rev1", held[0]["rating_id"], "checked the ticket")
    assert svc.run().up_to_date is None
    assert svc.run().up_to_date is not None

    # the venue registry reloaded
    world = simulate(WORLD)
    pv = pseudonymise_venues(world.venues, app.pseudonymiser)
    app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, app.clock.now(), "test")
    assert svc.run().up_to_date is None
    assert svc.run().up_to_date is not None

    # another rule set: its own thresholds, so a full analysis
    other = DetectService(
        app.ledger, svc.config, rubric=svc.rubric, tz=svc.tz, clock=svc.clock,
        rule_set_id="f" * 32,
    )  # fmt: skip
    assert other.up_to_date() is None


def _same_frames(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for c in a.columns:
        if isinstance(a[c].dtype, pd.CategoricalDtype):
            assert list(a[c].cat.categories) == list(b[c].cat.categories), c
            assert (a[c].cat.codes.to_numpy() == b[c].cat.codes.to_numpy()).all(), c
        else:
            assert a[c].equals(b[c]), c


def test_an_incremental_read_gives_the_full_reads_frame(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a whole-ledger run, the next reads only the new ratings and the state of the
    others from the ledger, the rest from the run's snapshot: the frame is the one a full
    read gives (rows, values, categories and codes), new ratings and status changes
    included; a snapshot that is not the file the run wrote is not used. The snapshot is
    written in batches of a few rows here, so it spans many."""
    from factories import rating

    import integrity.adapters.sql as sql_adapter
    from rules.detectors import features
    from rules.detectors.features import load_frame, read_snapshot

    monkeypatch.setattr(features, "_SNAPSHOT_BATCH", 7)
    svc = _fast(app)
    assert svc.snapshot is not None
    first = svc.run()
    assert svc.snapshot.exists() and "snapshot_rows" not in first.timings
    # new ratings (one from a device and a window already seen, one all new), a status change
    with app.ledger.engine.connect() as conn:
        known = conn.execute(sa.select(t.ratings).limit(1)).mappings().one()
    for doc in (rating(window_id=known["window_id"]), rating(window_id="W-NEW", staff_id="S-NEW")):
        app.validate(doc, replay=True)
    review = ReviewService(app.ledger, People(app.ledger), app.clock, app.core.rule_set_id)
    held = review.list_held("rev1", reason="outlier.")
    review.clear("rev1", held[0]["rating_id"], "checked the ticket")

    kw = {"rubric": app.core.rubric, "tz": app.core.timezone, "chunk": 900}
    with app.ledger.reading() as conn:
        sha = conn.execute(
            sa.select(rt.detect_runs.c.snapshot_sha256).where(
                rt.detect_runs.c.run_id == first.run_id
            )
        ).scalar_one()
    base = read_snapshot(svc.snapshot, sha)
    assert base is not None and base.num_rows == first.ratings
    assert base.column("rating_id").num_chunks == -(-first.ratings // 7)
    full = load_frame(app.ledger, **kw).frame
    incremental = load_frame(app.ledger, base=base, **kw).frame
    _same_frames(full, incremental)
    assert len(full) == first.ratings + 2
    # the fast (columnar) path too
    monkeypatch.setattr(sql_adapter, "BULK_SCAN_ROWS", 0)
    _same_frames(full, load_frame(app.ledger, base=base, **kw).frame)

    # the run itself: reads from the snapshot, and does what a full run would
    rep = svc.run()
    assert rep.timings["snapshot_rows"] == first.ratings and rep.ratings == first.ratings + 2
    again = svc.run(full=True)
    assert again.held == 0 and again.risk_updates == 0 and again.cases == []

    # a snapshot changed on disk is not the one recorded: everything is read again
    svc.snapshot.write_bytes(svc.snapshot.read_bytes()[:-8] + b"tampered")
    app.validate(rating(), replay=True)
    rep = svc.run()
    assert "snapshot_rows" not in rep.timings and rep.ratings == first.ratings + 3


def test_where_the_detectors_run_changes_nothing(sqlite_app: App) -> None:
    """The forked worker (soft signals and half the detectors, claiming some as it goes)
    and the same work in process give the same findings in the same order, thresholds
    and risks."""
    from rules.detectors.features import load_frame
    from rules.detectors.generic import Worker
    from rules.detectors.service import EITHER_DETECTORS, WORKER_DETECTORS

    svc = DetectService.from_app(sqlite_app)
    frame = load_frame(sqlite_app.ledger, rubric=svc.rubric, tz=svc.tz)
    timings: dict[str, float] = {}
    forked = svc.analyse(frame, timings)
    in_process: dict[str, float] = {}
    here = svc.analyse(frame, in_process, worker=Worker(enabled=False))
    assert forked[0] == here[0] and forked[3] == here[3]
    assert forked[2].hold.keys() == here[2].hold.keys()
    assert forked[2].ranked.equals(here[2].ranked)
    # the detectors either process may fit: each fitted once, by one of them
    for name in EITHER_DETECTORS:
        assert (name in timings) + (f"{name} (worker)" in timings) == 1, (name, timings)
        assert name in in_process and f"{name} (worker)" not in in_process
    for name in WORKER_DETECTORS:
        assert f"{name} (worker)" in timings and name not in timings


def test_a_failed_reader_process_falls_back_to_the_cursor(
    sqlite_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the SQLite helper process fails before giving anything, the read goes through
    the DBAPI cursor: same frame."""
    import integrity.adapters.columnar as columnar
    import integrity.adapters.sql as sql_adapter
    from rules.detectors.features import load_frame

    kw = {"rubric": sqlite_app.core.rubric, "tz": sqlite_app.core.timezone}
    plain = load_frame(sqlite_app.ledger, **kw).frame
    monkeypatch.setattr(sql_adapter, "BULK_SCAN_ROWS", 0)
    monkeypatch.setattr(columnar.sys, "executable", "/bin/false")  # exits, writes nothing
    _same_frames(plain, load_frame(sqlite_app.ledger, **kw).frame)


def test_what_a_run_writes_is_what_its_analysis_decided(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk write path (holds as events with their evidence rows and status moves,
    risks as one block) records exactly what the analysis decided, as a plain per-rating
    reading of the verdicts gives it: the same held ratings, reasons, evidence and
    evidence rows, and every rating's risk as read back (the status row, the export and
    the sealed block), on SQLite and PostgreSQL. The holds go in transactions of three
    here, so they span many."""
    import json

    from integrity.adapters.sql import decode_risks
    from integrity.sqlkit import canonical_json
    from rules.detectors import service as detect_service
    from rules.detectors.features import load_frame

    monkeypatch.setattr(detect_service, "_HOLD_CHUNK", 3)
    svc = _fast(app)
    frame = load_frame(app.ledger, rubric=svc.rubric, tz=svc.tz)
    flags, _, verdicts, _ = svc.analyse(frame)
    before = _statuses(app)
    rep = svc.run(full=True)
    assert rep.held == len(verdicts.hold) > 3
    assert rep.flags == flags

    statuses = _statuses(app)
    moved = {rid for rid, (st, v, _) in statuses.items() if (st, v) != before[rid][:2]}
    assert moved == set(verdicts.hold)
    assert all(statuses[rid][0] == "held" for rid in moved)
    with app.ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                rt.detect_holds.c.rating_id,
                rt.detect_holds.c.fingerprint,
                rt.detect_holds.c.detector,
                rt.detect_holds.c.reason,
                rt.detect_holds.c.event_id,
            )
        ).all()
        blocks = conn.execute(sa.select(t.risk_blocks.c.data)).scalars().all()
        texts = dict(
            conn.execute(
                sa.select(t.events.c.event_id, t.events.c.evidence).where(t.events.c.kind == "hold")
            ).all()
        )
    want_rows = {
        (rid, f.fingerprint, f.detector, str(f.reason))
        for rid, fl in verdicts.hold.items()
        for f in fl
    }
    assert {(int(r), f, d, c) for r, f, d, c, _ in rows} == want_rows
    event_of = {int(r): int(e) for r, _, _, _, e in rows}
    for rid, fl in verdicts.hold.items():
        (ev,) = [e for e in app.ledger.events_of(rid) if e.kind == "hold"]
        assert ev.event_id == event_of[rid]
        want = svc._hold_event(rid, fl, verdicts, int(rep.run_id or 0), ev.at)
        assert ev.reasons == want.reasons and ev.status is Status.HELD
        assert ev.evidence == json.loads(canonical_json(dict(want.evidence)))
        # the text written, joined from parts encoded once per finding, is the text of
        # the whole evidence encoded at once
        assert texts[ev.event_id] == canonical_json(dict(want.evidence))

    # risks: every rating's recorded risk, read back three ways
    ranked = verdicts.ranked
    want_risk = {
        rid: round(float(ranked[rid]) if rid in ranked.index else 0.0, 6) for rid in statuses
    }
    assert {rid: round(r, 6) for rid, (_, _, r) in statuses.items()} == want_risk
    exported = {int(r["rating_id"]): round(float(r["risk"]), 6) for r in export_ratings(app.ledger)}
    assert exported == want_risk
    (block,) = blocks
    ids, vals = decode_risks(block)
    assert ids.tolist() == sorted(rid for rid, r in want_risk.items() if r != 0.0)
    assert [round(v, 6) for v in vals.tolist()] == [want_risk[i] for i in ids.tolist()]
    app.log.seal(app.clock.now())
    assert app.log.verify(app.clock.now()).problems == []


def test_a_run_seals_its_holds_beside_its_risks(app: App) -> None:
    """A forked process seals the holds and cases while the run writes the risks; the
    close seals the rest, and the log is the one sealing everything afterwards gives:
    every event once, leaves in event order, verified."""
    svc = _fast(app)
    rep = svc.run()
    assert rep.held > 0
    assert rep.timings["sealed_beside"] >= rep.held + len(rep.cases)
    with app.ledger.engine.connect() as conn:
        sealed_ids = [
            int(e)
            for (e,) in conn.execute(
                sa.select(t.log_leaves.c.event_id).order_by(t.log_leaves.c.leaf_index)
            )
        ]
        holds = {
            int(e)
            for (e,) in conn.execute(
                sa.select(t.events.c.event_id).where(t.events.c.kind == "hold")
            )
        }
    assert holds and holds <= set(sealed_ids)
    app.log.seal(app.clock.now())  # what the close seals: the risks' event, the alerts'
    with app.ledger.engine.connect() as conn:
        leaves = [
            int(e)
            for (e,) in conn.execute(
                sa.select(t.log_leaves.c.event_id).order_by(t.log_leaves.c.leaf_index)
            )
        ]
        every = [
            int(e)
            for (e,) in conn.execute(sa.select(t.events.c.event_id).order_by(t.events.c.event_id))
        ]
    assert leaves == every
    assert app.log.verify(app.clock.now()).strict_ok
