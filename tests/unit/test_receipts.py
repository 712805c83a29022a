"""Receipt codes (derived, unguessable, forgiving to type) and their plain words."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrity.catalogue import REASONS, Reason
from integrity.errors import ConfigError
from integrity.model import Status
from integrity.receipts import (
    ALPHABET,
    FALLBACK_REASON,
    MAX_RATING_ID,
    PUBLIC_REASONS,
    STATE,
    SUMMARY,
    LookupLimit,
    ReceiptCodec,
    public_reasons,
)

KEY = bytes(range(32))
CODEC = ReceiptCodec(KEY)
SHAPE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){3}$")


@given(st.integers(1, MAX_RATING_ID))
def test_a_code_names_its_rating_and_only_its_rating(rating_id: int) -> None:
    code = CODEC.code(rating_id)
    assert SHAPE.fullmatch(code), code
    assert CODEC.code(rating_id) == code  # derived: the same every time
    assert CODEC.rating_id(code) == rating_id
    assert ReceiptCodec(bytes(32)).rating_id(code) is None  # another instance's key


def test_codes_do_not_show_the_rating_id_or_its_order() -> None:
    codes = [CODEC.code(i) for i in range(1, 201)]
    assert len(set(codes)) == 200
    assert codes != sorted(codes)
    # neighbouring ids share no telling prefix or suffix
    assert len({c[:5] for c in codes}) > 190 and len({c[-5:] for c in codes}) > 190


def test_every_changed_character_is_refused() -> None:
    """Any one character changed to another symbol names no rating (a 60-bit MAC)."""
    code = CODEC.code(4242).replace("-", "")
    for pos, old in enumerate(code):
        for new in ALPHABET:
            if new != old:
                changed = code[:pos] + new + code[pos + 1 :]
                assert CODEC.rating_id(changed) is None, (pos, new)


def test_reading_a_code_forgives_case_spaces_hyphens_and_look_alikes() -> None:
    code = CODEC.code(77)
    plain = code.replace("-", "")
    assert CODEC.rating_id(code.lower()) == 77
    assert CODEC.rating_id(" ".join([plain[:10], plain[10:]])) == 77
    assert CODEC.rating_id(plain) == 77
    look_alike = plain.replace("0", "O").replace("1", "l")
    assert CODEC.rating_id(look_alike) == 77


@pytest.mark.parametrize(
    "bad", ["", "x", "0" * 20, "U" * 20, "!" * 20, CODEC.code(5) + "A", "12345-67890"]
)
def test_malformed_codes_name_nothing(bad: str) -> None:
    assert CODEC.rating_id(bad) is None


def test_ids_outside_the_code_are_refused() -> None:
    for bad in (0, -1, MAX_RATING_ID + 1):
        with pytest.raises(ValueError):
            CODEC.code(bad)


def test_every_reason_has_public_words_and_never_the_catalogue_sentence() -> None:
    assert set(PUBLIC_REASONS) == set(REASONS), "word every new reason for the public"
    for code, words in PUBLIC_REASONS.items():
        texts = list(words.values()) if isinstance(words, dict) else [words]
        for text in texts:
            if text is not None:
                assert text != REASONS[code] and text.endswith(".")


def test_plain_words_for_each_status() -> None:
    for status in Status:
        assert SUMMARY[status] and STATE[status] in ("counts", "waiting", "not_counted")
    assert STATE[Status.ACCEPTED] == "counts" and STATE[Status.HELD] == "waiting"
    assert public_reasons(Status.ACCEPTED, (Reason.TICKET_ARRIVED,)) == []
    held = public_reasons(Status.HELD, (Reason.UNKNOWN_TICKET,))
    rejected = public_reasons(Status.REJECTED, (Reason.UNKNOWN_TICKET,))
    assert held != rejected and "yet" in held[0] and "never" in rejected[0]
    # rate limits are one sentence however many rules were broken; detectors stay vague
    assert len(public_reasons(Status.REJECTED, ("rate_limit.ip", "rate_limit.device"))) == 1
    [vague] = public_reasons(Status.HELD, ("outlier.self_rating",))
    assert "self" not in vague and "outlier" not in vague
    # appeal filings never explain a rating's status; an unknown code gets the fallback
    assert public_reasons(Status.REJECTED, ("not_low_score",)) == []
    assert public_reasons(Status.HELD, ("someone.new",)) == [FALLBACK_REASON]


def test_lookup_limit_from_the_rule_set() -> None:
    assert LookupLimit.from_section({}) == LookupLimit(30, 60)
    assert LookupLimit.from_section({"lookups_per_minute": 5}).lookups == 5
    for bad in ({"lookups_per_minute": 0}, {"lookups_per_minute": True}, {"other": 1}):
        with pytest.raises(ConfigError):
            LookupLimit.from_section(bad)
