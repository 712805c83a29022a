"""The supervisor's page and spreadsheet over a real ledger (SQLite and PostgreSQL): the
figures behind them (trend, low scores per day, exclusions by stage, the audit's and
appeals' figures), the read policy, the HTML's self-containment and the workbook's
sheets, formats and values."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from factories import backend_url, make_app
from publishing_factories import HALLS, NOW, Month, build_month

from integrity import access
from integrity.app import App
from integrity.clock import FrozenClock
from integrity.errors import PermissionDenied
from integrity.reports import Period, ReportService, stage_of, trend_periods
from publishing import Pages
from publishing.book import render_book
from publishing.page import render_page


@pytest.fixture(params=["sqlite", "postgresql"])
def month(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[App, Month]]:
    app = make_app(tmp_path / "home", backend_url(request, tmp_path), clock=FrozenClock(NOW))
    made = build_month(app)
    yield app, made
    app.close()


@pytest.fixture(scope="module")
def sqlite_month(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, Month]]:
    app = make_app(tmp_path_factory.mktemp("pages") / "home", clock=FrozenClock(NOW))
    made = build_month(app)
    yield app, made
    app.close()


def october(app: App) -> Period:
    return Period.month("2026-10", app.core.timezone)


def test_stages_and_trend_periods() -> None:
    assert stage_of(("rate_limit.ip",)) == "hook"
    assert stage_of(("staff_not_on_roster", "review.confirmed")) == "hook"
    assert stage_of(("outlier.burst", "review.confirmed")) == "detection"
    assert stage_of(("review.confirmed",)) == "detection"  # a window case's confirmation
    assert stage_of(("outlier.coerced", "audit.coerced")) == "audit"
    assert stage_of(("appeal.upheld",)) == "appeal"
    assert stage_of(()) == "hook"
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    months = trend_periods(Period.month("2026-10", tz), 12)
    assert [p.label for p in months][:2] == ["2025-11", "2025-12"] and months[-1].label == "2026-10"
    spans = trend_periods(Period.between("2026-10-05", "2026-11-03", tz), 3)
    assert [(p.first_day, p.last_day) for p in spans] == [
        (date(2026, 10, 14), date(2026, 10, 20)),
        (date(2026, 10, 21), date(2026, 10, 27)),
        (date(2026, 10, 28), date(2026, 11, 3)),
    ]


def test_the_view_holds_every_figure_of_the_month(month: tuple[App, Month]) -> None:
    app, made = month
    v = app.get(Pages).view(None, october(app))
    ex = v.exclusions
    # each stage that excludes ratings, once per rating
    assert ex.by_stage == {"hook": 2, "detection": 1, "audit": 1, "appeal": 1}
    assert ex.by_status == {"held": 2, "rejected": 1, "voided": 2}
    assert ex.received == ex.counted + 5
    assert ex.by_reason[("hook", "unknown_window")] == 1
    assert ex.by_reason[("hook", "duplicate_ticket")] == 1
    assert ex.by_reason[("appeal", "appeal.upheld")] == 1
    assert ex.by_reason[("audit", "audit.fabricated")] == 1
    assert sum(r.ratings for r in v.windows.rows) == ex.received
    # trend: September and October counted, the ten months before empty
    assert [p.label for p in v.trend.periods][-2:] == ["2026-09", "2026-10"]
    sep, oct_ = v.trend.windows["H1-W02"][-2:]
    assert (sep.counted, sep.score, oct_.counted, oct_.score) == (5, 5.0, 10, 4.0)
    assert v.trend.halls["H1"][-2].counted == 10 and v.trend.overall[0].counted == 0
    # low scores per day: H1-W01's low scores fall on 28-31 October
    assert len(v.daily.days) == 31 and v.daily.days[0] == date(2026, 10, 1)
    lows = dict(zip(v.daily.days, v.daily.low("H1-W01"), strict=True))
    assert sum(lows.values()) == 3 and lows[date(2026, 10, 31)] == 0  # the upheld one is voided
    # the audit's estimate and the appeals
    assert v.audit is not None and v.audit.sample_id == made.sample_id
    assert v.audit.overall["deviations"] == 1 and v.audit.overall["voided"] == 1
    assert v.audit.overall["lower"] <= v.audit.overall["rate"] <= v.audit.overall["upper"]
    assert v.appeals is not None
    assert (v.appeals.filed, v.appeals.admitted, v.appeals.ineligible, v.appeals.upheld) == (
        2,
        1,
        1,
        1,
    )
    # halls with their names, staff with theirs
    assert v.halls is not None and {r.key for r in v.halls.rows} == {"H1", "H2", None}
    assert v.hall_label("H1") == "东城政务服务中心 (H1)" and v.staff_name("S1") == "李娜"


def test_the_page_is_one_self_contained_file(sqlite_month: tuple[App, Month]) -> None:
    app, _ = sqlite_month
    html = render_page(app.get(Pages).view(None, october(app)))
    assert html.startswith("<!DOCTYPE html>") and "<meta charset='utf-8'>" in html
    # nothing to fetch: no scripts, stylesheets, images or fonts from elsewhere
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", html)
    assert not re.search(r"url\((['\"]?)(https?:)?//", html)
    # Chinese names as text, in a font stack with CJK fonts
    assert HALLS["H1"] in html and "李娜 (S1)" in html
    assert "WenQuanYi Zen Hei" in html and "Noto Sans CJK SC" in html
    charts = re.findall(r"<figure class='chart' data-chart='([^']+)'>", html)
    assert charts == [
        "trend-halls",
        "trend-windows-1",
        "trend-windows-2",
        "dimensions",
        "heatmap",
        "exclusions",
    ]
    assert html.count("<svg ") == len(charts) and html.count("<title>") == len(charts) + 1
    # ids are unique across the inline charts
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    for section in (
        "Rankings",
        "Trend",
        "Dimensions",
        "Low scores by window and day",
        "What the integrity checks excluded",
        "Audit sample",
        "Appeals about the period's ratings",
        "To rectify",
        "Overdue alerts",
    ):
        assert section in html
    # the follow-up loop's figures per window (the alerts wired by the composition root)
    assert "alerts_opened" in html and "answered_in_24h" in html
    assert "⚑ rectify" in html


def test_staff_are_named_only_for_readers_of_staff_performance(
    sqlite_month: tuple[App, Month], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _ = sqlite_month
    pages = app.get(Pages)
    sup = app.people.get("sup")
    v = pages.view(sup, october(app))
    assert v.staff is not None and "李娜" in render_page(v)
    for who in ("head", "rev1", "S1", "aud1"):
        with pytest.raises(PermissionDenied, match="may not read report pages"):
            pages.view(app.people.get(who), october(app))
    # a role the policy lets read the pages but not staff performance gets no staff table
    policy = dict(access.READ_POLICY)
    policy["report_pages"] = frozenset({*policy["report_pages"], "staff"})
    monkeypatch.setattr(access, "READ_POLICY", policy)
    v = pages.view(app.people.get("S2"), october(app))
    assert v.staff is None
    html = render_page(v)
    assert "李娜" not in html and "S1" not in html and "Staff are not named" in html


def test_the_workbook_has_the_page_tables_with_formats_and_frozen_headers(
    sqlite_month: tuple[App, Month],
) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    app, _ = sqlite_month
    v = app.get(Pages).view(None, october(app))
    book = openpyxl.load_workbook(io.BytesIO(render_book(v)))
    assert book.sheetnames == [
        "About",
        "Halls",
        "Windows",
        "Staff",
        "Dimensions",
        "Trend",
        "Low scores by day",
        "Excluded",
        "Audit",
        "Appeals",
        "Rectify",
        "Follow-up",
    ]
    ws = book["Windows"]
    head = [c.value for c in ws[1]]
    dims = list(app.core.rubric.dimensions)
    assert head[:2] == ["window_id", "name"] and all(d in head for d in dims)
    assert ws.freeze_panes == "C2" and ws.auto_filter.ref
    rows = {
        r[0]: dict(zip(head, r, strict=True))
        for r in ws.iter_rows(min_row=2, values_only=True)
        if r[0]
    }
    rep = app.get(ReportService).report("window", october(app))
    for row in rep.rows:
        got = rows[row.key]
        assert got["counted"] == row.counted and got["rank"] == row.rank
        assert (
            got["score"] == pytest.approx(row.score)
            if row.score is not None
            else got["score"] is None
        )
    col = head.index("score") + 1
    assert ws.cell(2, col).number_format == "0.00"
    assert ws.cell(2, head.index("low_score_rate") + 1).number_format == "0.0%"
    assert rows["H1-W01"]["name"].startswith("东城政务服务中心")
    assert book["Halls"].cell(2, 2).value in HALLS.values()
    excluded = [r for r in book["Excluded"].iter_rows(min_row=2, values_only=True) if r[0]]
    assert ("audit findings", "audit", "audit.fabricated", 1) in excluded
