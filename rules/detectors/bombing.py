"""Malicious low scores (bombing): concentrated sources, near-duplicate comments, onsets.

Three findings, each evidence for appeals (the events sit on the ratings):

* :class:`LowConcentrationDetector`: low scores on one staff member (the window when
  no staff is named) concentrated on one address prefix that is not a hall network,
  from several devices, against the target's own low share (beta-binomial with the
  dispersion of all prefix x target pairs). A household or a small group.
* :class:`CommentDuplicateDetector`: low ratings on one target whose comments are
  near-duplicates of each other (character 3-gram Jaccard) from several devices, where
  the same text is not common elsewhere (a generic "not satisfied" is not targeted).
* :class:`LowShiftDetector`: a sudden rise of one staff member's low-score share
  (onset scanned, Bonferroni over days, BH over staff); the low ratings after the onset
  that come from a repeated source (a device or prefix that gave the target two or
  more low scores since) are held.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import numpy as np
import pandas as pd

from rules.detectors.base import Detector, Flag, as_ids, fingerprint, fmt_p, neglog10
from rules.detectors.features import Frame, nunique_by, rows_of
from rules.detectors.stats import betabinom_sf, rho_mom, scan_matrix

SOFT = 0.5


def _names(df: pd.DataFrame) -> pd.Series:
    """Target code -> staff id, or ``window:<id>`` when no staff is named."""
    first = df.drop_duplicates("tgt")
    staff = first["staff_id"].astype(object)
    name = staff.where(first["stf"] >= 0, "window:" + first["window_id"].astype(str))
    return pd.Series(name.to_numpy(), index=first["tgt"].to_numpy())


def _usable(df: pd.DataFrame) -> pd.Series:
    return ~df["dup"]


class LowConcentrationDetector(Detector):
    """Units: non-hall prefix x target with low ratings from at least ``min_devices`` devices."""

    name = "low_concentration"
    reason = "outlier.bombing"

    def __init__(self, *, min_devices: int = 2, min_low: int = 3, **kw: Any) -> None:
        super().__init__(**kw)
        self.min_devices = min_devices
        self.min_low = min_low

    def _score(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        d = df.loc[
            _usable(df) & ~df["crowd"], ["pfx", "tgt", "rating_id", "low", "in_scope", "dev"]
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

    def flags(self, X: Frame) -> list[Flag]:
        u = self.units_
        if u.empty or not np.isfinite(self.threshold_):
            return []
        cand = u[u["score"] >= SOFT * self.threshold_]
        df = X.frame
        names = _names(df)
        d = df.loc[
            _usable(df) & ~df["crowd"] & df["low"] & df["in_scope"],
            ["pfx", "tgt", "rating_id", "prefix_hash"],
        ]
        d = rows_of(d, cand, ["pfx", "tgt"])
        rows = cand.set_index(["pfx", "tgt"])
        out = []
        for (pf, tg), g in d.groupby(["pfx", "tgt"]):
            r = rows.loc[(pf, tg)].astype(object)
            r["target"] = names[tg]
            pfx = str(g["prefix_hash"].iloc[0])
            out.append(
                Flag(
                    detector=self.name,
                    reason=self.reason,
                    unit=f"prefix:{pfx}:target:{r['target']}",
                    rating_ids=as_ids(g["rating_id"]),
                    score=float(r["score"]),
                    threshold=self.threshold_,
                    params={
                        **self.params(),
                        "rho": round(self.rho_, 4),
                        "min_devices": self.min_devices,
                    },
                    explanation=(
                        f"{int(r['k'])} of {int(r['n'])} ratings of {r['target']} from prefix {pfx[:8]} "
                        f"(not a hall network; {int(r['low_devices'])} devices) were low scores, where "
                        f"{r['p_low']:.0%} is usual for {r['target']} ({fmt_p(r['score'])})."
                    ),
                    fingerprint=fingerprint(self.name, pfx, r["target"]),
                )
            )
        return out


_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation and spaces removed."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower())


def shingles(text: str, k: int = 3) -> frozenset[str]:
    t = normalise(text)
    if len(t) < k:
        return frozenset([t]) if t else frozenset()
    return frozenset(t[i : i + k] for i in range(len(t) - k + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


class CommentDuplicateDetector(Detector):
    """Units: clusters of near-duplicate low-score comments on one target."""

    name = "comment_duplicate"
    reason = "outlier.bombing"

    def __init__(
        self, *, similarity: float = 0.5, min_chars: int = 8, min_size: int = 3, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.similarity = similarity
        self.min_chars = min_chars
        self.min_size = min_size

    def _clusters(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        d = df[_usable(df) & df["low"] & df["comment"].notna()]
        d = d.assign(target=_names(df).reindex(d["tgt"]).to_numpy())
        d = d[d["comment"].map(lambda c: len(normalise(str(c))) >= self.min_chars)]
        if d.empty:
            return d.assign(cluster=[])
        sh = [shingles(str(c)) for c in d["comment"].tolist()]
        # greedy leader clustering over the distinct normalised texts (few of them)
        leaders: list[frozenset[str]] = []
        label = np.empty(len(sh), dtype=np.int64)
        for i, s in enumerate(sh):
            for j, lead in enumerate(leaders):
                if jaccard(s, lead) >= self.similarity:
                    label[i] = j
                    break
            else:
                leaders.append(s)
                label[i] = len(leaders) - 1
        return d.assign(cluster=label)

    def _score(self, X: Frame) -> pd.DataFrame:
        d = self._clusters(X)
        if d.empty:
            return pd.DataFrame(columns=["cluster", "target", "p", "score", "weight"])
        total = d.groupby("cluster").size().rename("cluster_total")
        u = d.groupby(["cluster", "target"]).agg(
            n=("rating_id", "size"), in_scope=("in_scope", "any")
        )
        u["devices"] = nunique_by(d, ["cluster", "target"], "dev")
        u = u.reset_index().join(total, on="cluster")
        n_targets = max(1, d["target"].nunique())
        low_share = d.groupby("target").size() / len(d)
        # Null: a cluster's texts fall on targets as low comments generally do.
        from scipy import stats

        p_t = low_share.reindex(u["target"]).to_numpy()
        p = stats.binom.sf(u["n"] - 1, u["cluster_total"], np.clip(p_t, 1.0 / (10 * n_targets), 1))
        ok = (u["n"] >= self.min_size) & (u["devices"] >= 2)
        u["p"] = np.where(ok, p, 1.0)
        u["score"] = neglog10(u["p"].to_numpy())
        u["weight"] = u["n"]
        self._clustered = d
        return u[u["in_scope"]].reset_index(drop=True)

    def flags(self, X: Frame) -> list[Flag]:
        u = self.units_
        if u.empty or not np.isfinite(self.threshold_):
            return []
        d = self._clustered
        out = []
        for _, r in u[u["score"] >= SOFT * self.threshold_].iterrows():
            g = d[(d["cluster"] == r["cluster"]) & (d["target"] == r["target"])]
            hold = g[g["in_scope"]]
            if hold.empty:
                continue
            sample = str(g["comment"].iloc[0])[:40]
            out.append(
                Flag(
                    detector=self.name,
                    reason=self.reason,
                    unit=f"comments:{r['target']}:{normalise(sample)[:16]}",
                    rating_ids=as_ids(hold["rating_id"]),
                    score=float(r["score"]),
                    threshold=self.threshold_,
                    params={**self.params(), "similarity": self.similarity},
                    explanation=(
                        f"{int(r['n'])} low ratings of {r['target']} from {int(r['devices'])} devices carry "
                        f"near-duplicate comments like \u201c{sample}\u201d, {int(r['n'])} of the "
                        f"{int(r['cluster_total'])} such texts anywhere ({fmt_p(r['score'])})."
                    ),
                    fingerprint=fingerprint(self.name, r["target"], normalise(sample)[:24]),
                )
            )
        return out


class LowShiftDetector(Detector):
    """Units: staff members; a change point in their daily low-score share."""

    name = "low_shift"
    reason = "outlier.bombing"

    def _score(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        d = df.loc[_usable(df) & (df["stf"] >= 0), ["stf", "day", "low"]]
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
        split, _, _, pv = scan_matrix(K, N, p0, self.rho_)
        rows = {"stf": staff, "onset_day": days[split], "p0": p0, "p": pv}
        u = pd.DataFrame(rows)
        u["score"] = neglog10(u["p"].to_numpy())
        u["weight"] = 0  # holds only repeated sources (see flags), weighed there
        return u

    def _threshold(self, units: pd.DataFrame, total_ratings: int) -> float:
        from rules.detectors.base import bh_cutoff

        a = bh_cutoff(units["p"].to_numpy(), self.fdr) if len(units) else 0.0
        a = min(a, self.budget * 10)
        self.calibration_ = {"alpha": a}
        return float(neglog10(a)) if a > 0 else float("inf")

    def flags(self, X: Frame) -> list[Flag]:
        u = self.units_
        if u.empty or not np.isfinite(self.threshold_):
            return []
        df = X.frame
        lows = df.loc[
            df["low"] & _usable(df) & (df["stf"] >= 0),
            ["stf", "day", "dev", "rating_id", "kiosk", "counted", "in_scope"],
        ]
        staff = df.drop_duplicates("stf").set_index("stf")["staff_id"]
        out = []
        for _, r in u[u["score"] >= self.threshold_].iterrows():
            r = r.astype(object)
            r["staff_id"] = staff[r["stf"]]
            after = lows[(lows["stf"] == r["stf"]) & (lows["day"] >= r["onset_day"])]
            rep_dev = after.groupby("dev")["rating_id"].transform("size") >= 2
            hold = after[rep_dev & ~after["kiosk"] & after["in_scope"]]
            if hold.empty:
                continue
            onset = pd.Timestamp(int(r["onset_day"]) * 86400, unit="s").date()
            out.append(
                Flag(
                    detector=self.name,
                    reason=self.reason,
                    unit=f"staff:{r['staff_id']}:from:{onset}",
                    rating_ids=as_ids(hold["rating_id"]),
                    score=float(r["score"]),
                    threshold=self.threshold_,
                    params={
                        **self.params(),
                        "rho": round(self.rho_, 4),
                        "baseline_low_share": round(r["p0"], 4),
                    },
                    explanation=(
                        f"The low-score share of {r['staff_id']} rose from about {r['p0']:.0%} from {onset} "
                        f"({fmt_p(r['score'])}); held: low scores since then from devices that gave "
                        f"{r['staff_id']} two or more of them."
                    ),
                    fingerprint=fingerprint(self.name, r["staff_id"], int(r["onset_day"])),
                )
            )
        return out
