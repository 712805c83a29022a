"""A deterministic simulator of a month of citizen ratings, with ground truth.

``simulate(WorldConfig(seed=7))`` builds a few service halls (windows, staff on
shifts, one kiosk rating pad per window), serves a month of tickets through
queues with realistic opening hours and seasonality, has citizens rate a share of
them through every channel of the rating format, and then runs attack campaigns on top:

=================  ==============================================================
``flood``          one ordinary address pushes hundreds of ratings in minutes
``device_farm``    dozens of devices behind a few addresses (or one /64) brush a
                   window with 5s, in sessions over several days
``replay``         existing tickets re-submitted with different scores
                   (``replay_duplicate``); honest identical retries are labelled
                   ``identical_retry`` and are not an attack
``brushing_slow``  a few devices rate one window's real tickets over weeks,
                   one or two a day each
``self_rating``    a staff member's own phone rates their unrated tickets
                   minutes after service
``coerced``        staff press citizens at a window: all-5 ratings seconds after
                   service, on the kiosk or the citizen's phone, on real tickets
``bombing``        a grudge: a household's devices give one staff member many 1s
                   over days, often with near-duplicate comments
=================  ==============================================================

Honest traffic deliberately contains crowds that look suspicious: hall Wi-Fi
NAT addresses, kiosks rating dozens of tickets a day, carrier-grade NAT pools,
SMS and hotline gateways (one address for everyone), office networks, agents who
come back to the same window several times a week, multi-ticket visits, IPv6
privacy addresses, IPv4-mapped IPv6, genuinely worse staff and honest low scores.

Every address is in a documentation range (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32). Everything is drawn from numpy Generators seeded
from ``WorldConfig.seed`` and a fixed stream name, so the same configuration gives
byte-identical files, and switching one attack off leaves the honest traffic and
the other attacks unchanged (except that ``coerced`` replaces honest ratings at
its windows). Times are integer seconds since the Unix epoch internally and
RFC 3339 strings in the configured time zone on output.

Run ``python -m simulation --seed 7 --out DIR`` to write
``ratings.jsonl``, ``venues.json`` and ``truth.csv``.
"""

from __future__ import annotations

from simulation.cli import main
from simulation.model import (
    ATTACK_KINDS,
    DIMENSIONS,
    KINDS,
    SERVICE_TYPES,
    Attack,
    Label,
    WorldConfig,
)
from simulation.world import World, simulate

__all__ = [
    "ATTACK_KINDS",
    "DIMENSIONS",
    "KINDS",
    "SERVICE_TYPES",
    "Attack",
    "Label",
    "World",
    "WorldConfig",
    "main",
    "simulate",
]
