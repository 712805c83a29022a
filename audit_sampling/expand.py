"""Step 3, expansion: grow a window whose audit shows too many deviations.

A fully audited window whose exact deviation upper bound exceeds the tolerable rate
gets the next items in the same ticket order (``expansion_step`` of the window, at
least the minimum) up to ``expansion_cap``; the next expansion takes the whole
window. The new items, the strata's new takes (with why they grew) and the
``audit.expand`` event are written in one unit of work.

The helpers that add an item to a window and move its take serve replacements of
``not_applicable`` items too (:mod:`audit_sampling.findings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from audit_sampling import sampler
from audit_sampling import tables as at
from audit_sampling.context import AuditContext, sample_subject
from audit_sampling.draw import item_row, stream_frame
from audit_sampling.records import (
    StratumRecord,
    load_frame,
    load_sample,
    strata,
    uniform_progress,
)
from audit_sampling.stats import estimate
from integrity.catalogue import Kind
from integrity.errors import Conflict
from integrity.model import Event
from integrity.sqlkit import canonical_json


@dataclass
class StratumStatus:
    """Where one window of a sample stands: findings so far and the exact bound."""

    window_id: str
    population: int
    take: int
    audited: int
    deviations: int
    pending: int
    upper: float | None
    new_take: int | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


EXPANSION_COLUMNS = (
    "window_id",
    "population",
    "take",
    "audited",
    "deviations",
    "pending",
    "upper",
    "new_take",
    "note",
)


@dataclass
class Expansion:
    sample_id: int
    strata: list[StratumStatus] = field(default_factory=list)
    added: int = 0

    @property
    def expanded(self) -> list[StratumStatus]:
        return [s for s in self.strata if s.new_take is not None]


def expand(
    ctx: AuditContext, sample_ref: int | str | None, actor: str | None, dry_run: bool = False
) -> Expansion:
    """Grow every fully audited window whose upper bound exceeds the tolerable rate."""
    person = ctx.supervisor(actor)
    cfg = ctx.config
    sample = load_sample(ctx, sample_ref)
    frame = load_frame(ctx, sample.frame_id)
    current = strata(ctx, sample.sample_id)
    progress = uniform_progress(ctx, sample.sample_id)
    report = Expansion(sample.sample_id)
    grow: dict[str, int] = {}
    for w, st in current.items():
        audited, devs, pending = progress.get(w, (0, 0, 0))
        status = StratumStatus(w, st.population, st.take, audited, devs, pending, None)
        report.strata.append(status)
        if st.population == 0:
            status.note = "empty"
            continue
        if pending:
            status.note = f"{pending} item(s) not audited yet"
            continue
        if audited == 0:
            status.note = "nothing applicable audited"
            continue
        est = estimate(devs, audited, st.population, cfg.confidence)
        status.upper = est.upper
        if not est.exceeds(cfg.tolerable_rate):
            status.note = "within tolerable rate"
            continue
        if st.take >= st.population:
            status.note = "whole window audited: escalate"
            continue
        new = sampler.expansion_take(
            st.population, st.take, cfg.expansion_step, cfg.expansion_cap, sample.min_per_stratum
        )
        status.new_take = new
        status.note = "census" if new >= st.population else "expanded"
        grow[w] = new
    if not grow or dry_run:
        return report
    result = stream_frame(ctx, frame, sample.seed, grow)
    tickets = result.tickets()
    now = ctx.now()
    with ctx.ledger.unit_of_work() as uow:
        conn = uow.connection
        existing = existing_items(conn, sample.sample_id)
        for w, new in grow.items():
            st = current[w]
            ids = result.uniform[w][st.take : new]
            for rank, rid in enumerate(ids, st.take + 1):
                add_uniform_item(
                    conn, sample.sample_id, existing, rid, w, rank, tickets.number(rid), "expansion"
                )
            report.added += len(ids)
            upper = next(s.upper for s in report.strata if s.window_id == w)
            move_take(
                conn,
                sample.sample_id,
                st,
                new,
                {
                    "why": "expansion",
                    "at": now.isoformat(),
                    "by": person.person_id,
                    "upper": upper,
                    "tolerable_rate": cfg.tolerable_rate,
                    "confidence": cfg.confidence,
                },
            )
        uow.append(
            Event(
                kind=Kind.AUDIT_EXPAND,
                actor=person.person_id,
                at=now,
                subject=sample_subject(sample.sample_id),
                evidence={
                    "confidence": cfg.confidence,
                    "tolerable_rate": cfg.tolerable_rate,
                    "strata": [s.as_dict() for s in report.expanded],
                },
            )
        )
        uow.seal_tables(at=now, actor=person.person_id)  # strata
    return report


# -- growing a window (expansion and replacement) -----------------------------------------


def existing_items(conn: Connection, sample_id: int) -> dict[int, tuple[int | None, int | None]]:
    """Every item of a sample: rating id -> (rank, risk rank), read in this transaction."""
    it = at.audit_items
    rows = conn.execute(
        sa.select(it.c.rating_id, it.c.rank, it.c.risk_rank).where(it.c.sample_id == sample_id)
    )
    return {int(r): (rank, rr) for r, rank, rr in rows}


def add_uniform_item(
    conn: Connection,
    sample_id: int,
    existing: dict[int, tuple[int | None, int | None]],
    rid: int,
    window: str,
    rank: int,
    ticket: str,
    added: str,
    batch_id: int | None = None,
) -> bool:
    """Add a uniform item; an item already sampled for risk gets its rank. True if new."""
    it = at.audit_items
    if rid in existing:
        conn.execute(
            it.update().where(it.c.sample_id == sample_id, it.c.rating_id == rid).values(rank=rank)
        )
        existing[rid] = (rank, existing[rid][1])
        return False
    conn.execute(
        it.insert(),
        {
            "sample_id": sample_id,
            **item_row(rid, window, ticket, rank=rank, added=added, batch_id=batch_id),
        },
    )
    existing[rid] = (rank, None)
    return True


def move_take(
    conn: Connection, sample_id: int, st: StratumRecord, new: int, step: dict[str, Any]
) -> None:
    """Set a window's take (optimistically: it must still be ``st.take``) and log why."""
    s = at.audit_strata
    history = [*st.history, {"take": new, **step}]
    res = conn.execute(
        s.update()
        .where(s.c.sample_id == sample_id, s.c.window_id == st.window_id, s.c.take == st.take)
        .values(take=new, history=canonical_json(history))
    )
    if res.rowcount != 1:
        raise Conflict(f"window {st.window_id} of sample {sample_id} changed meanwhile; run again")
