"""Near-duplicate comments on the low scores of one target.

Low ratings on one target whose comments are near-duplicates of each other (character
3-gram Jaccard) from several devices, where the same text is not common elsewhere (a
generic "not satisfied" is not targeted).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from integrity.catalogue import Reason
from rules.detectors.base import Detector, Unit, fmt_p, neglog10
from rules.detectors.features import Frame, nunique_by
from rules.detectors.units import not_repeated, target_names

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation and spaces removed."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower())


def shingles(text: str, k: int = 3) -> frozenset[str]:
    """The character ``k``-grams of the normalised text (the text itself when shorter)."""
    t = normalise(text)
    if len(t) < k:
        return frozenset([t]) if t else frozenset()
    return frozenset(t[i : i + k] for i in range(len(t) - k + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Shared over all shingles (0 when either is empty)."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


class CommentDuplicateDetector(Detector):
    """Units: clusters of near-duplicate low-score comments on one target.

    Gives ``outlier.bombing``; holds the cluster's in-scope ratings on the target.
    """

    name = "comment_duplicate"
    reason = Reason.OUTLIER_BOMBING

    def __init__(
        self, *, similarity: float = 0.5, min_chars: int = 8, min_size: int = 3, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.similarity = similarity
        self.min_chars = min_chars
        self.min_size = min_size
        self.clustered_: pd.DataFrame = pd.DataFrame()

    def _clusters(self, X: Frame) -> pd.DataFrame:
        df = X.frame
        d = df[not_repeated(df) & df["low"] & df["comment"].notna()]
        d = d.assign(target=target_names(df).reindex(d["tgt"]).to_numpy())
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
        from scipy import stats  # imported on first use (see rules.detectors.stats)

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
        p_t = low_share.reindex(u["target"]).to_numpy()
        p = stats.binom.sf(u["n"] - 1, u["cluster_total"], np.clip(p_t, 1.0 / (10 * n_targets), 1))
        ok = (u["n"] >= self.min_size) & (u["devices"] >= 2)
        u["p"] = np.where(ok, p, 1.0)
        u["expected"] = u["cluster_total"] * np.clip(p_t, 1.0 / (10 * n_targets), 1)
        u["score"] = neglog10(u["p"].to_numpy())
        u["weight"] = u["n"]
        self.clustered_ = d
        return u[u["in_scope"]].reset_index(drop=True)

    def _unit_ratings(self, X: Frame, cand: pd.DataFrame) -> Iterator[tuple[Unit, pd.Series]]:
        d = self.clustered_  # the comments of the fitted frame, clustered
        for _, r in cand.iterrows():
            g = d[(d["cluster"] == r["cluster"]) & (d["target"] == r["target"])]
            hold = g[g["in_scope"]]
            if hold.empty:
                continue
            yield {**r, "sample": str(g["comment"].iloc[0])[:40]}, hold["rating_id"]

    def _unit(self, unit: Unit) -> str:
        return f"comments:{unit['target']}:{normalise(unit['sample'])[:16]}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return unit["target"], normalise(unit["sample"])[:24]

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        return {"similarity": self.similarity}

    def _explain(self, unit: Unit) -> str:
        return (
            f"{int(unit['n'])} low ratings of {unit['target']} from {int(unit['devices'])} devices carry "
            f"near-duplicate comments like \u201c{unit['sample']}\u201d: {int(unit['n'])} of the "
            f"{int(unit['cluster_total'])} such texts anywhere, where about "
            f"{float(unit['expected']):.1f} would fall on {unit['target']} by its share of low "
            f"comments ({fmt_p(unit['score'])})."
        )
