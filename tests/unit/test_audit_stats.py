"""Exact bounds: coverage computed exactly, Clopper-Pearson agreement, the finite-population
correction, and the stratified (Bonferroni) overall bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import beta, hypergeom

from audit_sampling.config import AuditConfig
from audit_sampling.stats import clopper_pearson, estimate, hypergeometric_bounds, stratified
from integrity.errors import ConfigError


@pytest.mark.parametrize(("population", "n"), [(12, 4), (40, 10), (60, 60), (75, 8)])
@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_coverage_is_at_least_the_confidence_for_every_true_count(
    population, n, confidence
) -> None:
    """For every possible number D of deviations in the window, the bounds computed from
    every possible sample result cover D with probability >= confidence (exactly)."""
    bounds = {d: hypergeometric_bounds(d, n, population, confidence) for d in range(n + 1)}
    for true_d in range(population + 1):
        pmf = {x: hypergeom.pmf(x, population, true_d, n) for x in range(n + 1)}
        covered_up = sum(p for x, p in pmf.items() if bounds[x][1] >= true_d)
        covered_lo = sum(p for x, p in pmf.items() if bounds[x][0] <= true_d)
        assert covered_up >= confidence - 1e-9, (true_d, covered_up)
        assert covered_lo >= confidence - 1e-9, (true_d, covered_lo)


@given(d=st.integers(0, 30), extra=st.integers(0, 60), conf=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_clopper_pearson_is_the_beta_quantile(d, extra, conf) -> None:
    n = d + extra
    if n == 0:
        assert clopper_pearson(0, 0, conf) == (0.0, 1.0)
        return
    lo, up = clopper_pearson(d, n, conf)
    assert lo == (0.0 if d == 0 else pytest.approx(beta.ppf(1 - conf, d, n - d + 1)))
    assert up == (1.0 if d == n else pytest.approx(beta.ppf(conf, d + 1, n - d)))
    assert 0 <= lo <= d / n <= up <= 1


@given(d=st.integers(0, 20), extra=st.integers(1, 40), more=st.integers(0, 400))
def test_the_finite_population_bound_is_never_wider_than_clopper_pearson(d, extra, more) -> None:
    n = d + extra
    population = n + more
    lo, up = hypergeometric_bounds(d, n, population, 0.95)
    cp_lo, cp_up = clopper_pearson(d, n, 0.95)
    assert up / population <= cp_up + 1 / population
    assert lo / population >= cp_lo - 1 / population
    # the population holds at least the d deviations seen and at most all but the n - d
    assert d <= lo <= up <= population - (n - d)


def test_a_huge_window_tends_to_clopper_pearson_and_a_census_is_exact() -> None:
    e = estimate(2, 50, 10**7, 0.95)
    assert e.upper == pytest.approx(clopper_pearson(2, 50, 0.95)[1], abs=1e-5)
    census = estimate(3, 60, 60, 0.95)
    assert (census.lower, census.upper, census.projected_upper) == (0.05, 0.05, 3)
    assert estimate(0, 0, 30, 0.95).rate is None
    assert estimate(0, 0, 30, 0.95).upper == 1.0


def test_known_values() -> None:
    # 0 deviations in 59 of a huge window: the classic 95 % upper bound just under 5 %.
    assert clopper_pearson(0, 59, 0.95)[1] == pytest.approx(0.0495, abs=5e-4)
    # 1 of 20 audited in a window of 200
    e = estimate(1, 20, 200, 0.95)
    assert e.rate == 0.05 and e.projected == 10.0
    assert e.projected_upper == hypergeometric_bounds(1, 20, 200, 0.95)[1]
    assert 0.18 < e.upper < e.cp_upper < 0.22


def test_the_stratified_bound_sums_bonferroni_bounds() -> None:
    strata = [(1, 20, 200), (0, 10, 100), (3, 30, 30)]
    overall = stratified(strata, 0.95)
    per = 1 - 0.05 / 3
    assert overall.projected_upper == sum(
        hypergeometric_bounds(d, n, p, per)[1] for d, n, p in strata
    )
    assert overall.projected == pytest.approx(200 * 1 / 20 + 0 + 3)
    assert overall.rate == pytest.approx(13 / 330)
    assert overall.lower <= overall.rate <= overall.upper
    # a window with nothing audited yet counts as wholly unknown
    pending = stratified([(0, 0, 50), (0, 10, 10)], 0.95)
    assert pending.rate is None and pending.projected_upper == 50
    # all windows audited in full: exact
    assert stratified([(2, 10, 10), (1, 5, 5)], 0.95).projected_upper == 3


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError):
        hypergeometric_bounds(3, 2, 10, 0.95)
    with pytest.raises(ValueError):
        hypergeometric_bounds(1, 20, 10, 0.95)


def test_the_audit_table_of_the_rule_set() -> None:
    cfg = AuditConfig.from_section({"rate": 0.2, "min_per_stratum": 3, "confidence": 0.9})
    assert (cfg.rate.numerator, cfg.rate.denominator, cfg.min_per_stratum) == (1, 5, 3)
    assert AuditConfig.from_section({}) == AuditConfig()
    for bad in (
        {"rate": 0},
        {"rate": 1.5},
        {"min_per_stratum": -1},
        {"min_per_stratum": 2.5},
        {"confidence": 1.0},
        {"tolerable_rate": "5%"},
        {"batch_size": 0},
        {"rate_percent": 10},
    ):
        with pytest.raises(ConfigError, match="audit"):
            AuditConfig.from_section(bad)
