"""A sudden rise of one staff member's low-score share (onset scanned).

The daily low-score share of each staff member is scanned for a change point
(Bonferroni over days, Benjamini-Hochberg over staff); the low ratings after the onset
that come from a repeated source (a device that gave the staff member two or more low
scores since) are held.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from integrity.catalogue import Reason
from rules.detectors.base import Detector, Unit, bh_cutoff, fmt_p, neglog10
from rules.detectors.features import Frame
from rules.detectors.stats import rho_mom, scan_matrix
from rules.detectors.units import not_repeated


class LowShiftDetector(Detector):
    """Units: staff members; a change point in their daily low-score share.

    Gives ``outlier.bombing``; holds the low scores since the onset from devices (not
    kiosks) that gave the staff member two or more of them. Only units at the threshold
    are flagged; the threshold is Benjamini-Hochberg over staff, at most ``10 x budget``.
    """

    name = "low_shift"
    reason = Reason.OUTLIER_BOMBING
    soft = 1.0

    def _score(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        d = df.loc[not_repeated(df) & (df["stf"] >= 0), ["stf", "day", "low"]]
        if d.empty:
            return pd.DataFrame(columns=["stf", "p", "score", "weight"])
        day = d.groupby(["stf", "day"]).agg(n=("low", "size"), k=("low", "sum")).reset_index()
        base = d.groupby("stf")["low"].agg(["sum", "size"])
        # the staff member's own share, shrunk to the population's (median of staff)
        g = float(np.median(base["sum"] / base["size"]))
        day["p0"] = ((base["sum"] + 20 * g) / (base["size"] + 20)).reindex(day["stf"]).to_numpy()
        self.rho_ = rho_mom(day["k"], day["n"], day["p0"])
        # staff x day matrices; the baseline is the staff member's median daily share
        staff, si = np.unique(day["stf"].to_numpy(), return_inverse=True)
        days, di = np.unique(day["day"].to_numpy(), return_inverse=True)
        K = np.zeros((len(staff), len(days)))
        N = np.zeros((len(staff), len(days)))
        K[si, di] = day["k"].to_numpy()
        N[si, di] = day["n"].to_numpy()
        share = pd.Series(day["k"].to_numpy() / day["n"].to_numpy()).groupby(si).median().to_numpy()
        active = (N > 0).sum(axis=1)
        p0 = np.where(
            active >= 4, share, day.groupby("stf")["p0"].first().reindex(staff).to_numpy()
        )
        p0 = np.maximum(p0, max(g / 2, 0.01))
        split, k_after, n_after, pv = scan_matrix(K, N, p0, self.rho_)
        rows = {
            "stf": staff,
            "onset_day": days[split],
            "p0": p0,
            "k": k_after.astype(np.int64),
            "n": n_after.astype(np.int64),
            "p": pv,
        }
        u = pd.DataFrame(rows)
        u["score"] = neglog10(u["p"].to_numpy())
        u["weight"] = 0  # holds only repeated sources (see _unit_ratings), weighed there
        return u

    def _threshold(self, units: pd.DataFrame, total_ratings: int) -> float:
        a = bh_cutoff(units["p"].to_numpy(), self.fdr) if len(units) else 0.0
        a = min(a, self.budget * 10)
        self.calibration_ = {"alpha": a}
        return float(neglog10(a)) if a > 0 else float("inf")

    def _unit_ratings(self, X: Frame, cand: pd.DataFrame) -> Iterator[tuple[Unit, pd.Series]]:
        df = X.frame
        lows = df.loc[
            df["low"] & not_repeated(df) & (df["stf"] >= 0),
            ["stf", "day", "dev", "rating_id", "kiosk", "counted", "in_scope"],
        ]
        staff = df.drop_duplicates("stf").set_index("stf")["staff_id"]
        for _, row in cand.iterrows():
            r = row.astype(object)
            after = lows[(lows["stf"] == r["stf"]) & (lows["day"] >= r["onset_day"])]
            rep_dev = after.groupby("dev")["rating_id"].transform("size") >= 2
            hold = after[rep_dev & ~after["kiosk"] & after["in_scope"]]
            unit = {
                **r,
                "staff_id": staff[r["stf"]],
                "onset": pd.Timestamp(int(r["onset_day"]) * 86400, unit="s").date(),
            }
            yield unit, hold["rating_id"]

    def _unit(self, unit: Unit) -> str:
        return f"staff:{unit['staff_id']}:from:{unit['onset']}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return unit["staff_id"], int(unit["onset_day"])

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        return {"rho": round(self.rho_, 4), "baseline_low_share": round(unit["p0"], 4)}

    def _explain(self, unit: Unit) -> str:
        who = unit["staff_id"]
        return (
            f"From {unit['onset']}, {int(unit['k'])} of the {int(unit['n'])} ratings of {who} were "
            f"low scores ({unit['k'] / max(int(unit['n']), 1):.0%}), where about {unit['p0']:.0%} "
            f"is usual for {who} ({fmt_p(unit['score'])}); held: low scores since then from "
            f"devices that gave {who} two or more of them."
        )
