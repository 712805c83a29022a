"""Auditor findings: one verdict per sampled rating, from a closed list of codes.

A findings file (CSV, header ``rating_id,code,note``; the columns of a pulled CSV
may stay and are ignored) is validated as a whole first: any bad line gives
line-level errors and nothing changes. Then, in one transaction with their ledger
events:

* every finding is an ``audit.finding`` event on its rating;
* ``fabricated``, ``coerced`` and ``duplicate`` void the rating (a ``void`` status
  event, reason ``audit.<code>``, citing the finding event), unless already void;
* ``cannot_verify`` and ``wrong_staff`` count as deviations, not voided;
* ``not_applicable`` is out of the population: the next item in the same order
  (the window's ticket order, or the risk order) joins the batch as its replacement.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from audit_sampling import tables as at
from audit_sampling.batches import own_batch
from audit_sampling.context import (
    CODES,
    NOT_APPLICABLE,
    VOID_REASONS,
    VOIDING,
    AuditContext,
    batch_subject,
)
from audit_sampling.draw import item_row, stream_frame
from audit_sampling.expand import add_uniform_item, existing_items, move_take
from audit_sampling.formats import EXPORT_COLUMNS
from audit_sampling.records import SampleRecord, StratumRecord, load_frame, load_sample, strata
from integrity.catalogue import Kind
from integrity.errors import AlreadyExists, Conflict, FieldError, InvalidInput
from integrity.model import Event, Status
from integrity.model import void_event as model_void_event
from integrity.sqlkit import canonical_json

NOTE_MAX = 2000
FINDING_COLUMNS = ("rating_id", "code", "note")


@dataclass(frozen=True)
class Finding:
    where: str  # "line 3" in a file, "item 3" over HTTP
    rating_id: int
    code: str
    note: str


def parse_csv(text: str) -> list[tuple[str, dict[str, str | None]]]:
    """Rows of a findings CSV as ``("line N", {column: value})``; header errors raise."""
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput(
            [FieldError("line 1", "the file is empty")], what="findings file"
        ) from None
    except csv.Error as err:
        raise InvalidInput([FieldError("line 1", str(err))], what="findings file") from None
    names = [h.strip().lower() for h in header]
    errors = []
    missing = [c for c in ("rating_id", "code") if c not in names]
    if missing:
        errors.append(
            FieldError(
                "line 1", f"missing column(s) {', '.join(missing)}; expected rating_id,code,note"
            )
        )
    unknown = [n for n in names if n not in FINDING_COLUMNS and n not in EXPORT_COLUMNS]
    if unknown:
        errors.append(FieldError("line 1", f"unknown column(s) {', '.join(map(repr, unknown))}"))
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        errors.append(FieldError("line 1", f"repeated column(s) {', '.join(dupes)}"))
    if errors:
        raise InvalidInput(errors, what="findings file")
    rows: list[tuple[str, dict[str, str | None]]] = []
    try:
        for cells in reader:
            where = f"line {reader.line_num}"
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(names):
                rows.append((where, {"__width__": f"{len(cells)} fields, header has {len(names)}"}))
                continue
            rows.append((where, dict(zip(names, cells, strict=True))))
    except csv.Error as err:
        raise InvalidInput(
            [FieldError(f"line {reader.line_num}", str(err))], what="findings file"
        ) from None
    return rows


def validate(
    entries: Sequence[tuple[str, Mapping[str, Any]]],
    batch_items: Iterable[int],
    already: Mapping[int, str],
    batch_id: int,
) -> list[Finding]:
    """Check every entry; return the findings or raise ``InvalidInput`` with all errors."""
    in_batch = set(batch_items)
    errors: list[FieldError] = []
    seen: dict[int, str] = {}
    out: list[Finding] = []
    if not entries:
        errors.append(FieldError("file", "no findings in it"))
    for where, row in entries:
        if "__width__" in row:
            errors.append(FieldError(where, str(row["__width__"])))
            continue
        bad = len(errors)
        raw_id = str(row.get("rating_id") or "").strip()
        rid = None
        if not raw_id.isdigit():
            errors.append(FieldError(f"{where}: rating_id", f"{raw_id!r} is not a rating id"))
        else:
            rid = int(raw_id)
            if rid not in in_batch:
                errors.append(
                    FieldError(f"{where}: rating_id", f"rating {rid} is not in batch {batch_id}")
                )
            elif rid in seen:
                errors.append(
                    FieldError(
                        f"{where}: rating_id", f"rating {rid} already has a finding on {seen[rid]}"
                    )
                )
            elif rid in already:
                errors.append(
                    FieldError(
                        f"{where}: rating_id",
                        f"rating {rid} already has a recorded finding ({already[rid]}); findings are final",
                    )
                )
            else:
                seen[rid] = where
        code = str(row.get("code") or "").strip().lower()
        if code not in CODES:
            errors.append(
                FieldError(f"{where}: code", f"{code!r} is not one of {', '.join(CODES)}")
            )
        note = str(row.get("note") or "").strip()
        if len(note) > NOTE_MAX:
            errors.append(FieldError(f"{where}: note", f"at most {NOTE_MAX} characters"))
        if code in CODES and code != "genuine" and not note:
            errors.append(FieldError(f"{where}: note", f"a note is required for {code}"))
        if len(errors) == bad and rid is not None:
            out.append(Finding(where, rid, code, note))
    if errors:
        raise InvalidInput(errors, what="findings")
    return out


@dataclass
class Recorded:
    batch_id: int
    findings: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    voided: list[int] = field(default_factory=list)
    already_void: list[int] = field(default_factory=list)
    replacements: list[tuple[int, int | None]] = field(default_factory=list)
    remaining: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "findings": self.findings,
            "codes": dict(sorted(self.codes.items())),
            "voided": self.voided,
            "already_void": self.already_void,
            "replacements": [{"not_applicable": a, "replacement": b} for a, b in self.replacements],
            "remaining": self.remaining,
        }


def record_csv(
    ctx: AuditContext, batch_id: int | str, auditor_id: str | None, text: str
) -> Recorded:
    return record(ctx, batch_id, auditor_id, parse_csv(text))


def record(
    ctx: AuditContext,
    batch_id: int | str,
    auditor_id: str | None,
    entries: Sequence[tuple[str, Mapping[str, Any]]],
) -> Recorded:
    """Validate then apply findings for a batch (see the module docstring)."""
    batch = own_batch(ctx, batch_id, auditor_id)
    sample = load_sample(ctx, batch.sample_id)
    it, fi = at.audit_items, at.audit_findings
    with ctx.ledger.reading() as conn:
        items = {
            int(r.rating_id): r
            for r in conn.execute(
                sa.select(it.c.rating_id, it.c.window_id, it.c.rank, it.c.risk_rank).where(
                    it.c.batch_id == batch.batch_id
                )
            )
        }
        already = {
            int(r.rating_id): r.code
            for r in conn.execute(
                sa.select(fi.c.rating_id, fi.c.code).where(
                    fi.c.sample_id == sample.sample_id, fi.c.rating_id.in_(list(items))
                )
            )
        }
    findings = validate(entries, items, already, batch.batch_id)
    out = Recorded(batch.batch_id)
    auditor = str(auditor_id)

    # Statuses as read now: a rating whose status moves before the write below makes
    # the whole file fail (optimistic concurrency), so nothing is voided on stale facts.
    versions = {f.rating_id: ctx.ledger.current(f.rating_id) for f in findings if f.code in VOIDING}
    replacements = _replacements(
        ctx, sample, [f for f in findings if f.code == NOT_APPLICABLE], items
    )
    now = ctx.now()
    st = strata(ctx, sample.sample_id)
    subject = batch_subject(batch.batch_id)
    try:
        with ctx.ledger.unit_of_work() as uow:
            conn = uow.connection
            existing = existing_items(conn, sample.sample_id)
            for f in findings:
                evidence: dict[str, Any] = {
                    "sample_id": sample.sample_id,
                    "batch_id": batch.batch_id,
                    "code": f.code,
                    "note": f.note,
                    "where": f.where,
                }
                repl = replacements.get(f.rating_id)
                if f.code == NOT_APPLICABLE:
                    evidence["replacement"] = repl[0] if repl else None
                ev = uow.append(
                    Event(
                        kind=Kind.AUDIT_FINDING,
                        actor=auditor,
                        at=now,
                        rating_id=f.rating_id,
                        subject=subject,
                        evidence=evidence,
                    )
                )
                void_id = None
                if f.code in VOIDING:
                    status, version = versions[f.rating_id]
                    if status is Status.VOIDED:
                        out.already_void.append(f.rating_id)
                    else:
                        void = uow.append(
                            void_event(
                                f.rating_id,
                                f.code,
                                actor=auditor,
                                at=now,
                                subject=subject,
                                finding_event_id=ev.event_id,
                                sample_id=sample.sample_id,
                                batch_id=batch.batch_id,
                                note=f.note,
                            ),
                            expect_version=version,
                        )
                        void_id = void.event_id
                        out.voided.append(f.rating_id)
                conn.execute(
                    fi.insert(),
                    {
                        "sample_id": sample.sample_id,
                        "rating_id": f.rating_id,
                        "batch_id": batch.batch_id,
                        "code": f.code,
                        "note": f.note,
                        "auditor_id": auditor,
                        "recorded_at": now,
                        "event_id": ev.event_id,
                        "void_event_id": void_id,
                        "replacement_id": repl[0] if repl else None,
                    },
                )
                out.findings += 1
                out.codes[f.code] += 1
                if f.code == NOT_APPLICABLE:
                    out.replacements.append((f.rating_id, repl[0] if repl else None))
            _apply_replacements(
                conn, sample, st, replacements, existing, batch.batch_id, now, auditor
            )
            uow.seal_tables(at=now, actor=auditor)  # what replacements changed, if any
    except AlreadyExists:
        raise Conflict(
            f"findings for batch {batch.batch_id} were recorded concurrently; nothing changed, run again"
        ) from None
    with ctx.ledger.reading() as conn:
        out.remaining = int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(
                    it.outerjoin(
                        fi,
                        sa.and_(fi.c.sample_id == it.c.sample_id, fi.c.rating_id == it.c.rating_id),
                    )
                )
                .where(it.c.batch_id == batch.batch_id, fi.c.rating_id.is_(None))
            ).scalar_one()
        )
    return out


def void_event(
    rating_id: int,
    code: str,
    *,
    actor: str,
    at: datetime,
    subject: str,
    finding_event_id: int | None,
    sample_id: int,
    batch_id: int,
    note: str,
) -> Event:
    """The status event that voids a rating an auditor found ``code`` (a voiding code),
    citing the finding event."""
    return model_void_event(
        rating_id,
        actor=actor,
        at=at,
        reasons=(VOID_REASONS[code],),
        subject=subject,
        evidence={
            "finding_event_id": finding_event_id,
            "sample_id": sample_id,
            "batch_id": batch_id,
            "code": code,
            "note": note,
        },
    )


# A replacement: (new rating id, window, 'uniform' | 'risk', rank in that order, ticket, risk)
Replacement = tuple[int, str, str, int, str, float]


def _replacements(
    ctx: AuditContext, sample: SampleRecord, nas: Sequence[Finding], items: Mapping[int, Any]
) -> dict[int, Replacement]:
    """For each not_applicable finding, the next item in its order (if any is left)."""
    if not nas:
        return {}
    st = strata(ctx, sample.sample_id)
    by_window: dict[str, list[int]] = {}
    risk_only: list[int] = []
    for f in nas:
        row = items[f.rating_id]
        if row.rank is not None:
            by_window.setdefault(row.window_id, []).append(f.rating_id)
        else:
            risk_only.append(f.rating_id)
    frame = load_frame(ctx, sample.frame_id)
    takes = {w: st[w].take + len(ids) for w, ids in by_window.items()}
    base = {}
    if risk_only:
        base = {w: s.base_take for w, s in st.items()}
        for w, k in base.items():
            takes[w] = max(takes.get(w, 0), k)
    result = stream_frame(
        ctx,
        frame,
        sample.seed,
        takes,
        risk_take=sample.risk_take + len(risk_only) if risk_only else 0,
        risk_min=sample.risk_min,
        risk_base=base or None,
    )
    tickets = result.tickets()
    out: dict[int, Replacement] = {}
    for w, ids in by_window.items():
        nexts = result.uniform.get(w, [])[st[w].take :]
        for rid, new in zip(sorted(ids, key=lambda r: items[r].rank), nexts, strict=False):
            rank = result.uniform[w].index(new) + 1
            out[rid] = (new, w, "uniform", rank, tickets.number(new), 0.0)
    if risk_only:
        nexts = result.risk[sample.risk_take :]
        for rid, new in zip(
            sorted(risk_only, key=lambda r: items[r].risk_rank), nexts, strict=False
        ):
            win, score = result.risk_info[new]
            rank = result.risk.index(new) + 1
            out[rid] = (new, win, "risk", rank, tickets.number(new), score)
    return out


def _apply_replacements(
    conn: Connection,
    sample: SampleRecord,
    st: Mapping[str, StratumRecord],
    replacements: Mapping[int, Replacement],
    existing: dict[int, tuple[int | None, int | None]],
    batch_id: int,
    now: datetime,
    actor: str,
) -> None:
    it, s = at.audit_items, at.audit_samples
    per_window: dict[str, list[tuple[int, Replacement]]] = {}
    risk: list[tuple[int, Replacement]] = []
    for old, rep in replacements.items():
        (per_window.setdefault(rep[1], []) if rep[2] == "uniform" else risk).append((old, rep))
    for w, reps in per_window.items():
        stratum = st[w]
        for old, (new, _, _, rank, ticket, _) in sorted(reps, key=lambda x: x[1][3]):
            add_uniform_item(
                conn, sample.sample_id, existing, new, w, rank, ticket, "replacement", batch_id
            )
            step = {"why": "replacement", "replaces": old, "at": now.isoformat(), "by": actor}
            move_take(conn, sample.sample_id, stratum, rank, step)
            stratum = replace(
                stratum, take=rank, history=[*stratum.history, {"take": rank, **step}]
            )
    if risk:
        take, history = sample.risk_take, list(sample.risk_history)
        for old, (new, w, _, rank, ticket, score) in sorted(risk, key=lambda x: x[1][3]):
            if new in existing:
                conn.execute(
                    it.update()
                    .where(it.c.sample_id == sample.sample_id, it.c.rating_id == new)
                    .values(risk_rank=rank)
                )
            else:
                conn.execute(
                    it.insert(),
                    {
                        "sample_id": sample.sample_id,
                        **item_row(
                            new,
                            w,
                            ticket,
                            risk_rank=rank,
                            risk=score,
                            added="replacement",
                            batch_id=batch_id,
                        ),
                    },
                )
                existing[new] = (None, rank)
            history.append(
                {
                    "take": rank,
                    "why": "replacement",
                    "replaces": old,
                    "at": now.isoformat(),
                    "by": actor,
                }
            )
            take = rank
        res = conn.execute(
            s.update()
            .where(s.c.sample_id == sample.sample_id, s.c.risk_take == sample.risk_take)
            .values(risk_take=take, risk_history=canonical_json(history))
        )
        if res.rowcount != 1:
            raise Conflict(f"sample {sample.sample_id} changed meanwhile; run again")
