"""The real-time gates' date checks: live age (``time.too_old``) and closed periods."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from integrity.catalogue import Reason
from integrity.errors import InvalidInput
from integrity.model import Rating, Status
from integrity.periods import ClosedPeriod, ClosedPeriods, parse_period, period_of
from integrity.ports import GateContext
from rules.realtime import PeriodGate, TimeGate

T = datetime(2026, 10, 15, 2, 0, tzinfo=UTC)
LIVE = GateContext(replay=False, rule_set_id="rs")
REPLAY = GateContext(replay=True, rule_set_id="rs")
SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = timedelta(days=1)


def rating(submitted: datetime = T, served: datetime | None = None) -> Rating:
    return Rating(
        ticket_id="t",
        window_id="W1",
        staff_id=None,
        service_type="general",
        channel="qr",
        served_at=served,
        submitted_at=submitted,
        submitted_at_given=True,
        received_at=T,
        scores={"overall": 5},
        composite=5.0,
        comment=None,
        ip_hash="i",
        prefix_hash="p",
        device_hash="d",
        fingerprint="f",
    )


def test_too_old_is_judged_live_only() -> None:
    gate = TimeGate(300, max_age_s=7 * 86400)
    old = rating(T - 8 * DAY)
    verdict = gate.check(old, LIVE)
    assert verdict is not None
    assert (verdict.status, verdict.reasons) == (Status.HELD, (Reason.TOO_OLD,))
    assert verdict.evidence["too_old"]["seconds_before_receipt"] == {"submitted_at": 8 * 86400}
    assert gate.check(old, REPLAY) is None
    served = gate.check(rating(T - DAY, served=T - 9 * DAY), LIVE)
    assert served is not None and set(served.evidence["too_old"]["seconds_before_receipt"]) == {
        "served_at"
    }
    assert gate.check(rating(T - 7 * DAY, served=T - 7 * DAY), LIVE) is None
    assert TimeGate(300).check(old, LIVE) is None  # no max age configured


class Store:
    def __init__(self) -> None:
        self.rows: list[ClosedPeriod] = []
        self.reads = 0

    def closed(self) -> list[ClosedPeriod]:
        self.reads += 1
        return list(self.rows)

    def version(self) -> int | None:
        return len(self.rows) or None

    def close(self, *args: Any, **kwargs: Any) -> ClosedPeriod:
        raise NotImplementedError


def test_closed_periods_are_cached_and_reloaded_when_one_more_closes() -> None:
    store = Store()
    periods = ClosedPeriods(store, SHANGHAI)  # type: ignore[arg-type]
    gate = PeriodGate(periods)
    assert gate.check(rating(), REPLAY) is None and not gate.reload()
    store.rows.append(ClosedPeriod("2026-10", T, "A1", 7))
    assert gate.check(rating(), LIVE) is None  # not re-read yet
    reads = store.reads
    assert gate.reload() and not gate.reload()
    assert store.reads == reads + 1
    verdict = gate.check(rating(), LIVE)
    assert verdict is not None
    assert (verdict.status, verdict.reasons, verdict.evidence) == (
        Status.HELD,
        (Reason.PERIOD_CLOSED,),
        {"period": "2026-10"},
    )
    # the period of served_at decides; months in the rule set's time zone
    nov_local = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)  # 2026-11-01 00:00 in Shanghai
    assert gate.check(rating(nov_local), REPLAY) is None
    assert gate.check(rating(nov_local, served=nov_local - timedelta(seconds=1)), REPLAY)
    assert periods.is_closed(replace(rating(), submitted_at=nov_local).occurred_at) is None


def test_period_labels() -> None:
    assert period_of(datetime(2026, 12, 31, 16, 0, tzinfo=UTC), SHANGHAI) == "2027-01"
    assert parse_period(" 2026-01 ") == "2026-01"
    for bad in ("2026-00", "2026-1", "1969-12", "", "2026/01"):
        with pytest.raises(InvalidInput, match="YYYY-MM"):
            parse_period(bad)
