"""A deterministic simulator of a month of citizen ratings, with ground truth.

``simulate(WorldConfig(seed=7))`` builds a few service halls (windows, staff on
shifts, one kiosk rating pad per window), serves a month of tickets through
queues with realistic opening hours and seasonality, has citizens rate a share of
them through every channel of CONTRACT §1, and then runs attack campaigns on top:

=================  ==============================================================
``flood``          one ordinary address pushes hundreds of ratings in minutes
``device_farm``    dozens of devices behind a few addresses (or one /64) brush a
                   window with 5s, in sessions over several days
``replay``         existing tickets re-submitted with different scores
                   (``replay_duplicate``); honest identical retries are labelled
                   ``identical_retry`` and are not an attack
``brushing_slow``  a few devices rate one window's real tickets over weeks,
                   one or two a day each
``self_rating``    a staff member's own phone rates their unrated tickets
                   minutes after service
``coerced``        staff press citizens at a window: all-5 ratings seconds after
                   service, on the kiosk or the citizen's phone, on real tickets
``bombing``        a grudge: a household's devices give one staff member many 1s
                   over days, often with near-duplicate comments
=================  ==============================================================

Honest traffic deliberately contains crowds that look suspicious: hall Wi-Fi
NAT addresses, kiosks rating dozens of tickets a day, carrier-grade NAT pools,
SMS and hotline gateways (one address for everyone), office networks, agents who
come back to the same window several times a week, multi-ticket visits, IPv6
privacy addresses, IPv4-mapped IPv6, genuinely worse staff and honest low scores.

Every address is in a documentation range (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32). Everything is drawn from numpy Generators seeded
from ``WorldConfig.seed`` and a fixed stream name, so the same configuration gives
byte-identical files, and switching one attack off leaves the honest traffic and
the other attacks unchanged (except that ``coerced`` replaces honest ratings at
its windows). Times are integer seconds since the Unix epoch internally and
RFC 3339 strings in the configured time zone on output.

Run ``python -m integrity.simulation --seed 7 --out DIR`` to write
``ratings.jsonl``, ``venues.json`` and ``truth.csv``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import ipaddress
import json
import math
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from integrity.model import CHANNELS, DEFAULT_RUBRIC

__all__ = [
    "ATTACK_KINDS",
    "DIMENSIONS",
    "KINDS",
    "SERVICE_TYPES",
    "Attack",
    "Label",
    "World",
    "WorldConfig",
    "main",
    "simulate",
]

DIMENSIONS: tuple[str, ...] = DEFAULT_RUBRIC.dimensions


def _composite(scores: np.ndarray) -> np.ndarray:
    """Weighted composite per row (score points), bit-for-bit as ``Rubric.composite`` does it,
    so thresholds such as "below 3.0" agree with the engine."""
    weights = DEFAULT_RUBRIC.weights
    acc = np.zeros(len(scores), dtype=np.float64)
    for j, d in enumerate(DIMENSIONS):
        acc = acc + weights[d] * scores[:, j].astype(np.float64)
    return acc / sum(weights.values())


KINDS: tuple[str, ...] = (
    "honest",
    "flood",
    "device_farm",
    "replay_duplicate",
    "identical_retry",
    "brushing_slow",
    "self_rating",
    "coerced",
    "bombing",
)
"""Every label kind; ``honest`` and ``identical_retry`` are not attacks."""

ATTACK_KINDS: tuple[str, ...] = (
    "flood",
    "device_farm",
    "replay",
    "brushing_slow",
    "self_rating",
    "coerced",
    "bombing",
)
"""The attack switches of :class:`WorldConfig` (``replay`` yields ``replay_duplicate``)."""

# name -> (mean service duration in seconds, effect on satisfaction in score points)
SERVICE_TYPES: dict[str, tuple[float, float]] = {
    "social_security": (200.0, 0.0),
    "tax": (280.0, -0.08),
    "household_registration": (300.0, 0.0),
    "business_license": (420.0, -0.15),
    "medical_insurance": (170.0, 0.05),
    "housing_fund": (220.0, 0.0),
    "real_estate_registration": (400.0, -0.12),
    "vehicle_management": (260.0, -0.05),
    "pension": (220.0, 0.05),
}
_STYPES = tuple(SERVICE_TYPES)
_STYPE_DUR = np.array([v[0] for v in SERVICE_TYPES.values()])
_STYPE_EFFECT = np.array([v[1] for v in SERVICE_TYPES.values()])

_CH = {name: i for i, name in enumerate(CHANNELS)}
_KIND = {name: i for i, name in enumerate(KINDS)}

# Arrival profile, 30-minute bins from 09:00 local (relative weights).
_PROFILE_FULL = np.array(
    [0.8, 1.2, 1.4, 1.4, 1.2, 0.8, 0.5, 0.5, 0.7, 1.0, 1.2, 1.2, 1.1, 1.0, 0.8, 0.5]
)
_PROFILE_HALF = _PROFILE_FULL[:6]
_OPEN_S = 9 * 3600
# Relative demand by weekday (Mon..Sun); Saturday is a half day.
_WEEKDAY_DEMAND = (1.2, 1.0, 1.0, 0.95, 1.1, 0.55, 0.4)

# Documentation address space (RFC 5737 / RFC 3849).
_NET1 = 0xC0000200  # 192.0.2.0/24: halls' government network and intake gateways
_NET2 = 0xC6336400  # 198.51.100.0/24: carrier-grade NAT pools, home broadband
_NET3 = 0xCB007100  # 203.0.113.0/24: home broadband, offices, hosting (IDC)
_V6_BASE = 0x20010DB8 << 32
_CGNAT = np.array([[_NET2 + 1 + 10 * c + i for i in range(8)] for c in range(3)], dtype=np.int64)
_HOME4 = np.array(
    [_NET2 + i for i in range(128, 255)] + [_NET3 + i for i in range(1, 128)], dtype=np.int64
)
_OFFICE4 = np.array([_NET3 + i for i in range(128, 192)], dtype=np.int64)
_IDC4 = np.array([_NET3 + i for i in range(192, 255)], dtype=np.int64)
_SMS_GATEWAYS = np.array([_NET1 + 250, _NET1 + 251], dtype=np.int64)
_PHONE_GATEWAY = _NET1 + 252
_MAX_HALLS = 80  # three addresses each in 192.0.2.0/24, below the gateways

_IPK_V4, _IPK_V6, _IPK_MAPPED = 0, 1, 2

_POSITIVE = (
    "服务态度很好，办事效率高",
    "工作人员很耐心，解释得很清楚",
    "一次就办好了，点赞",
    "环境整洁，指引清楚",
    "速度很快，不用跑第二趟",
    "窗口人员主动帮忙填表，谢谢",
    "很满意",
    "好",
)
_NEUTRAL = (
    "还可以",
    "希望多开几个窗口",
    "叫号系统有点乱",
    "停车不方便",
    "材料清单能再简化一些就好了",
)
_NEGATIVE = (
    "排队时间太长了，等了一个多小时",
    "工作人员态度冷淡，问什么都不耐烦",
    "材料要求没说清楚，白跑了两趟",
    "系统老是出故障，办不了",
    "窗口人员中途离开太久",
    "一件事让我去三个窗口",
    "不满意",
)
_BOMB_TEMPLATES = (
    "{s}号工作人员态度恶劣，故意刁难，强烈要求处理",
    "投诉{s}号，服务态度极差，拖延办理",
    "{s}号窗口人员推诿扯皮，差评",
)
_BOOST_COMMENTS = ("很好", "非常满意", "服务很好", "好评", "满意")


# --------------------------------------------------------------------------------------
# Configuration and results
# --------------------------------------------------------------------------------------


def _default_start() -> datetime:
    return datetime(2026, 10, 1, tzinfo=ZoneInfo("Asia/Shanghai"))


@dataclass(frozen=True)
class WorldConfig:
    """What to simulate. Same config, byte-identical output.

    Volumes: ``honest_ratings`` is the expected number of honest ratings over the
    whole period (the honest traffic, before identical retries); tickets served
    are about ``honest_ratings / participation``. Attack switches are intensities:
    0 turns the attack off, 1 is the default, larger values add campaigns (and
    scale the last one's size); campaign counts also scale with ``halls / 3``.
    """

    seed: int = 0
    start: datetime = field(default_factory=_default_start)
    """First local day of the period (aware); the period is ``days`` local days from it."""
    days: int = 30
    halls: int = 3
    windows_per_hall: int = 6
    honest_ratings: int = 25_000
    participation: float = 0.85
    """Share of tickets an honest citizen rates (ratio 0-1)."""
    open_weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    """Weekdays the halls open (Monday = 0); Saturday is a half day (09:00-12:00)."""
    closed_dates: tuple[date, ...] = ()
    """Local dates the halls are closed (public holidays)."""
    two_staff_share: float = 0.4
    """Share of windows staffed by two people on shifts (ratio 0-1)."""
    register_gateways: bool = True
    """List the SMS / hotline intake gateways as a venue (``GATEWAY``) in ``venues``."""
    flood: float = 1.0
    device_farm: float = 1.0
    replay: float = 1.0
    brushing_slow: float = 1.0
    self_rating: float = 1.0
    coerced: float = 1.0
    bombing: float = 1.0
    identical_retries: float = 1.0
    """Multiplier on the honest identical-retry rate (about 0.6 % of phone ratings)."""

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("WorldConfig.start must be timezone-aware")
        if self.days < 1:
            raise ValueError("WorldConfig.days must be at least 1")
        if not 1 <= self.halls <= _MAX_HALLS:
            raise ValueError(f"WorldConfig.halls must be 1..{_MAX_HALLS} (documentation ranges)")
        if not 1 <= self.windows_per_hall <= 999:
            raise ValueError("WorldConfig.windows_per_hall must be 1..999")
        if self.honest_ratings < 0:
            raise ValueError("WorldConfig.honest_ratings must be >= 0")
        if not 0.0 < self.participation <= 1.0:
            raise ValueError("WorldConfig.participation must be in (0, 1]")
        for name in (*ATTACK_KINDS, "identical_retries"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"WorldConfig.{name} must be a finite number >= 0")

    @classmethod
    def benchmark(cls, seed: int = 0, ratings: int = 1_000_000, **overrides: Any) -> WorldConfig:
        """A world of about ``ratings`` ratings in total, for the detection benchmark.

        Keeps each window's load realistic (about 40-60 tickets a day) by adding halls
        (up to 80) and windows rather than piling tickets on the default 18 windows.
        """
        honest = round(ratings * 0.97)  # attacks and identical retries add about 3 %
        halls = max(1, min(_MAX_HALLS, round(ratings / 25_000)))
        windows = max(6, min(999, round(honest / halls / 1100)))
        base: dict[str, Any] = {
            "seed": seed,
            "halls": halls,
            "windows_per_hall": windows,
            "honest_ratings": honest,
        }
        base.update(overrides)
        return cls(**base)


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth for one rating: what it is and, for an attack, what it targets."""

    kind: str
    attack_id: str | None = None
    target_window: str | None = None
    target_staff: str | None = None

    @property
    def is_attack(self) -> bool:
        return self.kind not in ("honest", "identical_retry")


@dataclass(frozen=True, slots=True)
class Attack:
    """One attack campaign: its id, kind, target and a sentence saying what it did."""

    attack_id: str
    kind: str
    target_window: str | None
    target_staff: str | None
    description: str
    ratings: int


# Columns of a batch of ratings (internal, columnar so a million rows stays fast).
_COLS: dict[str, Any] = {
    "ticket": object,  # str
    "window": np.int32,
    "staff": np.int32,  # true staff index, -1 unknown
    "staff_shown": np.bool_,  # staff_id sent
    "stype": np.int16,
    "channel": np.int8,
    "served": np.int64,  # epoch seconds
    "served_ok": np.bool_,  # served_at sent
    "submitted": np.int64,  # epoch seconds
    "scores": np.int8,  # (n, 5)
    "comment": object,  # str | None
    "ipk": np.int8,  # _IPK_*
    "ip4": np.int64,
    "ip6h": np.uint64,
    "ip6l": np.uint64,
    "devh": np.uint64,
    "devl": np.uint64,
    "kind": np.int8,
    "attack": np.int32,  # index into World.attacks, -1 none
}
_Batch = dict[str, np.ndarray]


def _empty(n: int) -> _Batch:
    b: _Batch = {}
    for name, dtype in _COLS.items():
        shape = (n, len(DIMENSIONS)) if name == "scores" else (n,)
        b[name] = np.zeros(shape, dtype=dtype)
    b["ticket"] = np.empty(n, dtype=object)
    b["comment"] = np.full(n, None, dtype=object)
    b["staff"][:] = -1
    b["served_ok"][:] = True
    b["attack"][:] = -1
    return b


def _concat(batches: list[_Batch]) -> _Batch:
    return {k: np.concatenate([b[k] for b in batches]) for k in _COLS}


def _take(b: _Batch, idx: np.ndarray) -> _Batch:
    return {k: v[idx] for k, v in b.items()}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of acyclic objects."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class World:
    """A simulated month: ratings (CONTRACT §1 dicts), aligned truth, venues.

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
        """Yield the ratings as CONTRACT §1 dicts, in ``submitted_at`` order."""
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
        """Every rating as a CONTRACT §1 dict, sorted by ``submitted_at``."""
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


# --------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------


def _ascii_rows(chars: np.ndarray) -> list[str]:
    """An (n, width) array of ASCII codes -> n strings."""
    n, width = chars.shape
    if n == 0:
        return []
    return (
        np.ascontiguousarray(chars, dtype=np.uint8)
        .view(f"S{width}")
        .ravel()
        .astype(f"U{width}")
        .tolist()
    )


def _digits(out: np.ndarray, col: int, value: np.ndarray, width: int) -> None:
    for j in range(width):
        out[:, col + width - 1 - j] = 48 + (value // 10**j) % 10


def _utcoffset(epoch: int, tz: tzinfo) -> int:
    delta = datetime.fromtimestamp(epoch, tz).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _format_times(t: np.ndarray, tz: tzinfo) -> list[str]:
    """Epoch seconds -> RFC 3339 strings in ``tz`` (offset looked up per 15 minutes)."""
    if len(t) == 0:
        return []
    buckets, inv = np.unique(t // 900, return_inverse=True)
    first = np.array([_utcoffset(b * 900, tz) for b in buckets.tolist()], dtype=np.int64)
    last = np.array([_utcoffset(b * 900 + 899, tz) for b in buckets.tolist()], dtype=np.int64)
    off = first[inv]
    for i in np.flatnonzero((first != last)[inv]).tolist():  # a transition inside the bucket
        off[i] = _utcoffset(int(t[i]), tz)
    local = (t + off).astype("datetime64[s]")
    days = local.astype("datetime64[D]")
    months = local.astype("datetime64[M]")
    year = local.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    sod = (local - days).astype(np.int64)
    out = np.empty((len(t), 25), dtype=np.int64)
    _digits(out, 0, year, 4)
    _digits(out, 5, month, 2)
    _digits(out, 8, day, 2)
    _digits(out, 11, sod // 3600, 2)
    _digits(out, 14, sod // 60 % 60, 2)
    _digits(out, 17, sod % 60, 2)
    out[:, [4, 7]] = ord("-")
    out[:, 10] = ord("T")
    out[:, [13, 16, 22]] = ord(":")
    out[:, 19] = np.where(off < 0, ord("-"), ord("+"))
    m = np.abs(off) // 60
    _digits(out, 20, m // 60, 2)
    _digits(out, 23, m % 60, 2)
    return _ascii_rows(out)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX4 = [f"{i:x}" for i in range(65536)]


def _format_ids(hi: np.ndarray, lo: np.ndarray) -> list[str]:
    """Two uint64 columns -> 32-character lowercase hex ids."""
    out = np.empty((len(hi), 32), dtype=np.uint8)
    for half, x in enumerate((hi, lo)):
        for j in range(16):
            out[:, 16 * half + j] = _HEX[((x >> _U64(60 - 4 * j)) & _U64(15)).astype(np.int64)]
    return _ascii_rows(out)


def _format_ips(ipk: np.ndarray, ip4: np.ndarray, ip6h: np.ndarray, ip6l: np.ndarray) -> list[str]:
    """Address text: dotted IPv4, ``::ffff:`` + dotted for mapped, RFC 5952 IPv6."""
    n = len(ipk)
    out: list[str] = [""] * n
    v6 = np.flatnonzero(ipk == _IPK_V6)
    if len(v6):
        hext = np.empty((len(v6), 8), dtype=np.int64)
        for j in range(4):
            shift = _U64(48 - 16 * j)
            hext[:, j] = ((ip6h[v6] >> shift) & _U64(0xFFFF)).astype(np.int64)
            hext[:, 4 + j] = ((ip6l[v6] >> shift) & _U64(0xFFFF)).astype(np.int64)
        h = _HEX4
        text = [
            f"{h[a]}:{h[b]}:{h[c]}:{h[d]}:{h[e]}:{h[f]}:{h[g]}:{h[k]}"
            for a, b, c, d, e, f, g, k in zip(*(hext[:, j].tolist() for j in range(8)), strict=True)
        ]
        # Two adjacent zero groups need "::" compression: leave those to ipaddress.
        for k in np.flatnonzero(((hext[:, :-1] == 0) & (hext[:, 1:] == 0)).any(axis=1)).tolist():
            text[k] = str(ipaddress.IPv6Address((int(ip6h[v6[k]]) << 64) | int(ip6l[v6[k]])))
        for i, x in zip(v6.tolist(), text, strict=True):
            out[i] = x
    v4 = np.flatnonzero(ipk != _IPK_V6)
    if len(v4):
        key = ip4[v4] + np.where(ipk[v4] == _IPK_MAPPED, 1 << 32, 0)
        uniq, inv = np.unique(key, return_inverse=True)
        names = [
            ("::ffff:" if u >> 32 else "") + str(ipaddress.IPv4Address(u & 0xFFFFFFFF))
            for u in uniq.tolist()
        ]
        for i, j in zip(v4.tolist(), inv.tolist(), strict=True):
            out[i] = names[j]
    return out


# --------------------------------------------------------------------------------------
# Randomness helpers
# --------------------------------------------------------------------------------------

_U64 = np.uint64


def _stream(seed: int, name: str) -> np.random.Generator:
    """An independent Generator for one named part of the world."""
    return np.random.default_rng(
        np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32, zlib.crc32(name.encode())])
    )


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed, well-spread hash of uint64 values."""
    with np.errstate(over="ignore"):  # wrapping arithmetic is the point
        x = np.asarray(x, dtype=_U64) + _U64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


def _u64(rng: np.random.Generator, n: int | tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)


def _campaigns(intensity: float, base: float, halls: int) -> tuple[int, float]:
    """Number of campaigns and a size factor (total volume ~ intensity * base * halls / 3)."""
    if intensity <= 0:
        return 0, 0.0
    x = intensity * base * halls / 3
    n = max(1, math.floor(x + 0.5))
    return n, x / n


# --------------------------------------------------------------------------------------
# The world's fixed parts and the honest month
# --------------------------------------------------------------------------------------


class _Ctx:
    """Everything the generators share: halls, windows, staff, days, tickets."""

    def __init__(self, cfg: WorldConfig) -> None:
        self.cfg = cfg
        self.tz: tzinfo = cfg.start.tzinfo  # type: ignore[assignment]
        self.s4 = min(1.0, 30_000 / max(cfg.honest_ratings, 1))  # IPv4 share scale, see _ip_*
        keys = _u64(_stream(cfg.seed, "keys"), 16)
        self.keys = [_U64(k) for k in keys]
        self._days()
        self._layout()
        self.fab_next: dict[tuple[int, int], int] = {}
        self.attacks: list[Attack] = []

    # ---- calendar ---------------------------------------------------------------------

    def _days(self) -> None:
        cfg = self.cfg
        first = cfg.start.astimezone(self.tz).date()
        extra = 45  # late ratings spill past the period
        self.n_days = cfg.days
        starts, types, stamps, demand = [], [], [], []
        closed = set(cfg.closed_dates)
        for d in range(cfg.days + extra):
            day = first + timedelta(days=d)
            starts.append(int(datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp()))
            wd = day.weekday()
            open_ = d < cfg.days and wd in cfg.open_weekdays and day not in closed
            types.append(0 if not open_ else (2 if wd == 5 else 1))
            stamps.append(day.strftime("%Y%m%d"))
            demand.append(_WEEKDAY_DEMAND[wd] if open_ else 0.0)
        self.day_start = np.array(starts, dtype=np.int64)
        self.day_type = np.array(types, dtype=np.int8)
        self.day_stamp = stamps
        self.day_demand = np.array(demand[: cfg.days])
        self.start_ts = int(cfg.start.timestamp())
        self.end_ts = int(self.day_start[cfg.days])
        self.open_days = np.flatnonzero(self.day_type[: cfg.days] > 0)

    def day_of(self, t: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.day_start, t, side="right") - 1

    def local_hour(self, t: np.ndarray) -> np.ndarray:
        d = np.clip(self.day_of(t), 0, len(self.day_start) - 1)
        return (t - self.day_start[d]) / 3600.0

    # ---- halls, windows, staff --------------------------------------------------------

    def _layout(self) -> None:
        cfg = self.cfg
        rng = _stream(cfg.seed, "layout")
        H, WP = cfg.halls, cfg.windows_per_hall
        self.hall_ids = [f"H{h + 1}" for h in range(H)]
        self.hall_wired = np.array([_NET1 + 1 + 3 * h for h in range(H)], dtype=np.int64)
        self.hall_wifi = np.array(
            [[_NET1 + 2 + 3 * h, _NET1 + 3 + 3 * h] for h in range(H)], dtype=np.int64
        )
        self.hall_v6 = np.array(
            [_V6_BASE | (0x00A0 << 16) | (h + 1) for h in range(H)], dtype=np.uint64
        )
        self.hall_kiosk_share = np.clip(rng.normal(0.42, 0.08, H), 0.2, 0.65)
        self.hall_participation = np.clip(rng.normal(cfg.participation, 0.03, H), 0.05, 1.0)
        W = H * WP
        self.W = W
        self.win_hall = np.repeat(np.arange(H), WP)
        self.window_ids = [f"H{h + 1}-W{i + 1:02d}" for h in range(H) for i in range(WP)]
        self.win_pop = np.clip(rng.lognormal(0.0, 0.25, W), 0.6, 1.6)
        self.win_q = np.clip(rng.normal(4.3, 0.16, W), 3.6, 4.8)
        n_types = len(_STYPES)
        self.win_type1 = np.array([(i + 2 * h) % n_types for h in range(H) for i in range(WP)])
        self.win_type2 = rng.integers(0, n_types, W)
        self.win_type2_p = np.where(rng.random(W) < 0.4, 0.3, 0.0)
        self.kiosk_h, self.kiosk_l = _u64(rng, W), _u64(rng, W)
        # Staff: one or two per window; two share by split shift, alternate days or week split.
        two = rng.random(W) < cfg.two_staff_share
        self.win_pattern = np.where(two, rng.integers(1, 4, W), 0)
        staff_ids: list[str] = []
        win_staff = np.full((W, 2), -1, dtype=np.int64)
        staff_win: list[int] = []
        per_hall = [0] * H
        for w in range(W):
            h = int(self.win_hall[w])
            for j in range(2 if two[w] else 1):
                per_hall[h] += 1
                win_staff[w, j] = len(staff_ids)
                staff_ids.append(f"H{h + 1}-S{per_hall[h]:02d}")
                staff_win.append(w)
        self.staff_ids = staff_ids
        self.win_staff = win_staff
        self.staff_win = np.array(staff_win, dtype=np.int64)
        S = len(staff_ids)
        self.staff_off = rng.normal(0.0, 0.14, S)
        bad = rng.random(S) < 0.1
        if S >= 5 and not bad.any():
            bad[rng.integers(0, S)] = True
        self.staff_off[bad] -= rng.uniform(0.5, 0.9, int(bad.sum()))
        self.staff_bad = bad
        self.staff_speed = rng.lognormal(0.0, 0.15, S) * np.where(bad, 1.2, 1.0)
        self.staff_h, self.staff_l = _u64(rng, S), _u64(rng, S)  # staff's own phones
        self.staff_carrier = rng.integers(0, 3, S)

    def staff_at(self, win: np.ndarray, day: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """Which staff member serves at ``win`` on ``day`` at local ``hour``."""
        pat = self.win_pattern[win]
        dow = self._weekday[day]
        # 1: split shift at 12:30; 2: alternate days; 3: the second works Friday and Saturday.
        second = np.select(
            [pat == 1, pat == 2, pat == 3], [hour >= 12.5, day % 2 == 1, dow >= 4], default=False
        )
        return self.win_staff[win, second.astype(np.int64)]

    @cached_property
    def _weekday(self) -> np.ndarray:
        first = self.cfg.start.astimezone(self.tz).date()
        return np.array([(first + timedelta(days=d)).weekday() for d in range(len(self.day_start))])

    def ticket_ids(self, win: np.ndarray, day: np.ndarray, seq: np.ndarray) -> np.ndarray:
        out = np.empty(len(win), dtype=object)
        out[:] = [
            f"{self.window_ids[w]}-{self.day_stamp[d]}-{s:04d}"
            for w, d, s in zip(win.tolist(), day.tolist(), seq.tolist(), strict=True)
        ]
        return out

    def fabricated_ids(self, win: int, day: np.ndarray) -> np.ndarray:
        """Ticket ids in the real format that no ticket has (numbers past the day's last)."""
        seqs = []
        for d in day.tolist():
            key = (win, d)
            nxt = self.fab_next.get(key)
            if nxt is None:
                nxt = int(self.group_count[win, d]) + 1 if d < self.n_days else 1
            seqs.append(nxt)
            self.fab_next[key] = nxt + 1
        return self.ticket_ids(np.full(len(day), win), day, np.array(seqs, dtype=np.int64))

    # ---- tickets ----------------------------------------------------------------------

    def serve_tickets(self) -> None:
        """Serve a month of tickets through per-window FIFO queues (vectorised Lindley)."""
        cfg = self.cfg
        rng = _stream(cfg.seed, "tickets")
        W, D = self.W, cfg.days
        part = self.hall_participation[self.win_hall]
        # Halls size windows to their work: demand follows capacity (1 / service time).
        staff_speed = np.where(self.win_staff >= 0, self.staff_speed[self.win_staff], np.nan)
        mean_dur = 30 + (
            _STYPE_DUR[self.win_type1] * (1 - self.win_type2_p)
            + _STYPE_DUR[self.win_type2] * self.win_type2_p
        ) * np.nanmean(staff_speed, axis=1)
        weight = (self.win_pop / mean_dur)[:, None] * self.day_demand[None, :]
        base = cfg.honest_ratings / max(float((weight * part[:, None]).sum()), 1e-9)
        lam = base * weight
        counts = rng.poisson(lam)  # (W, D)
        n = int(counts.sum())
        flat = counts.reshape(-1)
        gid = np.repeat(np.arange(W * D), flat)
        win = gid // D
        day = gid % D
        # Arrival times from the day's 30-minute profile.
        half = self.day_type[day] == 2
        u = rng.random(n)
        bin_ = np.empty(n, dtype=np.int64)
        for prof, mask in ((_PROFILE_FULL, ~half), (_PROFILE_HALF, half)):
            cdf = np.cumsum(prof) / prof.sum()
            bin_[mask] = np.minimum(np.searchsorted(cdf, u[mask], side="right"), len(prof) - 1)
        arrival = (
            self.day_start[day] + _OPEN_S + bin_ * 1800 + (rng.random(n) * 1800).astype(np.int64)
        )
        order = np.lexsort((arrival, gid))
        win, day, gid, arrival = win[order], day[order], gid[order], arrival[order]
        hour = (arrival - self.day_start[day]) / 3600.0
        staff = self.staff_at(win, day, hour)
        stype = np.where(
            rng.random(n) < self.win_type2_p[win], self.win_type2[win], self.win_type1[win]
        )
        mean = _STYPE_DUR[stype] * self.staff_speed[staff]
        dur = (30 + rng.gamma(2.5, mean / 2.5)).astype(np.int64)
        # Lindley: start_i = max(arrival_i, start_{i-1} + dur_{i-1}) within a window-day.
        gstart = np.concatenate(([0], np.cumsum(flat)))[:-1]
        csum = np.cumsum(dur)
        excl = csum - dur - (csum - dur)[gstart[gid]]
        rel = arrival - self.start_ts
        big = np.int64((D + 10) * 86400 * 4)
        key = rel - excl + gid.astype(np.int64) * big
        start = np.maximum.accumulate(key) - gid.astype(np.int64) * big + excl + self.start_ts
        # Numbers stop being called 45 minutes after closing: the rest come back another day.
        close = np.where(half, 12 * 3600, 17 * 3600)[order] + 45 * 60
        keep = start <= self.day_start[day] + close
        win, day, gid, arrival, staff, stype = (
            win[keep],
            day[keep],
            gid[keep],
            arrival[keep],
            staff[keep],
            stype[keep],
        )
        start, dur = start[keep], dur[keep]
        n = int(keep.sum())
        flat = np.bincount(gid, minlength=W * D)
        counts = flat.reshape(W, D)
        self.group_count = counts
        gstart = np.concatenate(([0], np.cumsum(flat)))[:-1]
        served = start + dur
        seq = np.arange(n) - gstart[gid] + 1
        self.t_win, self.t_day, self.t_seq = win, day, seq
        self.t_arrival, self.t_served, self.t_staff, self.t_stype = arrival, served, staff, stype
        self.t_wait = start - arrival
        self.t_gid = gid
        self.g_start = gstart
        self.T = n
        self.rated = np.zeros(n, dtype=bool)
        self.claimed = np.zeros(n, dtype=bool)
        self.coerced = np.zeros(n, dtype=bool)
        self._citizens(rng)

    def _citizens(self, rng: np.random.Generator) -> None:
        """Who each ticket's citizen is: one-off visitors, agents, returning residents."""
        n, W, D = self.T, self.W, self.cfg.days
        cit = np.arange(n, dtype=np.int64)
        nxt = n
        # Agents (tax / licence agents, company clerks): a home window, visits several
        # days a week, one to four consecutive tickets per visit.
        per_win = self.group_count.sum(axis=1)
        n_agents = np.maximum(0, np.rint(per_win * 0.03 / 12)).astype(np.int64)
        ag_win = np.repeat(np.arange(W), n_agents)
        if len(ag_win):
            visit = rng.random((len(ag_win), D)) < rng.uniform(0.25, 0.6, len(ag_win))[:, None]
            a_idx, v_day = np.nonzero(visit)
            g = ag_win[a_idx] * D + v_day
            cnt = self.group_count.reshape(-1)[g]
            ok = cnt > 0
            a_idx, g, cnt = a_idx[ok], g[ok], cnt[ok]
            k = np.minimum(1 + rng.binomial(3, 0.3, len(g)), cnt)
            off = (rng.random(len(g)) * (cnt - k + 1)).astype(np.int64)
            first = self.g_start[g] + off
            rep = np.repeat(np.arange(len(g)), k)
            within = np.arange(len(rep)) - np.repeat(np.cumsum(k) - k, k)
            cit[first[rep] + within] = nxt + a_idx[rep]
            self.agent_tickets = first[rep] + within
        else:
            self.agent_tickets = np.zeros(0, dtype=np.int64)
        nxt += len(ag_win)
        # Returning residents: ~10 % of the rest come back to the same window another day.
        ret = (rng.random(n) < 0.10) & (cit >= 0) & (cit < n)
        ret[self.agent_tickets] = False
        pool = np.maximum(3, np.rint(np.bincount(self.t_win[ret], minlength=W) / 2.2)).astype(
            np.int64
        )
        pool_off = nxt + np.concatenate(([0], np.cumsum(pool)))[:-1]
        r = (rng.random(int(ret.sum())) * pool[self.t_win[ret]]).astype(np.int64)
        cit[ret] = pool_off[self.t_win[ret]] + r
        nxt += int(pool.sum())
        # Multi-ticket visits: the next ticket at the same window is the same person.
        same = np.zeros(n, dtype=bool)
        same[1:] = (self.t_gid[1:] == self.t_gid[:-1]) & (rng.random(max(n - 1, 0)) < 0.03)
        idx = np.flatnonzero(same)
        cit[idx] = cit[idx - 1]
        self.t_cit = cit

    # ---- citizens' devices and addresses ----------------------------------------------

    def app_device(self, cit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = cit.astype(_U64)
        return _mix(c ^ self.keys[0]), _mix(c ^ self.keys[1])

    def phone_device(self, cit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = cit.astype(_U64)
        return _mix(c ^ self.keys[2]), _mix(c ^ self.keys[3])

    def set_hall_wifi(
        self, b: _Batch, m: np.ndarray, hall: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Hall public Wi-Fi: one of two NAT addresses, or the hall's IPv6 /64 (35 %)."""
        idx = np.flatnonzero(m)
        v6 = rng.random(len(idx)) < 0.35
        b["ipk"][idx] = np.where(v6, _IPK_V6, _IPK_V4)
        b["ip4"][idx] = self.hall_wifi[hall[idx], (b["devh"][idx] % _U64(2)).astype(np.int64)]
        b["ip6h"][idx] = np.where(v6, self.hall_v6[hall[idx]], _U64(0))
        b["ip6l"][idx] = np.where(v6, _u64(rng, len(idx)), _U64(0))

    def set_mobile(
        self, b: _Batch, m: np.ndarray, carrier: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Mobile data: a carrier-grade NAT address (IPv4) or a fresh /64 per attach (IPv6)."""
        idx = np.flatnonzero(m)
        v4 = rng.random(len(idx)) < 0.45 * self.s4
        car = carrier[idx]
        b["ipk"][idx] = np.where(v4, _IPK_V4, _IPK_V6)
        b["ip4"][idx] = np.where(v4, _CGNAT[car, rng.integers(0, 8, len(idx))], 0)
        third = (0xC100 + car * 0x100 + rng.integers(0, 256, len(idx))).astype(_U64)
        hi = _U64(_V6_BASE) | (third << _U64(16)) | rng.integers(0, 65536, len(idx)).astype(_U64)
        b["ip6h"][idx] = np.where(v4, _U64(0), hi)
        b["ip6l"][idx] = np.where(v4, _U64(0), _u64(rng, len(idx)))

    def set_home(self, b: _Batch, m: np.ndarray, cit: np.ndarray, rng: np.random.Generator) -> None:
        """Home broadband: a household /64 that changes weekly (privacy addresses), or a
        dynamic IPv4 that changes every two days."""
        idx = np.flatnonzero(m)
        c = cit[idx].astype(_U64)
        t = b["submitted"][idx]
        v6_capable = (_mix(c ^ self.keys[4]) % _U64(1000)).astype(
            np.float64
        ) / 1000 >= 0.45 * self.s4
        v6 = v6_capable & (rng.random(len(idx)) < 0.85)
        week = ((t - self.start_ts) // (7 * 86400)).astype(_U64)
        hh = _mix(c ^ self.keys[5] ^ (week * _U64(0x1000193)))
        isp = _mix(c ^ self.keys[6]) % _U64(2)
        third = _U64(0xF100) + isp * _U64(0x100) + (hh & _U64(255))
        hi = _U64(_V6_BASE) | (third << _U64(16)) | ((hh >> _U64(8)) & _U64(0xFFFF))
        period = ((t - self.start_ts) // (2 * 86400)).astype(_U64)
        slot = (_mix(c ^ self.keys[7] ^ (period * _U64(0x9E37))) % _U64(len(_HOME4))).astype(
            np.int64
        )
        b["ipk"][idx] = np.where(v6, _IPK_V6, _IPK_V4)
        b["ip4"][idx] = np.where(v6, 0, _HOME4[slot])
        b["ip6h"][idx] = np.where(v6, hi, _U64(0))
        b["ip6l"][idx] = np.where(v6, _u64(rng, len(idx)), _U64(0))

    def carrier(self, cit: np.ndarray) -> np.ndarray:
        return (_mix(cit.astype(_U64) ^ self.keys[8]) % _U64(3)).astype(np.int64)

    def office(self, cit: np.ndarray) -> np.ndarray:
        """Office index (0..63) for clerks who rate from work, -1 for everyone else."""
        h = _mix(cit.astype(_U64) ^ self.keys[9])
        is_office = (h % _U64(100)) < _U64(6)
        return np.where(is_office, ((h >> _U64(8)) % _U64(len(_OFFICE4))).astype(np.int64), -1)


def _honest_scores(
    rng: np.random.Generator,
    latent: np.ndarray,
    wait_s: np.ndarray,
    att_extra: np.ndarray,
    kiosk: np.ndarray,
) -> np.ndarray:
    """Five correlated 1-5 scores around ``latent`` (score points); long waits cost efficiency."""
    n = len(latent)
    lat = latent + rng.standard_t(5, n) * 0.42
    incident = rng.random(n) < 0.04
    lat[incident] -= rng.uniform(1.2, 3.0, int(incident.sum()))
    dims = lat[:, None] + np.array([0.0, -0.1, 0.1, 0.1, 0.0]) + rng.normal(0.0, 0.5, (n, 5))
    dims[:, 0] += att_extra
    dims[:, 1] -= np.minimum(1.5, np.maximum(0.0, wait_s - 900) / 1800 * 0.3)
    dims[:, 4] = dims[:, :4].mean(axis=1) + rng.normal(0.0, 0.3, n)
    out = np.clip(np.rint(dims), 1, 5)
    straight = rng.random(n) < np.where(kiosk, 0.5, 0.35)
    out[straight] = np.clip(np.rint(lat[straight] + 0.35), 1, 5)[:, None]
    return out.astype(np.int8)


def _pick_comments(rng: np.random.Generator, comp: np.ndarray) -> np.ndarray:
    n = len(comp)
    out = np.full(n, None, dtype=object)
    low = comp < 3.0
    high = comp >= 4.5
    p = np.where(low, 0.35, np.where(high, 0.06, 0.04))
    has = rng.random(n) < p
    for mask, pool in (
        (has & low, _NEGATIVE),
        (has & high, _POSITIVE),
        (has & ~low & ~high, _NEUTRAL),
    ):
        k = int(mask.sum())
        out[mask] = [pool[i] for i in rng.integers(0, len(pool), k).tolist()]
    return out


def _honest(ctx: _Ctx) -> _Batch:
    """Honest ratings of rated tickets (coerced tickets excluded)."""
    cfg = ctx.cfg
    rng = _stream(cfg.seed, "honest")
    T = ctx.T
    hall_t = ctx.win_hall[ctx.t_win]
    rated = rng.random(T) < ctx.hall_participation[hall_t]
    # Channel: the hall's kiosk habit, then QR / app / SMS / web / hotline.
    ks = ctx.hall_kiosk_share[hall_t]
    rest = np.array([0.52, 0.28, 0.10, 0.05, 0.05])
    cum = np.column_stack([ks, ks[:, None] + (1 - ks)[:, None] * np.cumsum(rest)[None, :]])
    chan_all = (rng.random(T)[:, None] >= cum).sum(axis=1).clip(0, 5).astype(np.int8)
    ctx.rated = rated
    keep = rated & ~ctx.coerced
    idx = np.flatnonzero(keep)
    n = len(idx)
    b = _empty(n)
    b["window"][:] = ctx.t_win[idx]
    b["staff"][:] = ctx.t_staff[idx]
    b["stype"][:] = ctx.t_stype[idx]
    ch = chan_all[idx]
    b["channel"][:] = ch
    served = ctx.t_served[idx]
    b["served"][:] = served
    b["ticket"][:] = ctx.ticket_ids(ctx.t_win[idx], ctx.t_day[idx], ctx.t_seq[idx])
    # Delay from service to rating (seconds): seconds at the kiosk, heavy-tailed at home.
    delay = np.zeros(n)
    m = ch == _CH["kiosk"]
    delay[m] = 2 + rng.lognormal(np.log(8), 0.6, int(m.sum()))
    m = ch == _CH["qr"]
    k = int(m.sum())
    delay[m] = np.where(
        rng.random(k) < 0.75,
        rng.lognormal(np.log(120), 0.8, k),
        rng.lognormal(np.log(3 * 3600), 1.3, k),
    )
    m = ch == _CH["app"]
    k = int(m.sum())
    delay[m] = rng.lognormal(np.log(2 * 3600), 1.6, k) + np.where(
        rng.random(k) < 0.05, rng.pareto(1.5, k) * 86400, 0
    )
    m = ch == _CH["sms"]
    delay[m] = rng.uniform(60, 1800, int(m.sum())) + rng.lognormal(np.log(2400), 1.2, int(m.sum()))
    m = ch == _CH["web"]
    delay[m] = rng.lognormal(np.log(20 * 3600), 1.0, int(m.sum()))
    delay = np.minimum(delay, 20 * 86400)
    submitted = served + delay.astype(np.int64)
    m = ch == _CH["phone"]  # hotline call-back survey, 1-5 days later in call-centre hours
    k = int(m.sum())
    d_call = ctx.t_day[idx][m] + rng.integers(1, 6, k)
    submitted[m] = ctx.day_start[d_call] + rng.integers(9 * 3600, 18 * 3600, k)
    b["submitted"][:] = submitted
    staff_missing_p = np.array([0.0, 0.05, 0.2, 0.4, 0.3, 0.5])[ch]
    b["staff_shown"][:] = rng.random(n) >= staff_missing_p
    # Devices: the kiosk pad, the citizen's phone (app install) or phone number (SMS, hotline).
    cit = ctx.t_cit[idx]
    ah, al = ctx.app_device(cit)
    ph, pl = ctx.phone_device(cit)
    kiosk = ch == _CH["kiosk"]
    tel = (ch == _CH["sms"]) | (ch == _CH["phone"])
    b["devh"][:] = np.where(kiosk, ctx.kiosk_h[b["window"]], np.where(tel, ph, ah))
    b["devl"][:] = np.where(kiosk, ctx.kiosk_l[b["window"]], np.where(tel, pl, al))
    # Addresses.
    hall = ctx.win_hall[b["window"]]
    b["ip4"][kiosk] = ctx.hall_wired[hall[kiosk]]
    sms = ch == _CH["sms"]
    b["ip4"][sms] = _SMS_GATEWAYS[rng.integers(0, 2, int(sms.sum()))]
    b["ip4"][ch == _CH["phone"]] = _PHONE_GATEWAY
    in_hall_p = np.where(ch == _CH["qr"], 0.55, np.where(ch == _CH["app"], 0.3, 0.0))
    in_hall = (delay < 1200) & (rng.random(n) < in_hall_p)
    ctx.set_hall_wifi(b, in_hall, hall, rng)
    away = ~kiosk & ~tel & ~in_hall
    office = ctx.office(cit)
    hour = ctx.local_hour(submitted)
    workday = ctx.day_type[np.clip(ctx.day_of(submitted), 0, len(ctx.day_type) - 1)] == 1
    at_office = away & (office >= 0) & workday & (hour >= 9) & (hour < 18) & (rng.random(n) < 0.7)
    b["ip4"][at_office] = _OFFICE4[office[at_office]]
    away &= ~at_office
    p_mobile = np.where(ch == _CH["qr"], 0.7, np.where(ch == _CH["app"], 0.5, 0.0))
    mobile = away & (rng.random(n) < p_mobile)
    ctx.set_mobile(b, mobile, ctx.carrier(cit), rng)
    ctx.set_home(b, away & ~mobile, cit, rng)
    v4 = b["ipk"] == _IPK_V4
    mapped = v4 & ((ch == _CH["qr"]) | (ch == _CH["web"])) & (rng.random(n) < 0.2)
    b["ipk"][mapped] = _IPK_MAPPED
    # Scores around the window's and the staff member's true quality.
    st = b["staff"]
    latent = ctx.win_q[b["window"]] + ctx.staff_off[st] * 0.7 + _STYPE_EFFECT[b["stype"]]
    b["scores"][:] = _honest_scores(rng, latent, ctx.t_wait[idx], ctx.staff_off[st] * 0.6, kiosk)
    b["comment"][:] = _pick_comments(rng, _composite(b["scores"]))
    b["kind"][:] = _KIND["honest"]
    ctx.claimed |= keep
    return b


# --------------------------------------------------------------------------------------
# Attacks
# --------------------------------------------------------------------------------------


def _pushed_scores(rng: np.random.Generator, n: int, value: int, p_off: float) -> np.ndarray:
    """All ``value`` except that a share ``p_off`` of rows moves one dimension by one."""
    s = np.full((n, len(DIMENSIONS)), value, dtype=np.int8)
    off = np.flatnonzero(rng.random(n) < p_off)
    step = 1 if value < 3 else -1
    s[off, rng.integers(0, len(DIMENSIONS), len(off))] += step
    return s


def _new_attack(ctx: _Ctx, kind: str, win: int | None, staff: int | None, text: str) -> int:
    n = sum(1 for a in ctx.attacks if a.kind == kind) + 1
    ctx.attacks.append(
        Attack(
            attack_id=f"{kind}-{n}",
            kind=kind,
            target_window=None if win is None else ctx.window_ids[win],
            target_staff=None if staff is None else ctx.staff_ids[staff],
            description=text,
            ratings=0,
        )
    )
    return len(ctx.attacks) - 1


def _finish(ctx: _Ctx, b: _Batch, kind: str, attack: int) -> _Batch:
    b["kind"][:] = _KIND[kind]
    b["attack"][:] = attack
    a = ctx.attacks[attack]
    ctx.attacks[attack] = Attack(
        a.attack_id, a.kind, a.target_window, a.target_staff, a.description, len(b["kind"])
    )
    return b


def _from_tickets(ctx: _Ctx, t: np.ndarray) -> _Batch:
    """A batch about real tickets ``t`` (ticket fields filled, staff shown)."""
    b = _empty(len(t))
    b["ticket"][:] = ctx.ticket_ids(ctx.t_win[t], ctx.t_day[t], ctx.t_seq[t])
    b["window"][:] = ctx.t_win[t]
    b["staff"][:] = ctx.t_staff[t]
    b["staff_shown"][:] = True
    b["stype"][:] = ctx.t_stype[t]
    b["served"][:] = ctx.t_served[t]
    return b


def _available(ctx: _Ctx, mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask & ~ctx.claimed & ~ctx.rated)


def _plan_targets(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    """A fixed order of target windows for the attacks, and the coerced candidates.

    Independent of the attack switches, so turning one attack off moves nothing else.
    Coerced candidates are a reserved slice, the lower-quality half of it first.
    """
    rng = _stream(ctx.cfg.seed, "targets")
    perm = rng.permutation(ctx.W)
    reserve = max(2, ctx.W // 4) if ctx.W > 3 else 1
    cands = perm[ctx.W - reserve :]
    cands = cands[np.argsort(ctx.win_q[cands], kind="stable")]
    return perm[: ctx.W - reserve] if reserve < ctx.W else perm, cands


def _target(others: np.ndarray, slot: int, campaign: int) -> int:
    return int(others[(slot + 6 * campaign) % len(others)])


def _coerced(ctx: _Ctx, cands: np.ndarray) -> tuple[list[_Batch], set[str]]:
    cfg = ctx.cfg
    n, size = _campaigns(cfg.coerced, 2, cfg.halls)
    rng = _stream(cfg.seed, "coerced")
    out, wins = [], set()
    for c in range(min(n, len(cands))):
        w = int(cands[c % len(cands)])
        start_day = int(rng.integers(0, max(1, cfg.days // 3)))
        p = min(0.95, 0.75 * (size if c == n - 1 else 1.0))
        a = _new_attack(
            ctx, "coerced", w, None,
            f"staff at {ctx.window_ids[w]} press citizens for all-5 ratings on the spot "
            f"from day {start_day + 1} (share {p:.0%} of tickets)",
        )  # fmt: skip
        t = np.flatnonzero((ctx.t_win == w) & (ctx.t_day >= start_day) & ~ctx.claimed)
        t = t[rng.random(len(t)) < p]
        ctx.coerced[t] = True
        ctx.claimed[t] = True
        b = _from_tickets(ctx, t)
        k = len(t)
        kiosk = rng.random(k) < 0.7
        b["channel"][:] = np.where(kiosk, _CH["kiosk"], _CH["qr"])
        b["submitted"][:] = b["served"] + np.where(
            kiosk, rng.integers(3, 25, k), rng.integers(20, 120, k)
        )
        ah, al = ctx.app_device(ctx.t_cit[t])
        b["devh"][:] = np.where(kiosk, ctx.kiosk_h[w], ah)
        b["devl"][:] = np.where(kiosk, ctx.kiosk_l[w], al)
        hall = np.full(k, ctx.win_hall[w])
        b["ip4"][kiosk] = ctx.hall_wired[ctx.win_hall[w]]
        phone = ~kiosk
        wifi = phone & (rng.random(k) < 0.6)
        ctx.set_hall_wifi(b, wifi, hall, rng)
        ctx.set_mobile(b, phone & ~wifi, ctx.carrier(ctx.t_cit[t]), rng)
        b["scores"][:] = _pushed_scores(rng, k, 5, 0.07)
        out.append(_finish(ctx, b, "coerced", a))
        wins.add(ctx.window_ids[w])
    return out, wins


def _self_rating(ctx: _Ctx, others: np.ndarray) -> list[_Batch]:
    cfg = ctx.cfg
    n, size = _campaigns(cfg.self_rating, 2, cfg.halls)
    rng = _stream(cfg.seed, "self_rating")
    out = []
    for c in range(n):
        w = _target(others, 0, c)
        staff_here = ctx.win_staff[w][ctx.win_staff[w] >= 0]
        s = int(staff_here[rng.integers(0, len(staff_here))])
        scale = size if c == n - 1 else 1.0
        rate = 2.5 * scale
        start_day = int(rng.integers(0, max(1, cfg.days // 4)))
        a = _new_attack(
            ctx, "self_rating", w, s,
            f"{ctx.staff_ids[s]} rates about {1 + rate:.1f} of their own unrated tickets a shift "
            f"from their phone, minutes after service, from day {start_day + 1}",
        )  # fmt: skip
        pool = _available(ctx, (ctx.t_staff == s) & (ctx.t_day >= start_day))
        picked: list[np.ndarray] = []
        for d in np.unique(ctx.t_day[pool]).tolist():
            if rng.random() < 0.15:  # a day off the habit
                continue
            day_pool = pool[ctx.t_day[pool] == d]
            k = min(len(day_pool), 1 + int(rng.poisson(rate)))
            picked.append(np.sort(rng.choice(day_pool, k, replace=False)))
        t = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
        ctx.claimed[t] = True
        b = _from_tickets(ctx, t)
        k = len(t)
        b["channel"][:] = np.where(rng.random(k) < 0.75, _CH["qr"], _CH["app"])
        b["submitted"][:] = b["served"] + rng.integers(60, 600, k)
        second = rng.random() < 0.3  # a spare phone on some days
        use2 = second & (rng.random(k) < 0.3)
        b["devh"][:] = np.where(use2, _mix(ctx.staff_h[s] ^ ctx.keys[10]), ctx.staff_h[s])
        b["devl"][:] = np.where(use2, _mix(ctx.staff_l[s] ^ ctx.keys[10]), ctx.staff_l[s])
        wifi = rng.random(k) < 0.8
        ctx.set_hall_wifi(b, wifi, np.full(k, ctx.win_hall[w]), rng)
        ctx.set_mobile(b, ~wifi, np.full(k, ctx.staff_carrier[s]), rng)
        b["scores"][:] = _pushed_scores(rng, k, 5, 0.1)
        out.append(_finish(ctx, b, "self_rating", a))
    return out


def _brushing_slow(ctx: _Ctx, others: np.ndarray) -> list[_Batch]:
    cfg = ctx.cfg
    n, size = _campaigns(cfg.brushing_slow, 2, cfg.halls)
    rng = _stream(cfg.seed, "brushing_slow")
    out = []
    for c in range(n):
        w = _target(others, 1, c)
        n_dev = max(1, round(rng.integers(3, 7) * (size if c == n - 1 else 1.0)))
        span = min(cfg.days, int(rng.integers(14, 29)))
        start_day = int(rng.integers(0, max(1, cfg.days - span + 1)))
        a = _new_attack(
            ctx, "brushing_slow", w, None,
            f"{n_dev} devices rate real tickets of {ctx.window_ids[w]} once or twice a day each "
            f"over {span} days, in the evening, 5s with a few 4s",
        )  # fmt: skip
        dev_h, dev_l = _u64(rng, n_dev), _u64(rng, n_dev)
        dev_cit = rng.integers(10**12, 2 * 10**12, n_dev)  # their own household / carrier
        dev_mobile = rng.random(n_dev) < 0.4
        rows_t, rows_dev, rows_sub = [], [], []
        per_day: Counter[tuple[int, int]] = Counter()  # (device, submit day): at most two
        for d in range(start_day, start_day + span):
            if ctx.day_type[d] == 0:
                continue
            pool = _available(ctx, (ctx.t_win == w) & (ctx.t_day == d))
            for j in range(n_dev):
                if len(pool) == 0 or rng.random() > 0.72:
                    continue
                k = min(len(pool), 1 + int(rng.random() < 0.25))
                pick = rng.choice(pool, k, replace=False)
                pool = np.setdiff1d(pool, pick)
                for tk in pick.tolist():
                    late = rng.random() < 0.2  # next morning on the way to work
                    sub_day = d + 1 if late else d
                    if per_day[(j, sub_day)] >= 2:
                        continue
                    per_day[(j, sub_day)] += 1
                    sub = ctx.day_start[sub_day] + int(
                        rng.uniform(7 * 3600, 8.5 * 3600)
                        if late
                        else rng.uniform(19 * 3600, 23.5 * 3600)
                    )
                    rows_t.append(tk)
                    rows_dev.append(j)
                    rows_sub.append(max(sub, int(ctx.t_served[tk]) + 600))
        t = np.array(rows_t, dtype=np.int64)
        dev = np.array(rows_dev, dtype=np.int64)
        ctx.claimed[t] = True
        b = _from_tickets(ctx, t)
        k = len(t)
        b["channel"][:] = np.where(rng.random(k) < 0.7, _CH["app"], _CH["qr"])
        b["submitted"][:] = np.array(rows_sub, dtype=np.int64)
        b["devh"][:], b["devl"][:] = dev_h[dev], dev_l[dev]
        mob = dev_mobile[dev]
        ctx.set_mobile(b, mob, dev_cit[dev] % 3, rng)
        ctx.set_home(b, ~mob, dev_cit[dev], rng)
        b["scores"][:] = _pushed_scores(rng, k, 5, 0.25)
        com = rng.random(k) < 0.1
        b["comment"][com] = [
            _BOOST_COMMENTS[i]
            for i in rng.integers(0, len(_BOOST_COMMENTS), int(com.sum())).tolist()
        ]
        out.append(_finish(ctx, b, "brushing_slow", a))
    return out


def _device_farm(ctx: _Ctx, others: np.ndarray) -> list[_Batch]:
    cfg = ctx.cfg
    n, size = _campaigns(cfg.device_farm, 1, cfg.halls)
    rng = _stream(cfg.seed, "device_farm")
    out = []
    for c in range(n):
        w = _target(others, 2, c)
        n_dev = max(5, round(rng.integers(30, 81) * (size if c == n - 1 else 1.0)))
        n_days = min(len(ctx.open_days), int(rng.integers(3, 9)))
        first = int(rng.integers(0, max(1, len(ctx.open_days) - n_days + 1)))
        days = ctx.open_days[first : first + n_days]
        if len(days) == 0:
            continue
        variant = ("v4_hosting", "v4_home", "v6_prefix")[int(rng.integers(0, 3))]
        insider = rng.random() < 0.5
        a = _new_attack(
            ctx, "device_farm", w, None,
            f"{n_dev} devices ({variant.replace('_', ' ')}) brush {ctx.window_ids[w]} with 5s in "
            f"sessions over {n_days} days ({'real' if insider else 'invented'} ticket ids)",
        )  # fmt: skip
        dev_h, dev_l = _u64(rng, n_dev), _u64(rng, n_dev)
        if variant == "v4_hosting":
            k_addr = int(rng.integers(2, 5))
            base = int(rng.integers(0, len(_IDC4) - k_addr))
            addrs = _IDC4[base : base + k_addr]
        elif variant == "v4_home":
            k_addr = int(rng.integers(3, 6))
            addrs = rng.choice(_HOME4[127:], k_addr, replace=False)
        else:
            addrs = np.zeros(1, dtype=np.int64)
        prefix6 = (
            _U64(_V6_BASE)
            | (_U64(0xDC00 + int(rng.integers(0, 256))) << _U64(16))
            | _U64(int(rng.integers(0, 65536)))
        )
        subs, devs = [], []
        for d in days.tolist():
            for _ in range(int(rng.integers(1, 4))):
                t0 = ctx.day_start[d] + int(rng.uniform(9.5 * 3600, 20 * 3600))
                length = rng.uniform(300, 1200)
                part = np.flatnonzero(rng.random(n_dev) < rng.uniform(0.4, 0.9))
                subs.append(t0 + np.sort(rng.random(len(part)) * length).astype(np.int64))
                devs.append(rng.permutation(part))
        sub = np.concatenate(subs)
        dev = np.concatenate(devs)
        k = len(sub)
        day = ctx.day_of(sub)
        b = _empty(k)
        b["window"][:] = w
        b["submitted"][:] = sub
        real = np.zeros(k, dtype=bool)
        if insider:
            pool = _available(ctx, ctx.t_win == w)
            pool_day = ctx.t_day[pool]
            chosen = np.full(k, -1, dtype=np.int64)
            for i in range(k):
                cand = pool[(pool_day == day[i]) & (ctx.t_served[pool] < sub[i] - 60)]
                cand = cand[~ctx.claimed[cand]]
                if len(cand):
                    chosen[i] = cand[int(rng.integers(0, len(cand)))]
                    ctx.claimed[chosen[i]] = True
            real = chosen >= 0
            t = chosen[real]
            rb = _from_tickets(ctx, t)
            for key in ("ticket", "staff", "staff_shown", "stype", "served"):
                b[key][real] = rb[key]
        fake = np.flatnonzero(~real)
        b["ticket"][fake] = ctx.fabricated_ids(w, day[fake])
        served = np.maximum(
            ctx.day_start[day[fake]] + _OPEN_S, sub[fake] - rng.integers(600, 6 * 3600, len(fake))
        )
        b["served"][fake] = np.minimum(served, sub[fake] - 60)
        b["stype"][fake] = ctx.win_type1[w]
        hour = (b["served"][fake] - ctx.day_start[day[fake]]) / 3600.0
        b["staff"][fake] = ctx.staff_at(np.full(len(fake), w), day[fake], hour)
        b["staff_shown"][fake] = rng.random(len(fake)) < 0.5
        b["channel"][:] = np.where(rng.random(k) < 0.7, _CH["app"], _CH["qr"])
        b["devh"][:], b["devl"][:] = dev_h[dev], dev_l[dev]
        if variant == "v6_prefix":
            b["ipk"][:] = _IPK_V6
            b["ip6h"][:] = prefix6
            b["ip6l"][:] = _mix(dev_l[dev] ^ ctx.keys[11])  # one stable address per device
        else:
            b["ip4"][:] = addrs[dev % len(addrs)]
        b["scores"][:] = _pushed_scores(rng, k, 5, 0.15)
        out.append(_finish(ctx, b, "device_farm", a))
    return out


def _flood(ctx: _Ctx, others: np.ndarray) -> list[_Batch]:
    cfg = ctx.cfg
    n, size = _campaigns(cfg.flood, 2, cfg.halls)
    rng = _stream(cfg.seed, "flood")
    out = []
    for c in range(n):
        w = _target(others, 3, c)
        k = max(20, round(rng.integers(150, 401) * (size if c == n - 1 else 1.0)))
        d = int(rng.integers(0, cfg.days))
        night = rng.random() < 0.3
        t0 = ctx.day_start[d] + int(
            rng.uniform(0, 6 * 3600) if night else rng.uniform(9 * 3600, 21 * 3600)
        )
        gap = rng.uniform(1.5, 8.0)
        sub = t0 + np.cumsum(gap * rng.lognormal(0, 0.3, k)).astype(np.int64)
        boost = rng.random() < 0.7
        devices = ("single", "rotating", "small_pool")[int(rng.choice(3, p=[0.4, 0.4, 0.2]))]
        addr_kind = ("home_v4", "hosting_v4", "home_v6")[int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
        uuid_ids = rng.random() < 0.4
        staff_here = ctx.win_staff[w][ctx.win_staff[w] >= 0]
        s = int(staff_here[rng.integers(0, len(staff_here))]) if rng.random() < 0.5 else None
        a = _new_attack(
            ctx, "flood", w, s,
            f"{k} ratings of {'5' if boost else '1'}s on {ctx.window_ids[w]} from one {addr_kind.replace('_', ' ')} "
            f"address in {int((sub[-1] - sub[0]) / 60) + 1} min ({devices} device ids)",
        )  # fmt: skip
        b = _empty(k)
        b["window"][:] = w
        b["submitted"][:] = sub
        b["channel"][:] = int(rng.choice([_CH["app"], _CH["web"], _CH["qr"]]))
        b["stype"][:] = ctx.win_type1[w]
        if s is not None:
            b["staff"][:] = s
            b["staff_shown"][:] = True
        served_day = np.clip(d - rng.integers(0, 3, k), 0, cfg.days - 1)
        b["served"][:] = np.minimum(
            ctx.day_start[served_day] + rng.integers(_OPEN_S, 17 * 3600, k), sub - 300
        )
        b["served_ok"][:] = rng.random() < 0.6
        if uuid_ids:
            hx, lx = _u64(rng, k), _u64(rng, k)
            b["ticket"][:] = [
                f"{h:016x}{x:016x}" for h, x in zip(hx.tolist(), lx.tolist(), strict=True)
            ]
        else:
            b["ticket"][:] = ctx.fabricated_ids(w, served_day)
        if devices == "single":
            dh, dl = _u64(rng, 1), _u64(rng, 1)
            b["devh"][:], b["devl"][:] = dh[0], dl[0]
        elif devices == "rotating":
            b["devh"][:], b["devl"][:] = _u64(rng, k), _u64(rng, k)
        else:
            pool_h, pool_l = _u64(rng, 8), _u64(rng, 8)
            j = rng.integers(0, 8, k)
            b["devh"][:], b["devl"][:] = pool_h[j], pool_l[j]
        if addr_kind == "home_v6":
            hi = (
                _U64(_V6_BASE)
                | (_U64(0xF100 + int(rng.integers(0, 512))) << _U64(16))
                | _U64(int(rng.integers(0, 65536)))
            )
            b["ipk"][:] = _IPK_V6
            b["ip6h"][:] = hi
            b["ip6l"][:] = _u64(rng, 1)[0]
        else:
            pool = _HOME4 if addr_kind == "home_v4" else _IDC4
            b["ip4"][:] = pool[int(rng.integers(0, len(pool)))]
        b["scores"][:] = _pushed_scores(rng, k, 5 if boost else 1, 0.15)
        out.append(_finish(ctx, b, "flood", a))
    return out


def _bombing(ctx: _Ctx, others: np.ndarray) -> list[_Batch]:
    cfg = ctx.cfg
    n, size = _campaigns(cfg.bombing, 1, cfg.halls)
    rng = _stream(cfg.seed, "bombing")
    out = []
    for c in range(n):
        w = _target(others, 4, c)
        staff_here = ctx.win_staff[w][ctx.win_staff[w] >= 0]
        s = int(staff_here[rng.integers(0, len(staff_here))])
        n_dev = max(2, round(rng.integers(3, 7) * (size if c == n - 1 else 1.0)))
        span = min(cfg.days, int(rng.integers(5, 13)))
        start_day = int(rng.integers(0, max(1, cfg.days - span + 1)))
        a = _new_attack(
            ctx, "bombing", w, s,
            f"a household's {n_dev} devices give {ctx.staff_ids[s]} 1s over {span} days, "
            "often with near-duplicate comments",
        )  # fmt: skip
        cit = int(rng.integers(10**12, 2 * 10**12))
        dev_h, dev_l = _u64(rng, n_dev), _u64(rng, n_dev)
        dev_mobile = rng.random(n_dev) < 0.35
        subs, devs = [], []
        for d in range(start_day, start_day + span):
            for j in range(n_dev):
                if rng.random() < 0.55:
                    m = int(rng.integers(1, 4))
                    subs.append(
                        ctx.day_start[d]
                        + np.sort(rng.uniform(8 * 3600, 23.8 * 3600, m)).astype(np.int64)
                    )
                    devs.append(np.full(m, j))
        if not subs:
            subs, devs = (
                [np.array([ctx.day_start[start_day] + 20 * 3600])],
                [np.zeros(1, dtype=np.int64)],
            )
        sub = np.concatenate(subs)
        dev = np.concatenate(devs)
        k = len(sub)
        b = _empty(k)
        b["window"][:] = w
        b["staff"][:] = s
        b["staff_shown"][:] = True
        b["stype"][:] = ctx.win_type1[w]
        b["submitted"][:] = sub
        day = np.clip(ctx.day_of(sub) - rng.integers(0, 2, k), 0, cfg.days - 1)
        b["ticket"][:] = ctx.fabricated_ids(w, day)
        b["served"][:] = np.minimum(
            ctx.day_start[day] + rng.integers(_OPEN_S, 17 * 3600, k), sub - 600
        )
        b["served_ok"][:] = rng.random(k) < 0.6
        b["channel"][:] = np.where(rng.random(k) < 0.6, _CH["app"], _CH["web"])
        b["devh"][:], b["devl"][:] = dev_h[dev], dev_l[dev]
        mob = dev_mobile[dev]
        ctx.set_mobile(b, mob, np.full(k, cit % 3), rng)
        ctx.set_home(b, ~mob, np.full(k, cit), rng)  # one household: one /64 or home IPv4 a week
        b["scores"][:] = np.where(
            rng.random((k, 1)) < 0.75, 1, rng.integers(1, 3, (k, len(DIMENSIONS)))
        ).astype(np.int8)
        tpl = _BOMB_TEMPLATES[int(rng.integers(0, len(_BOMB_TEMPLATES)))]
        number = ctx.staff_ids[s].split("-S")[-1]
        has = rng.random(k) < 0.6
        b["comment"][has] = [
            _near_duplicate(rng, tpl.format(s=number)) for _ in range(int(has.sum()))
        ]
        out.append(_finish(ctx, b, "bombing", a))
    return out


def _near_duplicate(rng: np.random.Generator, text: str) -> str:
    """``text`` with small edits: punctuation, emphasis, a filler word."""
    endings = ("", "！", "！！", "。", "!!!", "，太过分了", "，希望领导重视")
    t = text
    if rng.random() < 0.3:
        t = t.replace("强烈", "坚决") if "强烈" in t else "再次" + t
    return t + endings[int(rng.integers(0, len(endings)))]


def _replay(ctx: _Ctx, honest: _Batch, others: np.ndarray) -> list[_Batch]:
    """Existing rated tickets re-submitted with other content."""
    cfg = ctx.cfg
    n, size = _campaigns(cfg.replay, 2, cfg.halls)
    rng = _stream(cfg.seed, "replay")
    comp = _composite(honest["scores"])
    used = np.zeros(len(comp), dtype=bool)
    out = []
    for c in range(n):
        w = _target(others, 5, c)
        scale = size if c == n - 1 else 1.0
        hall = int(ctx.win_hall[w])
        if c % 2 == 0:
            # An insider launders one staff member's low scores: same tickets, all 5s.
            staff_here = ctx.win_staff[w][ctx.win_staff[w] >= 0]
            s = int(staff_here[rng.integers(0, len(staff_here))])
            cand = np.flatnonzero((honest["staff"] == s) & ~used)
            order = cand[np.argsort(comp[cand] + rng.random(len(cand)) * 0.5, kind="stable")]
            k = min(len(order), max(5, round(rng.integers(25, 51) * scale)))
            src = np.sort(order[:k])
            a = _new_attack(
                ctx, "replay", w, s,
                f"an insider re-submits {k} of {ctx.staff_ids[s]}'s lowest-rated tickets with 5s "
                "from the hall network",
            )  # fmt: skip
        else:
            # A bot replays requests captured from one window's QR page, scores tweaked.
            s = None
            cand = np.flatnonzero(
                (honest["window"] == w) & (honest["channel"] != _CH["kiosk"]) & ~used
            )
            k = min(len(cand), max(5, round(rng.integers(25, 61) * scale)))
            src = np.sort(rng.choice(cand, k, replace=False))
            a = _new_attack(
                ctx, "replay", w, None,
                f"a bot replays {k} ratings captured from {ctx.window_ids[w]}'s QR page with "
                "scores changed by one point and the original device id",
            )  # fmt: skip
        used[src] = True
        b = _take(honest, src)
        k = len(src)
        b["comment"][:] = None
        b["submitted"][:] = b["submitted"] + rng.integers(3600, 2 * 86400, k)
        if s is not None:
            b["scores"][:] = _pushed_scores(rng, k, 5, 0.05)
            devs_h, devs_l = _u64(rng, 2), _u64(rng, 2)
            j = rng.integers(0, 2, k)
            b["devh"][:], b["devl"][:] = devs_h[j], devs_l[j]
            b["channel"][:] = _CH["qr"]
            b["staff_shown"][:] = True
            b["ipk"][:] = _IPK_V4
            b["ip6h"][:] = 0
            b["ip6l"][:] = 0
            b["ip4"][:] = ctx.hall_wifi[hall, int(rng.integers(0, 2))]
        else:
            delta = np.where(b["scores"] <= 3, 1, -1).astype(np.int8)
            change = rng.random(b["scores"].shape) < 0.5
            change[np.arange(k), rng.integers(0, len(DIMENSIONS), k)] = True
            b["scores"][:] = np.clip(b["scores"] + delta * change, 1, 5)
            b["ipk"][:] = _IPK_V4
            b["ip6h"][:] = 0
            b["ip6l"][:] = 0
            b["ip4"][:] = _IDC4[int(rng.integers(0, len(_IDC4)))]
        out.append(_finish(ctx, b, "replay_duplicate", a))
    return out


def _identical_retries(cfg: WorldConfig, cols: _Batch) -> np.ndarray:
    """Indices of honest rows that a flaky network sends twice (byte-identical)."""
    if cfg.identical_retries <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = _stream(cfg.seed, "identical_retries")
    ch = cols["channel"]
    p = np.where(
        ch == _CH["kiosk"], 0.002, np.where((ch == _CH["qr"]) | (ch == _CH["app"]), 0.008, 0.0)
    )
    p = np.minimum(1.0, p * cfg.identical_retries)
    honest = cols["kind"] == _KIND["honest"]
    return np.flatnonzero(honest & (rng.random(len(ch)) < p))


# --------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------


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


def main(argv: list[str] | None = None) -> int:
    """``python -m integrity.simulation --seed 7 --out DIR``: write the three files."""
    p = argparse.ArgumentParser(
        prog="python -m integrity.simulation", description=__doc__.split("\n")[0]
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="directory for ratings.jsonl, venues.json, truth.csv",
    )
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--halls", type=int, default=3)
    p.add_argument("--windows-per-hall", type=int, default=6)
    p.add_argument("--honest-ratings", type=int, default=25_000)
    p.add_argument(
        "--benchmark", type=int, metavar="N", help="a world of about N ratings (overrides sizes)"
    )
    p.add_argument(
        "--attack", action="append", default=[], metavar="KIND=X",
        help=f"attack intensity, 0 turns it off; KIND in {', '.join((*ATTACK_KINDS, 'identical_retries'))}",
    )  # fmt: skip
    args = p.parse_args(argv)
    over: dict[str, Any] = {}
    for item in args.attack:
        kind, _, value = item.partition("=")
        if kind not in (*ATTACK_KINDS, "identical_retries"):
            p.error(f"unknown attack kind {kind!r}")
        try:
            over[kind] = float(value)
        except ValueError:
            p.error(f"--attack {item!r}: intensity must be a number")
    try:
        if args.benchmark:
            cfg = WorldConfig.benchmark(args.seed, args.benchmark, days=args.days, **over)
        else:
            cfg = WorldConfig(
                seed=args.seed,
                days=args.days,
                halls=args.halls,
                windows_per_hall=args.windows_per_hall,
                honest_ratings=args.honest_ratings,
                **over,
            )
    except ValueError as err:
        p.error(str(err))
    t0 = time.perf_counter()
    world = simulate(cfg)
    t1 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    world.to_jsonl(args.out / "ratings.jsonl")
    world.venues_json(args.out / "venues.json")
    world.truth_csv(args.out / "truth.csv")
    t2 = time.perf_counter()
    counts = ", ".join(f"{k} {v}" for k, v in world.counts().items() if v)
    print(
        f"{len(world)} ratings ({counts}) simulated in {t1 - t0:.2f} s, written in {t2 - t1:.2f} s to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
