"""Co-rating: pairs of devices rating one window in the same time buckets (CopyCatch in spirit).

For each window, the devices (not kiosks) with at least ``min_ratings`` ratings there,
and the ``bucket_s`` buckets in which each was active. Under independence the number of
buckets two devices share is hypergeometric given how many buckets each used and how
many the window had ratings in, in the slots of the day either device uses (regulars
who come at opening hours share those by necessity); slow brushers working one window
together share far more.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from integrity.catalogue import Reason
from rules.detectors.base import Detector, Unit, fmt_p, neglog10
from rules.detectors.features import Frame, nunique_by, rows_of


class CoRatingDetector(Detector):
    """Units: pairs of devices rating the same window in the same local time buckets.

    Gives ``outlier.lockstep``. Only pairs whose median scores agree within ``agree``
    points are tested (lockstep means the same message). A device in a significant pair
    is held on its ratings at that window near its median score.
    """

    name = "corating"
    reason = Reason.OUTLIER_LOCKSTEP

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
        from scipy import stats  # imported on first use (see rules.detectors.stats)

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

    def _unit_ratings(self, X: Frame, cand: pd.DataFrame) -> Iterator[tuple[Unit, list[int]]]:
        # a flag per device of a significant pair, with its strongest pair
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
                b=("b", "first"),
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
        for (w, dv), rid_list in held.items():
            r = rec[(w, dv)]
            window, dev = (str(x) for x in first.loc[(w, dv)])
            unit = {
                **r._asdict(),
                "chance": float(r.a) * float(r.b) / max(float(r.buckets), 1.0),
                "window": window,
                "device": dev,
                "partner_hash": str(dev_hash[r.partner]),
            }
            yield unit, rid_list

    def _unit(self, unit: Unit) -> str:
        return f"device:{unit['device']}:window:{unit['window']}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return unit["device"], unit["window"]

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        return {"bucket_s": self.bucket_s, "min_ratings": self.min_ratings}

    def _explain(self, unit: Unit) -> str:
        return (
            f"Device {unit['device'][:8]} rated window {unit['window']} in the same {self.bucket_s // 3600}-hour "
            f"slots as {int(unit['partners'])} other device(s): with {unit['partner_hash'][:8]} in "
            f"{int(unit['shared'])} of its {int(unit['a'])} slots, out of {int(unit['buckets'])} slots "
            f"the window had ratings in, where about {float(unit['chance']):.1f} would be shared by "
            f"chance ({fmt_p(unit['score'])})."
        )
