"""Each detector fires on its pattern and stays quiet on the honest look-alike.

Frames are synthetic (:func:`rules.detectors.features.prepare` on hand-made rows): a
population of ordinary raters at a few windows over two weeks, plus one pattern. Every
registered detector is also held to the pyod-like contract, on a frame where it has
something to find, on an empty frame and on a one-rating frame.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from integrity.catalogue import REASONS
from integrity.model import DEFAULT_RUBRIC, Kiosk, VenueRegistry
from rules.detectors.base import Detector, Flag, Signal, bh_cutoff, calibrated_alpha
from rules.detectors.burst import BurstDetector
from rules.detectors.coerced import CoercedDetector
from rules.detectors.combine import combine
from rules.detectors.comment_duplicate import CommentDuplicateDetector, jaccard, shingles
from rules.detectors.corating import CoRatingDetector
from rules.detectors.device_repeat import DeviceRepeatDetector
from rules.detectors.episode import EpisodeDetector
from rules.detectors.features import Frame, prepare
from rules.detectors.generic import prior_signal, pyod_signal
from rules.detectors.lockstep import LockstepDetector
from rules.detectors.low_concentration import LowConcentrationDetector
from rules.detectors.low_shift import LowShiftDetector
from rules.detectors.registry import DETECTORS
from rules.detectors.ring import RingDetector, ring_members, ring_sizes
from rules.detectors.self_rating import SelfRatingDetector

TZ = ZoneInfo("Asia/Shanghai")
DAY0 = 1_790_000_000 - (1_790_000_000 + 8 * 3600) % 86400  # a local midnight (epoch s)
WINDOWS = [f"W{i}" for i in range(1, 7)]
REGISTRY = VenueRegistry(
    ip_hashes={"ip-hall": "H1"},
    kiosks={f"pad-{w}": Kiosk("H1", w, f"pad-{w}") for w in WINDOWS},
)
_ids = itertools.count(1)


def row(
    *,
    window: str = "W1",
    device: str | None = None,
    t: float,
    delay: float | None = 3600.0,
    score: float = 4.2,
    ip: str | None = None,
    prefix: str | None = None,
    staff: str | None = None,
    comment: str | None = None,
    status: str = "accepted",
    service_type: str = "tax",
) -> dict[str, Any]:
    rid = next(_ids)
    device = device or f"dev-{rid}"
    ip = ip or f"ip-{rid}"
    return {
        "rating_id": rid,
        "window_id": window,
        "staff_id": staff or f"S-{window}",
        "service_type": service_type,
        "channel": "kiosk" if device.startswith("pad-") else "qr",
        "served_s": t - delay if delay is not None else np.nan,
        "submitted_s": float(t),
        "composite": float(score),
        "comment": comment if score < 3 else None,
        "ip_hash": ip,
        "prefix_hash": prefix or f"pfx-{ip}",
        "device_hash": device,
        "status": status,
        "reasons": "",
        "risk": 0.0,
        "version": 1,
    }


def honest_scores(rng: np.random.Generator, n: int, mean: float = 4.2) -> np.ndarray:
    """Composites around ``mean``: about a quarter straight-lined 5s, some lows."""
    s = np.clip(np.round(rng.normal(mean, 0.6, n) * 5) / 5, 1.0, 5.0)
    s[rng.random(n) < 0.25] = 5.0
    return s


def population(
    seed: int = 0, days: int = 14, per_day: int = 30, windows: Iterable[str] = WINDOWS
) -> list[dict[str, Any]]:
    """Ordinary traffic: one-off citizens (kiosk, hall Wi-Fi, home) across windows and days."""
    rng = np.random.default_rng(seed)
    rows = []
    for w in windows:
        for d in range(days):
            n = rng.poisson(per_day)
            ts = DAY0 + d * 86400 + rng.uniform(9 * 3600, 17 * 3600, n)
            sc = honest_scores(rng, n)
            for t, s in zip(ts, sc, strict=True):
                u = rng.random()
                if u < 0.4:
                    rows.append(
                        row(
                            window=w,
                            device=f"pad-{w}",
                            ip="ip-wired",
                            t=t,
                            delay=rng.uniform(3, 30),
                            score=s,
                        )
                    )
                elif u < 0.6:
                    rows.append(
                        row(window=w, ip="ip-hall", t=t, delay=rng.uniform(30, 600), score=s)
                    )
                else:
                    rows.append(
                        row(
                            window=w,
                            t=t + rng.uniform(600, 8 * 3600),
                            delay=rng.uniform(600, 8 * 3600),
                            score=s,
                        )
                    )
    return rows


def frame(rows: list[dict[str, Any]]) -> Frame:
    return prepare(pd.DataFrame(rows), rubric=DEFAULT_RUBRIC, tz=TZ, registry=REGISTRY)


def held(det: Detector, fr: Frame) -> set[int]:
    det.fit(fr)
    return {rid for f in det.flags(fr) if f.strength >= 1 for rid in f.rating_ids}


def ids(rows: list[dict[str, Any]]) -> set[int]:
    return {r["rating_id"] for r in rows}


# -- the patterns ------------------------------------------------------------------------


def flood() -> list[dict[str, Any]]:
    """Fifteen 5s on one window at 20:00, when nobody rates, from one outside address."""
    t0 = DAY0 + 3 * 86400 + 20 * 3600
    return [row(window="W2", ip="ip-x", t=t0 + 30 * i, delay=7200, score=5.0) for i in range(15)]


def limited_flood(n: int = 240, minutes: float = 60.0) -> list[dict[str, Any]]:
    """One address sends ``n`` 5s to one window in an hour of the afternoon, a new device
    id each time; a sliding log of 20 per 10 minutes (``ip.burst``) admits the first
    ones and holds the rest, 60 an hour at most (``ip.hour``) rejects beyond that."""
    t0 = DAY0 + 6 * 86400 + 14 * 3600
    rows, admitted = [], []
    for i in range(n):
        t = t0 + i * minutes * 60 / n
        recent = [a for a in admitted if a > t - 600]
        hour = [a for a in admitted if a > t - 3600]
        if len(hour) >= 60:
            status, reasons = "rejected", "rate_limit.ip"
        elif len(recent) >= 20:
            status, reasons = "held", "rate_limit.ip"
        else:
            status, reasons = "accepted", ""
            admitted.append(t)
        r = row(window="W2", device=f"flood-{i}", ip="ip-flood", t=t, delay=None, score=5.0)
        rows.append({**r, "status": status, "reasons": reasons})
    return rows


def device_farm() -> list[dict[str, Any]]:
    """Twelve devices behind one data-centre address rate one window within an hour."""
    return [
        row(
            window="W3",
            device=f"farm-{i}",
            ip="ip-idc",
            prefix="pfx-idc",
            t=DAY0 + 5 * 86400 + 13 * 3600 + 200 * i,
            score=5.0,
        )
        for i in range(12)
    ]


def crew() -> list[dict[str, Any]]:
    """Three devices rate one window with 5s in the same evenings for twelve days."""
    return [
        row(
            window="W4",
            device=f"crew-{k}",
            t=DAY0 + d * 86400 + 20 * 3600 + 600 * k,
            delay=30000,
            score=5.0,
        )
        for d in range(12)
        for k in range(3)
    ]


def slow_brusher() -> list[dict[str, Any]]:
    """One device rates one window with 5s every night for thirteen days."""
    return [
        row(window="W5", device="brusher", t=DAY0 + d * 86400 + 21 * 3600, delay=30000, score=5.0)
        for d in range(13)
    ]


def regulars(window: str = "W3", seed: int = 6, k: int = 12) -> list[dict[str, Any]]:
    """Twelve citizens who like the window come back four times each, by day, mostly 5s."""
    rng = np.random.default_rng(seed)
    return [
        row(
            window=window,
            device=f"regular-{window}-{j}",
            t=DAY0 + d * 86400 + rng.uniform(10, 16) * 3600,
            delay=600,
            score=float(honest_scores(rng, 1, 4.6)[0]),
        )
        for j in range(k)
        for d in sorted(rng.choice(14, 4, replace=False))
    ]


def ring(window: str = "W3", k: int = 4, nights: int = 8) -> list[dict[str, Any]]:
    """Four phones each rate the window with 5s on eight of fourteen evenings."""
    rng = np.random.default_rng(7)
    return [
        row(
            window=window,
            device=f"ring-{j}",
            t=DAY0 + d * 86400 + rng.uniform(19, 23) * 3600,
            delay=30000,
            score=5.0,
        )
        for j in range(k)
        for d in sorted(rng.choice(14, nights, replace=False))
    ]


def staff_phone() -> list[dict[str, Any]]:
    """A phone on the hall Wi-Fi rates its window's tickets on the spot four times a day."""
    return [
        row(
            window="W1",
            device="staff-phone",
            ip="ip-hall",
            t=DAY0 + d * 86400 + h * 3600,
            delay=240,
            score=5.0,
        )
        for d in range(10)
        for h in (9.5, 11.5, 14.5, 16.0)
    ]


def household() -> list[dict[str, Any]]:
    """Three devices of one home prefix give one staff member nine 1s in a week."""
    return [
        row(
            window="W2",
            staff="S-W2",
            device=f"fam-{i % 3}",
            ip=f"ip-home-{i}",
            prefix="pfx-home",
            t=DAY0 + (i % 7) * 86400 + 21 * 3600 + i,
            score=1.0,
        )
        for i in range(9)
    ]


def comment_bomb() -> list[dict[str, Any]]:
    """Five devices give one staff member 1s with the same complaint, lightly varied."""
    text = "投诉07号工作人员服务态度极差拖延办理"
    return [
        row(
            window="W3",
            staff="S-W3",
            device=f"b-{i}",
            t=DAY0 + i * 86400 + 20 * 3600,
            score=1.0,
            comment=text + "!" * (i % 3),
        )
        for i in range(5)
    ]


def generic_complaints() -> list[dict[str, Any]]:
    """The same honest complaint (the queue) about every window."""
    return [
        row(
            window=WINDOWS[i % 6],
            staff=f"S-{WINDOWS[i % 6]}",
            device=f"g-{i}",
            t=DAY0 + (i % 14) * 86400 + 15 * 3600,
            score=2.0,
            comment="排队时间太长了等了一个多小时",
        )
        for i in range(30)
    ]


def grudge() -> list[dict[str, Any]]:
    """Two devices give one staff member fourteen 1s from the ninth day on."""
    return [
        row(
            window="W4",
            staff="S-W4",
            device=f"grudge-{i % 2}",
            t=DAY0 + (8 + i % 5) * 86400 + 20 * 3600 + i,
            score=1.0,
        )
        for i in range(14)
    ]


# -- the contract -------------------------------------------------------------------------


def _coerced_frame() -> Frame:
    rows, pressed = _coerced_world(0.7)
    return frame(rows + pressed)


#: For each registered detector, a frame where it has something to find.
FINDS: dict[str, Callable[[], Frame]] = {
    "burst": lambda: frame(population() + flood()),
    "episode": lambda: frame(population() + limited_flood()),
    "lockstep": lambda: frame(population() + device_farm()),
    "corating": lambda: frame(population() + crew()),
    "device_repeat": lambda: frame(population() + slow_brusher()),
    "ring": lambda: frame(population() + regulars() + ring()),
    "self_rating": lambda: frame(population() + staff_phone()),
    "coerced": _coerced_frame,
    "low_concentration": lambda: frame(population() + household()),
    "comment_duplicate": lambda: frame(population() + comment_bomb() + generic_complaints()),
    "low_shift": lambda: frame(population() + grudge()),
}


def test_every_registered_detector_has_a_frame_to_find_something_in() -> None:
    assert set(FINDS) == set(DETECTORS)
    for name, (cls, share) in DETECTORS.items():
        assert cls.name == name and share > 0
        assert cls.reason in REASONS, f"{name}: {cls.reason!r} is not in the catalogue"


@pytest.mark.parametrize("name", list(DETECTORS))
def test_detector_contract_like_pyod(name: str) -> None:
    cls, _ = DETECTORS[name]
    fr = FINDS[name]()
    det = cls(budget=0.001, fdr=0.05)
    assert det.fit(fr) is det
    assert len(det.labels_) == len(det.decision_scores_) == len(det.units_)
    assert set(np.unique(det.labels_)) <= {0, 1}
    assert (det.labels_ == (det.decision_scores_ >= det.threshold_)).all()
    assert det.labels_.any(), "nothing found on the frame made for it"
    before = det.threshold_
    flags = det.flags(fr)
    np.testing.assert_allclose(det.decision_function(fr), det.decision_scores_)
    assert det.threshold_ == before

    assert any(f.strength >= 1 for f in flags)
    rating_ids = set(fr.frame["rating_id"].tolist())
    scores = det.decision_scores_
    for f in flags:
        assert f.detector == name
        assert f.reason in REASONS
        assert f.threshold == det.threshold_
        assert f.score >= det.soft * det.threshold_  # strength >= soft (1 = at the threshold)
        assert np.isclose(scores, f.score).any()  # the score of one of its units
        assert f.rating_ids or f.case, "a flag holds ratings or opens a case"
        assert set(f.rating_ids) <= rating_ids
        assert len(set(f.rating_ids)) == len(f.rating_ids)
        assert re.fullmatch(r"[0-9a-f]{16}", f.fingerprint)
        assert f.explanation.endswith((".", ")"))
        # in words: what was seen against what is usual, never bare figures
        assert re.search(r"usual|by chance|predict|would", f.explanation), f.explanation
        assert ">=" not in f.explanation
        json.dumps(f.as_evidence())  # goes into a ledger event as it is
    assert len({f.fingerprint for f in flags}) == len(flags)
    # scoring another frame leaves the fit alone: same threshold, same findings
    det.decision_function(frame(population(seed=1, days=3)))
    assert det.threshold_ == before
    assert det.flags(fr) == flags


def _tiny(n: int) -> Frame:
    """The first ``n`` ratings of one (a low score with a comment), columns kept when empty."""
    raw = pd.DataFrame([row(t=DAY0 + 10 * 3600, score=1.0, comment="waited two hours, rude staff")])
    return prepare(raw.iloc[:n], rubric=DEFAULT_RUBRIC, tz=TZ, registry=REGISTRY)


@pytest.mark.parametrize("n", [0, 1], ids=["empty", "one-rating"])
@pytest.mark.parametrize("name", list(DETECTORS))
def test_detector_finds_nothing_in_an_empty_or_one_rating_frame(name: str, n: int) -> None:
    cls, _ = DETECTORS[name]
    fr = _tiny(n)
    det = cls(budget=0.001, fdr=0.05)
    assert det.fit(fr) is det
    assert len(det.labels_) == len(det.decision_scores_)
    assert not det.labels_.any()
    np.testing.assert_allclose(det.decision_function(fr), det.decision_scores_)
    assert det.flags(fr) == []


def test_bh_cutoff_is_the_line_at_the_last_rejection() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    assert bh_cutoff(p, 0.05) == pytest.approx(0.05 * 2 / 10)
    assert bh_cutoff(np.array([0.5, 0.9]), 0.05) == 0.0


def test_calibration_holds_about_the_budget_under_the_null() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(100_000)
    w = np.ones_like(p)
    alpha, info = calibrated_alpha(p, w, budget=0.003, total_ratings=100_000, fdr=1.0)
    assert alpha == pytest.approx(0.003)
    assert (p <= alpha).mean() == pytest.approx(0.003, rel=0.15)
    # BH at 5 % rejects nothing when every p-value is uniform
    alpha, info = calibrated_alpha(p, w, budget=0.003, total_ratings=100_000, fdr=0.05)
    assert alpha <= 0.003 and info["alpha_bh"] < 1e-3


# -- bursts and lockstep -----------------------------------------------------------------


def test_burst_fires_on_a_flood_from_outside_the_hall() -> None:
    rows, attack = population(), flood()
    assert ids(attack) <= held(BurstDetector(budget=0.001), frame(rows + attack))


def test_burst_holds_what_its_sources_sent_before_it_stood_out() -> None:
    """Four 5s from the flood's address in the 40 minutes before, one per bucket: none of
    those buckets is a burst, but they are the same episode."""
    rows, attack = population(), flood()
    t0 = DAY0 + 3 * 86400 + 20 * 3600
    early = [
        row(window="W2", ip="ip-x", t=t0 - 600 * (i + 1), delay=7200, score=5.0) for i in range(4)
    ]
    for i, r in enumerate(early):  # other devices, same address
        r["device_hash"] = f"early-{i}"
    hits = held(BurstDetector(budget=0.001), frame(rows + early + attack))
    assert ids(attack) | ids(early) <= hits


def test_episode_holds_what_the_limiter_admitted_before_and_between_its_refusals() -> None:
    rows, attack = population(), limited_flood()
    admitted = {r["rating_id"] for r in attack if r["status"] == "accepted"}
    assert 20 < len(admitted) < len(attack) / 2
    assert admitted <= held(EpisodeDetector(budget=0.001), frame(rows + attack))


def test_episode_ignores_a_family_that_tripped_a_per_device_limit() -> None:
    """Three tickets at one window from one phone in an afternoon: the third is refused
    (two per device and window a day); the first two are ordinary."""
    rows = population()
    t0 = DAY0 + 2 * 86400 + 15 * 3600
    fam = [
        {
            **row(window="W3", device="family-phone", ip="ip-fam", t=t0 + 300 * i, score=5.0),
            "status": "rejected" if i == 2 else "accepted",
            "reasons": "rate_limit.device_window" if i == 2 else "",
        }
        for i in range(3)
    ]
    assert not (ids(fam) & held(EpisodeDetector(budget=0.001), frame(rows + fam)))


def test_burst_leaves_as_many_as_ordinary_traffic_brings_counting() -> None:
    # a busy window, where about one rating from outside the crowd is usual per quarter
    # hour at 11:00: a flood from one address, and a citizen's own 5 in the same minutes
    rows = population(per_day=250)
    t0 = DAY0 + 3 * 86400 + 11 * 3600
    flood = [row(window="W2", ip="ip-x", t=t0 + 30 * i, delay=7200, score=5.0) for i in range(15)]
    citizen = [row(window="W2", t=t0 + 100, delay=7200, score=5.0)]
    det = BurstDetector(budget=0.001)
    fr = frame(rows + flood + citizen)
    det.fit(fr)
    (flag,) = [f for f in det.flags(fr) if f.strength >= 1 and f.unit.startswith("window:W2")]
    assert ids(flood) <= set(flag.rating_ids)
    assert not ids(citizen) & set(flag.rating_ids)
    assert "but the 1 least like it" in flag.explanation


def test_burst_ignores_the_same_crowd_on_hall_wifi_and_kiosks() -> None:
    rows = population()
    t0 = DAY0 + 3 * 86400 + 11 * 3600
    crowd = [row(window="W2", ip="ip-hall", t=t0 + 30 * i, delay=60, score=5.0) for i in range(8)]
    crowd += [
        row(window="W2", device="pad-W2", ip="ip-wired", t=t0 + 30 * i + 5, delay=10, score=5.0)
        for i in range(8)
    ]
    assert not (ids(crowd) & held(BurstDetector(budget=0.001), frame(rows + crowd)))


def test_lockstep_fires_on_many_devices_behind_one_address_on_one_window() -> None:
    rows, farm = population(), device_farm()
    assert ids(farm) <= held(LockstepDetector(budget=0.001), frame(rows + farm))


def test_lockstep_ignores_a_carrier_nat_address_spread_over_windows() -> None:
    rows = population()
    rng = np.random.default_rng(3)
    cgnat = [
        row(
            window=WINDOWS[i % 6],
            device=f"phone-{i}",
            ip="ip-cgnat",
            prefix="pfx-cgnat",
            t=DAY0 + 5 * 86400 + 9 * 3600 + 900 * i,
            score=float(s),
        )
        for i, s in enumerate(honest_scores(rng, 24))
    ]
    assert not (ids(cgnat) & held(LockstepDetector(budget=0.001), frame(rows + cgnat)))


def test_lockstep_holds_a_ring_behind_a_carrier_prefix_not_the_carriers_customers() -> None:
    # fourteen phones behind one carrier prefix rate W2 every evening for a week with 5s;
    # the carrier's customers rate windows by their popularity, W2 among them, once each
    rows = population()
    rng = np.random.default_rng(4)
    ring = [
        row(window="W2", device=f"ring-{j}", ip=f"ip-ring-{d}-{j}", prefix="pfx-carrier",
            t=DAY0 + d * 86400 + 20 * 3600 + 600 * j, score=5.0)
        for d in range(7)
        for j in range(14)
    ]  # fmt: skip
    customers = [
        row(window=WINDOWS[i % 6], device=f"cust-{i}", ip=f"ip-cust-{i}", prefix="pfx-carrier",
            t=DAY0 + (i % 7) * 86400 + 10 * 3600 + 300 * i, score=float(s))
        for i, s in enumerate(honest_scores(rng, 84))
    ]  # fmt: skip
    det = LockstepDetector(budget=0.001)
    fr = frame(rows + ring + customers)
    det.fit(fr)
    flags = [f for f in det.flags(fr) if f.strength >= 1]
    assert len(flags) == 7  # one block a day
    hit = {r for f in flags for r in f.rating_ids}
    # as many devices as exceed the ordinary count are held, the ring's (back every day) first
    assert len(hit & ids(ring)) >= 0.9 * len(ring)
    assert not hit & {r["rating_id"] for r in customers}
    assert "Held: the ratings of 13 of those devices" in flags[0].explanation


def city(c: int, days: int = 14, per_day: int = 12) -> list[dict[str, Any]]:
    """Ordinary traffic of one city's ten windows (``C<c>-W0`` ..): citizens at home, each
    behind one of the city's three carrier prefixes, which rate only this city's halls."""
    rng = np.random.default_rng(100 + c)
    rows = []
    for w in range(10):
        for d in range(days):
            n = rng.poisson(per_day)
            ts = DAY0 + d * 86400 + rng.uniform(9 * 3600, 20 * 3600, n)
            for t, s in zip(ts, honest_scores(rng, n), strict=True):
                rows.append(
                    row(window=f"C{c}-W{w}", prefix=f"pfx-C{c}-{rng.integers(3)}", t=t,
                        delay=rng.uniform(600, 8 * 3600), score=float(s))
                )  # fmt: skip
    return rows


def test_lockstep_judges_a_province_city_by_city() -> None:
    """Over a province, a carrier prefix's devices go to its own city's windows: each
    window's share is taken of its city's traffic (the windows its keys link), so a
    ledger of ten cities holds in each what that city's own ledger would, its farms and
    not its carriers' customers (against the province's traffic, every busy carrier's
    ordinary day at a window would look like a block)."""
    farm = [
        row(window="C0-W3", device=f"farm-{i}", ip="ip-idc", prefix="pfx-idc",
            t=DAY0 + 5 * 86400 + 13 * 3600 + 200 * i, score=5.0)
        for i in range(12)
    ]  # fmt: skip
    one = city(0) + farm
    province = one + [r for c in range(1, 10) for r in city(c)]
    det = LockstepDetector(budget=0.001)
    alone, within = held(det, frame(one)), held(det, frame(province))
    assert within == alone == ids(farm)  # nothing of the carriers' customers, anywhere
    flags = [f for f in det.flags(frame(province)) if f.strength >= 1]
    assert flags and all("share of the traffic of its area" in f.explanation for f in flags)


def test_corating_fires_on_devices_rating_one_window_in_the_same_evenings() -> None:
    rows, attack = population(), crew()
    assert ids(attack) <= held(CoRatingDetector(budget=0.001), frame(rows + attack))


def test_corating_ignores_regulars_on_their_own_schedules() -> None:
    rows = population()
    rng = np.random.default_rng(4)
    regulars = []
    for k in range(3):
        for d in sorted(rng.choice(14, 8, replace=False)):
            regulars.append(
                row(
                    window="W4",
                    device=f"agent-{k}",
                    t=DAY0 + d * 86400 + rng.uniform(9, 17) * 3600,
                    delay=120,
                    score=float(honest_scores(rng, 1)[0]),
                )
            )
    assert not (ids(regulars) & held(CoRatingDetector(budget=0.001), frame(rows + regulars)))


# -- devices -----------------------------------------------------------------------------


def test_device_repeat_fires_on_a_slow_brusher() -> None:
    rows, brush = population(), slow_brusher()
    assert ids(brush) <= held(DeviceRepeatDetector(budget=0.001), frame(rows + brush))


def test_device_repeat_ignores_an_agent_who_returns_eighteen_times() -> None:
    rows = population()
    rng = np.random.default_rng(5)
    agent = [
        row(
            window="W5",
            device="agent",
            t=DAY0 + (i % 14) * 86400 + 10 * 3600 + i * 60,
            delay=300,
            score=float(s),
        )
        for i, s in enumerate(honest_scores(rng, 18))
    ]
    assert not (ids(agent) & held(DeviceRepeatDetector(budget=0.001), frame(rows + agent)))


def test_ring_holds_devices_that_alone_look_like_citizens_who_always_give_5s() -> None:
    """At a window its regulars rate highly, each ring phone alone is within what
    yea-sayers do (device_repeat holds none); four of them at one window are not."""
    rows, attack = population() + regulars(), ring()
    fr = frame(rows + attack)
    assert not ids(attack) & held(DeviceRepeatDetector(budget=0.001), fr)
    det = RingDetector(budget=0.001)
    assert held(det, fr) == ids(attack)
    (f,) = [f for f in det.flags(fr) if f.strength >= 1]
    assert f.reason == "outlier.device_repeat" and f.unit == "window:W3"
    assert "4 of the 16 devices" in f.explanation and "by chance" in f.explanation


def test_ring_starts_from_the_device_units_device_repeat_scored_on_the_frame() -> None:
    """The device units are scored once per frame and parameters (the run fits both in
    one process): the ring's findings are those it finds fitted alone, and a
    device_repeat with other parameters shares nothing with it."""
    rows = population() + regulars() + ring()

    def found(det: Detector, fr: Frame) -> list[tuple[Any, ...]]:
        det.fit(fr)
        return [(f.fingerprint, f.rating_ids, f.score, f.threshold) for f in det.flags(fr)]

    alone = found(RingDetector(budget=0.001), frame(rows))
    fr = frame(rows)
    repeat = found(DeviceRepeatDetector(budget=0.001), fr)
    found(DeviceRepeatDetector(budget=0.001, min_ratings=5), fr)
    assert len(fr.meta) == 2  # one set of units per parameters
    assert found(RingDetector(budget=0.001), fr) == alone
    assert found(DeviceRepeatDetector(budget=0.001), fr) == repeat  # unchanged by the ring
    assert len(fr.meta) == 2


def test_ring_holds_a_phone_linked_to_it_in_time_not_a_fan_by_day() -> None:
    """A fifth phone with three 5s, each in the evening slot of a night the ring rated,
    is linked to the ring; a fan giving three 5s by day on the same days is not."""
    attack = ring()
    nights = [
        int((r["submitted_s"] - DAY0) // 86400)
        for r in attack
        if r["device_hash"] == "ring-0" and (r["submitted_s"] - DAY0) % 86400 >= 20 * 3600
    ][:3]
    fifth = [
        row(window="W3", device="ring-5", t=DAY0 + d * 86400 + 21.5 * 3600, delay=30000, score=5.0)
        for d in nights
    ]
    fan = [
        row(window="W3", device="fan", t=DAY0 + d * 86400 + 11 * 3600, delay=600, score=5.0)
        for d in nights
    ]
    fr = frame(population() + regulars() + attack + fifth + fan)
    det = RingDetector(budget=0.001)
    assert held(det, fr) == ids(attack) | ids(fifth)
    (f,) = det.flags(fr)
    assert "1 device(s) linked to it in time" in f.explanation and "ring-5" in f.explanation


def test_ring_ignores_regulars_and_lone_yea_sayers() -> None:
    """Regulars at two windows, and one phone giving 5s on eight evenings at each of
    four windows: no window has a group beyond what independent raters make."""
    lone = [r for w in ("W1", "W2", "W4", "W6") for r in ring(window=w, k=1)]
    for r in lone:
        r["device_hash"] = f"{r['device_hash']}-{r['window_id']}"
    fr = frame(population() + regulars() + regulars("W5", seed=8) + lone)
    assert held(RingDetector(budget=0.001), fr) == set()


def test_ring_sizes_and_members() -> None:
    # uniform p-values: no ring size is unlikely
    p = np.random.default_rng(3).random(30)
    assert ring_sizes(p).min() > 0.05
    assert len(ring_sizes(np.array([0.01]))) == 0
    # three devices at p 0.001 among twenty: P(Bin(20, 0.001) >= 3) * 19
    p = np.r_[[0.001] * 3, np.linspace(0.2, 1, 17)]
    q = ring_sizes(p)
    assert q.argmin() == 1  # size 3
    assert q[1] == pytest.approx(stats.binom.sf(2, 20, 0.001) * 19)
    assert ring_members(p, 0.05) == 3
    # a second, weaker group among the rest joins at the fdr, not an ordinary device
    p2 = np.r_[[1e-6] * 2, [0.003] * 2, np.linspace(0.3, 1, 12)]
    assert ring_sizes(p2).argmin() == 0  # the likeliest ring is the first two
    assert ring_members(p2, 0.05) == 4
    assert ring_members(p2, 1e-3) == 2


def test_device_repeat_low_side_is_bombing() -> None:
    rows = population()
    bomb = [
        row(window="W6", device="grudge", t=DAY0 + d * 86400 + 22 * 3600, score=1.0, comment="bad")
        for d in range(6)
    ]
    det = DeviceRepeatDetector(budget=0.001)
    det.fit(frame(rows + bomb))
    flags = [f for f in det.flags(frame(rows + bomb)) if f.strength >= 1]
    assert any(f.reason == "outlier.bombing" and set(f.rating_ids) == ids(bomb) for f in flags)


def test_self_rating_fires_on_a_phone_on_the_spot_all_day() -> None:
    rows, own = population(), staff_phone()
    assert ids(own) <= held(SelfRatingDetector(budget=0.001), frame(rows + own))


def test_self_rating_ignores_an_agent_rating_two_tickets_per_visit() -> None:
    rows = population()
    agent = []
    for d in range(10):
        for k in range(2):
            agent.append(
                row(
                    window="W1",
                    device="agent",
                    ip="ip-hall",
                    t=DAY0 + d * 86400 + 10 * 3600 + 300 * k,
                    delay=120,
                    score=4.6,
                )
            )
    assert not (ids(agent) & held(SelfRatingDetector(budget=0.001), frame(rows + agent)))


def test_kiosks_are_never_brushing_devices() -> None:
    rows = population()
    fr = frame(rows)
    for det in (
        DeviceRepeatDetector(budget=0.01),
        SelfRatingDetector(budget=0.01),
        CoRatingDetector(budget=0.01),
    ):
        hits = held(det, fr)
        assert not (hits & {r["rating_id"] for r in rows if r["device_hash"].startswith("pad-")})


# -- coerced -----------------------------------------------------------------------------


def _coerced_world(share: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = population(windows=WINDOWS[1:])
    rng = np.random.default_rng(7)
    pressed = []
    for d in range(14):
        for _ in range(30):
            t = DAY0 + d * 86400 + rng.uniform(9, 17) * 3600
            if d >= 4 and rng.random() < share:
                pressed.append(
                    row(
                        window="W1",
                        device="pad-W1",
                        ip="ip-wired",
                        t=t,
                        delay=rng.uniform(3, 25),
                        score=5.0,
                    )
                )
            else:
                rows.append(
                    row(
                        window="W1",
                        t=t + 7200,
                        delay=7200,
                        score=float(honest_scores(rng, 1, 3.8)[0]),
                    )
                )
    return rows, pressed


def test_coerced_window_is_a_case_and_its_pressed_ratings_are_held() -> None:
    rows, pressed = _coerced_world(0.7)
    fr = frame(rows + pressed)
    det = CoercedDetector(budget=0.001)
    det.fit(fr)
    flags = [f for f in det.flags(fr) if f.strength >= 1]
    assert [f.case for f in flags] == ["case:window:W1"]
    assert ids(pressed) <= set(flags[0].rating_ids)


def test_coerced_holds_each_pressed_window_s_own_ratings() -> None:
    # two windows pressed from different days: each is its own case, and each case holds
    # that window's pressed ratings and nothing of the other's
    rows, pressed = _coerced_world(0.7)
    other = WINDOWS[1]
    rng = np.random.default_rng(11)
    pressed_other = [
        row(window=other, device=f"pad-{other}", ip="ip-wired-2", t=t, delay=rng.uniform(3, 25),
            score=5.0)
        for d in range(7, 14)
        for t in DAY0 + d * 86400 + rng.uniform(9, 17, size=25) * 3600
    ]  # fmt: skip
    fr = frame(rows + pressed + pressed_other)
    det = CoercedDetector(budget=0.001)
    det.fit(fr)
    flags = {f.case: f for f in det.flags(fr) if f.strength >= 1}
    assert set(flags) == {"case:window:W1", f"case:window:{other}"}
    w1, w2 = set(flags["case:window:W1"].rating_ids), set(flags[f"case:window:{other}"].rating_ids)
    assert ids(pressed) <= w1 and len(w2 & ids(pressed_other)) >= 0.8 * len(pressed_other)
    window_of = {r["rating_id"]: r["window_id"] for r in rows + pressed + pressed_other}
    assert {window_of[i] for i in w1} == {"W1"} and {window_of[i] for i in w2} == {other}


def test_coerced_holds_first_what_is_least_like_unpressed_ratings() -> None:
    # pressed ratings come 15-25 s after service; the window's honest kiosk raters give
    # their usual scores (some all-5s) at the delays kiosk raters give everywhere (3-30 s)
    rows = population(windows=WINDOWS[1:])
    rng = np.random.default_rng(9)
    pressed, honest = [], []
    for d in range(14):
        for _ in range(40):
            t = DAY0 + d * 86400 + rng.uniform(9, 17) * 3600
            score = float(honest_scores(rng, 1)[0])
            if d >= 4 and rng.random() < 0.7:
                pressed.append(
                    row(window="W1", device="pad-W1", ip="ip-wired", t=t,
                        delay=rng.uniform(15, 25), score=5.0)
                )  # fmt: skip
            elif rng.random() < 0.6:
                (honest if d >= 4 else rows).append(
                    row(window="W1", device="pad-W1", ip="ip-wired", t=t,
                        delay=rng.uniform(3, 30), score=score)
                )  # fmt: skip
            else:
                rows.append(row(window="W1", t=t + 7200, delay=7200, score=score))
    fr = frame(rows + pressed + honest)
    det = CoercedDetector(budget=0.001)
    det.fit(fr)
    (flag,) = [f for f in det.flags(fr) if f.strength >= 1]
    hit = set(flag.rating_ids)
    assert len(hit & ids(pressed)) >= 0.9 * len(pressed)
    # honest all-5s at delays pressure never has are spared first
    unlike = {
        r["rating_id"]
        for r in honest
        if r["composite"] == 5.0 and r["submitted_s"] - r["served_s"] < 14
    }
    assert unlike and len(hit & unlike) <= 0.25 * len(unlike)
    assert "least like unpressed ratings first" in flag.explanation


def test_coerced_ignores_a_genuinely_excellent_window() -> None:
    rows = population(windows=WINDOWS[1:])
    rng = np.random.default_rng(8)
    for d in range(14):
        for _ in range(30):
            t = DAY0 + d * 86400 + rng.uniform(9, 17) * 3600
            s = 5.0 if rng.random() < 0.7 else 4.6
            fast = rng.random() < 0.5
            rows.append(
                row(
                    window="W1",
                    device="pad-W1" if fast else None,
                    t=t,
                    delay=10 if fast else 7200,
                    score=s,
                )
            )
    det = CoercedDetector(budget=0.001)
    fr = frame(rows)
    det.fit(fr)
    assert not [f for f in det.flags(fr) if f.strength >= 1]


# -- bombing -----------------------------------------------------------------------------


def test_low_concentration_fires_on_a_household_prefix() -> None:
    rows, bomb = population(), household()
    assert ids(bomb) <= held(LowConcentrationDetector(budget=0.001), frame(rows + bomb))


def test_near_duplicate_comments_on_one_staff_member() -> None:
    assert (
        jaccard(
            shingles("投诉07号，服务态度极差，拖延办理！"),
            shingles("再次投诉07号，服务态度极差，拖延办理。"),
        )
        >= 0.5
    )
    rows, bomb, generic = population(), comment_bomb(), generic_complaints()
    hits = held(CommentDuplicateDetector(budget=0.001), frame(rows + bomb + generic))
    assert ids(bomb) <= hits
    assert not (hits & ids(generic))


def test_low_shift_holds_repeated_sources_after_the_onset() -> None:
    rows, bomb = population(), grudge()
    hits = held(LowShiftDetector(budget=0.001), frame(rows + bomb))
    assert ids(bomb) <= hits


# -- combination -------------------------------------------------------------------------


def _flag(rids: tuple[int, ...], score: float, threshold: float = 4.0) -> Flag:
    return Flag("d", "outlier.x", "u", rids, score, threshold, {}, "why", f"fp{score}")


def test_a_generic_signal_never_holds_alone() -> None:
    sig = Signal("pyod", pd.Series([0.3, 0.3], index=[1, 2]))
    fair = Signal("fairness", pd.Series([0.3, 0.0], index=[1, 2]))
    v = combine([], [sig, fair])
    assert not v.hold
    assert 0 < v.risk[1] < 1


def test_combination_holds_at_threshold_or_on_agreeing_evidence() -> None:
    v = combine(
        [_flag((1,), 4.0), _flag((2,), 3.0)], [Signal("pyod", pd.Series([0.0, 0.3], index=[1, 2]))]
    )
    assert set(v.hold) == {1, 2}  # 1 at its threshold; 2: 0.375 and 0.3 together
    v = combine([_flag((3,), 2.0)])
    assert not v.hold and v.risk[3] == pytest.approx(0.25)
    assert all(0.0 <= r <= 1.0 for r in v.risk.values())


def test_pyod_signal_is_bounded_and_only_in_the_tail() -> None:
    fr = frame(population(days=7))
    sig = pyod_signal(fr, tail=0.05, weight=0.3)
    assert sig.risk.between(0.0, 0.3).all()
    assert (sig.risk > 0).mean() < 0.2


# -- risk for every rating ---------------------------------------------------------------


def test_the_prior_ranks_every_rating_and_never_holds() -> None:
    prior = Signal("prior", pd.Series([0.4, 0.1, 0.39], index=[1, 2, 3]))
    # a weak finding (risk 0.25) with the prior (0.4) would pass 0.5 if the prior counted
    v = combine([_flag((3,), 2.0)], [prior])
    assert not v.hold
    assert v.risk[3] == pytest.approx(0.25)  # the evidence the hold is judged on
    assert set(v.ranked.index) == {1, 2, 3}
    assert v.ranked[3] == pytest.approx(1 - 0.75 * 0.61)
    assert v.ranked[1] > v.ranked[2] and all(0 <= r < 0.5 for r in v.ranked[[1, 2]])
    assert v.recorded(3) == pytest.approx(v.ranked[3])


def test_the_prior_puts_a_brief_dissenter_above_an_established_regular() -> None:
    rows = population()
    # seen once, rating 1 where everyone else is content
    brief = [row(window="W2", device="newcomer", t=DAY0 + 3 * 86400 + 3600, score=1.0)]
    # a regular over two weeks who agrees with the windows
    regular = [
        row(window="W1", device="regular", t=DAY0 + d * 86400 + 10 * 3600, score=4.4)
        for d in range(14)
    ]
    fr = frame(rows + brief + regular)
    sig = prior_signal(fr, weight=0.4)
    assert sig.risk.between(0.0, 0.4).all()
    assert sig.risk[brief[0]["rating_id"]] > sig.risk[regular[0]["rating_id"]]
    kiosk_rows = [r["rating_id"] for r in rows if r["device_hash"].startswith("pad-")]
    assert (sig.risk[kiosk_rows] == 0).all()
