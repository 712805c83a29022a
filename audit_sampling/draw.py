"""Step 2, the draw: the sample of a frame from a seed made public after the frame.

Each window takes its items in ticket order (:mod:`audit_sampling.sampler`); an
optional risk stratum takes the riskiest ratings not already drawn. A seed is locked
to the first frame it is used on; a frame and a period are drawn once; only the
latest frame of a period can be drawn, so nobody can pick among frames once the seed
is known. Drawing again with the same inputs returns the same sample. The sample,
its strata and items are written with their ``audit.draw`` event in one unit of work.

:func:`stream_frame` (re-read the stored frame, check it against its SHA-256, draw)
serves the later steps too: expansion and replacement take the next items of the
same orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audit_sampling import sampler
from audit_sampling import tables as at
from audit_sampling.context import AuditContext, sample_subject
from audit_sampling.formats import FrameError, FrameReader
from audit_sampling.parallel import draw_frame
from audit_sampling.records import (
    FrameRecord,
    SampleRecord,
    StratumRecord,
    drawn_in,
    frame_chunks,
    frames,
    load_frame,
    load_sample,
    sample_by_seed,
    strata,
)
from integrity.catalogue import Kind
from integrity.errors import (
    AlreadyExists,
    Conflict,
    EngineError,
    FieldError,
    InvalidInput,
    PolicyViolation,
)
from integrity.model import Event
from integrity.sqlkit import canonical_json


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

    existing = sample_by_seed(ctx, seed)
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
        with ctx.ledger.unit_of_work() as uow:
            conn = uow.connection
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
                    "risk_history": canonical_json([{**step, "take": len(result.risk)}]),
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
                        "history": canonical_json([{**step, "take": takes[w]}]),
                    }
                    for w, n in sorted(frame.strata.items())
                ],
            )
            if items:
                conn.execute(
                    at.audit_items.insert(),
                    [{"sample_id": sample_id, **row} for row in items.values()],
                )
            uow.append(
                Event(
                    kind=Kind.AUDIT_DRAW,
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
                )
            )
            uow.seal_tables(at=now, actor=person.person_id)  # samples, strata
    except AlreadyExists:
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
    """An ``audit_items`` row (without its sample id)."""
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


def _check_drawable(ctx: AuditContext, frame: FrameRecord) -> None:
    same_period = frames(ctx, frame.period)
    latest = max(f.frame_id for f in same_period)
    if frame.frame_id != latest:
        raise PolicyViolation(
            f"frame {frame.frame_id} is superseded by frame {latest} for {frame.period}; "
            "only the latest frame of a period can be drawn"
        )
    drawn = drawn_in(ctx, frame.period)
    if drawn is not None:
        raise PolicyViolation(
            f"{frame.period} already has sample {drawn[0]} (frame {drawn[1]}); "
            "a period is drawn once"
        )
