"""The venue registry: halls whose shared addresses and rating pads honest citizens use.

Loaded from JSON (``integrity venues load``) and pseudonymised on load:
a network is stored as the keyed hashes of what a rating's address is matched by,
its single addresses (networks of /24 or longer in IPv4, exactly /128 in IPv6) or
its /24 (IPv4) or /64 (IPv6) prefixes (networks from /16 to /24, from /48 to /64).
Larger or oddly sized networks are refused with a clear error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from integrity.errors import FieldError, InvalidInput
from integrity.model import Kiosk
from integrity.pseudonym import Pseudonymiser

MAX_ADDRESSES = 256  # addresses or prefixes one network may expand to


@dataclass(frozen=True)
class PseudonymisedVenues:
    venues: list[tuple[str, int]]
    addresses: list[tuple[str, str, str]]  # (hash, "ip" | "prefix", venue_id)
    kiosks: list[Kiosk]


def _expand(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network, p: Pseudonymiser
) -> list[tuple[str, str]]:
    if net.version == 4:
        if net.prefixlen >= 24:
            return [
                (p.ip(a), "ip") for a in (net if net.num_addresses > 1 else [net.network_address])
            ]
        if net.prefixlen >= 16:
            return [(p.prefix(str(s)), "prefix") for s in net.subnets(new_prefix=24)]
    else:
        if net.prefixlen == 128:
            return [(p.ip(net.network_address), "ip")]
        if 48 <= net.prefixlen <= 64:
            return [(p.prefix(str(s)), "prefix") for s in net.subnets(new_prefix=64)]
    raise ValueError(
        "network size not supported: use IPv4 /16 to /32, IPv6 /48 to /64 or a single /128 address"
    )


def pseudonymise_venues(doc: Any, p: Pseudonymiser) -> PseudonymisedVenues:
    """Validate and pseudonymise a registry document; ``InvalidInput`` lists every problem."""
    errors: list[FieldError] = []
    if not isinstance(doc, Mapping) or not isinstance(doc.get("venues"), list):
        raise InvalidInput(
            [FieldError("venues", 'expected {"venues": [...]}')], what="venue registry"
        )
    venues: list[tuple[str, int]] = []
    addresses: dict[str, tuple[str, str]] = {}
    kiosks: dict[str, Kiosk] = {}
    for i, v in enumerate(doc["venues"]):
        where = f"venues[{i}]"
        if not isinstance(v, Mapping):
            errors.append(FieldError(where, "expected an object"))
            continue
        vid = v.get("venue_id")
        if not isinstance(vid, str) or not 1 <= len(vid) <= 64:
            errors.append(
                FieldError(f"{where}.venue_id", "a string of 1-64 characters is required")
            )
            continue
        if any(vid == x for x, _ in venues):
            errors.append(FieldError(f"{where}.venue_id", f"venue {vid!r} is listed twice"))
            continue
        nets = v.get("networks", [])
        if not isinstance(nets, list):
            errors.append(FieldError(f"{where}.networks", "expected a list of CIDR networks"))
            nets = []
        for j, text in enumerate(nets):
            try:
                net = ipaddress.ip_network(str(text), strict=True)
                if net.version == 6 and net.network_address.ipv4_mapped is not None:
                    raise ValueError("write IPv4-mapped networks as IPv4")
                for h, kind in _expand(net, p):
                    other = addresses.get(h)
                    if other is not None and other[1] != vid:
                        raise ValueError(f"overlaps a network of venue {other[1]!r}")
                    addresses[h] = (kind, vid)
            except ValueError as err:
                errors.append(FieldError(f"{where}.networks[{j}]", f"{text!r}: {err}"))
        pads = v.get("kiosk_devices", [])
        if not isinstance(pads, list):
            errors.append(FieldError(f"{where}.kiosk_devices", "expected a list"))
            pads = []
        for j, pad in enumerate(pads):
            w = pad.get("window_id") if isinstance(pad, Mapping) else None
            d = pad.get("device_id") if isinstance(pad, Mapping) else None
            if not isinstance(w, str) or not 1 <= len(w) <= 64:
                errors.append(
                    FieldError(
                        f"{where}.kiosk_devices[{j}].window_id",
                        "a string of 1-64 characters is required",
                    )
                )
                continue
            if not isinstance(d, str) or not 1 <= len(d) <= 128:
                errors.append(
                    FieldError(
                        f"{where}.kiosk_devices[{j}].device_id",
                        "a string of 1-128 characters is required",
                    )
                )
                continue
            h = p.device(d)
            if h in kiosks:
                errors.append(
                    FieldError(f"{where}.kiosk_devices[{j}].device_id", "device registered twice")
                )
                continue
            kiosks[h] = Kiosk(venue_id=vid, window_id=w, device_hash=h)
        venues.append((vid, len(nets)))
    if errors:
        raise InvalidInput(errors, what="venue registry")
    return PseudonymisedVenues(
        venues,
        [(h, kind, vid) for h, (kind, vid) in addresses.items()],
        list(kiosks.values()),
    )
