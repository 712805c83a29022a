"""Drawing on several processes gives exactly the one-process draw, and the same errors."""

from __future__ import annotations

import random

import pytest

from audit_sampling import sampler
from audit_sampling.formats import FrameError, FrameHeader, FrameReader, FrameWriter
from audit_sampling.parallel import draw_frame

SEED = "parallel-seed-12345678901"


def frame(n: int = 3000) -> tuple[bytes, dict[str, int]]:
    rng = random.Random(7)
    rows = []
    strata: dict[str, int] = {}
    for rid in sorted(rng.sample(range(1, 10**7), n)):
        w = f"W{rng.randrange(7)}"
        strata[w] = strata.get(w, 0) + 1
        rows.append((rid, w, rng.choice([0.0, 0.0, 0.3, 0.75])))
    header = FrameHeader(
        "2026-10", "UTC", "a", "b", "integrity-ledger/v1 size=1 root=" + "0" * 64, strata
    )
    parts: list[bytes] = []
    w = FrameWriter(header, parts.append)
    w.write(rows)
    w.close()
    return b"".join(parts), strata


def chunks(data: bytes, size: int = 997) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_several_processes_draw_exactly_what_one_does() -> None:
    data, strata = frame()
    takes = sampler.plan(strata, "0.1", 5)
    opts = {"risk_take": 6, "risk_min": 0.5, "risk_base": takes}
    one, d1 = draw_frame(FrameReader(chunks(data)), SEED, takes, workers=1, **opts)
    many, d3 = draw_frame(FrameReader(chunks(data)), SEED, takes, workers=3, **opts)
    assert many.uniform == one.uniform and many.risk == one.risk
    assert many.risk_info == one.risk_info
    assert d1.sha256 == d3.sha256 and d1.ratings == d3.ratings == 3000
    whole = {w: sampler.plan(strata, "1", 0)[w] for w in strata}
    a, _ = draw_frame(FrameReader(chunks(data)), SEED, whole, workers=1)
    b, _ = draw_frame(FrameReader(chunks(data)), SEED, whole, workers=2)
    assert a.uniform == b.uniform


@pytest.mark.parametrize("workers", [1, 2])
def test_errors_name_the_same_line(workers: int) -> None:
    data, _ = frame(400)
    lines = data.split(b"\n")
    dup = lines.copy()
    dup[200] = lines[199]  # a repeated row, wherever the chunks fall
    with pytest.raises(FrameError, match=r"line 201: rating id \d+ does not ascend"):
        draw_frame(FrameReader(chunks(b"\n".join(dup), 211)), SEED, {"W1": 3}, workers=workers)
    bad = lines.copy()
    bad[300] = bad[300].replace(b",W", b",X")
    with pytest.raises(FrameError, match=r"line 301: window 'X\d' is not a stratum"):
        draw_frame(FrameReader(chunks(b"\n".join(bad), 211)), SEED, {"W1": 3}, workers=workers)


def test_an_optimistic_start_that_comes_up_short_is_drawn_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, strata = frame()
    takes = sampler.plan(strata, "0.2", 5)
    exact, _ = draw_frame(FrameReader(chunks(data)), SEED, takes)
    opened = []

    def source() -> FrameReader:
        opened.append(1)
        return FrameReader(chunks(data))

    assert draw_frame(source, SEED, takes)[0].uniform == exact.uniform
    assert len(opened) == 1  # the usual case: one pass
    # a start bar far too low: every window comes up short, and the frame is read again
    monkeypatch.setattr(sampler, "_MARGIN_SIGMA", -3.0)
    monkeypatch.setattr(sampler, "_MARGIN_EXTRA", -0.5 * min(takes.values()))
    with pytest.raises(sampler.Shortfall):
        s = sampler.Sampling(SEED, takes, sizes=strata)
        s.feed(FrameReader(chunks(data)))
        s.finish()
    opened.clear()
    for workers in (1, 2):
        assert draw_frame(source, SEED, takes, workers=workers)[0].uniform == exact.uniform
    assert len(opened) == 4
