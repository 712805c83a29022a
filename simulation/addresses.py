"""The documentation address space the simulated world lives in (RFC 5737 / RFC 3849).

Halls, gateways, carrier-grade NAT pools, home broadband, offices and hosting each get a
fixed slice, and ``_IPK_*`` says how a row's address is stored (IPv4, IPv6, IPv4-mapped).
"""

from __future__ import annotations

import numpy as np

# Documentation address space (RFC 5737 / RFC 3849).
_NET1 = 0xC0000200  # 192.0.2.0/24: halls' government network and intake gateways
_NET2 = 0xC6336400  # 198.51.100.0/24: carrier-grade NAT pools, home broadband
_NET3 = 0xCB007100  # 203.0.113.0/24: home broadband, offices, hosting (IDC)
_V6_BASE = 0x20010DB8 << 32
_CGNAT = np.array([[_NET2 + 1 + 10 * c + i for i in range(8)] for c in range(3)], dtype=np.int64)
_HOME4 = np.array(
    [_NET2 + i for i in range(128, 255)] + [_NET3 + i for i in range(1, 128)], dtype=np.int64
)
_OFFICE4 = np.array([_NET3 + i for i in range(128, 192)], dtype=np.int64)
_IDC4 = np.array([_NET3 + i for i in range(192, 255)], dtype=np.int64)
_SMS_GATEWAYS = np.array([_NET1 + 250, _NET1 + 251], dtype=np.int64)
_PHONE_GATEWAY = _NET1 + 252
_MAX_HALLS = 80  # three addresses each in 192.0.2.0/24, below the gateways

_IPK_V4, _IPK_V6, _IPK_MAPPED = 0, 1, 2
