"""Figures for the supervisor's pages beside the ranked report: a trend over periods,
low scores per window and local day, and what the integrity checks excluded and why.

Each is counted in the database through the ledger port (``Ledger.aggregate``), from
counted (accepted) ratings for scores, from every rating for what was excluded:

- :func:`trend`: per window, per hall and overall, the counted ratings, mean score and
  low-score rate of each of several periods (one ``GROUP BY`` per period);
- :func:`daily_low`: per window and local day of a period, counted and low ratings
  (one ``GROUP BY`` per day, so each is exact in the rule set's time zone);
- :func:`exclusions`: the ratings of a period that do not count, by status, by the
  stage of the engine that excluded them (:func:`stage_of`) and by reason code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from integrity.model import Rubric, Status
from integrity.ports import AggregateQuery, Ledger, Tally
from integrity.registry import ServiceRegistry
from integrity.reports.periods import Period

#: Stages of the engine that exclude ratings, in the order a rating meets them.
STAGES = ("hook", "detection", "audit", "appeal")
#: What each stage is, for people.
STAGE_LABELS = {
    "hook": "intake checks (validation hook)",
    "detection": "detection and its review",
    "audit": "audit findings",
    "appeal": "upheld appeals",
}
#: Statuses of ratings that do not count.
EXCLUDED_STATUSES = (Status.HELD.value, Status.REJECTED.value, Status.VOIDED.value)


def stage_of(reasons: Sequence[str]) -> str:
    """The stage that keeps a rating with these current reason codes from counting: an
    upheld appeal, else an audit finding, else detection (an ``outlier.*`` finding, or
    a reviewer's decision or escalation alone: window cases come from detection), else
    the validation hook (rate limits, duplicates, times, registry, closed periods)."""
    if any(r.startswith("appeal.") for r in reasons):
        return "appeal"
    if any(r.startswith("audit.") for r in reasons):
        return "audit"
    if any(r.startswith("outlier.") for r in reasons):
        return "detection"
    if reasons and all(r.startswith("review.") for r in reasons):
        return "detection"
    return "hook"


def trend_periods(period: Period, count: int = 12) -> tuple[Period, ...]:
    """The ``count`` periods ending with ``period``, oldest first: months, quarters or
    ISO weeks before it; for a range of days, the 7-day spans ending on its last day."""
    if period.kind == "range":
        last = period.last_day or (period.end - timedelta(seconds=1)).astimezone(period.tz).date()
        spans = [
            Period.between(
                last - timedelta(days=7 * i + 6), last - timedelta(days=7 * i), period.tz
            )
            for i in range(count)
        ]
        return tuple(reversed(spans))
    out = [period]
    while len(out) < count:
        out.append(out[-1].previous())
    return tuple(reversed(out))


def short_label(period: Period) -> str:
    """A short axis label: ``2026-10``, ``2026-Q4``, ``W43``, or a range's last day ``10-31``."""
    if period.kind == "week":
        return period.label.split("-", 1)[1]
    if period.kind == "range" and period.last_day is not None:
        return period.last_day.strftime("%m-%d")
    return period.label


@dataclass(frozen=True)
class TrendPoint:
    """One group in one period: counted ratings, mean composite, low-score share."""

    period: str
    counted: int
    score: float | None
    low_score_rate: float | None


@dataclass(frozen=True)
class Trend:
    """Per window, per hall (with a registry) and overall, one point per period."""

    periods: tuple[Period, ...]
    windows: Mapping[str, tuple[TrendPoint, ...]]
    halls: Mapping[str, tuple[TrendPoint, ...]]
    overall: tuple[TrendPoint, ...]


@dataclass
class _Sum:
    counted: int = 0
    composite: float = 0.0
    low: int = 0

    def add(self, t: Tally) -> None:
        self.counted += t.ratings
        self.composite += t.composite_sum
        self.low += t.low

    def point(self, label: str) -> TrendPoint:
        c = self.counted
        return TrendPoint(label, c, self.composite / c if c else None, self.low / c if c else None)


def _accepted(
    ledger: Ledger, rubric: Rubric, p: Period, windows: tuple[str, ...] | None
) -> list[Tally]:
    q = AggregateQuery(
        by=("window_id",),
        low_below=rubric.low_score_below,
        occurred_from=p.start,
        occurred_to=p.end,
        window_ids=windows,
    )
    return [t for t in ledger.aggregate(q) if t.status is Status.ACCEPTED]


def trend(
    ledger: Ledger,
    rubric: Rubric,
    periods: Sequence[Period],
    registry: ServiceRegistry | None = None,
    windows: tuple[str, ...] | None = None,
) -> Trend:
    """Counted ratings, score and low-score rate of each window (and hall, through a
    loaded ``registry``) in each of ``periods``; ``windows`` keeps those windows only.
    A group appears if it counted a rating in any of the periods; its points in the
    others have ``counted`` 0 and no score."""
    registry = registry or ServiceRegistry()
    per_window: dict[str, dict[int, _Sum]] = {}
    per_hall: dict[str, dict[int, _Sum]] = {}
    overall: dict[int, _Sum] = {}
    for i, p in enumerate(periods):
        for t in _accepted(ledger, rubric, p, windows):
            window = str(t.key[0])
            per_window.setdefault(window, {}).setdefault(i, _Sum()).add(t)
            hall = registry.hall_of(window) if registry.loaded else None
            if hall is not None:
                per_hall.setdefault(hall.hall_id, {}).setdefault(i, _Sum()).add(t)
            overall.setdefault(i, _Sum()).add(t)

    def points(sums: Mapping[int, _Sum]) -> tuple[TrendPoint, ...]:
        return tuple(sums.get(i, _Sum()).point(p.label) for i, p in enumerate(periods))

    return Trend(
        periods=tuple(periods),
        windows={w: points(s) for w, s in sorted(per_window.items())},
        halls={h: points(s) for h, s in sorted(per_hall.items())},
        overall=points(overall),
    )


@dataclass(frozen=True)
class DailyLow:
    """Per window and local day of a period: (counted ratings, low scores among them)."""

    days: tuple[date, ...]
    cells: Mapping[str, tuple[tuple[int, int], ...]]

    def low(self, window: str) -> tuple[int, ...]:
        return tuple(low for _, low in self.cells[window])


def period_days(period: Period) -> tuple[date, ...]:
    first = period.first_day or period.start.astimezone(period.tz).date()
    return tuple(first + timedelta(days=i) for i in range(period.days))


def daily_low(
    ledger: Ledger, rubric: Rubric, period: Period, windows: tuple[str, ...] | None = None
) -> DailyLow:
    """Counted and low ratings per window and local day of ``period`` (windows with a
    counted rating in it; ``windows`` keeps those only)."""
    days = period_days(period)
    found: dict[str, dict[int, tuple[int, int]]] = {}
    for i, day in enumerate(days):
        p = Period.between(day, day, period.tz)
        for t in _accepted(ledger, rubric, p, windows):
            n, low = found.setdefault(str(t.key[0]), {}).get(i, (0, 0))
            found[str(t.key[0])][i] = (n + t.ratings, low + t.low)
    return DailyLow(
        days=days,
        cells={
            w: tuple(cells.get(i, (0, 0)) for i in range(len(days)))
            for w, cells in sorted(found.items())
        },
    )


@dataclass(frozen=True)
class Exclusions:
    """The ratings of a period and what kept some from counting.

    ``by_stage`` counts each rating that does not count once (:func:`stage_of`);
    ``by_reason`` counts, per (stage, reason code), the ratings carrying that code (one
    rating may carry several, so these may add up to more than ``excluded``);
    ``by_window`` is ``by_stage`` per window.
    """

    received: int
    counted: int
    by_status: Mapping[str, int]
    by_stage: Mapping[str, int]
    by_reason: Mapping[tuple[str, str], int]
    by_window: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def excluded(self) -> int:
        return self.received - self.counted

    def rows(self) -> list[dict[str, object]]:
        """One row per (stage, reason), most frequent first within each stage."""
        out: list[dict[str, object]] = []
        for stage in STAGES:
            reasons = [(c, n) for (s, c), n in self.by_reason.items() if s == stage]
            for code, n in sorted(reasons, key=lambda kv: (-kv[1], kv[0])):
                out.append({"stage": stage, "reason": code, "ratings": n})
        return out


def exclusions(
    ledger: Ledger, rubric: Rubric, period: Period | None, windows: tuple[str, ...] | None = None
) -> Exclusions:
    """What the engine excluded from ``period`` (``None``: all time), and why."""
    q = AggregateQuery(
        by=("window_id",),
        low_below=rubric.low_score_below,
        occurred_from=period.start if period else None,
        occurred_to=period.end if period else None,
        window_ids=windows,
    )
    received = counted = 0
    by_status: Counter[str] = Counter({s: 0 for s in EXCLUDED_STATUSES})
    by_stage: Counter[str] = Counter({s: 0 for s in STAGES})
    by_reason: Counter[tuple[str, str]] = Counter()
    by_window: dict[str, Counter[str]] = {}
    for t in ledger.aggregate(q):
        received += t.ratings
        if t.status is Status.ACCEPTED:
            counted += t.ratings
            continue
        stage = stage_of(t.reasons)
        by_status[t.status.value] += t.ratings
        by_stage[stage] += t.ratings
        by_window.setdefault(str(t.key[0]), Counter())[stage] += t.ratings
        for code in t.reasons or ("(no reason recorded)",):
            by_reason[(stage, code)] += t.ratings
    return Exclusions(
        received=received,
        counted=counted,
        by_status=dict(by_status),
        by_stage=dict(by_stage),
        by_reason=dict(by_reason),
        by_window={w: dict(c) for w, c in sorted(by_window.items())},
    )
