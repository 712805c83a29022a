"""The supervisor's page: ONE self-contained HTML file (inline CSS, charts as inline
SVG, no script, nothing fetched), readable on screen and in print.

Sections: key figures; rankings (halls, windows, staff when the reader may read staff
performance); the trend of score and low-score rate over the periods before; the
dimension means against the hall and the whole; low scores per window and day; what
the integrity checks excluded and why (with the audit's estimates and the appeals);
the rectification list and the follow-up loop's figures (or "none").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any

from integrity.reports import STAGE_LABELS, STAGES, Report, ReportRow, short_label
from publishing import charts
from publishing.month import PeriodView

#: Windows per trend chart when no registry groups them into halls.
WINDOWS_PER_CHART = 8

CSS = """
:root { color-scheme: light; }
body { font-family: %(font)s; margin: 0 auto; max-width: 1180px; padding: 0 18px 40px;
  color: #1a1a1a; background: #ffffff; line-height: 1.45; font-size: 14px; }
h1 { font-size: 22px; margin: 20px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 2px solid #0072B2; padding-bottom: 3px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.meta { color: #444; margin: 2px 0; font-size: 12.5px; }
nav { margin: 10px 0 4px; font-size: 13px; }
nav a { margin-right: 12px; color: #0072B2; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { border: 1px solid #bbb; border-radius: 4px; padding: 8px 12px; min-width: 120px; }
.card b { display: block; font-size: 20px; }
.card span { color: #444; font-size: 12px; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 12.5px; }
th, td { border: 1px solid #c8c8c8; padding: 3px 6px; vertical-align: top; white-space: nowrap; }
th { background: #f0f0f0; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.rectify td { background: #fff1e6; }
.flag { font-weight: bold; color: #D55E00; }
.up { color: #006b4f; } .down { color: #a33f00; }
figure.chart { margin: 8px 0 18px; }
figure.chart svg { max-width: 100%%; height: auto; }
figcaption { font-size: 12px; color: #444; }
.note { color: #444; font-size: 12.5px; }
.scroll { overflow-x: auto; }
@media print {
  nav { display: none; }
  body { max-width: none; font-size: 11px; }
  h2 { break-after: avoid; }
  figure.chart, table, .cards { break-inside: avoid; }
  tr.rectify td { background: none; }
  th, td { white-space: normal; }
}
"""


def _n(v: int | None) -> str:
    return "–" if v is None else f"{v:,}"


def _score(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f} %"


def _interval(r: ReportRow) -> str:
    if r.low_score_rate is None:
        return "–"
    return (
        f"{_pct(r.low_score_rate)} <span class='note'>({100 * (r.low_rate_lo or 0):.1f}–"
        f"{100 * (r.low_rate_hi or 0):.1f})</span>"
    )


def _change(v: float | None) -> str:
    if v is None:
        return "–"
    cls = "up" if v > 0 else "down" if v < 0 else ""
    return f"<span class='{cls}'>{v:+.2f}</span>"


def _rank_change(v: int | None) -> str:
    if v is None:
        return "–"
    if v > 0:
        return f"<span class='up'>▲ up {v}</span>"
    if v < 0:
        return f"<span class='down'>▼ down {-v}</span>"
    return "= same"


def _plain(v: Any) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1 else f"{v:,.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return escape(str(v))


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], classes: Sequence[str] = ()) -> str:
    """An HTML table; cells are HTML already (escape text before)."""
    out = ["<div class='scroll'><table><thead><tr>"]
    out += [f"<th scope='col'>{h}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        cls = classes[i] if i < len(classes) and classes[i] else ""
        out.append(f"<tr class='{cls}'>" if cls else "<tr>")
        for cell in row:
            num = cell[:1].isdigit() or cell[:1] in "+-–▲▼=" or cell.startswith("<span class=")
            out.append(f"<td class='n'>{cell}</td>" if num else f"<td>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _figure(svg: str, name: str, caption: str) -> str:
    return (
        f"<figure class='chart' data-chart='{escape(name)}'>{svg}"
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


# -- sections ---------------------------------------------------------------------------------


def _cards(v: PeriodView) -> str:
    counted, score, low = v.whole()
    ex = v.exclusions
    cards = [
        (_n(ex.received), "ratings received"),
        (_n(counted), "counted"),
        (_n(ex.excluded), "excluded (held, rejected, voided)"),
        (_score(score), "mean score (counted)"),
        (_pct(low), "low-score rate"),
        (_n(len(v.rectify_rows())), "groups to rectify"),
    ]
    body = "".join(f"<div class='card'><b>{a}</b><span>{escape(b)}</span></div>" for a, b in cards)
    return f"<div class='cards'>{body}</div>"


def _label_of(v: PeriodView, rep: Report) -> Callable[[ReportRow], str]:
    def hall(r: ReportRow) -> str:
        return escape(v.hall_label(r.key))

    def window(r: ReportRow) -> str:
        name = v.window_name(r.key)
        return escape(f"{name} ({r.key})" if name else str(r.key))

    def staff(r: ReportRow) -> str:
        if r.key is None:
            return "(no staff named)"
        name = v.staff_name(r.key)
        return escape(f"{name} ({r.key})" if name else r.key)

    return {"hall": hall, "window": window, "staff": staff}.get(
        rep.by, lambda r: escape(str(r.key))
    )


def _hall_cell(v: PeriodView, hall_id: str | None) -> str:
    """A hall's id, its name as the cell's title (the rankings of halls give names)."""
    if not hall_id:
        return "–"
    return f"<span title='{escape(v.hall_name(hall_id))}'>{escape(hall_id)}</span>"


def report_table(v: PeriodView, rep: Report) -> str:
    """One ranked table of a report: rank, group, counts, score, dimensions, low-score
    rate with its interval, rectify, changes, exclusions, follow-up columns."""
    label = _label_of(v, rep)
    dims = list(v.rubric.dimensions)
    with_halls = rep.with_halls
    head = [
        "rank",
        *(["hall rank"] if with_halls else []),
        escape(rep.by),
        *(["hall"] if with_halls else []),
        "ratings",
        "counted",
        "score",
        *[escape(d) for d in dims],
        "low-score rate (95 % interval)",
        "rectify",
        "score change",
        "rank change",
        "held",
        "rejected",
        "voided",
        *[escape(c) for c in rep.followup_columns],
    ]
    rows = []
    classes = []
    for r in rep.rows:
        rows.append(
            [
                _n(r.rank),
                *([_n(r.hall_rank)] if with_halls else []),
                label(r),
                *([_hall_cell(v, r.hall_id)] if with_halls else []),
                _n(r.ratings),
                _n(r.counted),
                _score(r.score),
                *[_score(r.dimensions.get(d)) for d in dims],
                _interval(r),
                "<span class='flag'>⚑ rectify</span>" if r.rectify else "no",
                _change(r.score_change),
                _rank_change(r.rank_change),
                _n(r.held),
                _n(r.rejected),
                _n(r.voided),
                *[_plain(r.followup.get(c)) for c in rep.followup_columns],
            ]
        )
        classes.append("rectify" if r.rectify else "")
    if not rows:
        return "<p class='note'>No ratings in this period.</p>"
    return _table(head, rows, classes)


def _rankings(v: PeriodView) -> str:
    out = ["<h2 id='rankings'>Rankings</h2>"]
    rule = v.windows.rectify_rule
    out.append(
        "<p class='note'>From counted ratings only. Rank 1 is the best score; ties share a "
        "rank; groups with nothing counted are not ranked. Changes are against "
        f"{escape(v.windows.previous.label if v.windows.previous else 'nothing')}. "
        f"⚑ rectify: low-score rate above {rule.low_rate:.0%} with at least "
        f"{rule.min_counted} counted ratings.</p>"
    )
    if v.halls is not None:
        out += ["<h3>Halls</h3>", report_table(v, v.halls)]
    out += ["<h3>Windows</h3>", report_table(v, v.windows)]
    out.append("<h3>Staff</h3>")
    if v.staff is not None:
        out.append(report_table(v, v.staff))
    else:
        out.append(
            "<p class='note'>Staff are not named on this page: your role may not read staff "
            "performance.</p>"
        )
    return "".join(out)


def _series(v: PeriodView, points: Any, label: str, skip: int = 0) -> charts.Series:
    points = points[skip:]
    return charts.Series(label, [p.score for p in points], [p.low_score_rate for p in points])


def _trend(v: PeriodView) -> str:
    t = v.trend
    # periods before the first with anything counted are left out of the charts
    skip = next((i for i, p in enumerate(t.overall) if p.counted), 0)
    labels = [short_label(p) for p in t.periods[skip:]]
    scale = (v.rubric.scale_min, v.rubric.scale_max)
    first, last = t.periods[0].label, t.periods[-1].label
    since = f" (nothing counted before {t.periods[skip].label})" if skip else ""
    out = [
        "<h2 id='trend'>Trend</h2>",
        f"<p class='note'>Score and low-score rate of counted ratings over the "
        f"{len(t.periods)} periods {escape(first)} to {escape(last)}{escape(since)}; a gap is "
        "a period with nothing counted; each line is labelled at its last value.</p>",
    ]
    if not t.windows:
        return "".join([*out, "<p class='note'>Nothing counted in these periods.</p>"])
    if t.halls:
        series = [_series(v, pts, v.hall_label(h), skip) for h, pts in t.halls.items()]
        series.append(_series(v, t.overall, "whole", skip))
        title = "Halls and the whole"
        out.append(
            _figure(
                charts.trend_chart("trend-halls", title, labels, series, scale),
                "trend-halls",
                f"{title}: score (top) and low-score rate (bottom) per period.",
            )
        )
        groups: list[tuple[str, list[str]]] = []
        for h in t.halls:
            ws = [w for w in v.registry.windows_of(h) if w in t.windows]
            if ws:
                groups.append((v.hall_label(h), ws))
        loose = [w for w in t.windows if v.registry.hall_of(w) is None]
        if loose:
            groups.append(("windows of no known hall", loose))
    else:
        ws = list(t.windows)
        groups = [
            (
                f"windows {i + 1}–{min(i + WINDOWS_PER_CHART, len(ws))}",
                ws[i : i + WINDOWS_PER_CHART],
            )
            for i in range(0, len(ws), WINDOWS_PER_CHART)
        ]
    for i, (title, ws) in enumerate(groups):
        name = f"trend-windows-{i + 1}"
        series = [_series(v, t.windows[w], w, skip) for w in ws]
        out.append(
            _figure(
                charts.trend_chart(name, f"Windows: {title}", labels, series, scale),
                name,
                f"Windows of {title}: score (top) and low-score rate (bottom) per period.",
            )
        )
    return "".join(out)


def _dimensions(v: PeriodView) -> str:
    dims = list(v.rubric.dimensions)
    whole = v.whole_dimensions()
    scale = (v.rubric.scale_min, v.rubric.scale_max)
    out = ["<h2 id='dimensions'>Dimensions</h2>"]
    if not any(r.counted for r in v.windows.rows):
        return "".join([*out, "<p class='note'>Nothing counted in this period.</p>"])
    if v.halls is not None:
        groups = {
            v.hall_label(r.key): dict(r.dimensions) for r in v.halls.rows if r.counted and r.key
        }
        title = "Dimension means: each hall against the whole"
    else:
        groups = {str(r.key): dict(r.dimensions) for r in v.windows.rows if r.counted}
        title = "Dimension means: each window against the whole"
    out.append(
        _figure(
            charts.dimensions_chart("dimensions", title, dims, whole, groups, scale),
            "dimensions",
            f"{title} (grey bar: the whole; markers: the groups).",
        )
    )
    hall_means = {r.key: r.dimensions for r in v.halls.rows} if v.halls is not None else {}
    head = ["window", "hall", "counted", *[escape(d) for d in dims]]
    rows = []
    for r in v.windows.rows:
        if not r.counted:
            continue
        ref = hall_means.get(r.hall_id) or whole
        cells = []
        for d in dims:
            val, base = r.dimensions.get(d), ref.get(d)
            delta = (
                ""
                if val is None or base is None
                else f" <span class='note'>({val - base:+.2f})</span>"
            )
            cells.append(_score(val) + delta)
        rows.append(
            [
                escape(str(r.key)),
                escape(v.hall_label(r.hall_id)) if r.hall_id else "–",
                _n(r.counted),
                *cells,
            ]
        )
    against = "its hall's mean" if hall_means else "the whole's mean"
    out.append(
        f"<p class='note'>Each window's mean per dimension; in brackets, the difference from {against}.</p>"
    )
    out.append(_table(head, rows))
    return "".join(out)


def _heatmap(v: PeriodView) -> str:
    d = v.daily
    out = ["<h2 id='low-scores'>Low scores by window and day</h2>"]
    if not d.cells:
        return "".join([*out, "<p class='note'>Nothing counted in this period.</p>"])
    windows = list(d.cells)
    low = [[low for _, low in d.cells[w]] for w in windows]
    counted = [[n for n, _ in d.cells[w]] for w in windows]
    cols = [day.strftime("%d") for day in d.days]
    title = f"Low scores per window and day, {v.period.label}"
    out.append(
        _figure(
            charts.heatmap_chart("heatmap", title, windows, cols, low, counted),
            "heatmap",
            f"{title}: the number in a cell is its low scores (composite below "
            f"{v.rubric.low_score_below:g}) among counted ratings; days in the rule set's "
            "time zone.",
        )
    )
    return "".join(out)


def _exclusions(v: PeriodView) -> str:
    ex = v.exclusions
    out = [
        "<h2 id='exclusions'>What the integrity checks excluded</h2>",
        f"<p class='note'>{ex.received:,} ratings received, {ex.counted:,} counted, "
        f"{ex.excluded:,} not counted: {ex.by_status.get('held', 0):,} held for review, "
        f"{ex.by_status.get('rejected', 0):,} rejected, {ex.by_status.get('voided', 0):,} "
        "voided.</p>",
    ]
    rows = [(str(r["stage"]), str(r["reason"]), int(str(r["ratings"]))) for r in ex.rows()]
    if rows:
        out.append(
            _figure(
                charts.exclusions_chart(
                    "exclusions", "Ratings not counted, by stage and reason", rows, STAGES
                ),
                "exclusions",
                "Ratings not counted, by the stage that excluded them and its reason codes.",
            )
        )
    out.append(
        _table(
            ["stage", "ratings not counted"],
            [[escape(STAGE_LABELS[s]), _n(ex.by_stage.get(s, 0))] for s in STAGES],
        )
    )
    out.append(_audit(v))
    out.append(_appeals(v))
    return "".join(out)


def _audit(v: PeriodView) -> str:
    out = ["<h3>Audit sample</h3>"]
    a = v.audit
    if a is None:
        why = (
            "No audit sample was drawn from this period's frame."
            if v.audit_wired
            else "The audit is not part of this instance."
        )
        return "".join([*out, f"<p class='note'>{why}</p>"])
    o = a.overall
    out.append(
        f"<p class='note'>Sample {a.sample_id}, seed {escape(a.seed)}, frame SHA-256 "
        f"<code>{escape(a.frame_sha256)}</code>, standing on <code>{escape(a.checkpoint)}</code>. "
        f"Deviation rate with exact bounds at {a.confidence:.0%} confidence; tolerable "
        f"{a.tolerable_rate:.1%}.</p>"
    )
    head = [
        "window",
        "population",
        "sampled",
        "audited",
        "pending",
        "deviations",
        "voided",
        "rate",
        "bounds",
        "escalate",
    ]

    def row(s: Any, name: str) -> list[str]:
        return [
            escape(name),
            _n(s.get("population")),
            _n(s.get("sampled")),
            _n(s.get("audited")),
            _n(s.get("pending")),
            _n(s.get("deviations")),
            _n(s.get("voided")),
            _pct(s.get("rate")),
            f"{_pct(s.get('lower'))} – {_pct(s.get('upper'))}",
            "<span class='flag'>escalate</span>" if s.get("escalate") else "no",
        ]

    rows = [row(o, "(all)")] + [row(s, str(s.get("window_id"))) for s in a.strata]
    out.append(_table(head, rows))
    for e in a.escalations:
        out.append(f"<p class='flag'>{escape(e)}</p>")
    return "".join(out)


def _appeals(v: PeriodView) -> str:
    out = ["<h3>Appeals about the period's ratings</h3>"]
    a = v.appeals
    if a is None:
        return "".join([*out, "<p class='note'>Appeals are not part of this instance.</p>"])
    head = [
        "filed",
        "admitted",
        "ineligible",
        "open",
        "upheld",
        "rejected",
        "withdrawn",
        "overdue",
        "uphold rate",
    ]
    cells = [
        _n(a.filed),
        _n(a.admitted),
        _n(a.ineligible),
        _n(a.open),
        _n(a.upheld),
        _n(a.rejected),
        _n(a.withdrawn),
        _n(a.overdue),
        _pct(a.uphold_rate),
    ]
    out.append(_table(head, [cells]))
    out.append(
        "<p class='note'>An upheld appeal voids the rating it contests (those ratings are "
        "in the chart above, stage “appeal”).</p>"
    )
    return "".join(out)


def overdue_column(columns: Sequence[str]) -> str | None:
    """The follow-up column that counts overdue alerts, if the loop supplies one."""
    return next((c for c in columns if "overdue" in c), None)


def _group_label(v: PeriodView, by: str, r: ReportRow) -> str:
    if by == "hall":
        return escape(v.hall_label(r.key))
    name = v.window_name(r.key) if by == "window" else v.staff_name(r.key)
    return escape(f"{name} ({r.key})" if name else str(r.key))


def _weakest(r: ReportRow) -> str:
    """The dimension(s) with the lowest mean, with it."""
    means = {d: m for d, m in r.dimensions.items() if m is not None}
    if not means:
        return "–"
    low = min(means.values())
    names = ", ".join(d for d, m in means.items() if abs(m - low) < 1e-9)
    return f"{escape(names)} ({low:.2f})"


def _followup(v: PeriodView) -> str:
    out = ["<h2 id='follow-up'>Rectification and follow-up</h2>", "<h3>To rectify</h3>"]
    flagged = v.rectify_rows()
    if flagged:
        rows = []
        for by, r in flagged:
            rows.append(
                [escape(by), _group_label(v, by, r), _n(r.counted), _interval(r), _weakest(r)]
            )
        out.append(
            _table(
                [
                    "level",
                    "group",
                    "counted",
                    "low-score rate (95 % interval)",
                    "weakest dimension",
                ],
                rows,
            )
        )
    else:
        out.append("<p class='note'>None: no group is above the rectification mark.</p>")
    out.append("<h3>Overdue alerts</h3>")
    cols = v.followup_columns
    if not cols:
        out.append(
            "<p class='note'>None: the follow-up loop's figures (alerts, overdue) are not "
            "available on this instance.</p>"
        )
        return "".join(out)
    overdue = overdue_column(cols)
    rows = []
    for r in v.windows.rows:
        if any(r.followup.get(c) not in (None, "", 0) for c in cols):
            rows.append([escape(str(r.key)), *[_plain(r.followup.get(c)) for c in cols]])
    late = [r for r in v.windows.rows if overdue and (r.followup.get(overdue) or 0)]
    if overdue is None or not late:
        out.append("<p class='note'>None overdue.</p>")
    if rows:
        out.append(_table(["window", *[escape(c) for c in cols]], rows))
    return "".join(out)


def render_page(v: PeriodView) -> str:
    """The whole page as one HTML document (UTF-8 text)."""
    nav = "".join(
        f"<a href='#{a}'>{escape(t)}</a>"
        for a, t in (
            ("rankings", "Rankings"),
            ("trend", "Trend"),
            ("dimensions", "Dimensions"),
            ("low-scores", "Low scores by day"),
            ("exclusions", "Excluded"),
            ("follow-up", "Rectification"),
        )
    )
    scope = escape(v.scope)
    body = [
        f"<header><h1>{escape(v.title)}</h1>",
        f"<p class='meta'>{scope}; counted ratings only; generated {escape(v.generated)}; "
        f"rule set {escape(v.rule_set_id)}; ledger at <code>{escape(v.checkpoint)}</code></p>",
        f"<nav>{nav}</nav></header>",
        _cards(v),
        _rankings(v),
        _trend(v),
        _dimensions(v),
        _heatmap(v),
        _exclusions(v),
        _followup(v),
        "<footer><p class='note'>Scores are mean composites of counted ratings on the "
        f"rubric's {v.rubric.scale_min}–{v.rubric.scale_max} scale; a low score is a "
        f"composite below {v.rubric.low_score_below:g}; intervals are exact (Clopper-Pearson) "
        "95 % intervals. Figures are read from the ledger as it stood when the page was "
        "generated.</p></footer>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(v.title)}</title><style>{CSS % {'font': charts.FONT_STACK}}</style>"
        f"</head><body>{''.join(body)}</body></html>\n"
    )
