"""Staff self-rating: a phone (not a kiosk) on the spot at one window, again and again.

A device that is not a kiosk and rates many distinct tickets of one window within
minutes of service, at separate times of the same day. The count is tested against the
same count over all device x window pairs, so the threshold follows how often honest
returning citizens rate on the spot, not a fixed number.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from integrity.catalogue import Reason
from rules.detectors.base import Detector, Unit, fmt_p, neglog10
from rules.detectors.features import Frame, nunique_by, rows_of
from rules.detectors.units import own_devices


class SelfRatingDetector(Detector):
    """Units: non-kiosk device x window. Ratings within ``fast_s`` of service are
    on-the-spot; those more than ``session_gap_s`` apart are separate presences. The
    test: on how many of its active days the device was on the spot at two or more
    separate times (binomial against the population's share of such days).

    Gives ``outlier.self_rating``; holds the device's ratings there that are not low
    (nobody lowers their own score).
    """

    name = "self_rating"
    reason = Reason.OUTLIER_SELF_RATING

    def __init__(self, *, fast_s: float = 900.0, session_gap_s: float = 1800.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.fast_s = fast_s
        self.session_gap_s = session_gap_s

    def _score(self, X: Frame) -> pd.DataFrame:
        from scipy import stats  # imported on first use (see rules.detectors.stats)

        df = X.frame
        d = df.loc[
            own_devices(df),
            ["dev", "win", "submitted_s", "day", "delay_s", "rating_id", "in_scope"],
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

    def _unit_ratings(self, X: Frame, cand: pd.DataFrame) -> Iterator[tuple[Unit, pd.Series]]:
        df = X.frame
        d = df.loc[
            own_devices(df) & df["in_scope"],
            ["dev", "win", "rating_id", "low", "window_id", "device_hash"],
        ]
        d = rows_of(d, cand, ["dev", "win"])
        rows = cand.set_index(["dev", "win"])
        for (dv, w), g in d.groupby(["dev", "win"]):
            unit = {
                **rows.loc[(dv, w)],
                "window": str(g["window_id"].iloc[0]),
                "device": str(g["device_hash"].iloc[0]),
            }
            yield unit, g.loc[~g["low"], "rating_id"]  # low ones are left alone

    def _unit(self, unit: Unit) -> str:
        return f"device:{unit['device']}:window:{unit['window']}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return unit["device"], unit["window"]

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        return {
            "fast_s": self.fast_s,
            "session_gap_s": self.session_gap_s,
            "population_multi_share": round(self.q_, 6),
        }

    def _explain(self, unit: Unit) -> str:
        return (
            f"Device {unit['device'][:8]} (not a kiosk) rated {int(unit['fast'])} tickets of window "
            f"{unit['window']} within {self.fast_s / 60:.0f} minutes of service, at "
            f"{int(unit['sessions'])} separate times, on {int(unit['multi_days'])} of "
            f"{int(unit['active_days'])} days at two or more separate times, where about "
            f"{float(unit['active_days']) * self.q_:.2g} such days are usual ({self.q_:.2%} of a "
            f"device's days at a window, among all devices) ({fmt_p(unit['score'])})."
        )
