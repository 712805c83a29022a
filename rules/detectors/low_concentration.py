"""Low scores on one target concentrated on one address prefix (a household, a small group).

Low scores on one staff member (the window when no staff is named) from one address
prefix that is not a hall network, from several devices, against the target's own low
share (beta-binomial with the dispersion of all prefix x target pairs).
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
from rules.detectors.units import not_repeated, target_names


class LowConcentrationDetector(Detector):
    """Units: non-hall prefix x target with low ratings from at least ``min_devices`` devices.

    Gives ``outlier.bombing``; holds the prefix's in-scope low scores on the target.
    """

    name = "low_concentration"
    reason = Reason.OUTLIER_BOMBING

    def __init__(self, *, min_devices: int = 2, min_low: int = 3, **kw: Any) -> None:
        super().__init__(**kw)
        self.min_devices = min_devices
        self.min_low = min_low

    def _score(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        d = df.loc[
            not_repeated(df) & ~df["crowd"], ["pfx", "tgt", "rating_id", "low", "in_scope", "dev"]
        ]
        base = df.groupby("tgt")["low"].mean()
        u = d.groupby(["pfx", "tgt"]).agg(
            n=("rating_id", "size"), k=("low", "sum"), in_scope=("in_scope", "any")
        )
        low_dev = nunique_by(d[d["low"]], ["pfx", "tgt"], "dev").rename("low_devices")
        u = u.join(low_dev).fillna({"low_devices": 0}).reset_index()
        u["p_low"] = base.reindex(u["tgt"]).to_numpy()
        u["p_low"] = u["p_low"].clip(0.01, 0.99)
        self.rho_ = rho_mom(u["k"], u["n"], u["p_low"])
        u = u[u["in_scope"]].reset_index(drop=True)
        p = betabinom_sf(u["k"], u["n"], u["p_low"], self.rho_)
        ok = (u["low_devices"] >= self.min_devices) & (u["k"] >= self.min_low)
        u["p"] = np.where(ok, p, 1.0)
        u["score"] = neglog10(u["p"].to_numpy())
        u["weight"] = u["k"]
        return u

    def _unit_ratings(self, X: Frame, cand: pd.DataFrame) -> Iterator[tuple[Unit, pd.Series]]:
        df = X.frame
        names = target_names(df)
        d = df.loc[
            not_repeated(df) & ~df["crowd"] & df["low"] & df["in_scope"],
            ["pfx", "tgt", "rating_id", "prefix_hash"],
        ]
        d = rows_of(d, cand, ["pfx", "tgt"])
        rows = cand.set_index(["pfx", "tgt"])
        for (pf, tg), g in d.groupby(["pfx", "tgt"]):
            unit = {
                **rows.loc[(pf, tg)],
                "target": names[tg],
                "prefix": str(g["prefix_hash"].iloc[0]),
            }
            yield unit, g["rating_id"]

    def _unit(self, unit: Unit) -> str:
        return f"prefix:{unit['prefix']}:target:{unit['target']}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return unit["prefix"], unit["target"]

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        return {"rho": round(self.rho_, 4), "min_devices": self.min_devices}

    def _explain(self, unit: Unit) -> str:
        target = unit["target"]
        return (
            f"{int(unit['k'])} of {int(unit['n'])} ratings of {target} from prefix {unit['prefix'][:8]} "
            f"(not a hall network; {int(unit['low_devices'])} devices) were low scores, where about "
            f"{float(unit['n']) * float(unit['p_low']):.1f} are usual ({unit['p_low']:.0%} of the "
            f"ratings of {target}) ({fmt_p(unit['score'])})."
        )
