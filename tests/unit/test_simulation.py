"""Tests for the simulation package: determinism, conformance to the rating format, ground truth,
attack switches, and the honest crowds that must look suspicious without being so."""

from __future__ import annotations

import csv
import functools
import ipaddress
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrity.model import CHANNELS, DEFAULT_RUBRIC
from simulation import ATTACK_KINDS, KINDS, World, WorldConfig, main, simulate

DOC_NETS = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
]
RFC3339 = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?"
    r"([+-]([01]\d|2[0-3]):[0-5]\d|Z)$"
)
REQUIRED = {"ticket_id", "window_id", "scores", "ip", "device_id"}
ALLOWED = REQUIRED | {
    "staff_id",
    "service_type",
    "channel",
    "served_at",
    "submitted_at",
    "comment",
}
KIND_OF_SWITCH = {k: ("replay_duplicate" if k == "replay" else k) for k in ATTACK_KINDS}
NOT_ATTACKS = {"honest", "identical_retry"}

# A smaller world than the default, still with every attack, for the switch tests.
SMALL = {"seed": 11, "halls": 2, "days": 28, "honest_ratings": 8000}


@pytest.fixture(scope="module")
def world() -> World:
    return simulate(WorldConfig(seed=7))


@pytest.fixture(scope="module")
def small() -> World:
    return simulate(WorldConfig(**SMALL))


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


@functools.cache
def address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    a = ipaddress.ip_address(text)
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


def honest_rows(w: World) -> list[dict[str, Any]]:
    return [r for r, lab in zip(w.ratings, w.truth, strict=True) if lab.kind == "honest"]


def venue_networks(w: World) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n) for v in w.venues["venues"] for n in v["networks"]]


def in_venue(w: World) -> Any:
    """A cached test: is this address text inside a registered venue network?"""
    nets = venue_networks(w)

    @functools.cache
    def check(text: str) -> bool:
        a = address(text)
        return any(a in n for n in nets if n.version == a.version)

    return check


def kiosk_devices(w: World) -> set[str]:
    return {k["device_id"] for v in w.venues["venues"] for k in v["kiosk_devices"]}


def check_contract(r: dict[str, Any]) -> None:
    assert REQUIRED <= set(r) <= ALLOWED, set(r) ^ ALLOWED
    for key, lo, hi in (
        ("ticket_id", 1, 128),
        ("window_id", 1, 64),
        ("staff_id", 1, 64),
        ("service_type", 1, 64),
        ("device_id", 1, 128),
    ):
        if key in r:
            assert isinstance(r[key], str) and lo <= len(r[key]) <= hi, (key, r)
    assert r.get("channel", "qr") in CHANNELS
    assert set(r["scores"]) == set(DEFAULT_RUBRIC.dimensions)
    for v in r["scores"].values():
        assert type(v) is int and 1 <= v <= 5
    for key in ("served_at", "submitted_at"):
        if key in r:  # the pattern demands an offset; parsing is checked where times are compared
            assert RFC3339.match(r[key]), r[key]
    if "comment" in r:
        assert isinstance(r["comment"], str) and len(r["comment"]) <= 2000
    ipaddress.ip_address(r["ip"])  # raises on anything that is not an address


# ---- determinism ------------------------------------------------------------------------


def _files(w: World, d: Path) -> dict[str, bytes]:
    d.mkdir()
    w.to_jsonl(d / "ratings.jsonl")
    w.venues_json(d / "venues.json")
    w.truth_csv(d / "truth.csv")
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_same_config_gives_byte_identical_files(tmp_path: Path) -> None:
    cfg = WorldConfig(seed=5, days=10, honest_ratings=3000)
    a = _files(simulate(cfg), tmp_path / "a")
    b = _files(simulate(WorldConfig(seed=5, days=10, honest_ratings=3000)), tmp_path / "b")
    assert a == b
    c = _files(simulate(WorldConfig(seed=6, days=10, honest_ratings=3000)), tmp_path / "c")
    assert c["ratings.jsonl"] != a["ratings.jsonl"]


def test_jsonl_lines_are_the_ratings(small: World, tmp_path: Path) -> None:
    small.to_jsonl(tmp_path / "r.jsonl")
    lines = (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == small.ratings


# ---- the rating format ------------------------------------------------------------------------


def test_every_rating_satisfies_the_contract(world: World) -> None:
    for r in world.ratings:
        check_contract(r)


def test_sorted_by_submitted_at_and_honest_served_first(world: World) -> None:
    subs = [ts(r["submitted_at"]) for r in world.ratings]
    assert subs == sorted(subs)
    assert subs[0] >= WorldConfig().start
    for r, lab in zip(world.ratings, world.truth, strict=True):
        if lab.kind in NOT_ATTACKS:
            assert "served_at" in r
            assert ts(r["served_at"]) <= ts(r["submitted_at"])


def test_every_address_is_in_a_documentation_range(world: World) -> None:
    for ip in {r["ip"] for r in world.ratings}:
        a = address(ip)
        assert any(a in net for net in DOC_NETS if net.version == a.version), ip
    for net in venue_networks(world):
        assert any(net.subnet_of(d) for d in DOC_NETS if d.version == net.version), net


def test_timestamps_in_the_configured_zone() -> None:
    w = simulate(
        WorldConfig(seed=1, days=3, honest_ratings=300, start=datetime(2026, 3, 2, tzinfo=UTC))
    )
    assert w.ratings
    assert all(r["submitted_at"].endswith("+00:00") for r in w.ratings)


# ---- truth ------------------------------------------------------------------------------


def test_truth_is_aligned_and_well_formed(world: World, tmp_path: Path) -> None:
    assert len(world.truth) == len(world.ratings) == len(world)
    ids = {a.attack_id: a for a in world.attacks}
    for r, lab in zip(world.ratings, world.truth, strict=True):
        assert lab.kind in KINDS
        if lab.kind in NOT_ATTACKS:
            assert lab.attack_id is None and not lab.is_attack
            continue
        assert lab.is_attack and lab.attack_id in ids
        assert lab.target_window == r["window_id"]
        if lab.target_staff is not None and "staff_id" in r:
            assert r["staff_id"] == lab.target_staff
    per_attack = Counter(lab.attack_id for lab in world.truth if lab.attack_id)
    assert per_attack == {a.attack_id: a.ratings for a in world.attacks if a.ratings}
    world.truth_csv(tmp_path / "truth.csv")
    with open(tmp_path / "truth.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(world.ratings)
    for i in range(0, len(rows), 97):
        assert rows[i]["line"] == str(i + 1)
        assert rows[i]["ticket_id"] == world.ratings[i]["ticket_id"]
        assert rows[i]["kind"] == world.truth[i].kind
        assert rows[i]["attack_id"] == (world.truth[i].attack_id or "")


def test_every_kind_present_in_the_default_world(world: World) -> None:
    counts = world.counts()
    assert set(counts) == set(KINDS)
    assert all(counts[k] > 0 for k in KINDS), counts
    assert 20_000 <= counts["honest"] <= 30_000


@pytest.mark.parametrize("switch", ATTACK_KINDS)
def test_attack_switched_off_is_absent_and_leaves_the_rest(switch: str, small: World) -> None:
    assert small.counts()[KIND_OF_SWITCH[switch]] > 0
    off = simulate(WorldConfig(**SMALL, **{switch: 0.0}))
    counts = off.counts()
    assert counts[KIND_OF_SWITCH[switch]] == 0
    assert not any(a.kind == switch for a in off.attacks)
    for other in ATTACK_KINDS:
        if other != switch:
            assert counts[KIND_OF_SWITCH[other]] > 0, (other, counts)
    if switch != "coerced":  # coercion replaces honest ratings; nothing else touches them
        assert honest_rows(off) == honest_rows(small)


def test_everything_off_leaves_honest_traffic_only() -> None:
    off = {k: 0.0 for k in (*ATTACK_KINDS, "identical_retries")}
    w = simulate(WorldConfig(**SMALL, **off))
    assert set(k for k, n in w.counts().items() if n) == {"honest"}
    assert w.attacks == [] and w.coerced_windows == set()


def test_intensity_scales_volume() -> None:
    lo = simulate(WorldConfig(**SMALL, flood=0.5)).counts()["flood"]
    hi = simulate(WorldConfig(**SMALL, flood=3.0)).counts()["flood"]
    assert hi > 2 * lo > 0


# ---- tickets ----------------------------------------------------------------------------


def test_ticket_ids_unique_except_replays_and_retries(world: World) -> None:
    by_ticket: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(world.ratings):
        by_ticket[r["ticket_id"]].append(i)
    for idx in by_ticket.values():
        if len(idx) == 1:
            continue
        kinds = [world.truth[i].kind for i in idx]
        first = [k for k in kinds if k not in ("replay_duplicate", "identical_retry")]
        assert len(first) == 1, kinds  # one original, the rest are replays / retries
        original = world.ratings[idx[kinds.index(first[0])]]
        for i, k in zip(idx, kinds, strict=True):
            if k == "identical_retry":
                assert world.ratings[i] == original
                assert i > idx[kinds.index(first[0])]
            elif k == "replay_duplicate":
                assert world.ratings[i] != original
                assert ts(world.ratings[i]["submitted_at"]) > ts(original["submitted_at"])


# ---- honest crowds that look suspicious -------------------------------------------------


def test_hall_wifi_addresses_are_shared_by_many_honest_devices(world: World) -> None:
    venue = in_venue(world)
    devices: dict[str, set[str]] = defaultdict(set)
    for r in honest_rows(world):
        if r["channel"] != "kiosk" and venue(r["ip"]):
            devices[str(address(r["ip"]))].add(r["device_id"])
    assert max(len(d) for d in devices.values()) >= 100
    assert any(ipaddress.ip_address(ip).version == 6 for ip in devices)  # the hall's IPv6 /64


def test_kiosks_rate_many_tickets_a_day(world: World) -> None:
    kiosks = kiosk_devices(world)
    assert len(kiosks) == 18  # one pad per window
    per_day: Counter[tuple[str, str]] = Counter()
    per_kiosk: Counter[str] = Counter()
    for r, lab in zip(world.ratings, world.truth, strict=True):
        if r["channel"] == "kiosk" and lab.kind in ("honest", "coerced"):
            assert r["device_id"] in kiosks
            per_day[(r["device_id"], r["submitted_at"][:10])] += 1
            per_kiosk[r["device_id"]] += 1
    assert max(per_day.values()) >= 25
    assert min(per_kiosk.values()) >= 150


def test_carrier_nat_addresses_are_shared_by_unrelated_devices(world: World) -> None:
    venue = in_venue(world)
    devices: dict[str, set[str]] = defaultdict(set)
    for r in honest_rows(world):
        a = address(r["ip"])
        if a.version == 4 and not venue(r["ip"]):
            devices[str(a)].add(r["device_id"])
    shared = [ip for ip, d in devices.items() if len(d) >= 30]
    assert len(shared) >= 10, sorted(len(d) for d in devices.values())[-10:]


def test_returning_citizens_ipv6_and_mapped_addresses(world: World) -> None:
    days: dict[tuple[str, str], set[str]] = defaultdict(set)
    kiosks = kiosk_devices(world)
    kinds = Counter()
    for r in honest_rows(world):
        if r["device_id"] not in kiosks:
            days[(r["device_id"], r["window_id"])].add(r["served_at"][:10])
        a = ipaddress.ip_address(r["ip"])
        kinds["mapped" if a.version == 6 and a.ipv4_mapped else f"v{a.version}"] += 1
    returning = [k for k, d in days.items() if len(d) >= 2]
    assert len(returning) >= 100
    assert max(len(d) for d in days.values()) >= 6  # agents who come several times a week
    assert kinds["v6"] > 0.1 * sum(kinds.values())
    assert kinds["mapped"] > 0


def test_honest_scores_are_realistic(world: World) -> None:
    rows = honest_rows(world)
    comp = [DEFAULT_RUBRIC.composite(r["scores"]) for r in rows]
    low = sum(c < 3.0 for c in comp) / len(comp)
    assert 0.03 <= low <= 0.08
    assert abs(world.honest_low_share() - low) < 1e-12
    straight = sum(len(set(r["scores"].values())) == 1 for r in rows) / len(rows)
    assert 0.2 <= straight <= 0.7  # many straight-liners, far from all of them
    by_window: dict[str, list[float]] = defaultdict(list)
    for r, c in zip(rows, comp, strict=True):
        by_window[r["window_id"]].append(c)
    lows = sorted(sum(x < 3.0 for x in v) / len(v) for v in by_window.values())
    assert lows[-1] >= 2 * lows[len(lows) // 2]  # some windows are genuinely worse
    assert sum("comment" in r for r in rows) / len(rows) > 0.02
    assert 0.0 < sum("staff_id" not in r for r in rows) / len(rows) < 0.3


def test_seasonality_and_delays(world: World) -> None:
    rows = honest_rows(world)
    served = [ts(r["served_at"]) for r in rows]
    assert all(s.weekday() != 6 for s in served)  # closed on Sundays
    hours = Counter(s.hour for s in served)
    assert sum(hours[h] for h in range(9, 18)) / len(served) > 0.99
    assert hours[10] > hours[12] and hours[14] > hours[12]  # lunch dip
    delay = defaultdict(list)
    for r in rows:
        delay[r["channel"]].append((ts(r["submitted_at"]) - ts(r["served_at"])).total_seconds())
    assert max(delay["kiosk"]) < 300
    app = sorted(delay["app"])
    assert app[len(app) // 2] > 600 and app[-1] > 3 * 86400  # minutes to days, heavy tail


# ---- world helpers ----------------------------------------------------------------------


def test_honest_window_scores_and_coerced_windows(world: World) -> None:
    truth = world.honest_window_scores()
    sums: dict[str, list[float]] = defaultdict(list)
    for r in honest_rows(world):
        sums[r["window_id"]].append(DEFAULT_RUBRIC.composite(r["scores"]))
    assert set(truth) == set(sums) == set(world.window_ids)
    for w, v in sums.items():
        assert truth[w] == pytest.approx(sum(v) / len(v))
    assert world.coerced_windows and world.coerced_windows <= set(world.window_ids)
    naive: dict[str, list[float]] = defaultdict(list)
    for r in world.ratings:
        naive[r["window_id"]].append(DEFAULT_RUBRIC.composite(r["scores"]))
    for w in world.coerced_windows:
        assert sum(naive[w]) / len(naive[w]) > truth[w] + 0.2  # coercion distorts


def test_venues_in_the_registry_format(world: World) -> None:
    venues = world.venues["venues"]
    assert [v["venue_id"] for v in venues[:3]] == ["H1", "H2", "H3"]
    for v in venues:
        assert set(v) == {"venue_id", "networks", "kiosk_devices"}
        for k in v["kiosk_devices"]:
            assert set(k) == {"window_id", "device_id"}
            assert k["window_id"].startswith(v["venue_id"] + "-")
    json.dumps(world.venues)


def test_attack_signatures(world: World) -> None:
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    honest_tickets = {r["ticket_id"] for r in honest_rows(world)}
    for r, lab in zip(world.ratings, world.truth, strict=True):
        if lab.attack_id:
            rows[lab.attack_id].append(r)
    for a in world.attacks:
        rs = rows[a.attack_id]
        assert rs, a
        subs = [ts(r["submitted_at"]) for r in rs]
        devices = {r["device_id"] for r in rs}
        ips = {str(address(r["ip"])) for r in rs}
        all5 = sum(set(r["scores"].values()) == {5} for r in rs) / len(rs)
        delays = [
            (ts(r["submitted_at"]) - ts(r["served_at"])).total_seconds()
            for r in rs
            if "served_at" in r
        ]
        if a.kind == "flood":
            assert len(ips) == 1 and (max(subs) - min(subs)).total_seconds() < 3 * 3600
        elif a.kind == "device_farm":
            prefixes = {
                ipaddress.ip_network(f"{ip}/{64 if ':' in ip else 24}", strict=False) for ip in ips
            }
            assert len(devices) >= 20 and len(prefixes) == 1
        elif a.kind == "coerced":
            assert all5 > 0.85 and max(delays) < 180
        elif a.kind == "self_rating":
            assert len(devices) <= 2 and all(60 <= d <= 600 for d in delays)
            assert {r["staff_id"] for r in rs} == {a.target_staff}
        elif a.kind == "brushing_slow":
            per_day = Counter((r["device_id"], r["submitted_at"][:10]) for r in rs)
            assert len(devices) <= 8 and max(per_day.values()) <= 2
            assert (max(subs) - min(subs)).days >= 7
        elif a.kind == "bombing":
            assert len(devices) <= 8 and all(max(r["scores"].values()) <= 2 for r in rs)
            comments = [r["comment"] for r in rs if "comment" in r]
            assert len(comments) >= 3 and len(set(comments)) < len(comments)
        elif a.kind == "replay":
            assert all(r["ticket_id"] in honest_tickets for r in rs)


# ---- edges, CLI -------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/St_Johns", "Asia/Kathmandu", "UTC"])
def test_time_formatting_matches_isoformat(zone: str) -> None:
    from zoneinfo import ZoneInfo

    import numpy as np

    from simulation.output import _format_times

    tz = ZoneInfo(zone)
    # random instants, plus St John's 2005 transition at 00:01 local (inside a 15-min bucket)
    t = np.concatenate([np.random.default_rng(1).integers(0, 2**32, 3000), [1112499217]])
    expected = [datetime.fromtimestamp(x, tz).isoformat() for x in t.tolist()]
    assert _format_times(t, tz) == expected


def test_address_and_id_formatting() -> None:
    import numpy as np

    from simulation.output import _format_ids, _format_ips

    rng = np.random.default_rng(2)
    n = 2000
    hi = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    lo = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    lo[:50] = 0  # zero runs need "::"
    ipk = rng.integers(0, 3, n).astype(np.int8)
    ip4 = rng.integers(0, 2**32, n)
    text = _format_ips(ipk, ip4, hi, lo)
    for i, x in enumerate(text):
        a = ipaddress.ip_address(x)
        if ipk[i] == 1:
            assert str(a) == x and int(a) == (int(hi[i]) << 64) | int(lo[i])
        elif ipk[i] == 2:
            assert x.startswith("::ffff:") and int(a.ipv4_mapped) == ip4[i]  # type: ignore[union-attr,arg-type]
        else:
            assert int(a) == ip4[i]
    assert _format_ids(hi, lo) == [
        f"{a:016x}{b:016x}" for a, b in zip(hi.tolist(), lo.tolist(), strict=True)
    ]


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="aware"):
        WorldConfig(start=datetime(2026, 10, 1))
    with pytest.raises(ValueError, match="halls"):
        WorldConfig(halls=500)
    with pytest.raises(ValueError, match="flood"):
        WorldConfig(flood=-1)


def test_benchmark_config_is_sized_for_a_million() -> None:
    cfg = WorldConfig.benchmark(seed=1)
    assert 900_000 <= cfg.honest_ratings <= 1_000_000
    assert cfg.halls * cfg.windows_per_hall >= 600  # realistic load per window


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**40),
    days=st.integers(1, 6),
    halls=st.integers(1, 2),
    windows=st.integers(1, 3),
    honest=st.integers(0, 400),
    intensity=st.sampled_from([0.0, 0.3, 1.0, 2.0]),
)
def test_small_worlds_hold_the_invariants(
    seed: int, days: int, halls: int, windows: int, honest: int, intensity: float
) -> None:
    cfg = WorldConfig(
        seed=seed,
        days=days,
        halls=halls,
        windows_per_hall=windows,
        honest_ratings=honest,
        **{k: intensity for k in ATTACK_KINDS},
    )
    w = simulate(cfg)
    assert len(w.truth) == len(w.ratings)
    subs = [ts(r["submitted_at"]) for r in w.ratings]
    assert subs == sorted(subs)
    for r in w.ratings:
        check_contract(r)


def test_main_writes_the_three_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["--seed", "3", "--out", str(out), "--days", "7", "--honest-ratings", "1500"]
    assert main([*args, "--attack", "flood=0"]) == 0
    assert "ratings" in capsys.readouterr().out
    lines = (out / "ratings.jsonl").read_text(encoding="utf-8").splitlines()
    with open(out / "truth.csv", encoding="utf-8") as fh:
        truth = list(csv.DictReader(fh))
    assert len(lines) == len(truth) > 1000
    assert "flood" not in {t["kind"] for t in truth}
    assert json.loads((out / "venues.json").read_text())["venues"]
    with pytest.raises(SystemExit):
        main([*args, "--attack", "nonsense=1"])
