"""Appeal statistics and display rows, and the staff import file parser: pure functions."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from appeals.model import Appeal, State, Vote
from appeals.stats import summarise, summarise_by
from appeals.views import appeal_row, due_day
from integrity.errors import InvalidInput
from integrity.people import StaffRecord, guess_format, parse_staff_file

T = datetime(2026, 10, 12, 2, 0, tzinfo=UTC)
TZ = ZoneInfo("Asia/Shanghai")


def appeal(n: int, state: State, **kw: Any) -> Appeal:
    base: dict[str, Any] = {
        "appeal_id": n,
        "rating_id": 100 + n,
        "appellant_id": "S1",
        "appellant_unit": "U1",
        "window_id": "W01",
        "ground": "abusive_or_unrelated",
        "reason": "unrelated abuse",
        "state": state,
        "ineligible_reasons": (),
        "round": 1,
        "filed_at": T,
        "round_started_at": T,
        "due_at": T + timedelta(days=21),
        "decided_at": None,
        "decided_by": None,
        "decision_reason": None,
        "used_automated_evidence": None,
        "prior_outcome": None,
        "reversals": 0,
        "escalations": 0,
        "reopens": 0,
        "closed_at": None,
        "updated_at": T,
        "version": 1,
        "claims_rating": state is not State.INELIGIBLE,
    }
    base.update(kw)
    return Appeal(**base)


def test_summary_counts_rates_and_median() -> None:
    appeals = [
        appeal(1, State.UPHELD, decided_at=T + timedelta(days=2)),
        appeal(2, State.REJECTED, decided_at=T + timedelta(days=4)),
        appeal(3, State.REJECTED, decided_at=T + timedelta(days=10), reopens=1, reversals=1),
        appeal(4, State.UNDER_REVIEW),
        appeal(5, State.ESCALATED, escalations=1),
        appeal(6, State.INELIGIBLE, due_at=None),
    ]
    s = summarise(appeals, T + timedelta(days=30))
    assert s["appeals"] == 6
    assert s["admitted"] == 5
    assert s["open"] == 2
    assert s["decided"] == 3
    assert s["uphold_rate"] == pytest.approx(1 / 3)
    assert s["median_days_to_decision"] == pytest.approx(4.0)
    assert s["overdue"] == 2  # the open ones, past their due date
    assert s["escalations"] == 1
    assert s["reversals"] == 1
    assert s["by_state"]["rejected"] == 2
    assert set(s["by_state"]) == {x.value for x in State}


def test_summary_of_nothing_has_no_rates() -> None:
    s = summarise([], T)
    assert s["uphold_rate"] is None
    assert s["median_days_to_decision"] is None
    assert s["appeals"] == 0


def test_the_deciding_round_is_timed_from_the_reopen() -> None:
    a = appeal(
        1,
        State.UPHELD,
        round=2,
        round_started_at=T + timedelta(days=20),
        decided_at=T + timedelta(days=21),
    )
    assert summarise([a], T)["median_days_to_decision"] == pytest.approx(1.0)


def test_summary_by_ground() -> None:
    rows = summarise_by(
        [appeal(1, State.UPHELD), appeal(2, State.REJECTED, ground="system_error")], "ground", T
    )
    assert [r["ground"] for r in rows] == ["abusive_or_unrelated", "system_error"]
    assert [r["upheld"] for r in rows] == [1, 0]


def test_due_day_is_the_last_local_day_on_time() -> None:
    assert due_day(datetime(2026, 11, 3, tzinfo=TZ).astimezone(UTC), TZ) == "2026-11-02"
    assert due_day(None, TZ) is None


def test_appeal_row_shows_votes_and_overdue() -> None:
    v = Vote("R1", "uphold", "abusive comment", False, T, 1)
    a = dataclasses.replace(appeal(1, State.UNDER_REVIEW), votes=(v,), reviewers=("R1", "R2"))
    row = appeal_row(a, T + timedelta(days=22), TZ)
    assert row["uphold_votes"] == 1
    assert row["reviewers"] == ["R1", "R2"]
    assert row["overdue"] is True
    assert row["filed"] == "2026-10-12 10:00+0800"


# -- staff import files ---------------------------------------------------------------------


def test_csv_import_with_lists_and_defaults() -> None:
    text = (
        "person_id,name,unit,roles,windows,active\n"
        "S1,Li Na,U1,staff,W01;W02,true\n"
        "R1,,U2,reviewer;staff,,\n"
        "X1,,U3,,,no\n"
    )
    recs = parse_staff_file(text, "csv")
    assert recs[0] == StaffRecord("S1", frozenset({"staff"}), "Li Na", "U1", ("W01", "W02"), True)
    assert recs[1].roles == {"reviewer", "staff"}
    assert recs[2].roles == {"staff"}
    assert recs[2].active is False


def test_jsonl_import_accepts_arrays_or_strings() -> None:
    text = '{"person_id": "A1", "roles": ["admin"]}\n\n{"person_id": "S2", "windows": "W03"}\n'
    recs = parse_staff_file(text, "jsonl")
    assert [r.person_id for r in recs] == ["A1", "S2"]
    assert recs[1].windows == ("W03",)


def test_bad_lines_are_all_named() -> None:
    text = '{"person_id": "A1", "roles": ["boss"]}\nnot json\n{"person_id": "", "colour": 1}\n'
    with pytest.raises(InvalidInput) as err:
        parse_staff_file(text, "jsonl")
    msg = err.value.summary()
    assert "line 1.roles: unknown role(s) boss" in msg
    assert "line 2: not valid JSON" in msg
    assert "line 3: unknown field(s) colour" in msg
    assert "line 3.person_id" in msg


def test_csv_needs_a_header() -> None:
    with pytest.raises(InvalidInput, match="header"):
        parse_staff_file("S1,U1\n", "csv")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("staff.csv", "csv"),
        ("s.JSONL", "jsonl"),
        ("s.ndjson", "jsonl"),
        ("-", None),
        ("s.txt", None),
    ],
)
def test_format_from_the_file_name(name: str, fmt: str | None) -> None:
    assert guess_format(name) == fmt
