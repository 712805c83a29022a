"""Per-device behaviour at one window: repeated skewed ratings, and staff self-rating.

:class:`DeviceRepeatDetector` (BIRDNEST in spirit): a device that rates one window
again and again, across tickets and days, however slowly, is ordinary (agents and
returning citizens do it) unless its scores are skewed against that window's own
distribution. Units are device x window pairs with at least ``min_ratings``; the
test is beta-binomial: how many of the device's ratings are near-straight-lined at
the top of the scale (at most one dimension one step below the maximum), against the
window's share of such ratings, with the between-rater dispersion estimated from all
devices. The low side (low scores against the window's low share) is the bombing
signal and is reported as ``outlier.bombing``.

:class:`SelfRatingDetector`: a device that is not a kiosk and rates many distinct
tickets of one window within minutes of service. The count is tested against the
distribution of the same count over all device x window pairs (a negative binomial
fitted robustly to them), so the threshold follows how often honest returning
citizens rate on the spot, not a fixed number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from rules.detectors.base import Detector, Flag, as_ids, fingerprint, fmt_p, neglog10
from rules.detectors.features import Frame, nunique_by, rows_of
from rules.detectors.stats import betabinom_sf, rho_mom

SOFT = 0.5


def top_box(X: Frame) -> np.ndarray:
    """Near-straight-lined at the top (see :func:`rules.detectors.features.prepare`)."""
    return X.frame["topbox"].to_numpy()


def _usable(df: pd.DataFrame) -> pd.Series:
    return ~df["kiosk"] & ~df["dup"]


class DeviceRepeatDetector(Detector):
    """Units: device x window with at least ``min_ratings`` ratings; two-sided skew test."""

    name = "device_repeat"
    reason = "outlier.device_repeat"
    low_reason = "outlier.bombing"

    def __init__(self, *, min_ratings: int = 3, rho_cap: float = 0.1, **kw: Any) -> None:
        super().__init__(**kw)
        self.min_ratings = min_ratings
        self.rho_cap = rho_cap  # at most this much rater-to-rater spread is taken as honest

    def _score(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        top = top_box(X)
        d = df.loc[_usable(df), ["dev", "win", "rating_id", "topbox", "low", "in_scope", "day"]]
        # window baselines from every rating there (kiosk included: the window's crowd)
        base = df.groupby("win").agg(p_top=("topbox", "mean"), p_low=("low", "mean"))
        u = d.groupby(["dev", "win"]).agg(
            n=("rating_id", "size"),
            k_top=("topbox", "sum"),
            k_low=("low", "sum"),
            in_scope=("in_scope", "any"),
        )
        u = u[u["n"] >= 2]
        u["days"] = nunique_by(d, ["dev", "win"], "day")
        u = u.reset_index().join(base, on="win")
        shrink = 20.0  # windows with few ratings lean on the population's share
        n_w = df.groupby("win").size().reindex(u["win"]).to_numpy()
        g_top, g_low = (
            float(top.mean()) if len(top) else 0.3,
            float(df["low"].mean()) if len(df) else 0.1,
        )
        u["p_top"] = (u["p_top"] * n_w + g_top * shrink) / (n_w + shrink)
        u["p_low"] = (u["p_low"] * n_w + g_low * shrink) / (n_w + shrink)
        self.rho_top_ = rho_mom(u["k_top"], u["n"], u["p_top"], trim=0.05, cap=self.rho_cap)
        self.rho_low_ = rho_mom(u["k_low"], u["n"], u["p_low"], trim=0.05, cap=self.rho_cap)
        u = u[(u["n"] >= self.min_ratings) & u["in_scope"]].reset_index(drop=True)
        p_hi = betabinom_sf(u["k_top"], u["n"], u["p_top"], self.rho_top_)
        p_lo = betabinom_sf(u["k_low"], u["n"], u["p_low"], self.rho_low_)
        u["side"] = np.where(p_lo < p_hi, "low", "high")
        # two-sided: each side's p doubled
        u["p"] = np.minimum(1.0, 2 * np.minimum(p_hi, p_lo))
        u["score"] = neglog10(u["p"].to_numpy())
        u["weight"] = np.where(u["side"] == "low", u["k_low"], u["k_top"])
        return u

    def flags(self, X: Frame) -> list[Flag]:
        u = self.units_
        if u.empty or not np.isfinite(self.threshold_):
            return []
        cand = u[u["score"] >= SOFT * self.threshold_]
        if cand.empty:
            return []
        df = X.frame
        d = df.loc[
            _usable(df) & df["in_scope"],
            ["dev", "win", "rating_id", "low", "topbox", "window_id", "device_hash"],
        ]
        d = rows_of(d, cand, ["dev", "win"])
        rows = cand.set_index(["dev", "win"])
        out = []
        for (dv, w), g in d.groupby(["dev", "win"]):
            r = rows.loc[(dv, w)]
            low = r["side"] == "low"
            hold = g[g["low"]] if low else g[g["topbox"]]
            if hold.empty:
                continue
            window = str(g["window_id"].iloc[0])
            dev = str(g["device_hash"].iloc[0])
            what = (
                f"{int(r['k_low'])} low scores (window's low share {r['p_low']:.0%})"
                if low
                else f"{int(r['k_top'])} near-straight-lined top scores (window's share {r['p_top']:.0%})"
            )
            out.append(
                Flag(
                    detector=self.name,
                    reason=self.low_reason if low else self.reason,
                    unit=f"device:{dev}:window:{window}",
                    rating_ids=as_ids(hold["rating_id"]),
                    score=float(r["score"]),
                    threshold=self.threshold_,
                    params={
                        **self.params(),
                        "min_ratings": self.min_ratings,
                        "rho": round(self.rho_low_ if low else self.rho_top_, 4),
                    },
                    explanation=(
                        f"Device {dev[:8]} rated window {window} {int(r['n'])} times on {int(r['days'])} "
                        f"day(s), {what}; so skewed a rater is unlikely among all devices ({fmt_p(r['score'])})."
                    ),
                    fingerprint=fingerprint(self.name, "low" if low else "high", dev, window),
                )
            )
        return out


class SelfRatingDetector(Detector):
    """Units: non-kiosk device x window. Ratings within ``fast_s`` of service are
    on-the-spot; those more than ``session_gap_s`` apart are separate presences. The
    test: on how many of its active days the device was on the spot at two or more
    separate times (binomial against the population's share of such days)."""

    name = "self_rating"
    reason = "outlier.self_rating"

    def __init__(self, *, fast_s: float = 900.0, session_gap_s: float = 1800.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.fast_s = fast_s
        self.session_gap_s = session_gap_s

    def _score(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        d = df.loc[
            _usable(df), ["dev", "win", "submitted_s", "day", "delay_s", "rating_id", "in_scope"]
        ]
        fast = (d["delay_s"] >= 0) & (d["delay_s"] <= self.fast_s)
        f = d.loc[fast, ["dev", "win", "submitted_s", "day"]].sort_values(
            ["dev", "win", "submitted_s"]
        )
        # sessions: on-the-spot ratings more than session_gap_s apart are separate presences
        gap = f.groupby(["dev", "win"])["submitted_s"].diff()
        f = f.assign(new=(gap.isna() | (gap > self.session_gap_s)).astype(int))
        s = f.groupby(["dev", "win"]).agg(fast=("new", "size"), sessions=("new", "sum"))
        multi = f[f["new"] == 1].groupby(["dev", "win", "day"]).size()
        s["multi_days"] = (multi >= 2).groupby(level=[0, 1]).sum().reindex(s.index).fillna(0)
        u = d.groupby(["dev", "win"]).agg(n=("rating_id", "size"), in_scope=("in_scope", "any"))
        u = u.join(s, how="inner").reset_index()
        if u.empty:
            return u.assign(p=[], score=[], weight=[])
        # Null: the share of device-window-days with an on-the-spot session that have two or
        # more separate ones, over the whole population (the top 1 % of pairs left out).
        days_active = nunique_by(f[f["new"] == 1], ["dev", "win"], "day").rename("active_days")
        u = u.join(days_active, on=["dev", "win"])
        keep = u["multi_days"] <= np.quantile(u["multi_days"], 0.99)
        q = (float(u.loc[keep, "multi_days"].sum()) + 1) / (
            float(u.loc[keep, "active_days"].sum()) + 2
        )
        self.mean_, self.q_ = float(u["sessions"].mean()), q
        p = stats.binom.sf(u["multi_days"] - 1, u["active_days"], q)
        u["p"] = np.where(u["multi_days"] >= 1, np.minimum(1.0, p), 1.0)
        u = u[u["in_scope"]].reset_index(drop=True)
        u["score"] = neglog10(u["p"].to_numpy())
        u["weight"] = u["n"]
        return u

    def flags(self, X: Frame) -> list[Flag]:
        u = self.units_
        if u.empty or not np.isfinite(self.threshold_):
            return []
        cand = u[u["score"] >= SOFT * self.threshold_]
        if cand.empty:
            return []
        df = X.frame
        d = df.loc[
            _usable(df) & df["in_scope"],
            ["dev", "win", "rating_id", "low", "window_id", "device_hash"],
        ]
        d = rows_of(d, cand, ["dev", "win"])
        rows = cand.set_index(["dev", "win"])
        out = []
        for (dv, w), g in d.groupby(["dev", "win"]):
            r = rows.loc[(dv, w)]
            hold = g[~g["low"]]  # nobody lowers their own score; low ones are left alone
            if hold.empty:
                continue
            window = str(g["window_id"].iloc[0])
            dev = str(g["device_hash"].iloc[0])
            out.append(
                Flag(
                    detector=self.name,
                    reason=self.reason,
                    unit=f"device:{dev}:window:{window}",
                    rating_ids=as_ids(hold["rating_id"]),
                    score=float(r["score"]),
                    threshold=self.threshold_,
                    params={
                        **self.params(),
                        "fast_s": self.fast_s,
                        "session_gap_s": self.session_gap_s,
                        "population_multi_share": round(self.q_, 6),
                    },
                    explanation=(
                        f"Device {dev[:8]} (not a kiosk) rated {int(r['fast'])} tickets of window {window} "
                        f"within {self.fast_s / 60:.0f} minutes of service, at {int(r['sessions'])} separate "
                        f"times, on {int(r['multi_days'])} of {int(r['active_days'])} days at two or more separate times; "
                        f"among all devices {self.q_:.2%} of such days are ({fmt_p(r['score'])})."
                    ),
                    fingerprint=fingerprint(self.name, dev, window),
                )
            )
        return out
