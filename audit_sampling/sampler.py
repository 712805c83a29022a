"""Consistent sampling (Rivest), stratified by window: pure functions, no I/O.

Every rating id gets a *ticket number* in (0, 1) computed from the public seed and
the id alone; a stratum's sample is its ``take`` items with the smallest tickets.
The ticket is exactly the generation-1 ticket of the ``consistent-sampler`` package
(used by Arlo for risk-limiting audits) with the seed string
``"integrity-audit/v1|" + seed``::

    seed_hash = sha256_hex("integrity-audit/v1|" + seed)          # 64 hex characters
    d         = int(sha256(seed_hash + str(rating_id)).hexdigest(), 16)
    ticket    = "0." + reversed("{:064d}".format(d))                # decimal fraction

so anyone can re-derive a sample with ``consistent_sampler.sampler(ids,
seed="integrity-audit/v1|" + seed, output="id")`` (one stratum at a time). The
algorithm version is part of the hashed seed string: a later algorithm can never
produce the same tickets.

Consequences the tests check:

* same seed and ids give the same sample, whatever order the ids arrive in;
* a larger take extends a smaller one and never reorders it (it is a prefix);
* sampling a subset of ids equals filtering the full sample to that subset;
* per stratum, ``take = min(N, max(ceil(rate * N), min_per_stratum))``, exact
  (``rate`` is a decimal fraction, never a binary float: 10 % of 30 is 3).

Streaming: :func:`draw` reads the frame once and keeps one bounded max-heap per
stratum (memory grows with the sample, not with the frame). The heap orders by the
ticket's first 9 digits (integer arithmetic on ``d % 10**9``); the few ties on
those digits are settled on full tickets, so the result is exact.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

ALGORITHM = "integrity-audit/v1"
"""Version of the ticket function and the stratification rules; it is hashed into every ticket."""

KEY_DIGITS = 78  # 2**256 - 1 has 78 decimal digits: every fraction fits in 78 digits
_ID_BITS = 64  # composite heap entry: (key << 64) | rating_id
_ID_LIMIT = 1 << (_ID_BITS - 1)
_NO_BAR = 10**9  # above every 9-digit key: an unfilled heap takes everything
_NO_BAR4 = 10**4
# An optimistic start bar sits at (take + 6 sqrt(take) + 20) / N: the chance that fewer
# than ``take`` tickets fall below it is under 1e-9 for every take.
_MARGIN_SIGMA = 6.0
_MARGIN_EXTRA = 20.0
# The first digits of a ticket are the last decimal digits of d, reversed: with this
# table a ticket's first 9 digits come from d % 10**9 without building a string.
_REVERSED = [int(f"{i:04d}"[::-1]) for i in range(10000)]

Rate = Fraction | Decimal | float | int | str


def sampler_seed(seed: str) -> str:
    """The seed string ``consistent-sampler`` must be given to reproduce our tickets."""
    return f"{ALGORITHM}|{seed}"


def seed_prefix(seed: str) -> bytes:
    """``sha256_hex(sampler_seed(seed))``: the fixed 64-byte start of every ticket's hash input."""
    return hashlib.sha256(sampler_seed(seed).encode("utf-8")).hexdigest().encode("ascii")


def _decimal_digits(prefix: bytes, item_id: str) -> str:
    d = int.from_bytes(hashlib.sha256(prefix + item_id.encode("utf-8")).digest(), "big")
    s = str(d)
    return s if len(s) >= 64 else s.zfill(64)  # consistent-sampler: "{:064d}".format(d)


def ticket_number(seed: str, item_id: int | str) -> str:
    """The full-precision ticket of one id, e.g. ``'0.2629971412...'`` (as consistent-sampler)."""
    return "0." + _decimal_digits(seed_prefix(seed), str(item_id))[::-1]


def ticket_key(seed: str, item_id: int | str) -> int:
    """An integer with the same order as the ticket: its digits padded to 78 places."""
    return _key(seed_prefix(seed), str(item_id))


def _key(prefix: bytes, item_id: str) -> int:
    return int(_decimal_digits(prefix, item_id)[::-1].ljust(KEY_DIGITS, "0"))


class Tickets:
    """Ticket numbers and keys under one seed (the seed's hash is computed once)."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.prefix = seed_prefix(seed)

    def number(self, item_id: int | str) -> str:
        return "0." + _decimal_digits(self.prefix, str(item_id))[::-1]

    def key(self, item_id: int | str) -> int:
        return _key(self.prefix, str(item_id))

    def order(self, ids: Iterable[int]) -> list[int]:
        """All ``ids`` in priority order (smallest ticket first; ties by id)."""
        return sorted(ids, key=lambda i: (self.key(i), i))


# -- how many ----------------------------------------------------------------------------


def as_rate(value: Rate, what: str = "rate") -> Fraction:
    """A rate as an exact fraction in (0, 1]; floats are read as the decimal they print as."""
    try:
        if isinstance(value, float):
            value = repr(value)
        frac = Fraction(Decimal(value)) if isinstance(value, str) else Fraction(value)
    except (InvalidOperation, ValueError, TypeError, ZeroDivisionError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not 0 < frac <= 1:
        raise ValueError(f"{what} must be in (0, 1], got {value!r}")
    return frac


def rate_text(rate: Fraction) -> str:
    """The exact decimal text of a rate (``Fraction(1, 10)`` -> ``'0.1'``)."""
    d = Decimal(rate.numerator) / Decimal(rate.denominator)
    if Fraction(d) != rate:
        return f"{rate.numerator}/{rate.denominator}"
    return format(d.normalize(), "f")


def take_for(population: int, rate: Rate, minimum: int = 0) -> int:
    """``min(N, max(ceil(rate * N), minimum))``: the items a stratum of N gets."""
    if population < 0 or minimum < 0:
        raise ValueError("population and minimum must not be negative")
    return min(population, max(math.ceil(as_rate(rate) * population), minimum))


def plan(sizes: Mapping[str, int], rate: Rate, minimum: int = 0) -> dict[str, int]:
    """The take of every stratum (window id -> N)."""
    r = as_rate(rate)
    return {w: take_for(n, r, minimum) for w, n in sizes.items()}


def expansion_take(population: int, take: int, step: Rate, cap: Rate, minimum: int = 0) -> int:
    """The next take when a stratum must grow: by ``step`` of N, up to ``cap`` of N, then all.

    ``step`` adds ``max(ceil(step * N), minimum, 1)`` items; once the take reached
    ``ceil(cap * N)`` the next expansion takes the whole stratum (a census).
    """
    if take >= population:
        return population
    cap_take = min(population, math.ceil(as_rate(cap, "cap") * population))
    if take >= cap_take:
        return population
    grow = max(math.ceil(as_rate(step, "step") * population), minimum, 1)
    return min(cap_take, take + grow)


# -- drawing -----------------------------------------------------------------------------


@dataclass
class Draw:
    """The result of one pass over a frame.

    ``uniform[w]`` holds window ``w``'s rating ids in priority order (its first
    ``take`` items); ``risk`` the risk stratum in risk order (highest risk first).
    """

    seed: str
    uniform: dict[str, list[int]]
    risk: list[int] = field(default_factory=list)
    risk_info: dict[int, tuple[str, float]] = field(default_factory=dict)  # id -> (window, risk)

    def tickets(self) -> Tickets:
        return Tickets(self.seed)


class Shortfall(Exception):
    """A window's optimistic start bar was too low (odds below 1e-9 per window): redraw."""


def draw(
    items: Iterable[tuple[str, str, str]],
    seed: str,
    takes: Mapping[str, int],
    *,
    risk_take: int = 0,
    risk_min: float = 0.0,
    risk_base: Mapping[str, int] | None = None,
) -> Draw:
    """Stream ``(rating_id, window_id, risk)`` text triples once; return each stratum's sample.

    ``takes``: window id -> how many (windows absent or 0 get none). The risk stratum
    (``risk_take`` > 0) holds the ``risk_take`` items of highest risk above
    ``risk_min`` (ties: smaller ticket first) that are not in the uniform sample at
    ``risk_base`` takes (default ``takes``; each must be <= the take). Memory is
    O(sum of takes + risk_take), whatever the number of items.
    """
    s = Sampling(seed, takes, risk_take=risk_take, risk_min=risk_min, risk_base=risk_base)
    s.feed(items)
    return s.finish()


class Sampling:
    """A draw in progress: feed it rows (in any order, in parts), merge parts, finish.

    Consistent sampling is mergeable: drawing from the union of disjoint parts equals
    merging the parts' states (:meth:`state` / :meth:`merge`), which is how
    :mod:`audit_sampling.parallel` spreads a frame over processes. ``sizes`` (window
    id -> rows that will be fed) lets most rows be rejected on 4 digits from the
    start; :meth:`finish` then raises :class:`Shortfall` in the rare case a window
    came up short, and the caller must draw again without ``sizes``.
    """

    def __init__(
        self,
        seed: str,
        takes: Mapping[str, int],
        *,
        risk_take: int = 0,
        risk_min: float = 0.0,
        risk_base: Mapping[str, int] | None = None,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        self.seed = seed
        self.prefix = seed_prefix(seed)
        self.base = dict(takes if risk_base is None else risk_base)
        for w, k in self.base.items():
            if k > takes.get(w, 0):
                raise ValueError(f"risk_base take of {w!r} exceeds its take")
        # Per stratum: [max-heap of -((key9 << 64) | id), take, bar, ties, bar4]. key9
        # is the ticket's first 9 digits (cheap: no 78-digit string); ``bar`` the key9
        # of the heap's largest entry once full (until then above any key9), ``bar4``
        # its first 4 digits. Items whose key9 equals the bar when they lose are kept
        # in ``ties``, so that the boundary and the order are settled on full tickets
        # at the end (see _settle).
        self.strata: dict[str, list[Any]] = {
            w: [[], k, _NO_BAR, [], _NO_BAR4] for w, k in takes.items() if k > 0
        }
        # With the strata's sizes known, start each bar near where it will end: far
        # fewer items reach the heap. If a window ends short, finish() raises
        # Shortfall and the caller draws again without (see parallel.draw_frame).
        self.optimistic: set[str] = set()
        for w, st in self.strata.items():
            size = (sizes or {}).get(w, 0)
            if size > st[1]:
                q = (st[1] + _MARGIN_SIGMA * math.sqrt(st[1]) + _MARGIN_EXTRA) / size
                if q < 1:
                    st[4] = int(q * 10000)
                    self.optimistic.add(w)
        self.risk_take = risk_take
        self.risk_min = risk_min
        self.risk_keep = risk_take + sum(self.base.values())
        self.risk_heap: list[tuple[float, int, int, str]] = []

    def feed(self, items: Iterable[tuple[str, str, str]]) -> None:
        """Consume ``(rating_id, window_id, risk)`` text triples (the hot loop)."""
        copy = hashlib.sha256(self.prefix).copy  # the prefix is exactly one SHA-256 block
        from_bytes = int.from_bytes
        rev = _REVERSED
        push, replace = heapq.heappush, heapq.heapreplace
        get = self.strata.get
        want_risk = self.risk_take > 0
        risk_min, risk_keep, risk_heap = self.risk_min, self.risk_keep, self.risk_heap
        for rid, win, risk in items:
            st = get(win)
            d = -1
            if st is not None:
                h = copy()
                h.update(rid.encode())
                d = from_bytes(h.digest(), "big")
                # The ticket's first 4 digits reject most items before the 9-digit key.
                p4 = rev[d % 10000]
                if p4 <= st[4]:
                    x = d % 1000000000
                    k9 = p4 * 100000 + rev[(x // 10000) % 10000] * 10 + x // 100000000
                    bar = st[2]
                    if k9 < bar:
                        r = int(rid)
                        if r >= _ID_LIMIT:
                            raise ValueError(f"rating id {rid!r} is outside 0..2**63-1")
                        heap = st[0]
                        if len(heap) < st[1]:
                            push(heap, -((k9 << _ID_BITS) | r))
                            if len(heap) == st[1]:
                                st[2] = bar = (-heap[0]) >> _ID_BITS
                                st[4] = bar // 100000
                        else:
                            old = -replace(heap, -((k9 << _ID_BITS) | r))
                            st[2] = bar = (-heap[0]) >> _ID_BITS
                            st[4] = bar // 100000
                            if old >> _ID_BITS == bar:
                                st[3].append(old)
                    elif k9 == bar:
                        st[3].append((k9 << _ID_BITS) | int(rid))
            if want_risk and float(risk) > risk_min:
                if d < 0:
                    h = copy()
                    h.update(rid.encode())
                    d = from_bytes(h.digest(), "big")
                key = int(str(d).zfill(64)[::-1].ljust(KEY_DIGITS, "0"))
                cand = (float(risk), -key, _rid(rid), win)
                if len(risk_heap) < risk_keep:
                    push(risk_heap, cand)
                elif cand > risk_heap[0]:
                    replace(risk_heap, cand)

    def state(self) -> tuple[dict[str, tuple[list[int], list[int]]], list[Any]]:
        """What :meth:`merge` needs from another part (picklable)."""
        return (
            {w: (st[0], st[3]) for w, st in self.strata.items()},
            self.risk_heap,
        )

    def merge(self, state: tuple[dict[str, tuple[list[int], list[int]]], list[Any]]) -> None:
        """Fold in another part's state (a draw over disjoint rows with the same settings)."""
        parts, risk = state
        for w, (heap, ties) in parts.items():
            st = self.strata[w]
            pool = sorted([-e for e in st[0]] + [-e for e in heap])
            kept, dropped = pool[: st[1]], pool[st[1] :]
            # Dropped entries may tie with the new boundary: _settle looks at them too.
            st[3].extend(ties)
            st[3].extend(dropped)
            st[0] = [-c for c in reversed(kept)]  # descending negatives form a valid heap
            if len(kept) == st[1]:
                st[2] = kept[-1] >> _ID_BITS
                st[4] = st[2] // 100000
        pool_risk = sorted(self.risk_heap + list(risk), reverse=True)[: self.risk_keep]
        self.risk_heap[:] = sorted(pool_risk)

    def finish(self) -> Draw:
        """Settle every stratum on full tickets and pick the risk stratum."""
        for w in sorted(self.optimistic):
            st = self.strata[w]
            if len(st[0]) < st[1]:
                raise Shortfall(w)
        uniform = {w: _settle(self.prefix, st[0], st[3]) for w, st in self.strata.items()}
        risk_ids: list[int] = []
        info: dict[int, tuple[str, float]] = {}
        if self.risk_take > 0:
            excluded = {i for w, ids in uniform.items() for i in ids[: self.base.get(w, 0)]}
            for score, _, item, where in sorted(self.risk_heap, reverse=True):
                if item not in excluded:
                    risk_ids.append(item)
                    info[item] = (where, score)
                    if len(risk_ids) == self.risk_take:
                        break
        return Draw(seed=self.seed, uniform=uniform, risk=risk_ids, risk_info=info)


def _settle(prefix: bytes, heap: list[int], ties: list[int]) -> list[int]:
    """A stratum's ids in exact ticket order from its heap of 9-digit keys.

    Every id whose key9 is below the largest kept key9 ``T`` is in the heap; ids with
    key9 == ``T`` compete, heap and ``ties`` alike, on their full tickets for the
    places the heap gave to ``T``. Runs of equal key9 are ordered by full ticket.
    """
    mask = (1 << _ID_BITS) - 1
    kept = sorted(-e for e in heap)
    if not kept:
        return []
    top = kept[-1] >> _ID_BITS
    contenders = [c for c in ties if c >> _ID_BITS == top]
    if contenders:
        at_top = [c for c in kept if c >> _ID_BITS == top]
        pool = sorted({*at_top, *contenders}, key=lambda c: (_key(prefix, str(c & mask)), c & mask))
        kept = [c for c in kept if c >> _ID_BITS < top] + pool[: len(at_top)]
        kept.sort()
    out: list[int] = []
    i = 0
    while i < len(kept):
        j = i + 1
        k9 = kept[i] >> _ID_BITS
        while j < len(kept) and kept[j] >> _ID_BITS == k9:
            j += 1
        run = [c & mask for c in kept[i:j]]
        if len(run) > 1:
            run.sort(key=lambda r: (_key(prefix, str(r)), r))
        out.extend(run)
        i = j
    return out


def _rid(text: str) -> int:
    value = int(text)
    if not 0 <= value < _ID_LIMIT:
        raise ValueError(f"rating id {text!r} is outside 0..2**63-1")
    return value


def sample_ids(ids: Iterable[int], seed: str, take: int) -> list[int]:
    """One stratum's first ``take`` ids in priority order (convenience over :func:`draw`)."""
    result = draw(((str(i), "", "0") for i in ids), seed, {"": take})
    return result.uniform.get("", [])
