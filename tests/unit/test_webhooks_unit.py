"""The webhook outbox's pure parts: the [webhooks] policy and its backoff schedule,
subscriptions, URLs, the body, signatures (including the README's receiver snippet)
and the encryption of signing secrets at rest."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from followup.webhooks.model import body, check_subscription, matches
from followup.webhooks.policy import WebhookPolicy
from followup.webhooks.service import check_url, missing_ranges, url_evidence
from followup.webhooks.signing import SecretBox, new_secret, signature, verify
from integrity.catalogue import KINDS, Kind
from integrity.errors import ConfigError
from integrity.model import Event, Status

ROOT = Path(__file__).resolve().parents[2]


# -- policy ---------------------------------------------------------------------------------


def test_the_default_schedule_doubles_from_30_s_to_an_hour() -> None:
    p = WebhookPolicy.from_section({})
    assert [p.delay_s(n, 0.5) for n in range(1, 10)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]
    assert p.max_age_s == 86400 and p.timeout_s == 5


@given(st.integers(1, 60), st.floats(0, 1, exclude_max=True))
def test_jitter_stays_within_its_share_and_under_the_cap(n: int, u: float) -> None:
    p = WebhookPolicy()
    base = min(3600.0, 30.0 * 2 ** (n - 1))
    assert 0.9 * base - 1e-9 <= p.delay_s(n, u) <= min(3600.0, 1.1 * base) + 1e-9


def test_the_rule_set_table_is_checked() -> None:
    p = WebhookPolicy.from_section({"max_age_s": 3600, "batch": 10, "jitter": 0})
    assert (p.max_age_s, p.batch, p.jitter) == (3600.0, 10, 0.0)
    for bad, match in [
        ({"max_age": 1}, "unknown key"),
        ({"timeout_s": "5"}, "expected a number"),
        ({"timeout_s": True}, "expected a number"),
        ({"batch": 1.5}, "whole number"),
        ({"timeout_s": 0}, "positive"),
        ({"jitter": 1}, "below 1"),
        ({"backoff_first_s": 60, "backoff_max_s": 30}, "backoff_max_s"),
    ]:
        with pytest.raises(ConfigError, match=match):
            WebhookPolicy.from_section(bad)


# -- subscriptions and URLs -----------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(map(str, KINDS)))
def test_every_catalogue_kind_can_be_subscribed(kind: str) -> None:
    patterns, errors = check_subscription([kind])
    assert errors == [] and patterns == (kind,)
    assert matches(patterns, kind)


def test_families_and_unknown_kinds() -> None:
    patterns, errors = check_subscription(["appeal.*", "case.opened", "appeal.*"])
    assert errors == [] and patterns == ("appeal.*", "case.opened")
    assert matches(patterns, "appeal.escalated") and matches(patterns, "appeal.some_later_kind")
    assert not matches(patterns, "appeals") and not matches(patterns, "hold")
    for bad in (["alert.nope"], ["nope.*"], ["*"], [".*"], ["appeal."]):
        _, errors = check_subscription(bad)
        assert [e.field for e in errors] == ["event"], bad
    assert [e.field for e in check_subscription([])[1]] == ["event"]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://alerts.example.org/integrity", True),
        ("http://127.0.0.1:8080/hook?tenant=t1", True),
        ("https://[2001:db8::1]:8443/x", True),
        ("ftp://example.org/x", False),
        ("example.org/hook", False),
        ("https://user:pw@example.org/", False),
        ("https://example.org/#frag", False),
        ("https://example.org:99999/", False),
        ("https://exa mple.org/", False),
        ("", False),
        ("https://example.org/" + "x" * 3000, False),
    ],
)
def test_urls(url: str, ok: bool) -> None:
    assert (check_url(url) == []) is ok


def test_the_ledger_keeps_the_origin_and_a_hash_of_the_url() -> None:
    ev = url_evidence("https://hooks.example.org:8443/T0/B0/token?x=1")
    assert ev["origin"] == "https://hooks.example.org:8443"
    assert "token" not in json.dumps(ev) and len(ev["url_sha256"]) == 64


def test_missing_ranges() -> None:
    assert missing_ranges(5, 9, []) == [(5, 9)]
    assert missing_ranges(5, 9, [5, 6, 7, 8, 9]) == []
    assert missing_ranges(5, 9, [7]) == [(5, 6), (8, 9)]
    assert missing_ranges(5, 9, [5, 9]) == [(6, 8)]


# -- the body -------------------------------------------------------------------------------


def test_the_body_is_canonical_json_of_the_event_with_an_rfc3339_time() -> None:
    at = datetime(2026, 10, 15, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    ev = Event(
        kind=Kind.HOLD,
        actor="detector",
        at=at,
        rating_id=42,
        status=Status.HELD,
        reasons=("outlier.burst",),
        evidence={"z": 1, "a": "满意"},
        event_id=57,
    )
    data = body(ev)
    doc = json.loads(data)
    assert doc["at"] == "2026-10-15T02:00:00+00:00"
    assert datetime.fromisoformat(doc["at"]) == at
    assert doc == {
        "event_id": 57,
        "kind": "hold",
        "at": "2026-10-15T02:00:00+00:00",
        "subject": None,
        "rating_id": 42,
        "status": "held",
        "reasons": ["outlier.burst"],
        "evidence": {"a": "满意", "z": 1},
        "actor": "detector",
    }
    assert (
        data == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert body(ev) == data


# -- signatures -----------------------------------------------------------------------------


def test_signatures_verify_and_refuse_tampering_and_stale_timestamps() -> None:
    secret, data, ts = new_secret(), b'{"event_id":1}', 1_790_000_000
    sig = signature(secret, ts, data)
    assert re.fullmatch(r"v1=[0-9a-f]{64}", sig)
    assert verify(secret, str(ts), sig, data, now_s=ts + 299)
    assert not verify(secret, str(ts), sig, data, now_s=ts + 301)
    assert not verify(secret, str(ts + 1), sig, data, now_s=ts)
    assert not verify(secret, str(ts), sig, data + b" ", now_s=ts)
    assert not verify(new_secret(), str(ts), sig, data, now_s=ts)
    assert not verify(secret, "soon", sig, data, now_s=ts)
    assert verify(secret, str(ts), f"v0=abc, {sig}", data, now_s=ts)  # rotation-friendly


def readme_receiver_snippet() -> dict[str, Any]:
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Telling people \(webhooks\)\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "README has no 'Telling people (webhooks)' section"
    code = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert code, "the section has no receiver snippet"
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)
    return namespace


def test_the_readmes_receiver_snippet_verifies_what_the_engine_signs() -> None:
    verify_readme = readme_receiver_snippet()["verify"]
    secret = new_secret()
    data = body(Event(kind=Kind.CASE_OPENED, actor="detector", at=datetime.now(UTC), event_id=9))
    ts = int(time.time())
    headers = {
        "X-Integrity-Timestamp": str(ts),
        "X-Integrity-Signature": signature(secret, ts, data),
    }
    assert verify_readme(secret, headers, data)
    assert not verify_readme(secret, headers, data.replace(b"9", b"8"))
    assert not verify_readme("not the secret", headers, data)
    stale = {**headers, "X-Integrity-Timestamp": str(ts - 3600)}
    stale["X-Integrity-Signature"] = signature(secret, ts - 3600, data)
    assert not verify_readme(secret, stale, data)
    assert not verify_readme(secret, {}, data)


# -- secrets at rest --------------------------------------------------------------------------


def test_secrets_are_encrypted_under_the_instance_key() -> None:
    box = SecretBox(b"k" * 32)
    secret = new_secret()
    sealed = box.seal(secret)
    assert secret not in sealed and sealed.startswith("v1:")
    assert box.seal(secret) != sealed  # a fresh nonce each time
    assert box.open(sealed) == secret
    assert SecretBox(b"k" * 32).open(sealed) == secret
    with pytest.raises(ConfigError, match="another instance secret key"):
        SecretBox(b"j" * 32).open(sealed)
    tampered = sealed[:-1] + ("0" if sealed[-1] != "0" else "1")
    with pytest.raises(ConfigError):
        box.open(tampered)
    with pytest.raises(ConfigError):
        box.open("")


@given(st.text(min_size=16, max_size=300))
def test_any_given_secret_round_trips(secret: str) -> None:
    box = SecretBox(b"instance-key-for-tests-32-bytes!")
    assert box.open(box.seal(secret)) == secret
