"""``audit report``: deviation rates per window and overall, exact bounds, projections.

A deviation is a finding of ``fabricated``, ``coerced``, ``duplicate``,
``wrong_staff`` or ``cannot_verify``; ``genuine`` is not; ``not_applicable`` is
out of the population and out of the count. Only the uniform (random) sample is
projected onto the population; the risk stratum is judgmental (ISA 530 "targeted"
items) and reported on its own line, never projected. Methods: see
:mod:`audit_sampling.stats`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from audit_sampling import tables as at
from audit_sampling.context import CODES, DEVIATIONS, NOT_APPLICABLE, VOIDING, AuditContext
from audit_sampling.records import load_frame, load_sample, strata
from audit_sampling.stats import clopper_pearson, estimate, stratified

METHOD = (
    "exact one-sided bounds at the stated confidence: per window hypergeometric "
    "(Clopper-Pearson with the finite-population correction; scipy.stats.hypergeom), "
    "overall the sum of per-window bounds at alpha/H (Bonferroni) over population-weighted "
    "window rates; cp_upper is plain Clopper-Pearson (scipy.stats.beta) without the correction"
)
ALL = "(all)"
RISK = "(risk)"
COLUMNS = (
    "window_id",
    "population",
    "sampled",
    "audited",
    "pending",
    "deviations",
    "voided",
    "rate",
    "lower",
    "upper",
    "cp_upper",
    "projected",
    "projected_upper",
    "escalate",
)
#: What each column of the report says (printed under the table).
LEGEND = {
    "window_id": "the stratum; (all) is the random sample over every window, (risk) the "
    "targeted items",
    "population": "counted ratings of the window in the frame",
    "sampled": "items drawn (with expansions and replacements)",
    "audited": "items with a finding other than not_applicable",
    "pending": "items without a finding yet",
    "deviations": "findings of fabricated, coerced, duplicate, wrong_staff or cannot_verify",
    "voided": "ratings voided by a finding (fabricated, coerced, duplicate)",
    "rate": "deviations / audited",
    "lower": "exact lower bound of the deviation rate at the confidence",
    "upper": "exact upper bound of the deviation rate (hypergeometric, finite population)",
    "cp_upper": "plain Clopper-Pearson upper bound, without the finite-population correction",
    "projected": "invalid ratings expected in the window: population x rate",
    "projected_upper": "upper bound on the invalid ratings in the window",
    "escalate": "true when the audit is complete and the upper bound exceeds the tolerable rate",
}


@dataclass
class Report:
    sample_id: int
    seed: str
    frame_sha256: str
    period: str
    confidence: float
    tolerable_rate: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sample_id": self.sample_id,
            "period": self.period,
            "seed": self.seed,
            "frame_sha256": self.frame_sha256,
            "confidence": self.confidence,
            "tolerable_rate": self.tolerable_rate,
            "method": METHOD,
            "strata": [r for r in self.rows if r["window_id"] not in (ALL, RISK)],
            "overall": next((r for r in self.rows if r["window_id"] == ALL), None),
            "risk": next((r for r in self.rows if r["window_id"] == RISK), None),
            "escalations": self.escalations,
            "notes": self.notes,
        }


def _codes(ctx: AuditContext, sample_id: int) -> list[tuple[str, bool, bool, str | None]]:
    """Per item: (window, in uniform sample, in risk stratum, finding code or None)."""
    it, fi = at.audit_items, at.audit_findings
    q = (
        sa.select(it.c.window_id, it.c.rank, it.c.risk_rank, fi.c.code)
        .select_from(
            it.outerjoin(
                fi, sa.and_(fi.c.sample_id == it.c.sample_id, fi.c.rating_id == it.c.rating_id)
            )
        )
        .where(it.c.sample_id == sample_id)
    )
    with ctx.ledger.reading() as conn:
        return [
            (w, rank is not None, rr is not None, code) for w, rank, rr, code in conn.execute(q)
        ]


def _tally(codes: list[str | None]) -> dict[str, Any]:
    c = Counter(codes)
    audited = sum(n for k, n in c.items() if k is not None and k != NOT_APPLICABLE)
    return {
        "sampled": len(codes),
        "audited": audited,
        "pending": c[None],
        "deviations": sum(c[k] for k in DEVIATIONS),
        "voided": sum(c[k] for k in VOIDING),
        "codes": {k: c[k] for k in CODES},
    }


def report(
    ctx: AuditContext,
    sample_ref: int | str | None = None,
    confidence: float | None = None,
    tolerable_rate: float | None = None,
) -> Report:
    """The estimate of a sample's findings (default: the latest sample)."""
    sample = load_sample(ctx, sample_ref)
    frame = load_frame(ctx, sample.frame_id)
    conf = ctx.config.confidence if confidence is None else confidence
    tol = ctx.config.tolerable_rate if tolerable_rate is None else tolerable_rate
    if not 0 < conf < 1 or not 0 <= tol <= 1:
        raise ValueError("confidence must be in (0, 1) and the tolerable rate in [0, 1]")
    rep = Report(sample.sample_id, sample.seed, frame.frame_hash, frame.period, conf, tol)
    items = _codes(ctx, sample.sample_id)
    per_window: dict[str, list[str | None]] = {}
    risk_codes: list[str | None] = []
    for w, uniform, risky, code in items:
        if uniform:
            per_window.setdefault(w, []).append(code)
        if risky:
            risk_codes.append(code)
    triples = []
    for w, st in strata(ctx, sample.sample_id).items():
        tally = _tally(per_window.get(w, []))
        est = estimate(tally["deviations"], tally["audited"], st.population, conf)
        triples.append((tally["deviations"], tally["audited"], st.population))
        row = {"window_id": w, "population": st.population, **tally, **_bounds(est)}
        # A window is judged once its audit is complete (nothing pending).
        row["escalate"] = tally["audited"] > 0 and tally["pending"] == 0 and est.exceeds(tol)
        rep.rows.append(row)
        if row["escalate"]:
            rep.escalations.append(_escalation(w, est, tally, st.population, tol, sample.sample_id))
        elif tally["pending"] and tally["deviations"]:
            rep.notes.append(
                f"window {w}: {tally['deviations']} deviation(s) so far, "
                f"{tally['pending']} item(s) still pending"
            )
    overall = stratified(triples, conf)
    all_codes = [c for codes in per_window.values() for c in codes]
    tally = _tally(all_codes)
    row = {"window_id": ALL, "population": frame.ratings, **tally, **_bounds(overall)}
    row["cp_upper"] = None
    row["escalate"] = tally["audited"] > 0 and tally["pending"] == 0 and overall.exceeds(tol)
    rep.rows.append(row)
    if row["escalate"]:
        rep.escalations.append(
            f"ESCALATE overall: deviation rate upper bound {overall.upper:.1%} exceeds the "
            f"tolerable {tol:.1%} across {len(triples)} window(s) ({tally['deviations']} of "
            f"{tally['audited']} audited)"
        )
    if risk_codes:
        rt = _tally(risk_codes)
        rate = rt["deviations"] / rt["audited"] if rt["audited"] else None
        cp = clopper_pearson(rt["deviations"], rt["audited"], conf) if rt["audited"] else None
        rep.rows.append(
            {
                "window_id": RISK,
                "population": None,
                **rt,
                "rate": rate,
                "lower": cp[0] if cp else None,
                "upper": cp[1] if cp else None,
                "cp_upper": cp[1] if cp else None,
                "projected": None,
                "projected_upper": None,
                "escalate": False,
            }
        )
    return rep


def _escalation(
    window: str, est: Any, tally: dict[str, Any], population: int, tol: float, sample_id: int
) -> str:
    census = tally["audited"] + tally["codes"][NOT_APPLICABLE] >= population
    found = (
        f"{tally['deviations']} of {tally['audited']} audited"
        if tally["deviations"]
        else f"no deviation in {tally['audited']} audited, too few to show the rate is below it"
    )
    action = (
        "the whole window was audited: refer it for investigation"
        if census
        else f"expand the sample (`integrity audit expand {sample_id}`) or refer the window"
    )
    return (
        f"ESCALATE window {window}: deviation rate upper bound {est.upper:.1%} exceeds the "
        f"tolerable {tol:.1%} ({found}; {population} in the window); {action}"
    )


def _bounds(est: Any) -> dict[str, Any]:
    return {
        "rate": est.rate,
        "lower": est.lower,
        "upper": est.upper,
        "cp_upper": est.cp_upper,
        "projected": est.projected,
        "projected_upper": est.projected_upper,
    }
