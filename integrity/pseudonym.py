"""Keyed pseudonymisation of addresses and devices.

Raw IP addresses and device ids are turned into HMAC-SHA256 digests (keyed with the
instance secret, which never lives in the database) as soon as a rating is parsed;
nothing downstream ever sees the raw value. The /24 (IPv4) or /64 (IPv6) prefix is
hashed too, so rules can count per network without knowing the network.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

DIGEST_HEX = 32  # 128 bits is plenty against collisions and keeps keys short


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def normalise_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an address; an IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) becomes IPv4.

    Raises ``ValueError`` for anything that is not a plain address (no zone ids, no
    networks).
    """
    addr = ipaddress.ip_address(text.strip())
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id is not None:
            raise ValueError("zone ids are not accepted")
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
    return addr


def prefix_of(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The /24 (IPv4) or /64 (IPv6) network of an address, as text (``198.51.100.0/24``)."""
    if addr.version == 4:
        return f"{ipaddress.IPv4Address(int(addr) & _V4_MASK)}/24"
    return f"{ipaddress.IPv6Address(int(addr) & _V6_MASK)}/64"


_V4_MASK = (2**32 - 1) ^ (2**8 - 1)
_V6_MASK = (2**128 - 1) ^ (2**64 - 1)


@dataclass(frozen=True)
class Pseudonymiser:
    """Keyed hashes: ``ip``, ``prefix`` and ``device`` live in separate domains."""

    key: bytes

    def _digest(self, domain: str, value: str) -> str:
        mac = hmac_sha256(self.key, f"{domain}\x00{value}".encode())
        return mac[: DIGEST_HEX // 2].hex()

    def ip(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        return self._digest("ip", str(addr))

    def prefix(self, network: str) -> str:
        return self._digest("prefix", network)

    def device(self, device_id: str) -> str:
        return self._digest("device", device_id)

    def address(self, text: str) -> tuple[str, str]:
        """``(ip_hash, prefix_hash)`` of a raw address; ``ValueError`` if it is none.

        Memoised per process (hall Wi-Fi and carrier NAT addresses repeat all day); the
        cache lives in memory only, like the raw value while it is being parsed.
        """
        return _address(self.key, text)

    @classmethod
    def from_file(cls, path: Path) -> Pseudonymiser:
        return cls(bytes.fromhex(path.read_text().strip()))


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104): the same bytes as ``hmac.digest(key, msg, "sha256")``.

    Made from the key's two padded SHA-256 states, copied per message: half the cost of
    the one-shot, and it keeps the GIL (OpenSSL's one-shot HMAC releases and retakes it
    on every call, which stalls a batch ingest's parser behind its writer thread).
    """
    inner, outer = _pads(key)
    h = inner.copy()
    h.update(msg)
    o = outer.copy()
    o.update(h.digest())
    return o.digest()


@functools.lru_cache(maxsize=8)
def _pads(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states after the HMAC inner and outer pads of ``key`` (RFC 2104)."""
    block = hashlib.sha256().block_size
    k = hashlib.sha256(key).digest() if len(key) > block else key
    k = k.ljust(block, b"\x00")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in k))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in k))
    return inner, outer


@functools.lru_cache(maxsize=65536)
def _address(key: bytes, text: str) -> tuple[str, str]:
    p = Pseudonymiser(key)
    quad = _plain_ipv4(text)
    if quad is not None:  # what ipaddress makes of it, without ipaddress (most addresses)
        a, b, c, _ = quad
        return p._digest("ip", text), p._digest("prefix", f"{a}.{b}.{c}.0/24")
    addr = normalise_ip(text)
    return p.ip(addr), p.prefix(prefix_of(addr))


def _plain_ipv4(text: str) -> list[str] | None:
    """The four parts of ``text`` if it is an IPv4 address written as ``ipaddress``
    writes it back (four decimal octets 0-255, no leading zeros, no spaces), else
    ``None`` (anything else takes the ``ipaddress`` path)."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    for part in parts:
        if not (0 < len(part) <= 3 and part.isascii() and part.isdigit()):
            return None
        if (part[0] == "0" and len(part) > 1) or int(part) > 255:
            return None
    return parts


def write_secret(path: Path) -> None:
    """Create a new secret key file readable by its owner only; never overwrite one.

    The file is created with mode 0600 by the same call that creates it (``O_EXCL``),
    so the key is never readable by others, not even for an instant; a missing folder
    is created 0700. ``FileExistsError`` if the file exists.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(new_secret().hex() + "\n")
