"""Performance reports: per group, from counted (accepted) ratings only, with ranks, the
change since the previous period, what was excluded and why, and what must rectify.

The database does the counting (``Ledger.aggregate``: one ``GROUP BY`` per period);
this module folds its tallies into groups (a hall is the sum of its windows), then
ranks, compares and flags. Every group with any rating in the period appears, also
when none counted (``counted`` 0, ``score`` empty).

Figures of a group (docs/reference.md, Reports):

- ``score``: mean composite of its counted ratings; one mean per rubric dimension;
- ``low_score_rate``: share of counted ratings whose composite is below the rubric's
  low mark, with its exact (Clopper-Pearson) 95 % interval ``low_rate_lo`` ..
  ``low_rate_hi``;
- ``rank``: 1 = best score among the report's groups; equal scores (within 1e-9) share
  a rank and the next rank skips (1, 2, 2, 4); groups with nothing counted, and the
  group of ratings naming no staff (or at windows of no known hall), are not ranked;
  ``hall_rank``: the same within the group's hall;
- ``prev_score``, ``score_change`` (score - prev_score), ``rank_change`` (previous rank
  - rank: positive = moved up) against the previous period of the same kind, with the
  same grouping and filters;
- ``held``, ``rejected``, ``voided`` and ``top_reasons`` (the commonest reason codes
  of its ratings that do not count, ``code:ratings``);
- ``rectify``: ``low_score_rate`` above the rule set's ``[followup] rectify_low_rate``
  with at least ``rectify_min_counted`` counted ratings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from integrity.errors import ConfigError, FieldError, InvalidInput
from integrity.model import Rubric, Status
from integrity.ports import AggregateQuery, Ledger, Tally
from integrity.registry import ServiceRegistry
from integrity.reports.followup import FollowupFigures
from integrity.reports.periods import Period

#: ``--by`` -> the name of the group's column in reports.
GROUPS = {
    "window": "window_id",
    "staff": "staff_id",
    "service_type": "service_type",
    "channel": "channel",
    "hall": "hall_id",
}
#: The columns every report has had (kept, in this order, among the new ones).
REPORT_COLUMNS = (
    "ratings",
    "counted",
    "score",
    "low_score_rate",
    "low_scores",
    "held",
    "rejected",
    "voided",
)
#: What the table format shows for a group without a key (machine formats: empty).
NO_KEY_LABELS = {"staff": "(no staff named)", "hall": "(not in the registry)"}
TOP_REASONS = 3
CONFIDENCE = 0.95
_TIE = 1e-9  # scores closer than this are equal (sums in another order differ by ~1e-15)
_FIXED_COLUMNS = frozenset(
    {
        *GROUPS.values(),
        *REPORT_COLUMNS,
        "rank",
        "hall_rank",
        "low_rate_lo",
        "low_rate_hi",
        "rectify",
        "prev_score",
        "score_change",
        "rank_change",
        "top_reasons",
    }
)


@dataclass(frozen=True)
class RectifyRule:
    """When a group must rectify: ``low_score_rate`` > ``low_rate`` with at least
    ``min_counted`` counted ratings (so 1 low in 3 does not flag)."""

    low_rate: float = 0.20
    min_counted: int = 10

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> RectifyRule:
        """From the rule set's ``[followup]`` table (defaults where it says nothing)."""
        try:
            rule = cls(
                low_rate=float(section.get("rectify_low_rate", cls.low_rate)),
                min_counted=int(section.get("rectify_min_counted", cls.min_counted)),
            )
        except (TypeError, ValueError):
            raise ConfigError(
                "[followup] rectify_low_rate must be a share 0-1 and rectify_min_counted "
                "a whole number of ratings"
            ) from None
        if not 0.0 <= rule.low_rate <= 1.0 or rule.min_counted < 1:
            raise ConfigError(
                "[followup] rectify_low_rate must be within 0-1 and rectify_min_counted >= 1"
            )
        return rule

    def applies(self, counted: int, low_rate: float | None) -> bool:
        return low_rate is not None and counted >= self.min_counted and low_rate > self.low_rate


@dataclass(frozen=True)
class ReportRow:
    """One group's figures (see the module's docstring); ``key`` is ``None`` for the
    ratings naming no staff member (``--by staff``) or at windows of no known hall.
    ``hall_id``: the hall itself (``--by hall``), the window's hall, or the hall where
    most of a staff member's ratings were given (with a registry; else ``None``)."""

    key: str | None
    hall_id: str | None
    ratings: int
    counted: int
    score: float | None
    dimensions: Mapping[str, float | None]
    low_scores: int
    low_score_rate: float | None
    low_rate_lo: float | None
    low_rate_hi: float | None
    held: int
    rejected: int
    voided: int
    top_reasons: tuple[tuple[str, int], ...]
    rank: int | None
    hall_rank: int | None
    prev_score: float | None
    prev_rank: int | None
    score_change: float | None
    rank_change: int | None
    rectify: bool
    followup: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """A performance report: the rows and everything they were computed with."""

    by: str
    period: Period | None
    previous: Period | None
    rubric: Rubric
    rectify_rule: RectifyRule
    registry_loaded: bool
    hall: str | None
    window: str | None
    rows: tuple[ReportRow, ...]
    followup_columns: tuple[str, ...] = ()

    @property
    def column(self) -> str:
        """The group's column: ``window_id``, ``staff_id``, ``hall_id`` ..."""
        return GROUPS[self.by]

    @property
    def with_halls(self) -> bool:
        """Whether rows name their hall and rank within it (windows and staff, with a
        registry loaded)."""
        return self.registry_loaded and self.by in ("window", "staff")

    @property
    def dimension_columns(self) -> dict[str, str]:
        """Rubric dimension -> its column (its name; ``<name>_mean`` if a report column
        already has that name)."""
        return {d: (f"{d}_mean" if d in _FIXED_COLUMNS else d) for d in self.rubric.dimensions}

    @property
    def columns(self) -> tuple[str, ...]:
        halls = ("hall_id",) if self.with_halls else ()
        return (
            self.column,
            *halls,
            "rank",
            *(("hall_rank",) if self.with_halls else ()),
            "ratings",
            "counted",
            "score",
            *self.dimension_columns.values(),
            "low_score_rate",
            "low_rate_lo",
            "low_rate_hi",
            "low_scores",
            "rectify",
            "prev_score",
            "score_change",
            "rank_change",
            "held",
            "rejected",
            "voided",
            "top_reasons",
            *self.followup_columns,
        )

    def records(self, labels: bool = False) -> list[dict[str, Any]]:
        """The rows as flat dicts keyed by :attr:`columns` (for ``render``). With
        ``labels`` (the table format), a group without a key shows as
        ``(no staff named)`` / ``(not in the registry)`` instead of empty."""
        label = NO_KEY_LABELS.get(self.by) if labels else None
        dims = self.dimension_columns
        out = []
        for r in self.rows:
            rec: dict[str, Any] = {self.column: r.key if r.key is not None else label}
            if self.with_halls:
                rec["hall_id"] = r.hall_id
            rec["rank"] = r.rank
            if self.with_halls:
                rec["hall_rank"] = r.hall_rank
            rec.update(
                {
                    "ratings": r.ratings,
                    "counted": r.counted,
                    "score": r.score,
                    **{dims[d]: r.dimensions.get(d) for d in dims},
                    "low_score_rate": r.low_score_rate,
                    "low_rate_lo": r.low_rate_lo,
                    "low_rate_hi": r.low_rate_hi,
                    "low_scores": r.low_scores,
                    "rectify": r.rectify,
                    "prev_score": r.prev_score,
                    "score_change": r.score_change,
                    "rank_change": r.rank_change,
                    "held": r.held,
                    "rejected": r.rejected,
                    "voided": r.voided,
                    "top_reasons": [f"{code}:{n}" for code, n in r.top_reasons],
                    **{c: r.followup.get(c) for c in self.followup_columns},
                }
            )
            out.append(rec)
        return out


# -- building ------------------------------------------------------------------------------


@dataclass
class _Group:
    """Running sums of one group while tallies are folded in."""

    ratings: int = 0
    counted: int = 0
    composite_sum: float = 0.0
    low: int = 0
    held: int = 0
    rejected: int = 0
    voided: int = 0
    dim_sums: Counter[str] = field(default_factory=Counter)
    dim_counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    halls: Counter[str] = field(default_factory=Counter)  # hall -> ratings there

    def add(self, t: Tally, hall: str | None) -> None:
        self.ratings += t.ratings
        if hall is not None:
            self.halls[hall] += t.ratings
        if t.status is Status.ACCEPTED:
            self.counted += t.ratings
            self.composite_sum += t.composite_sum
            self.low += t.low
            self.dim_sums.update(t.dimension_sums)
            self.dim_counts.update(t.dimension_counts)
            return
        if t.status is Status.HELD:
            self.held += t.ratings
        elif t.status is Status.REJECTED:
            self.rejected += t.ratings
        elif t.status is Status.VOIDED:
            self.voided += t.ratings
        for code in t.reasons:
            self.reasons[code] += t.ratings

    @property
    def score(self) -> float | None:
        return self.composite_sum / self.counted if self.counted else None

    def hall(self) -> str | None:
        """The hall most of the group's ratings were given in (ties: the first by id)."""
        if not self.halls:
            return None
        return min(self.halls.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact two-sided interval for a share of ``k`` in ``n`` (``n`` > 0)."""
    from scipy.special import betaincinv  # scipy.stats costs a second to import

    alpha = 1.0 - confidence
    lo = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha / 2))
    hi = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - alpha / 2))
    return lo, hi


def competition_ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """Rank 1 = highest score; equal scores share a rank and the next one skips (1, 2, 2, 4)."""
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    ranks: dict[str, int] = {}
    prev: float | None = None
    rank = 0
    for i, (key, score) in enumerate(ordered, start=1):
        if prev is None or abs(prev - score) > _TIE:
            rank = i
        ranks[key] = rank
        prev = score
    return ranks


def _window_filter(
    registry: ServiceRegistry, hall: str | None, window: str | None
) -> tuple[str, ...] | None:
    if hall is None:
        return (window,) if window is not None else None
    if not registry.loaded:
        raise InvalidInput(
            [FieldError("hall", "no service registry is loaded (`integrity registry load`)")],
            what="report",
        )
    if hall not in registry.halls:
        raise InvalidInput([FieldError("hall", f"no hall {hall!r} in the registry")], "report")
    windows = tuple(registry.windows_of(hall))
    return tuple(w for w in windows if w == window) if window is not None else windows


def _fold(tallies: Sequence[Tally], by: str, registry: ServiceRegistry) -> dict[str | None, _Group]:
    groups: dict[str | None, _Group] = {}
    for t in tallies:
        if by == "hall":
            hall_of = registry.hall_of(str(t.key[0]))
            key: str | None = hall_of.hall_id if hall_of else None
            hall = key
        else:
            key = t.key[0]
            window = t.key[0] if by == "window" else (t.key[1] if len(t.key) > 1 else None)
            found = registry.hall_of(window) if window is not None and registry.loaded else None
            hall = found.hall_id if found else None
        groups.setdefault(key, _Group()).add(t, hall)
    return groups


def _sql_by(by: str, registry: ServiceRegistry) -> tuple[str, ...]:
    if by in ("window", "hall"):
        return ("window_id",)
    if by == "staff":
        return ("staff_id", "window_id") if registry.loaded else ("staff_id",)
    return (GROUPS[by],)


def _ranks(groups: Mapping[str | None, _Group]) -> dict[str, int]:
    return competition_ranks(
        {k: g.score for k, g in groups.items() if k is not None and g.score is not None}
    )


def build_report(
    ledger: Ledger,
    *,
    by: str,
    rubric: Rubric,
    period: Period | None = None,
    registry: ServiceRegistry | None = None,
    hall: str | None = None,
    window: str | None = None,
    rectify: RectifyRule | None = None,
    followup: FollowupFigures | None = None,
) -> Report:
    """The performance report of ``period`` (``None``: all time) by ``by`` (see
    :data:`GROUPS`), over ratings at the windows of ``hall`` and/or at ``window`` only.

    ``--by hall`` and ``hall`` need a loaded ``registry`` (``InvalidInput`` otherwise).
    """
    if by not in GROUPS:
        raise InvalidInput(
            [FieldError("by", f"expected one of {', '.join(GROUPS)}")], what="report"
        )
    registry = registry or ServiceRegistry()
    rectify = rectify or RectifyRule()
    if by == "hall" and not registry.loaded:
        raise InvalidInput(
            [
                FieldError(
                    "by",
                    "grouping by hall needs the service registry; none is loaded "
                    "(`integrity registry load FILE`)",
                )
            ],
            what="report",
        )
    windows = _window_filter(registry, hall, window)
    sql_by = _sql_by(by, registry)

    def tally(p: Period | None, dims: tuple[str, ...]) -> dict[str | None, _Group]:
        q = AggregateQuery(
            by=sql_by,
            dimensions=dims,
            low_below=rubric.low_score_below,
            occurred_from=p.start if p else None,
            occurred_to=p.end if p else None,
            window_ids=windows,
        )
        return _fold(ledger.aggregate(q), by, registry)

    groups = tally(period, rubric.dimensions)
    previous = period.previous() if period is not None else None
    before = tally(previous, ()) if previous is not None else {}
    ranks = _ranks(groups)
    prev_ranks = _ranks(before)
    with_halls = registry.loaded and by in ("window", "staff")
    halls = {k: g.hall() for k, g in groups.items()} if with_halls else {}
    hall_ranks: dict[str, int] = {}
    if with_halls:
        by_hall: dict[str, dict[str, float]] = {}
        for k, g in groups.items():
            h = halls.get(k)
            if k is not None and h is not None and g.score is not None:
                by_hall.setdefault(h, {})[k] = g.score
        for scores in by_hall.values():
            hall_ranks.update(competition_ranks(scores))

    rows = []
    for key, g in groups.items():
        c = g.counted
        rate = g.low / c if c else None
        lo, hi = clopper_pearson(g.low, c) if c else (None, None)
        prev = before.get(key)
        prev_score = prev.score if prev is not None else None
        rank = ranks.get(key) if key is not None else None
        prev_rank = prev_ranks.get(key) if key is not None else None
        rows.append(
            ReportRow(
                key=key,
                hall_id=key if by == "hall" else halls.get(key),
                ratings=g.ratings,
                counted=c,
                score=g.score,
                dimensions={
                    d: (g.dim_sums[d] / g.dim_counts[d] if g.dim_counts[d] else None)
                    for d in rubric.dimensions
                },
                low_scores=g.low,
                low_score_rate=rate,
                low_rate_lo=lo,
                low_rate_hi=hi,
                held=g.held,
                rejected=g.rejected,
                voided=g.voided,
                top_reasons=tuple(
                    sorted(g.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]
                ),
                rank=rank,
                hall_rank=hall_ranks.get(key) if key is not None else None,
                prev_score=prev_score,
                prev_rank=prev_rank,
                score_change=(
                    g.score - prev_score if g.score is not None and prev_score is not None else None
                ),
                rank_change=(
                    prev_rank - rank if rank is not None and prev_rank is not None else None
                ),
                rectify=rectify.applies(c, rate),
            )
        )
    rows.sort(key=lambda r: (r.rank is None, r.rank or 0, r.key is None, r.key or ""))
    columns: tuple[str, ...] = ()
    if followup is not None:
        columns = tuple(followup.columns)
        figures = followup.figures(by, period, [r.key for r in rows])
        rows = [_with_followup(r, figures.get(r.key, {})) for r in rows]
    return Report(
        by=by,
        period=period,
        previous=previous,
        rubric=rubric,
        rectify_rule=rectify,
        registry_loaded=registry.loaded,
        hall=hall,
        window=window,
        rows=tuple(rows),
        followup_columns=columns,
    )


def _with_followup(row: ReportRow, figures: Mapping[str, Any]) -> ReportRow:
    from dataclasses import replace

    return replace(row, followup=dict(figures))


def performance(
    ledger: Ledger, by: str, rubric: Rubric, period: Period | None = None
) -> list[dict[str, Any]]:
    """The report's rows as plain dicts (no registry, default rectify rule): for callers
    that want the figures (the demo, packages' tests) without the rest."""
    return build_report(ledger, by=by, rubric=rubric, period=period).records()
