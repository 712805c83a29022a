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

A flagged window is a *case* (``case:window:<id>``) for review; its suspect ratings
from the onset on are held: ``hold = "straight"`` (default) the fast ones with every
dimension at the maximum; ``"near"`` also those one step below on one dimension (more
of the pressed ratings, and more honest ones with them); ``"none"`` only opens the case.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from integrity.catalogue import Reason
from rules.detectors.base import Detector, Unit, fmt_p, neglog10
from rules.detectors.features import Frame
from rules.detectors.stats import rho_median, scan_matrix


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
        hold: str = "straight",
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        if hold not in ("straight", "near", "none"):
            raise TypeError(f"hold must be 'straight', 'near' or 'none', not {hold!r}")
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
        for _, r in cand.iterrows():
            g = d[
                (d["win"] == r["win"])
                & (d["day"] >= r["onset_day"])
                & d["fast"]
                & (d["straight"] if self.hold == "near" else d["top"])
                & (self.hold != "none")
                & d["in_scope"]
            ]
            unit = {
                **r,
                "window": str(r["window_id"]),
                "onset": pd.Timestamp(int(r["onset_day"]) * 86400, unit="s").date(),
            }
            yield unit, g["rating_id"]

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
        return (
            f"From {unit['onset']}, {int(unit['k'])} of {int(unit['n'])} ratings given within "
            f"{self.fast_s:.0f} s of service at window {unit['window']} were straight-lined at (or one "
            f"step below) the maximum, where its later ratings ({unit['p_slow']:.0%} straight-lined) "
            f"and its peers predict {unit['p_exp']:.0%} ({fmt_p(unit['score'])}): pressure at the "
            f"counter is likely."
        )
