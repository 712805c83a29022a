"""Frame and draw over 10,000,000 synthetic ratings: time and peak memory.

The frame is written to a temporary file (as ``integrity audit frame`` publishes it)
from a streaming generator of ids, then read back, hashed, checked and drawn at
10 % per window (min 5), as ``integrity audit draw`` and ``audit verify`` do. No
10M-element list is ever built: memory follows the sample, not the frame.

Floors measured in the same run: bare SHA-256 of every id (the irreducible cost of
a consistent sampler) and the ``consistent-sampler`` package itself on a smaller
population (it builds a heap of every ticket: memory O(frame)).

    .venv/bin/python -m bench.bench_audit [--n 10000000] [--windows 500] [--rate 0.10]

Target: frame + draw of 10M in at most 60 s; peak RSS bounded by the sample size.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from audit_sampling import sampler
from audit_sampling.formats import FrameHeader, FrameReader, FrameWriter, chunks_of
from audit_sampling.parallel import draw_frame

SEED = "31415926535897932384626433"


def cpu_s() -> float:
    """User + system CPU seconds of this process and its finished workers.

    Less sensitive to other load on the machine than wall time.
    """
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size so far, MB (Linux reports KB); children: the largest worker."""
    return resource.getrusage(who).ru_maxrss / 1024


def ids(n: int, h: int) -> Iterator[tuple[int, str, float]]:
    names = [f"H{w:03d}" for w in range(h)]
    for i in range(1, n + 1):
        yield i, names[i % h], 0.0


def exact_sizes(n: int, h: int) -> dict[str, int]:
    sizes = dict.fromkeys((f"H{w:03d}" for w in range(h)), 0)
    # i in 1..n falls in window i % h: count residues without enumerating
    full, rest = divmod(n, h)
    for w in range(h):
        sizes[f"H{w:03d}"] = full + (1 if 0 < w <= rest else 0)
    return sizes


def floor_sha(n: int) -> float:
    """Seconds for SHA-256 of seed prefix + id for ``n`` ids (nothing else)."""
    h0 = hashlib.sha256(sampler.seed_prefix(SEED))
    t = time.perf_counter()
    for i in range(1, n + 1):
        h = h0.copy()
        h.update(str(i).encode())
        int.from_bytes(h.digest(), "big")
    return time.perf_counter() - t


def floor_consistent_sampler(n: int, take: int) -> float:
    from consistent_sampler import sampler as cs

    id_list = list(range(1, n + 1))
    t = time.perf_counter()
    list(cs(id_list, seed=sampler.sampler_seed(SEED), take=take, output="id"))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--windows", type=int, default=500)
    ap.add_argument("--rate", default="0.10")
    ap.add_argument("--min", type=int, default=5)
    ap.add_argument("--floor-n", type=int, default=1_000_000)
    ap.add_argument("--cs-n", type=int, default=100_000)
    ap.add_argument(
        "--workers", type=int, default=1, help="processes for the draw (parallel.draw_frame)"
    )
    args = ap.parse_args()
    n, h = args.n, args.windows
    start_rss = peak_rss_mb()
    sizes = exact_sizes(n, h)
    header = FrameHeader(
        period="2026-10",
        timezone="UTC",
        start="2026-10-01T00:00:00+00:00",
        end="2026-11-01T00:00:00+00:00",
        checkpoint="integrity-ledger/v1 size=0 root=" + "0" * 64,
        strata=sizes,
    )
    takes = sampler.plan(sizes, args.rate, args.min)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "frame.csv"
        t0, c0 = time.perf_counter(), cpu_s()
        with open(path, "wb") as f:
            writer = FrameWriter(header, f.write)
            writer.write(ids(n, h))
            digest = writer.close()
        t_frame, c_frame = time.perf_counter() - t0, cpu_s() - c0
        rss_frame = peak_rss_mb()

        t0, c0 = time.perf_counter(), cpu_s()

        def frame_bytes() -> Iterator[bytes]:
            with open(path, "rb") as f:
                yield from chunks_of(f)

        def open_frame() -> FrameReader:
            return FrameReader(frame_bytes())

        result, check = draw_frame(open_frame, SEED, takes, workers=args.workers)
        t_draw, c_draw = time.perf_counter() - t0, cpu_s() - c0
        size_mb = os.path.getsize(path) / 1e6
    assert check.sha256 == digest.sha256, "read-back hash differs"
    drawn = sum(len(v) for v in result.uniform.values())
    assert drawn == sum(takes.values())
    rss_draw = peak_rss_mb()

    fl = floor_sha(args.floor_n) / args.floor_n
    cs_n = args.cs_n
    cs_t = floor_consistent_sampler(cs_n, max(1, cs_n // 10)) / cs_n
    total = t_frame + t_draw
    print(
        f"population {n:,} ratings in {h} windows; rate {args.rate}, min {args.min}; "
        f"draw on {args.workers} process(es)"
    )
    print(
        f"frame:  {t_frame:6.1f} s wall, {c_frame:6.1f} s CPU  "
        f"({size_mb:.0f} MB file, sha256 {digest.sha256[:16]}…)"
    )
    print(
        f"draw:   {t_draw:6.1f} s wall, {c_draw:6.1f} s CPU  "
        f"(read + hash check + sample of {drawn:,} items)"
    )
    print(
        f"total:  {total:6.1f} s wall, {c_frame + c_draw:6.1f} s CPU  "
        f"target <= 60 s: {'ok' if total <= 60 else 'MISSED'}"
    )
    print(
        f"memory: peak RSS {start_rss:.0f} MB at start, {rss_frame:.0f} MB after the frame, "
        f"{rss_draw:.0f} MB after the draw ({(rss_draw - start_rss) * 1e6 / max(drawn, 1):.0f} "
        "bytes per sampled item; a 10M-element list of ids alone would take ~400 MB)"
    )
    if args.workers > 1:
        print(f"        largest worker peak RSS {peak_rss_mb(resource.RUSAGE_CHILDREN):.0f} MB")
    per_id = t_draw / n
    print(
        f"floor:  bare SHA-256 per id {fl * 1e6:.2f} µs; draw per id {per_id * 1e6:.2f} µs "
        f"= {per_id / fl:.1f}x floor"
    )
    print(
        f"consistent-sampler on {cs_n:,} ids: {cs_t * 1e6:.2f} µs per id "
        f"(ours {per_id / cs_t:.2f}x of it, and O(sample) instead of O(frame) memory)"
    )


if __name__ == "__main__":
    main()
