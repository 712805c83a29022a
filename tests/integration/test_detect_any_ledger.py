"""Detection runs on any ledger the hook accepts, and holds only ratings that count.

Real feeds leave optional fields out: no staff, no ``served_at``, one window, one day,
a single rating or none, timestamps at day precision (every rating at midnight or
noon), a rubric with other dimensions or another scale. Each case goes through a real
instance (the hook in replay mode, then the detect service with its soft signals);
hypothesis generates the rest.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from factories import T0, make_app, rating
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrity.adapters import tables as t
from integrity.app import App
from rules.detectors.service import DetectService
from rules.ruleset import default_ruleset_text

_DEFAULT_WEIGHTS = (
    "weights = { attitude = 0.20, efficiency = 0.30, compliance = 0.25, "
    "environment = 0.15, overall = 0.10 }"
)
#: Rule sets by name: the default rubric, and one with two dimensions on a 0-10 scale.
RUBRICS: dict[str, tuple[str, dict[str, tuple[int, int]]]] = {
    "default": (
        default_ruleset_text(),
        {d: (1, 5) for d in ("attitude", "efficiency", "compliance", "environment", "overall")},
    ),
    "0-10, two dimensions": (
        default_ruleset_text()
        .replace("scale = [1, 5]", "scale = [0, 10]")
        .replace("low_score_below = 3.0", "low_score_below = 5.0")
        .replace(_DEFAULT_WEIGHTS, "weights = { speed = 1, courtesy = 2 }"),
        {"speed": (0, 10), "courtesy": (0, 10)},
    ),
}
_homes = itertools.count()

# the soft signals run in a forked worker: import pyod once here, not in every worker
import pyod.models.ecod  # noqa: E402, F401


def _statuses(app: App) -> dict[int, tuple[str, float]]:
    with app.ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.rating_status.c.rating_id, t.rating_status.c.status, t.rating_status.c.risk)
        ).all()
    return {int(r): (str(s), float(k)) for r, s, k in rows}


def detect_on(home: Path, docs: list[dict[str, Any]], rubric: str = "default") -> App:
    """Ingest ``docs`` (replay) into a fresh instance and run detect twice; checks the
    invariants and returns the (open) app."""
    app = make_app(home, rules_text=RUBRICS[rubric][0])
    for doc in docs:
        app.validate(doc, replay=True)
    before = _statuses(app)
    rep = app.get(DetectService).run()
    after = _statuses(app)
    assert rep.ratings == len(before)
    moved = {rid for rid in after if after[rid][0] != before[rid][0]}
    # only ratings that counted are held, and held is all that happens to them
    assert all(before[rid][0] == "accepted" and after[rid][0] == "held" for rid in moved)
    assert len(moved) == rep.held
    assert all(0.0 <= risk <= 1.0 for _, risk in after.values())
    again = app.get(DetectService).run(full=True)
    assert again.held == 0 and again.risk_updates == 0
    assert _statuses(app) == after
    # nothing changed since: the next whole-ledger run reads nothing
    assert app.get(DetectService).run().up_to_date == again.run_id
    assert _statuses(app) == after
    return app


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "home"


def _at(t: datetime) -> str:
    return t.isoformat()


def test_no_staff_anywhere(home: Path) -> None:
    docs = [
        rating(
            omit=["staff_id"],
            window_id=f"W{i % 3}",
            submitted_at=_at(T0 + timedelta(minutes=7 * i)),
        )
        for i in range(80)
    ]
    detect_on(home, docs).close()


def test_a_feed_that_stops_naming_staff_part_way_reads_alike_on_every_path(
    home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On SQLite a large read goes through helper processes whose driver infers each
    slice's column types from its values: a slice after the first where no rating names
    a staff member (a feed that stopped sending it) comes back untyped, and must read as
    the cursor reads it, with no fallback."""
    import pandas as pd

    import integrity.adapters.sql as sql_adapter
    from rules.detectors.features import load_frame

    app = make_app(home)
    for i in range(60):
        doc = rating(
            window_id=f"W{i % 3}",
            submitted_at=_at(T0 + timedelta(minutes=7 * i)),
            **({} if i < 15 else {"omit": ["staff_id"]}),
        )
        app.validate(doc, replay=True)
    kw: dict[str, Any] = {"rubric": app.core.rubric, "tz": app.core.timezone, "chunk": 10}
    app.ledger.adbc = False
    plain = load_frame(app.ledger, **kw).frame
    app.ledger.adbc = True
    monkeypatch.setattr(sql_adapter, "BULK_SCAN_ROWS", 0)  # a large read: the fast path
    with caplog.at_level("WARNING", logger="integrity.columnar"):
        fast = load_frame(app.ledger, **kw).frame
    assert not caplog.records  # read by the helper, not by the cursor after it failed
    assert plain["staff_id"].isna().sum() == 45
    pd.testing.assert_frame_equal(plain, fast, check_exact=True)
    app.close()


def test_no_served_at_no_staff_one_window_one_day(home: Path) -> None:
    docs = [
        rating(
            omit=["staff_id", "service_type", "channel"],
            submitted_at=_at(T0 + timedelta(minutes=5 * i)),
        )
        for i in range(60)
    ]
    detect_on(home, docs).close()


@pytest.mark.parametrize("n", [0, 1], ids=["no rating", "one rating"])
def test_no_rating_or_a_single_one(home: Path, n: int) -> None:
    docs = [rating(served_at=_at(T0 - timedelta(minutes=4)), submitted_at=_at(T0))][:n]
    detect_on(home, docs).close()


@pytest.mark.parametrize("hour_utc", [16, 4], ids=["midnight", "noon"])
def test_day_precision_timestamps(home: Path, hour_utc: int) -> None:
    """Every rating (and its service) at the same local time of its day (Shanghai = UTC+8)."""
    docs = []
    for i in range(90):
        day = (T0 + timedelta(days=i % 6)).replace(hour=hour_utc, minute=0)
        docs.append(rating(window_id=f"W{i % 3}", submitted_at=_at(day), served_at=_at(day)))
    detect_on(home, docs).close()


def test_a_rubric_of_other_dimensions_and_scale(home: Path) -> None:
    docs = [
        rating(
            scores={"speed": (i * 7) % 11, "courtesy": 10 if i % 4 else 2},
            window_id=f"W{i % 4}",
            device_id=f"d{i % 9}",
            submitted_at=_at(T0 + timedelta(minutes=11 * i)),
            served_at=_at(T0 + timedelta(minutes=11 * i - 3)),
        )
        for i in range(120)
    ]
    detect_on(home, docs, "0-10, two dimensions").close()


def test_a_flood_from_one_address_on_one_day_only(home: Path) -> None:
    docs = [
        rating(
            ip="198.51.100.9",
            device_id=f"dev-{i}",
            submitted_at=_at(T0 + timedelta(seconds=15 * i)),
        )
        for i in range(150)
    ]
    app = detect_on(home, docs)
    app.close()


# -- generated ledgers --------------------------------------------------------------------


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    """A small ledger: few windows, devices and addresses (so limits trip and patterns
    form), optional fields left out per ledger or per rating, times at second, minute or
    day precision over up to ten days."""
    rubric = draw(st.sampled_from(sorted(RUBRICS)))
    dims = RUBRICS[rubric][1]
    n = draw(st.integers(0, 45))
    windows = draw(st.integers(1, 4))
    devices = draw(st.integers(1, 12))
    addresses = draw(st.integers(1, 6))
    staff = draw(st.sampled_from(["none", "all", "some"]))
    served = draw(st.sampled_from(["none", "all", "some"]))
    precision = draw(st.sampled_from(["second", "midnight", "noon"]))
    docs = []
    for _ in range(n):
        day = draw(st.integers(0, 9))
        sec = draw(st.integers(0, 86399))
        if precision == "midnight":
            at = (T0 + timedelta(days=day)).replace(hour=16, minute=0)
        elif precision == "noon":
            at = (T0 + timedelta(days=day)).replace(hour=4, minute=0)
        else:
            at = T0 + timedelta(days=day, seconds=sec)
        omit = []
        if staff == "none" or (staff == "some" and draw(st.booleans())):
            omit.append("staff_id")
        doc = rating(
            omit=omit,
            window_id=f"W{draw(st.integers(0, windows - 1))}",
            device_id=f"dev-{draw(st.integers(0, devices - 1))}",
            ip=f"198.51.100.{draw(st.integers(1, addresses))}",
            scores={d: draw(st.integers(lo, hi)) for d, (lo, hi) in dims.items()},
            channel=draw(st.sampled_from(["kiosk", "qr", "app"])),
            submitted_at=_at(at),
        )
        if served == "all" or (served == "some" and draw(st.booleans())):
            doc["served_at"] = _at(at - timedelta(seconds=draw(st.integers(0, 7200))))
        if draw(st.integers(0, 3)) == 0:
            doc["comment"] = draw(st.sampled_from(["rude staff, waited two hours", "ok", "很好"]))
        docs.append(doc)
    return rubric, docs


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ledger=ledgers())
def test_detect_never_raises_and_holds_only_counted_ratings(
    tmp_path: Path, ledger: tuple[str, list[dict[str, Any]]]
) -> None:
    rubric, docs = ledger
    app = detect_on(tmp_path / f"home-{next(_homes)}", docs, rubric)
    app.close()
