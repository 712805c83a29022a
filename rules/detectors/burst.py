"""Bursts against a window's own baseline.

Ratings from outside the hall's crowd (not a kiosk, not a registered hall address) on
one window in one time bucket, against what that window gets at that hour of day (its
own daily volume times the population's hour profile), under a negative binomial
fitted to all windows and buckets. Rejected ratings count too: a flood the rate limits
cut still shows where its survivors came from.

A burst has sources: an address or device with at least ``source_min`` ratings in the
bucket. Their ratings at that window in the ``lookback_s`` before the bucket belong to
the same episode (the first part of a flood, before it stood out) and are held with it.

A burst holds its ratings scoring within ``band`` of its median, but not every one: as
many as ordinary traffic brings to that window at that hour (the median of a Poisson
count with the expected mean) keep counting, those least like the burst: rated from an
address, prefix and device no other rating in the bucket shares, then scoring furthest
from its median.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from integrity.catalogue import Reason
from rules.detectors.base import Detector, Unit, fmt_p, neglog10
from rules.detectors.features import Frame, rows_of
from rules.detectors.stats import nb_sf

#: The keys a burst's ratings can share: address, prefix, device.
KEYS = ("ipc", "pfx", "dev")


def _hour_profile(hour: np.ndarray, weight: float = 0.02) -> np.ndarray:
    """Share of ratings per local hour (24 bins), floored at ``weight`` of the mean."""
    h = np.bincount(np.clip(hour.astype(int), 0, 23), minlength=24).astype(float)
    h = h / max(h.sum(), 1.0)
    h = np.maximum(h, weight / 24)
    return h / h.sum()


class BurstDetector(Detector):
    """Units: window x time bucket of ``bucket_s`` seconds; score ``-log10 p`` of the count.

    Gives ``outlier.burst``; holds the bucket's ratings from outside the crowd that
    score within ``band`` of the burst's median.
    """

    name = "burst"
    reason = Reason.OUTLIER_BURST

    def __init__(
        self,
        *,
        bucket_s: int = 900,
        band: float = 0.5,
        lookback_s: float = 3600.0,
        source_min: int = 3,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.bucket_s = bucket_s
        self.band = band  # held: within this many score points of the burst's median
        self.lookback_s = lookback_s
        self.source_min = source_min

    def _score(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        usable = ~df["crowd"] & ~df["dup"]
        d = df.loc[
            usable, ["win", "submitted_s", "hour", "day", "composite", "counted", "in_scope"]
        ]
        if d.empty:
            return pd.DataFrame(
                columns=["win", "bucket", "count", "expected", "p", "score", "weight"]
            )
        d = d.assign(bucket=(d["submitted_s"] // self.bucket_s).astype(np.int64))
        prof = _hour_profile(d["hour"].to_numpy())
        # The window's typical non-crowd volume on a day it gets any (median: robust to floods).
        per_day = d.groupby(["win", "day"]).size().groupby(level=0).median()
        units = d.groupby(["win", "bucket"]).agg(
            count=("composite", "size"), hour=("hour", "min"), in_scope=("in_scope", "any")
        )
        units = units.reset_index()
        # that day's other ratings at the window, kept within [0.5, 2] x its median day
        day_n = d.groupby(["win", "day"]).size()
        units["day"] = d.groupby(["win", "bucket"])["day"].first().to_numpy()
        med = per_day.reindex(units["win"]).to_numpy()
        others = (
            day_n.reindex(pd.MultiIndex.from_frame(units[["win", "day"]])).to_numpy()
            - units["count"]
        )
        rate = np.clip(others.to_numpy(dtype=float), 0.5 * med, 2.0 * med)
        share = self.bucket_s / 3600.0
        expected = rate * prof[np.clip(units["hour"].astype(int), 0, 23)] * share
        units["expected"] = np.maximum(expected, 1e-3)
        # NB dispersion by moments over the whole grid of buckets (empty ones included:
        # each contributes mu^2), the top 1 % of non-empty buckets clipped (attacks).
        x, mu = units["count"].to_numpy(float), units["expected"].to_numpy()
        contrib = (x - mu) ** 2 - x
        contrib = np.minimum(contrib, np.quantile(contrib, 0.99))
        day_rate = np.clip(day_n.to_numpy(float), 0.5, None)
        grid_mu2 = (
            float(np.sum(day_rate**2))
            * share**2
            * (3600.0 / self.bucket_s)
            * float(np.sum(prof**2))
        )
        empty_mu2 = max(grid_mu2 - float(np.sum(mu**2)), 0.0)
        disp = float(np.clip((contrib.sum() + empty_mu2) / max(grid_mu2, 1e-9), 0.0, 1.0))
        units["p"] = nb_sf(units["count"].to_numpy(), units["expected"].to_numpy(), disp)
        units.loc[units["count"] < 3, "p"] = 1.0
        units["score"] = neglog10(units["p"].to_numpy())
        # ratings it would hold: counted ones in the bucket (approximately)
        units["weight"] = units["count"]
        self.dispersion_ = disp
        return units[units["in_scope"]].reset_index(drop=True)

    def _unit_ratings(self, X: Frame, cand: pd.DataFrame) -> Iterator[tuple[Unit, list[int]]]:
        df = X.frame
        cols = ["win", "submitted_s", "composite", "in_scope", "rating_id", "ipc", "pfx", "dev"]
        allrows = df.loc[~df["crowd"], cols]
        allrows = allrows.assign(bucket=(allrows["submitted_s"] // self.bucket_s).astype(np.int64))
        d = rows_of(allrows, cand, ["win", "bucket"])
        d["med"] = d.groupby(["win", "bucket"])["composite"].transform("median")
        # how many of the bucket's ratings share each one's address, prefix or device
        d["shared"] = np.max(
            [d.groupby(["win", "bucket", c])["rating_id"].transform("size") for c in KEYS],
            axis=0,
        )
        d["gap"] = (d["composite"] - d["med"]).abs()
        expected = cand.set_index(["win", "bucket"])["expected"]
        keep = (d["gap"] <= self.band) & d["in_scope"]
        held = (
            d[keep]
            .sort_values(["shared", "gap", "rating_id"], ascending=[False, True, True])
            .groupby(["win", "bucket"])["rating_id"]
            .agg(list)
        )
        med = d.groupby(["win", "bucket"])["med"].first()
        earlier = self._earlier(allrows, d, med)
        rec = {(r.win, r.bucket): r for r in cand.itertuples(index=False)}
        wid = df.drop_duplicates("win").set_index("win")["window_id"]
        for (w, b), rid_list in held.items():
            before = earlier.get((w, b), [])
            # as many as ordinary traffic brings keep counting (the median of a Poisson
            # count with the expected mean), those least like the burst: on an address,
            # prefix and device of their own, scoring furthest from its median
            ordinary = int(np.floor(float(expected[(w, b)]) + 1 / 3))
            rid_list = rid_list[: max(0, len(rid_list) - ordinary)]
            unit = {
                **rec[(w, b)]._asdict(),
                "window": str(wid[w]),
                "start": datetime.fromtimestamp(int(b) * self.bucket_s, X.tz),
                "median": med[(w, b)],
                "earlier": len(before),
                "ordinary": ordinary,
            }
            yield unit, sorted(set(rid_list) | set(before))

    def _earlier(
        self, allrows: pd.DataFrame, d: pd.DataFrame, med: pd.Series
    ) -> dict[tuple[int, int], list[int]]:
        """Per flagged (window, bucket): in-scope ratings of its sources (addresses or
        devices with ``source_min`` ratings in it) at that window in the ``lookback_s``
        before it, within ``band`` of the burst's median."""
        out: dict[tuple[int, int], list[int]] = {}
        for col in ("ipc", "dev"):
            n = d.groupby(["win", "bucket", col]).size()
            src = n[n >= self.source_min].reset_index()[["win", "bucket", col]]
            src = src[src[col] >= 0]
            if src.empty:
                continue
            prior = allrows.merge(src.rename(columns={"bucket": "burst"}), on=["win", col])
            start = prior["burst"] * self.bucket_s
            m = prior[
                (prior["submitted_s"] < start)
                & (prior["submitted_s"] >= start - self.lookback_s)
                & prior["in_scope"]
            ]
            m = m[
                (
                    m["composite"]
                    - med.reindex(pd.MultiIndex.from_frame(m[["win", "burst"]])).to_numpy()
                )
                .abs()
                .le(self.band)
                .to_numpy()
            ]
            for (w, b), g in m.groupby(["win", "burst"]):
                out.setdefault((int(w), int(b)), []).extend(g["rating_id"].tolist())
        return out

    def _unit(self, unit: Unit) -> str:
        return f"window:{unit['window']}:bucket:{int(unit['bucket'])}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return unit["window"], int(unit["bucket"]), self.bucket_s

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        return {"bucket_s": self.bucket_s, "dispersion": round(self.dispersion_, 4)}

    def _explain(self, unit: Unit) -> str:
        return (
            f"{int(unit['count'])} ratings from outside the hall's crowd reached window "
            f"{unit['window']} in the {self.bucket_s // 60} minutes from {unit['start']:%Y-%m-%d %H:%M}, "
            f"where about {unit['expected']:.2f} are usual at that hour ({fmt_p(unit['score'])}); "
            f"held: those scoring within {self.band} of the burst's median {unit['median']:.2f}"
            + (
                f" but the {unit['ordinary']} least like it (an address, prefix and device of "
                f"their own, scores furthest from it), as many as ordinary traffic brings"
                if unit["ordinary"]
                else ""
            )
            + (
                f", and {int(unit['earlier'])} its sources gave that window in the "
                f"{self.lookback_s / 60:.0f} minutes before."
                if unit["earlier"]
                else "."
            )
        )
