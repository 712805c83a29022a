"""What every audit service needs, and the records they read back.

Services take an :class:`AuditContext` (ledger, log, people registry, clock, the
``[audit]`` settings, the report time zone); the CLI and HTTP layers build it from
the wired :class:`~integrity.bootstrap.App` with :meth:`AuditContext.from_app`.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from audit_sampling import tables as at
from audit_sampling.config import AUDITOR_ROLE, SUPERVISOR_ROLE, AuditConfig
from audit_sampling.frames import CHUNK
from integrity.adapters.sql import SqlLedger
from integrity.sqlkit import translate_errors
from integrity.clock import Clock
from integrity.errors import FieldError, InvalidInput, NotFound
from integrity.log import MerkleLog
from integrity.people import People, Person

if TYPE_CHECKING:
    from integrity.app import App


def frame_subject(frame_id: int) -> str:
    return f"audit:frame:{frame_id}"


def sample_subject(sample_id: int) -> str:
    return f"audit:sample:{sample_id}"


def batch_subject(batch_id: int) -> str:
    return f"audit:batch:{batch_id}"


@dataclass
class AuditContext:
    ledger: SqlLedger
    log: MerkleLog
    people: People
    clock: Clock
    config: AuditConfig
    timezone: ZoneInfo
    home: Path | None = None

    @classmethod
    def from_app(cls, app: App) -> AuditContext:
        return cls(
            ledger=app.ledger,
            log=app.log,
            people=People(app.ledger),
            clock=app.clock,
            config=AuditConfig.from_section(app.core.section("audit")),
            timezone=app.core.timezone,
            home=app.settings.home,
        )

    def now(self) -> datetime:
        return self.clock.now()

    def supervisor(self, actor: str | None) -> Person:
        """The acting audit supervisor (role ``admin``), else ``PermissionDenied``."""
        return self.people.require(actor, SUPERVISOR_ROLE)

    def auditor(self, person_id: str | None) -> Person:
        return self.people.require(person_id, AUDITOR_ROLE)


# -- records -------------------------------------------------------------------------------


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
    with translate_errors(), ctx.ledger.engine.connect() as conn:
        return [_frame(r) for r in conn.execute(q)]


def load_frame(ctx: AuditContext, ref: str | int) -> FrameRecord:
    """A frame by id, by SHA-256 (or a prefix of 8+ hex digits), or by the path of its file."""
    text = str(ref).strip()
    col = at.audit_frames.c
    if text.isdigit():
        cond = col.frame_id == int(text)
    elif len(text) >= 8 and all(c in "0123456789abcdef" for c in text.lower()):
        cond = col.frame_hash.startswith(text.lower())
    elif Path(text).is_file():
        from audit_sampling.frames import chunks_of, frame_sha256

        with open(text, "rb") as f:
            cond = col.frame_hash == frame_sha256(chunks_of(f))
    else:
        raise InvalidInput(
            [FieldError("frame", f"{text!r} is no frame id, SHA-256 prefix or frame file")],
            what="frame reference",
        )
    with translate_errors(), ctx.ledger.engine.connect() as conn:
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
    with translate_errors(), ctx.ledger.engine.connect() as conn:
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
    with translate_errors(), ctx.ledger.engine.connect() as conn:
        row = conn.execute(q).first()
    if row is None:
        raise NotFound("no audit sample yet" if ref is None else f"no audit sample {ref}")
    return _sample(row)


def samples(ctx: AuditContext) -> list[SampleRecord]:
    with translate_errors(), ctx.ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(at.audit_samples).order_by(at.audit_samples.c.sample_id))
        return [_sample(r) for r in rows]


@dataclass(frozen=True)
class StratumRecord:
    window_id: str
    population: int
    base_take: int
    take: int
    history: list[dict[str, Any]]


def strata(ctx: AuditContext, sample_id: int) -> dict[str, StratumRecord]:
    s = at.audit_strata
    with translate_errors(), ctx.ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.select(s).where(s.c.sample_id == sample_id).order_by(s.c.window_id)
        ).all()
    return {
        r.window_id: StratumRecord(
            r.window_id, int(r.population), int(r.base_take), int(r.take), json.loads(r.history)
        )
        for r in rows
    }


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
    with translate_errors(), ctx.ledger.engine.connect() as conn:
        row = conn.execute(sa.select(b).where(b.c.batch_id == bid)).first()
    if row is None:
        raise NotFound(f"no audit batch {batch_id}")
    return _batch(row)


def _batch(row: Any) -> BatchRecord:
    return BatchRecord(
        batch_id=int(row.batch_id),
        sample_id=int(row.sample_id),
        seq=int(row.seq),
        auditor_id=row.auditor_id,
        created_at=row.created_at,
        created_by=row.created_by,
        assigned_at=row.assigned_at,
    )


def dumps(value: Any) -> str:
    """Canonical JSON for stored columns."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
