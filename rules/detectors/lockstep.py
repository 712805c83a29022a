"""Dense address blocks: many devices behind one address on one window in one day.

One address or prefix (never a registered hall network) whose distinct devices on one
day concentrate on one window far beyond the window's share of the traffic where that
key's devices go (CopyCatch / CrossSpot in spirit: a dense block of key x window x day).

Where a key's devices go is the window's *area*: the windows linked to it, directly or
through others, by an address or prefix that rated both. A city's carrier prefixes only
rate that city's halls, so over a province each city is an area of its own, and a
window's share is taken of its city's traffic, not of the whole province's (which would
make every busy address look concentrated). Where every window is linked to every other
(one town, or a single address that rated in two cities) there is one area: the share of
all traffic. So is the share of a window in an area of fewer than
:data:`MIN_AREA_WINDOWS` windows (one whose raters' addresses rate nowhere else: an area
drawn around a window by its own raters alone would make any block there ordinary).

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
#: Windows an area needs for its windows' shares to be taken of its traffic alone.
MIN_AREA_WINDOWS = 10


def window_areas(base: pd.DataFrame) -> np.ndarray:
    """The area of each window code of ``base`` (rows with ``win``, ``ipc``, ``pfx``
    codes; hall networks and kiosks already left out): windows are in one area when an
    address or a prefix rated both, or links them through other windows (the connected
    components of the graph of windows and keys). Labels index ``0..max(win)``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if base.empty:
        return np.zeros(0, dtype=np.int64)
    n_win = int(base["win"].max()) + 1
    keys, wins = [], []
    offset = n_win  # the graph's nodes: the windows, then each kind's keys after them
    for col in ("ipc", "pfx"):
        pairs = base.loc[base[col].to_numpy() >= 0, [col, "win"]].drop_duplicates()
        keys.append(pairs[col].to_numpy(dtype=np.int64) + offset)
        wins.append(pairs["win"].to_numpy(dtype=np.int64))
        offset += int(base[col].max()) + 1
    k, w = np.concatenate(keys), np.concatenate(wins)
    graph = coo_matrix((np.ones(len(k), dtype=np.int8), (k, w)), shape=(offset, offset))
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels[:n_win], dtype=np.int64)


class LockstepDetector(Detector):
    """Units: address or prefix x window x local day, for keys that are not hall networks.

    Gives ``outlier.lockstep``; holds the block's in-scope ratings from outside the crowd.
    """

    name = "lockstep"
    reason = Reason.OUTLIER_LOCKSTEP

    def __init__(self, *, min_devices: int = 3, **kw: Any) -> None:
        super().__init__(**kw)
        self.min_devices = min_devices
        #: the windows whose share is of their area's traffic: its windows and ratings
        self.local_: dict[str, tuple[int, int]] = {}

    def _score(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        base = df.loc[
            ~df["crowd"] & ~df["dup"], ["ipc", "pfx", "win", "day", "dev", "rating_id", "in_scope"]
        ]
        frames = []
        self.family_ = 0
        traffic = base.groupby("win").size()
        area = window_areas(base)[traffic.index.to_numpy()]
        windows = np.bincount(area)[area]  # how many windows each window's area has
        # an area of a few windows (a window whose raters' addresses rate nowhere else)
        # says little about where a key's devices go: its windows keep the share of all
        # traffic (area -1), as do all windows when the ledger is one area
        area = np.where(windows >= MIN_AREA_WINDOWS, area, -1)
        if len(np.unique(area[area >= 0])) <= 1:
            area[:] = -1
        total = traffic.groupby(area).transform("sum").to_numpy(copy=True)
        total[area < 0] = len(base)
        win_share = traffic / total
        names = df["window_id"].cat.categories  # a window's code is its category's place
        self.local_ = {
            str(names[w]): (int(k), int(n))
            for w, a, k, n in zip(traffic.index, area, windows, total, strict=True)
            if a >= 0
        }
        for kind, (col, _) in KEYS.items():
            # distinct devices per key-window-day, and per key-day (from the distinct
            # key-window-day-device rows: the same devices, fewer rows to look at)
            seen = base[[col, "win", "day", "dev"]].drop_duplicates()
            kd = nunique_by(seen, [col, "day"], "dev").rename("key_devices")
            kwd = base.groupby([col, "win", "day"]).agg(
                n=("rating_id", "size"), in_scope=("in_scope", "any")
            )
            kwd["devices"] = seen.groupby([col, "win", "day"]).size()
            del seen
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
        window_ids = df.drop_duplicates("win").set_index("win")["window_id"].to_dict()
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
            if d.empty:
                continue
            rows = c.set_index(["key", "win", "day"])
            blk = [col, "win", "day"]
            held, blocks = self._excess(d, blk, rows, days_at)
            # block by block in key order, each block's rows in their order: positions
            # in ``d`` grouped once (thousands of blocks at millions of ratings), each
            # block's fields looked up for all blocks at once
            codes = d.groupby(blk, sort=True).ngroup().to_numpy()
            order = np.argsort(codes, kind="stable")
            cuts = np.flatnonzero(np.diff(codes[order])) + 1
            starts, ends = np.r_[0, cuts], np.r_[cuts, len(order)]
            first = d.iloc[order[starts]]
            keys = pd.MultiIndex.from_arrays([first[col], first["win"], first["day"]])
            fields = rows.join(blocks.rename_axis(rows.index.names)).reindex(keys)
            held_ids = d["rating_id"].to_numpy()[order]
            held_mask = held[order]
            records = fields.reset_index(drop=True).to_dict("records")
            for i, (rec, w, day, h) in enumerate(
                zip(records, first["win"], first["day"], first[hash_col], strict=True)
            ):
                unit = {
                    **rec,
                    "day": day,
                    "window": str(window_ids[w]),
                    "hash": str(h),
                    "date": pd.Timestamp(int(day) * 86400, unit="s").date(),
                }
                unit["held_devices"] = int(unit["held_devices"])
                a, b = starts[i], ends[i]
                yield unit, held_ids[a:b][held_mask[a:b]]

    @staticmethod
    def _excess(
        d: pd.DataFrame, blk: list[str], rows: pd.DataFrame, days_at: pd.Series
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """Which of the blocks' ratings to hold (a mask over ``d``), and per block
        (``ordinary``, ``held_devices``): in each block, the ratings from as many of its
        devices as exceed the usual count, the least ordinary first: those that rate the
        window on the most days, then those whose scores sit closest to the block's,
        then those with the most ratings (then by device code). All blocks at once."""
        per = (
            d.groupby([*blk, "dev"])
            .agg(n=("rating_id", "size"), med=("composite", "median"))
            .reset_index()
        )
        per = per.join(d.groupby(blk)["composite"].median().rename("block_med"), on=blk)
        per["gap"] = (per["med"] - per["block_med"]).abs()
        per["days"] = days_at.reindex(
            pd.MultiIndex.from_arrays([per["dev"], per["win"]])
        ).to_numpy()
        per["devs"] = per.groupby(blk)["dev"].transform("size")
        r = rows.reindex(pd.MultiIndex.from_frame(per[blk]))
        usual = r["usual"].to_numpy(dtype=float)
        key_devices = r["key_devices"].to_numpy(dtype=float)
        # the key's devices that went elsewhere are its ordinary traffic; as many again,
        # in proportion to this window's share, are ordinary here
        p_w = usual / np.maximum(key_devices, 1.0)
        per["ordinary"] = (key_devices - per["devs"]) * p_w / np.maximum(1e-9, 1.0 - p_w)
        take = per["devs"] - np.floor(per["ordinary"] + 1 / 3)  # the median of a Poisson count
        per["held_devices"] = np.clip(take, 0, per["devs"]).astype(int)
        per = per.sort_values(
            [*blk, "days", "gap", "n", "dev"],
            ascending=[True] * len(blk) + [False, True, False, True],
            kind="stable",
        )
        keep = per.loc[per.groupby(blk).cumcount().to_numpy() < per["held_devices"], [*blk, "dev"]]
        held = pd.MultiIndex.from_frame(d[[*blk, "dev"]]).isin(pd.MultiIndex.from_frame(keep))
        blocks = per.groupby(blk)[["ordinary", "held_devices"]].first()
        return held, blocks

    def _unit(self, unit: Unit) -> str:
        return f"{unit['kind']}:{unit['hash']}:window:{unit['window']}:day:{unit['date']}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return unit["kind"], unit["hash"], unit["window"], int(unit["day"])

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        return {"key": unit["kind"], "min_devices": self.min_devices, "rho": round(self.rho_, 4)}

    def _explain(self, unit: Unit) -> str:
        kind = {"ip": "address"}.get(unit["kind"], unit["kind"])
        area = self.local_.get(unit["window"])
        share = (
            f"the traffic of its area ({area[0]} windows linked to it by addresses and "
            f"prefixes that rated both, {area[1]:,} ratings from outside the halls' crowds)"
            if area is not None
            else "all traffic"
        )
        return (
            f"On {unit['date']}, {int(unit['devices'])} of the {int(unit['key_devices'])} devices seen "
            f"behind {kind} {unit['hash'][:8]} rated window {unit['window']}, where about "
            f"{float(unit['usual']):.1f} would have by that window's share of {share} "
            f"({fmt_p(unit['score'])}); the {kind} is not a registered hall network. Held: the "
            f"ratings of {int(unit['held_devices'])} of those devices, as many as exceed the "
            f"{float(unit['ordinary']):.1f} its other devices' traffic makes ordinary there, those "
            f"rating the window on the most days and scoring most alike first."
        )
