"""Auditor batches: split a sample, assign batches, and pull them (CLI or HTTP).

A pull exports pseudonymised fields only (the ledger holds nothing else: raw
addresses and device ids were never stored) and a manifest that ties the file to
the sample: algorithm, seed, frame SHA-256 and checkpoint, rate, every item's
ticket number, and the file's own SHA-256 (both formats: :mod:`audit_sampling.formats`).
Every pull is a ledger event (``audit.pull``: who, which batch, which bytes, when).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from audit_sampling import tables as at
from audit_sampling.context import AuditContext, batch_subject, sample_subject
from audit_sampling.formats import (
    check_pull_format,
    export_row,
    item_order,
    pull_manifest,
    render_rows,
)
from audit_sampling.records import BatchRecord, load_batch, load_frame, load_sample
from integrity.catalogue import Kind
from integrity.errors import (
    AlreadyExists,
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from integrity.model import Event
from integrity.ports import RatingQuery

BATCH_COLUMNS = ("batch_id", "sample_id", "seq", "auditor_id", "items", "findings", "pulls")


@dataclass(frozen=True)
class BatchSummary:
    batch_id: int
    sample_id: int
    seq: int
    auditor_id: str | None
    items: int
    findings: int
    pulls: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def split(
    ctx: AuditContext,
    sample_ref: int | str | None,
    actor: str | None,
    size: int | None = None,
    auditors: Sequence[str] = (),
) -> list[BatchSummary]:
    """Put every unbatched item of a sample into new batches of ``size``; assign round robin.

    Items go in sample order (window, rank; then risk items). Returns the new batches.
    """
    person = ctx.supervisor(actor)
    size = size or ctx.config.batch_size
    if size < 1:
        raise InvalidInput([FieldError("size", "must be at least 1")], what="batches")
    for a in auditors:
        ctx.auditor(a)
    sample = load_sample(ctx, sample_ref)
    it, b = at.audit_items, at.audit_batches
    now = ctx.now()
    created: list[tuple[int, int, str | None, int]] = []
    try:
        with ctx.ledger.unit_of_work() as uow:
            conn = uow.connection
            rows = [
                dict(r)
                for r in conn.execute(
                    sa.select(it.c.rating_id, it.c.window_id, it.c.rank, it.c.risk_rank).where(
                        it.c.sample_id == sample.sample_id, it.c.batch_id.is_(None)
                    )
                ).mappings()
            ]
            rows.sort(key=item_order)
            seq = conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(b.c.seq), 0)).where(
                    b.c.sample_id == sample.sample_id
                )
            ).scalar_one()
            for i in range(0, len(rows), size):
                chunk = rows[i : i + size]
                seq += 1
                auditor = auditors[len(created) % len(auditors)] if auditors else None
                bid = conn.execute(
                    b.insert().returning(b.c.batch_id),
                    {
                        "sample_id": sample.sample_id,
                        "seq": seq,
                        "auditor_id": auditor,
                        "created_at": now,
                        "created_by": person.person_id,
                        "assigned_at": now if auditor else None,
                    },
                ).scalar_one()
                conn.execute(
                    it.update()
                    .where(
                        it.c.sample_id == sample.sample_id,
                        it.c.rating_id.in_([r["rating_id"] for r in chunk]),
                    )
                    .values(batch_id=bid)
                )
                created.append((int(bid), seq, auditor, len(chunk)))
            if created:
                uow.append(
                    Event(
                        kind=Kind.AUDIT_BATCHES,
                        actor=person.person_id,
                        at=now,
                        subject=sample_subject(sample.sample_id),
                        evidence={
                            "size": size,
                            "batches": [
                                {"batch_id": bid, "seq": s, "auditor": a, "items": n}
                                for bid, s, a, n in created
                            ],
                        },
                    )
                )
                uow.seal_tables(at=now, actor=person.person_id)  # batches
    except AlreadyExists:
        raise Conflict("another split of this sample committed first; run again") from None
    return [BatchSummary(bid, sample.sample_id, s, a, n, 0, 0) for bid, s, a, n in created]


@dataclass(frozen=True)
class Batching:
    """What ``audit batches SAMPLE`` did: the new batches, and every batch of the sample."""

    made: list[BatchSummary]
    batches: list[BatchSummary]

    @property
    def items(self) -> int:
        """Items put into the new batches."""
        return sum(b.items for b in self.made)


def batch_sample(
    ctx: AuditContext,
    sample_ref: int | str | None,
    actor: str | None,
    size: int | None = None,
    auditors: Sequence[str] = (),
) -> Batching:
    """Split a sample's unbatched items into new batches (if it has any), then list its
    batches. Listing alone needs no role; splitting needs a supervisor."""
    sample = load_sample(ctx, sample_ref)
    it = at.audit_items
    with ctx.ledger.reading() as conn:
        unbatched = conn.execute(
            sa.select(sa.func.count())
            .select_from(it)
            .where(it.c.sample_id == sample.sample_id, it.c.batch_id.is_(None))
        ).scalar_one()
    made = split(ctx, sample.sample_id, actor, size, auditors) if unbatched else []
    return Batching(made, list_batches(ctx, sample.sample_id))


def assign(
    ctx: AuditContext, batch_id: int | str, auditor_id: str, actor: str | None
) -> BatchRecord:
    """Give a batch to an auditor (reassigning is allowed until a finding is recorded)."""
    person = ctx.supervisor(actor)
    ctx.auditor(auditor_id)
    batch = load_batch(ctx, batch_id)
    now = ctx.now()
    with ctx.ledger.unit_of_work() as uow:
        conn = uow.connection
        has_findings = conn.execute(
            sa.select(sa.func.count())
            .select_from(at.audit_findings)
            .where(at.audit_findings.c.batch_id == batch.batch_id)
        ).scalar_one()
        if has_findings and batch.auditor_id != auditor_id:
            raise Conflict(
                f"batch {batch.batch_id} already has findings by {batch.auditor_id}; "
                "it cannot change hands"
            )
        conn.execute(
            at.audit_batches.update()
            .where(at.audit_batches.c.batch_id == batch.batch_id)
            .values(auditor_id=auditor_id, assigned_at=now)
        )
        uow.append(
            Event(
                kind=Kind.AUDIT_ASSIGN,
                actor=person.person_id,
                at=now,
                subject=batch_subject(batch.batch_id),
                evidence={"auditor": auditor_id, "previous": batch.auditor_id},
            )
        )
        uow.seal_tables(at.audit_batches.name, at=now, actor=person.person_id)
    return load_batch(ctx, batch.batch_id)


def list_batches(
    ctx: AuditContext, sample_ref: int | str | None = None, auditor_id: str | None = None
) -> list[BatchSummary]:
    """Batches of a sample (default: all samples) or of one auditor, with progress."""
    b, it, fi = at.audit_batches, at.audit_items, at.audit_findings
    items = (
        sa.select(sa.func.count())
        .select_from(it)
        .where(it.c.batch_id == b.c.batch_id)
        .scalar_subquery()
    )
    found = (
        sa.select(sa.func.count())
        .select_from(fi)
        .where(fi.c.batch_id == b.c.batch_id)
        .scalar_subquery()
    )
    q = sa.select(b, items.label("items"), found.label("findings"))
    if sample_ref is not None:
        q = q.where(b.c.sample_id == load_sample(ctx, sample_ref).sample_id)
    if auditor_id is not None:
        q = q.where(b.c.auditor_id == auditor_id)
    q = q.order_by(b.c.sample_id, b.c.seq)
    with ctx.ledger.reading() as conn:
        rows = conn.execute(q).all()
    pulls = ctx.ledger.count_events(Kind.AUDIT_PULL, [batch_subject(int(r.batch_id)) for r in rows])
    return [
        BatchSummary(
            int(r.batch_id),
            int(r.sample_id),
            int(r.seq),
            r.auditor_id,
            int(r.items),
            int(r.findings),
            pulls.get(batch_subject(int(r.batch_id)), 0),
        )
        for r in rows
    ]


def own_batch(ctx: AuditContext, batch_id: int | str, auditor_id: str | None) -> BatchRecord:
    """The batch, if ``auditor_id`` is an active auditor and the batch is theirs."""
    person = ctx.auditor(auditor_id)
    batch = load_batch(ctx, batch_id)
    if batch.auditor_id is None:
        raise PermissionDenied(
            f"batch {batch.batch_id} is not assigned yet (`integrity audit assign`)"
        )
    if batch.auditor_id != person.person_id:
        raise PermissionDenied(f"batch {batch.batch_id} is not assigned to {person.person_id!r}")
    return batch


def batch_rows(ctx: AuditContext, batch_id: int) -> list[dict[str, Any]]:
    """The export rows of a batch, in sample order: its items joined with their ratings."""
    it = at.audit_items
    with ctx.ledger.reading() as conn:
        items = [
            dict(r)
            for r in conn.execute(
                sa.select(
                    it.c.rating_id, it.c.window_id, it.c.rank, it.c.risk_rank, it.c.ticket
                ).where(it.c.batch_id == batch_id)
            ).mappings()
        ]
    ratings = (
        {
            r.rating_id: r
            for r in ctx.ledger.find_ratings(RatingQuery(ids=[int(i["rating_id"]) for i in items]))
        }
        if items
        else {}
    )
    missing = sorted(int(i["rating_id"]) for i in items if int(i["rating_id"]) not in ratings)
    if missing:
        raise NotFound(f"batch {batch_id} names rating(s) the ledger does not hold: {missing[:10]}")
    return [export_row(ratings[int(i["rating_id"])], i) for i in sorted(items, key=item_order)]


@dataclass(frozen=True)
class Pull:
    batch: BatchRecord
    rows: list[dict[str, Any]]
    data: bytes
    manifest: dict[str, Any]


def pull(
    ctx: AuditContext,
    batch_id: int | str,
    auditor_id: str | None,
    fmt: str = "jsonl",
    file_name: str | None = None,
    via: str = "cli",
) -> Pull:
    """Export a batch for its auditor, log the pull on the ledger, return data and manifest."""
    check_pull_format(fmt)
    batch = own_batch(ctx, batch_id, auditor_id)
    sample = load_sample(ctx, batch.sample_id)
    frame = load_frame(ctx, sample.frame_id)
    rows = batch_rows(ctx, batch.batch_id)
    if not rows:
        raise NotFound(f"batch {batch.batch_id} has no items")
    data = render_rows(rows, fmt)
    now = ctx.now()
    auditor = str(auditor_id)
    manifest = pull_manifest(
        batch=batch,
        sample=sample,
        frame=frame,
        auditor=auditor,
        pulled_at=now,
        event_id=None,
        rows=rows,
        data=data,
        fmt=fmt,
        file_name=file_name,
    )
    ev = ctx.ledger.append(
        Event(
            kind=Kind.AUDIT_PULL,
            actor=auditor,
            at=now,
            subject=batch_subject(batch.batch_id),
            evidence={
                "sample_id": sample.sample_id,
                "format": fmt,
                "file_sha256": manifest["file"]["sha256"],
                "items": len(rows),
                "rating_ids": [r["rating_id"] for r in rows],
                "via": via,
            },
        )
    )
    manifest["pull_event_id"] = ev.event_id
    return Pull(batch, rows, data, manifest)


@dataclass(frozen=True)
class PullRecord:
    """One logged pull of a batch."""

    event_id: int | None
    at: datetime
    auditor: str
    via: str | None
    format: str | None
    items: int | None
    sha256: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


PULL_COLUMNS = ("event_id", "at", "auditor", "via", "format", "items", "sha256")


def pulls_of(ctx: AuditContext, batch_id: int | str) -> list[PullRecord]:
    """Who pulled a batch, when, how, and which bytes (from the ledger's events)."""
    batch = load_batch(ctx, batch_id)
    return [
        PullRecord(
            event_id=e.event_id,
            at=e.at,
            auditor=e.actor,
            via=e.evidence.get("via"),
            format=e.evidence.get("format"),
            items=e.evidence.get("items"),
            sha256=e.evidence.get("file_sha256"),
        )
        for e in ctx.ledger.events_about(batch_subject(batch.batch_id))
        if e.kind == Kind.AUDIT_PULL
    ]
