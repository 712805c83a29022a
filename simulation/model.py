"""The simulator's vocabulary and records: rating dimensions, label kinds, attack
switches, service types, :class:`WorldConfig` (what to simulate), and the ground truth
(:class:`Label` per rating, :class:`Attack` per campaign)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from integrity.model import CHANNELS, DEFAULT_RUBRIC
from simulation.addresses import _MAX_HALLS

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
