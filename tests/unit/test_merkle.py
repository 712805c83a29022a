"""Tests for integrity.merkle (RFC 9162 Merkle trees).

Known-answer vectors are the RFC 6962 reference vectors used by Google's
transparency-dev/merkle Go module (``proof/verify_test.go`` and
``rfc6962/rfc6962_test.go``), the same data as the certificate-transparency
C++ tests. Everything else is checked against a deliberately naive recursive
reference written straight from the RFC text below.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrity import merkle
from integrity.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    first_divergence,
    format_checkpoint,
    inclusion_proof,
    leaf_hash,
    node_hash,
    parse_checkpoint,
    root,
    verify_consistency,
    verify_inclusion,
)

# -- independent reference implementation (RFC 9162 §2.1, literally) ----------


def ref_mth(d: Sequence[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return d[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def leaves_for(n: int, salt: bytes = b"") -> list[bytes]:
    """n distinct leaf hashes."""
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def flip(b: bytes, pos: int = 0, mask: int = 0x08) -> bytes:
    out = bytearray(b)
    out[pos] ^= mask
    return bytes(out)


# -- known-answer vectors ------------------------------------------------------

H = bytes.fromhex

VECTOR_INPUTS = [
    H(""),
    H("00"),
    H("10"),
    H("2021"),
    H("3031"),
    H("40414243"),
    H("5051525354555657"),
    H("606162636465666768696a6b6c6d6e6f"),
]
VECTOR_LEAVES = [leaf_hash(d) for d in VECTOR_INPUTS]

# Root of the tree made of the first i+1 inputs.
VECTOR_ROOTS = [
    H("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    H("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    H("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    H("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    H("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    H("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    H("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# (0-based leaf index, tree size, audit path). Go's table is 1-based.
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [H("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            H("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

# (old size, new size, consistency proof)
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

SOME_HASH = H("abacaba000000000000000000000000000000000000000000060061e00123456")


def test_hasher_vectors() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == H("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert leaf_hash(b"L123456") == H(
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert node_hash(b"N123", b"N456") == H(
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )
    # Domain separation: a node is not the leaf of its children's concatenation.
    a, b = leaf_hash(b"Hello"), leaf_hash(b"World")
    assert node_hash(a, b) != leaf_hash(a + b)
    assert node_hash(a, b) != node_hash(b, a)


def test_empty_tree() -> None:
    assert root([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT
    assert CompactRange().size == 0


@pytest.mark.parametrize("n", range(1, 9))
def test_root_vectors(n: int) -> None:
    leaves = VECTOR_LEAVES[:n]
    assert root(leaves) == VECTOR_ROOTS[n - 1]
    assert ref_mth(leaves) == VECTOR_ROOTS[n - 1]
    cr = CompactRange()
    for h in leaves:
        cr.append(h)
    assert cr.root() == VECTOR_ROOTS[n - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_vectors(index: int, size: int, proof: list[bytes]) -> None:
    leaves = VECTOR_LEAVES[:size]
    assert inclusion_proof(leaves, index) == proof
    rt = VECTOR_ROOTS[size - 1]
    lh = VECTOR_LEAVES[index]
    assert verify_inclusion(lh, index, size, proof, rt)

    # Corruptions (after transparency-dev/merkle's corruptInclusionProof).
    bad: list[tuple[bytes, int, int, list[bytes], bytes]] = [
        (lh, index - 1, size, proof, rt),
        (lh, index + 1, size, proof, rt),
        (lh, index ^ 2, size, proof, rt),
        (lh, index, size * 2, proof, rt),
        (lh, index, size // 2, proof, rt),
        (leaf_hash(b"WrongLeaf"), index, size, proof, rt),
        (lh, index, size, proof, EMPTY_ROOT),
        (lh, index, size, proof, SOME_HASH),
        (lh, index, size, [*proof, b""], rt),
        (lh, index, size, [*proof, rt], rt),
        (lh, index, size, [b"", *proof], rt),
        (lh, index, size, [rt, *proof], rt),
    ]
    bad += [
        (lh, index, size, [*proof[:i], flip(p), *proof[i + 1 :]], rt) for i, p in enumerate(proof)
    ]
    if proof:
        bad.append((lh, index, size, proof[:-1], rt))
    if len(proof) > 1:
        bad.append((lh, index, size, [SOME_HASH, proof[0], *proof[1:]], rt))
    for args in bad:
        assert not verify_inclusion(*args), args


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_consistency_vectors(old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_proof(VECTOR_LEAVES[:new], old) == proof
    r1, r2 = VECTOR_ROOTS[old - 1], VECTOR_ROOTS[new - 1]
    assert verify_consistency(old, new, r1, r2, proof)
    if not proof:
        return
    # Corruptions (after transparency-dev/merkle's corruptConsistencyProof).
    bad: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, SOME_HASH, r2, proof),
        (old, new, r1, SOME_HASH, proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, b""]),
        (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [b"", *proof]),
        (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    bad += [
        (old, new, r1, r2, [*proof[:i], flip(p, mask=0x10), *proof[i + 1 :]])
        for i, p in enumerate(proof)
    ]
    for args in bad:
        assert not verify_consistency(*args), args


def test_consistency_edge_cases() -> None:
    r = VECTOR_ROOTS[2]
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 3, EMPTY_ROOT, r, [])
    assert not verify_consistency(0, 3, SOME_HASH, r, [])  # size 0 must have the empty root
    assert not verify_consistency(0, 0, EMPTY_ROOT, SOME_HASH, [])
    assert not verify_consistency(0, 3, EMPTY_ROOT, r, [EMPTY_ROOT])
    assert not verify_consistency(3, 3, r, r, [EMPTY_ROOT])  # equal sizes need no proof
    assert not verify_consistency(3, 3, r, SOME_HASH, [])
    assert not verify_consistency(3, 2, r, VECTOR_ROOTS[1], [])  # time travel
    assert not verify_consistency(-1, 3, r, r, [])
    assert not verify_consistency(1, 2, b"short", r, [])
    assert consistency_proof(VECTOR_LEAVES, 0) == []
    assert consistency_proof(VECTOR_LEAVES, 8) == []
    with pytest.raises(ValueError, match="out of range"):
        consistency_proof(VECTOR_LEAVES, 9)
    with pytest.raises(ValueError, match="out of range"):
        consistency_proof(VECTOR_LEAVES, -1)


def test_inclusion_edge_cases() -> None:
    h = leaf_hash(b"data")
    assert verify_inclusion(h, 0, 1, [], h)
    assert not verify_inclusion(h, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], h)
    for index, size in [(0, 0), (1, 0), (2, 1), (-1, 1)]:
        assert not verify_inclusion(h, index, size, [], h)
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
    with pytest.raises(ValueError, match="out of range"):
        inclusion_proof(VECTOR_LEAVES, 8)
    with pytest.raises(ValueError, match="out of range"):
        inclusion_proof([], 0)


# -- root and CompactRange -----------------------------------------------------

leaf_lists = st.lists(st.binary(min_size=32, max_size=32), max_size=300)


@settings(max_examples=150, deadline=None)
@given(leaf_lists)
def test_root_matches_reference(leaves: list[bytes]) -> None:
    assert root(leaves) == ref_mth(leaves)


@pytest.mark.parametrize("n", [255, 256, 257, 511, 512, 513, 3 * 256 + 5, 4096, 5000])
def test_root_matches_reference_around_block_sizes(n: int) -> None:
    leaves = leaves_for(n)
    assert root(leaves) == ref_mth(leaves)
    assert root(tuple(leaves)) == ref_mth(leaves)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.binary(max_size=8))
def test_compact_range_one_by_one(n: int, salt: bytes) -> None:
    leaves = leaves_for(n, salt)
    cr = CompactRange()
    for i, h in enumerate(leaves):
        assert cr.size == i
        cr.append(h)
        assert len(cr.hashes) == cr.size.bit_count()
    assert cr.size == n
    assert cr.root() == root(leaves) == ref_mth(leaves)
    assert cr == CompactRange.from_leaves(leaves)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=1200), st.data())
def test_compact_range_mixed_append_and_extend(n: int, data: st.DataObject) -> None:
    leaves = leaves_for(n)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=6)))
    cr = CompactRange()
    prev = 0
    for cut in [*cuts, n]:
        if data.draw(st.booleans()):
            cr.extend(iter(leaves[prev:cut]))  # a plain iterator, not a list
        else:
            for h in leaves[prev:cut]:
                cr.append(h)
        assert cr.root() == root(leaves[:cut])
        prev = cut
    assert cr.size == n
    assert cr.root() == ref_mth(leaves)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=600), st.integers(min_value=0, max_value=300))
def test_compact_range_serialise_round_trip(n: int, more: int) -> None:
    leaves = leaves_for(n + more)
    cr = CompactRange.from_leaves(leaves[:n])
    stored = json.dumps(cr.to_list())
    restored = CompactRange.from_list(json.loads(stored))
    assert restored == cr
    assert restored.size == n
    assert restored.root() == cr.root()
    restored.extend(leaves[n:])  # carry on without re-reading the first n leaves
    assert restored.root() == root(leaves)


def test_compact_range_copy_is_independent() -> None:
    cr = CompactRange.from_leaves(VECTOR_LEAVES[:5])
    cp = cr.copy()
    cp.append(VECTOR_LEAVES[5])
    assert cr.root() == VECTOR_ROOTS[4]
    assert cp.root() == VECTOR_ROOTS[5]
    assert cr != cp
    assert "size=5" in repr(cr)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([], "non-empty list"),
        ("[0]", "non-empty list"),
        ([-1], "non-negative"),
        (["3"], "non-negative"),
        ([True], "non-negative"),
        ([3, "00" * 32], "needs 2 hashes"),
        ([1], "needs 1 hashes"),
        ([0, "00" * 32], "needs 0 hashes"),
        ([1, "00" * 31], "64 lowercase hex"),
        ([1, "AB" * 32], "64 lowercase hex"),
        ([1, 5], "64 lowercase hex"),
    ],
)
def test_compact_range_from_list_rejects(data: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CompactRange.from_list(data)  # type: ignore[arg-type]


def test_leaf_hash_length_is_checked() -> None:
    cr = CompactRange()
    with pytest.raises(ValueError, match="32 bytes"):
        cr.append(b"short")
    with pytest.raises(TypeError):
        cr.append("x" * 32)  # type: ignore[arg-type]
    leaves = leaves_for(600)
    leaves[300] = b"x" * 31
    with pytest.raises(ValueError, match="#300"):
        root(leaves)
    leaves[300] = "x" * 32  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        root(leaves)


# -- proofs ---------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.binary(max_size=8))
def test_every_inclusion_proof_verifies(n: int, salt: bytes) -> None:
    leaves = leaves_for(n, salt)
    rt = root(leaves)
    for i, lh in enumerate(leaves):
        proof = inclusion_proof(leaves, i)
        assert proof == ref_path(i, leaves)
        assert verify_inclusion(lh, i, n, proof, rt)
        for j, p in enumerate(proof):
            tampered = [*proof[:j], flip(p, pos=j % 32), *proof[j + 1 :]]
            assert not verify_inclusion(lh, i, n, tampered, rt)
        assert not verify_inclusion(flip(lh, pos=31, mask=1), i, n, proof, rt)
        assert not verify_inclusion(lh, i, n, proof, flip(rt))
        for wrong in {i - 1, i + 1, i ^ 1, i ^ 2} - {i}:
            assert not verify_inclusion(lh, wrong, n, proof, rt)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_every_consistency_proof_verifies(n: int, data: st.DataObject) -> None:
    leaves = leaves_for(n)
    new_root = root(leaves)
    for m in range(1, n + 1):
        old_root = root(leaves[:m])
        proof = consistency_proof(leaves, m)
        assert proof == ref_subproof(m, leaves, True)
        assert verify_consistency(m, n, old_root, new_root, proof)
        # Tampered old root.
        assert not verify_consistency(m, n, flip(old_root), new_root, proof)
        assert not verify_consistency(m, n, old_root, flip(new_root), proof)
        # A leaf below m was rewritten after the old checkpoint was taken.
        j = data.draw(st.integers(0, m - 1), label=f"changed leaf for m={m}")
        forged = list(leaves)
        forged[j] = leaf_hash(b"forged")
        assert first_divergence(leaves, forged) == j
        # Old checkpoint vs. a proof/root served from the rewritten log:
        forged_root = root(forged)
        assert not verify_consistency(m, n, old_root, forged_root, consistency_proof(forged, m))
        # Honest proof/new root vs. an old root computed over rewritten history:
        assert not verify_consistency(m, n, root(forged[:m]), new_root, proof)


def test_proofs_on_large_tree() -> None:
    leaves = leaves_for(3000)
    rt = root(leaves)
    for i in (0, 1, 255, 256, 1023, 2047, 2048, 2999):
        assert verify_inclusion(leaves[i], i, 3000, inclusion_proof(leaves, i), rt)
    for m in (1, 255, 256, 257, 1024, 2048, 2999, 3000):
        proof = consistency_proof(leaves, m)
        assert verify_consistency(m, 3000, root(leaves[:m]), rt, proof)


# -- first_divergence ------------------------------------------------------------


def test_first_divergence() -> None:
    a = leaves_for(10)
    assert first_divergence(a, a) is None
    assert first_divergence(a[:4], a) is None  # pure extension
    assert first_divergence([], a) is None
    assert first_divergence(a, a[:7]) == 7  # truncated: leaf 7 went missing
    assert first_divergence(a, []) == 0
    b = list(a)
    b[6] = leaf_hash(b"edited")
    assert first_divergence(a, b) == 6
    assert first_divergence(a, [*a[:3], *a[4:]]) == 3  # a deleted row shifts the rest


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 50), st.integers(0, 50), st.data())
def test_first_divergence_property(n: int, extra: int, data: st.DataObject) -> None:
    old = leaves_for(n)
    new = [*old, *leaves_for(extra, b"x")]
    assert first_divergence(old, new) is None
    if n:
        j = data.draw(st.integers(0, n - 1))
        new[j] = leaf_hash(b"tampered")
        assert first_divergence(old, new) == j


# -- checkpoints ------------------------------------------------------------------


@settings(max_examples=50)
@given(st.integers(min_value=1, max_value=2**63), st.binary(min_size=32, max_size=32))
def test_checkpoint_round_trip(size: int, rt: bytes) -> None:
    text = format_checkpoint(size, rt)
    assert text == f"integrity-ledger/v1 size={size} root={rt.hex()}"
    assert parse_checkpoint(text) == (size, rt)
    assert parse_checkpoint(text + "\n") == (size, rt)


def test_checkpoint_empty_tree() -> None:
    assert parse_checkpoint(format_checkpoint(0, EMPTY_ROOT)) == (0, EMPTY_ROOT)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "malformed checkpoint"),
        ("integrity-ledger/v1 size=12", "malformed checkpoint"),
        ("integrity-ledger/v1 size=012 root=" + "ab" * 32, "malformed checkpoint"),
        ("integrity-ledger/v1 size=-1 root=" + "ab" * 32, "malformed checkpoint"),
        ("integrity-ledger/v1 size=1 root=" + "AB" * 32, "malformed checkpoint"),
        ("integrity-ledger/v1 size=1 root=" + "ab" * 31, "malformed checkpoint"),
        ("integrity-ledger/v1  size=1 root=" + "ab" * 32, "malformed checkpoint"),
        ("integrity-ledger/v1 size=1 root=" + "ab" * 32 + " extra", "malformed checkpoint"),
        ("integrity-ledger/v1 size=1 root=" + "ab" * 32 + "\n\n", "malformed checkpoint"),
        ("integrity-ledger/v1 size=١ root=" + "ab" * 32, "malformed checkpoint"),
        ("other-log/v1 size=1 root=" + "ab" * 32, "unsupported checkpoint origin"),
        ("integrity-ledger/v2 size=1 root=" + "ab" * 32, "unsupported checkpoint origin"),
        ("integrity-ledger/v1 size=0 root=" + "ab" * 32, "empty-tree hash"),
    ],
)
def test_parse_checkpoint_rejects(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_checkpoint(text)


def test_format_checkpoint_rejects() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        format_checkpoint(-1, EMPTY_ROOT)
    with pytest.raises(ValueError, match="32 bytes"):
        format_checkpoint(1, b"\x00" * 31)
    with pytest.raises(ValueError, match="must be str"):
        parse_checkpoint(b"integrity-ledger/v1")  # type: ignore[arg-type]


def test_public_api() -> None:
    for name in merkle.__all__:
        assert hasattr(merkle, name)
