"""Keyed pseudonymisation of addresses and devices (DESIGN: raw values dropped at parse)."""

from __future__ import annotations

import hmac
import ipaddress
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrity.pseudonym import (
    DIGEST_HEX,
    Pseudonymiser,
    new_secret,
    normalise_ip,
    prefix_of,
    write_secret,
)

KEY = Pseudonymiser(b"\x07" * 32)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.51.100.7", "198.51.100.7"),
        (" 198.51.100.7\n", "198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("::ffff:c633:6407", "198.51.100.7"),
        ("2001:DB8::17", "2001:db8::17"),
        ("2001:0db8:0000:0000:0000:0000:0000:0017", "2001:db8::17"),
    ],
)
def test_normalise_ip(text: str, expected: str) -> None:
    assert str(normalise_ip(text)) == expected


@pytest.mark.parametrize(
    "text", ["fe80::1%eth0", "fe80::1%1", "198.51.100.0/24", "1.2.3", "", "::ffff:1.2.3.4.5"]
)
def test_normalise_ip_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        normalise_ip(text)


@pytest.mark.parametrize(
    ("addr", "prefix"),
    [
        ("198.51.100.7", "198.51.100.0/24"),
        ("10.0.0.255", "10.0.0.0/24"),
        ("2001:db8:aa:bb:cc::1", "2001:db8:aa:bb::/64"),
        ("::1", "::/64"),
    ],
)
def test_prefix_of(addr: str, prefix: str) -> None:
    assert prefix_of(ipaddress.ip_address(addr)) == prefix


def test_address_of_mapped_equals_ipv4() -> None:
    assert KEY.address("::ffff:198.51.100.7") == KEY.address("198.51.100.7")
    ip_hash, prefix_hash = KEY.address("198.51.100.7")
    assert ip_hash == KEY.ip(ipaddress.ip_address("198.51.100.7"))
    assert prefix_hash == KEY.prefix("198.51.100.0/24")


def test_domains_are_separate() -> None:
    # the same text as an address, a prefix and a device gives three different hashes
    text = "198.51.100.7"
    hashes = {KEY.ip(ipaddress.ip_address(text)), KEY.prefix(text), KEY.device(text)}
    assert len(hashes) == 3


def test_digests_are_hex_of_fixed_length() -> None:
    for h in (*KEY.address("2001:db8::1"), KEY.device("d")):
        assert len(h) == DIGEST_HEX
        int(h, 16)


@given(
    key=st.binary(max_size=200), domain=st.sampled_from(["ip", "prefix", "device"]), value=st.text()
)
def test_digest_is_hmac_sha256_of_domain_and_value(key: bytes, domain: str, value: str) -> None:
    """The precomputed-pad HMAC gives the standard one's bytes, for keys of every length
    (shorter than, equal to and longer than SHA-256's 64-byte block)."""
    expected = hmac.digest(key, f"{domain}\x00{value}".encode(), "sha256")
    assert Pseudonymiser(key)._digest(domain, value) == expected[: DIGEST_HEX // 2].hex()


def test_keys_differ_give_different_hashes() -> None:
    other = Pseudonymiser(b"\x08" * 32)
    assert KEY.device("dev-1") != other.device("dev-1")
    assert KEY.address("198.51.100.7") != other.address("198.51.100.7")


@given(st.ip_addresses())
def test_hash_is_a_function_of_the_address_not_its_spelling(addr: object) -> None:
    a = ipaddress.ip_address(str(addr))
    spellings = {str(a)}
    if a.version == 6:
        spellings.add(a.exploded)
        spellings.add(a.exploded.upper())
    else:
        spellings.add(f"::ffff:{a}")
    assert len({KEY.address(s) for s in spellings}) == 1


def test_secret_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "home" / "secret.key"
    write_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = Pseudonymiser.from_file(path)
    assert len(key.key) == 32
    with pytest.raises(FileExistsError):
        write_secret(path)
    assert Pseudonymiser.from_file(path) == key
    assert new_secret() != new_secret()
