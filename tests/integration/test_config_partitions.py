"""Configuration tables sealed per partition, on SQLite and PostgreSQL: ``audit_items``,
one seal per sample.

Each change digests only the sample it touches (counted here: every row
``table_digest`` reads, by table and partition); verify checks every sample against its
latest seal and names the one whose rows were edited, inserted or deleted behind the
engine's back; the engine refuses to change that sample (and only that one); and an
instance that sealed ``audit_items`` whole (before it was partitioned) still verifies,
and is switched to per-sample seals by ``integrity init`` or by its next change, never
over an edit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from audit_factories import populate, register
from factories import backend_url, make_app

import integrity.adapters.sql as sql_adapter
from audit_sampling import batches, findings
from audit_sampling import tables as at
from audit_sampling.context import AuditContext
from audit_sampling.draw import draw_sample
from audit_sampling.expand import expand
from audit_sampling.frame import make_frame
from audit_sampling.records import sample_items
from bootstrap import init_instance
from integrity.app import App
from integrity.catalogue import Kind
from integrity.clock import FrozenClock
from integrity.config_tables import PARTITION_INFO, PARTITIONED_FORMAT, TableDigest
from integrity.errors import ConfigError

NOW = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
SEP = datetime(2026, 9, 3, 1, 0, tzinfo=UTC)
OCT = datetime(2026, 10, 2, 1, 0, tzinfo=UTC)
ITEMS = at.audit_items.name


@dataclass
class Audit:
    app: App
    ctx: AuditContext


@pytest.fixture(params=["sqlite", "postgresql"])
def audit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Audit]:
    app = make_app(tmp_path / "home", backend_url(request, tmp_path), clock=FrozenClock(NOW))
    populate(app, {"W1": 40, "W2": 25}, SEP)
    populate(app, {"W1": 30, "W2": 20}, OCT)
    register(app, NOW)
    yield Audit(app, AuditContext.from_app(app))
    app.close()


def draw(a: Audit, period: str, seed: str) -> int:
    frame = make_frame(a.ctx, period, "boss").frame
    return draw_sample(a.ctx, frame.frame_id, seed, "boss").sample.sample_id


def items(a: Audit, sample_id: int) -> list[dict[str, Any]]:
    with a.app.ledger.reading() as conn:
        rows = conn.execute(
            sa.select(at.audit_items)
            .where(at.audit_items.c.sample_id == sample_id)
            .order_by(at.audit_items.c.rating_id)
        )
        return [dict(r) for r in rows.mappings()]


def seals_of(a: Audit, sample_id: int) -> list[int]:
    evs = a.app.ledger.events_about(f"table:{ITEMS}/sample_id={sample_id}")
    assert all(e.kind == Kind.CONFIG_SEALED for e in evs)
    return [e.event_id for e in evs if e.event_id is not None]


@pytest.fixture
def digested(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, int]]:
    """Every digest the ledger computes: (table, partition value or None, rows read)."""
    seen: list[tuple[str, Any, int]] = []
    real = sql_adapter.table_digest

    def counting(conn: sa.Connection, name: str, *args: Any, **kw: Any) -> TableDigest:
        got = real(conn, name, *args, **kw)
        seen.append((name, None if got.partition is None else got.partition[1], got.rows))
        return got

    monkeypatch.setattr(sql_adapter, "table_digest", counting)
    return seen


def items_digested(seen: list[tuple[str, Any, int]]) -> list[tuple[Any, int]]:
    return [(part, rows) for name, part, rows in seen if name == ITEMS]


def test_each_change_digests_only_the_sample_it_touches(
    audit: Audit, digested: list[tuple[str, Any, int]]
) -> None:
    first = draw(audit, "2026-09", "11111111111111111111")
    n1 = len(items(audit, first))
    assert items_digested(digested) == [(first, n1)]  # sealed; nothing to check before
    digested.clear()

    second = draw(audit, "2026-10", "22222222222222222222")
    n2 = len(items(audit, second))
    assert n1 and n2
    assert items_digested(digested) == [(second, n2)]  # not a row of the first sample
    digested.clear()

    made = batches.split(audit.ctx, second, "boss", 4, ["aud1"])
    assert sum(b.items for b in made) == n2
    # checked against its seal before the first write, then sealed: twice its items
    assert items_digested(digested) == [(second, n2), (second, n2)]
    digested.clear()

    report = audit.app.log.verify(NOW)
    assert report.ok, report.problems
    assert sorted(items_digested(digested)) == sorted([(first, n1), (second, n2)])
    assert len(seals_of(audit, first)) == 1 and len(seals_of(audit, second)) == 2


def test_tampering_with_one_sample_is_named_and_refused_for_that_sample_only(
    audit: Audit,
) -> None:
    first = draw(audit, "2026-09", "11111111111111111111")
    second = draw(audit, "2026-10", "22222222222222222222")
    assert audit.app.log.verify(NOW).ok
    [seal1] = seals_of(audit, first)
    victim = items(audit, first)[0]
    key = sa.and_(
        at.audit_items.c.sample_id == first, at.audit_items.c.rating_id == victim["rating_id"]
    )
    n1 = len(items(audit, first))

    # deleted behind the engine's back: named by sample, the other sample is clean
    with audit.app.ledger.engine.begin() as conn:
        conn.execute(at.audit_items.delete().where(key))
    problems = audit.app.log.verify(NOW).problems
    assert problems == [
        f"table {ITEMS} differs from what event {seal1} sealed for sample_id {first} "
        f"({n1 - 1} row(s) now, {n1} sealed)"
    ]
    # the engine will not seal over it: batching that sample is refused, nothing written ...
    last = audit.app.ledger.last_event_id()
    with pytest.raises(ConfigError, match=f"event {seal1} sealed for sample_id {first}"):
        batches.split(audit.ctx, first, "boss", 4, ["aud1"])
    assert audit.app.ledger.last_event_id() == last
    # ... while another sample's rows, sealed apart, still change
    assert batches.split(audit.ctx, second, "boss", 4, ["aud1"])
    assert len(audit.app.log.verify(NOW).problems) == 1

    # put back, then edited in place; then a row inserted
    with audit.app.ledger.engine.begin() as conn:
        conn.execute(at.audit_items.insert().values(**victim))
    assert audit.app.log.verify(NOW).ok
    with audit.app.ledger.engine.begin() as conn:
        conn.execute(at.audit_items.update().where(key).values(rank=999))
    [problem] = audit.app.log.verify(NOW).problems
    assert f"sealed for sample_id {first} ({n1} row(s) now, {n1} sealed)" in problem
    with audit.app.ledger.engine.begin() as conn:
        conn.execute(at.audit_items.update().where(key).values(rank=victim["rank"]))
        outsider = conn.execute(
            sa.select(sa.func.min(sa.column("rating_id")))
            .select_from(sa.table("ratings"))
            .where(
                ~sa.column("rating_id").in_(
                    sa.select(at.audit_items.c.rating_id).where(at.audit_items.c.sample_id == first)
                )
            )
        ).scalar_one()
        conn.execute(at.audit_items.insert().values(**{**victim, "rating_id": outsider}))
    [problem] = audit.app.log.verify(NOW).problems
    assert f"sealed for sample_id {first} ({n1 + 1} row(s) now, {n1} sealed)" in problem


def test_a_sample_with_rows_but_no_seal_is_named(audit: Audit) -> None:
    """A whole sample forged behind the engine's back, on a frame nobody drew: its items
    are a partition no seal covers (and the samples table differs from its seal)."""
    first = draw(audit, "2026-09", "11111111111111111111")
    frame = make_frame(audit.ctx, "2026-10", "boss").frame
    victim = items(audit, first)[0]
    with audit.app.ledger.engine.begin() as conn:
        row = conn.execute(sa.select(at.audit_samples).where(at.audit_samples.c.sample_id == first))
        sample = dict(row.mappings().one())
        sample.pop("sample_id")
        forged = conn.execute(
            at.audit_samples.insert()
            .values(**{**sample, "frame_id": frame.frame_id, "seed": "forged"})
            .returning(at.audit_samples.c.sample_id)
        ).scalar_one()
        conn.execute(at.audit_items.insert().values(**{**victim, "sample_id": forged}))
    problems = audit.app.log.verify(NOW).problems
    assert f"table {ITEMS} has 1 row(s) with sample_id {forged} but no config.sealed " in (
        " ".join(problems)
    )
    assert any(p.startswith("table audit_samples differs") for p in problems)
    assert len([p for p in problems if ITEMS in p]) == 1  # the drawn sample is clean


# -- older instances: audit_items sealed whole -------------------------------------------------


def legacy_draw(a: Audit, monkeypatch: pytest.MonkeyPatch, period: str, seed: str) -> int:
    """A draw as an instance from before partitioned seals made it: ``audit_items``
    sealed whole."""
    with monkeypatch.context() as m:
        m.delitem(at.audit_items.info, PARTITION_INFO)
        return draw(a, period, seed)


def test_a_whole_table_seal_still_verifies_and_init_switches_it_to_samples(
    audit: Audit, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = legacy_draw(audit, monkeypatch, "2026-09", "11111111111111111111")
    [whole] = audit.app.ledger.events_about(f"table:{ITEMS}")
    assert whole.evidence["format"] == "config-table/v1" and not seals_of(audit, first)
    assert audit.app.log.verify(NOW).ok
    # an edit of the whole-sealed table is named as before, and init does not launder it
    victim = items(audit, first)[0]
    key = sa.and_(
        at.audit_items.c.sample_id == first, at.audit_items.c.rating_id == victim["rating_id"]
    )
    with audit.app.ledger.engine.begin() as conn:
        conn.execute(at.audit_items.update().where(key).values(batch_id=None, rank=77))
    init_instance(audit.app.settings, clock=FrozenClock(NOW))
    [problem] = audit.app.log.verify(NOW).problems
    assert problem.startswith(f"table {ITEMS} differs from what event {whole.event_id} sealed (")
    assert len(audit.app.ledger.events_about(f"table:{ITEMS}")) == 1 and not seals_of(audit, first)
    # restored, init switches it: the switch, then one seal per sample
    with audit.app.ledger.engine.begin() as conn:
        conn.execute(at.audit_items.update().where(key).values(rank=victim["rank"]))
    init_instance(audit.app.settings, clock=FrozenClock(NOW))
    [_, switch] = audit.app.ledger.events_about(f"table:{ITEMS}")
    assert switch.evidence == {
        "table": ITEMS,
        "format": PARTITIONED_FORMAT,
        "partition": "sample_id",
    }
    [seal] = seals_of(audit, first)
    assert switch.event_id is not None and seal > switch.event_id
    assert audit.app.log.verify(NOW).ok


def test_a_whole_table_seal_is_switched_by_the_next_change(
    audit: Audit, monkeypatch: pytest.MonkeyPatch, digested: list[tuple[str, Any, int]]
) -> None:
    first = legacy_draw(audit, monkeypatch, "2026-09", "11111111111111111111")
    n1 = len(items(audit, first))
    digested.clear()
    second = draw(audit, "2026-10", "22222222222222222222")
    n2 = len(items(audit, second))
    # the whole table checked against its whole seal once, then every sample sealed
    assert items_digested(digested) == [(None, n1), (first, n1), (second, n2)]
    assert len(seals_of(audit, first)) == 1 and len(seals_of(audit, second)) == 1
    assert audit.app.log.verify(NOW).ok
    digested.clear()
    batches.split(audit.ctx, second, "boss", 4, ["aud1"])
    assert items_digested(digested) == [(second, n2), (second, n2)]
    assert audit.app.log.verify(NOW).ok


def findings_csv(rows: list[tuple[int, str, str]]) -> str:
    return "rating_id,code,note\n" + "".join(f"{r},{c},{n}\n" for r, c, n in rows)


def test_replacement_and_expansion_digest_only_their_sample(
    audit: Audit, digested: list[tuple[str, Any, int]]
) -> None:
    first = draw(audit, "2026-09", "11111111111111111111")
    second = draw(audit, "2026-10", "22222222222222222222")
    [batch] = batches.split(audit.ctx, second, "boss", 100, ["aud1"])
    w1 = [i for i in sample_items(audit.ctx, second) if i["window_id"] == "W1" and i["rank"]]
    digested.clear()
    # a replacement (not applicable: the next item of the window joins the batch)
    out = findings.record_csv(
        audit.ctx,
        batch.batch_id,
        "aud1",
        findings_csv(
            [(w1[0]["rating_id"], "not_applicable", "no such service")]
            + [(i["rating_id"], "genuine", "") for i in w1[2:]]
            + [(w1[1]["rating_id"], "cannot_verify", "no answer")]
        ),
    )
    assert out.replacements and out.replacements[0][1] is not None
    assert {part for part, _ in items_digested(digested)} == {second}
    replacement = out.replacements[0][1]
    findings.record_csv(
        audit.ctx, batch.batch_id, "aud1", findings_csv([(replacement, "genuine", "")])
    )
    digested.clear()
    # an expansion (a deviation in W1)
    report = expand(audit.ctx, second, "boss")
    assert [s.window_id for s in report.expanded] == ["W1"] and report.added
    n2 = len(items(audit, second))
    assert items_digested(digested)[-1] == (second, n2)
    assert {part for part, _ in items_digested(digested)} == {second}
    assert audit.app.log.verify(NOW).ok
    assert len(seals_of(audit, first)) == 1
