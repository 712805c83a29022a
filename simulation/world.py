"""A simulated world and how to make one: :class:`World` (ratings, aligned truth, venues,
summaries, files) and :func:`simulate` (honest month, attacks, identical retries, venues)."""

from __future__ import annotations

import csv
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import tzinfo
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from integrity.model import CHANNELS, DEFAULT_RUBRIC
from simulation._batch import _Batch, _concat, _gc_paused, _take
from simulation.addresses import _PHONE_GATEWAY, _SMS_GATEWAYS
from simulation.attacks import (
    _bombing,
    _brushing_slow,
    _coerced,
    _device_farm,
    _flood,
    _plan_targets,
    _replay,
    _self_rating,
)
from simulation.context import _Ctx
from simulation.honest import _honest, _identical_retries
from simulation.model import (
    _KIND,
    _STYPES,
    DIMENSIONS,
    KINDS,
    Attack,
    Label,
    WorldConfig,
    _composite,
)
from simulation.output import _format_ids, _format_ips, _format_times


class World:
    """A simulated month: ratings (intake dicts), aligned truth, venues.

    ``ratings`` and ``truth`` are built on first access from columnar arrays, so
    :meth:`to_jsonl` on a million-rating world can stream without holding a
    million dicts.
    """

    def __init__(
        self,
        config: WorldConfig,
        cols: _Batch,
        *,
        window_ids: list[str],
        staff_ids: list[str],
        staff_window: dict[str, str],
        window_quality: dict[str, float],
        attacks: list[Attack],
        venues: dict[str, Any],
        coerced_windows: set[str],
        tz: tzinfo,
    ) -> None:
        self.config = config
        self._c = cols
        self.window_ids = window_ids
        self.staff_ids = staff_ids
        self.staff_window = staff_window
        """Staff id -> the window they work at."""
        self.window_quality = window_quality
        """Window id -> the latent quality honest scores are drawn around (score points)."""
        self.attacks = attacks
        self.venues = venues
        self.coerced_windows = coerced_windows
        self._tz = tz

    def __len__(self) -> int:
        return len(self._c["kind"])

    # ---- rows -------------------------------------------------------------------------

    _CHUNK = 100_000

    def iter_ratings(self) -> Iterator[dict[str, Any]]:
        """Yield the ratings as intake dicts, in ``submitted_at`` order."""
        for lo in range(0, len(self), self._CHUNK):
            t = self._text(lo, min(len(self), lo + self._CHUNK))
            for i in range(len(t["ticket"])):
                r: dict[str, Any] = {"ticket_id": t["ticket"][i], "window_id": t["window"][i]}
                if t["staff"][i] is not None:
                    r["staff_id"] = t["staff"][i]
                r["service_type"] = t["stype"][i]
                r["channel"] = t["channel"][i]
                if t["served"][i] is not None:
                    r["served_at"] = t["served"][i]
                r["submitted_at"] = t["submitted"][i]
                r["scores"] = dict(zip(DIMENSIONS, t["scores"][i], strict=True))
                if t["comment"][i] is not None:
                    r["comment"] = t["comment"][i]
                r["ip"] = t["ip"][i]
                r["device_id"] = t["device"][i]
                yield r

    def iter_jsonl(self) -> Iterator[str]:
        """Yield each rating as one compact JSON line (no newline), in ``submitted_at`` order.

        Same objects as :meth:`iter_ratings`, written without building dicts (fast)."""
        enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        names = [json.dumps(d) for d in DIMENSIONS]
        score_fmt = "{" + ",".join(f"{nm}:%d" for nm in names) + "}"
        for lo in range(0, len(self), self._CHUNK):
            t = self._text(lo, min(len(self), lo + self._CHUNK))
            for i in range(len(t["ticket"])):
                parts = ['{"ticket_id":', enc(t["ticket"][i]), ',"window_id":', enc(t["window"][i])]
                if t["staff"][i] is not None:
                    parts += [',"staff_id":', enc(t["staff"][i])]
                parts += [',"service_type":"', t["stype"][i], '","channel":"', t["channel"][i], '"']
                if t["served"][i] is not None:
                    parts += [',"served_at":"', t["served"][i], '"']
                parts += [
                    ',"submitted_at":"',
                    t["submitted"][i],
                    '","scores":',
                    score_fmt % tuple(t["scores"][i]),
                ]
                if t["comment"][i] is not None:
                    parts += [',"comment":', enc(t["comment"][i])]
                parts += [',"ip":"', t["ip"][i], '","device_id":"', t["device"][i], '"}']
                yield "".join(parts)

    def _text(self, lo: int, hi: int) -> dict[str, list[Any]]:
        """Rows ``lo:hi`` as lists of output text (None where a field is left out)."""
        c = self._c
        sl = slice(lo, hi)
        served = _format_times(c["served"][sl], self._tz)
        shown = c["served_ok"][sl].tolist()
        staff_names = [*self.staff_ids, None]
        staff = np.where(c["staff_shown"][sl] & (c["staff"][sl] >= 0), c["staff"][sl], -1).tolist()
        return {
            "ticket": c["ticket"][sl].tolist(),
            "window": [self.window_ids[w] for w in c["window"][sl].tolist()],
            "staff": [staff_names[s] for s in staff],
            "stype": [_STYPES[x] for x in c["stype"][sl].tolist()],
            "channel": [CHANNELS[x] for x in c["channel"][sl].tolist()],
            "served": [t if ok else None for t, ok in zip(served, shown, strict=True)],
            "submitted": _format_times(c["submitted"][sl], self._tz),
            "scores": c["scores"][sl].tolist(),
            "comment": c["comment"][sl].tolist(),
            "ip": _format_ips(c["ipk"][sl], c["ip4"][sl], c["ip6h"][sl], c["ip6l"][sl]),
            "device": _format_ids(c["devh"][sl], c["devl"][sl]),
        }

    @cached_property
    def ratings(self) -> list[dict[str, Any]]:
        """Every rating as an intake dict, sorted by ``submitted_at``."""
        with _gc_paused():
            return list(self.iter_ratings())

    @cached_property
    def truth(self) -> list[Label]:
        """One :class:`Label` per rating, aligned with :attr:`ratings`."""
        labels: dict[tuple[int, int], Label] = {}
        out: list[Label] = []
        with _gc_paused():
            self._labels(labels, out)
        return out

    def _labels(self, labels: dict[tuple[int, int], Label], out: list[Label]) -> None:
        for k, a in zip(self._c["kind"].tolist(), self._c["attack"].tolist(), strict=True):
            lab = labels.get((k, a))
            if lab is None:
                if a >= 0:
                    att = self.attacks[a]
                    lab = Label(KINDS[k], att.attack_id, att.target_window, att.target_staff)
                else:
                    lab = Label(KINDS[k])
                labels[(k, a)] = lab
            out.append(lab)

    # ---- summaries --------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Number of ratings of each kind (every kind listed, zeros included)."""
        bc = np.bincount(self._c["kind"], minlength=len(KINDS))
        return {k: int(bc[i]) for i, k in enumerate(KINDS)}

    def composites(self) -> np.ndarray:
        """Weighted composite of every rating (score points, default rubric), in order."""
        return _composite(self._c["scores"])

    def _honest_means(self, keys: np.ndarray, names: list[str]) -> dict[str, float]:
        honest = (self._c["kind"] == _KIND["honest"]) & (keys >= 0)
        comp = self.composites()[honest]
        k = keys[honest]
        sums = np.bincount(k, weights=comp, minlength=len(names))
        ns = np.bincount(k, minlength=len(names))
        return {names[i]: float(sums[i] / ns[i]) for i in range(len(names)) if ns[i] > 0}

    def honest_window_scores(self) -> dict[str, float]:
        """Window id -> mean composite of its honest ratings (the undistorted truth)."""
        return self._honest_means(self._c["window"], self.window_ids)

    def honest_staff_scores(self) -> dict[str, float]:
        """Staff id -> mean composite of the honest ratings of tickets they served."""
        return self._honest_means(self._c["staff"], self.staff_ids)

    def honest_low_share(self) -> float:
        """Share of honest ratings whose composite is below 3.0 (ratio 0-1)."""
        honest = self._c["kind"] == _KIND["honest"]
        if not honest.any():
            return 0.0
        return float((self.composites()[honest] < DEFAULT_RUBRIC.low_score_below).mean())

    # ---- files ------------------------------------------------------------------------

    def to_jsonl(self, path: str | Path) -> None:
        """Write the ratings as JSON Lines (UTF-8, one compact object per line)."""
        with open(path, "w", encoding="utf-8", newline="\n") as fh, _gc_paused():
            batch: list[str] = []
            for line in self.iter_jsonl():
                batch.append(line)
                if len(batch) >= 10_000:
                    fh.write("\n".join(batch) + "\n")
                    batch.clear()
            if batch:
                fh.write("\n".join(batch) + "\n")

    def venues_json(self, path: str | Path) -> None:
        """Write the venue registry in the ``integrity venues load`` format."""
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            json.dump(self.venues, fh, indent=2)
            fh.write("\n")

    def truth_csv(self, path: str | Path) -> None:
        """Write ``line,ticket_id,kind,attack_id,target_window,target_staff`` (line: 1-based
        line number in ``ratings.jsonl``)."""
        tickets = self._c["ticket"].tolist()
        with open(path, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["line", "ticket_id", "kind", "attack_id", "target_window", "target_staff"])
            for i, lab in enumerate(self.truth):
                w.writerow(
                    [
                        i + 1,
                        tickets[i],
                        lab.kind,
                        lab.attack_id or "",
                        lab.target_window or "",
                        lab.target_staff or "",
                    ]
                )


def simulate(config: WorldConfig) -> World:
    """Simulate ``config``'s world: honest month, attacks, identical retries, venues."""
    ctx = _Ctx(config)
    ctx.serve_tickets()
    others, cands = _plan_targets(ctx)
    batches: list[_Batch] = []
    coerced, _ = _coerced(ctx, cands)
    honest = _honest(ctx)
    batches.append(honest)
    batches += coerced
    batches += _self_rating(ctx, others)
    batches += _brushing_slow(ctx, others)
    batches += _device_farm(ctx, others)
    batches += _replay(ctx, honest, others)
    batches += _flood(ctx, others)
    batches += _bombing(ctx, others)
    cols = _concat(batches)
    ok = cols["submitted"] >= ctx.start_ts
    cols = _take(cols, np.flatnonzero(ok))
    n = len(cols["kind"])
    tiebreak = np.arange(n, dtype=np.int64) * 2
    retry = _identical_retries(config, cols)
    if len(retry):
        dup = _take(cols, retry)
        dup["kind"][:] = _KIND["identical_retry"]
        dup["attack"][:] = -1
        cols = _concat([cols, dup])
        tiebreak = np.concatenate([tiebreak, retry * 2 + 1])
    order = np.lexsort((tiebreak, cols["submitted"]))
    cols = _take(cols, order)
    # Campaigns that produced nothing (no open day, no ticket left) are dropped.
    n_att = len(ctx.attacks)
    per_attack = np.bincount(cols["attack"][cols["attack"] >= 0], minlength=n_att)
    kept = [i for i in range(n_att) if per_attack[i] > 0]
    remap = np.full(n_att + 1, -1, dtype=np.int32)
    remap[kept] = np.arange(len(kept), dtype=np.int32)
    cols["attack"] = remap[cols["attack"]]  # -1 maps to the last slot, which is -1
    attacks = [replace(ctx.attacks[i], ratings=int(per_attack[i])) for i in kept]
    return World(
        config,
        cols,
        window_ids=ctx.window_ids,
        staff_ids=ctx.staff_ids,
        staff_window={
            s: ctx.window_ids[int(ctx.staff_win[i])] for i, s in enumerate(ctx.staff_ids)
        },
        window_quality={w: float(ctx.win_q[i]) for i, w in enumerate(ctx.window_ids)},
        attacks=attacks,
        venues=_venues(ctx),
        coerced_windows={
            a.target_window for a in attacks if a.kind == "coerced" and a.target_window
        },
        tz=ctx.tz,
    )


def _venues(ctx: _Ctx) -> dict[str, Any]:
    venues = []
    for h, hid in enumerate(ctx.hall_ids):
        nets = [
            f"{ipaddress.IPv4Address(int(a))}/32" for a in (ctx.hall_wired[h], *ctx.hall_wifi[h])
        ]
        nets.append(str(ipaddress.IPv6Network((int(ctx.hall_v6[h]) << 64, 64))))
        kiosks = [
            {
                "window_id": ctx.window_ids[w],
                "device_id": f"{int(ctx.kiosk_h[w]):016x}{int(ctx.kiosk_l[w]):016x}",
            }
            for w in np.flatnonzero(ctx.win_hall == h).tolist()
        ]
        venues.append({"venue_id": hid, "networks": nets, "kiosk_devices": kiosks})
    if ctx.cfg.register_gateways:
        gws = [*_SMS_GATEWAYS.tolist(), _PHONE_GATEWAY]
        nets = [f"{ipaddress.IPv4Address(int(a))}/32" for a in gws]
        venues.append({"venue_id": "GATEWAY", "networks": nets, "kiosk_devices": []})
    return {"venues": venues}
