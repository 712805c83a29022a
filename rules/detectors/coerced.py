"""Coerced high scores: a window whose on-the-spot ratings are abnormally uniform and high.

Citizens pressed at the counter rate at once and straight-line the maximum; the same
window's later ratings (from home, hours after) are not pressed. So the test compares,
per window, the share of straight-lined all-maximum ratings among *fast* ratings
(within ``fast_s`` of service; straight-lined: every dimension at the maximum but at
most one, one step lower) with what the window's own *slow* ratings predict,
given the fast-versus-slow odds ratio typical of its peers (windows of the same
service type when there are enough, all windows otherwise; a median, so coerced
windows do not set the norm). Counts are beta-binomial with the dispersion of all
window-days; the onset day is scanned (change point, Bonferroni over days); windows
are corrected with Benjamini-Hochberg. Small windows simply give larger p-values.

A flagged window is a *case* (``case:window:<id>``) for review. What it holds is the
evidence of pressure, not every fast high rating: from the onset on, per day and per
way of rating (the window's kiosk pad at the counter, or the citizen's own device), the
fast near-straight-lined ratings ``k`` among the fast ratings ``n`` are compared with
the share ``p`` that way of rating had at that window before the onset (shrunk to the
window's expectation from its slow ratings and its peers). Pressed ratings are all
near-straight-lined, so about ``(k - n p) / (1 - p)`` of the ``k`` are pressed (the
excess, scaled to the ratings it displaced); that many are held, and the rest, about
as many as honest raters give that way, keep counting. Which ones: pressed and honest
top ratings look alike one by one, so those held first are the ones least like the
unpressed fast ratings of that way (everywhere outside the flagged pressed periods):
each rating's delay bin (at the unpressed delays' deciles) and pattern (all-maximum or
one step below), by how much more often it occurs in the pressed period's pool than
among unpressed ratings (the pool mixes the two, so that ratio grows with the odds of
pressure), then the fastest. Even so, an honest top rating given in the pressed period
is held about as often as the pool is pressure. ``pattern = "top"`` counts all-maximum
ratings only (fewer honest ones held, more pressure left counting); ``delay_bins`` sets
the delay bins. ``hold = "excess"`` (default) does all this; ``"straight"`` holds every
fast all-maximum rating from the onset, ``"near"`` every fast near-straight-lined one,
``"none"`` only opens the case.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from integrity.catalogue import Reason
from rules.detectors.base import Detector, Unit, fmt_p, neglog10
from rules.detectors.features import Frame
from rules.detectors.stats import rho_median, scan_matrix


class _Reference(NamedTuple):
    """The unpressed fast ratings of one way of rating, as :meth:`CoercedDetector._unlike`
    reads them (built once per run by :meth:`CoercedDetector._reference`)."""

    edges: np.ndarray | None  # delay bin edges; None: too few ratings to bin
    f_ref: np.ndarray  # each bin's smoothed share
    t_ref: float  # the smoothed share of all-maximum among the marked ones


class CoercedDetector(Detector):
    """Units: windows; score ``-log10`` of the onset-scanned p-value.

    Gives ``outlier.coerced``: each flagged window opens a case, and holds its suspect
    ratings from the onset on (see ``hold``). Only units at the threshold are flagged.
    """

    name = "coerced"
    reason = Reason.OUTLIER_COERCED
    soft = 1.0

    def __init__(
        self,
        *,
        fast_s: float = 180.0,
        min_peers: int = 4,
        rho_cap: float = 0.05,
        hold: str = "excess",
        prior_weight: float = 20.0,
        pattern: str = "near",
        delay_bins: int = 10,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.delay_bins = max(1, int(delay_bins))
        if hold not in ("excess", "straight", "near", "none"):
            raise TypeError(f"hold must be 'excess', 'straight', 'near' or 'none', not {hold!r}")
        self.prior_weight = prior_weight
        if pattern not in ("near", "top"):
            raise TypeError(f"pattern must be 'near' or 'top', not {pattern!r}")
        self.pattern = pattern
        self.rho_cap = rho_cap
        self.hold = hold
        self.fast_s = fast_s
        self.min_peers = min_peers

    def _cells(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        d = df.loc[
            ~df["dup"] & df["delay_s"].notna(),
            [
                "win",
                "day",
                "stype",
                "window_id",
                "delay_s",
                "topbox",
                "top",
                "kiosk",
                "counted",
                "in_scope",
                "rating_id",
            ],
        ]
        fast = (d["delay_s"] >= -60) & (d["delay_s"] <= self.fast_s)
        return d.assign(fast=fast, straight=d["topbox"])

    def _score(self, X: Frame) -> pd.DataFrame:
        d = self._cells(X)
        if d.empty:
            return pd.DataFrame(columns=["win", "p", "score", "weight"])
        d = d.assign(kf=d["straight"] & d["fast"], slow=~d["fast"], ks=d["straight"] & ~d["fast"])
        w = d.groupby("win").agg(
            n_f=("fast", "sum"),
            k_f=("kf", "sum"),
            n_s=("slow", "sum"),
            k_s=("ks", "sum"),
            window_id=("window_id", "first"),
        )
        w["stype"] = (
            d.groupby(["win", "stype"]).size().groupby(level=0).idxmax().map(lambda t: t[1])
        )
        # smoothed logits of each window's slow and fast straight-lined shares
        g_s = (w["k_s"].sum() + 1) / (w["n_s"].sum() + 2)
        p_s = (w["k_s"] + 10 * g_s) / (w["n_s"] + 10)
        p_f = (w["k_f"] + 1) / (w["n_f"] + 2)
        log_or = logit(p_f.clip(1e-4, 1 - 1e-4)) - logit(p_s.clip(1e-4, 1 - 1e-4))
        beta_all = float(np.median(log_or)) if len(log_or) else 0.0
        beta = pd.Series(beta_all, index=w.index)
        for _st, members in w.groupby("stype").groups.items():
            if len(members) >= self.min_peers:
                beta.loc[members] = float(np.median(log_or.loc[members]))
        w["p_exp"] = expit(logit(p_s.clip(1e-4, 1 - 1e-4)) + beta)
        day = (
            d[d["fast"]].groupby(["win", "day"]).agg(n=("straight", "size"), k=("straight", "sum"))
        )
        day = day.reset_index()
        # between-window dispersion around the expectation, from the median window; with
        # few windows the median is itself noisy, so at most rho_cap is taken as honest
        self.rho_ = min(rho_median(w["k_f"], w["n_f"], w["p_exp"]), self.rho_cap)
        wins, wi = np.unique(day["win"].to_numpy(), return_inverse=True)
        days, di = np.unique(day["day"].to_numpy(), return_inverse=True)
        K = np.zeros((len(wins), len(days)))
        N = np.zeros((len(wins), len(days)))
        K[wi, di] = day["k"].to_numpy()
        N[wi, di] = day["n"].to_numpy()
        p_exp = w["p_exp"].reindex(wins).to_numpy()
        split, k_after, n_after, pv = scan_matrix(K, N, p_exp, self.rho_)
        rows = {
            "win": wins,
            "window_id": w["window_id"].reindex(wins).to_numpy(),
            "onset_day": days[split],
            "k": k_after.astype(np.int64),
            "n": n_after.astype(np.int64),
            "p_exp": p_exp,
            "p_slow": p_s.reindex(wins).to_numpy(),
            "p": pv,
            "weight": k_after.astype(np.int64),
        }
        units = pd.DataFrame(rows)
        if units.empty:
            return pd.DataFrame(columns=["win", "p", "score", "weight"])
        # only excess matters: a window below expectation has p near 1 anyway
        units["score"] = neglog10(units["p"].to_numpy())
        self.beta_ = beta_all
        return units

    def _unit_ratings(self, X: Frame, cand: pd.DataFrame) -> Iterator[tuple[Unit, pd.Series]]:
        d = self._cells(X)
        fast = d[d["fast"]]
        # how much more (or less) each way of rating straight-lines than fast ratings do
        # overall, at the typical window (a median over windows: pressed ones do not set it)
        ratio = {}
        by_win = fast.groupby("win").agg(k=("straight", "sum"), n=("straight", "size"))
        for way in (True, False):
            way_win = fast[fast["kiosk"] == way].groupby("win")[self._col].mean()
            both = (way_win / (by_win["k"] / by_win["n"]).replace(0, np.nan)).dropna()
            ratio[way] = float(np.median(both)) if len(both) else 1.0
        # the unpressed reference: fast ratings outside the flagged windows' pressed
        # periods, summarised once per way (every window's pool is compared with it)
        onset = fast["win"].map(cand.set_index("win")["onset_day"])
        reference = fast[~(fast["day"] >= onset)]
        by_way = {
            way: self._reference(reference[reference["kiosk"] == way]) for way in (True, False)
        }
        del reference
        # each flagged window's fast ratings, in their order, by position (one pass)
        positions = fast.groupby("win", sort=False).indices
        none = np.zeros(0, dtype=np.intp)
        for _, r in cand.iterrows():
            w = fast.iloc[positions.get(r["win"], none)]
            after = w[w["day"] >= r["onset_day"]]
            unit = {
                **r,
                "window": str(r["window_id"]),
                "onset": pd.Timestamp(int(r["onset_day"]) * 86400, unit="s").date(),
            }
            if self.hold == "none":
                held = after.iloc[:0]
            elif self.hold == "straight":
                held = after[after["top"]]
            elif self.hold == "near":
                held = after[after["straight"]]
            else:
                held = self._excess(w, after, r, ratio, unit, by_way)
            unit.setdefault("pool", int(after["straight"].sum()))
            unit.setdefault("estimated", len(held))
            yield unit, held.loc[held["in_scope"], "rating_id"]

    @property
    def _col(self) -> str:
        """The pattern pressure leaves: near-straight-lined at the top, or all-maximum."""
        return "straight" if self.pattern == "near" else "top"

    def _excess(
        self,
        w: pd.DataFrame,
        after: pd.DataFrame,
        r: pd.Series,
        ratio: dict[bool, float],
        unit: dict[str, Any],
        reference: dict[bool, _Reference],
    ) -> pd.DataFrame:
        """The fast near-straight-lined ratings of one window from its onset that stand
        for the excess over its baseline, per way of rating and day (module docstring);
        ``reference``: the unpressed fast ratings of each way (kiosk or not), summarised."""
        before = w[w["day"] < r["onset_day"]]
        chosen: list[np.ndarray] = []  # positions in ``after``
        estimated = 0.0
        kiosk = after["kiosk"].to_numpy(dtype=bool)
        marked = after[self._col].to_numpy(dtype=bool)
        for way in (True, False):
            pre = before[before["kiosk"] == way]
            prior = float(np.clip(r["p_exp"] * ratio[way], 0.01, 0.99))
            p = (pre[self._col].sum() + self.prior_weight * prior) / (len(pre) + self.prior_weight)
            rows = np.flatnonzero(kiosk == way)  # the way's ratings, in order
            g = after.iloc[rows]
            unlike = np.zeros(len(rows))
            mine = marked[rows]
            unlike[mine] = self._unlike(g[mine], reference[way]).to_numpy()
            # day by day, in day order (each day's ratings in their order), with arrays
            days = g["day"].to_numpy()
            by_day = np.argsort(days, kind="stable")
            cuts = np.flatnonzero(np.diff(days[by_day])) + 1
            rid = g["rating_id"].to_numpy()
            delay = g["delay_s"].to_numpy()
            for day in np.split(by_day, cuts) if len(by_day) else ():
                in_pool = day[mine[day]]
                k, n = len(in_pool), len(day)
                pressed = max(0.0, (k - n * p) / (1 - p))
                estimated += pressed
                take = min(k, round(pressed))
                if take <= 0:
                    continue
                # least like unpressed ratings first, then the fastest (at the counter)
                order = np.lexsort((rid[in_pool], delay[in_pool], -unlike[in_pool]))
                chosen.append(rows[in_pool[order[:take]]])
        unit["pool"] = int(after[self._col].sum())
        unit["estimated"] = round(estimated)
        return after.iloc[np.concatenate(chosen)] if chosen else after.iloc[:0]

    def _reference(self, reference: pd.DataFrame) -> _Reference:
        """What :meth:`_unlike` compares pools with, from the unpressed fast ratings of
        one way: delay bins at their deciles (``delay_bins``), each bin's share, and the
        share of all-maximum among the marked ones, each smoothed with half a rating per
        cell; no bins (``edges`` ``None``) when there are too few to cut."""
        if len(reference) < 2 * self.delay_bins:
            return _Reference(None, np.zeros(0), 0.0)
        delays = reference["delay_s"].to_numpy(dtype=float)
        qs = np.linspace(0, 1, self.delay_bins + 1)[1:-1]
        edges = np.unique(np.quantile(delays, qs))
        ref_bin = np.searchsorted(edges, delays, side="right")
        cells = len(edges) + 1
        f_ref = (np.bincount(ref_bin, minlength=cells) + 0.5) / (len(reference) + 0.5 * cells)
        ref_top = reference.loc[reference[self._col], "top"]
        t_ref = (ref_top.sum() + 0.5) / (len(ref_top) + 1.0)
        return _Reference(edges, f_ref, float(t_ref))

    def _unlike(self, pool: pd.DataFrame, reference: _Reference) -> pd.Series:
        """How much more often a pooled rating's delay and pattern occur in the pressed
        period's pool than among unpressed fast ratings of the same way (log ratio).

        The pool is pressed and honest ratings mixed, so the ratio of its frequencies to
        the unpressed ones grows with the pressed-to-honest ratio: delays binned at the
        reference's quantiles, and all-maximum against one step below, each smoothed
        with half a rating per cell (see :meth:`_reference`)."""
        edges = reference.edges
        if pool.empty or edges is None:
            return pd.Series(0.0, index=pool.index)
        pool_bin = np.searchsorted(edges, pool["delay_s"].to_numpy(dtype=float), side="right")
        cells = len(edges) + 1
        f_pool = (np.bincount(pool_bin, minlength=cells) + 0.5) / (len(pool) + 0.5 * cells)
        delay = np.log(f_pool / reference.f_ref)[pool_bin]
        t_ref = reference.t_ref
        t_pool = (pool["top"].sum() + 0.5) / (len(pool) + 1.0)
        top = pool["top"].to_numpy()
        pattern = np.where(top, np.log(t_pool / t_ref), np.log((1 - t_pool) / (1 - t_ref)))
        return pd.Series(delay + pattern, index=pool.index)

    def _unit(self, unit: Unit) -> str:
        return f"window:{unit['window']}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return (unit["window"],)

    def _case(self, unit: Unit) -> str:
        return f"case:window:{unit['window']}"

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        return {
            "fast_s": self.fast_s,
            "rho": round(self.rho_, 4),
            "peer_log_odds_ratio": round(self.beta_, 4),
        }

    def _explain(self, unit: Unit) -> str:
        held = {
            "excess": (
                f"held: {int(unit['estimated'])} of those {int(unit['pool'])}, as many as the "
                f"excess over the window's own earlier share and its peers stands for, those "
                f"whose delay and scores are least like unpressed ratings first; the rest keep "
                f"counting"
            ),
            "straight": "held: every fast all-maximum rating since",
            "near": "held: every fast rating at or one step below the maximum since",
            "none": "nothing held; the window is a case for review",
        }[self.hold]
        return (
            f"From {unit['onset']}, {int(unit['k'])} of {int(unit['n'])} ratings given within "
            f"{self.fast_s:.0f} s of service at window {unit['window']} were straight-lined at (or one "
            f"step below) the maximum, where its later ratings ({unit['p_slow']:.0%} straight-lined) "
            f"and its peers predict {unit['p_exp']:.0%} ({fmt_p(unit['score'])}): pressure at the "
            f"counter is likely; {held}."
        )
