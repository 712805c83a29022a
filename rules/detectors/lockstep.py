"""Dense address blocks: many devices behind one address on one window in one day.

One address or prefix (never a registered hall network) whose distinct devices on one
day concentrate on one window far beyond the window's share of that address's traffic
(CopyCatch / CrossSpot in spirit: a dense block of key x window x day).

A block holds the ratings of its excess devices, not of every device behind a shared
address: the key's devices that rated other windows that day are its ordinary traffic,
and about as many of them, in proportion to the window's share, would have rated this
window anyway. That many (the median of a Poisson count with that mean) of the block's
devices keep counting: those that rate the
window on fewest days (a farm or a brushing ring comes back, a carrier's customer
rarely does), then those whose scores are least like the block's.
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

#: The two keys a block can sit behind: kind -> (code column, hash column).
KEYS = {"ip": ("ipc", "ip_hash"), "prefix": ("pfx", "prefix_hash")}


class LockstepDetector(Detector):
    """Units: address or prefix x window x local day, for keys that are not hall networks.

    Gives ``outlier.lockstep``; holds the block's in-scope ratings from outside the crowd.
    """

    name = "lockstep"
    reason = Reason.OUTLIER_LOCKSTEP

    def __init__(self, *, min_devices: int = 3, **kw: Any) -> None:
        super().__init__(**kw)
        self.min_devices = min_devices

    def _score(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        base = df.loc[
            ~df["crowd"] & ~df["dup"], ["ipc", "pfx", "win", "day", "dev", "rating_id", "in_scope"]
        ]
        frames = []
        self.family_ = 0
        win_share = base.groupby("win").size() / max(len(base), 1)
        for kind, (col, _) in KEYS.items():
            # distinct devices per key-day, and per key-window-day
            kd = nunique_by(base, [col, "day"], "dev").rename("key_devices")
            kwd = base.groupby([col, "win", "day"]).agg(
                n=("rating_id", "size"), in_scope=("in_scope", "any")
            )
            kwd["devices"] = nunique_by(base, [col, "win", "day"], "dev")
            self.family_ += len(kwd)
            kwd = kwd[kwd["devices"] >= self.min_devices]
            kwd = kwd.join(kd, on=[col, "day"]).reset_index().rename(columns={col: "key"})
            kwd["kind"] = kind
            frames.append(kwd)
        units = pd.concat(frames, ignore_index=True)
        p_w = np.clip(win_share.reindex(units["win"]).to_numpy(), 1e-6, 1)
        # Under the null each device of the key that day picks windows by popularity;
        # keys differ in where their crowd goes (regions, carriers): beta-binomial.
        self.rho_ = rho_mom(units["devices"], units["key_devices"], p_w, trim=0.05, cap=0.2)
        units["p"] = betabinom_sf(units["devices"], units["key_devices"], p_w, self.rho_)
        units["usual"] = units["key_devices"] * p_w
        units.loc[units["devices"] < self.min_devices, "p"] = 1.0
        units["score"] = neglog10(units["p"].to_numpy())
        units["weight"] = units["n"]
        return units[units["in_scope"]].reset_index(drop=True)

    def _unit_ratings(self, X: Frame, cand: pd.DataFrame) -> Iterator[tuple[Unit, pd.Series]]:
        df = X.frame
        wid = df.drop_duplicates("win").set_index("win")["window_id"]
        # on how many days each device rated each window (from anywhere)
        days_at = nunique_by(df.loc[~df["crowd"] & ~df["dup"]], ["dev", "win"], "day")
        for kind, (col, hash_col) in KEYS.items():
            c = cand[cand["kind"] == kind]
            if c.empty:
                continue
            d = df.loc[
                df["in_scope"] & ~df["crowd"],
                [col, "win", "day", "dev", "composite", "rating_id", hash_col],
            ]
            d = rows_of(d, c.rename(columns={"key": col}), [col, "win", "day"])
            rows = c.set_index(["key", "win", "day"])
            for (k, w, day), g in d.groupby([col, "win", "day"]):
                unit = {
                    **rows.loc[(k, w, day)],
                    "day": day,
                    "window": str(wid[w]),
                    "hash": str(g[hash_col].iloc[0]),
                    "date": pd.Timestamp(int(day) * 86400, unit="s").date(),
                }
                yield unit, self._excess(g, unit, days_at)

    def _excess(self, g: pd.DataFrame, unit: dict[str, Any], days_at: pd.Series) -> pd.Series:
        """The block's ratings from as many of its devices as exceed the usual count, the
        least ordinary first: those that rate the window on the most days, then those
        whose scores sit closest to the block's, then those with the most ratings."""
        per = g.groupby("dev").agg(n=("rating_id", "size"), med=("composite", "median"))
        per["days"] = days_at.reindex(
            pd.MultiIndex.from_arrays([per.index, np.full(len(per), g["win"].iloc[0])])
        ).to_numpy()
        per["gap"] = (per["med"] - float(g["composite"].median())).abs()
        # the key's devices that went elsewhere are its ordinary traffic; as many again,
        # in proportion to this window's share, are ordinary here
        p_w = float(unit["usual"]) / max(float(unit["key_devices"]), 1.0)
        ordinary = (float(unit["key_devices"]) - len(per)) * p_w / max(1e-9, 1.0 - p_w)
        unit["ordinary"] = ordinary
        take = len(per) - int(np.floor(ordinary + 1 / 3))  # the median of a Poisson count
        unit["held_devices"] = max(0, min(len(per), take))
        order = per.sort_values(["days", "gap", "n"], ascending=[False, True, False], kind="stable")
        keep = order.index[: unit["held_devices"]]
        return g.loc[g["dev"].isin(keep), "rating_id"]

    def _unit(self, unit: Unit) -> str:
        return f"{unit['kind']}:{unit['hash']}:window:{unit['window']}:day:{unit['date']}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return unit["kind"], unit["hash"], unit["window"], int(unit["day"])

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        return {"key": unit["kind"], "min_devices": self.min_devices, "rho": round(self.rho_, 4)}

    def _explain(self, unit: Unit) -> str:
        kind = {"ip": "address"}.get(unit["kind"], unit["kind"])
        return (
            f"On {unit['date']}, {int(unit['devices'])} of the {int(unit['key_devices'])} devices seen "
            f"behind {kind} {unit['hash'][:8]} rated window {unit['window']}, where about "
            f"{float(unit['usual']):.1f} would have by that window's share of all traffic "
            f"({fmt_p(unit['score'])}); the {kind} is not a registered hall network. Held: the "
            f"ratings of {int(unit['held_devices'])} of those devices, as many as exceed the "
            f"{float(unit['ordinary']):.1f} its other devices' traffic makes ordinary there, those "
            f"rating the window on the most days and scoring most alike first."
        )
