"""The audit's records as the steps read them back from its own tables.

Reads go through :meth:`Ledger.reading <integrity.ports.Ledger.reading>`; nothing
here writes. The steps (``frame``, ``draw``, ``expand``, ``batches``, ``findings``,
``publish``) and the report build on these.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from audit_sampling import tables as at
from audit_sampling.context import DEVIATIONS, NOT_APPLICABLE, AuditContext
from audit_sampling.formats import CHUNK, chunks_of, frame_sha256, item_order
from integrity.errors import FieldError, InvalidInput, NotFound

# -- frames --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameRecord:
    frame_id: int
    frame_hash: str
    period: str
    timezone: str
    checkpoint: str
    log_size: int
    ratings: int
    strata: dict[str, int]
    created_at: datetime
    created_by: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "frame_id": self.frame_id,
            "frame_sha256": self.frame_hash,
            "period": self.period,
            "ratings": self.ratings,
            "windows": len(self.strata),
            "checkpoint": self.checkpoint,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


def _frame(row: Any) -> FrameRecord:
    return FrameRecord(
        frame_id=int(row.frame_id),
        frame_hash=row.frame_hash,
        period=row.period,
        timezone=row.timezone,
        checkpoint=row.checkpoint,
        log_size=int(row.log_size),
        ratings=int(row.ratings),
        strata={str(k): int(v) for k, v in json.loads(row.strata).items()},
        created_at=row.created_at,
        created_by=row.created_by,
    )


_FRAME_COLS = [c for c in at.audit_frames.columns if c.name != "content"]


def frames(ctx: AuditContext, period: str | None = None) -> list[FrameRecord]:
    q = sa.select(*_FRAME_COLS).order_by(at.audit_frames.c.frame_id)
    if period:
        q = q.where(at.audit_frames.c.period == period)
    with ctx.ledger.reading() as conn:
        return [_frame(r) for r in conn.execute(q)]


def load_frame(ctx: AuditContext, ref: str | int) -> FrameRecord:
    """A frame by id, by SHA-256 (or a prefix of 8+ hex digits), or by the path of its file."""
    text = str(ref).strip()
    col = at.audit_frames.c
    if text.isdigit() and len(text) < 8:
        cond = col.frame_id == int(text)
    elif text.isdigit():  # a long number may be an id or a hash prefix of digits only
        cond = sa.or_(col.frame_id == int(text), col.frame_hash.startswith(text))
    elif len(text) >= 8 and all(c in "0123456789abcdef" for c in text.lower()):
        cond = col.frame_hash.startswith(text.lower())
    elif Path(text).is_file():
        with open(text, "rb") as f:
            cond = col.frame_hash == frame_sha256(chunks_of(f))
    else:
        raise InvalidInput(
            [FieldError("frame", f"{text!r} is no frame id, SHA-256 prefix or frame file")],
            what="frame reference",
        )
    with ctx.ledger.reading() as conn:
        rows = conn.execute(sa.select(*_FRAME_COLS).where(cond).limit(2)).all()
    if not rows:
        raise NotFound(f"no frame {text!r} (a frame file must be one this ledger made)")
    if len(rows) > 1:
        raise InvalidInput(
            [FieldError("frame", f"{text!r} matches several frames; give more digits")],
            what="frame reference",
        )
    return _frame(rows[0])


def frame_chunks(ctx: AuditContext, frame_id: int) -> Iterator[bytes]:
    """The stored frame file's bytes, decompressed in chunks."""
    with ctx.ledger.reading() as conn:
        blob = conn.execute(
            sa.select(at.audit_frames.c.content).where(at.audit_frames.c.frame_id == frame_id)
        ).scalar()
    if blob is None:
        raise NotFound(f"no frame {frame_id}")
    return inflate(bytes(blob))


def inflate(blob: bytes) -> Iterator[bytes]:
    d = zlib.decompressobj()
    for i in range(0, len(blob), CHUNK):
        out = d.decompress(blob[i : i + CHUNK])
        if out:
            yield out
    tail = d.flush()
    if tail:
        yield tail


# -- samples -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleRecord:
    sample_id: int
    frame_id: int
    seed: str
    seed_note: str
    algorithm: str
    rate: str
    min_per_stratum: int
    risk_extra: int
    risk_min: float
    risk_take: int
    risk_history: list[dict[str, Any]]
    drawn_at: datetime
    drawn_by: str


def _sample(row: Any) -> SampleRecord:
    return SampleRecord(
        sample_id=int(row.sample_id),
        frame_id=int(row.frame_id),
        seed=row.seed,
        seed_note=row.seed_note,
        algorithm=row.algorithm,
        rate=row.rate,
        min_per_stratum=int(row.min_per_stratum),
        risk_extra=int(row.risk_extra),
        risk_min=float(row.risk_min),
        risk_take=int(row.risk_take),
        risk_history=json.loads(row.risk_history),
        drawn_at=row.drawn_at,
        drawn_by=row.drawn_by,
    )


def load_sample(ctx: AuditContext, ref: int | str | None = None) -> SampleRecord:
    """A sample by id; ``None``: the latest one."""
    s = at.audit_samples
    q = sa.select(s)
    if ref is None:
        q = q.order_by(s.c.sample_id.desc()).limit(1)
    else:
        try:
            q = q.where(s.c.sample_id == int(ref))
        except ValueError:
            raise InvalidInput(
                [FieldError("sample", f"{ref!r} is not a sample id")], what="sample reference"
            ) from None
    with ctx.ledger.reading() as conn:
        row = conn.execute(q).first()
    if row is None:
        raise NotFound("no audit sample yet" if ref is None else f"no audit sample {ref}")
    return _sample(row)


def samples(ctx: AuditContext) -> list[SampleRecord]:
    with ctx.ledger.reading() as conn:
        rows = conn.execute(sa.select(at.audit_samples).order_by(at.audit_samples.c.sample_id))
        return [_sample(r) for r in rows]


def sample_by_seed(ctx: AuditContext, seed: str) -> SampleRecord | None:
    with ctx.ledger.reading() as conn:
        sid = conn.execute(
            sa.select(at.audit_samples.c.sample_id).where(at.audit_samples.c.seed == seed)
        ).scalar()
    return None if sid is None else load_sample(ctx, int(sid))


def drawn_in(ctx: AuditContext, period: str) -> tuple[int, int] | None:
    """(sample id, frame id) of the period's sample, if it was drawn."""
    s, f = at.audit_samples, at.audit_frames
    with ctx.ledger.reading() as conn:
        row = conn.execute(
            sa.select(s.c.sample_id, s.c.frame_id)
            .select_from(s.join(f, f.c.frame_id == s.c.frame_id))
            .where(f.c.period == period)
        ).first()
    return None if row is None else (int(row[0]), int(row[1]))


@dataclass(frozen=True)
class StratumRecord:
    window_id: str
    population: int
    base_take: int
    take: int
    history: list[dict[str, Any]]


def strata(ctx: AuditContext, sample_id: int) -> dict[str, StratumRecord]:
    s = at.audit_strata
    with ctx.ledger.reading() as conn:
        rows = conn.execute(
            sa.select(s).where(s.c.sample_id == sample_id).order_by(s.c.window_id)
        ).all()
    return {
        r.window_id: StratumRecord(
            r.window_id, int(r.population), int(r.base_take), int(r.take), json.loads(r.history)
        )
        for r in rows
    }


# -- items and progress --------------------------------------------------------------------


def sample_items(ctx: AuditContext, sample_id: int) -> list[dict[str, Any]]:
    """Every item of a sample in sample order: window, ranks, ticket, how it was added,
    batch, finding code (``None`` while pending)."""
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
    with ctx.ledger.reading() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
    rows.sort(key=item_order)
    return rows


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
    with ctx.ledger.reading() as conn:
        for win, code in conn.execute(q):
            acc = out.setdefault(win, [0, 0, 0])
            if code is None:
                acc[2] += 1
            elif code != NOT_APPLICABLE:
                acc[0] += 1
                acc[1] += code in DEVIATIONS
    return {w: (a, d, p) for w, (a, d, p) in out.items()}


@dataclass(frozen=True)
class SampleView:
    """What ``audit show`` prints: the sample, and its windows or its items."""

    sample: SampleRecord
    rows: list[dict[str, Any]]


WINDOW_COLUMNS = (
    "window_id",
    "population",
    "base_take",
    "take",
    "audited",
    "deviations",
    "pending",
    "grown_by",
)
ITEM_COLUMNS = (
    "rating_id",
    "window_id",
    "rank",
    "risk_rank",
    "ticket",
    "added",
    "batch_id",
    "code",
)


def show_sample(ctx: AuditContext, ref: int | str | None, items: bool = False) -> SampleView:
    """A sample's windows (population, take, progress, why it grew) or, with ``items``,
    every item (default: the latest sample)."""
    s = load_sample(ctx, ref)
    if items:
        return SampleView(s, sample_items(ctx, s.sample_id))
    prog = uniform_progress(ctx, s.sample_id)
    rows = []
    for w, st in strata(ctx, s.sample_id).items():
        a, d, p = prog.get(w, (0, 0, 0))
        rows.append(
            {
                "window_id": w,
                "population": st.population,
                "base_take": st.base_take,
                "take": st.take,
                "audited": a,
                "deviations": d,
                "pending": p,
                "grown_by": ";".join(h["why"] for h in st.history[1:]),
            }
        )
    return SampleView(s, rows)


# -- batches -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRecord:
    batch_id: int
    sample_id: int
    seq: int
    auditor_id: str | None
    created_at: datetime
    created_by: str
    assigned_at: datetime | None


def load_batch(ctx: AuditContext, batch_id: int | str) -> BatchRecord:
    b = at.audit_batches
    try:
        bid = int(batch_id)
    except ValueError:
        raise InvalidInput(
            [FieldError("batch", f"{batch_id!r} is not a batch id")], what="batch reference"
        ) from None
    with ctx.ledger.reading() as conn:
        row = conn.execute(sa.select(b).where(b.c.batch_id == bid)).first()
    if row is None:
        raise NotFound(f"no audit batch {batch_id}")
    return BatchRecord(
        batch_id=int(row.batch_id),
        sample_id=int(row.sample_id),
        seq=int(row.seq),
        auditor_id=row.auditor_id,
        created_at=row.created_at,
        created_by=row.created_by,
        assigned_at=row.assigned_at,
    )
