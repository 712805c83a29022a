"""The frame file: byte-exact round trips, streaming in any chunking, and every defect found
with its line."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit_sampling.formats import FrameError, FrameHeader, FrameReader, FrameWriter, frame_sha256


def header(strata: dict[str, int]) -> FrameHeader:
    return FrameHeader(
        period="2026-10",
        timezone="Asia/Shanghai",
        start="2026-09-30T16:00:00+00:00",
        end="2026-10-31T16:00:00+00:00",
        checkpoint="integrity-ledger/v1 size=7 root=" + "ab" * 32,
        strata=strata,
    )


def write(rows: list[tuple[int, str, float]], strata: dict[str, int] | None = None) -> bytes:
    if strata is None:
        strata = {}
        for _, w, _ in rows:
            strata[w] = strata.get(w, 0) + 1
    parts: list[bytes] = []
    writer = FrameWriter(header(strata), parts.append)
    writer.write(rows)
    digest = writer.close()
    data = b"".join(parts)
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.bytes == len(data)
    return data


def read(data: bytes, chunk: int = 1 << 20) -> tuple[list[tuple[str, str, str]], FrameReader]:
    reader = FrameReader(data[i : i + chunk] for i in range(0, len(data), chunk))
    rows = list(reader)
    return rows, reader


ROWS = [(3, "H1-W01", 0.0), (7, "H1-W02", 0.8125), (12, "H1-W01", 1.0), (40, "H1-W02", 0.000001)]

windows = st.text(min_size=1, max_size=12)  # anything intake accepts: commas, newlines, unicode


@given(
    rows=st.lists(
        st.tuples(st.integers(0, 10**15), windows, st.floats(0, 1)),
        max_size=40,
        unique_by=lambda r: r[0],
    ),
    chunk=st.integers(1, 64),
)
def test_round_trip_in_any_chunking(rows, chunk) -> None:
    rows = sorted(rows)
    data = write(rows)
    got, reader = read(data, chunk)
    digest = reader.finish()
    assert [(int(r), w) for r, w, _ in got] == [(r, w) for r, w, _ in rows]
    assert [float(k) for _, _, k in got] == [float(f"{k:.6f}") for _, _, k in rows]
    assert digest.sha256 == hashlib.sha256(data).hexdigest() == frame_sha256([data])
    assert digest.ratings == len(rows)


def test_the_format_is_plain_and_canonical() -> None:
    data = write([(1, "a,b", 0.5), (2, "W\n1", 0.0)])
    lines = data.decode().split("\n")
    assert lines[0].startswith('#{"checkpoint":"integrity-ledger/v1 size=7')
    assert lines[1] == "rating_id,window_id,risk"
    assert lines[2:] == ["1,a%2Cb,0.500000", "2,W%0A1,0.000000", ""]
    assert write([(1, "a,b", 0.5), (2, "W\n1", 0.0)]) == data  # same rows, same bytes


def test_the_writer_refuses_what_the_reader_would() -> None:
    with pytest.raises(ValueError, match="ascend"):
        write([(2, "A", 0.0), (1, "A", 0.0)])
    with pytest.raises(ValueError, match="not in the frame header"):
        write([(1, "A", 0.0)], {"B": 1})
    with pytest.raises(ValueError, match="header says"):
        write([(1, "A", 0.0)], {"A": 2})
    with pytest.raises(ValueError, match="outside"):
        write([(1, "A", 1.5)])


def _tampered(old: bytes, new: bytes) -> bytes:
    data = write(ROWS)
    assert old in data
    return data.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        (b"7,H1-W02,", b"12,H1-W02,", r"line 5: rating id 12 does not ascend"),  # duplicated
        (b"12,H1-W01,", b"5,H1-W01,", r"line 5: rating id 5 does not ascend"),  # moved
        (b"40,H1-W02,", b"040,H1-W02,", r"line 6: rating id '040' is not a canonical"),
        (b"7,H1-W02,", b"7,H1-W09,", r"line 4: window 'H1-W09' is not a stratum"),
        (b"7,H1-W02,0.812500", b"7,H1-W02,0.8125", r"line 4: risk '0.8125'"),
        (b"7,H1-W02,0.812500", b"7,H1-W02,0.812500,x", r"line 4: expected 3 fields, found 4"),
        (b"3,H1-W01,0.000000\n", b"", r"window 'H1-W01' has 1 rows but the header says 2"),
        (b"\n40,", b"\n40,H1-W02,0.000000\n41,", r"window 'H1-W02' has 3 rows but the header"),
        (b'"ratings":4', b'"ratings":5', r"line 1: header says 5 ratings"),
        (
            b'"period":"2026-10"',
            b'"period": "2026-10"',
            r"line 1: the header is not in canonical form",
        ),
        (b"rating_id,window_id,risk", b"id,window,risk", r"line 2: expected the column line"),
    ],
)
def test_every_defect_is_found_with_its_line(old: bytes, new: bytes, where: str) -> None:
    data = _tampered(old, new)
    with pytest.raises(FrameError, match=where):
        _, reader = read(data, 5)
        reader.finish()


def test_a_truncated_or_foreign_file_is_refused() -> None:
    data = write(ROWS)
    with pytest.raises(FrameError, match="does not end with a newline"):
        read(data[:-3])
    with pytest.raises(FrameError, match="empty"):
        read(b"")
    with pytest.raises(FrameError, match="not UTF-8"):
        read(data[:-1] + b"\xff\n")
    with pytest.raises(FrameError, match="line 1"):
        read(b"rating_id,window_id,risk\n1,A,0.000000\n")


def test_an_edited_row_keeps_the_format_but_changes_the_hash() -> None:
    data = write(ROWS)
    edited = data.replace(b"7,H1-W02,0.812500", b"7,H1-W02,0.000000")
    _, a = read(data)
    _, b = read(edited)
    assert a.finish().sha256 != b.finish().sha256


def test_a_reader_is_iterated_once_and_must_be_drained() -> None:
    _, reader = read(write(ROWS))
    with pytest.raises(RuntimeError):
        list(reader)
    fresh = FrameReader([write(ROWS)])
    with pytest.raises(FrameError, match="unread"):
        fresh.finish()


def test_shifted_fields_cannot_pass_as_rows() -> None:
    """Four fields on one line and two on the next would still split into valid triples:
    the reader reads such a chunk line by line and names the line."""
    data = write([(1, "7", 0.5), (7, "7", 0.1)])
    shifted = data.replace(b"1,7,0.500000\n7,7,0.100000", b"1,7,0.500000,7\n7,0.100000")
    with pytest.raises(FrameError, match="line 3: expected 3 fields, found 4"):
        read(shifted)


def test_a_window_that_looks_like_a_risk_is_still_read() -> None:
    rows = [(1, "x.123456", 0.25), (2, "x.123456,", 0.0), (3, "0.000001", 1.0)]
    got, reader = read(write(rows))
    assert [(int(r), w) for r, w, _ in got] == [(r, w) for r, w, _ in rows]
    assert reader.finish().ratings == 3
