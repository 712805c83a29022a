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

import numpy as np
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
    #: the soft signals (> 0) of each rating a finding names: only those can be held
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
    """Combine findings and soft signals per rating (see module docstring).

    The noisy-OR is taken on arrays over every rating with a finding or a soft signal,
    factor by factor in the same order for each rating (its findings in the order
    given, then the soft signals in theirs), so each risk is the same float as a
    rating-by-rating product; only the ratings a finding names are walked one by one
    (for the hold decision)."""
    flags = list(flags)
    soft = [s for s in signals if s.detector not in RANK_ONLY]
    prior = [s for s in signals if s.detector in RANK_ONLY]
    names = [s.detector for s in soft]
    if len(set(names)) != len(names):
        raise ValueError(f"soft signals must have distinct names, not {names}")
    # each signal's positive values (the last where an id repeats, as a mapping keeps)
    positive = []
    for s in soft:
        r = s.risk[s.risk > 0]
        if r.index.has_duplicates:
            r = r[~r.index.duplicated(keep="last")]
        positive.append((s.detector, r.index.to_numpy(dtype=np.int64), r.to_numpy(dtype=float)))
    by_rating: dict[int, list[Flag]] = defaultdict(list)
    for f in flags:
        for rid in f.rating_ids:
            by_rating[int(rid)].append(f)
    flagged = np.fromiter(by_rating, dtype=np.int64, count=len(by_rating))
    ids = np.unique(np.concatenate([flagged, *(i for _, i, _ in positive)]))
    keep = np.ones(len(ids))
    # every finding's factor on each of its ratings, findings in order: ``multiply.at``
    # applies them in that order (a rating named twice by a finding counts twice)
    sizes = [len(f.rating_ids) for f in flags]
    named = np.fromiter(
        (rid for f in flags for rid in f.rating_ids), dtype=np.int64, count=sum(sizes)
    )
    factor = np.repeat(np.array([1.0 - flag_risk(f) for f in flags], dtype=float), sizes)
    np.multiply.at(keep, np.searchsorted(ids, named), factor)
    for _, sid, val in positive:
        keep[np.searchsorted(ids, sid)] *= 1.0 - val
    risk = 1.0 - keep
    out = Verdicts()
    out.risk = dict(zip(ids.tolist(), risk.tolist(), strict=True))
    # the findings' ratings: their soft signals, and the hold decision
    at = {name: dict(zip(sid.tolist(), val.tolist(), strict=True)) for name, sid, val in positive}
    strength = {id(f): f.strength for f in flags}
    for rid, fl in by_rating.items():
        sr = {name: v for name, vals in at.items() if (v := vals.get(rid)) is not None}
        if sr:
            out.soft[rid] = sr
        if eligible is not None and rid not in eligible:
            continue
        strong = [f for f in fl if strength[id(f)] >= 1.0]
        if strong:
            out.hold[rid] = sorted(strong, key=lambda f: -strength[id(f)])
        elif out.risk[rid] >= hold_risk:
            out.hold[rid] = sorted(fl, key=lambda f: -strength[id(f)])
    ranked = pd.Series(risk, index=ids, dtype=float)
    for s in prior:
        idx = ranked.index.union(s.risk.index)
        ranked = 1.0 - (1.0 - ranked.reindex(idx).fillna(0.0)) * (
            1.0 - s.risk.reindex(idx).fillna(0.0)
        )
    out.ranked = ranked.clip(0.0, 1.0)
    return out
