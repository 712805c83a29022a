"""The audit's figures for a period's pages and public release (the core's
:class:`~integrity.reports.AuditFigures`): the estimate of the sample drawn from the
period's frame, exactly as ``integrity audit report`` computes it."""

from __future__ import annotations

from audit_sampling.context import AuditContext
from audit_sampling.estimates import ALL, METHOD, RISK, report
from audit_sampling.records import frames, load_frame, load_sample, samples
from integrity.reports import AuditSummary, Period


class PeriodAudit:
    """:class:`~integrity.reports.AuditFigures` over one :class:`AuditContext`."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx

    def of_period(self, period: Period) -> AuditSummary | None:
        """The latest sample drawn from a frame of ``period`` (frames are months, so
        another kind of period has none)."""
        if period.kind != "month":
            return None
        frame_ids = {f.frame_id for f in frames(self.ctx, period.label)}
        found = [s for s in samples(self.ctx) if s.frame_id in frame_ids]
        if not found:
            return None
        sample = load_sample(self.ctx, found[-1].sample_id)
        frame = load_frame(self.ctx, sample.frame_id)
        rep = report(self.ctx, sample.sample_id)
        rows = {str(r["window_id"]): r for r in rep.rows}
        overall = dict(rows.get(ALL) or {})
        risk = rows.get(RISK)
        return AuditSummary(
            sample_id=rep.sample_id,
            period=rep.period,
            seed=rep.seed,
            frame_sha256=rep.frame_sha256,
            checkpoint=frame.checkpoint,
            population=frame.ratings,
            confidence=rep.confidence,
            tolerable_rate=rep.tolerable_rate,
            method=METHOD,
            overall=overall,
            strata=tuple(dict(r) for w, r in rows.items() if w not in (ALL, RISK)),
            risk=dict(risk) if risk is not None else None,
            escalations=tuple(rep.escalations),
            notes=tuple(rep.notes),
        )
