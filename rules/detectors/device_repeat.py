"""Repeated skewed ratings from one device at one window (BIRDNEST in spirit).

A device that rates one window again and again, across tickets and days, however
slowly, is ordinary (agents and returning citizens do it) unless its scores are skewed
against that window's own distribution. Units are device x window pairs with at least
``min_ratings``; the test is beta-binomial: how many of the device's ratings are
near-straight-lined at the top of the scale (at most one dimension one step below the
maximum), against the window's share of such ratings, with the between-rater
dispersion estimated from all devices. The low side (low scores against the window's
low share) is the bombing signal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from integrity.catalogue import Reason
from rules.detectors.base import Detector, Unit, fmt_p, neglog10
from rules.detectors.features import Frame, nunique_by, rows_of
from rules.detectors.stats import betabinom_sf, rho_mom
from rules.detectors.units import own_devices


class DeviceRepeatDetector(Detector):
    """Units: device x window with at least ``min_ratings`` ratings; two-sided skew test.

    Gives ``outlier.device_repeat`` on the high side (holding the near-straight-lined
    top scores) and ``outlier.bombing`` on the low side (holding the low scores).
    """

    name = "device_repeat"
    reason = Reason.OUTLIER_DEVICE_REPEAT
    low_reason = Reason.OUTLIER_BOMBING

    def __init__(self, *, min_ratings: int = 3, rho_cap: float = 0.1, **kw: Any) -> None:
        super().__init__(**kw)
        self.min_ratings = min_ratings
        self.rho_cap = rho_cap  # at most this much rater-to-rater spread is taken as honest

    def _score(self, X: Frame) -> pd.DataFrame:
        # the device units once per frame and parameters: the ring detector (a subclass,
        # fitted in the same process) starts from the same ones
        key = f"device_repeat.units:{self.min_ratings}:{self.rho_cap!r}"
        got: tuple[pd.DataFrame, float, float] | None = X.meta.get(key)
        if got is None:
            got = X.meta[key] = self._device_units(X)
        units, rho_top, rho_low = got
        self.rho_top_ = rho_top
        self.rho_low_ = rho_low
        return units.copy()

    def _device_units(self, X: Frame) -> tuple[pd.DataFrame, float, float]:
        """Every device x window unit scored, with the two sides' dispersions."""
        df = X.frame
        top = df["topbox"].to_numpy()  # near-straight-lined at the top
        d = df.loc[own_devices(df), ["dev", "win", "rating_id", "topbox", "low", "in_scope", "day"]]
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
        rho_top = rho_mom(u["k_top"], u["n"], u["p_top"], trim=0.05, cap=self.rho_cap)
        rho_low = rho_mom(u["k_low"], u["n"], u["p_low"], trim=0.05, cap=self.rho_cap)
        u = u[(u["n"] >= self.min_ratings) & u["in_scope"]].reset_index(drop=True)
        p_hi = betabinom_sf(u["k_top"], u["n"], u["p_top"], rho_top)
        p_lo = betabinom_sf(u["k_low"], u["n"], u["p_low"], rho_low)
        u["p_high"] = p_hi  # one-sided, the top-score side (rings: rules.detectors.ring)
        u["side"] = np.where(p_lo < p_hi, "low", "high")
        # two-sided: each side's p doubled
        u["p"] = np.minimum(1.0, 2 * np.minimum(p_hi, p_lo))
        u["score"] = neglog10(u["p"].to_numpy())
        u["weight"] = np.where(u["side"] == "low", u["k_low"], u["k_top"])
        return u, float(rho_top), float(rho_low)

    def _unit_ratings(self, X: Frame, cand: pd.DataFrame) -> Iterator[tuple[Unit, pd.Series]]:
        df = X.frame
        d = df.loc[
            own_devices(df) & df["in_scope"],
            ["dev", "win", "rating_id", "low", "topbox", "window_id", "device_hash"],
        ]
        d = rows_of(d, cand, ["dev", "win"])
        rows = cand.set_index(["dev", "win"])
        for (dv, w), g in d.groupby(["dev", "win"]):
            unit = {
                **rows.loc[(dv, w)],
                "window": str(g["window_id"].iloc[0]),
                "device": str(g["device_hash"].iloc[0]),
            }
            hold = g[g["low"]] if unit["side"] == "low" else g[g["topbox"]]
            yield unit, hold["rating_id"]

    def _reason(self, unit: Unit) -> str:
        return self.low_reason if unit["side"] == "low" else self.reason

    def _unit(self, unit: Unit) -> str:
        return f"device:{unit['device']}:window:{unit['window']}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return unit["side"], unit["device"], unit["window"]

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        rho = self.rho_low_ if unit["side"] == "low" else self.rho_top_
        return {"min_ratings": self.min_ratings, "rho": round(rho, 4)}

    def _explain(self, unit: Unit) -> str:
        low = unit["side"] == "low"
        k, share = (unit["k_low"], unit["p_low"]) if low else (unit["k_top"], unit["p_top"])
        what = "low scores" if low else "near-straight-lined top scores"
        return (
            f"Device {unit['device'][:8]} rated window {unit['window']} {int(unit['n'])} times on "
            f"{int(unit['days'])} day(s), {int(k)} of them {what}, where about "
            f"{float(unit['n']) * float(share):.1f} are usual ({share:.0%} of that window's "
            f"ratings); so skewed a rater is unlikely among all devices ({fmt_p(unit['score'])})."
        )
