"""Signatures on outgoing webhooks, and how their shared secrets are kept.

Every request carries ``X-Integrity-Timestamp: <unix seconds>`` and
``X-Integrity-Signature: v1=<hex>``, the HMAC-SHA256, keyed with the endpoint's signing
secret (its UTF-8 bytes), of the timestamp, a full stop and the raw body:
``HMAC(secret, f"{timestamp}.".encode() + body)``. A receiver recomputes it over the
bytes it received, compares in constant time and refuses timestamps more than a few
minutes from its own clock (:func:`verify` does exactly that; the README has the same
few lines for receivers).

The secret is shared, not a password: the engine needs it back to sign, so it is not
hashed. It is stored encrypted (:class:`SecretBox`) with a key derived from the
instance secret key, which lives outside the database, so a copy of the database alone
cannot forge notifications; listings and logs never show it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from integrity.errors import ConfigError

TIMESTAMP_HEADER = "X-Integrity-Timestamp"
SIGNATURE_HEADER = "X-Integrity-Signature"
#: Default tolerance of :func:`verify` between the timestamp and the receiver's clock.
TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Integrity-Signature`` value: ``v1=`` and the hex HMAC-SHA256."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    signature_header: str,
    body: bytes,
    now_s: float,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """What a receiver checks: a fresh timestamp and a matching ``v1`` signature."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now_s - ts) > tolerance_s:
        return False
    expected = signature(secret, ts, body)
    return any(hmac.compare_digest(expected, part.strip()) for part in signature_header.split(","))


def new_secret() -> str:
    """A fresh signing secret: 256 bits from the operating system, as 64 hex digits."""
    return secrets.token_hex(32)


class SecretBox:
    """Encrypts signing secrets at rest with a key derived from the instance secret key.

    Encrypt-then-MAC from HMAC-SHA256 alone (the standard library has no cipher): the
    keystream is ``HMAC(k_enc, nonce || counter)`` with a fresh 128-bit nonce per
    secret, the tag ``HMAC(k_mac, nonce || ciphertext)``. Stored as
    ``v1:<nonce hex>:<ciphertext hex>:<tag hex>``.
    """

    def __init__(self, instance_key: bytes) -> None:
        self._enc = hmac.new(instance_key, b"integrity/webhook-secret/enc/v1", "sha256").digest()
        self._mac = hmac.new(instance_key, b"integrity/webhook-secret/mac/v1", "sha256").digest()

    def _stream(self, nonce: bytes, n: int) -> bytes:
        blocks = (
            hmac.new(self._enc, nonce + i.to_bytes(4, "big"), "sha256").digest()
            for i in range((n + 31) // 32)
        )
        return b"".join(blocks)[:n]

    def _tag(self, nonce: bytes, ct: bytes) -> bytes:
        return hmac.new(self._mac, nonce + ct, "sha256").digest()

    def seal(self, secret: str) -> str:
        plain = secret.encode()
        nonce = secrets.token_bytes(16)
        ct = bytes(a ^ b for a, b in zip(plain, self._stream(nonce, len(plain)), strict=True))
        return f"v1:{nonce.hex()}:{ct.hex()}:{self._tag(nonce, ct).hex()}"

    def open(self, sealed: str) -> str:
        """The secret back; ``ConfigError`` when it was sealed under another instance key."""
        try:
            version, nonce_hex, ct_hex, tag_hex = sealed.split(":")
            nonce, ct, tag = bytes.fromhex(nonce_hex), bytes.fromhex(ct_hex), bytes.fromhex(tag_hex)
        except ValueError:
            raise ConfigError(
                "a webhook signing secret is unreadable (removed endpoint?)"
            ) from None
        if version != "v1" or not hmac.compare_digest(tag, self._tag(nonce, ct)):
            raise ConfigError(
                "a webhook signing secret was stored under another instance secret key; "
                "add the endpoint again with its secret (--secret-file)"
            )
        return bytes(a ^ b for a, b in zip(ct, self._stream(nonce, len(ct)), strict=True)).decode()
