"""Bursts against a window's own baseline, and dense address blocks (lockstep).

:class:`BurstDetector`: ratings from outside the hall's crowd (not a kiosk, not a
registered hall address) on one window in one time bucket, against what that window
gets at that hour of day (its own daily volume times the population's hour profile),
under a negative binomial fitted to all windows and buckets. Rejected ratings count
too: a flood the rate limits cut still shows where its survivors came from.

:class:`LockstepDetector`: one address or prefix (never a registered hall network)
whose distinct devices on one day concentrate on one window far beyond the window's
share of that address's traffic (CopyCatch / CrossSpot in spirit: a dense block of
key x window x day).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from rules.detectors.base import Detector, Flag, as_ids, fingerprint, fmt_p, neglog10
from rules.detectors.features import Frame, nunique_by, rows_of
from rules.detectors.stats import betabinom_sf, nb_sf, rho_mom

SOFT = 0.5  # units scoring at least this share of the threshold are soft evidence


def _hour_profile(hour: np.ndarray, weight: float = 0.02) -> np.ndarray:
    """Share of ratings per local hour (24 bins), floored at ``weight`` of the mean."""
    h = np.bincount(np.clip(hour.astype(int), 0, 23), minlength=24).astype(float)
    h = h / max(h.sum(), 1.0)
    h = np.maximum(h, weight / 24)
    return h / h.sum()


class BurstDetector(Detector):
    """Units: window x time bucket of ``bucket_s`` seconds; score ``-log10 p`` of the count."""

    name = "burst"
    reason = "outlier.burst"

    def __init__(self, *, bucket_s: int = 900, band: float = 0.5, **kw: Any) -> None:
        super().__init__(**kw)
        self.bucket_s = bucket_s
        self.band = band  # held: within this many score points of the burst's median

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

    def flags(self, X: Frame) -> list[Flag]:
        df = X.frame
        u = self.units_
        if u.empty or not np.isfinite(self.threshold_):
            return []
        cand = u[u["score"] >= SOFT * self.threshold_]
        if cand.empty:
            return []
        d = df.loc[
            ~df["crowd"], ["win", "submitted_s", "composite", "counted", "in_scope", "rating_id"]
        ]
        d = d.assign(bucket=(d["submitted_s"] // self.bucket_s).astype(np.int64))
        d = rows_of(d, cand, ["win", "bucket"])
        d["med"] = d.groupby(["win", "bucket"])["composite"].transform("median")
        keep = ((d["composite"] - d["med"]).abs() <= self.band) & d["in_scope"]
        held = d[keep].groupby(["win", "bucket"])["rating_id"].agg(list)
        med = d.groupby(["win", "bucket"])["med"].first()
        rec = {(r.win, r.bucket): r for r in cand.itertuples(index=False)}
        wid = df.drop_duplicates("win").set_index("win")["window_id"]
        params = {
            **self.params(),
            "bucket_s": self.bucket_s,
            "dispersion": round(self.dispersion_, 4),
        }
        out = []
        for (w, b), rid_list in held.items():
            row = rec[(w, b)]
            window = str(wid[w])
            start = datetime.fromtimestamp(int(b) * self.bucket_s, X.tz)
            out.append(
                Flag(
                    detector=self.name,
                    reason=self.reason,
                    unit=f"window:{window}:bucket:{int(b)}",
                    rating_ids=as_ids(rid_list),
                    score=float(row.score),
                    threshold=self.threshold_,
                    params=params,
                    explanation=(
                        f"{int(row.count)} ratings from outside the hall's crowd reached window "
                        f"{window} in the {self.bucket_s // 60} minutes from {start:%Y-%m-%d %H:%M}, "
                        f"where about {row.expected:.2f} are usual at that hour ({fmt_p(row.score)}); "
                        f"held: those scoring within {self.band} of the burst's median {med[(w, b)]:.2f}."
                    ),
                    fingerprint=fingerprint(self.name, window, int(b), self.bucket_s),
                )
            )
        return out


class LockstepDetector(Detector):
    """Units: address or prefix x window x local day, for keys that are not hall networks."""

    name = "lockstep"
    reason = "outlier.lockstep"

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
        for kind, col in (("ip", "ipc"), ("prefix", "pfx")):
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
        units.loc[units["devices"] < self.min_devices, "p"] = 1.0
        units["score"] = neglog10(units["p"].to_numpy())
        units["weight"] = units["n"]
        return units[units["in_scope"]].reset_index(drop=True)

    def flags(self, X: Frame) -> list[Flag]:
        df = X.frame
        u = self.units_
        if u.empty or not np.isfinite(self.threshold_):
            return []
        cand = u[u["score"] >= SOFT * self.threshold_]
        out = []
        wid = df.drop_duplicates("win").set_index("win")["window_id"]
        for kind, col in (("ip", "ipc"), ("prefix", "pfx")):
            c = cand[cand["kind"] == kind]
            if c.empty:
                continue
            d = df.loc[
                df["in_scope"] & ~df["crowd"],
                [col, "win", "day", "rating_id", f"{kind}_hash" if kind == "ip" else "prefix_hash"],
            ]
            d = rows_of(d, c.rename(columns={"key": col}), [col, "win", "day"])
            rows = c.set_index(["key", "win", "day"])
            for (k, w, day), g in d.groupby([col, "win", "day"]):
                r = rows.loc[(k, w, day)]
                window = str(wid[w])
                h = str(g[f"{kind}_hash" if kind == "ip" else "prefix_hash"].iloc[0])
                date = pd.Timestamp(int(day) * 86400, unit="s").date()
                out.append(
                    Flag(
                        detector=self.name,
                        reason=self.reason,
                        unit=f"{kind}:{h}:window:{window}:day:{date}",
                        rating_ids=as_ids(g["rating_id"]),
                        score=float(r["score"]),
                        threshold=self.threshold_,
                        params={
                            **self.params(),
                            "key": kind,
                            "min_devices": self.min_devices,
                            "rho": round(self.rho_, 4),
                        },
                        explanation=(
                            f"On {date}, {int(r['devices'])} of the {int(r['key_devices'])} devices seen "
                            f"behind {kind} {h[:8]} rated window {window}, far above that window's share "
                            f"of traffic ({fmt_p(r['score'])}); the {kind} is not a registered hall network."
                        ),
                        fingerprint=fingerprint(self.name, kind, h, window, int(day)),
                    )
                )
        return out


class CoRatingDetector(Detector):
    """Units: pairs of devices rating the same window in the same local time buckets.

    CopyCatch in spirit: for each window, the devices (not kiosks) with at least
    ``min_ratings`` ratings there, and the ``bucket_s`` buckets in which each was
    active. Under independence the number of buckets two devices share is
    hypergeometric given how many buckets each used and how many the window had
    ratings in, in the slots of the day either device uses (regulars who come at
    opening hours share those by necessity); slow brushers working one window together share far more. Only
    pairs whose median scores agree within ``agree`` points are tested (lockstep
    means the same message). A device in a significant pair is held on its ratings
    at that window near its median score.
    """

    name = "corating"
    reason = "outlier.lockstep"

    def __init__(
        self,
        *,
        bucket_s: int = 14400,
        min_ratings: int = 3,
        min_shared: int = 3,
        agree: float = 0.5,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.agree = agree
        self.bucket_s = bucket_s
        self.min_ratings = min_ratings
        self.min_shared = min_shared

    def _score(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        d = df.loc[
            ~df["kiosk"] & ~df["dup"],
            ["day", "hour", "win", "dev", "composite", "in_scope", "rating_id"],
        ]
        local = d["day"] * 86400 + d["hour"] * 3600
        d = d.assign(bucket=(local // self.bucket_s).astype(np.int64))
        per_day = max(1, round(86400 / self.bucket_s))
        d = d.assign(slot=(d["bucket"] % per_day).astype(np.int64))
        n_dw = d.groupby(["win", "dev"])["rating_id"].transform("size")
        # busy buckets of each window, by slot of the day
        busy = d.drop_duplicates(["win", "bucket"]).groupby(["win", "slot"]).size()
        cand = d[n_dw >= self.min_ratings]
        rows = []
        for w, g in cand.groupby("win"):
            devs, dcode = np.unique(g["dev"].to_numpy(), return_inverse=True)
            if len(devs) < 2:
                continue
            bks, bcode = np.unique(g["bucket"].to_numpy(), return_inverse=True)
            m = np.zeros((len(devs), len(bks)), dtype=np.float32)
            m[dcode, bcode] = 1.0
            co = m @ m.T
            a = m.sum(axis=1)
            i, j = np.triu_indices(len(devs), k=1)
            shared = co[i, j]
            keep = shared >= self.min_shared
            if not keep.any():
                continue
            i, j, shared = i[keep], j[keep], shared[keep]
            # lockstep means agreement too: the two devices' typical scores are close
            med = g.groupby("dev")["composite"].median().reindex(devs).to_numpy()
            agree = np.abs(med[i] - med[j]) <= self.agree
            if not agree.any():
                continue
            i, j, shared = i[agree], j[agree], shared[agree]
            # the universe of a pair: the window's busy buckets in the slots of the day
            # either device ever uses (regulars who come at opening hours share those)
            slots = np.zeros((len(devs), per_day), dtype=bool)
            slots[dcode, g["slot"].to_numpy()] = True
            wb = busy.loc[w].reindex(range(per_day)).fillna(0).to_numpy()
            big = ((slots[i] | slots[j]) * wb).sum(axis=1).astype(np.int64)
            p = stats.hypergeom.sf(shared - 1, np.maximum(big, a[i] + a[j]), a[i], a[j])
            in_scope = g.groupby("dev")["in_scope"].any().reindex(devs).to_numpy()
            rows.append(
                pd.DataFrame(
                    {
                        "win": w,
                        "dev_a": devs[i],
                        "dev_b": devs[j],
                        "shared": shared,
                        "a": a[i],
                        "b": a[j],
                        "buckets": big,
                        "p": p,
                        "in_scope": in_scope[i] | in_scope[j],
                    }
                )
            )
        if not rows:
            return pd.DataFrame(columns=["win", "dev_a", "dev_b", "p", "score", "weight"])
        u = pd.concat(rows, ignore_index=True)
        u["score"] = neglog10(u["p"].to_numpy())
        u["weight"] = u["a"] + u["b"]
        # every pair that could have been tested (>= min_ratings each) is in the family
        n_dev = nunique_by(cand, ["win"], "dev")
        self.family_ = int((n_dev * (n_dev - 1) // 2).sum())
        return u[u["in_scope"]].reset_index(drop=True)

    def flags(self, X: Frame) -> list[Flag]:
        u = self.units_
        if u.empty or not np.isfinite(self.threshold_):
            return []
        cand = u[u["score"] >= SOFT * self.threshold_]
        if cand.empty:
            return []
        both = pd.concat(
            [
                cand.rename(columns={"dev_a": "dev", "dev_b": "partner"}),
                cand.rename(columns={"dev_b": "dev", "dev_a": "partner"}),
            ]
        )
        best = (
            both.sort_values("score", ascending=False)
            .groupby(["win", "dev"])
            .agg(
                score=("score", "first"),
                partner=("partner", "first"),
                shared=("shared", "first"),
                a=("a", "first"),
                buckets=("buckets", "first"),
                partners=("partner", "nunique"),
            )
        )
        df = X.frame
        d = df.loc[
            ~df["kiosk"] & df["in_scope"],
            ["win", "dev", "composite", "rating_id", "window_id", "device_hash"],
        ]
        dev_hash = df.drop_duplicates("dev").set_index("dev")["device_hash"]
        d = rows_of(d, best.reset_index(), ["win", "dev"])
        d["med"] = d.groupby(["win", "dev"])["composite"].transform("median")
        held = (
            d[(d["composite"] - d["med"]).abs() <= 0.5]
            .groupby(["win", "dev"])["rating_id"]
            .agg(list)
        )
        first = d.groupby(["win", "dev"])[["window_id", "device_hash"]].first()
        rec = {k: r for k, r in zip(best.index, best.itertuples(index=False), strict=True)}
        params = {**self.params(), "bucket_s": self.bucket_s, "min_ratings": self.min_ratings}
        out = []
        for (w, dv), rid_list in held.items():
            r = rec[(w, dv)]
            window, dev = (str(x) for x in first.loc[(w, dv)])
            partner = str(dev_hash[r.partner])
            out.append(
                Flag(
                    detector=self.name,
                    reason=self.reason,
                    unit=f"device:{dev}:window:{window}",
                    rating_ids=as_ids(rid_list),
                    score=float(r.score),
                    threshold=self.threshold_,
                    params=params,
                    explanation=(
                        f"Device {dev[:8]} rated window {window} in the same {self.bucket_s // 3600}-hour "
                        f"slots as {int(r.partners)} other device(s): with {partner[:8]} in "
                        f"{int(r.shared)} of its {int(r.a)} slots, out of {int(r.buckets)} slots "
                        f"the window had ratings in ({fmt_p(r.score)})."
                    ),
                    fingerprint=fingerprint(self.name, dev, window),
                )
            )
        return out
