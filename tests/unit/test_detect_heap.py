"""The detection run's malloc policy: lean while reading, reusing while working."""

from __future__ import annotations

from typing import Any

import pytest

from rules.detectors import features

MMAP, TRIM = features._M_MMAP_THRESHOLD, features._M_TRIM_THRESHOLD
LEAN = [(MMAP, 128 << 10), (TRIM, 128 << 10)]
WORKING = [(MMAP, 32 << 20), (TRIM, 64 << 20)]


class Recorder:
    """Stands in for glibc: records every ``mallopt`` and ``malloc_trim``."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append("trim")
        return 1


@pytest.fixture
def libc(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(features, "_libc", lambda: rec)
    return rec


def test_the_read_inside_a_working_heap_puts_the_working_policy_back(libc: Recorder) -> None:
    with features.working_heap():
        assert libc.calls == WORKING
        libc.calls.clear()
        with features._lean_heap():  # what load_frame wraps its read in
            assert libc.calls == LEAN
        assert libc.calls == [*LEAN, "trim", *WORKING]
        libc.calls.clear()
    assert libc.calls == [*LEAN, "trim"]  # glibc's defaults again, trimmed
    assert features._working == [False]


def test_a_read_outside_stays_lean(libc: Recorder) -> None:
    with features._lean_heap():
        pass
    assert libc.calls == [*LEAN, "trim"]


def test_a_failing_run_still_leaves_the_defaults(libc: Recorder) -> None:
    with pytest.raises(RuntimeError), features.working_heap():
        raise RuntimeError("a detector failed")
    assert libc.calls[-3:] == [*LEAN, "trim"] and features._working == [False]


def test_without_glibc_nothing_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "_libc", lambda: None)
    with features.working_heap(), features._lean_heap():
        assert features._working == [False]


def test_releasing_the_heap_trims_it(libc: Recorder) -> None:
    with features.working_heap():
        libc.calls.clear()
        features.release_heap()
        assert libc.calls == ["trim"]  # the policy stays the working one
