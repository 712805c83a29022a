"""Rater fairness from the ratings raters GAVE: a vectorised REV2.

REV2 (Kumar, Hooi, Makhija, Kumar, Faloutsos, Subrahmanian, "REV2: Fraudulent
User Prediction in Rating Platforms", WSDM 2018) scores three things at once:

* fairness ``F(u)`` in [0, 1] of each rater ``u`` (how far its ratings can be trusted),
* goodness ``G(p)`` in [-1, 1] of each ratee ``p`` (what the reliable raters think of it),
* reliability ``R(u, p)`` in [0, 1] of each rating (fair rater *and* close to the goodness).

They are defined by each other and found by fixed-point iteration::

    G(p)   = (Σ_u R(u,p)·s(u,p) + β1·μ_G) / (|In(p)| + β1)
    R(u,p) = (γ1·F(u) + γ2·(1 − |s(u,p) − G(p)| / 2)) / (γ1 + γ2)
    F(u)   = (Σ_p R(u,p) + α1·μ_F + α2·B(u)) / (|Out(u)| + α1 + α2)

``s(u,p)`` is the rating in [-1, 1] (its polarity −1/0/+1 by default, see below);
``μ_F`` and ``μ_G`` are the current medians of fairness and goodness: the paper's
cold-start prior, worth ``α1`` (``β1``) pseudo-ratings, pulls a rater (ratee) with
few ratings towards the typical one (``prior_fairness`` replaces ``μ_F`` by a fixed
value). ``B(u)`` in (0, 1] is the optional behavioural
prior (BIRDNEST-like ordinariness of the rater's rating histogram and inter-arrival
times; 1 = ordinary), worth ``α2`` pseudo-ratings.

A fair rater's ratings agree with the goodness of what it rates; goodness is
estimated mostly from reliable ratings. A rater that keeps rating against the
consensus (high scores for what reliable raters rate low, or the reverse) loses
fairness. Only the ratings a rater *gave* enter its fairness: raters and ratees
are separate node sets (in the engine, a device rates a window or a staff member),
so nothing a rater received as a ratee is a feature of that rater.

Polarity (default on): agreement is measured on the sign of the rating (−1, 0, +1
after centring the scale at its neutral point) instead of its value. On scales where
most honest ratings sit just above neutral and strong ratings express the intensity of
a relationship rather than a different opinion, the value makes honest enthusiasts
look like dissenters; the sign keeps the opinion. ``polarity=False`` is the paper.
The price: a 4 and a 5 (or a composite of 3.2 and a 5) are the same opinion, so
polarity does not see a rater who only exaggerates (brushing with 5s at a window
rated 4); that is left to the dense-block and burst detectors.

Runs in O(iterations × ratings) with numpy ``bincount``; about 1 s for 10⁶ ratings.
Suspicion = 1 − F(u), in [0, 1], higher = more suspicious.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULTS",
    "Rev2Result",
    "behaviour_prior",
    "fairness_scores",
    "rev2",
    "scores_to_unit",
]

#: The shipped parameters (chosen by principle and on Bitcoin-Alpha, see bench/eval_bitcoin.py).
DEFAULTS: dict[str, Any] = {
    "alpha1": 1.0,
    "alpha2": 0.0,
    "beta1": 1.0,
    "gamma1": 1.0,
    "gamma2": 1.0,
    "polarity": True,
    "prior_fairness": None,
}

#: Edges of the rating histogram used by the behavioural prior (ratings in [-1, 1]).
_RATING_BINS = np.array([-1.0001, -0.6, -0.2, 0.2, 0.6, 1.0001])
#: Edges (log10 seconds) of the inter-arrival histogram: < 1 min, < 1 h, < 1 day,
#: < 1 week, < 30 days, longer.
_GAP_BINS = np.log10(np.array([1e-9, 60.0, 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0, 1e12]))


def scores_to_unit(ratings_1to5: Any) -> Any:
    """Map the engine's 1..5 scores (a composite or one dimension) to [-1, 1].

    Linear, ``(score − 3) / 2``: 1 → −1, 2 → −0.5, 3 → 0 (neutral), 4 → 0.5, 5 → 1.
    Accepts a scalar (returns a float), an array-like (returns an ndarray) or a
    ``pd.Series`` (returns a Series with the same index and name).

    Raises ``ValueError`` on NaN or on values outside [1, 5].
    """
    if isinstance(ratings_1to5, pd.Series):
        return pd.Series(
            scores_to_unit(ratings_1to5.to_numpy(dtype=float)),
            index=ratings_1to5.index,
            name=ratings_1to5.name,
        )
    arr = np.asarray(ratings_1to5, dtype=float)
    if np.isnan(arr).any() or (arr < 1.0).any() or (arr > 5.0).any():
        raise ValueError("scores must be numbers in [1, 5]")
    out = (arr - 3.0) / 2.0
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class Rev2Result:
    """Everything one REV2 run produces.

    ``fairness``: per rater, in [0, 1] (index = rater id, sorted when sortable).
    ``goodness``: per ratee, in [-1, 1] (index = ratee id): a robust consensus score,
    e.g. for a window, that discounts unreliable ratings.
    ``reliability``: per input row, in [0, 1] (index = the input frame's index).
    ``iterations``: fixed-point rounds run; ``converged``: whether the largest change
    of any F, G or R in the last round was below ``tol``.
    """

    fairness: pd.Series
    goodness: pd.Series
    reliability: pd.Series
    iterations: int
    converged: bool


def _codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Dense integer codes of ids, sorted when the ids are sortable (order-free output)."""
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # mixed, unorderable ids: order of first appearance
        codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.intp, copy=False), pd.Index(uniques)


def _ratings(df: pd.DataFrame) -> np.ndarray:
    """The validated ``rating`` column as floats in [-1, 1]."""
    missing = {"rater", "ratee", "rating"} - set(df.columns)
    if missing:
        raise ValueError(f"missing columns: {sorted(missing)}")
    if df["rater"].isna().any() or df["ratee"].isna().any():
        raise ValueError("rater and ratee must not be null")
    rating = pd.to_numeric(df["rating"], errors="coerce").to_numpy(dtype=float)
    if np.isnan(rating).any() or (np.abs(rating) > 1.0).any():
        raise ValueError("rating must be numbers in [-1, 1] (see scores_to_unit)")
    return rating


def _smoothed_kl(counts: np.ndarray, strength: float) -> np.ndarray:
    """KL divergence (nats) of each row's Dirichlet-smoothed histogram from the pooled one.

    ``counts``: (n_raters, n_bins). The pooled distribution ``q`` is the normalised
    column sum; each row gets ``strength`` pseudo-counts spread as ``q`` (a Dirichlet
    prior centred on the population), so a rater with few observations stays near ``q``.
    """
    total = counts.sum(axis=0) + 1e-9
    q = total / total.sum()
    n = counts.sum(axis=1, keepdims=True)
    p = (counts + strength * q) / (n + strength)
    return np.einsum("ij,ij->i", p, np.log(p / q))


def behaviour_prior(
    rater_codes: np.ndarray,
    rating: np.ndarray,
    time: np.ndarray | None,
    n_raters: int,
    *,
    strength: float = 5.0,
) -> np.ndarray:
    """BIRDNEST-like ordinariness ``B(u)`` in (0, 1] per rater code (1 = ordinary).

    Two histograms per rater, each compared with the population's through the KL
    divergence of its Dirichlet-smoothed version (``strength`` pseudo-observations):
    the rating skew (five bins over [-1, 1]) and, when ``time`` (seconds) is given,
    the gaps between the rater's consecutive ratings (< 1 min, < 1 h, < 1 day,
    < 1 week, < 30 days, longer). ``B(u) = exp(−(KL_rating + KL_gaps))``.
    Uses only the rater's own given ratings.
    """
    rbin = np.clip(np.searchsorted(_RATING_BINS, rating, side="right") - 1, 0, 4)
    counts = np.zeros((n_raters, 5))
    np.add.at(counts, (rater_codes, rbin), 1.0)
    kl = _smoothed_kl(counts, strength)
    if time is not None:
        order = np.lexsort((time, rater_codes))
        u_sorted = rater_codes[order]
        same = u_sorted[1:] == u_sorted[:-1]
        gaps = np.diff(time[order])[same]
        log_gaps = np.log10(np.maximum(gaps, 1e-9))
        n_bins = len(_GAP_BINS) - 1
        gbin = np.clip(np.searchsorted(_GAP_BINS, log_gaps, side="right") - 1, 0, n_bins - 1)
        gcounts = np.zeros((n_raters, n_bins))
        np.add.at(gcounts, (u_sorted[1:][same], gbin), 1.0)
        kl = kl + _smoothed_kl(gcounts, strength)
    return np.exp(-kl)


def rev2(
    df: pd.DataFrame,
    *,
    iterations: int = 50,
    tol: float = 1e-6,
    alpha1: float = DEFAULTS["alpha1"],
    alpha2: float = DEFAULTS["alpha2"],
    beta1: float = DEFAULTS["beta1"],
    gamma1: float = DEFAULTS["gamma1"],
    gamma2: float = DEFAULTS["gamma2"],
    polarity: bool = DEFAULTS["polarity"],
    prior_fairness: float | None = DEFAULTS["prior_fairness"],
    behaviour_strength: float = 5.0,
) -> Rev2Result:
    """Run REV2 on ``df`` (columns rater, ratee, rating in [-1, 1], optional time in s).

    Every row is one rating; a repeated (rater, ratee) pair counts as several ratings.

    * ``alpha1`` / ``beta1``: weight, in pseudo-ratings, of the cold-start prior that
      pulls a rater's fairness to the median fairness / a ratee's goodness to the
      median goodness (0 = no smoothing).
    * ``prior_fairness``: the value the ``alpha1`` prior pulls towards: ``None`` = the
      current median fairness (the paper: an unseen rater is like the typical one), or
      a fixed value in [0, 1], e.g. 0.5 (fairness must be earned: raters with few
      ratings drift to suspicion 0.5; this ranks new accounts as suspicious).
    * ``alpha2``: weight, in pseudo-ratings, of the behavioural prior
      :func:`behaviour_prior` (0 = off; ``time`` is used only by it, NaN times drop
      the inter-arrival part).
    * ``gamma1`` / ``gamma2``: relative weights of the rater's fairness and of the
      rating's agreement with the ratee's goodness in a rating's reliability.
    * ``polarity``: compare the sign of the rating (True) or its value (False, paper).
    * Stops after ``iterations`` rounds, or earlier when no F, G or R moved by more
      than ``tol`` (dimensionless) in a round.
    """
    if gamma1 < 0 or gamma2 < 0 or gamma1 + gamma2 <= 0:
        raise ValueError("gamma1 and gamma2 must be >= 0 and not both 0")
    if min(alpha1, alpha2, beta1) < 0:
        raise ValueError("alpha1, alpha2 and beta1 must be >= 0")
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    if prior_fairness is not None and not 0.0 <= prior_fairness <= 1.0:
        raise ValueError("prior_fairness must be None or in [0, 1]")
    raw = _ratings(df)
    u, raters = _codes(df["rater"])
    p, ratees = _codes(df["ratee"])
    if len(raw) == 0:
        return Rev2Result(
            fairness=pd.Series(dtype=float, name="fairness"),
            goodness=pd.Series(dtype=float, name="goodness"),
            reliability=pd.Series(dtype=float, index=df.index, name="reliability"),
            iterations=0,
            converged=True,
        )
    s = np.sign(raw) if polarity else raw
    n_u, n_p = len(raters), len(ratees)
    out_deg = np.bincount(u, minlength=n_u).astype(float)
    in_deg = np.bincount(p, minlength=n_p).astype(float)
    b = np.zeros(n_u)
    if alpha2 > 0:
        t = None
        if "time" in df.columns:
            t = pd.to_numeric(df["time"], errors="coerce").to_numpy(dtype=float)
            if np.isnan(t).any():
                t = None
        b = behaviour_prior(u, raw, t, n_u, strength=behaviour_strength)

    # Initial values as in the paper: everything fair, good and reliable.
    fair = np.ones(n_u)
    good = np.ones(n_p)
    rel = np.ones(len(s))
    g_den = in_deg + beta1
    f_den = out_deg + alpha1 + alpha2
    f_prior = alpha2 * b
    g_sum = gamma1 + gamma2
    converged = False
    done = 0
    for done in range(1, iterations + 1):  # noqa: B007 - the count is reported
        mu_g = float(np.median(good))
        new_good = (np.bincount(p, weights=rel * s, minlength=n_p) + beta1 * mu_g) / g_den
        np.clip(new_good, -1.0, 1.0, out=new_good)
        agree = 1.0 - np.abs(s - new_good[p]) / 2.0
        new_rel = (gamma1 * fair[u] + gamma2 * agree) / g_sum
        np.clip(new_rel, 0.0, 1.0, out=new_rel)
        mu_f = float(np.median(fair)) if prior_fairness is None else prior_fairness
        new_fair = (
            np.bincount(u, weights=new_rel, minlength=n_u) + alpha1 * mu_f + f_prior
        ) / f_den
        np.clip(new_fair, 0.0, 1.0, out=new_fair)
        delta = max(
            float(np.abs(new_good - good).max()),
            float(np.abs(new_rel - rel).max()),
            float(np.abs(new_fair - fair).max()),
        )
        good, rel, fair = new_good, new_rel, new_fair
        if delta < tol:
            converged = True
            break
    return Rev2Result(
        fairness=pd.Series(fair, index=raters.rename("rater"), name="fairness"),
        goodness=pd.Series(good, index=ratees.rename("ratee"), name="goodness"),
        reliability=pd.Series(rel, index=df.index, name="reliability"),
        iterations=done,
        converged=converged,
    )


def fairness_scores(
    df: pd.DataFrame,
    *,
    iterations: int = 50,
    tol: float = 1e-6,
    alpha1: float = DEFAULTS["alpha1"],
    alpha2: float = DEFAULTS["alpha2"],
    beta1: float = DEFAULTS["beta1"],
    gamma1: float = DEFAULTS["gamma1"],
    gamma2: float = DEFAULTS["gamma2"],
    polarity: bool = DEFAULTS["polarity"],
    prior_fairness: float | None = DEFAULTS["prior_fairness"],
    behaviour_strength: float = 5.0,
) -> pd.Series:
    """Suspicion per rater = 1 − REV2 fairness, in [0, 1] (higher = more suspicious).

    ``df``: one row per rating with columns ``rater``, ``ratee``, ``rating`` (float in
    [-1, 1]; map the engine's 1..5 scores with :func:`scores_to_unit`) and optionally
    ``time`` (seconds; used only by the behavioural prior). In the engine: rater =
    device, ratee = window (or staff member). Parameters as in :func:`rev2`.

    Returns a float Series named ``suspicion`` (dimensionless), index = rater id
    (sorted when sortable). A rater absent from ``df`` has no score; the cold-start
    prior gives a rater with one typical rating a suspicion near the median.
    """
    res = rev2(
        df,
        iterations=iterations,
        tol=tol,
        alpha1=alpha1,
        alpha2=alpha2,
        beta1=beta1,
        gamma1=gamma1,
        gamma2=gamma2,
        polarity=polarity,
        prior_fairness=prior_fairness,
        behaviour_strength=behaviour_strength,
    )
    return (1.0 - res.fairness).clip(0.0, 1.0).rename("suspicion")
