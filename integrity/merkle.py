"""RFC 9162 (Certificate Transparency v2) Merkle tree primitives.

Pure Python, no I/O. Everything works on *leaf hashes* (``leaf_hash(data)``),
so callers can store the 32-byte hashes next to their rows and recompute roots
and proofs without re-encoding the original records.

Hashing (RFC 9162 §2.1.1, SHA-256):

* ``leaf_hash(d)  = SHA-256(0x00 || d)``
* ``node_hash(l, r) = SHA-256(0x01 || l || r)``
* the root of the empty tree is ``SHA-256("")`` (``EMPTY_ROOT``)

Proof lists are ordered leaf-to-root, exactly as in RFC 9162 §2.1.3 / §2.1.4.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from itertools import islice

__all__ = [
    "CHECKPOINT_ORIGIN",
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "consistency_proof",
    "first_divergence",
    "format_checkpoint",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "parse_checkpoint",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Size in bytes of every leaf, node and root hash (SHA-256)."""

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""MTH({}) — the root hash of the empty tree."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

# Leaves are folded in aligned blocks of 2**_BLOCK_HEIGHT, hashed level by level
# with list comprehensions (much faster in CPython than one-at-a-time appends).
_BLOCK_HEIGHT = 8
_BLOCK = 1 << _BLOCK_HEIGHT

_sha256 = hashlib.sha256
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_END = object()


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash ``SHA-256(0x00 || data)``."""
    return _sha256(_LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``."""
    return _sha256(_NODE_PREFIX + bytes(left) + bytes(right)).digest()


def _check_hash(value: object, what: str) -> bytes:
    """Return ``value`` as ``bytes`` if it is a 32-byte hash, else raise ValueError."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")
    value = bytes(value)
    if len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")
    return value


def _split(n: int) -> int:
    """Largest power of two strictly less than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect_root(level: list[bytes]) -> bytes:
    """Root of a perfect subtree whose leaf count is a power of two (level-wise)."""
    sha = _sha256
    prefix = _NODE_PREFIX
    while len(level) > 1:
        it = iter(level)
        level = [sha(prefix + a + b).digest() for a, b in zip(it, it, strict=True)]
    return level[0]


class CompactRange:
    """The frontier of a Merkle tree: the roots of its maximal perfect subtrees.

    A tree of ``size`` leaves is summarised by one hash per set bit of ``size``
    (largest subtree first), so it takes O(log n) space, ``append`` is O(1)
    amortised (O(log n) worst case) and ``root()`` is O(log n). Store
    ``to_list()`` and rebuild with ``from_list()`` to keep extending a log
    without re-reading its leaves.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        """Create the frontier of the empty tree."""
        self._size = 0
        self._hashes: list[bytes] = []

    # -- construction -------------------------------------------------------

    @classmethod
    def from_leaves(cls, leaf_hashes: Iterable[bytes]) -> CompactRange:
        """Build the frontier of the tree with these leaf hashes."""
        cr = cls()
        cr.extend(leaf_hashes)
        return cr

    @classmethod
    def from_list(cls, data: Sequence[object]) -> CompactRange:
        """Rebuild a frontier from ``to_list()`` output (``[size, hex, ...]``).

        Raises ValueError if the list is malformed or its number of hashes
        does not match ``size`` (one hash per set bit of ``size``).
        """
        if not isinstance(data, list | tuple) or not data:
            raise ValueError("compact range must be a non-empty list [size, hex, ...]")
        size = data[0]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"compact range size must be a non-negative int, got {size!r}")
        hex_hashes = data[1:]
        expected = size.bit_count()
        if len(hex_hashes) != expected:
            raise ValueError(
                f"compact range of size {size} needs {expected} hashes, got {len(hex_hashes)}"
            )
        hashes: list[bytes] = []
        for i, item in enumerate(hex_hashes):
            if not isinstance(item, str) or not _HEX_HASH.fullmatch(item):
                raise ValueError(
                    f"compact range hash #{i} must be {2 * HASH_SIZE} lowercase hex digits,"
                    f" got {item!r}"
                )
            hashes.append(bytes.fromhex(item))
        cr = cls()
        cr._size = size
        cr._hashes = hashes
        return cr

    def to_list(self) -> list[int | str]:
        """Serialise as a JSON-able list: ``[size, hex(hash0), hex(hash1), ...]``."""
        return [self._size, *(h.hex() for h in self._hashes)]

    def copy(self) -> CompactRange:
        """Return an independent copy."""
        cr = CompactRange()
        cr._size = self._size
        cr._hashes = list(self._hashes)
        return cr

    # -- growth -------------------------------------------------------------

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash (32 bytes)."""
        self._push(_check_hash(leaf_hash, "leaf hash"), 0)

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes, in order (fast path for bulk loading)."""
        it = iter(leaf_hashes)
        # Single-step until the size is aligned to a block boundary.
        while self._size % _BLOCK:
            nxt = next(it, _END)
            if nxt is _END:
                return
            self.append(nxt)  # type: ignore[arg-type]
        while True:
            block = list(islice(it, _BLOCK))
            if len(block) < _BLOCK:
                for h in block:
                    self.append(h)
                return
            if set(map(len, block)) != {HASH_SIZE}:
                bad = next(i for i, h in enumerate(block) if len(h) != HASH_SIZE)
                raise ValueError(
                    f"leaf hash #{self._size + bad} must be {HASH_SIZE} bytes,"
                    f" got {len(block[bad])}"
                )
            if set(map(type, block)) != {bytes}:
                block = [_check_hash(h, "leaf hash") for h in block]
            self._push(_perfect_root(block), _BLOCK_HEIGHT)

    def _push(self, h: bytes, height: int) -> None:
        """Add the root of a perfect subtree of ``2**height`` leaves at the right edge."""
        hashes = self._hashes
        count = self._size >> height
        while count & 1:
            h = _sha256(_NODE_PREFIX + hashes.pop() + h).digest()
            count >>= 1
        hashes.append(h)
        self._size += 1 << height

    # -- queries ------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of leaves covered."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Roots of the perfect subtrees, largest (leftmost) first."""
        return tuple(self._hashes)

    def root(self) -> bytes:
        """The Merkle tree hash (MTH) of all leaves appended so far."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        acc = hashes[-1]
        for h in reversed(hashes[:-1]):
            acc = _sha256(_NODE_PREFIX + h + acc).digest()
        return acc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) per RFC 9162 §2.1.1; O(n) time, O(log n) extra space."""
    return CompactRange.from_leaves(leaf_hashes).root()


def _range_root(leaf_hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH of ``leaf_hashes[lo:hi]`` without copying the slice."""
    return CompactRange.from_leaves(map(leaf_hashes.__getitem__, range(lo, hi))).root()


# -- inclusion proofs (RFC 9162 §2.1.3) ---------------------------------------


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]): the audit path for leaf ``index``, leaf-to-root order."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} out of range for tree of size {n}")
    path: list[bytes] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_range_root(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            path.append(_range_root(leaf_hashes, lo, lo + k))
            lo += k
    path.reverse()
    return path


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes | bytearray | memoryview) and len(value) == HASH_SIZE


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an inclusion proof (RFC 9162 §2.1.3.2). Never raises on bad input."""
    if not (0 <= index < size) or not _is_hash(leaf_hash) or not _is_hash(root):
        return False
    if not all(_is_hash(p) for p in proof):
        return False
    fn, sn = index, size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _sha256(_NODE_PREFIX + bytes(p) + r).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(_NODE_PREFIX + r + bytes(p)).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, bytes(root))


# -- consistency proofs (RFC 9162 §2.1.4) -------------------------------------


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true): proves D[0:m] is a prefix of D[n].

    Empty when ``old_size`` is 0 or ``len(leaf_hashes)`` (nothing to prove).
    """
    n = len(leaf_hashes)
    if not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size} out of range for tree of size {n}")
    if old_size == 0:
        return []
    path: list[bytes] = []
    m, lo, hi, complete = old_size, 0, n, True
    while True:
        if m == hi - lo:
            if not complete:
                path.append(_range_root(leaf_hashes, lo, hi))
            break
        k = _split(hi - lo)
        if m <= k:
            path.append(_range_root(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            path.append(_range_root(leaf_hashes, lo, lo + k))
            lo += k
            m -= k
            complete = False
    path.reverse()
    return path


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof (RFC 9162 §2.1.4.2). Never raises on bad input.

    Edge cases: ``old_size == new_size`` needs an empty proof and equal roots;
    ``old_size == 0`` needs an empty proof and ``old_root == EMPTY_ROOT``.
    """
    if not _is_hash(old_root) or not _is_hash(new_root):
        return False
    if not all(_is_hash(p) for p in proof):
        return False
    old_root, new_root = bytes(old_root), bytes(new_root)
    if not 0 <= old_size <= new_size:
        return False
    if old_size == 0:
        ok = not proof and hmac.compare_digest(old_root, EMPTY_ROOT)
        return ok and (new_size > 0 or hmac.compare_digest(new_root, EMPTY_ROOT))
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if not proof:
        return False
    path = [bytes(p) for p in proof]
    if old_size & (old_size - 1) == 0:  # exact power of two
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _sha256(_NODE_PREFIX + c + fr).digest()
            sr = _sha256(_NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(_NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


# -- tamper localisation ------------------------------------------------------


def first_divergence(
    old_leaf_hashes: Sequence[bytes], new_leaf_hashes: Sequence[bytes]
) -> int | None:
    """Index of the first leaf where ``new`` stops extending ``old``, or None.

    Returns None when ``old`` is a prefix of (or equal to) ``new``. If all
    shared positions agree but ``new`` is shorter, returns ``len(new)`` (the
    first leaf that went missing).
    """
    common = min(len(old_leaf_hashes), len(new_leaf_hashes))
    for i in range(common):
        if old_leaf_hashes[i] != new_leaf_hashes[i]:
            return i
    if len(new_leaf_hashes) < len(old_leaf_hashes):
        return common
    return None


# -- checkpoints --------------------------------------------------------------

CHECKPOINT_ORIGIN = "integrity-ledger/v1"
"""First token of every checkpoint line; bump it if the format ever changes."""

_CHECKPOINT = re.compile(
    r"(?P<origin>\S+) size=(?P<size>0|[1-9][0-9]*) root=(?P<root>[0-9a-f]{64})", re.ASCII
)


def format_checkpoint(size: int, root: bytes) -> str:
    """Render ``"integrity-ledger/v1 size=<n> root=<64 hex>"`` (no trailing newline)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"checkpoint size must be a non-negative int, got {size!r}")
    root = _check_hash(root, "checkpoint root")
    return f"{CHECKPOINT_ORIGIN} size={size} root={root.hex()}"


def parse_checkpoint(text: str) -> tuple[int, bytes]:
    """Parse ``format_checkpoint`` output into ``(size, root)``.

    One trailing newline is tolerated; anything else non-canonical (other
    origin, leading zeros, upper-case hex, extra fields, a size-0 checkpoint
    whose root is not ``EMPTY_ROOT``) raises ValueError.
    """
    if not isinstance(text, str):
        raise ValueError(f"checkpoint must be str, not {type(text).__name__}")
    line = text.removesuffix("\n")
    m = _CHECKPOINT.fullmatch(line)
    if m is None:
        raise ValueError(
            f"malformed checkpoint {line[:120]!r}: expected"
            f" '{CHECKPOINT_ORIGIN} size=<decimal> root=<64 lowercase hex digits>'"
        )
    if m["origin"] != CHECKPOINT_ORIGIN:
        raise ValueError(
            f"unsupported checkpoint origin {m['origin']!r}, expected {CHECKPOINT_ORIGIN!r}"
        )
    size = int(m["size"])
    root_hash = bytes.fromhex(m["root"])
    if size == 0 and root_hash != EMPTY_ROOT:
        raise ValueError("checkpoint has size=0 but its root is not the empty-tree hash")
    return size, root_hash
