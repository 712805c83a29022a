"""Parsing intake objects (docs/reference.md, Ratings): field-level refusals, defaults, fingerprints, composite."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import SCORES, rating, valid_ratings
from hypothesis import given, settings
from hypothesis import strategies as st

from integrity.errors import InvalidInput
from integrity.model import CHANNELS, DEFAULT_RUBRIC, VERBAL_LEVELS, Rating, Rubric
from integrity.parsing import parse_rating
from integrity.pseudonym import Pseudonymiser

KEY = Pseudonymiser(bytes(range(32)))
RECEIVED = datetime(2026, 10, 15, 2, 0, tzinfo=UTC)


def parse(obj: Any, rubric: Rubric = DEFAULT_RUBRIC) -> Rating:
    return parse_rating(obj, rubric=rubric, pseudonymiser=KEY, received_at=RECEIVED)


def refusal(obj: Any) -> dict[str, list[str]]:
    """The field errors of a refused object, as ``{field: [messages]}``."""
    with pytest.raises(InvalidInput) as info:
        parse(obj)
    out: dict[str, list[str]] = {}
    for e in info.value.errors:
        out.setdefault(e.field, []).append(e.message)
    assert out, "InvalidInput without any field error"
    return out


def scores(**changes: Any) -> dict[str, Any]:
    return {**SCORES, **changes}


# -- every rule of the rating format is refused with an error naming the field ----------------------

REFUSED = [
    pytest.param({"ticket_id": ""}, "ticket_id", id="ticket_id-empty"),
    pytest.param({"ticket_id": "t" * 129}, "ticket_id", id="ticket_id-129"),
    pytest.param({"ticket_id": 12345}, "ticket_id", id="ticket_id-int"),
    pytest.param({"window_id": ""}, "window_id", id="window_id-empty"),
    pytest.param({"window_id": "w" * 65}, "window_id", id="window_id-65"),
    pytest.param({"staff_id": "s" * 65}, "staff_id", id="staff_id-65"),
    pytest.param({"service_type": ""}, "service_type", id="service_type-empty"),
    pytest.param({"channel": "fax"}, "channel", id="channel-unknown"),
    pytest.param({"channel": "QR"}, "channel", id="channel-case"),
    pytest.param({"scores": scores(attitude=0)}, "scores.attitude", id="score-0"),
    pytest.param({"scores": scores(efficiency=6)}, "scores.efficiency", id="score-6"),
    pytest.param({"scores": scores(compliance=-1)}, "scores.compliance", id="score-negative"),
    pytest.param({"scores": scores(environment=4.5)}, "scores.environment", id="score-4.5"),
    pytest.param({"scores": scores(environment=4.0)}, "scores.environment", id="score-4.0"),
    pytest.param({"scores": scores(overall=True)}, "scores.overall", id="score-bool"),
    pytest.param({"scores": scores(overall="great")}, "scores.overall", id="score-unknown-verbal"),
    pytest.param({"scores": scores(overall=None)}, "scores.overall", id="score-null"),
    pytest.param({"scores": scores(speed=3)}, "scores.speed", id="unknown-dimension"),
    pytest.param({"scores": [5, 4, 5, 4, 5]}, "scores", id="scores-list"),
    pytest.param({"ip": "198.51.100.256"}, "ip", id="ip-octet"),
    pytest.param({"ip": "not-an-ip"}, "ip", id="ip-text"),
    pytest.param({"ip": "198.51.100.0/24"}, "ip", id="ip-network"),
    pytest.param({"ip": "fe80::1%eth0"}, "ip", id="ip-zone-id"),
    pytest.param({"ip": "x"}, "ip", id="ip-one-char"),
    pytest.param({"device_id": ""}, "device_id", id="device_id-empty"),
    pytest.param({"device_id": "d" * 129}, "device_id", id="device_id-129"),
    pytest.param({"served_at": "2026-10-01T09:30:00"}, "served_at", id="served_at-no-offset"),
    pytest.param(
        {"submitted_at": "2026-10-01T09:30:00"}, "submitted_at", id="submitted_at-no-offset"
    ),
    pytest.param({"submitted_at": "2026-10-01"}, "submitted_at", id="submitted_at-date-only"),
    pytest.param({"submitted_at": "yesterday"}, "submitted_at", id="submitted_at-text"),
    pytest.param({"submitted_at": 1790000000}, "submitted_at", id="submitted_at-epoch"),
    pytest.param(
        {"submitted_at": "20261001T093000+0800"}, "submitted_at", id="submitted_at-basic-format"
    ),
    pytest.param(
        {"submitted_at": "2026-W40-4T09:30:00+08:00"}, "submitted_at", id="submitted_at-week-date"
    ),
    pytest.param(
        {"served_at": "2026-10-01T09:30+08:00"}, "served_at", id="served_at-without-seconds"
    ),
    pytest.param({"comment": "c" * 2001}, "comment", id="comment-2001"),
    # out of range once converted to UTC, or too close to the ends of the calendar for
    # the day and time-zone arithmetic downstream (an OverflowError, not a field error)
    pytest.param({"served_at": "9999-12-31T23:59:59-05:00"}, "served_at", id="served_at-overflow"),
    pytest.param(
        {"submitted_at": "0001-01-01T00:00:00+05:00"}, "submitted_at", id="submitted_at-underflow"
    ),
    pytest.param({"submitted_at": "9999-06-01T00:00:00Z"}, "submitted_at", id="year-9999"),
    pytest.param({"served_at": "1969-12-31T23:59:59Z"}, "served_at", id="before-1970"),
    # PostgreSQL text cannot hold NUL: refused at parse, not a 500 at write time
    pytest.param({"comment": "fine\x00"}, "comment", id="comment-NUL"),
    pytest.param({"ticket_id": "T\x001"}, "ticket_id", id="ticket_id-NUL"),
    pytest.param({"window_id": "W\x00"}, "window_id", id="window_id-NUL"),
    pytest.param({"staff_id": "\x00"}, "staff_id", id="staff_id-NUL"),
    pytest.param({"service_type": "tax\x00"}, "service_type", id="service_type-NUL"),
    pytest.param({"device_id": "d\x00"}, "device_id", id="device_id-NUL"),
    pytest.param({"comment": "a\ud800b"}, "comment", id="comment-lone-surrogate"),
    pytest.param({"referrer": "x"}, "referrer", id="unknown-top-level-field"),
]


@pytest.mark.parametrize(("change", "field"), REFUSED)
def test_each_rule_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    errors = refusal(rating(**change))
    assert field in errors, errors
    assert all(msg.strip() for msg in errors[field])


@pytest.mark.parametrize("field", ["ticket_id", "window_id", "scores", "ip", "device_id"])
def test_missing_required_field_is_refused(field: str) -> None:
    errors = refusal(rating(omit=[field]))
    assert errors == {field: ["required field is missing"]}


@pytest.mark.parametrize("dim", DEFAULT_RUBRIC.dimensions)
def test_missing_dimension_is_refused(dim: str) -> None:
    s = dict(SCORES)
    del s[dim]
    errors = refusal(rating(scores=s))
    assert list(errors) == [f"scores.{dim}"]
    assert "missing" in errors[f"scores.{dim}"][0]


def test_unknown_dimension_error_lists_the_rubric() -> None:
    errors = refusal(rating(scores=scores(speed=3)))
    assert all(d in errors["scores.speed"][0] for d in DEFAULT_RUBRIC.dimensions)


def test_non_object_is_refused() -> None:
    for obj in ([], "rating", 3, None):
        assert "(rating)" in refusal(obj)


def test_boundaries_are_accepted() -> None:
    r = parse(
        rating(
            ticket_id="t" * 128,
            window_id="w" * 64,
            staff_id="s" * 64,
            device_id="d" * 128,
            comment="c" * 2000,
            scores=dict.fromkeys(SCORES, 1),
        )
    )
    assert len(r.ticket_id) == 128
    assert r.composite == 1.0
    assert parse(rating(scores=dict.fromkeys(SCORES, 5))).composite == 5.0
    assert parse(rating(ticket_id="t")).ticket_id == "t"


def test_several_structural_errors_are_reported_together() -> None:
    errors = refusal(
        rating(ticket_id="", channel="fax", comment="c" * 2001, referrer="x", omit=["window_id"])
    )
    assert {"ticket_id", "channel", "comment", "referrer", "window_id"} <= set(errors)


def test_several_content_errors_are_reported_together() -> None:
    errors = refusal(
        rating(
            served_at="2026-10-01T09:30:00",
            submitted_at="soon",
            scores={"attitude": 9, "efficiency": 4, "compliance": 5, "speed": 1, "overall": 2},
            ip="999.1.1.1",
        )
    )
    assert {
        "served_at",
        "submitted_at",
        "scores.attitude",
        "scores.speed",
        "scores.environment",
        "ip",
    } <= set(errors)


def test_structural_and_content_errors_are_reported_together() -> None:
    # "Raises InvalidInput with every field error found": an empty ticket must not hide
    # a bad score, a bad time or a bad address in the same rating.
    errors = refusal(
        rating(
            ticket_id="",
            served_at="2026-10-01T09:30:00",
            scores=scores(attitude=9),
            ip="999.1.1.1",
        )
    )
    assert {"ticket_id", "served_at", "scores.attitude", "ip"} <= set(errors)


def test_invalid_input_summary_names_every_field() -> None:
    with pytest.raises(InvalidInput) as info:
        parse(rating(ticket_id="", channel="fax"))
    text = str(info.value)
    assert "ticket_id" in text and "channel" in text


def test_refusal_never_echoes_raw_address_or_device() -> None:
    with pytest.raises(InvalidInput) as info:
        parse(rating(ip="198.51.100.77/32", device_id="secret-device-" + "x" * 200))
    assert "198.51.100.77" not in str(info.value)
    assert "secret-device" not in str(info.value)


# -- accepted shapes and defaults -----------------------------------------------------------


def test_verbal_levels_map_to_five_down_to_one() -> None:
    assert VERBAL_LEVELS == {
        "very satisfied": 5,
        "satisfied": 4,
        "basically satisfied": 3,
        "dissatisfied": 2,
        "very dissatisfied": 1,
        "非常满意": 5,
        "满意": 4,
        "基本满意": 3,
        "不满意": 2,
        "非常不满意": 1,
    }
    for text, value in VERBAL_LEVELS.items():
        r = parse(rating(scores=dict.fromkeys(SCORES, text)))
        assert dict(r.scores) == dict.fromkeys(SCORES, value)
        assert r.composite == pytest.approx(value, abs=1e-12)


def test_chinese_verbal_levels_parse_with_surrounding_spaces() -> None:
    r = parse(rating(scores=scores(attitude=" 非常满意 ", overall="不满意")))
    assert r.scores["attitude"] == 5 and r.scores["overall"] == 2
    with pytest.raises(InvalidInput, match=r"scores\.attitude"):
        parse(rating(scores=scores(attitude="很满意")))  # not one of the five levels


def test_verbal_levels_tolerate_case_and_spaces_and_mix_with_integers() -> None:
    r = parse(rating(scores=scores(attitude="  Very Satisfied ", overall="dissatisfied")))
    assert r.scores["attitude"] == 5 and r.scores["overall"] == 2


def test_verbal_levels_refused_on_a_scale_other_than_one_to_five() -> None:
    ten = Rubric(weights={"overall": 1.0}, scale_min=0, scale_max=10)
    with pytest.raises(InvalidInput) as info:
        parse(rating(scores={"overall": "satisfied"}), rubric=ten)
    assert [e.field for e in info.value.errors] == ["scores.overall"]
    assert parse(rating(scores={"overall": 0}), rubric=ten).composite == 0.0
    assert parse(rating(scores={"overall": 10}), rubric=ten).composite == 10.0


def test_defaults() -> None:
    r = parse(rating(omit=["service_type", "channel", "staff_id", "submitted_at", "served_at"]))
    assert r.service_type == "general"
    assert r.channel == "qr"
    assert r.staff_id is None
    assert r.served_at is None
    assert r.submitted_at == RECEIVED
    assert r.submitted_at_given is False
    assert r.received_at == RECEIVED
    assert r.occurred_at == RECEIVED
    assert r.comment is None


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_channel_is_accepted(channel: str) -> None:
    assert parse(rating(channel=channel)).channel == channel


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-10-01T09:30:00+08:00", datetime(2026, 10, 1, 1, 30, tzinfo=UTC)),
        ("2026-10-01T01:30:00Z", datetime(2026, 10, 1, 1, 30, tzinfo=UTC)),
        ("2026-10-01t01:30:00z", datetime(2026, 10, 1, 1, 30, tzinfo=UTC)),
        ("2026-10-01 01:30:00+00:00", datetime(2026, 10, 1, 1, 30, tzinfo=UTC)),
        ("2026-09-30T20:30:00.250-05:00", datetime(2026, 10, 1, 1, 30, 0, 250000, tzinfo=UTC)),
    ],
)
def test_rfc3339_timestamps_become_aware_utc(text: str, utc: datetime) -> None:
    r = parse(rating(served_at=text, submitted_at=text))
    assert r.served_at == utc and r.submitted_at == utc
    assert r.submitted_at.tzinfo is not None and r.submitted_at.utcoffset() == timedelta(0)
    assert r.submitted_at_given is True
    assert r.occurred_at == utc


def test_timestamps_at_the_ends_of_the_accepted_range() -> None:
    early = parse(rating(served_at="1970-01-01T00:00:00Z", submitted_at="1970-01-01T00:00:00Z"))
    assert early.served_at == datetime(1970, 1, 1, tzinfo=UTC)
    late = parse(rating(submitted_at="9998-12-31T23:59:59+00:00"))
    assert late.submitted_at.year == 9998


def test_occurred_at_prefers_served_at() -> None:
    r = parse(rating(served_at="2026-09-30T23:00:00Z", submitted_at="2026-10-01T01:00:00Z"))
    assert r.occurred_at == datetime(2026, 9, 30, 23, tzinfo=UTC)
    assert r.seconds_after_service == 7200


# -- addresses -------------------------------------------------------------------------------


def test_ipv4_mapped_ipv6_is_the_same_address_as_ipv4() -> None:
    plain = parse(rating(ip="198.51.100.7"))
    for form in ("::ffff:198.51.100.7", "::FFFF:c633:6407", "0:0:0:0:0:ffff:198.51.100.7"):
        mapped = parse(rating(ip=form))
        assert (mapped.ip_hash, mapped.prefix_hash) == (plain.ip_hash, plain.prefix_hash), form


def test_ipv4_prefix_is_the_slash_24() -> None:
    a, b, c = (parse(rating(ip=ip)) for ip in ("198.51.100.7", "198.51.100.250", "198.51.101.7"))
    assert a.prefix_hash == b.prefix_hash != c.prefix_hash
    assert a.ip_hash != b.ip_hash
    assert a.prefix_hash == KEY.prefix("198.51.100.0/24")


def test_ipv6_prefix_is_the_slash_64() -> None:
    a = parse(rating(ip="2001:db8:1:2::17"))
    b = parse(rating(ip="2001:db8:1:2:ffff:ffff:ffff:ffff"))
    c = parse(rating(ip="2001:db8:1:3::17"))
    assert a.prefix_hash == b.prefix_hash != c.prefix_hash
    assert a.prefix_hash == KEY.prefix("2001:db8:1:2::/64")
    # the same address written two ways is one address
    assert parse(rating(ip="2001:0DB8:0001:0002:0000:0000:0000:0017")).ip_hash == a.ip_hash


def test_hashes_are_keyed_and_do_not_contain_the_raw_values() -> None:
    r = parse(rating(ip="198.51.100.7", device_id="dev-abc"))
    other = parse_rating(
        rating(ip="198.51.100.7", device_id="dev-abc"),
        rubric=DEFAULT_RUBRIC,
        pseudonymiser=Pseudonymiser(b"\x01" * 32),
        received_at=RECEIVED,
    )
    assert r.ip_hash != other.ip_hash and r.device_hash != other.device_hash
    for h in (r.ip_hash, r.prefix_hash, r.device_hash, r.fingerprint):
        assert "198.51.100" not in h and "dev-abc" not in h


# -- fingerprints ------------------------------------------------------------------------------


def test_fingerprint_identical_for_identical_content() -> None:
    doc = rating(served_at="2026-10-01T09:00:00+08:00", comment="ok")
    assert parse(dict(doc)).fingerprint == parse(dict(doc)).fingerprint
    # the same content written differently is the same submission
    same = {
        **doc,
        "served_at": "2026-10-01T01:00:00Z",
        "ip": "::ffff:" + doc["ip"],
        "scores": {k: doc["scores"][k] for k in reversed(list(doc["scores"]))},
    }
    assert parse(same).fingerprint == parse(doc).fingerprint
    # a retry without submitted_at received later is still the same submission
    later = parse_rating(
        doc, rubric=DEFAULT_RUBRIC, pseudonymiser=KEY, received_at=RECEIVED + timedelta(hours=1)
    )
    assert later.fingerprint == parse(doc).fingerprint


CHANGES = {
    "ticket_id": "T-other",
    "window_id": "W99",
    "staff_id": "S99",
    "service_type": "household_registration",
    "channel": "kiosk",
    "served_at": "2026-10-01T09:00:01+08:00",
    "submitted_at": "2026-10-01T09:05:00+08:00",
    "scores": scores(overall=4),
    "comment": "changed",
    "ip": "198.51.100.8",
    "device_id": "device-other",
}


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_fingerprint_changes_with_any_field(field: str) -> None:
    doc = rating(
        served_at="2026-10-01T09:00:00+08:00",
        submitted_at="2026-10-01T09:01:00+08:00",
        comment="ok",
        ip="198.51.100.7",
    )
    assert parse({**doc, field: CHANGES[field]}).fingerprint != parse(doc).fingerprint


def test_fingerprint_distinguishes_absent_from_given_optional_fields() -> None:
    doc = rating(omit=["staff_id", "comment"])
    assert parse({**doc, "comment": ""}).fingerprint != parse(doc).fingerprint
    assert parse({**doc, "staff_id": "S01"}).fingerprint != parse(doc).fingerprint


# -- composite ---------------------------------------------------------------------------------


def test_composite_uses_the_default_weights() -> None:
    r = parse(
        rating(
            scores={"attitude": 1, "efficiency": 2, "compliance": 3, "environment": 4, "overall": 5}
        )
    )
    assert r.composite == pytest.approx(
        0.2 * 1 + 0.3 * 2 + 0.25 * 3 + 0.15 * 4 + 0.1 * 5, abs=1e-12
    )


def test_exactly_three_is_not_a_low_score() -> None:
    # These weighted means are exactly 3.0 in decimal arithmetic; binary floating point
    # gives 2.9999999999999996 unless the composite is rounded, which made them low scores.
    for s in [(1, 3, 3, 5, 4), (1, 3, 5, 1, 5), (1, 4, 3, 3, 4), (2, 3, 4, 2, 4), (2, 5, 1, 3, 4)]:
        r = parse(rating(scores=dict(zip(DEFAULT_RUBRIC.dimensions, s, strict=True))))
        assert r.composite == 3.0, s
        assert not DEFAULT_RUBRIC.is_low(r.composite)


@settings(max_examples=100, deadline=None)
@given(valid_ratings())
def test_any_valid_rating_parses_and_composite_is_the_weighted_mean(doc: dict[str, Any]) -> None:
    r = parse(doc)
    values = {
        d: v if isinstance(v, int) else VERBAL_LEVELS[v.strip().lower()]
        for d, v in doc["scores"].items()
    }
    assert dict(r.scores) == values
    w = DEFAULT_RUBRIC.weights
    expected = sum(w[d] * values[d] for d in w) / sum(w.values())
    assert math.isclose(r.composite, expected, rel_tol=0, abs_tol=1e-9)
    assert 1.0 <= r.composite <= 5.0
    assert r.ticket_id == doc["ticket_id"]
    assert r.channel == doc.get("channel", "qr")
    assert r.service_type == doc.get("service_type", "general")
    assert len(r.ip_hash) == len(r.prefix_hash) == len(r.device_hash) == 32
    assert r.submitted_at_given is ("submitted_at" in doc)
    assert parse(dict(doc)).fingerprint == r.fingerprint


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(DEFAULT_RUBRIC.dimensions),
        st.integers(-50, 50) | st.floats(allow_nan=False) | st.booleans() | st.none(),
        min_size=5,
        max_size=5,
    )
)
def test_any_score_off_the_scale_is_refused_naming_its_dimension(raw: dict[str, Any]) -> None:
    bad = {
        d
        for d, v in raw.items()
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5
    }
    doc = rating(scores=raw)
    if not bad:
        parse(doc)
        return
    errors = refusal(doc)
    assert {f"scores.{d}" for d in bad} <= set(errors)
