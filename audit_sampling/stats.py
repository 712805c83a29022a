"""Attribute-sampling statistics (ISA 530): deviation rates with exact bounds.

Within a stratum of ``N`` ratings, ``n`` were audited (drawn without replacement)
and ``d`` deviated. The unknown number of deviating ratings ``D`` makes ``d``
hypergeometric, so the exact one-sided bounds *with* the finite-population
correction are

* upper ``D_U = max{D : P(X <= d | N, D, n) > alpha}``
* lower ``D_L = min{D : P(X >= d | N, D, n) > alpha}``

(``alpha = 1 - confidence``), found by bisection on ``scipy.stats.hypergeom``
(monotone in ``D``). This is the finite-population form of Clopper-Pearson: as
``N`` grows the bounds tend to :func:`clopper_pearson` (``scipy.stats.beta``);
for finite ``N`` they are never wider, and a census (``n = N``) gives
``D_L = D_U = d``. Rates are ``D / N``.

Overall (all windows), the point estimate weights each stratum by its size,
``D_hat = sum(N_h * d_h / n_h)``; the bounds add per-stratum exact bounds taken at
``alpha / H`` (Bonferroni over the ``H`` strata): all hold together with
probability >= ``1 - alpha``, so their sum is a valid, conservative bound. A
stratum with nothing audited yet contributes ``0 .. N_h``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def _scipy() -> tuple[Any, Any]:
    """``scipy.stats``' beta and hypergeom, imported on first use (a second to load,
    which every command line would pay otherwise)."""
    from scipy.stats import beta, hypergeom

    return beta, hypergeom


def _check(d: int, n: int, population: int | None = None) -> None:
    if not 0 <= d <= n:
        raise ValueError(f"need 0 <= deviations <= audited, got d={d}, n={n}")
    if population is not None and n > population:
        raise ValueError(f"audited {n} exceeds the population {population}")


def clopper_pearson(d: int, n: int, confidence: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds on a binomial rate (no finite-population correction).

    Returns ``(lower, upper)``; each holds with probability >= ``confidence``.
    ``n = 0`` gives ``(0, 1)``.
    """
    _check(d, n)
    alpha = 1.0 - confidence
    beta, _ = _scipy()
    lower = 0.0 if d == 0 else float(beta.ppf(alpha, d, n - d + 1))
    upper = 1.0 if d == n else float(beta.ppf(confidence, d + 1, n - d))
    return lower, upper


def hypergeometric_bounds(d: int, n: int, population: int, confidence: float) -> tuple[int, int]:
    """Exact one-sided bounds ``(D_L, D_U)`` on the number of deviations in the population."""
    _check(d, n, population)
    alpha = 1.0 - confidence
    _, hypergeom = _scipy()
    lo_possible, hi_possible = d, population - (n - d)
    if n == 0:
        return 0, population

    # P(X <= d) falls as D grows: the largest D with P > alpha.
    def upper_ok(big_d: int) -> bool:
        return float(hypergeom.cdf(d, population, big_d, n)) > alpha

    lo, hi = lo_possible, hi_possible  # upper_ok(lo) is true: P(X <= d | D = d) = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if upper_ok(mid):
            lo = mid
        else:
            hi = mid - 1
    upper = lo

    # P(X >= d) grows with D: the smallest D with P > alpha.
    def lower_ok(big_d: int) -> bool:
        return float(hypergeom.sf(d - 1, population, big_d, n)) > alpha

    lo, hi = lo_possible, hi_possible  # lower_ok(hi) is true
    while lo < hi:
        mid = (lo + hi) // 2
        if lower_ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return (lo if d > 0 else 0), upper


@dataclass(frozen=True)
class Estimate:
    """Deviation rate of one stratum (or all) with exact one-sided bounds, as ratios 0..1.

    ``projected`` is the point estimate of deviating ratings in the population,
    ``projected_upper`` its upper bound (a count). ``cp_upper`` is the plain
    Clopper-Pearson upper bound, shown for comparison (no finite-population correction).
    """

    population: int
    audited: int
    deviations: int
    rate: float | None
    lower: float
    upper: float
    cp_upper: float | None
    projected: float | None
    projected_lower: int
    projected_upper: int

    def exceeds(self, tolerable: float) -> bool:
        return self.upper > tolerable


def estimate(d: int, n: int, population: int, confidence: float) -> Estimate:
    """One stratum's estimate (see the module docstring)."""
    lo, up = hypergeometric_bounds(d, n, population, confidence)
    rate = d / n if n else None
    cp = clopper_pearson(d, n, confidence)[1] if n else None
    return Estimate(
        population=population,
        audited=n,
        deviations=d,
        rate=rate,
        lower=lo / population if population else 0.0,
        upper=up / population if population else 0.0,
        cp_upper=cp,
        projected=population * rate if rate is not None else None,
        projected_lower=lo,
        projected_upper=up,
    )


def stratified(strata: Sequence[tuple[int, int, int]], confidence: float) -> Estimate:
    """All strata together from ``(deviations, audited, population)`` triples (Bonferroni)."""
    total = sum(p for _, _, p in strata)
    h = max(1, len(strata))
    per = 1.0 - (1.0 - confidence) / h
    lower = upper = 0
    point = 0.0
    point_known = True
    audited = deviations = 0
    for d, n, p in strata:
        lo, up = hypergeometric_bounds(d, n, p, per)
        lower += lo
        upper += up
        audited += n
        deviations += d
        if n:
            point += p * d / n
        elif p:
            point_known = False
    rate = point / total if total and point_known else None
    return Estimate(
        population=total,
        audited=audited,
        deviations=deviations,
        rate=rate,
        lower=lower / total if total else 0.0,
        upper=upper / total if total else 0.0,
        cp_upper=None,
        projected=point if point_known else None,
        projected_lower=lower,
        projected_upper=upper,
    )
