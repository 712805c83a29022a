"""The detectors a detect run fits, by name, with their default share of the hold budget.

A run splits ``[detect] target_honest_hold`` between the detectors in proportion to
their shares (``[detect.budget]`` overrides them per name; 0 switches one off).
"""

from __future__ import annotations

from rules.detectors.base import Detector
from rules.detectors.burst import BurstDetector
from rules.detectors.coerced import CoercedDetector
from rules.detectors.comment_duplicate import CommentDuplicateDetector
from rules.detectors.corating import CoRatingDetector
from rules.detectors.device_repeat import DeviceRepeatDetector
from rules.detectors.episode import EpisodeDetector
from rules.detectors.lockstep import LockstepDetector
from rules.detectors.low_concentration import LowConcentrationDetector
from rules.detectors.low_shift import LowShiftDetector
from rules.detectors.ring import RingDetector
from rules.detectors.self_rating import SelfRatingDetector

_SHARES: tuple[tuple[type[Detector], float], ...] = (
    (BurstDetector, 1.0),
    (EpisodeDetector, 0.25),
    (LockstepDetector, 1.0),
    (CoRatingDetector, 1.0),
    (DeviceRepeatDetector, 1.0),
    (RingDetector, 0.5),
    (SelfRatingDetector, 1.0),
    (CoercedDetector, 1.0),
    (LowConcentrationDetector, 0.5),
    (CommentDuplicateDetector, 0.5),
    (LowShiftDetector, 0.5),
)

#: Detector name (its ``name`` attribute) -> (class, default share of the honest-hold budget).
DETECTORS: dict[str, tuple[type[Detector], float]] = {
    cls.name: (cls, share) for cls, share in _SHARES
}
if len(DETECTORS) != len(_SHARES):  # pragma: no cover - a programming error
    raise RuntimeError("two registered detectors share a name")
