"""The service registry: loading (all or nothing, sealed with its digest), reading back,
and what intake does once one is loaded, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from factories import backend_url, make_app, rating

from integrity.app import App
from integrity.catalogue import Kind, Reason
from integrity.errors import InvalidInput
from integrity.model import Status
from integrity.registry import (
    RegistryService,
    parse_registry,
    read_registry_csv,
    read_registry_json,
)

REGISTRY: dict[str, Any] = {
    "halls": [{"hall_id": "H1", "name": "东城政务服务中心", "supervisor": "P9"}],
    "windows": [
        {"window_id": "H1-W01", "hall_id": "H1", "head": "P1", "service_types": ["tax"]},
        {"window_id": "H1-W02", "hall_id": "H1", "head": "P2"},
    ],
    "roster": [
        {"staff_id": "S1", "window_id": "H1-W01", "from": "2026-10-01", "to": "2026-10-31"},
        {"staff_id": "S2", "window_id": "H1-W02", "from": "2026-10-10"},
    ],
}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> Iterator[App]:
    with make_app(tmp_path / "home", db_url) as a:
        yield a


def load(app: App, doc: dict[str, Any] = REGISTRY) -> int:
    event_id, _ = app.get(RegistryService).load(parse_registry(doc), actor="operator")
    app.hook.reload()
    return event_id


def test_a_loaded_registry_reads_back_the_same_and_is_sealed_with_its_digest(app: App) -> None:
    reg = parse_registry(REGISTRY)
    event_id = load(app)
    back = app.get(RegistryService).current()
    assert back.canonical() == reg.canonical() and back.version == event_id
    assert back.hall_of("H1-W01") is not None and back.hall_of("H1-W01").name == "东城政务服务中心"
    [ev] = app.ledger.events_about("registry")
    assert ev.kind == Kind.REGISTRY_LOADED
    assert (ev.evidence["halls"], ev.evidence["windows"], ev.evidence["roster"]) == (1, 2, 2)
    # its tables are sealed in the same unit of work, right after the event
    for i, name in enumerate(("halls", "roster", "windows"), start=1):
        [seal] = app.ledger.events_about(f"table:{name}")
        assert seal.kind == Kind.CONFIG_SEALED and seal.event_id == event_id + i
        rows = {"halls": 1, "windows": 2, "roster": 2}[name]
        assert seal.evidence["rows"] == rows and len(seal.evidence["sha256"]) == 64
    report = app.log.verify(app.clock.now())
    assert report.ok, report.problems


def test_loading_again_replaces_the_whole_registry(app: App) -> None:
    load(app)
    load(app, {"halls": [{"hall_id": "H2"}], "windows": [{"window_id": "W9", "hall_id": "H2"}]})
    back = app.get(RegistryService).current()
    assert set(back.windows) == {"W9"} and set(back.halls) == {"H2"} and back.roster == ()


def test_without_a_registry_intake_does_not_check_windows(app: App) -> None:
    d = app.validate(rating(window_id="anything-at-all"))
    assert d.status is Status.ACCEPTED


def test_once_loaded_an_unknown_window_is_held(app: App) -> None:
    load(app)
    d = app.validate(rating(window_id="H1-W0l", staff_id=None), replay=True)  # a typo
    assert d.status is Status.HELD and d.reasons == (Reason.UNKNOWN_WINDOW,)
    ok = app.validate(
        rating(window_id="H1-W01", staff_id="S1", submitted_at="2026-10-15T10:00:00+08:00"),
        replay=True,
    )
    assert ok.status is Status.ACCEPTED, ok


@pytest.mark.parametrize(
    ("staff", "window", "day", "on_roster"),
    [
        ("S1", "H1-W01", "2026-10-01", True),  # first day, included
        ("S1", "H1-W01", "2026-10-31", True),  # last day, included
        ("S1", "H1-W01", "2026-11-01", False),  # the day after
        ("S1", "H1-W02", "2026-10-15", False),  # another window
        ("S2", "H1-W02", "2026-12-24", True),  # open-ended
        ("S3", "H1-W01", "2026-10-15", False),  # never rostered
    ],
)
def test_staff_not_on_the_roster_that_day_are_held(
    app: App, staff: str, window: str, day: str, on_roster: bool
) -> None:
    load(app)
    app.clock.set(datetime.fromisoformat(f"{day}T23:59:00+08:00"))  # type: ignore[attr-defined]
    # 23:30 local on that day: the day is judged in the rule set's time zone, not UTC
    d = app.validate(
        rating(staff_id=staff, window_id=window, served_at=f"{day}T23:30:00+08:00",
               submitted_at=f"{day}T23:31:00+08:00"),
        replay=True,
    )  # fmt: skip
    if on_roster:
        assert d.status is Status.ACCEPTED, d
    else:
        assert d.status is Status.HELD and d.reasons == (Reason.STAFF_NOT_ON_ROSTER,)


def test_a_rating_naming_no_staff_is_not_checked_against_the_roster(app: App) -> None:
    load(app)
    assert app.validate(rating(window_id="H1-W02", staff_id=None)).status is Status.ACCEPTED


def test_the_rule_set_sets_what_each_costs(tmp_path: Path) -> None:
    from rules.ruleset import default_ruleset_text

    text = (
        default_ruleset_text()
        .replace('unknown_window = "hold"', 'unknown_window = "reject"')
        .replace('staff_not_on_roster = "hold"', 'staff_not_on_roster = "note"')
    )
    with make_app(tmp_path / "h", rules_text=text) as app:
        load(app)
        assert app.validate(rating(window_id="nope")).status is Status.REJECTED
        d = app.validate(
            rating(window_id="H1-W01", staff_id="S7", submitted_at="2026-10-15T10:00:00+08:00"),
            replay=True,
        )
        assert d.status is Status.ACCEPTED and d.reasons == (Reason.STAFF_NOT_ON_ROSTER,)


def test_a_bad_registry_lists_every_problem_and_changes_nothing(app: App) -> None:
    load(app)
    bad = {
        "halls": [{"hall_id": "H1"}, {"hall_id": "H1"}, {"name": "no id"}],
        "windows": [{"window_id": "W1", "hall_id": "H9"}],
        "roster": [{"staff_id": "S1", "window_id": "W1", "from": "2026-10-31", "to": "2026-10-01"},
                   {"staff_id": "S2", "window_id": "W2", "from": "yesterday"}],
        "extra": [],
    }  # fmt: skip
    with pytest.raises(InvalidInput) as info:
        parse_registry(bad)
    fields = {e.field for e in info.value.errors}
    assert {
        "(file)",
        "halls[1].hall_id",
        "halls[2].hall_id",
        "windows[0].hall_id",
        "roster[1].window_id",
        "roster[1].from",
    } <= fields, fields
    assert set(app.get(RegistryService).current().windows) == {"H1-W01", "H1-W02"}


def test_the_csv_form_reads_like_the_json_form() -> None:
    halls = "hall_id,name,supervisor\nH1,东城政务服务中心,P9\n"
    windows = "window_id,hall_id,name,head,service_types\nH1-W01,H1,,P1,tax\nH1-W02,H1,,P2,\n"
    roster = "staff_id,window_id,from,to\nS1,H1-W01,2026-10-01,2026-10-31\nS2,H1-W02,2026-10-10,\n"
    assert read_registry_csv(halls, windows, roster).canonical() == (
        read_registry_json(json.dumps(REGISTRY)).canonical()
    )


def test_roster_lookup_by_day() -> None:
    reg = parse_registry(REGISTRY)
    assert reg.on_roster("S1", "H1-W01", date(2026, 10, 31))
    assert not reg.on_roster("S1", "H1-W01", date(2026, 9, 30))
    assert reg.people() == {"P1", "P2", "P9"}
