"""Frames and samples on the ledger: commit the frame, draw from a public seed, expand.

The order of an audit, and why:

1. ``make_frame``: seal the ledger, take a checkpoint, and fix the period's
   population *as of that checkpoint* (a rating counts if its last sealed status
   event says ``accepted``). The frame file is stored and written out before any
   seed exists; its SHA-256 names it.
2. ``draw_sample``: with a seed made public after the frame (dice, a lottery
   draw), take each window's items in ticket order. A seed is locked to the first
   frame it is used on; a frame and a period are drawn once; only the latest
   frame of a period can be drawn, so nobody can pick among frames once the seed
   is known. Drawing again with the same inputs returns the same sample.
3. ``expand``: a fully audited window whose deviation upper bound exceeds the
   tolerable rate gets the next items in the same ticket order, up to a cap, then
   the whole window.

Every change is written with its ledger event in one transaction.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from audit_sampling import sampler
from audit_sampling import tables as at
from audit_sampling.context import (
    AuditContext,
    FrameRecord,
    SampleRecord,
    StratumRecord,
    dumps,
    frame_chunks,
    frame_subject,
    frames,
    load_frame,
    load_sample,
    sample_subject,
    strata,
)
from audit_sampling.frames import FrameError, FrameHeader, FrameReader, FrameWriter
from audit_sampling.parallel import draw_frame
from audit_sampling.stats import estimate
from audit_sampling.verify import SAMPLE_FORMAT
from integrity.adapters import tables as t
from integrity.sqlkit import translate_errors
from integrity.errors import Conflict, EngineError, FieldError, InvalidInput, PolicyViolation
from integrity.model import Event, Status
from integrity.reports import Period

DEVIATIONS = ("fabricated", "coerced", "duplicate", "wrong_staff", "cannot_verify")
NOT_APPLICABLE = "not_applicable"
TICKET_RULE = (
    "consistent_sampler first_fraction(str(rating_id), 'integrity-audit/v1|' + seed); "
    "per window the take smallest tickets"
)


# -- frames --------------------------------------------------------------------------------


def _population(size: int, start: datetime, end: datetime) -> tuple[sa.Select[Any], Any]:
    """Ratings of the period whose last sealed status event (leaf < size) is ``accepted``."""
    ev, leaves, r = t.events, t.log_leaves, t.ratings
    last = (
        sa.select(ev.c.rating_id.label("rid"), sa.func.max(ev.c.event_id).label("eid"))
        .select_from(
            ev.join(leaves, leaves.c.event_id == ev.c.event_id).join(
                r, r.c.rating_id == ev.c.rating_id
            )
        )
        .where(
            leaves.c.leaf_index < size,
            ev.c.status.is_not(None),
            r.c.occurred_at >= start,
            r.c.occurred_at < end,
        )
        .group_by(ev.c.rating_id)
        .subquery("last_status")
    )
    st = ev.alias("st")
    joined = (
        r.join(last, last.c.rid == r.c.rating_id)
        .join(st, st.c.event_id == last.c.eid)
        .outerjoin(t.rating_status, t.rating_status.c.rating_id == r.c.rating_id)
    )
    rows = (
        sa.select(
            r.c.rating_id,
            r.c.window_id,
            sa.func.coalesce(t.rating_status.c.risk, 0.0).label("risk"),
        )
        .select_from(joined)
        .where(st.c.status == Status.ACCEPTED.value)
        .order_by(r.c.rating_id)
    )
    counts = (
        sa.select(r.c.window_id, sa.func.count())
        .select_from(joined)
        .where(st.c.status == Status.ACCEPTED.value)
        .group_by(r.c.window_id)
    )
    return rows, counts


def population_at(
    conn: Connection, size: int, start: datetime, end: datetime
) -> tuple[dict[str, int], Iterator[tuple[int, str, float]]]:
    """Stratum sizes and the rows (ascending id) of a period's population at log size ``size``."""
    rows_q, counts_q = _population(size, start, end)
    counts = {str(w): int(n) for w, n in conn.execute(counts_q)}

    def rows() -> Iterator[tuple[int, str, float]]:
        result = conn.execution_options(yield_per=20000).execute(rows_q)
        for rid, win, risk in result:
            yield int(rid), str(win), min(1.0, max(0.0, float(risk or 0.0)))

    return counts, rows()


@dataclass(frozen=True)
class FrameResult:
    frame: FrameRecord
    path: Path | None


def make_frame(
    ctx: AuditContext, period_text: str, actor: str | None, out: Path | None = None
) -> FrameResult:
    """Checkpoint the ledger and commit the period's frame; write it to ``out`` too.

    Without ``out`` the file goes to ``<home>/audit/frame-<period>-<sha12>.csv``.
    """
    person = ctx.supervisor(actor)
    period = Period.month(period_text, ctx.timezone)
    drawn = _drawn_in(ctx, period.label)
    if drawn is not None:
        raise PolicyViolation(
            f"{period.label} already has sample {drawn[0]} (frame {drawn[1]}); a period is "
            "drawn once, so a new frame could never be drawn"
        )
    now = ctx.now()
    head = ctx.log.checkpoint(now)
    tmp: Path | None = None
    compressor = zlib.compressobj(6)
    parts: list[bytes] = []
    with translate_errors(), ctx.ledger.engine.connect() as conn:
        counts, rows = population_at(conn, head.size, period.start, period.end)
        header = FrameHeader(
            period=period.label,
            timezone=str(ctx.timezone),
            start=period.start.isoformat(),
            end=period.end.isoformat(),
            checkpoint=head.checkpoint(),
            strata=counts,
        )
        target = out or (
            ctx.home / "audit" / f"frame-{period.label}.csv" if ctx.home is not None else None
        )
        fh = None
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            fh = open(tmp, "wb")  # noqa: SIM115 - closed below, renamed after commit

        def sink(data: bytes) -> None:
            parts.append(compressor.compress(data))
            if fh is not None:
                fh.write(data)

        try:
            writer = FrameWriter(header, sink)
            writer.write(rows)
            digest = writer.close()
        finally:
            if fh is not None:
                fh.close()
    parts.append(compressor.flush())
    blob = b"".join(parts)
    try:
        with ctx.ledger.begin() as conn:
            exists = conn.execute(
                sa.select(at.audit_frames.c.frame_id).where(
                    at.audit_frames.c.frame_hash == digest.sha256
                )
            ).scalar()
            if exists is not None:  # the ledger did not move at all since that frame
                frame_id = int(exists)
            else:
                frame_id = conn.execute(
                    at.audit_frames.insert().returning(at.audit_frames.c.frame_id),
                    {
                        "frame_hash": digest.sha256,
                        "period": period.label,
                        "timezone": str(ctx.timezone),
                        "period_start": period.start,
                        "period_end": period.end,
                        "checkpoint": header.checkpoint,
                        "log_size": head.size,
                        "ratings": digest.ratings,
                        "strata": dumps(dict(sorted(counts.items()))),
                        "content": blob,
                        "created_at": now,
                        "created_by": person.person_id,
                    },
                ).scalar_one()
                ctx.ledger.append_in(
                    conn,
                    Event(
                        kind="audit.frame",
                        actor=person.person_id,
                        at=now,
                        subject=frame_subject(frame_id),
                        evidence={
                            "frame_sha256": digest.sha256,
                            "period": period.label,
                            "checkpoint": header.checkpoint,
                            "ratings": digest.ratings,
                            "windows": len(counts),
                        },
                    ),
                )
    except BaseException:
        if tmp is not None and tmp.exists():
            tmp.unlink()
        raise
    path = None
    if tmp is not None and target is not None:
        if out is None:
            target = target.with_name(f"frame-{period.label}-{digest.sha256[:12]}.csv")
        os.replace(tmp, target)
        path = target
    return FrameResult(load_frame(ctx, frame_id), path)


# -- drawing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrawOutcome:
    sample: SampleRecord
    frame: FrameRecord
    strata: dict[str, StratumRecord]
    created: bool

    @property
    def items(self) -> int:
        return sum(s.take for s in self.strata.values()) + self.sample.risk_take


def check_seed(ctx: AuditContext, seed: str) -> None:
    """A seed must be long enough to be unguessable and plain printable text."""
    problems = []
    if len(seed) < ctx.config.min_seed_chars:
        problems.append(
            f"at least {ctx.config.min_seed_chars} characters are required "
            "(e.g. 20 decimal digits from public dice rolls)"
        )
    if len(seed) > 256:
        problems.append("at most 256 characters")
    if not seed.isprintable() or seed != seed.strip():
        problems.append("printable text without leading or trailing spaces")
    if problems:
        raise InvalidInput([FieldError("seed", p) for p in problems], what="seed")


def stream_frame(
    ctx: AuditContext,
    frame: FrameRecord,
    seed: str,
    takes: Mapping[str, int],
    *,
    risk_take: int = 0,
    risk_min: float = 0.0,
    risk_base: Mapping[str, int] | None = None,
) -> sampler.Draw:
    """Re-read the stored frame once (checking it against its SHA-256) and draw from it."""
    try:
        result, digest = draw_frame(
            lambda: FrameReader(frame_chunks(ctx, frame.frame_id)),
            seed,
            takes,
            risk_take=risk_take,
            risk_min=risk_min,
            risk_base=risk_base,
        )
    except FrameError as err:
        raise EngineError(f"stored frame {frame.frame_id} is damaged: {err}") from None
    if digest.sha256 != frame.frame_hash:
        raise EngineError(
            f"stored frame {frame.frame_id} no longer matches its SHA-256 {frame.frame_hash}"
        )
    return result


def draw_sample(
    ctx: AuditContext,
    frame_ref: str | int,
    seed: str,
    actor: str | None,
    *,
    rate: sampler.Rate | None = None,
    minimum: int | None = None,
    risk_extra: int | None = None,
    risk_min: float | None = None,
    seed_note: str = "",
) -> DrawOutcome:
    """Draw the sample of a frame from a public seed (see the module docstring)."""
    person = ctx.supervisor(actor)
    check_seed(ctx, seed)
    cfg = ctx.config
    try:
        r = sampler.as_rate(cfg.rate if rate is None else rate)
    except ValueError as err:
        raise InvalidInput([FieldError("rate", str(err))], what="draw") from None
    minimum = cfg.min_per_stratum if minimum is None else minimum
    risk_extra = cfg.risk_extra if risk_extra is None else risk_extra
    risk_min = cfg.risk_min if risk_min is None else risk_min
    if minimum < 0 or risk_extra < 0:
        raise InvalidInput([FieldError("min/risk", "must not be negative")], what="draw")
    frame = load_frame(ctx, frame_ref)
    params = {
        "rate": sampler.rate_text(r),
        "min_per_stratum": minimum,
        "risk_extra": risk_extra,
        "risk_min": float(risk_min),
    }

    existing = _sample_by_seed(ctx, seed)
    if existing is not None:
        if existing.frame_id != frame.frame_id:
            raise PolicyViolation(
                f"seed already used for frame {existing.frame_id} (sample {existing.sample_id}); "
                "a seed is locked to the first frame it was used on"
            )
        used = {
            "rate": existing.rate,
            "min_per_stratum": existing.min_per_stratum,
            "risk_extra": existing.risk_extra,
            "risk_min": existing.risk_min,
        }
        if used != params:
            raise PolicyViolation(
                f"frame {frame.frame_id} was drawn with {used} as sample {existing.sample_id}; "
                "a frame is drawn once (grow it with `integrity audit expand`)"
            )
        return DrawOutcome(existing, frame, strata(ctx, existing.sample_id), created=False)
    _check_drawable(ctx, frame)

    takes = sampler.plan(frame.strata, r, minimum)
    result = stream_frame(ctx, frame, seed, takes, risk_take=risk_extra, risk_min=risk_min)
    tickets = result.tickets()
    now = ctx.now()
    items: dict[int, dict[str, Any]] = {}
    for win, ids in result.uniform.items():
        for rank, rid in enumerate(ids, 1):
            items[rid] = item_row(rid, win, tickets.number(rid), rank=rank)
    for rank, rid in enumerate(result.risk, 1):
        win, score = result.risk_info[rid]
        items[rid] = item_row(rid, win, tickets.number(rid), risk_rank=rank, risk=score)
    step = {"take": 0, "why": "draw", "at": now.isoformat(), "by": person.person_id}
    try:
        with ctx.ledger.begin() as conn:
            sample_id = conn.execute(
                at.audit_samples.insert().returning(at.audit_samples.c.sample_id),
                {
                    "frame_id": frame.frame_id,
                    "seed": seed,
                    "seed_note": seed_note,
                    "algorithm": sampler.ALGORITHM,
                    "rate": params["rate"],
                    "min_per_stratum": minimum,
                    "risk_extra": risk_extra,
                    "risk_min": float(risk_min),
                    "risk_take": len(result.risk),
                    "risk_history": dumps([{**step, "take": len(result.risk)}]),
                    "drawn_at": now,
                    "drawn_by": person.person_id,
                },
            ).scalar_one()
            conn.execute(
                at.audit_strata.insert(),
                [
                    {
                        "sample_id": sample_id,
                        "window_id": w,
                        "population": n,
                        "base_take": takes[w],
                        "take": takes[w],
                        "history": dumps([{**step, "take": takes[w]}]),
                    }
                    for w, n in sorted(frame.strata.items())
                ],
            )
            if items:
                conn.execute(
                    at.audit_items.insert(),
                    [{"sample_id": sample_id, **row} for row in items.values()],
                )
            ctx.ledger.append_in(
                conn,
                Event(
                    kind="audit.draw",
                    actor=person.person_id,
                    at=now,
                    subject=sample_subject(sample_id),
                    evidence={
                        "algorithm": sampler.ALGORITHM,
                        "seed": seed,
                        "seed_note": seed_note,
                        "frame_id": frame.frame_id,
                        "frame_sha256": frame.frame_hash,
                        "checkpoint": frame.checkpoint,
                        **params,
                        "uniform_items": sum(takes.values()),
                        "risk_items": len(result.risk),
                    },
                ),
            )
    except sa.exc.IntegrityError:
        raise Conflict(
            "another draw on this frame or with this seed committed first; run the command again"
        ) from None
    sample = load_sample(ctx, sample_id)
    return DrawOutcome(sample, frame, strata(ctx, sample_id), created=True)


def item_row(
    rid: int,
    window: str,
    ticket: str,
    *,
    rank: int | None = None,
    risk_rank: int | None = None,
    risk: float = 0.0,
    added: str = "draw",
    batch_id: int | None = None,
) -> dict[str, Any]:
    return {
        "rating_id": rid,
        "window_id": window,
        "rank": rank,
        "risk_rank": risk_rank,
        "ticket": ticket,
        "risk": risk,
        "added": added,
        "batch_id": batch_id,
    }


def _sample_by_seed(ctx: AuditContext, seed: str) -> SampleRecord | None:
    with translate_errors(), ctx.ledger.engine.connect() as conn:
        sid = conn.execute(
            sa.select(at.audit_samples.c.sample_id).where(at.audit_samples.c.seed == seed)
        ).scalar()
    return None if sid is None else load_sample(ctx, int(sid))


def _check_drawable(ctx: AuditContext, frame: FrameRecord) -> None:
    same_period = frames(ctx, frame.period)
    latest = max(f.frame_id for f in same_period)
    if frame.frame_id != latest:
        raise PolicyViolation(
            f"frame {frame.frame_id} is superseded by frame {latest} for {frame.period}; "
            "only the latest frame of a period can be drawn"
        )
    drawn = _drawn_in(ctx, frame.period)
    if drawn is not None:
        raise PolicyViolation(
            f"{frame.period} already has sample {drawn[0]} (frame {drawn[1]}); "
            "a period is drawn once"
        )


def _drawn_in(ctx: AuditContext, period: str) -> tuple[int, int] | None:
    """(sample id, frame id) of the period's sample, if it was drawn."""
    s, f = at.audit_samples, at.audit_frames
    with translate_errors(), ctx.ledger.engine.connect() as conn:
        row = conn.execute(
            sa.select(s.c.sample_id, s.c.frame_id)
            .select_from(s.join(f, f.c.frame_id == s.c.frame_id))
            .where(f.c.period == period)
        ).first()
    return None if row is None else (int(row[0]), int(row[1]))


# -- expansion -----------------------------------------------------------------------------


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


@dataclass
class Expansion:
    sample_id: int
    strata: list[StratumStatus] = field(default_factory=list)
    added: int = 0

    @property
    def expanded(self) -> list[StratumStatus]:
        return [s for s in self.strata if s.new_take is not None]


def uniform_progress(ctx: AuditContext, sample_id: int) -> dict[str, tuple[int, int, int]]:
    """Per window: (audited, deviations, pending) over its uniform items."""
    it, fi = at.audit_items, at.audit_findings
    q = (
        sa.select(it.c.window_id, fi.c.code)
        .select_from(
            it.outerjoin(
                fi, sa.and_(fi.c.sample_id == it.c.sample_id, fi.c.rating_id == it.c.rating_id)
            )
        )
        .where(it.c.sample_id == sample_id, it.c.rank.is_not(None))
    )
    out: dict[str, list[int]] = {}
    with translate_errors(), ctx.ledger.engine.connect() as conn:
        for win, code in conn.execute(q):
            acc = out.setdefault(win, [0, 0, 0])
            if code is None:
                acc[2] += 1
            elif code != NOT_APPLICABLE:
                acc[0] += 1
                acc[1] += code in DEVIATIONS
    return {w: (a, d, p) for w, (a, d, p) in out.items()}


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
    with ctx.ledger.begin() as conn:
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
        ctx.ledger.append_in(
            conn,
            Event(
                kind="audit.expand",
                actor=person.person_id,
                at=now,
                subject=sample_subject(sample.sample_id),
                evidence={
                    "confidence": cfg.confidence,
                    "tolerable_rate": cfg.tolerable_rate,
                    "strata": [s.as_dict() for s in report.expanded],
                },
            ),
        )
    return report


def existing_items(conn: Connection, sample_id: int) -> dict[int, tuple[int | None, int | None]]:
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
        .values(take=new, history=dumps(history))
    )
    if res.rowcount != 1:
        raise Conflict(f"window {st.window_id} of sample {sample_id} changed meanwhile; run again")


# -- manifest and bundle ------------------------------------------------------------------


def sample_items(ctx: AuditContext, sample_id: int) -> list[dict[str, Any]]:
    """Every item of a sample: window, ranks, ticket, how it was added, batch, finding code."""
    it, fi = at.audit_items, at.audit_findings
    q = (
        sa.select(
            it.c.rating_id,
            it.c.window_id,
            it.c.rank,
            it.c.risk_rank,
            it.c.ticket,
            it.c.risk,
            it.c.added,
            it.c.batch_id,
            fi.c.code,
        )
        .select_from(
            it.outerjoin(
                fi, sa.and_(fi.c.sample_id == it.c.sample_id, fi.c.rating_id == it.c.rating_id)
            )
        )
        .where(it.c.sample_id == sample_id)
    )
    with translate_errors(), ctx.ledger.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
    rows.sort(key=item_order)
    return rows


def item_order(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Uniform items by window and rank, then risk-only items by risk rank."""
    if row["rank"] is not None:
        return (0, row["window_id"], row["rank"], 0)
    return (1, "", row["risk_rank"] or 0, 0)


def sample_manifest(ctx: AuditContext, sample_ref: int | str | None) -> dict[str, Any]:
    """The public record of a sample: everything ``audit verify`` needs besides the frame."""
    sample = load_sample(ctx, sample_ref)
    frame = load_frame(ctx, sample.frame_id)
    st = strata(ctx, sample.sample_id)
    items = sample_items(ctx, sample.sample_id)
    return {
        "format": SAMPLE_FORMAT,
        "algorithm": sample.algorithm,
        "ticket_rule": TICKET_RULE,
        "sample_id": sample.sample_id,
        "seed": sample.seed,
        "seed_note": sample.seed_note,
        "drawn_at": sample.drawn_at.isoformat(),
        "drawn_by": sample.drawn_by,
        "frame": {
            "frame_id": frame.frame_id,
            "sha256": frame.frame_hash,
            "period": frame.period,
            "checkpoint": frame.checkpoint,
            "ratings": frame.ratings,
            "created_at": frame.created_at.isoformat(),
            "created_by": frame.created_by,
            "file": "frame.csv",
        },
        "rate": sample.rate,
        "min_per_stratum": sample.min_per_stratum,
        "strata": [
            {
                "window_id": s.window_id,
                "population": s.population,
                "base_take": s.base_take,
                "take": s.take,
                "history": s.history,
            }
            for s in st.values()
        ],
        "risk": {
            "extra": sample.risk_extra,
            "min": sample.risk_min,
            "take": sample.risk_take,
            "history": sample.risk_history,
        },
        "items": [
            {
                "rating_id": int(r["rating_id"]),
                "window_id": r["window_id"],
                "rank": r["rank"],
                "risk_rank": r["risk_rank"],
                "ticket": r["ticket"],
                "added": r["added"],
                "replaced": r["code"] == NOT_APPLICABLE,
            }
            for r in items
        ],
    }


def publish(ctx: AuditContext, sample_ref: int | str | None, out_dir: Path) -> list[Path]:
    """Write the verification bundle: ``frame.csv`` (byte-exact) and ``sample.json``."""
    manifest = sample_manifest(ctx, sample_ref)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame_path = out_dir / "frame.csv"
    with open(frame_path, "wb") as f:
        for chunk in frame_chunks(ctx, manifest["frame"]["frame_id"]):
            f.write(chunk)
    sample_path = out_dir / "sample.json"
    sample_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return [frame_path, sample_path]
