"""The rate-limit gate over the in-memory limiter: rule selection, subjects, days, kiosks."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from integrity.clock import FrozenClock
from integrity.errors import BackendUnavailable
from integrity.hook import combine
from integrity.model import Kiosk, Rating, Status, VenueRegistry, Verdict
from integrity.ports import GateContext, LimitCheck, LimitOutcome
from rules.ratelimit import MemoryLimiter, RateLimitGate
from rules.ratelimit.memory import epoch_ms
from rules.realtime import KioskGate
from rules.ruleset import default_ruleset, load_ruleset

REPLAY = GateContext(replay=True, rule_set_id="rs-test")
LIVE = GateContext(replay=False, rule_set_id="rs-test")
# 2024-05-01 10:00 in Shanghai (UTC+8)
T = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
_serial = itertools.count()

VENUE_REGISTRY = VenueRegistry(
    ip_hashes={"ip-hall": "H1"},
    prefix_hashes={"pfx-hall": "H1"},
    kiosks={"dev-pad": Kiosk(venue_id="H1", window_id="H1-W01", device_hash="dev-pad")},
)


def rating(
    at: datetime = T,
    *,
    device: str = "dev-1",
    ip: str = "ip-1",
    prefix: str = "pfx-1",
    window: str = "W1",
    fingerprint: str | None = None,
    received_at: datetime | None = None,
) -> Rating:
    n = next(_serial)
    return Rating(
        ticket_id=f"t{n}",
        window_id=window,
        staff_id=None,
        service_type="general",
        channel="qr",
        served_at=None,
        submitted_at=at,
        submitted_at_given=True,
        received_at=received_at or at,
        scores={"overall": 5},
        composite=5.0,
        comment=None,
        ip_hash=ip,
        prefix_hash=prefix,
        device_hash=device,
        fingerprint=fingerprint or f"fp{n}",
    )


def make_gate(
    text: str | None = None, registry: VenueRegistry | None = None, clock: FrozenClock | None = None
) -> tuple[RateLimitGate, MemoryLimiter]:
    ruleset = default_ruleset() if text is None else load_ruleset(text)
    limiter = MemoryLimiter(clock or FrozenClock(T), namespace="ns")
    return RateLimitGate(ruleset, limiter, registry or VenueRegistry(), "ns"), limiter


def rule_ids(gate: RateLimitGate, r: Rating) -> list[str]:
    return [rule.id for rule in gate.applicable_rules(r)]


# --- rule selection ------------------------------------------------------------------


def test_default_scope_rules_apply_to_an_ordinary_rating() -> None:
    gate, _ = make_gate(registry=VENUE_REGISTRY)
    assert rule_ids(gate, rating()) == [
        "device.burst",
        "device.day",
        "device_window.day",
        "ip.burst",
        "ip.hour",
        "prefix.burst",
    ]


@pytest.mark.parametrize(("ip", "prefix"), [("ip-hall", "pfx-1"), ("ip-other", "pfx-hall")])
def test_venue_address_swaps_ip_and_prefix_rules_for_venue_ones(ip: str, prefix: str) -> None:
    gate, _ = make_gate(registry=VENUE_REGISTRY)
    assert rule_ids(gate, rating(ip=ip, prefix=prefix)) == [
        "device.burst",
        "device.day",
        "device_window.day",
        "venue.ip.burst",
    ]


def test_registered_kiosk_swaps_device_rules_for_kiosk_ones() -> None:
    gate, _ = make_gate(registry=VENUE_REGISTRY)
    r = rating(device="dev-pad", ip="ip-hall", window="H1-W01")
    assert rule_ids(gate, r) == ["venue.ip.burst", "kiosk.burst", "kiosk.day"]


def test_scope_any_always_applies() -> None:
    text = """
timezone = "UTC"
[[limits]]
id = "ip.any"
key = "ip"
scope = "any"
window = 60
limit = 1
action = "hold"
[[limits]]
id = "dev.any"
key = "device"
scope = "any"
window = 60
limit = 1
action = "hold"
"""
    gate, _ = make_gate(text, registry=VENUE_REGISTRY)
    assert rule_ids(gate, rating()) == ["ip.any", "dev.any"]
    assert rule_ids(gate, rating(device="dev-pad", ip="ip-hall")) == ["ip.any", "dev.any"]


# --- keys and subjects ---------------------------------------------------------------


def test_keys_are_namespaced_versioned_and_dated() -> None:
    gate, _ = make_gate()
    r = rating(device="d", ip="i", prefix="p", window="W7")
    checks = {c.rule_id: c for c in gate.plan(r, REPLAY).checks}
    assert checks["device.burst"] == LimitCheck(
        "device.burst", "ns:v1:rl:device.burst:d", 600_000, 3, 600_000
    )
    assert checks["ip.hour"].key == "ns:v1:rl:ip.hour:i"
    assert checks["prefix.burst"].key == "ns:v1:rl:prefix.burst:p"
    assert checks["device.day"].key == "ns:v1:rl:device.day:d:2024-05-01"
    assert checks["device_window.day"].key == "ns:v1:rl:device_window.day:d:W7:2024-05-01"
    assert checks["device.day"].window_ms == 0


def test_device_window_counts_per_window() -> None:
    gate, _ = make_gate()
    # device_window.day: 2 per device and window per day; device.burst: 3 per 10 min
    times = [T + timedelta(minutes=11 * i) for i in range(5)]
    assert gate.check(rating(times[0], window="W1"), REPLAY) is None
    assert gate.check(rating(times[1], window="W1"), REPLAY) is None
    v = gate.check(rating(times[2], window="W1"), REPLAY)
    assert v is not None and v.reasons == ("rate_limit.device_window",)
    assert gate.check(rating(times[3], window="W2"), REPLAY) is None


def test_calendar_day_follows_the_rule_set_time_zone_across_utc_midnight() -> None:
    # Shanghai is UTC+8: 15:59 UTC is 23:59 local on May 1, 16:00 UTC is 00:00 on May 2,
    # although both are the same UTC day.
    gate, _ = make_gate()
    late = datetime(2024, 5, 1, 15, 59, tzinfo=UTC)
    next_day = datetime(2024, 5, 1, 16, 0, tzinfo=UTC)
    day_key = {c.rule_id: c for c in gate.plan(rating(late), REPLAY).checks}["device.day"]
    assert day_key.key.endswith(":2024-05-01")
    # ttl: until local midnight plus one day = 1 minute + 24 hours
    assert day_key.ttl_ms == (60 + 86_400) * 1000
    assert {c.rule_id: c for c in gate.plan(rating(next_day), REPLAY).checks}[
        "device_window.day"
    ].key.endswith(":2024-05-02")
    # Before UTC midnight in UTC, already the next day in Shanghai: a new bucket.
    assert gate.check(rating(late - timedelta(minutes=30)), REPLAY) is None
    assert gate.check(rating(late - timedelta(minutes=15)), REPLAY) is None
    v = gate.check(rating(late), REPLAY)
    assert v is not None and v.reasons == ("rate_limit.device_window",)
    assert v.retry_after_s == 60.0  # the bucket frees at local midnight
    assert v.evidence["rules"] == [
        {"rule": "device_window.day", "limit": 2, "window_s": "calendar_day", "retry_after_s": 60.0}
    ]
    assert gate.check(rating(next_day + timedelta(minutes=15)), REPLAY) is None


def test_same_utc_day_different_local_day_in_a_western_zone() -> None:
    text = """
timezone = "America/New_York"
[[limits]]
id = "d.day"
key = "device"
scope = "default"
window = "calendar_day"
limit = 1
action = "reject"
"""
    gate, _ = make_gate(text)
    # 2024-05-02 03:00 UTC is May 1, 23:00 in New York; 04:00 UTC is May 2, 00:00.
    a = datetime(2024, 5, 2, 3, 0, tzinfo=UTC)
    assert gate.check(rating(a), REPLAY) is None
    assert gate.check(rating(a + timedelta(minutes=59)), REPLAY) is not None
    assert gate.check(rating(a + timedelta(hours=1)), REPLAY) is None


# --- verdicts ------------------------------------------------------------------------


def test_burst_is_rejected_with_evidence_and_retry_after() -> None:
    gate, _ = make_gate()
    for i in range(3):
        assert gate.check(rating(T + timedelta(seconds=i * 60), window=f"W{i}"), REPLAY) is None
    v = gate.check(rating(T + timedelta(seconds=200), window="W9"), REPLAY)
    assert v == Verdict(
        status=Status.REJECTED,
        reasons=("rate_limit.device",),
        evidence={
            "rules": [{"rule": "device.burst", "limit": 3, "window_s": 600, "retry_after_s": 400.0}]
        },
        retry_after_s=400.0,
    )


def test_hold_only_failures_hold_and_mixed_failures_reject() -> None:
    gate, _ = make_gate()
    # ip.burst (hold): 20 per 10 minutes from one address, on distinct devices
    for i in range(20):
        assert gate.check(rating(T + timedelta(seconds=i), device=f"d{i}"), REPLAY) is None
    v = gate.check(rating(T + timedelta(seconds=30), device="fresh"), REPLAY)
    assert v is not None and v.status is Status.HELD and v.reasons == ("rate_limit.ip",)
    assert v.retry_after_s == 570.0
    # now also break device.burst (reject) on the same address: rejected, both reasons
    for i in range(3):
        assert gate.check(rating(T, device="busy", ip=f"o{i}", window=f"W{i}"), REPLAY) is None
    v = gate.check(rating(T + timedelta(seconds=31), device="busy"), REPLAY)
    assert v is not None and v.status is Status.REJECTED
    assert v.reasons == ("rate_limit.device", "rate_limit.ip")
    assert {e["rule"] for e in v.evidence["rules"]} == {"device.burst", "ip.burst"}
    assert v.retry_after_s == 600 - 31


def test_an_identical_retry_passes_again() -> None:
    gate, _ = make_gate()
    r = rating(fingerprint="same")
    assert gate.check(r, REPLAY) is None
    for _ in range(5):
        assert gate.check(r, REPLAY) is None


def test_kiosk_on_its_own_window_passes() -> None:
    gate, _ = make_gate(registry=VENUE_REGISTRY)
    assert gate.check(rating(device="dev-pad", window="H1-W01"), REPLAY) is None


def gates_with_kiosk(registry: VenueRegistry) -> Callable[[Rating], Verdict | None]:
    """The rate-limit gate and the kiosk gate over one registry, combined as the hook does."""
    gate, _ = make_gate(registry=registry)
    kiosk = KioskGate(gate.venues)
    return lambda r: combine([gate.check(r, REPLAY), kiosk.check(r, REPLAY)])


def test_kiosk_on_another_window_is_held() -> None:
    v = gates_with_kiosk(VENUE_REGISTRY)(rating(device="dev-pad", window="H1-W02"))
    assert v is not None and v.status is Status.HELD
    assert v.reasons == ("kiosk.wrong_window",)
    assert v.evidence["kiosk"] == {
        "venue_id": "H1",
        "registered_window_id": "H1-W01",
        "rated_window_id": "H1-W02",
    }
    assert v.retry_after_s is None


def test_kiosk_wrong_window_combines_with_a_rejecting_limit() -> None:
    check = gates_with_kiosk(VENUE_REGISTRY)
    # kiosk.burst: 2 per minute, reject
    assert check(rating(T, device="dev-pad", window="H1-W01")) is None
    assert check(rating(T, device="dev-pad", window="H1-W01")) is None
    v = check(rating(T + timedelta(seconds=10), device="dev-pad", window="H1-W02"))
    assert v is not None and v.status is Status.REJECTED
    assert v.reasons == ("kiosk.wrong_window", "rate_limit.device")
    assert v.retry_after_s == 50.0


# --- replay and live -----------------------------------------------------------------


def test_replay_judges_at_submitted_at_and_live_at_the_limiter_clock() -> None:
    clock = FrozenClock(T + timedelta(days=30))
    gate, _ = make_gate(clock=clock)
    for i in range(3):
        assert gate.check(rating(T + timedelta(seconds=i), window=f"W{i}"), REPLAY) is None
    # live: the limiter's clock is a month later, so the burst window is empty again
    assert gate.check(rating(T + timedelta(seconds=3), window="W5"), LIVE) is None
    assert gate.plan(rating(), LIVE).at_ms is None
    assert gate.plan(rating(), REPLAY).at_ms == epoch_ms(T)


def test_live_calendar_day_is_the_day_of_receipt() -> None:
    gate, _ = make_gate()
    # submitted (client time) just before local midnight, received just after it
    r = rating(
        datetime(2024, 5, 1, 15, 59, 50, tzinfo=UTC),
        received_at=datetime(2024, 5, 1, 16, 0, 5, tzinfo=UTC),
    )
    live = {c.rule_id: c.key for c in gate.plan(r, LIVE).checks}
    replay = {c.rule_id: c.key for c in gate.plan(r, REPLAY).checks}
    assert live["device.day"].endswith(":2024-05-02")
    assert replay["device.day"].endswith(":2024-05-01")


def test_check_many_equals_check_one_by_one() -> None:
    ratings = [
        rating(T + timedelta(seconds=7 * i), device=f"d{i % 2}", window=f"W{i % 3}")
        for i in range(12)
    ]
    ratings.append(dataclasses.replace(ratings[0]))  # an identical retry
    one, _ = make_gate(registry=VENUE_REGISTRY)
    many, _ = make_gate(registry=VENUE_REGISTRY)
    expected = [one.check(r, REPLAY) for r in ratings]
    assert many.check_many(ratings, REPLAY) == expected
    assert any(v is not None for v in expected) and any(v is None for v in expected)


def _replay_days(gate: RateLimitGate, days: int, per_day: int) -> list[Verdict | None]:
    """Replay ``days`` days of ``per_day`` ratings each (devices, addresses and windows
    recurring across days, bursts included), one ``check_many`` a day."""
    verdicts: list[Verdict | None] = []
    for day in range(days):
        start = T + timedelta(days=day)
        batch = [
            rating(
                start + timedelta(seconds=400 * i),
                device=f"dev-{(day * 37 + i) % 400}",
                ip=f"ip-{(day * 11 + i) % 90}",
                prefix=f"pfx-{i % 15}",
                window=f"W{i % 6}",
            )
            for i in range(per_day)
        ]
        batch += [dataclasses.replace(batch[0], fingerprint=f"burst-{day}-{k}") for k in range(4)]
        verdicts.extend(gate.check_many(batch, REPLAY))
    return verdicts


def test_a_long_replay_holds_what_its_busiest_days_need(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Replayed keys are dropped by replayed time: a 60-day replay holds a few days'
    entries, not sixty days' (the clock never moves here), and decides exactly as an
    unbounded limiter."""
    from rules.ratelimit import memory
    from rules.ratelimit.rebuild import replay_lateness_ms

    monkeypatch.setattr(memory, "_SWEEP_EVERY", 200)  # sweep often: a tight bound
    per_day = 200
    unbounded, free = make_gate()
    bounded, kept = make_gate()
    kept.bound_replay(replay_lateness_ms(bounded))

    expected = _replay_days(unbounded, 60, per_day)
    assert _replay_days(bounded, 60, per_day) == expected
    assert any(v is not None for v in expected) and any(v is None for v in expected)
    # each rating puts at most one entry in each of its ~6 keys; keys live through their
    # day, the next and ~2 more (the lateness allowed): at most 6 days of ratings
    six_days = 6 * (per_day + 4) * len(bounded.plan(rating(), REPLAY).checks)
    assert kept.size() <= six_days
    # the clock alone drops nothing in a replay: sixty days' worth
    assert free.size() > 3 * six_days
    assert kept.keys() < free.keys() / 4


def test_a_replay_bound_leaves_a_late_hit_within_the_lateness_unchanged() -> None:
    """A replayed hit up to the lateness behind the latest one still sees its keys."""
    from rules.ratelimit.rebuild import replay_lateness_ms

    gate, limiter = make_gate()
    limiter.bound_replay(replay_lateness_ms(gate))
    late = [rating(T + timedelta(seconds=i), device="dev-late", window=f"W{i}") for i in range(3)]
    assert gate.check_many(late, REPLAY) == [None, None, None]
    # the replay runs two days on (other devices), then the late device comes back
    _replay_days(gate, 2, 60)
    again = rating(T + timedelta(seconds=10), device="dev-late", window="W9")
    verdict = gate.check(again, REPLAY)
    assert verdict is not None and verdict.reasons == ("rate_limit.device",)


def test_backend_unavailable_propagates() -> None:
    class DeadLimiter:
        def hit(self, checks: Sequence[LimitCheck], member: str, at_ms: int | None) -> LimitOutcome:
            raise BackendUnavailable("down")

        def hit_many(
            self, calls: Sequence[tuple[Sequence[LimitCheck], str, int | None]]
        ) -> list[LimitOutcome]:
            raise BackendUnavailable("down")

        def reset(self) -> None:
            pass

    gate = RateLimitGate(default_ruleset(), DeadLimiter(), VenueRegistry(), "ns")
    assert (gate.name, gate.unavailable_reason) == ("rate_limit", "limiter_unavailable")
    with pytest.raises(BackendUnavailable):
        gate.check(rating(), LIVE)
    with pytest.raises(BackendUnavailable):
        gate.check_many([rating()], LIVE)


# --- receipts: what a release gives back ---------------------------------------------


def test_release_gives_back_exactly_what_the_check_took() -> None:
    gate, limiter = make_gate()
    first = rating(device="dev-r")
    ctx = GateContext(replay=True, rule_set_id="rs-test")
    assert gate.check(first, ctx) is None
    assert ctx.taken[("rate_limit", first.fingerprint)]  # every key was new
    held = limiter.size()

    retry_ctx = GateContext(replay=True, rule_set_id="rs-test")
    assert gate.check(first, retry_ctx) is None  # the member is there: a retry
    assert retry_ctx.taken[("rate_limit", first.fingerprint)] == ()
    gate.release(first, retry_ctx)
    assert limiter.size() == held  # the original's slots stay

    gate.release(first, ctx)
    assert limiter.size() == 0
    gate.release(first, ctx)  # a receipt is used once; without one nothing is released
    assert limiter.size() == 0


def test_a_refused_check_leaves_nothing_to_release() -> None:
    gate, limiter = make_gate()
    ctx = GateContext(replay=True, rule_set_id="rs-test")
    rs = [rating(T + timedelta(seconds=i), device="dev-q", window=f"W{i}") for i in range(4)]
    verdicts = gate.check_many(rs, ctx)
    assert [v is None for v in verdicts] == [True, True, True, False]
    assert ctx.taken[("rate_limit", rs[3].fingerprint)] == ()
    before = limiter.size()
    gate.release(rs[3], ctx)
    assert limiter.size() == before
