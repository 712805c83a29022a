"""The detector contract, calibration helpers and the flag a detector hands back.

Every detector follows pyod's contract: :meth:`Detector.fit` on a feature frame sets
``decision_scores_`` (one score per unit; higher is more suspicious), ``threshold_``
and ``labels_`` (1 = outlier); :meth:`Detector.decision_function` scores a frame
without changing the threshold. Score and threshold are kept apart: a score is a
statement about the data (``-log10`` of a p-value for the statistical detectors),
the threshold is policy, calibrated for a target share of honest ratings held
(``[detect] target_honest_hold``) and a false discovery rate (``[detect] fdr``).

Calibration (:func:`calibrated_threshold`): a unit ``u`` covering ``n_u`` ratings is
flagged when its p-value is at most ``alpha``, where ``alpha`` is the detector's share
of the honest-hold budget divided by the share of ratings its units cover, so that
the expected honest ratings held under the null are at most the budget; and at most
the Benjamini-Hochberg cut-off at ``fdr`` across all units tested, so that the flags
are mostly real. The stricter of the two wins. Nothing is hand-picked per attack.

Findings (:meth:`Detector.flags`) share one skeleton: units scoring at least ``soft``
times the threshold are candidates (below 1 they are soft evidence that holds only
with agreeing signals, see :mod:`rules.detectors.combine`); each candidate that holds
ratings (or opens a case) becomes a :class:`Flag` with the detector's fingerprint,
score, threshold, parameters and sentence. A detector writes only what differs: which
ratings a unit holds and how its finding reads.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from integrity.catalogue import Reason

#: Floor for p-values so that -log10 stays finite (scores are capped at 300).
P_FLOOR = 1e-300


def neglog10(p: np.ndarray | pd.Series | float) -> np.ndarray:
    """``-log10(p)`` with p floored at :data:`P_FLOOR` (score units: decades of evidence)."""
    arr = np.asarray(p, dtype=float)
    return -np.log10(np.clip(np.nan_to_num(arr, nan=1.0), P_FLOOR, 1.0))


def bh_cutoff(pvalues: np.ndarray, fdr: float) -> float:
    """The Benjamini-Hochberg line at the last rejection: reject every p <= the returned
    value (0 when nothing is rejected).

    ``pvalues`` are the p-values of every hypothesis tested (the family), ``fdr`` the
    target false discovery rate (ratio 0-1). Returns ``fdr * k / m`` for the largest
    ``k`` with ``p_(k) <= fdr * k / m``.
    """
    p = np.sort(np.asarray(pvalues, dtype=float))
    m = len(p)
    if m == 0:
        return 0.0
    line = fdr * np.arange(1, m + 1) / m
    ok = p <= line
    if not ok.any():
        return 0.0
    return float(line[np.flatnonzero(ok)[-1]])


def calibrated_alpha(
    pvalues: np.ndarray,
    weights: np.ndarray,
    *,
    budget: float,
    total_ratings: int,
    fdr: float,
) -> tuple[float, dict[str, float]]:
    """The p-value cut-off for one detector, and how it was reached.

    ``weights`` are the ratings each unit would hold if flagged; ``budget`` the share
    (ratio 0-1) of all ``total_ratings`` this detector may hold when every unit is honest.
    Under the null a unit's p-value is uniform, so holding units with p <= alpha holds
    ``alpha * sum(weights)`` honest ratings on average; alpha = budget * N / sum(weights).
    The result is the smaller of that and the BH cut-off at ``fdr``.
    """
    covered = float(np.sum(weights))
    if covered <= 0 or total_ratings <= 0:
        return 0.0, {"alpha_budget": 0.0, "alpha_bh": 0.0}
    a_budget = min(1.0, budget * total_ratings / covered)
    a_bh = bh_cutoff(pvalues, fdr)
    return min(a_budget, a_bh), {"alpha_budget": a_budget, "alpha_bh": a_bh}


def fingerprint(*parts: Any) -> str:
    """A stable 16-hex-digit id for a piece of evidence (detector, reason, unit key)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Flag:
    """One finding: a detector holds ``rating_ids`` for one unit (device x window, a window-day ...).

    ``score`` and ``threshold`` are on the detector's scale (``-log10 p`` for the
    statistical ones); ``explanation`` is a sentence a reviewer can check against the
    ledger; ``fingerprint`` identifies the evidence (same unit, same detector, same
    reason), so a cleared rating is not held again for it.
    """

    detector: str
    reason: str  # a code of integrity.catalogue.REASONS
    unit: str
    rating_ids: tuple[int, ...]
    score: float
    threshold: float
    params: Mapping[str, Any]
    explanation: str
    fingerprint: str
    case: str | None = None  # "case:window:<id>" for a window-level finding

    @property
    def strength(self) -> float:
        """Score over threshold (1.0 at the threshold)."""
        if self.threshold <= 0:
            return 1.0 if self.score > 0 else 0.0
        return self.score / self.threshold

    def as_evidence(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "reason": self.reason,
            "unit": self.unit,
            "score": round(float(self.score), 4),
            "threshold": round(float(self.threshold), 4),
            "params": dict(self.params),
            "explanation": self.explanation,
            "fingerprint": self.fingerprint,
        }


@dataclass
class Signal:
    """A soft, per-rating signal in [0, 1] that never holds on its own (pyod, fairness)."""

    detector: str
    risk: pd.Series  # index rating_id -> [0, 1]
    params: Mapping[str, Any] = field(default_factory=dict)


#: A candidate unit as the flag hooks see it: its row of ``units_`` and whatever the
#: detector attached in :meth:`Detector._unit_ratings` (window id, device hash, dates).
Unit = Mapping[str, Any]


class Detector:
    """Base class: ``fit`` / ``decision_function`` / ``threshold_`` / ``labels_`` as in pyod.

    Subclasses implement :meth:`_score` (a frame of units -> scores, higher is more
    suspicious, plus the p-values and the ratings each unit covers) and may override
    :meth:`_threshold`. ``fit`` keeps the unit frame in ``units_`` for :meth:`flags`,
    whose skeleton is shared; subclasses implement its hooks :meth:`_unit_ratings`,
    :meth:`_unit`, :meth:`_key` and :meth:`_explain`, and may override :meth:`_reason`,
    :meth:`_unit_params` and :meth:`_case`.
    """

    #: The detector's name: its key in the registry, ``[detect]`` tables and evidence.
    name: ClassVar[str] = "detector"
    #: The reason code its flags carry (:data:`integrity.catalogue.REASONS`).
    reason: ClassVar[Reason]
    #: Units scoring at least this share of the threshold are flagged (soft below 1).
    soft: ClassVar[float] = 0.5

    def __init__(self, *, budget: float = 0.001, fdr: float = 0.05) -> None:
        self.budget = budget
        self.fdr = fdr
        self.decision_scores_: np.ndarray = np.zeros(0)
        self.threshold_: float = math.inf
        self.labels_: np.ndarray = np.zeros(0, dtype=int)
        self.units_: pd.DataFrame = pd.DataFrame()
        self.calibration_: dict[str, float] = {}

    # -- contract -------------------------------------------------------------------------

    def fit(self, X: Any, total_ratings: int | None = None) -> Detector:
        """Score every unit of ``X`` and calibrate the threshold; returns ``self``."""
        units = self._score(X)
        self.units_ = units
        self.decision_scores_ = units["score"].to_numpy(dtype=float) if len(units) else np.zeros(0)
        n_total = total_ratings if total_ratings is not None else _rows(X)
        self.threshold_ = self._threshold(units, n_total)
        self.labels_ = (self.decision_scores_ >= self.threshold_).astype(int)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Scores for the units of ``X`` (higher is more suspicious); the fit is unchanged.

        :meth:`_score` also estimates what the fit keeps (dispersions, the family size,
        the frame the units come from); those of the last ``fit`` are restored, so the
        threshold and :meth:`flags` still describe the fitted frame.
        """
        fitted = dict(self.__dict__)
        try:
            units = self._score(X)
        finally:
            self.__dict__.clear()
            self.__dict__.update(fitted)
        return units["score"].to_numpy(dtype=float) if len(units) else np.zeros(0)

    def predict(self, X: Any) -> np.ndarray:
        return (self.decision_function(X) >= self.threshold_).astype(int)

    # -- to implement ---------------------------------------------------------------------

    def _score(self, X: Any) -> pd.DataFrame:
        """Units with at least ``score`` (higher = more suspicious), ``p`` and ``weight``."""
        raise NotImplementedError

    def _threshold(self, units: pd.DataFrame, total_ratings: int) -> float:
        if units.empty:
            return math.inf
        p = units["p"].to_numpy()
        # hypotheses screened out before scoring (too little data to ever reject) are
        # still part of the family: they enter Benjamini-Hochberg as p = 1
        pad = max(0, int(getattr(self, "family_", 0)) - len(p))
        alpha, info = calibrated_alpha(
            np.concatenate([p, np.ones(pad)]),
            np.concatenate([units["weight"].to_numpy(), np.zeros(pad)]),
            budget=self.budget,
            total_ratings=total_ratings,
            fdr=self.fdr,
        )
        self.calibration_ = {**info, "alpha": alpha}
        if alpha <= 0:
            return math.inf
        return float(neglog10(alpha))

    # -- findings -----------------------------------------------------------------------------

    def flags(self, X: Any) -> list[Flag]:
        """The findings of the last ``fit`` on ``X``, with the ratings to hold.

        Candidates are the units scoring at least :attr:`soft` times the threshold; a
        candidate whose unit holds no rating gives no flag unless it opens a case.
        """
        u = self.units_
        if u.empty or not np.isfinite(self.threshold_):
            return []
        cand = u[u["score"] >= self.soft * self.threshold_]
        if cand.empty:
            return []
        out = []
        for unit, ratings in self._unit_ratings(X, cand):
            rating_ids = as_ids(ratings)
            case = self._case(unit)
            if not rating_ids and case is None:
                continue
            out.append(
                Flag(
                    detector=self.name,
                    reason=self._reason(unit),
                    unit=self._unit(unit),
                    rating_ids=rating_ids,
                    score=float(unit["score"]),
                    threshold=self.threshold_,
                    params={**self.params(), **self._unit_params(unit)},
                    explanation=self._explain(unit),
                    fingerprint=fingerprint(self.name, *self._key(unit)),
                    case=case,
                )
            )
        return out

    def _unit_ratings(
        self, X: Any, cand: pd.DataFrame
    ) -> Iterable[tuple[Unit, Sequence[Any] | pd.Series]]:
        """Each candidate unit (rows of ``units_``) with the rating ids of ``X`` it holds.

        The order given is the order of the flags. A unit may carry extra fields its
        sentence and key need (looked up once for all candidates, not per unit).
        """
        raise NotImplementedError

    def _unit(self, unit: Unit) -> str:
        """The unit as a reviewer reads it (``window:W1:bucket:123``)."""
        raise NotImplementedError

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        """What identifies the evidence besides the detector (hashed into the fingerprint)."""
        raise NotImplementedError

    def _explain(self, unit: Unit) -> str:
        """The sentence a reviewer can check against the ledger."""
        raise NotImplementedError

    def _reason(self, unit: Unit) -> str:
        """The reason code of the unit's flag (the detector's, unless it has two sides)."""
        return self.reason

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        """The detector's own parameters recorded with a flag, next to :meth:`params`."""
        return {}

    def _case(self, unit: Unit) -> str | None:
        """The case the unit opens for review (``case:window:<id>``), if any."""
        return None

    def params(self) -> dict[str, Any]:
        """The parameters that, with the data, reproduce this detector's decisions."""
        out: dict[str, Any] = {"budget": self.budget, "fdr": self.fdr}
        out.update({k: round(v, 12) for k, v in self.calibration_.items()})
        return out


def _rows(X: Any) -> int:
    frame = getattr(X, "frame", X)
    return len(frame)


def fmt_p(score: float) -> str:
    """A p-value from its ``-log10`` score, for sentences (``p = 3e-09``)."""
    return f"p = {10 ** (-min(score, 300)):.1g}"


def as_ids(values: Sequence[Any] | np.ndarray | pd.Series) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(values).tolist())
