"""Extension points: what the audit and the appeals tell a period's pages and release.

The core does not know the audit sample or the appeal workflow (they are packages).
Each supplies its figures through a protocol here, and the composition root wires it
(``app.factories[AuditFigures] = ...``), as for :class:`~integrity.reports.FollowupFigures`;
a front end asks ``app.get(AuditFigures)`` when it is wired and says "none" when not.

- :class:`AuditFigures`: the period's audit sample, its findings and its estimates with
  exact bounds (:class:`AuditSummary`; ``None`` when no sample was drawn for it);
- :class:`AppealFigures`: the appeals about the period's ratings and what became of
  them (:class:`AppealCounts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from integrity.reports.periods import Period


@dataclass(frozen=True)
class AuditSummary:
    """The estimate of one audit sample (the audit's ``audit report``), in plain values.

    ``overall``: the random sample over every window (population, sampled, audited,
    pending, deviations, voided, rate, lower, upper, projected, projected_upper,
    escalate, codes: finding code -> items); ``strata``: the same per window
    (``window_id``); ``risk``: the targeted risk stratum, reported and never projected.
    Bounds are exact at ``confidence`` (the method says how).
    """

    sample_id: int
    period: str
    seed: str
    frame_sha256: str
    checkpoint: str
    population: int
    confidence: float
    tolerable_rate: float
    method: str
    overall: Mapping[str, Any]
    strata: tuple[Mapping[str, Any], ...] = ()
    risk: Mapping[str, Any] | None = None
    escalations: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["strata"] = [dict(s) for s in self.strata]
        doc["escalations"] = list(self.escalations)
        doc["notes"] = list(self.notes)
        return doc


class AuditFigures(Protocol):
    """The audit's figures for a period."""

    def of_period(self, period: Period) -> AuditSummary | None:
        """The estimate of the sample drawn from ``period``'s frame (the latest sample
        if several), or ``None`` when none was drawn (or the period is no month)."""
        ...


@dataclass(frozen=True)
class AppealCounts:
    """The appeals about a period's ratings (whenever filed), by what became of them so far.

    ``filed`` = ``admitted`` + ``ineligible``; ``decided`` = ``upheld`` + ``rejected``;
    ``open`` are admitted appeals not yet final; ``overdue`` are open ones past their
    decision deadline. ``uphold_rate`` = upheld / decided (``None`` when none decided).
    """

    filed: int = 0
    admitted: int = 0
    ineligible: int = 0
    open: int = 0
    decided: int = 0
    upheld: int = 0
    rejected: int = 0
    withdrawn: int = 0
    overdue: int = 0
    uphold_rate: float | None = None
    by_ground: Mapping[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["by_ground"] = dict(self.by_ground)
        return doc


class AppealFigures(Protocol):
    """The appeals' figures for a period."""

    def of_period(self, period: Period) -> AppealCounts:
        """The appeals about ratings of ``period`` (a rating's period is its
        ``occurred_at``'s, as in reports), whenever they were filed."""
        ...
