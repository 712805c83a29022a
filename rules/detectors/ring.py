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
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from integrity.catalogue import Reason
from rules.detectors.base import Unit, bh_cutoff, fmt_p, neglog10
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
    from scipy import stats  # imported on first use (see rules.detectors.stats)

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

    def __init__(self, *, slot_h: int = 4, **kw: Any) -> None:
        super().__init__(**kw)
        self.slot_h = slot_h  # the local hours of one day a ring's activity is counted in

    def _score(self, X: Frame) -> pd.DataFrame:
        dev = super()._score(X)
        self.devices_ = dev
        rows = []
        # each window's devices by p then device (one sort for all windows; a device is
        # one unit per window), walked as array slices
        s = dev.sort_values(["win", "p_high", "dev"], kind="stable")
        wins = s["win"].to_numpy()
        p_high = s["p_high"].to_numpy()
        devs = s["dev"].to_numpy()
        k_top = s["k_top"].to_numpy()
        ns = s["n"].to_numpy()
        cuts = np.flatnonzero(wins[1:] != wins[:-1]) + 1
        for a, b in pairwise([0, *cuts.tolist(), len(s)]):
            if b <= a:
                continue
            q = ring_sizes(p_high[a:b])
            if len(q) == 0:
                continue
            k = int(np.argmin(q)) + 2
            rows.append(
                {
                    "win": int(wins[a]),
                    "m": b - a,
                    "k": k,
                    "p": float(q[k - 2]),
                    "q": tuple(q.tolist()),
                    "order": tuple(devs[a:b].tolist()),
                    "p_dev": tuple(p_high[a:b].tolist()),
                    "k_tops": tuple(k_top[a:b].tolist()),
                    "ns": tuple(ns[a:b].tolist()),
                    "weight": int(k_top[a : a + k].sum()),
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
            # a member needs some evidence of its own: p at most the fdr alone (the
            # association lifts weak evidence to a hold, it never makes it from none)
            k = min(k, int(np.searchsorted(np.asarray(r.p_dev), self.fdr, side="right")))
            rings.append((r, k))
        at = df.loc[
            own_devices(df) & df["win"].isin(cand["win"]),
            ["dev", "win", "day", "hour", "topbox", "in_scope", "rating_id"],
        ]
        at = at.assign(cell=at["day"] * 24 // self.slot_h + at["hour"] // self.slot_h)
        at_win = {w: g for w, g in at.groupby("win")}
        links = {}
        for r, k in rings:
            if float(r.score) >= self.threshold_ and r.win in at_win:
                links[r.win] = self._linked(at_win[r.win], set(r.order[:k]))
        members = pd.DataFrame(
            [(r.win, dv) for r, k in rings for dv in r.order[:k]]
            + [(w, dv) for w, ln in links.items() for dv in ln["devices"]],
            columns=["win", "dev"],
        ).astype({"win": d["win"].dtype, "dev": d["dev"].dtype})
        d = rows_of(d, members, ["win", "dev"])
        by_win = {w: g for w, g in d.groupby("win")}
        for r, k in rings:
            g = by_win.get(r.win)
            if g is None or k == 0:
                continue
            hashes = g.drop_duplicates("dev").set_index("dev")["device_hash"]
            ln = links.get(r.win, {"devices": [], "x": 0, "n": 0, "share": 0.0})
            unit = {
                **r._asdict(),
                "members": k,
                "k_top": int(sum(r.k_tops[:k])),
                "n": int(sum(r.ns[:k])),
                "window": str(g["window_id"].iloc[0]),
                "devices": [str(hashes[dv])[:8] for dv in r.order[:k] if dv in hashes.index],
                "linked": [str(hashes[dv])[:8] for dv in ln["devices"] if dv in hashes.index],
                "link_x": ln["x"],
                "link_n": ln["n"],
                "link_share": ln["share"],
            }
            yield unit, g["rating_id"]

    def _linked(self, at: pd.DataFrame, ring: set[Any]) -> dict[str, Any]:
        """The devices at a flagged ring's window linked to it in time.

        ``at``: the window's ratings from own devices with their local (day, slot) cell.
        A device with ``min_ratings`` or more ratings there (as many as a device unit
        needs), not of the ring, is linked when its top
        ratings fall in the cells the ring rated in more often than the window's other
        ratings do: ``P(Binomial(n, share) >= x)``, Benjamini-Hochberg at the fdr among
        those devices.
        """
        in_ring = at["dev"].isin(ring)
        cells = set(at.loc[in_ring, "cell"].tolist())
        rest = at[~in_ring]
        hit = rest["topbox"] & rest["cell"].isin(cells)
        share = float(hit.mean()) if len(rest) else 1.0
        per = (
            rest.assign(hit=hit)
            .groupby("dev")
            .agg(n=("hit", "size"), x=("hit", "sum"), in_scope=("in_scope", "any"))
        )
        per = per[(per["n"] >= self.min_ratings) & per["in_scope"]]
        none = {"devices": [], "x": 0, "n": 0, "share": share}
        if per.empty or share <= 0:
            return none
        from scipy import stats

        p = stats.binom.sf(per["x"].to_numpy() - 1, per["n"].to_numpy(), min(share, 1.0))
        cut = bh_cutoff(p, self.fdr)
        ok = per[(p <= cut) & (per["x"] > 0)]
        if ok.empty:
            return none
        return {
            "devices": ok.index.tolist(),
            "x": int(ok["x"].sum()),
            "n": int(ok["n"].sum()),
            "share": share,
        }

    def _reason(self, unit: Unit) -> str:
        return self.reason

    def _unit(self, unit: Unit) -> str:
        return f"window:{unit['window']}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return (unit["window"],)

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        return {
            "min_ratings": self.min_ratings,
            "rho": round(self.rho_top_, 4),
            "slot_h": self.slot_h,
        }

    def _explain(self, unit: Unit) -> str:
        m, k, k0 = int(unit["m"]), int(unit["members"]), int(unit["k"])
        devs = list(unit["devices"]) + list(unit["linked"])
        named = ", ".join(devs[:8]) + (f" and {len(devs) - 8} more" if len(devs) > 8 else "")
        p_k0 = float(unit["p_dev"][k0 - 1])
        if k > k0:
            grown = (
                f"; with it, {k - k0} more whose group is as unlikely among the window's other "
                f"devices at the false discovery rate {self.fdr:g}"
            )
        elif k < k0:
            grown = f"; {k} of them reach p <= {self.fdr:g} alone, as a member must"
        else:
            grown = ""
        linked = list(unit["linked"])
        if linked:
            grown += (
                f"; and {len(linked)} device(s) linked to it in time: {int(unit['link_x'])} of "
                f"their {int(unit['link_n'])} ratings there are top scores in the "
                f"{self.slot_h}-hour slots of the days the ring rated in, where "
                f"{float(unit['link_share']):.0%} of the window's other ratings are "
                f"(Benjamini-Hochberg at {self.fdr:g})"
            )
        return (
            f"At window {unit['window']}, {k0} of the {m} devices that rated it "
            f"{self.min_ratings} times or more each gave near-straight-lined top scores more "
            f"often than that window's share makes usual, each at p <= {p_k0:.2g}. Alone each "
            f"could be a citizen who always gives top scores; together they are not "
            f"independent raters: about {m * p_k0:.2g} would be so by chance "
            f"({fmt_p(unit['score'])}, corrected for the {m - 1} ring sizes tried){grown}. "
            f"Held, each as one of the ring: the near-straight-lined top ratings at that "
            f"window of {named} ({int(unit['k_top'])} of the ring's {int(unit['n'])} ratings "
            f"there{' and the linked ones' if linked else ''})."
        )
