"""Charts as inline SVG, drawn with matplotlib (no pyplot: one Figure per chart).

Readable in print and by colour-blind readers: the Okabe-Ito palette for categories
and viridis for quantities, and never colour alone (each series also has its own
marker and line style and is labelled at its end; bars are hatched per stage and carry
their count; heat-map cells carry their number). Text stays text in the SVG
(``svg.fonttype = "none"``) with a CSS font stack that includes CJK fonts, so hall
names such as 东城政务服务中心 are drawn by the reader's browser; matplotlib measures
them with a CJK font when one is installed (:func:`_register_cjk_fonts`).

Every chart is deterministic for its inputs (no date, ids salted with the chart's
name) and its element ids are prefixed with the chart's name, so several charts can
live in one HTML page.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Okabe & Ito (2008), ordered for lines on white (the yellow last).
OKABE_ITO = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#F0E442",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
HATCHES = ("", "//", "xx", "..", "\\\\", "++")
#: The CSS font stack every chart's text (and the page) is set in: Latin first, then CJK.
FONT_STACK = (
    "'DejaVu Sans', 'Helvetica Neue', Arial, 'Noto Sans CJK SC', 'Source Han Sans SC', "
    "'WenQuanYi Zen Hei', 'PingFang SC', 'Hiragino Sans GB', 'Microsoft YaHei', sans-serif"
)
#: Families matplotlib measures text with, in order (those installed are used).
_MEASURE_FAMILIES = (
    "DejaVu Sans",
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
)
_CJK_FILES = ("wqy", "notosanscjk", "notoserifcjk", "sourcehan", "droidsansfallback")
_LOCK = threading.Lock()  # matplotlib's font and rc state is process-wide
_READY: list[str] = []


def _register_cjk_fonts() -> list[str]:
    """Make matplotlib know the installed CJK fonts (its font cache may predate them);
    returns the families it will measure text with."""
    if _READY:
        return _READY
    from matplotlib import font_manager

    for path in font_manager.findSystemFonts():
        if any(k in path.lower().replace("-", "").replace("_", "") for k in _CJK_FILES):
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):  # an unreadable font file
                continue
    known = {f.name for f in font_manager.fontManager.ttflist}
    _READY.extend(f for f in _MEASURE_FAMILIES if f in known)
    if not _READY:
        _READY.append("sans-serif")
    return _READY


def _rc() -> dict[str, Any]:
    return {
        "svg.fonttype": "none",
        "font.family": [*_register_cjk_fonts(), "sans-serif"],
        "font.size": 9.0,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.color": "#d9d9d9",
        "grid.linewidth": 0.6,
        "axes.edgecolor": "#555555",
        "axes.titlesize": 10.0,
        "axes.titleweight": "bold",
        "legend.frameon": False,
        "hatch.linewidth": 0.8,
    }


_FONT_STYLE = re.compile(r"font-family:[^;\"]*;? ?")
_ID = re.compile(r'\bid="([^"]+)"')
_DECIMALS = re.compile(r"(\d\.\d\d)\d+")
_REF = re.compile(r'(url\(#|xlink:href="#|href="#)([^)"]+)')


def _svg(fig: Any, name: str, title: str) -> str:
    """The figure as an inline ``<svg>`` element: ids prefixed with ``name``, text set
    in :data:`FONT_STACK`, a ``<title>`` for screen readers."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": name}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = _DECIMALS.sub(r"\1", text)  # 1/100 px is plenty: a third of the bytes
    # the font stack once per chart, not in every text's style attribute
    text = _FONT_STYLE.sub("", text).replace('style="; ', 'style="')
    text = _ID.sub(lambda m: f'id="{name}-{m.group(1)}"', text)
    text = _REF.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}", text)
    from html import escape

    return text.replace(
        "<svg ",
        f'<svg role="img" aria-label="{escape(title)}" class="chart-svg" ',
        1,
    ).replace(
        ">",
        f"><title>{escape(title)}</title><style>text {{ font-family: {FONT_STACK}; }}</style>",
        1,
    )


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _draw(name: str, title: str, draw: Any) -> str:
    """Run ``draw()`` (returning a Figure) under the charts' rc settings; the SVG."""
    import matplotlib

    quiet = logging.getLogger("matplotlib.font_manager")
    with _LOCK, matplotlib.rc_context(_rc()), warnings.catch_warnings():  # type: ignore[arg-type]
        warnings.simplefilter("ignore", UserWarning)  # a glyph no installed font has
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # "findfont: Failed to find font weight ..."
        try:
            fig = draw()
            return _svg(fig, name, title)
        finally:
            quiet.setLevel(level)


# -- the charts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One line of a trend chart: its label and one value per period (None: no data)."""

    label: str
    scores: Sequence[float | None]
    low_rates: Sequence[float | None]


def _style(i: int) -> dict[str, Any]:
    return {
        "color": OKABE_ITO[i % len(OKABE_ITO)],
        "marker": MARKERS[i % len(MARKERS)],
        "linestyle": LINESTYLES[(i // len(OKABE_ITO)) % len(LINESTYLES)],
    }


def _spread(values: Sequence[float], gap: float) -> list[float]:
    """Label positions near ``values`` at least ``gap`` apart (order kept), so end
    labels of close lines do not print over each other."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = list(values)
    for a, b in itertools.pairwise(order):
        if out[b] - out[a] < gap:
            out[b] = out[a] + gap
    return out


def _limits(
    values: Sequence[float | None], low: float, high: float, pad: float
) -> tuple[float, float]:
    """An axis range around the values (within ``low`` .. ``high``), never flatter than 4 pads."""
    vs = [v for v in values if v is not None]
    if not vs:
        return low, high
    a, b = max(low, min(vs) - pad), min(high, max(vs) + pad)
    if b - a < 4 * pad:
        mid = (a + b) / 2
        a, b = max(low, mid - 2 * pad), min(high, mid + 2 * pad)
    return a, b


def trend_chart(
    name: str, title: str, periods: Sequence[str], series: Sequence[Series], scale: tuple[int, int]
) -> str:
    """Score (top) and low-score rate (bottom) per period, one styled line per series,
    each labelled at its last point (labels spread apart when lines end close)."""

    def draw() -> Any:
        fig = _figure(7.6, 5.2)
        top, bottom = fig.subplots(2, 1, sharex=True)
        x = list(range(len(periods)))
        score_lim = _limits([v for s in series for v in s.scores], scale[0], scale[1], 0.1)
        rates = [100 * v for s in series for v in s.low_rates if v is not None]
        rate_lim = (0.0, max(rates, default=10.0) * 1.15 + 0.5)
        for ax, pick, fmt, lim in (
            (top, lambda s: list(s.scores), "{:.2f}", score_lim),
            (
                bottom,
                lambda s: [None if v is None else 100 * v for v in s.low_rates],
                "{:.1f}%",
                rate_lim,
            ),
        ):
            ends: list[tuple[int, float, str, str]] = []
            for i, s in enumerate(series):
                st = _style(i)
                values = pick(s)
                ys = [math.nan if v is None else v for v in values]
                ax.plot(x, ys, label=s.label, markersize=5, linewidth=1.6, **st)
                last = max((j for j, v in enumerate(values) if v is not None), default=None)
                if last is not None:
                    ends.append((last, ys[last], f"{s.label} {fmt.format(ys[last])}", st["color"]))
            ax.set_ylim(*lim)
            placed = _spread([y for _, y, _, _ in ends], (lim[1] - lim[0]) * 0.075)
            for (j, y, text, color), y_label in zip(ends, placed, strict=True):
                ax.annotate(
                    text,
                    (x[j], y),
                    xytext=(x[j] + 0.35, y_label),
                    textcoords="data",
                    fontsize=7.5,
                    color=color,
                    va="center",
                    arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.5},
                    annotation_clip=False,
                )
        top.set_ylabel("score (mean composite)")
        bottom.set_ylabel("low-score rate (%)")
        bottom.set_xticks(x, list(periods), rotation=30, ha="right")
        top.set_xlim(-0.3, max(len(periods) - 1, 1) + 0.3)
        top.set_title(title, loc="left")
        if series:
            handles, names = top.get_legend_handles_labels()
            fig.legend(
                handles, names, loc="outside lower center", ncols=min(4, len(series)), fontsize=7.5
            )
        return fig

    return _draw(name, title, draw)


def dimensions_chart(
    name: str,
    title: str,
    dimensions: Sequence[str],
    whole: Mapping[str, float | None],
    groups: Mapping[str, Mapping[str, float | None]],
    scale: tuple[int, int],
) -> str:
    """Each dimension's mean: the whole as a black bar mark (labelled with its value),
    each group (hall or window) as its own marker and colour, offset so none hides
    another. The axis is zoomed to the values (its range is printed on it)."""

    def draw() -> Any:
        n = len(dimensions)
        k = len(groups)
        fig = _figure(7.6, 1.2 + n * (0.35 + 0.12 * min(k, 8)))
        ax = fig.subplots()
        ys = list(range(n))[::-1]
        values = [v for m in groups.values() for v in m.values()] + list(whole.values())
        lim = _limits(values, scale[0], scale[1], 0.08)
        for y, d in zip(ys, dimensions, strict=True):
            v = whole.get(d)
            if v is not None:
                ax.plot(
                    [v, v],
                    [y - 0.42, y + 0.42],
                    color="#000000",
                    linewidth=2.2,
                    label="whole" if y == ys[0] else None,
                )
                ax.annotate(
                    f"whole {v:.2f}",
                    (v, y + 0.42),
                    xytext=(3, 0),
                    textcoords="offset points",
                    fontsize=7,
                    va="top",
                )
        for i, (label, means) in enumerate(groups.items()):
            st = _style(i)
            off = (i - (k - 1) / 2) * (0.7 / max(k, 1))
            pts = [(means.get(d), y + off) for d, y in zip(dimensions, ys, strict=True)]
            pts = [(x, y) for x, y in pts if x is not None]
            if pts:
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    linestyle="none",
                    marker=st["marker"],
                    color=st["color"],
                    markeredgecolor="#000000",
                    markeredgewidth=0.5,
                    markersize=7,
                    label=label,
                )
        ax.set_yticks(ys, list(dimensions))
        ax.set_ylim(-0.6, n - 0.4)
        ax.set_xlim(*lim)
        ax.set_xlabel(
            f"mean score (axis {lim[0]:.2f}–{lim[1]:.2f} of the {scale[0]}–{scale[1]} scale)"
        )
        ax.set_title(title, loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7.5)
        return fig

    return _draw(name, title, draw)


def heatmap_chart(
    name: str,
    title: str,
    rows: Sequence[str],
    columns: Sequence[str],
    low: Sequence[Sequence[int]],
    counted: Sequence[Sequence[int]],
) -> str:
    """Low scores per row (window) and column (day): viridis by count, each non-empty
    cell numbered; cells without counted ratings hatched grey."""

    def draw() -> Any:
        import numpy as np
        from matplotlib import colormaps

        data = np.ma.masked_array(
            np.array(low, dtype=float), mask=np.array(counted, dtype=float) == 0
        )
        width = min(16.0, max(6.0, 0.3 * len(columns) + 2.5))
        fig = _figure(width, max(2.2, 0.32 * len(rows) + 1.6))
        ax = fig.subplots()
        ax.grid(False)
        from matplotlib.patches import Rectangle

        ax.add_patch(
            Rectangle(
                (0, 0),
                len(columns),
                len(rows),
                facecolor="#eeeeee",
                edgecolor="#aaaaaa",
                hatch="//",
                linewidth=0,
                zorder=0,
            )
        )
        top = max(1.0, float(data.max()) if data.count() else 1.0)
        mesh = ax.pcolormesh(
            data, cmap=colormaps["viridis"], vmin=0, vmax=top, edgecolors="#ffffff", linewidth=0.6
        )
        if len(rows) * len(columns) <= 1500:
            for r in range(len(rows)):
                for c in range(len(columns)):
                    if counted[r][c] and low[r][c]:
                        v = low[r][c]
                        ax.text(
                            c + 0.5,
                            r + 0.5,
                            str(v),
                            ha="center",
                            va="center",
                            fontsize=6.5,
                            color="#000000" if v / top > 0.6 else "#ffffff",
                        )
        ax.set_xticks([c + 0.5 for c in range(len(columns))], list(columns), fontsize=7)
        ax.set_yticks([r + 0.5 for r in range(len(rows))], list(rows), fontsize=7.5)
        ax.invert_yaxis()
        ax.set_xlabel("day (grey hatched: no counted rating)")
        ax.set_title(title, loc="left")
        bar = fig.colorbar(mesh, ax=ax, shrink=0.8, pad=0.01)
        bar.set_label("low scores")
        return fig

    return _draw(name, title, draw)


def exclusions_chart(
    name: str, title: str, rows: Sequence[tuple[str, str, int]], stages: Sequence[str]
) -> str:
    """Ratings excluded per (stage, reason): one bar each, coloured and hatched by stage
    (and the stage named in the label), its count written at its end."""

    def draw() -> Any:
        fig = _figure(7.6, 1.2 + 0.28 * max(len(rows), 1))
        ax = fig.subplots()
        ys = list(range(len(rows)))[::-1]
        top = max((n for _, _, n in rows), default=1)
        seen: set[str] = set()
        for y, (stage, _reason, n) in zip(ys, rows, strict=True):
            i = stages.index(stage) if stage in stages else len(stages)
            ax.barh(
                y,
                n,
                height=0.72,
                color=OKABE_ITO[i % len(OKABE_ITO)],
                hatch=HATCHES[i % len(HATCHES)],
                edgecolor="#000000",
                linewidth=0.6,
                label=stage if stage not in seen else None,
            )
            seen.add(stage)
            ax.text(n + top * 0.01, y, f"{n:,}", va="center", fontsize=7.5)
        ax.set_yticks(ys, [f"{stage} · {reason}" for stage, reason, _ in rows], fontsize=7.5)
        ax.set_xlim(0, top * 1.15)
        ax.set_xlabel("ratings (a rating may carry several reasons)")
        ax.set_title(title, loc="left")
        ax.grid(axis="y", visible=False)
        ax.legend(loc="lower right", fontsize=7.5)
        return fig

    return _draw(name, title, draw)
