"""Output text, fast: epoch seconds to RFC 3339, uint64 pairs to hex device ids, address
columns to IPv4 / IPv6 text, a chunk of rows at a time (used by :class:`World` to write
``ratings.jsonl``)."""

from __future__ import annotations

import ipaddress
from datetime import datetime, tzinfo

import numpy as np

from simulation.addresses import _IPK_MAPPED, _IPK_V6
from simulation.streams import _U64


def _ascii_rows(chars: np.ndarray) -> list[str]:
    """An (n, width) array of ASCII codes -> n strings."""
    n, width = chars.shape
    if n == 0:
        return []
    return (
        np.ascontiguousarray(chars, dtype=np.uint8)
        .view(f"S{width}")
        .ravel()
        .astype(f"U{width}")
        .tolist()
    )


def _digits(out: np.ndarray, col: int, value: np.ndarray, width: int) -> None:
    for j in range(width):
        out[:, col + width - 1 - j] = 48 + (value // 10**j) % 10


def _utcoffset(epoch: int, tz: tzinfo) -> int:
    delta = datetime.fromtimestamp(epoch, tz).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _format_times(t: np.ndarray, tz: tzinfo) -> list[str]:
    """Epoch seconds -> RFC 3339 strings in ``tz`` (offset looked up per 15 minutes)."""
    if len(t) == 0:
        return []
    buckets, inv = np.unique(t // 900, return_inverse=True)
    first = np.array([_utcoffset(b * 900, tz) for b in buckets.tolist()], dtype=np.int64)
    last = np.array([_utcoffset(b * 900 + 899, tz) for b in buckets.tolist()], dtype=np.int64)
    off = first[inv]
    for i in np.flatnonzero((first != last)[inv]).tolist():  # a transition inside the bucket
        off[i] = _utcoffset(int(t[i]), tz)
    local = (t + off).astype("datetime64[s]")
    days = local.astype("datetime64[D]")
    months = local.astype("datetime64[M]")
    year = local.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    sod = (local - days).astype(np.int64)
    out = np.empty((len(t), 25), dtype=np.int64)
    _digits(out, 0, year, 4)
    _digits(out, 5, month, 2)
    _digits(out, 8, day, 2)
    _digits(out, 11, sod // 3600, 2)
    _digits(out, 14, sod // 60 % 60, 2)
    _digits(out, 17, sod % 60, 2)
    out[:, [4, 7]] = ord("-")
    out[:, 10] = ord("T")
    out[:, [13, 16, 22]] = ord(":")
    out[:, 19] = np.where(off < 0, ord("-"), ord("+"))
    m = np.abs(off) // 60
    _digits(out, 20, m // 60, 2)
    _digits(out, 23, m % 60, 2)
    return _ascii_rows(out)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX4 = [f"{i:x}" for i in range(65536)]


def _format_ids(hi: np.ndarray, lo: np.ndarray) -> list[str]:
    """Two uint64 columns -> 32-character lowercase hex ids."""
    out = np.empty((len(hi), 32), dtype=np.uint8)
    for half, x in enumerate((hi, lo)):
        for j in range(16):
            out[:, 16 * half + j] = _HEX[((x >> _U64(60 - 4 * j)) & _U64(15)).astype(np.int64)]
    return _ascii_rows(out)


def _format_ips(ipk: np.ndarray, ip4: np.ndarray, ip6h: np.ndarray, ip6l: np.ndarray) -> list[str]:
    """Address text: dotted IPv4, ``::ffff:`` + dotted for mapped, RFC 5952 IPv6."""
    n = len(ipk)
    out: list[str] = [""] * n
    v6 = np.flatnonzero(ipk == _IPK_V6)
    if len(v6):
        hext = np.empty((len(v6), 8), dtype=np.int64)
        for j in range(4):
            shift = _U64(48 - 16 * j)
            hext[:, j] = ((ip6h[v6] >> shift) & _U64(0xFFFF)).astype(np.int64)
            hext[:, 4 + j] = ((ip6l[v6] >> shift) & _U64(0xFFFF)).astype(np.int64)
        h = _HEX4
        text = [
            f"{h[a]}:{h[b]}:{h[c]}:{h[d]}:{h[e]}:{h[f]}:{h[g]}:{h[k]}"
            for a, b, c, d, e, f, g, k in zip(*(hext[:, j].tolist() for j in range(8)), strict=True)
        ]
        # Two adjacent zero groups need "::" compression: leave those to ipaddress.
        for k in np.flatnonzero(((hext[:, :-1] == 0) & (hext[:, 1:] == 0)).any(axis=1)).tolist():
            text[k] = str(ipaddress.IPv6Address((int(ip6h[v6[k]]) << 64) | int(ip6l[v6[k]])))
        for i, x in zip(v6.tolist(), text, strict=True):
            out[i] = x
    v4 = np.flatnonzero(ipk != _IPK_V6)
    if len(v4):
        key = ip4[v4] + np.where(ipk[v4] == _IPK_MAPPED, 1 << 32, 0)
        uniq, inv = np.unique(key, return_inverse=True)
        names = [
            ("::ffff:" if u >> 32 else "") + str(ipaddress.IPv4Address(u & 0xFFFFFFFF))
            for u in uniq.tolist()
        ]
        for i, j in zip(v4.tolist(), inv.tolist(), strict=True):
            out[i] = names[j]
    return out
