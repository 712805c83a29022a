"""Combined risk per rating in [0, 1], and which ratings to hold.

Each finding (a :class:`~rules.detectors.base.Flag`) gives its ratings the risk
``0.5 * score / threshold`` capped at 1: exactly 0.5 at its detector's calibrated
threshold. Soft signals (pyod, fairness) give at most their weight (< 0.5). The
combined risk is the noisy-OR ``1 - prod(1 - r)``: independent pieces of evidence
add up. A rating is held when one finding reaches its threshold, or when the
combined risk reaches ``hold_risk`` (0.5) with at least one finding among the
evidence: a generic signal never holds on its own.

The risk recorded for every rating (:attr:`Verdicts.ranked`) adds one more term to the
noisy-OR: the ``prior`` signal (:func:`rules.detectors.generic.prior_signal`), below
the hold line for every rating, so that sorting by risk ranks the ratings no finding
reached too. It never takes part in the hold decision.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from rules.detectors.base import Flag, Signal

HOLD_RISK = 0.5
#: Signals that rank but never take part in a hold decision.
RANK_ONLY = frozenset({"prior"})


def flag_risk(flag: Flag) -> float:
    return float(min(1.0, max(0.0, 0.5 * flag.strength)))


@dataclass
class Verdicts:
    """What combination decided: risk per rating, and the findings behind each hold."""

    risk: dict[int, float] = field(default_factory=dict)  # the evidence the hold is judged on
    hold: dict[int, list[Flag]] = field(default_factory=dict)
    soft: dict[int, dict[str, float]] = field(default_factory=dict)
    ranked: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))  # risk + prior

    def recorded(self, rating_id: int) -> float:
        """The risk recorded for a rating: its evidence with the prior (0 when unknown)."""
        v = self.ranked.get(rating_id)
        return float(v) if v is not None else float(self.risk.get(rating_id, 0.0))


def combine(
    flags: Iterable[Flag],
    signals: Sequence[Signal] = (),
    *,
    hold_risk: float = HOLD_RISK,
    eligible: set[int] | None = None,
) -> Verdicts:
    """Combine findings and soft signals per rating (see module docstring)."""
    flags = list(flags)
    by_rating: dict[int, list[Flag]] = defaultdict(list)
    for f in flags:
        for rid in f.rating_ids:
            by_rating[rid].append(f)
    out = Verdicts()
    soft: dict[int, dict[str, float]] = defaultdict(dict)
    prior = [s for s in signals if s.detector in RANK_ONLY]
    for s in (s for s in signals if s.detector not in RANK_ONLY):
        r = s.risk[s.risk > 0]
        for rid, v in zip(r.index.tolist(), r.to_numpy().tolist(), strict=True):
            soft[int(rid)][s.detector] = float(v)
    # each finding's risk and strength once, however many ratings it covers; the
    # noisy-OR's product taken in the same order as ever (findings, then soft signals)
    strength = {id(f): f.strength for f in flags}
    risk_of = {id(f): flag_risk(f) for f in flags}
    for rid in set(by_rating) | set(soft):
        fl = by_rating.get(rid, [])
        sr = soft.get(rid)
        keep = 1.0
        for f in fl:
            keep *= 1.0 - risk_of[id(f)]
        if sr:
            for v in sr.values():
                keep *= 1.0 - v
            out.soft[rid] = sr
        risk = 1.0 - keep if fl or sr else 0.0
        out.risk[rid] = risk
        if not fl or (eligible is not None and rid not in eligible):
            continue
        strong = [f for f in fl if strength[id(f)] >= 1.0]
        if strong:
            out.hold[rid] = sorted(strong, key=lambda f: -strength[id(f)])
        elif risk >= hold_risk:
            out.hold[rid] = sorted(fl, key=lambda f: -strength[id(f)])
    ev = pd.Series(out.risk, dtype=float)
    ranked = ev
    for s in prior:
        idx = ranked.index.union(s.risk.index)
        ranked = 1.0 - (1.0 - ranked.reindex(idx).fillna(0.0)) * (
            1.0 - s.risk.reindex(idx).fillna(0.0)
        )
    out.ranked = ranked.clip(0.0, 1.0)
    return out
