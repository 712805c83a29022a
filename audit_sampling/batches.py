"""Auditor batches: split a sample, assign batches, and pull them (CLI or HTTP).

A pull exports pseudonymised fields only (the ledger holds nothing else: raw
addresses and device ids were never stored) and a manifest that ties the file to
the sample: algorithm, seed, frame SHA-256 and checkpoint, rate, every item's
ticket number, and the file's own SHA-256. Every pull is a ledger event
(``audit.pull``: who, which batch, which bytes, when).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from audit_sampling import tables as at
from audit_sampling.context import (
    AuditContext,
    BatchRecord,
    batch_subject,
    load_batch,
    load_frame,
    load_sample,
    sample_subject,
)
from audit_sampling.draws import item_order
from audit_sampling.verify import PULL_FORMAT
from integrity.adapters import tables as t
from integrity.sqlkit import translate_errors
from integrity.errors import Conflict, FieldError, InvalidInput, NotFound, PermissionDenied
from integrity.model import Event

PULL_FORMATS = ("csv", "jsonl")
EXPORT_COLUMNS = (
    "rating_id",
    "ticket_id",
    "window_id",
    "staff_id",
    "service_type",
    "channel",
    "served_at",
    "submitted_at",
    "received_at",
    "scores",
    "composite",
    "ip_hash",
    "prefix_hash",
    "device_hash",
    "stratum",
    "rank",
    "risk_rank",
    "ticket",
)


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
        with ctx.ledger.begin() as conn:
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
                ctx.ledger.append_in(
                    conn,
                    Event(
                        kind="audit.batches",
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
                    ),
                )
    except sa.exc.IntegrityError:
        raise Conflict("another split of this sample committed first; run again") from None
    return [BatchSummary(bid, sample.sample_id, s, a, n, 0, 0) for bid, s, a, n in created]


def assign(
    ctx: AuditContext, batch_id: int | str, auditor_id: str, actor: str | None
) -> BatchRecord:
    """Give a batch to an auditor (reassigning is allowed until a finding is recorded)."""
    person = ctx.supervisor(actor)
    ctx.auditor(auditor_id)
    batch = load_batch(ctx, batch_id)
    now = ctx.now()
    with ctx.ledger.begin() as conn:
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
        ctx.ledger.append_in(
            conn,
            Event(
                kind="audit.assign",
                actor=person.person_id,
                at=now,
                subject=batch_subject(batch.batch_id),
                evidence={"auditor": auditor_id, "previous": batch.auditor_id},
            ),
        )
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
    pulls = (
        sa.select(sa.func.count())
        .select_from(t.events)
        .where(
            t.events.c.kind == "audit.pull",
            t.events.c.subject == sa.literal("audit:batch:") + sa.cast(b.c.batch_id, sa.String),
        )
        .scalar_subquery()
    )
    q = sa.select(b, items.label("items"), found.label("findings"), pulls.label("pulls"))
    if sample_ref is not None:
        q = q.where(b.c.sample_id == load_sample(ctx, sample_ref).sample_id)
    if auditor_id is not None:
        q = q.where(b.c.auditor_id == auditor_id)
    q = q.order_by(b.c.sample_id, b.c.seq)
    with translate_errors(), ctx.ledger.engine.connect() as conn:
        return [
            BatchSummary(
                int(r.batch_id),
                int(r.sample_id),
                int(r.seq),
                r.auditor_id,
                int(r.items),
                int(r.findings),
                int(r.pulls),
            )
            for r in conn.execute(q)
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
    """The export rows of a batch, in sample order."""
    it, r = at.audit_items, t.ratings
    q = (
        sa.select(
            r.c.rating_id,
            r.c.ticket_id,
            r.c.window_id,
            r.c.staff_id,
            r.c.service_type,
            r.c.channel,
            r.c.served_at,
            r.c.submitted_at,
            r.c.received_at,
            r.c.scores,
            r.c.composite,
            r.c.ip_hash,
            r.c.prefix_hash,
            r.c.device_hash,
            it.c.rank,
            it.c.risk_rank,
            it.c.ticket,
        )
        .select_from(it.join(r, r.c.rating_id == it.c.rating_id))
        .where(it.c.batch_id == batch_id)
    )
    with translate_errors(), ctx.ledger.engine.connect() as conn:
        rows = [dict(x) for x in conn.execute(q).mappings()]
    out = []
    for row in sorted(rows, key=item_order):
        row["stratum"] = "uniform" if row["rank"] is not None else "risk"
        row["scores"] = json.loads(row["scores"])
        for k in ("served_at", "submitted_at", "received_at"):
            row[k] = row[k].isoformat() if row[k] is not None else None
        out.append({k: row[k] for k in EXPORT_COLUMNS})
    return out


def render_rows(rows: Sequence[dict[str, Any]], fmt: str) -> bytes:
    """Canonical bytes of an export: CSV (scores as JSON text) or JSON Lines."""
    if fmt == "jsonl":
        return "".join(
            json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
            for r in rows
        ).encode("utf-8")
    if fmt != "csv":
        raise InvalidInput(
            [FieldError("format", f"expected one of {', '.join(PULL_FORMATS)}")], what="pull"
        )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    for r in rows:
        cells = []
        for c in EXPORT_COLUMNS:
            v = r[c]
            if c == "scores":
                v = json.dumps(v, sort_keys=True, separators=(",", ":"))
            cells.append("" if v is None else (repr(v) if isinstance(v, float) else str(v)))
        w.writerow(cells)
    return buf.getvalue().encode("utf-8")


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
    if fmt not in PULL_FORMATS:
        raise InvalidInput(
            [FieldError("format", f"expected one of {', '.join(PULL_FORMATS)}")], what="pull"
        )
    batch = own_batch(ctx, batch_id, auditor_id)
    sample = load_sample(ctx, batch.sample_id)
    frame = load_frame(ctx, sample.frame_id)
    rows = batch_rows(ctx, batch.batch_id)
    if not rows:
        raise NotFound(f"batch {batch.batch_id} has no items")
    data = render_rows(rows, fmt)
    digest = hashlib.sha256(data).hexdigest()
    now = ctx.now()
    ev = ctx.ledger.append(
        Event(
            kind="audit.pull",
            actor=str(auditor_id),
            at=now,
            subject=batch_subject(batch.batch_id),
            evidence={
                "sample_id": sample.sample_id,
                "format": fmt,
                "file_sha256": digest,
                "items": len(rows),
                "rating_ids": [r["rating_id"] for r in rows],
                "via": via,
            },
        )
    )
    manifest = {
        "format": PULL_FORMAT,
        "batch_id": batch.batch_id,
        "batch_seq": batch.seq,
        "sample_id": sample.sample_id,
        "auditor": auditor_id,
        "pulled_at": now.isoformat(),
        "pull_event_id": ev.event_id,
        "algorithm": sample.algorithm,
        "seed": sample.seed,
        "rate": sample.rate,
        "min_per_stratum": sample.min_per_stratum,
        "frame_sha256": frame.frame_hash,
        "period": frame.period,
        "checkpoint": frame.checkpoint,
        "items": [
            {
                "rating_id": r["rating_id"],
                "window_id": r["window_id"],
                "stratum": r["stratum"],
                "rank": r["rank"],
                "risk_rank": r["risk_rank"],
                "ticket": r["ticket"],
            }
            for r in rows
        ],
        "file": {
            "name": file_name,
            "format": fmt,
            "rows": len(rows),
            "bytes": len(data),
            "sha256": digest,
        },
    }
    return Pull(batch, rows, data, manifest)
