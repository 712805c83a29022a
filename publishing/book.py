"""The supervisor's spreadsheet: the page's tables as sheets of one ``.xlsx`` workbook
(XlsxWriter), with the rubric's dimensions as columns, number formats (scores 0.00,
rates as percentages, counts with separators), frozen headers and filters.

Sheets: About, Halls (with a registry), Windows, Staff (when the reader may read staff
performance), Dimensions, Trend, Low scores by day, Excluded, Audit, Appeals, Rectify,
and Follow-up when the follow-up loop supplies columns.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from integrity.reports import STAGE_LABELS, STAGES, Report
from publishing.month import PeriodView
from publishing.page import overdue_column

#: Column kinds -> number format.
FORMATS = {"int": "#,##0", "score": "0.00", "rate": "0.0%", "change": "+0.00;-0.00;0.00"}


class _Sheets:
    def __init__(self, book: Any) -> None:
        self.book = book
        self.header = book.add_format(
            {"bold": True, "bg_color": "#E8EEF4", "border": 1, "text_wrap": True, "valign": "top"}
        )
        self.formats = {k: book.add_format({"num_format": v}) for k, v in FORMATS.items()}
        self.bold = book.add_format({"bold": True})
        self.wrap = book.add_format({"text_wrap": True, "valign": "top"})

    def table(
        self,
        name: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        *,
        freeze_cols: int = 1,
        note: str = "",
    ) -> Any:
        """A sheet: one header row (frozen, filtered), typed columns (``text``, ``int``,
        ``score``, ``rate``, ``change``, ``bool``); ``note`` goes in the row under the data."""
        ws = self.book.add_worksheet(name[:31])
        for c, (title, kind) in enumerate(columns):
            ws.write(0, c, title, self.header)
            width = max(len(title) + 2, 10 if kind != "text" else 14)
            ws.set_column(c, c, min(width, 40), self.formats.get(kind))
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row):
                kind = columns[c][1]
                if value is None or value == "":
                    ws.write_blank(r, c, None)
                elif kind == "bool":
                    ws.write_boolean(r, c, bool(value))
                elif kind == "text":
                    ws.write_string(r, c, str(value))
                else:
                    ws.write_number(r, c, float(value), self.formats[kind])
        ws.freeze_panes(1, freeze_cols)
        if rows:
            ws.autofilter(0, 0, len(rows), len(columns) - 1)
        if note:
            ws.write(len(rows) + 2, 0, note)
        return ws


def _report_sheet(s: _Sheets, v: PeriodView, rep: Report, name: str) -> None:
    dims = v.rubric.dimensions
    with_halls = rep.with_halls
    cols: list[tuple[str, str]] = [
        (rep.column, "text"),
        ("name", "text"),
        *([("hall_id", "text"), ("hall", "text")] if with_halls else []),
        ("rank", "int"),
        *([("hall_rank", "int")] if with_halls else []),
        ("ratings", "int"),
        ("counted", "int"),
        ("score", "score"),
        *[(d, "score") for d in dims],
        ("low_scores", "int"),
        ("low_score_rate", "rate"),
        ("low_rate_lo", "rate"),
        ("low_rate_hi", "rate"),
        ("rectify", "bool"),
        ("prev_score", "score"),
        ("score_change", "change"),
        ("rank_change", "int"),
        ("held", "int"),
        ("rejected", "int"),
        ("voided", "int"),
        ("top_reasons", "text"),
        *[(c, "text") for c in rep.followup_columns],
    ]
    rows = []
    for r in rep.rows:
        label = {
            "hall": v.hall_name(r.key),
            "window": v.window_name(r.key),
            "staff": v.staff_name(r.key),
        }.get(rep.by, "")
        rows.append(
            [
                r.key if r.key is not None else "(none)",
                label,
                *([r.hall_id, v.hall_name(r.hall_id)] if with_halls else []),
                r.rank,
                *([r.hall_rank] if with_halls else []),
                r.ratings,
                r.counted,
                r.score,
                *[r.dimensions.get(d) for d in dims],
                r.low_scores,
                r.low_score_rate,
                r.low_rate_lo,
                r.low_rate_hi,
                r.rectify,
                r.prev_score,
                r.score_change,
                r.rank_change,
                r.held,
                r.rejected,
                r.voided,
                ", ".join(f"{c}:{n}" for c, n in r.top_reasons),
                *[
                    None if r.followup.get(c) is None else str(r.followup.get(c))
                    for c in rep.followup_columns
                ],
            ]
        )
    s.table(
        name,
        cols,
        rows,
        freeze_cols=2,
        note="Counted ratings only; low_rate_lo/hi: exact 95 % interval; rank 1 = best score.",
    )


def render_book(v: PeriodView) -> bytes:
    """The workbook's bytes."""
    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True})
    book.set_properties({"title": v.title, "subject": v.scope, "comments": v.checkpoint})
    s = _Sheets(book)
    counted, score, low = v.whole()
    ex = v.exclusions
    about: list[tuple[str, Any]] = [
        ("period", v.period.label),
        ("covers", v.scope),
        ("scope", v.hall_label(v.hall) if v.hall else "every hall"),
        ("generated", v.generated),
        ("rule set", v.rule_set_id),
        ("ledger checkpoint", v.checkpoint),
        ("ratings received", ex.received),
        ("counted", counted),
        ("not counted", ex.excluded),
        ("mean score", score),
        ("low-score rate", low),
        ("staff named", "yes" if v.staff is not None else "no (not for this reader)"),
    ]
    ws = book.add_worksheet("About")
    ws.set_column(0, 0, 20, s.bold)
    ws.set_column(1, 1, 70)
    for i, (k, val) in enumerate(about):
        ws.write_string(i, 0, k)
        if isinstance(val, float):
            ws.write_number(i, 1, val, s.formats["rate" if k == "low-score rate" else "score"])
        elif isinstance(val, int):
            ws.write_number(i, 1, val, s.formats["int"])
        else:
            ws.write_string(i, 1, "" if val is None else str(val))

    if v.halls is not None:
        _report_sheet(s, v, v.halls, "Halls")
    _report_sheet(s, v, v.windows, "Windows")
    if v.staff is not None:
        _report_sheet(s, v, v.staff, "Staff")

    dims = v.rubric.dimensions
    whole = v.whole_dimensions()
    hall_means = {r.key: r.dimensions for r in v.halls.rows} if v.halls is not None else {}
    rows: list[list[Any]] = [["(whole)", "", None, *[whole.get(d) for d in dims]]]
    for row in v.windows.rows:
        if row.counted:
            rows.append(
                [row.key, row.hall_id or "", row.counted, *[row.dimensions.get(d) for d in dims]]
            )
    for h, means in hall_means.items():
        rows.append([f"(hall {h})", h, None, *[means.get(d) for d in dims]])
    s.table(
        "Dimensions",
        [
            ("window", "text"),
            ("hall_id", "text"),
            ("counted", "int"),
            *[(d, "score") for d in dims],
        ],
        rows,
        note="Mean of each rubric dimension over counted ratings; (whole) and (hall H) rows "
        "for comparison.",
    )

    t = v.trend
    trows: list[list[Any]] = []
    for level, groups in (
        ("hall", t.halls),
        ("window", t.windows),
        ("whole", {"(whole)": t.overall}),
    ):
        for key, points in groups.items():
            for p in points:
                trows.append([level, key, p.period, p.counted, p.score, p.low_score_rate])
    s.table(
        "Trend",
        [
            ("level", "text"),
            ("group", "text"),
            ("period", "text"),
            ("counted", "int"),
            ("score", "score"),
            ("low_score_rate", "rate"),
        ],
        trows,
        freeze_cols=2,
    )

    d = v.daily
    days = [day.isoformat() for day in d.days]
    drows = [[w, *[low for _, low in cells]] for w, cells in d.cells.items()]
    s.table(
        "Low scores by day",
        [("window", "text"), *[(day, "int") for day in days]],
        drows,
        note="Low scores (composite below the rubric's mark) among counted ratings, per local day.",
    )

    erows: list[list[Any]] = [
        [STAGE_LABELS[r["stage"]], r["stage"], r["reason"], r["ratings"]]  # type: ignore[index]
        for r in ex.rows()
    ]
    erows += [
        [STAGE_LABELS[st], st, "(ratings, each once)", ex.by_stage.get(st, 0)] for st in STAGES
    ]
    s.table(
        "Excluded",
        [("stage", "text"), ("code", "text"), ("reason", "text"), ("ratings", "int")],
        erows,
        note=f"{ex.received} received, {ex.counted} counted; held {ex.by_status.get('held', 0)}, "
        f"rejected {ex.by_status.get('rejected', 0)}, voided {ex.by_status.get('voided', 0)}. "
        "A rating may carry several reasons.",
    )

    acols = [
        ("window", "text"),
        ("population", "int"),
        ("sampled", "int"),
        ("audited", "int"),
        ("pending", "int"),
        ("deviations", "int"),
        ("voided", "int"),
        ("rate", "rate"),
        ("lower", "rate"),
        ("upper", "rate"),
        ("escalate", "bool"),
    ]
    arows: list[list[Any]] = []
    note = "No audit sample was drawn from this period's frame."
    if v.audit is not None:
        a = v.audit
        for name, st in [("(all)", a.overall), *[(str(x.get("window_id")), x) for x in a.strata]]:
            arows.append([name, *[st.get(c) for c, _ in acols[1:]]])
        note = (
            f"Sample {a.sample_id}, seed {a.seed}, frame SHA-256 {a.frame_sha256}, on "
            f"{a.checkpoint}; exact bounds at {a.confidence:.0%}."
        )
    s.table("Audit", acols, arows, note=note)

    ap = v.appeals
    s.table(
        "Appeals",
        [
            (k, "int")
            for k in (
                "filed",
                "admitted",
                "ineligible",
                "open",
                "decided",
                "upheld",
                "rejected",
                "withdrawn",
                "overdue",
            )
        ]
        + [("uphold_rate", "rate")],
        [
            [
                ap.filed,
                ap.admitted,
                ap.ineligible,
                ap.open,
                ap.decided,
                ap.upheld,
                ap.rejected,
                ap.withdrawn,
                ap.overdue,
                ap.uphold_rate,
            ]
        ]
        if ap is not None
        else [],
        freeze_cols=0,
        note="Appeals about the period's ratings."
        if ap is not None
        else "Appeals are not part of this instance.",
    )

    rrows = [
        [by, r.key or "", r.counted, r.low_scores, r.low_score_rate, r.low_rate_lo, r.low_rate_hi]
        for by, r in v.rectify_rows()
    ]
    s.table(
        "Rectify",
        [
            ("level", "text"),
            ("group", "text"),
            ("counted", "int"),
            ("low_scores", "int"),
            ("low_score_rate", "rate"),
            ("low_rate_lo", "rate"),
            ("low_rate_hi", "rate"),
        ],
        rrows,
        note="Groups above the rectification mark." if rrows else "None to rectify.",
    )
    cols = v.followup_columns
    if cols:
        overdue = overdue_column(cols)
        s.table(
            "Follow-up",
            [("window", "text"), *[(c, "text") for c in cols]],
            [
                [
                    r.key,
                    *[None if r.followup.get(c) is None else str(r.followup.get(c)) for c in cols],
                ]
                for r in v.windows.rows
            ],
            note=f"Overdue alerts: column {overdue}." if overdue else "",
        )
    book.close()
    return buf.getvalue()
