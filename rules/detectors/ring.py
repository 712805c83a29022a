"""Rings: several devices at one window, each returning with skewed top scores.

A brushing ring spreads its ratings over a few devices, each coming back to one window
on many days with top scores; at a window already rated highly each device alone can
look like one of the citizens who always give 5s (:mod:`rules.detectors.device_repeat`
allows for them). Several of them at the same window can not: honest devices at a
window are independent, so the p-values of its device units (the device-repeat test,
one-sided, top scores) are independent and uniform under the null. The ring of a
window is its ``k`` most skewed devices for the ``k`` (two or more) at which that is
least likely: ``P(at least k of the window's m devices reach the k-th smallest
p-value) = P(Binomial(m, p_(k)) >= k)``, Bonferroni-corrected for the ``m - 1`` ring
sizes tried. Units are windows; the threshold is calibrated like every detector's (the
honest-hold budget and Benjamini-Hochberg across windows). A ring holds its devices'
near-straight-lined top ratings at that window: guilt by association, each member is
held because the others are there, and the finding names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from integrity.catalogue import Reason
from rules.detectors.base import Unit, fmt_p, neglog10
from rules.detectors.device_repeat import DeviceRepeatDetector
from rules.detectors.features import Frame, rows_of
from rules.detectors.units import own_devices


def ring_sizes(p: np.ndarray) -> np.ndarray:
    """For one window's device p-values, the corrected p-value of each ring size 2..m.

    ``p`` are the m one-sided p-values of the window's devices. For each k in 2..m the
    chance that k or more of m uniform p-values fall at or below the k-th smallest is
    ``P(Binomial(m, p_(k)) >= k)``; times the ``m - 1`` sizes tried (Bonferroni), capped
    at 1. Entry ``i`` is for size ``i + 2``; empty with fewer than two devices.
    """
    m = len(p)
    if m < 2:
        return np.zeros(0)
    ps = np.sort(np.asarray(p, dtype=float))
    k = np.arange(2, m + 1)
    return np.minimum(1.0, stats.binom.sf(k - 1, m, ps[1:]) * (m - 1))


def ring_members(p: np.ndarray, level: float) -> int:
    """How many of a flagged window's devices (``p``: their p-values) are in its ring.

    The most likely ring first (the size whose :func:`ring_sizes` p-value is smallest);
    then, while the devices left still hold a group as unlikely as ``level`` among
    themselves alone (the same test over the remaining devices only), that group too.
    """
    ps = np.sort(np.asarray(p, dtype=float))
    q = ring_sizes(ps)
    if len(q) == 0:
        return 0
    taken = int(np.argmin(q)) + 2
    while len(ps) - taken >= 2:
        rest = ring_sizes(ps[taken:])
        if float(rest.min()) > level:
            break
        taken += int(np.argmin(rest)) + 2
    return taken


class RingDetector(DeviceRepeatDetector):
    """Units: windows with two or more device units; gives ``outlier.device_repeat``.

    Holds the near-straight-lined top ratings, at that window, of the window's ring
    (its most skewed devices, as many as make the group least likely by chance).
    """

    name = "ring"
    reason = Reason.OUTLIER_DEVICE_REPEAT

    def _score(self, X: Frame) -> pd.DataFrame:
        dev = super()._score(X)
        self.devices_ = dev
        rows = []
        for w, g in dev.groupby("win", sort=True):
            q = ring_sizes(g["p_high"].to_numpy())
            if len(q) == 0:
                continue
            g = g.sort_values(["p_high", "dev"], kind="stable")
            k = int(np.argmin(q)) + 2
            rows.append(
                {
                    "win": w,
                    "m": len(g),
                    "k": k,
                    "p": float(q[k - 2]),
                    "q": tuple(q.tolist()),
                    "order": tuple(g["dev"].tolist()),
                    "p_dev": tuple(g["p_high"].tolist()),
                    "k_tops": tuple(g["k_top"].tolist()),
                    "ns": tuple(g["n"].tolist()),
                    "weight": int(g["k_top"].iloc[:k].sum()),
                }
            )
        cols = ["win", "m", "k", "p", "q", "order", "p_dev", "k_tops", "ns", "weight"]
        u = pd.DataFrame(rows, columns=cols)
        self.family_ = len(u)
        u["score"] = neglog10(u["p"].to_numpy(dtype=float)) if len(u) else []
        return u

    def _unit_ratings(self, X: Frame, cand: pd.DataFrame) -> Iterator[tuple[Unit, pd.Series]]:
        df = X.frame
        d = df.loc[
            own_devices(df) & df["in_scope"] & df["topbox"],
            ["dev", "win", "rating_id", "window_id", "device_hash"],
        ]
        rings = []
        for r in cand.itertuples(index=False):
            # a flagged window's ring grows while its other devices still hold a group
            # significant at the fdr among themselves; a soft one keeps its likeliest ring
            strong = float(r.score) >= self.threshold_
            k = ring_members(np.asarray(r.p_dev), self.fdr) if strong else int(r.k)
            rings.append((r, k))
        members = pd.DataFrame(
            [(r.win, dv) for r, k in rings for dv in r.order[:k]], columns=["win", "dev"]
        ).astype({"win": d["win"].dtype, "dev": d["dev"].dtype})
        d = rows_of(d, members, ["win", "dev"])
        by_win = {w: g for w, g in d.groupby("win")}
        for r, k in rings:
            g = by_win.get(r.win)
            if g is None:
                continue
            hashes = g.drop_duplicates("dev").set_index("dev")["device_hash"]
            unit = {
                **r._asdict(),
                "members": k,
                "p_k": float(r.p_dev[k - 1]),
                "k_top": int(sum(r.k_tops[:k])),
                "n": int(sum(r.ns[:k])),
                "window": str(g["window_id"].iloc[0]),
                "devices": [str(hashes[dv])[:8] for dv in r.order[:k] if dv in hashes.index],
            }
            yield unit, g["rating_id"]

    def _reason(self, unit: Unit) -> str:
        return self.reason

    def _unit(self, unit: Unit) -> str:
        return f"window:{unit['window']}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return (unit["window"],)

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        return {"min_ratings": self.min_ratings, "rho": round(self.rho_top_, 4)}

    def _explain(self, unit: Unit) -> str:
        m, k = int(unit["m"]), int(unit["members"])
        devs = list(unit["devices"])
        named = ", ".join(devs[:8]) + (f" and {len(devs) - 8} more" if len(devs) > 8 else "")
        k0 = int(unit["k"])
        grown = (
            f"; with it, {k - k0} more whose group is as unlikely among the window's other "
            f"devices at the false discovery rate {self.fdr:g}"
            if k > k0
            else ""
        )
        return (
            f"At window {unit['window']}, {k} of the {m} devices that rated it "
            f"{self.min_ratings} times or more ({named}) each gave near-straight-lined top "
            f"scores more often than that window's share makes usual ({int(unit['k_top'])} "
            f"such ratings in {int(unit['n'])}). Alone each could be a citizen who always "
            f"gives top scores; together they are not independent raters: {k0} devices "
            f"of {m} each reaching p <= {float(unit['p_dev'][k0 - 1]):.2g}, where about "
            f"{m * float(unit['p_dev'][k0 - 1]):.2g} would by chance, is unlikely "
            f"({fmt_p(unit['score'])}, corrected for the {m - 1} ring sizes tried){grown}. "
            f"Held: their near-straight-lined top ratings at that window, each as one of the ring."
        )
