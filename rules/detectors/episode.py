"""Rate-limit episodes: what the limiter let through before (and between) its refusals.

The rate limits admit the first ratings under each limit by design: an address that
floods a window gets its first twenty ratings counted before ``ip.burst`` holds the rest,
and a sliding log admits a few more each time old entries leave it. Those admitted
ratings belong to the same episode as the refused ones.

An episode is one source's *session* at one window: the ratings from one address,
prefix or device (never a registered hall network or kiosk pad: crowds) whose
consecutive gaps are at most ``gap_s``, at that window. Only sessions in which a rate
limit about that source refused or held at least one rating (``rate_limit.ip`` for an
address, ``rate_limit.prefix`` for a prefix, ``rate_limit.device`` or
``rate_limit.device_window`` for a device; ``limiter_unavailable`` for any) are tested. The test: the session's size at that window against what sessions of that
kind of source bring to one window (a negative binomial fitted to every session of the
population, robustly), so a family that rated three tickets and tripped a per-device
limit is ordinary and a source with two hundred ratings in an hour is not. A flagged
episode holds its counted ratings that score within ``band`` of its median (the flood's
message, not a different rating the same source gave).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from integrity.catalogue import Reason
from integrity.ports import LIMITED_BITS
from rules.detectors.base import Detector, Unit, fmt_p, neglog10
from rules.detectors.features import Frame, rows_of
from rules.detectors.stats import nb_dispersion, nb_sf

#: The sources an episode can come from: kind -> (code column, hash column, crowd column,
#: the rate-limit reasons about that source).
SOURCES = {
    "address": ("ipc", "ip_hash", "venue", (Reason.RATE_LIMIT_IP,)),
    "prefix": ("pfx", "prefix_hash", "venue", (Reason.RATE_LIMIT_PREFIX,)),
    "device": (
        "dev",
        "device_hash",
        "kiosk",
        (Reason.RATE_LIMIT_DEVICE, Reason.RATE_LIMIT_DEVICE_WINDOW),
    ),
}

_COLUMNS = ["kind", "key", "win", "session", "n", "limited", "start", "end", "median", "p", "score"]


class EpisodeDetector(Detector):
    """Units: source (address, prefix, device) x session x window with a rate-limit refusal.

    Gives ``outlier.episode``; holds the episode's counted ratings within ``band`` of its
    median score.
    """

    name = "episode"
    reason = Reason.OUTLIER_EPISODE

    def __init__(
        self, *, gap_s: float = 1800.0, band: float = 0.5, min_ratings: int = 3, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.gap_s = gap_s
        self.band = band
        self.min_ratings = min_ratings
        self.sessions_: dict[str, pd.DataFrame] = {}
        self.usual_: dict[str, float] = {}
        self.dispersion_: dict[str, float] = {}

    def _sessions(self, X: Frame, kind: str) -> pd.DataFrame:
        """Rows of one source kind with their session number (per source, gap <= gap_s)."""
        df = X.frame
        code, _, crowd, reasons = SOURCES[kind]
        # refusals about this source, or the limiter's absence (nothing was checked)
        bits = LIMITED_BITS[Reason.LIMITER_UNAVAILABLE]
        for r in reasons:
            bits |= LIMITED_BITS[r]
        d = df.loc[
            ~df[crowd] & ~df["dup"] & (df[code] >= 0),
            [code, "win", "submitted_s", "limited", "composite", "rating_id", "in_scope"],
        ].rename(columns={code: "key"})
        d["limited"] = (d["limited"].to_numpy() & bits) > 0
        d = d.sort_values(["key", "submitted_s"], kind="stable")
        t = d["submitted_s"].to_numpy()
        k = d["key"].to_numpy()
        new = np.ones(len(d), dtype=bool)
        new[1:] = (k[1:] != k[:-1]) | (np.diff(t) > self.gap_s)
        return d.assign(session=np.cumsum(new))

    def _score(self, X: Frame) -> pd.DataFrame:
        frames = []
        self.family_ = 0
        # new objects (not updated in place): decision_function restores the fitted ones
        self.sessions_, self.usual_, self.dispersion_ = {}, {}, {}
        for kind in SOURCES:
            d = self._sessions(X, kind)
            self.sessions_[kind] = d
            if d.empty:
                continue
            # every cell's size and refusals (the population the null is fitted to); the
            # rest of a cell's summary only for the cells tested (few: a limit refused)
            grouped = d.groupby(["session", "win"])
            sizes = grouped.size()
            refused = grouped["limited"].sum()
            counts = sizes.to_numpy(dtype=float)
            # what one session of this kind of source usually brings to one window
            usual = float(np.mean(np.minimum(counts, np.quantile(counts, 0.99))))
            disp = nb_dispersion(counts, np.full(len(counts), usual))
            self.usual_[kind], self.dispersion_[kind] = usual, disp
            self.family_ += len(sizes)
            tested = sizes.index[(refused.to_numpy() > 0) & (sizes.to_numpy() >= self.min_ratings)]
            if tested.empty:
                continue
            test = self._cells(d, tested)
            test = test[test["in_scope"]]
            if test.empty:
                continue
            p = nb_sf(test["n"].to_numpy(), np.full(len(test), usual), disp)
            frames.append(test.assign(kind=kind, p=p))
        if not frames:
            return pd.DataFrame(columns=[*_COLUMNS, "weight"])
        units = pd.concat(frames, ignore_index=True)
        units["score"] = neglog10(units["p"].to_numpy())
        units["weight"] = units["n"]
        return units

    @staticmethod
    def _cells(d: pd.DataFrame, cells: pd.MultiIndex) -> pd.DataFrame:
        """The summary of each (session, window) cell in ``cells`` (sorted), from its rows
        in ``d``: source, size, refusals, first and last time, median score, in scope."""
        return (
            rows_of(d, cells.to_frame(index=False), ["session", "win"])
            .groupby(["session", "win"])
            .agg(
                key=("key", "first"),
                n=("rating_id", "size"),
                limited=("limited", "sum"),
                start=("submitted_s", "min"),
                end=("submitted_s", "max"),
                median=("composite", "median"),
                in_scope=("in_scope", "any"),
            )
            .reset_index()
        )

    def _unit_ratings(self, X: Frame, cand: pd.DataFrame) -> Iterator[tuple[Unit, pd.Series]]:
        df = X.frame
        wid = df.drop_duplicates("win").set_index("win")["window_id"]
        for kind, (code, hash_col, _, _) in SOURCES.items():
            c = cand[cand["kind"] == kind]
            if c.empty:
                continue
            d = self.sessions_[kind]
            d = d[d["session"].isin(c["session"]) & d["win"].isin(c["win"])]
            hashes = df.drop_duplicates(code).set_index(code)[hash_col]
            for _, r in c.iterrows():
                g = d[(d["session"] == r["session"]) & (d["win"] == r["win"])]
                keep = ((g["composite"] - r["median"]).abs() <= self.band) & g["in_scope"]
                unit = {
                    **r,
                    "window": str(wid[r["win"]]),
                    "hash": str(hashes[r["key"]]),
                    "from": datetime.fromtimestamp(float(r["start"]), X.tz),
                    "minutes": (float(r["end"]) - float(r["start"])) / 60.0,
                    "usual": self.usual_[kind],
                }
                yield unit, g.loc[keep, "rating_id"]

    def _unit(self, unit: Unit) -> str:
        return f"{unit['kind']}:{unit['hash']}:window:{unit['window']}:from:{int(unit['start'])}"

    def _key(self, unit: Unit) -> tuple[Any, ...]:
        return unit["kind"], unit["hash"], unit["window"], int(unit["start"])

    def _unit_params(self, unit: Unit) -> dict[str, Any]:
        return {
            "source": unit["kind"],
            "gap_s": self.gap_s,
            "usual_per_session": round(float(unit["usual"]), 4),
            "dispersion": round(self.dispersion_[unit["kind"]], 4),
        }

    def _explain(self, unit: Unit) -> str:
        minutes = max(1, round(float(unit["minutes"])))
        return (
            f"{unit['kind'].capitalize()} {unit['hash'][:8]} sent {int(unit['n'])} ratings to window "
            f"{unit['window']} in {minutes} minute(s) from {unit['from']:%Y-%m-%d %H:%M}, where one "
            f"visit of a source usually brings about {float(unit['usual']):.1f}; the rate limits "
            f"refused or held {int(unit['limited'])} of them ({fmt_p(unit['score'])}). Held: the "
            f"ones that still counted, scoring within {self.band} of the episode's median "
            f"{float(unit['median']):.2f}."
        )
