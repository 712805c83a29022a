"""The consistent sampler: properties from the issue, and an exact cross-check with
the ``consistent-sampler`` package (Rivest) that Arlo uses."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator
from fractions import Fraction
from itertools import permutations

import pytest
from consistent_sampler import sampler as cs_sampler
from consistent_sampler.consistent_sampler import first_fraction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import binom, hypergeom

from audit_sampling import sampler
from audit_sampling.sampler import Tickets, draw, plan, sample_ids, take_for

seeds = st.text(min_size=1, max_size=40)
id_sets = st.sets(st.integers(min_value=0, max_value=10**12), min_size=0, max_size=120)


def triples(
    ids_by_window: dict[str, list[int]], risk: dict[int, float] | None = None
) -> list[tuple[str, str, str]]:
    """Frame-like rows (ascending id) for :func:`sampler.draw`."""
    risk = risk or {}
    rows = [(i, w) for w, ids in ids_by_window.items() for i in ids]
    return [(str(i), w, f"{risk.get(i, 0.0):.6f}") for i, w in sorted(rows)]


def reference_order(ids: list[int], seed: str) -> list[int]:
    """The order by full-precision ticket, computed the slow, obvious way."""
    t = Tickets(seed)
    return sorted(
        ids, key=lambda i: (Fraction(int(t.number(i)[2:]), 10 ** (len(t.number(i)) - 2)), i)
    )


# -- the properties ----------------------------------------------------------------


@given(ids=id_sets, seed=seeds, take=st.integers(0, 130), shuffle=st.randoms())
def test_same_inputs_give_the_same_sample_in_any_input_order(ids, seed, take, shuffle) -> None:
    ids = list(ids)
    first = sample_ids(ids, seed, take)
    shuffle.shuffle(ids)
    assert sample_ids(ids, seed, take) == first
    assert len(first) == min(take, len(ids))


@given(ids=id_sets, seed=seeds, small=st.integers(0, 130), more=st.integers(0, 130))
def test_a_larger_take_extends_the_smaller_one_and_never_reorders(ids, seed, small, more) -> None:
    a = sample_ids(ids, seed, small)
    b = sample_ids(ids, seed, small + more)
    assert b[: len(a)] == a


@given(ids=id_sets, seed=seeds, data=st.data())
def test_sampling_a_subset_equals_filtering_the_full_sample(ids, seed, data) -> None:
    ids = sorted(ids)
    subset = data.draw(st.sets(st.sampled_from(ids)) if ids else st.just(set()))
    k = data.draw(st.integers(0, len(subset)))
    full = sample_ids(ids, seed, len(ids))
    assert sample_ids(subset, seed, k) == [i for i in full if i in subset][:k]


@given(
    seed=seeds,
    n=st.integers(1, 4000),
    rate=st.sampled_from(["0.1", "0.05", "0.25", "1"]),
    minimum=st.integers(0, 20),
)
def test_every_window_gets_at_least_the_rate_and_the_minimum_exactly(
    seed, n, rate, minimum
) -> None:
    k = take_for(n, rate, minimum)
    exact = Fraction(rate) * n
    assert k == min(n, max(minimum, -(-exact.numerator // exact.denominator)))
    assert k >= min(n, minimum)
    assert k / n >= min(1, float(Fraction(rate))) - 1e-12 or k == n
    assert k / n < float(Fraction(rate)) + 1 / n or k == min(n, minimum)


def test_rates_are_decimal_not_binary_floats() -> None:
    # 0.1 * 30 is 3.0000000000000004 in binary floating point: the take must be 3.
    assert take_for(30, 0.1) == 3
    assert take_for(30, "0.10") == 3
    assert take_for(70, 0.1) == 7
    assert take_for(3, 0.1, 5) == 3  # capped at the window
    assert take_for(0, 0.1, 5) == 0
    assert sampler.rate_text(sampler.as_rate(0.1)) == "0.1"
    with pytest.raises(ValueError):
        sampler.as_rate("0")
    with pytest.raises(ValueError):
        sampler.as_rate("1.5")
    with pytest.raises(ValueError):
        sampler.as_rate("ten percent")


@settings(derandomize=True, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(seed=seeds, n=st.integers(200, 3000), rate=st.sampled_from([0.05, 0.1, 0.3]))
def test_realised_rate_stays_within_binomial_bounds(seed, n, rate) -> None:
    """Tickets are uniform: the share below ``rate`` is Binomial(n, rate); and the take of
    a window hits any fixed half of it hypergeometrically (no part is favoured)."""
    t = Tickets(seed)
    ids = range(1, n + 1)
    below = sum(1 for i in ids if float(t.number(i)[:20]) < rate)
    alpha = 1e-6
    assert binom.ppf(alpha / 2, n, rate) <= below <= binom.ppf(1 - alpha / 2, n, rate)
    k = take_for(n, rate)
    picked = sample_ids(ids, seed, k)
    evens = sum(1 for i in picked if i % 2 == 0)
    half = n // 2
    assert hypergeom.ppf(alpha / 2, n, half, k) <= evens <= hypergeom.ppf(1 - alpha / 2, n, half, k)


# -- cross-check with consistent-sampler ---------------------------------------------------


@given(ids=st.lists(st.integers(0, 10**15), unique=True, max_size=60), seed=seeds)
def test_tickets_are_consistent_samplers_first_tickets(ids, seed) -> None:
    for i in ids:
        assert sampler.ticket_number(seed, i) == first_fraction(i, sampler.sampler_seed(seed))


@settings(max_examples=60)
@given(
    windows=st.dictionaries(
        st.text(st.characters(codec="utf-8", exclude_characters=","), min_size=1, max_size=8),
        st.integers(0, 40),
        min_size=1,
        max_size=5,
    ),
    seed=seeds,
    rate=st.sampled_from(["0.1", "0.3", "0.5"]),
    minimum=st.integers(0, 6),
)
def test_each_window_is_what_consistent_sampler_draws_from_it(windows, seed, rate, minimum) -> None:
    rng = random.Random(seed)
    pool = rng.sample(range(1, 10**6), sum(windows.values()))
    by_window, at = {}, 0
    for w, n in windows.items():
        by_window[w] = pool[at : at + n]
        at += n
    takes = plan({w: len(v) for w, v in by_window.items()}, rate, minimum)
    result = draw(triples(by_window), seed, takes)
    for w, ids in by_window.items():
        theirs = list(cs_sampler(ids, seed=sampler.sampler_seed(seed), take=takes[w], output="id"))
        assert result.uniform.get(w, []) == theirs, w


def test_full_order_matches_consistent_sampler_on_a_larger_population() -> None:
    seed = "01382438112797316654"
    ids = list(range(1, 3001))
    theirs = list(cs_sampler(ids, seed=sampler.sampler_seed(seed), output="id"))
    assert sample_ids(ids, seed, len(ids)) == theirs
    assert Tickets(seed).order(ids) == theirs == reference_order(ids, seed)


# -- exactness at the 9-digit boundary -----------------------------------------------------

# Pairs of ids whose tickets share the first 9 digits under this seed (found by search);
# the first of each pair has the smaller full ticket.
TIE_SEED = "tie-test-seed-0123456789"
TIES = [(31548, 10864), (76457, 82101), (82666, 21500)]


@pytest.mark.parametrize(("low", "high"), TIES)
def test_ties_on_the_first_nine_digits_are_settled_on_the_full_ticket(low: int, high: int) -> None:
    t = Tickets(TIE_SEED)
    assert t.number(low)[:11] == t.number(high)[:11]
    assert t.number(low) < t.number(high)
    bar = t.number(low)[:11]
    rng = random.Random(low)
    smaller = [i for i in rng.sample(range(200_000, 400_000), 3000) if t.number(i)[:11] < bar][:25]
    others = [i for i in rng.sample(range(400_000, 600_000), 200) if t.number(i)[:11] > bar][:25]
    # Every arrival order of the pair and the filler: the boundary falls on the tie.
    for order in permutations([[low], [high], smaller, others]):
        ids = [i for part in order for i in part]
        rows = [(str(i), "W", "0.000000") for i in ids]
        got = draw(rows, TIE_SEED, {"W": len(smaller) + 1}).uniform["W"]
        assert got == reference_order([*smaller, low], TIE_SEED)
        both = draw(rows, TIE_SEED, {"W": len(smaller) + 2}).uniform["W"]
        assert both[-2:] == [low, high]


def test_a_whole_window_is_ordered_exactly_even_with_ties() -> None:
    low, high = TIES[0]
    ids = [high, *range(1, 500), low]
    rows = [(str(i), "W", "0.000000") for i in ids]
    assert draw(rows, TIE_SEED, {"W": len(ids)}).uniform["W"] == reference_order(ids, TIE_SEED)


# -- risk stratum --------------------------------------------------------------------------


def test_risk_items_are_the_highest_risk_outside_the_uniform_sample() -> None:
    seed = "risk-seed-000000000000"
    by_window = {"A": list(range(1, 101)), "B": list(range(101, 151))}
    risk = {i: (i % 17) / 16 for i in range(1, 151)}
    takes = plan({"A": 100, "B": 50}, "0.1", 2)
    res = draw(triples(by_window, risk), seed, takes, risk_take=8, risk_min=0.0)
    uniform = {i for ids in res.uniform.values() for i in ids}
    assert not uniform & set(res.risk)
    assert len(res.risk) == 8
    t = Tickets(seed)
    candidates = sorted(
        (i for i in range(1, 151) if risk[i] > 0 and i not in uniform),
        key=lambda i: (-risk[i], t.key(i)),
    )
    assert res.risk == candidates[:8]
    assert all(res.risk_info[i] == ("A" if i <= 100 else "B", risk[i]) for i in res.risk)
    # the uniform sample is the same with or without the risk stratum
    assert draw(triples(by_window, risk), seed, takes).uniform == res.uniform


def test_risk_exclusion_uses_the_base_take_when_the_window_grew() -> None:
    seed = "risk-seed-000000000001"
    by_window = {"A": list(range(1, 61))}
    risk = dict.fromkeys(range(1, 61), 0.5)
    base = {"A": 6}
    grown = draw(triples(by_window, risk), seed, {"A": 12}, risk_take=5, risk_base=base)
    at_base = draw(triples(by_window, risk), seed, base, risk_take=5)
    assert grown.risk == at_base.risk
    with pytest.raises(ValueError):
        draw(triples(by_window, risk), seed, {"A": 3}, risk_take=5, risk_base=base)


def test_only_risk_above_the_minimum_qualifies() -> None:
    rows = triples({"A": [1, 2, 3, 4]}, {1: 0.9, 2: 0.2, 3: 0.0, 4: 0.6})
    res = draw(rows, "seed-seed-seed-seed-1", {"A": 0}, risk_take=5, risk_min=0.5)
    assert res.risk == [1, 4]


# -- expansion and memory ------------------------------------------------------------------


def test_expansion_grows_by_the_step_up_to_the_cap_then_takes_the_window() -> None:
    steps = [10]
    while steps[-1] < 100:
        steps.append(sampler.expansion_take(100, steps[-1], "0.1", "0.5", 5))
    assert steps == [10, 20, 30, 40, 50, 100]
    assert sampler.expansion_take(100, 100, "0.1", "0.5") == 100
    assert sampler.expansion_take(20, 5, "0.1", "0.5", 5) == 10  # at least the minimum more
    assert sampler.expansion_take(3, 1, "0.1", "0.5") == 2


def _stream(n: int, windows: int) -> Iterator[tuple[str, str, str]]:
    names = [f"W{w}" for w in range(windows)]
    for i in range(1, n + 1):
        yield str(i), names[i % windows], "0.000000"


def test_memory_follows_the_sample_not_the_frame() -> None:
    """Drawing 10 per window from 4k and from 16k ids peaks at about the same memory."""
    peaks = []
    for n in (4_000, 16_000):
        tracemalloc.start()
        res = draw(_stream(n, 10), "memory-seed-00000000000", {f"W{w}": 10 for w in range(10)})
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert sum(map(len, res.uniform.values())) == 100
    # holding the extra 12k rows would take well over 1 MB
    assert peaks[1] < peaks[0] + 200_000
