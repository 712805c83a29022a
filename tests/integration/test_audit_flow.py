"""The audit on a real ledger (SQLite, and PostgreSQL for the key paths): frame, draw, seed
lock, batches, pulls, findings, voiding, replacement, expansion, publish and verify."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from audit_factories import populate, register
from consistent_sampler import sampler as cs_sampler
from factories import make_app, sqlite_url

from audit_sampling import batches, estimates, findings, formats, sampler, verify
from audit_sampling import tables as at
from audit_sampling.context import AuditContext
from audit_sampling.draw import DrawOutcome, draw_sample
from audit_sampling.expand import expand
from audit_sampling.formats import Bundle, FrameReader, load_bundle
from audit_sampling.frame import make_frame
from audit_sampling.publish import publish, sample_manifest
from audit_sampling.records import frame_chunks, sample_items, strata
from integrity.catalogue import Kind, Reason
from integrity.clock import FrozenClock
from integrity.errors import Conflict, InvalidInput, PermissionDenied, PolicyViolation
from integrity.model import Event, Status
from integrity.ports import RatingQuery
from integrity.reports import performance

NOW = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
OCT = datetime(2026, 10, 2, 1, 0, tzinfo=UTC)
SEP = datetime(2026, 9, 3, 1, 0, tzinfo=UTC)
SEED = "52061387942016785301"
COUNTS = {"W1": 40, "W2": 25, "W3": 8}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return sqlite_url(tmp_path / "ledger.db")


def _setup(home: Path, db_url: str | None = None) -> tuple[Any, AuditContext]:
    app = make_app(home, db_url, clock=FrozenClock(NOW))
    populate(app, COUNTS, OCT)
    register(app, NOW)
    return app, AuditContext.from_app(app)


@pytest.fixture
def audit(tmp_path: Path) -> Any:
    app, ctx = _setup(tmp_path / "home")
    yield app, ctx
    app.close()


@pytest.fixture
def audit_any(tmp_path: Path, any_db: str) -> Any:
    app, ctx = _setup(tmp_path / "home", any_db)
    yield app, ctx
    app.close()


def drawn(ctx: AuditContext, **kw: Any) -> DrawOutcome:
    fr = make_frame(ctx, "2026-10", "boss")
    return draw_sample(ctx, fr.frame.frame_id, SEED, "boss", **kw)


def window_order(ctx: AuditContext, frame_id: int, window: str) -> list[int]:
    """A window's full ticket order, re-read from the stored frame."""
    reader = FrameReader(frame_chunks(ctx, frame_id))
    ids = [int(r) for r, w, _ in reader if w == window]
    return list(cs_sampler(ids, seed=sampler.sampler_seed(SEED), output="id"))


def items_of(ctx: AuditContext, sample_id: int) -> list[dict[str, Any]]:
    return sample_items(ctx, sample_id)


# The ledger's own tables, by name only: the tests below count and tamper with rows behind
# the ledger's back, which no port offers.
EVENTS = sa.table("events")
RATINGS = sa.table("ratings", sa.column("rating_id"), sa.column("window_id"))


def count(engine: sa.Engine, table: sa.TableClause) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def findings_csv(rows: list[tuple[Any, str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rating_id", "code", "note"])
    w.writerows(rows)
    return buf.getvalue()


# -- frame and draw ------------------------------------------------------------------------


def test_frame_draw_and_the_seed_lock(audit_any: Any) -> None:
    app, ctx = audit_any
    fr = make_frame(ctx, "2026-10", "boss")
    f = fr.frame
    assert f.ratings == 73 and f.strata == COUNTS
    assert fr.path is not None and fr.path.name == f"frame-2026-10-{f.frame_hash[:12]}.csv"
    assert hashlib.sha256(fr.path.read_bytes()).hexdigest() == f.frame_hash
    assert b"".join(frame_chunks(ctx, f.frame_id)) == fr.path.read_bytes()  # stored byte-exact
    # it stands on a checkpoint the ledger recorded; the frame event came after it
    assert app.log.verify(NOW, checkpoint=f.checkpoint).ok
    # the checkpoint's own event is the leaf after it; the frame event is not sealed yet
    assert f.log_size + 1 == app.log.head().size
    [frame_event] = app.ledger.events_about(f"audit:frame:{f.frame_id}")
    assert frame_event.evidence["frame_sha256"] == f.frame_hash

    out = draw_sample(ctx, f.frame_id, SEED, "boss", seed_note="dice, public meeting 2 Nov")
    assert out.created
    takes = {w: s.take for w, s in out.strata.items()}
    assert takes == {"W1": 5, "W2": 5, "W3": 5}  # 10 % but at least 5 (all of a smaller window)
    items = items_of(ctx, out.sample.sample_id)
    for w in COUNTS:
        mine = [i["rating_id"] for i in items if i["window_id"] == w]
        assert mine == window_order(ctx, f.frame_id, w)[: takes[w]]
    assert all(i["ticket"] == sampler.ticket_number(SEED, i["rating_id"]) for i in items)

    again = draw_sample(ctx, f.frame_id, SEED, "boss")
    assert not again.created and again.sample == out.sample
    assert items_of(ctx, out.sample.sample_id) == items

    with pytest.raises(PolicyViolation, match="drawn once"):
        draw_sample(ctx, f.frame_id, SEED, "boss", rate="0.2")
    with pytest.raises(PolicyViolation, match="already has sample"):
        draw_sample(ctx, f.frame_id, "99999999999999999999", "boss")
    with pytest.raises(PolicyViolation, match="could never be drawn"):
        make_frame(ctx, "2026-10", "boss")
    # the same seed on another frame (another period) is refused
    populate(app, {"W1": 3}, SEP)
    sep = make_frame(ctx, "2026-09", "boss").frame
    with pytest.raises(PolicyViolation, match="locked"):
        draw_sample(ctx, sep.frame_id, SEED, "boss")
    kinds = [e.kind for e in app.ledger.events_about(f"audit:sample:{out.sample.sample_id}")]
    assert kinds == ["audit.draw"]
    ev = app.ledger.events_about(f"audit:sample:{out.sample.sample_id}")[0]
    assert ev.evidence["seed"] == SEED and ev.evidence["frame_sha256"] == f.frame_hash


def test_only_the_latest_frame_of_a_period_can_be_drawn(audit: Any) -> None:
    _, ctx = audit
    old = make_frame(ctx, "2026-10", "boss").frame
    new = make_frame(ctx, "2026-10", "boss").frame
    assert new.frame_hash != old.frame_hash  # a later checkpoint
    with pytest.raises(PolicyViolation, match="superseded"):
        draw_sample(ctx, old.frame_id, SEED, "boss")
    assert draw_sample(ctx, new.frame_hash[:10], SEED, "boss").created


def test_who_may_frame_and_draw_and_which_seeds(audit: Any) -> None:
    _, ctx = audit
    with pytest.raises(PermissionDenied):
        make_frame(ctx, "2026-10", "aud1")
    with pytest.raises(PermissionDenied):
        make_frame(ctx, "2026-10", None)
    f = make_frame(ctx, "2026-10", "boss").frame
    with pytest.raises(InvalidInput, match="at least 20 characters"):
        draw_sample(ctx, f.frame_id, "1234", "boss")
    with pytest.raises(InvalidInput, match="printable"):
        draw_sample(ctx, f.frame_id, " 52061387942016785301", "boss")
    with pytest.raises(InvalidInput, match="period"):
        make_frame(ctx, "October", "boss")


def test_the_frame_is_the_population_as_of_its_checkpoint(audit: Any) -> None:
    app, ctx = audit
    ids = populate(app, {"W1": 2}, datetime(2026, 10, 20, tzinfo=UTC))
    held = ids[0]
    _, version = app.ledger.current(held)

    app.ledger.append(
        Event(
            kind=Kind.HOLD,
            actor="detector",
            at=NOW,
            rating_id=held,
            status=Status.HELD,
            reasons=(Reason.OUTLIER_BURST,),
        ),
        expect_version=version,
    )
    f = make_frame(ctx, "2026-10", "boss").frame
    rows = [int(r) for r, _, _ in FrameReader(frame_chunks(ctx, f.frame_id))]
    assert held not in rows and ids[1] in rows  # only counted ratings
    # a later status change does not move the frame: it stands on its checkpoint
    _st, version = app.ledger.current(ids[1])
    app.ledger.append(
        Event(
            kind=Kind.HOLD,
            actor="detector",
            at=NOW,
            rating_id=ids[1],
            status=Status.HELD,
            reasons=(Reason.OUTLIER_BURST,),
        ),
        expect_version=version,
    )
    v = verify.Verification()
    verify.verify_frame_on_ledger(app.log, lambda: frame_chunks(ctx, f.frame_id), NOW, v)
    assert v.ok, v.problems


# -- batches and pulls ---------------------------------------------------------------------


def test_batches_and_pseudonymised_pulls_are_logged(audit_any: Any) -> None:
    app, ctx = audit_any
    out = drawn(ctx)
    made = batches.split(ctx, out.sample.sample_id, "boss", 6, ["aud1", "aud2"])
    assert [b.items for b in made] == [6, 6, 3]
    assert [b.auditor_id for b in made] == ["aud1", "aud2", "aud1"]
    assert batches.split(ctx, out.sample.sample_id, "boss", 6) == []  # nothing left to batch

    with pytest.raises(PermissionDenied, match="not assigned to 'aud1'"):
        batches.pull(ctx, made[1].batch_id, "aud1", "csv")
    with pytest.raises(PermissionDenied):
        batches.pull(ctx, made[0].batch_id, "boss", "csv")

    p = batches.pull(ctx, made[0].batch_id, "aud1", "csv", "b1.csv")
    text = p.data.decode()
    header = text.splitlines()[0].split(",")
    assert header == list(formats.EXPORT_COLUMNS)
    assert "10." not in text.replace("0.10", "")  # no raw addresses (10.x.y.z) ...
    assert "audit-device-" not in text  # ... and no raw device ids
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["rating_id"]) for r in rows] == [i["rating_id"] for i in p.manifest["items"]]
    assert all(len(r["ip_hash"]) == 32 for r in rows)
    m = p.manifest
    assert m["seed"] == SEED and m["algorithm"] == sampler.ALGORITHM and m["rate"] == "0.1"
    assert m["frame_sha256"] == out.frame.frame_hash and m["checkpoint"] == out.frame.checkpoint
    assert m["file"]["sha256"] == hashlib.sha256(p.data).hexdigest()
    assert all(i["ticket"] == sampler.ticket_number(SEED, i["rating_id"]) for i in m["items"])
    pulls = [
        e
        for e in app.ledger.events_about(f"audit:batch:{made[0].batch_id}")
        if e.kind == "audit.pull"
    ]
    assert len(pulls) == 1 and pulls[0].actor == "aud1"
    assert (
        pulls[0].evidence["file_sha256"] == m["file"]["sha256"]
        and pulls[0].event_id == m["pull_event_id"]
    )
    jl = batches.pull(ctx, made[0].batch_id, "aud1", "jsonl")
    assert [json.loads(x)["rating_id"] for x in jl.data.decode().splitlines()] == [
        int(r["rating_id"]) for r in rows
    ]
    assert batches.list_batches(ctx, out.sample.sample_id)[0].pulls == 2

    batches.assign(ctx, made[1].batch_id, "aud1", "boss")
    assert batches.pull(ctx, made[1].batch_id, "aud1", "csv").rows


# -- findings ------------------------------------------------------------------------------


def _batch(
    ctx: AuditContext, size: int = 20
) -> tuple[DrawOutcome, batches.BatchSummary, list[int]]:
    out = drawn(ctx)
    b = batches.split(ctx, out.sample.sample_id, "boss", size, ["aud1"])[0]
    ids = [r["rating_id"] for r in batches.batch_rows(ctx, b.batch_id)]
    return out, b, ids


def test_a_bad_findings_file_gives_line_errors_and_changes_nothing(audit: Any) -> None:
    app, ctx = audit
    _, b, ids = _batch(ctx)
    before = (count(app.ledger.engine, EVENTS), count(app.ledger.engine, at.audit_findings))
    bad = findings_csv(
        [
            (ids[0], "genuine", ""),
            (ids[1], "fabricted", "typo in code"),
            (ids[2], "fabricated", ""),
            ("x7", "genuine", ""),
            (999999, "genuine", ""),
            (ids[0], "coerced", "again"),
        ]
    )
    with pytest.raises(InvalidInput) as err:
        findings.record_csv(ctx, b.batch_id, "aud1", bad)
    fields = [e.field for e in err.value.errors]
    assert fields == [
        "line 3: code",
        "line 4: note",
        "line 5: rating_id",
        "line 6: rating_id",
        "line 7: rating_id",
    ]
    assert "not in batch" in err.value.errors[3].message
    assert "already has a finding on line 2" in err.value.errors[4].message
    assert (
        count(app.ledger.engine, EVENTS),
        count(app.ledger.engine, at.audit_findings),
    ) == before
    assert all(app.ledger.current(i)[0] is Status.ACCEPTED for i in ids)
    with pytest.raises(InvalidInput, match="missing column"):
        findings.record_csv(ctx, b.batch_id, "aud1", "id,verdict\n1,genuine\n")
    with pytest.raises(InvalidInput, match="no findings"):
        findings.record_csv(ctx, b.batch_id, "aud1", "rating_id,code,note\n")
    with pytest.raises(PermissionDenied):
        findings.record_csv(ctx, b.batch_id, "aud2", findings_csv([(ids[0], "genuine", "")]))


def test_voiding_findings_leave_performance_and_deviations_are_estimated(audit_any: Any) -> None:
    app, ctx = audit_any
    out, b, ids = _batch(ctx)
    codes = ["fabricated", "coerced", "duplicate", "wrong_staff", "cannot_verify", "genuine"]
    by_window_before = {
        r["window_id"]: r for r in performance(app.ledger, "window", app.core.rubric)
    }
    res = findings.record_csv(
        ctx,
        b.batch_id,
        "aud1",
        findings_csv(
            [
                (i, c, "" if c == "genuine" else f"called back: {c}")
                for i, c in zip(ids, codes, strict=False)
            ]
        ),
    )
    assert res.voided == ids[:3] and res.findings == 6 and res.remaining == len(ids) - 6
    for rid, code in zip(ids[:3], codes, strict=False):
        st, _ = app.ledger.current(rid)
        assert st is Status.VOIDED
        void = [e for e in app.ledger.events_of(rid) if e.kind == "void"]
        finding = [e for e in app.ledger.events_of(rid) if e.kind == "audit.finding"]
        assert void[0].reasons == (f"audit.{code}",)
        assert void[0].evidence["finding_event_id"] == finding[0].event_id
        assert void[0].evidence["batch_id"] == b.batch_id and void[0].actor == "aud1"
    assert all(app.ledger.current(i)[0] is Status.ACCEPTED for i in ids[3:6])
    after = {r["window_id"]: r for r in performance(app.ledger, "window", app.core.rubric)}
    assert sum(r["voided"] for r in after.values()) == 3
    assert (
        sum(r["counted"] for r in after.values())
        == sum(r["counted"] for r in by_window_before.values()) - 3
    )
    with pytest.raises(InvalidInput, match="findings are final"):
        findings.record_csv(ctx, b.batch_id, "aud1", findings_csv([(ids[0], "genuine", "")]))

    rep = estimates.report(ctx, out.sample.sample_id)
    overall = next(r for r in rep.rows if r["window_id"] == estimates.ALL)
    assert overall["deviations"] == 5 and overall["audited"] == 6 and overall["voided"] == 3
    assert overall["pending"] == 15 - 6
    # W1's five items were the batch's first: that window is complete and escalates; the
    # others are judged only once fully audited
    assert [e.split(":")[0] for e in rep.escalations] == ["ESCALATE window W1"]
    assert app.log.verify(NOW).ok


def test_not_applicable_brings_in_the_next_item_in_the_same_batch(audit: Any) -> None:
    _app, ctx = audit
    out, b, _ids = _batch(ctx)
    first_w1 = next(i for i in items_of(ctx, out.sample.sample_id) if i["window_id"] == "W1")
    order = window_order(ctx, out.frame.frame_id, "W1")
    res = findings.record_csv(
        ctx,
        b.batch_id,
        "aud1",
        findings_csv([(first_w1["rating_id"], "not_applicable", "no such service")]),
    )
    assert res.replacements == [(first_w1["rating_id"], order[5])]
    st = strata(ctx, out.sample.sample_id)["W1"]
    assert st.take == 6 and st.history[-1]["why"] == "replacement"
    new = next(i for i in items_of(ctx, out.sample.sample_id) if i["rating_id"] == order[5])
    assert new["batch_id"] == b.batch_id and new["rank"] == 6 and new["added"] == "replacement"
    rep = estimates.report(ctx, out.sample.sample_id)
    w1 = next(r for r in rep.rows if r["window_id"] == "W1")
    assert w1["audited"] == 0 and w1["codes"]["not_applicable"] == 1 and w1["pending"] == 5
    m = sample_manifest(ctx, out.sample.sample_id)
    assert verify.verify_bundle(_bundle(ctx, m)).ok


def _bundle(ctx: AuditContext, manifest: dict[str, Any]) -> Bundle:
    return Bundle(lambda: frame_chunks(ctx, manifest["frame"]["frame_id"]), "frame.csv", manifest)


def test_a_concurrent_status_change_rolls_the_whole_file_back(
    audit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, ctx = audit
    _, b, ids = _batch(ctx)
    real = app.ledger.current
    monkeypatch.setattr(app.ledger, "current", lambda rid: (real(rid)[0], real(rid)[1] - 1))
    before = count(app.ledger.engine, EVENTS)
    with pytest.raises(Conflict, match="changed meanwhile"):
        findings.record_csv(
            ctx,
            b.batch_id,
            "aud1",
            findings_csv([(ids[0], "genuine", ""), (ids[1], "fabricated", "x")]),
        )
    assert count(app.ledger.engine, EVENTS) == before
    assert count(app.ledger.engine, at.audit_findings) == 0


# -- expansion, report, publish, verify ---------------------------------------------------


def _audit_window(ctx: AuditContext, sample_id: int, window: str, deviate: int) -> None:
    """Record findings for every pending uniform item of a window (first ``deviate`` deviate)."""
    batches.split(ctx, sample_id, "boss", 100, ["aud1"])
    pending = [
        i
        for i in items_of(ctx, sample_id)
        if i["window_id"] == window and i["code"] is None and i["rank"]
    ]
    by_batch: dict[int, list[tuple[Any, str, str]]] = {}
    for n, i in enumerate(pending):
        code = "cannot_verify" if n < deviate else "genuine"
        by_batch.setdefault(i["batch_id"], []).append(
            (i["rating_id"], code, "no answer" if n < deviate else "")
        )
    for bid, rows in by_batch.items():
        findings.record_csv(ctx, bid, "aud1", findings_csv(rows))


def test_expansion_takes_the_next_items_then_the_whole_window(audit_any: Any) -> None:
    _app, ctx = audit_any
    out = drawn(ctx)
    sid = out.sample.sample_id
    _audit_window(ctx, sid, "W1", deviate=1)
    dry = expand(ctx, sid, "boss", dry_run=True)
    assert [s.window_id for s in dry.expanded] == ["W1"]
    assert strata(ctx, sid)["W1"].take == 5
    notes = {s.window_id: s.note for s in dry.strata}
    assert "not audited yet" in notes["W2"]

    rep = expand(ctx, sid, "boss")
    # + max(ceil(10 % of 40), min 5) = 5 more
    assert [(s.window_id, s.new_take) for s in rep.expanded] == [("W1", 10)]
    order = window_order(ctx, out.frame.frame_id, "W1")
    w1 = [i["rating_id"] for i in items_of(ctx, sid) if i["window_id"] == "W1"]
    assert w1 == order[:10]
    _audit_window(ctx, sid, "W1", deviate=0)
    takes = [5, 10]
    while takes[-1] < 40:
        r = expand(ctx, sid, "boss")
        if not r.expanded:
            break
        takes.append(r.expanded[0].new_take)
        _audit_window(ctx, sid, "W1", deviate=0)
    assert takes == [5, 10, 15, 20, 40]  # up to the 50 % cap, then the whole window
    assert [i["rating_id"] for i in items_of(ctx, sid) if i["window_id"] == "W1"] == order
    history = strata(ctx, sid)["W1"].history
    assert [h["why"] for h in history] == ["draw"] + ["expansion"] * (len(takes) - 1)

    report = estimates.report(ctx, sid)
    w1 = next(r for r in report.rows if r["window_id"] == "W1")
    assert (w1["audited"], w1["deviations"], w1["upper"], w1["projected_upper"]) == (
        40,
        1,
        1 / 40,
        1,
    )
    assert not any(
        "window W1" in e for e in report.escalations
    )  # a census: exact, within tolerance
    m = sample_manifest(ctx, sid)
    assert verify.verify_bundle(_bundle(ctx, m)).ok


def test_a_small_clean_sample_escalates_and_the_report_renders(audit: Any) -> None:
    _, ctx = audit
    out = drawn(ctx)
    _audit_window(ctx, out.sample.sample_id, "W3", deviate=0)
    rep = estimates.report(ctx, out.sample.sample_id)
    w3 = next(r for r in rep.rows if r["window_id"] == "W3")
    # 0 of 5 in a window of 8: with 95 % confidence at most 2 of the 3 unseen deviate
    assert w3["audited"] == 5 and w3["upper"] == 2 / 8
    assert any(e.startswith("ESCALATE window W3") and "too few" in e for e in rep.escalations)
    doc = rep.as_dict()
    assert doc["method"].startswith("exact one-sided bounds")
    assert {s["window_id"] for s in doc["strata"]} == set(COUNTS)
    json.dumps(doc)


def test_publish_then_verify_with_and_without_the_ledger(audit_any: Any, tmp_path: Path) -> None:
    app, ctx = audit_any
    out = drawn(ctx)
    paths = publish(ctx, out.sample.sample_id, tmp_path / "bundle")
    assert [p.name for p in paths] == ["frame.csv", "sample.json"]
    b = load_bundle(tmp_path / "bundle")
    v = verify.verify_bundle(b)
    assert v.ok, v.problems
    verify.verify_frame_on_ledger(app.log, b.frame, NOW, v)
    assert v.ok, v.problems
    assert any("yields exactly the frame's population" in n for n in v.notes)

    # someone moves a sampled rating to another window inside the database
    rid = items_of(ctx, out.sample.sample_id)[0]["rating_id"]
    with app.ledger.engine.begin() as conn:
        conn.execute(RATINGS.update().where(RATINGS.c.rating_id == rid).values(window_id="W9"))
    v2 = verify.verify_bundle(b)
    assert v2.ok  # the published bundle itself is intact ...
    verify.verify_frame_on_ledger(app.log, b.frame, NOW, v2)
    assert any(p.startswith("ledger: rating") for p in v2.problems), (
        v2.problems
    )  # ... the ledger is not


def test_the_risk_stratum_is_labelled_and_never_projected(audit: Any) -> None:
    app, ctx = audit
    ids = [r.rating_id for r in app.ledger.find_ratings(RatingQuery())]
    app.ledger.set_risk({ids[0]: 0.99, ids[1]: 0.97, ids[2]: 0.95, ids[3]: 0.5})
    out = drawn(ctx, risk_extra=3, risk_min=0.6)
    items = items_of(ctx, out.sample.sample_id)
    uniform = {i["rating_id"] for i in items if i["rank"] is not None}
    risky = [
        i["rating_id"] for i in sorted(items, key=lambda i: i["risk_rank"] or 0) if i["risk_rank"]
    ]
    assert risky == [r for r in ids[:3] if r not in uniform]
    assert out.sample.risk_take == len(risky)
    b = batches.split(ctx, out.sample.sample_id, "boss", 100, ["aud1"])[0]
    rows = batches.batch_rows(ctx, b.batch_id)
    assert {r["rating_id"] for r in rows if r["stratum"] == "risk"} == set(risky)
    findings.record_csv(
        ctx, b.batch_id, "aud1", findings_csv([(r, "fabricated", "invented") for r in risky])
    )
    rep = estimates.report(ctx, out.sample.sample_id)
    risk_row = next(r for r in rep.rows if r["window_id"] == estimates.RISK)
    overall = next(r for r in rep.rows if r["window_id"] == estimates.ALL)
    assert risk_row["deviations"] == len(risky) and risk_row["projected"] is None
    assert overall["deviations"] == 0  # targeted items are not projected
    assert verify.verify_bundle(_bundle(ctx, sample_manifest(ctx, out.sample.sample_id))).ok
