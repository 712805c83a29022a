"""Step 1, framing: fix a period's population as of a fresh ledger checkpoint.

``make_frame`` seals the ledger and records a checkpoint, then writes the frame file
(:mod:`audit_sampling.formats`) from the ratings that counted as the log stood at
that checkpoint: a rating belongs to the frame if its last sealed status event says
``accepted``, so a later status change never moves the frame. The file is stored
byte-exact (compressed) with its checkpoint and written out before any seed exists;
its SHA-256 names it. A period that already has a sample gets no new frame (a
period is drawn once, so it could never be drawn).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from audit_sampling import tables as at
from audit_sampling.context import AuditContext, frame_subject
from audit_sampling.formats import FrameHeader, FrameWriter
from audit_sampling.records import FrameRecord, drawn_in, load_frame
from integrity.catalogue import Kind
from integrity.errors import PolicyViolation
from integrity.model import Event
from integrity.reports import Period
from integrity.sqlkit import canonical_json


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
    drawn = drawn_in(ctx, period.label)
    if drawn is not None:
        raise PolicyViolation(
            f"{period.label} already has sample {drawn[0]} (frame {drawn[1]}); a period is "
            "drawn once, so a new frame could never be drawn"
        )
    now = ctx.now()
    head = ctx.log.checkpoint(now)  # the frame stands on this sealed log
    target = out or (
        ctx.home / "audit" / f"frame-{period.label}.csv" if ctx.home is not None else None
    )
    tmp: Path | None = None
    compressor = zlib.compressobj(6)
    parts: list[bytes] = []
    try:
        with ctx.log.counted_at(head.size, period.start, period.end) as (counts, rows):
            header = FrameHeader(
                period=period.label,
                timezone=str(ctx.timezone),
                start=period.start.isoformat(),
                end=period.end.isoformat(),
                checkpoint=head.checkpoint(),
                strata=counts,
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
        with ctx.ledger.unit_of_work() as uow:
            conn = uow.connection
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
                        "strata": canonical_json(dict(sorted(counts.items()))),
                        "content": b"".join(parts),
                        "created_at": now,
                        "created_by": person.person_id,
                    },
                ).scalar_one()
                uow.append(
                    Event(
                        kind=Kind.AUDIT_FRAME,
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
                    )
                )
                uow.seal_tables(at.audit_frames.name, at=now, actor=person.person_id)
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
