"""Small statistical building blocks shared by the detectors (scipy underneath).

Overdispersion is estimated from the population itself (all devices, all windows),
robustly, so that a rater who always gives 5s or a window with lumpy traffic widens
the null instead of being flagged; a handful of attackers cannot move a median.

``scipy.stats`` takes about 0.35 s to import, so the detectors import it where they
use it, not when they are loaded: a detection run that finds nothing new since the
last one (the watermark) does not pay for it.
"""

from __future__ import annotations

import numpy as np


def betabinom_sf(k: np.ndarray, n: np.ndarray, p: np.ndarray, rho: float) -> np.ndarray:
    """P(X >= k) for X ~ BetaBinomial(n, mean p, intra-class correlation rho).

    ``rho`` = 0 is the binomial. ``p`` is clipped to (1e-6, 1 - 1e-6).
    """
    from scipy import stats

    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    out = np.ones(np.broadcast(k, n, p).shape)
    pos = np.broadcast_to(k > 0, out.shape)
    if rho <= 1e-9:
        out[pos] = stats.binom.sf(
            np.broadcast_to(k, out.shape)[pos] - 1,
            np.broadcast_to(n, out.shape)[pos],
            np.broadcast_to(p, out.shape)[pos],
        )
        return out
    s = (1 - rho) / rho
    a = np.broadcast_to(p * s, out.shape)
    b = np.broadcast_to((1 - p) * s, out.shape)
    out[pos] = stats.betabinom.sf(
        np.broadcast_to(k, out.shape)[pos] - 1, np.broadcast_to(n, out.shape)[pos], a[pos], b[pos]
    )
    return out


def betabinom_log10sf(k: np.ndarray, n: np.ndarray, p: np.ndarray, rho: float) -> np.ndarray:
    """``log10 P(X >= k)`` of :func:`betabinom_sf`, exact far into the tail (no underflow)."""
    from scipy import stats

    k = np.atleast_1d(np.asarray(k, dtype=float))
    n = np.broadcast_to(np.asarray(n, dtype=float), k.shape)
    p = np.broadcast_to(np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6), k.shape)
    out = np.zeros(k.shape)
    pos = k > 0
    kk, nn, pp = k[pos], n[pos], p[pos]
    with np.errstate(divide="ignore"):
        if rho <= 1e-9:
            sf = stats.binom.sf(kk - 1, nn, pp)
            pmf = stats.binom.logpmf(kk, nn, pp)
        else:
            s = (1 - rho) / rho
            sf = stats.betabinom.sf(kk - 1, nn, pp * s, (1 - pp) * s)
            pmf = stats.betabinom.logpmf(kk, nn, pp * s, (1 - pp) * s)
        # far in the tail sf underflows; the first term of the tail is then its size
        out[pos] = np.where(sf > 0, np.log10(np.maximum(sf, 1e-320)), pmf / np.log(10))
    return np.minimum(out, 0.0)


def rho_mom(
    k: np.ndarray,
    n: np.ndarray,
    p: np.ndarray,
    *,
    min_n: int = 2,
    cap: float = 0.5,
    trim: float = 0.02,
) -> float:
    """Method-of-moments intra-class correlation of counts ``k`` of ``n`` around ``p``.

    Under the beta-binomial ``(k - np)^2 / (n p (1 - p))`` has mean ``1 + (n - 1) rho``;
    the top ``trim`` share of units is dropped first, so a few extreme units (attacks)
    do not pass for dispersion. 0 when the data are binomial or thinner.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    m = n >= min_n
    if m.sum() < 10:
        return 0.0
    k, n, p = k[m], n[m], p[m]
    ratio = (k - n * p) ** 2 / (n * p * (1 - p))
    keep = ratio <= np.quantile(ratio, 1 - trim)
    excess = float(np.sum(ratio[keep] - 1))
    rho = excess / max(float(np.sum(n[keep] - 1)), 1.0)
    return float(np.clip(rho, 0.0, cap))


def rho_median(
    k: np.ndarray, n: np.ndarray, p: np.ndarray, *, cap: float = 0.5, min_n: int = 20
) -> float:
    """Intra-class correlation from the *median* unit, for units with large ``n`` (windows).

    With large ``n`` the standardised squared deviation is close to a scaled chi2(1)
    whose median is 0.455 of its mean ``1 + (n - 1) rho``; the median unit ignores
    the minority that is under attack.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    m = n >= min_n
    if m.sum() < 3:
        return 0.0
    ratio = (k[m] - n[m] * p[m]) ** 2 / (n[m] * p[m] * (1 - p[m])) / 0.4549
    rho = np.median((ratio - 1) / (n[m] - 1))
    return float(np.clip(rho, 0.0, cap))


def nb_sf(k: np.ndarray, mean: np.ndarray, dispersion: float) -> np.ndarray:
    """P(X >= k) for a negative binomial with ``mean`` and variance mean + mean^2 * dispersion."""
    from scipy import stats

    k = np.asarray(k, dtype=float)
    mean = np.maximum(np.asarray(mean, dtype=float), 1e-9)
    if dispersion <= 1e-9:
        return stats.poisson.sf(k - 1, mean)
    r = 1.0 / dispersion
    prob = r / (r + mean)
    return stats.nbinom.sf(k - 1, r, prob)


def nb_dispersion(counts: np.ndarray, mean: np.ndarray, cap: float = 2.0) -> float:
    """Robust method-of-moments NB dispersion of ``counts`` around ``mean`` (0 = Poisson)."""
    counts = np.asarray(counts, dtype=float)
    mean = np.maximum(np.asarray(mean, dtype=float), 1e-9)
    if len(counts) < 10:
        return 0.0
    # E[(x - mu)^2 - x] = mu^2 * d  ->  d = median-ish of ((x-mu)^2 - x) / mu^2, trimmed
    est = ((counts - mean) ** 2 - counts) / mean**2
    lo, hi = np.quantile(est, [0.01, 0.99])
    d = float(np.mean(np.clip(est, lo, hi)))
    return float(np.clip(d, 0.0, cap))


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log(np.where(y > 0, y, 1.0)), 0.0)


def change_point(k: np.ndarray, n: np.ndarray) -> int:
    """Index where a rise in the rate ``k/n`` most likely starts (0 = from the beginning).

    Maximises the two-segment binomial log-likelihood ratio over every split whose
    later segment has the higher rate.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    if len(k) < 2:
        return 0
    kp, np_ = np.cumsum(k)[:-1], np.cumsum(n)[:-1]  # prefix ending before split i = 1..m-1
    ks, ns = k.sum() - kp, n.sum() - np_
    rp = np.where(np_ > 0, kp / np.maximum(np_, 1), 0.0)
    rs = np.where(ns > 0, ks / np.maximum(ns, 1), 0.0)

    def ll(kk: np.ndarray, nn: np.ndarray, r: np.ndarray) -> np.ndarray:
        return _xlogy(kk, r) + _xlogy(nn - kk, 1 - r)

    r_all = k.sum() / max(n.sum(), 1.0)
    llr = (
        ll(kp, np_, rp)
        + ll(ks, ns, rs)
        - float(ll(np.array([k.sum()]), np.array([n.sum()]), np.array([r_all]))[0])
    )
    llr = np.where(rs > rp, llr, -np.inf)
    if not np.isfinite(llr).any():
        return 0
    best = int(np.argmax(llr))
    # a split must beat "no split" clearly (chi2(1) at 0.1 %: 2 * llr > 10.8)
    return best + 1 if 2 * llr[best] > 10.83 else 0


def scan_start(k: np.ndarray, n: np.ndarray, p: float, rho: float) -> tuple[int, float]:
    """Onset (by :func:`change_point`) and the p-value of everything from it on.

    The p-value is beta-binomial for the counts from the onset under mean ``p``,
    Bonferroni-corrected for the number of onsets that could have been chosen; it is
    computed in log space, exact even far in the tail.
    """
    i = change_point(k, n)
    lg = float(
        betabinom_log10sf(np.array([k[i:].sum()]), np.array([n[i:].sum()]), np.array([p]), rho)[0]
    )
    return i, float(min(1.0, 10 ** (lg + np.log10(len(k)))))


def change_points(K: np.ndarray, N: np.ndarray) -> np.ndarray:
    """:func:`change_point` for every row of two (units x days) count matrices at once.

    Days a unit had no ratings are zeros and change nothing. Returns the split column
    per row (0 = no rise found: everything counts from the start).
    """
    K = np.asarray(K, dtype=float)
    N = np.asarray(N, dtype=float)
    U, D = K.shape
    if D < 2 or U == 0:
        return np.zeros(U, dtype=np.int64)
    ck, cn = np.cumsum(K, axis=1), np.cumsum(N, axis=1)
    tk, tn = ck[:, -1:], cn[:, -1:]
    kp, np_ = ck[:, :-1], cn[:, :-1]
    ks, ns = tk - kp, tn - np_
    with np.errstate(divide="ignore", invalid="ignore"):
        rp = np.where(np_ > 0, kp / np.maximum(np_, 1), 0.0)
        rs = np.where(ns > 0, ks / np.maximum(ns, 1), 0.0)
        r0 = np.where(tn > 0, tk / np.maximum(tn, 1), 0.0)

    def ll(kk: np.ndarray, nn: np.ndarray, r: np.ndarray) -> np.ndarray:
        return _xlogy(kk, r) + _xlogy(nn - kk, 1 - r)

    llr = ll(kp, np_, rp) + ll(ks, ns, rs) - ll(tk, tn, r0)
    llr = np.where((rs > rp) & (np_ > 0) & (ns > 0), llr, -np.inf)
    best = np.argmax(llr, axis=1)
    val = llr[np.arange(U), best]
    return np.where(np.isfinite(val) & (2 * val > 10.83), best + 1, 0).astype(np.int64)


def scan_matrix(
    K: np.ndarray, N: np.ndarray, p: np.ndarray, rho: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Onset, counts from it, and Bonferroni-corrected p-value, for every row at once.

    Returns ``(split, k_after, n_after, p_value)``; the p-value is beta-binomial
    under mean ``p`` (per row) times the number of days the row had ratings.
    """
    split = change_points(K, N)
    D = K.shape[1]
    mask = np.arange(D)[None, :] >= split[:, None]
    k_after = (K * mask).sum(axis=1)
    n_after = (N * mask).sum(axis=1)
    lg = betabinom_log10sf(k_after, n_after, p, rho)
    days = np.maximum((N > 0).sum(axis=1), 1)
    pv = np.minimum(1.0, 10 ** np.minimum(lg + np.log10(days), 0.0))
    return split, k_after, n_after, pv
