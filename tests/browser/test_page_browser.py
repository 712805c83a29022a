"""The supervisor's page in a real browser: headless Chromium (Debian's ``chromium``,
driven by Playwright through ``executable_path``; never a browser Playwright downloads)
opens the file with no network, and every chart must have drawn: a non-zero box, marks
inside it (lines, markers, bars, cells), and non-background pixels where it sits in a
screenshot. Chinese hall names must render as glyphs of a CJK font, not as boxes.

A missing browser (or Playwright) is a skip on a laptop and a failure under ``CI=true``
(``scripts/services.sh`` installs ``chromium`` and a CJK font when missing).
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI
from factories import make_app
from publishing_factories import HALLS, NOW, build_month

from integrity.clock import FrozenClock
from integrity.reports import Period
from publishing import Pages
from publishing.page import render_page

pytestmark = pytest.mark.browser

#: What Chromium needs to run headless as root in a container, quietly and offline.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} (CI=true: scripts/services.sh installs it)", pytrace=False)
    pytest.skip(what)


def chromium_path() -> str:
    for candidate in (
        os.environ.get("INTEGRITY_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    _missing("no Chromium found (Debian package chromium)")
    raise AssertionError  # unreachable


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed (pip install playwright)")
    exe = chromium_path()
    base = tmp_path_factory.mktemp("browser")
    app = make_app(base / "home", clock=FrozenClock(NOW))
    try:
        build_month(app)
        view = app.get(Pages).view(None, Period.month("2026-10", app.core.timezone))
        page_file = base / "page.html"
        page_file.write_text(render_page(view), "utf-8")
    finally:
        app.close()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
            page = context.new_page()
            failed: list[str] = []
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")
            assert not failed, f"the page tried to fetch {failed}"
            yield page, base
        finally:
            browser.close()


def test_every_chart_draws_marks_and_pixels(browser_page: tuple[Any, Path]) -> None:
    import numpy as np
    from PIL import Image

    page, base = browser_page
    charts = page.query_selector_all("figure.chart")
    names = [c.get_attribute("data-chart") for c in charts]
    assert names[0] == "trend-halls" and {"dimensions", "heatmap", "exclusions"} <= set(names)
    shot = base / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    scroll = page.evaluate("() => [window.scrollX, window.scrollY]")
    for chart, name in zip(charts, names, strict=True):
        svg = chart.query_selector("svg")
        assert svg is not None, name
        box = svg.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 100, (name, box)
        marks = svg.evaluate(
            """(svg) => {
              const sel = 'g[id*="line2d"] path, g[id*="line2d"] use, g[id*="QuadMesh"] path, '
                + 'g[id*="patch"] path, g[id*="PathCollection"] use';
              let n = 0;
              for (const el of svg.querySelectorAll(sel)) {
                const b = el.getBBox();
                if (b.width > 0 || b.height > 0) n++;
              }
              return n;
            }"""
        )
        assert marks >= 10, (name, marks)
        left, top = box["x"] + scroll[0], box["y"] + scroll[1]
        crop = image.crop((int(left), int(top), int(left + box["width"]), int(top + box["height"])))
        px = np.asarray(crop, dtype=np.int32).reshape(-1, 3)
        ink = float((px.sum(axis=1) < 720).mean())  # not the white background
        colour = float((px.max(axis=1) - px.min(axis=1) > 60).mean())  # the palette's colours
        assert ink > 0.02 and colour > 0.001, (name, ink, colour)


def _cdp_fonts(page: Any, selector: str) -> list[dict[str, Any]]:
    """The fonts Chromium used to draw the first node matching ``selector``."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    assert node, selector
    return list(cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"])


CJK_FONTS = ("WenQuanYi", "Noto Sans CJK", "Noto Serif CJK", "Source Han", "Droid Sans Fallback")


def test_chinese_hall_names_render_as_glyphs(browser_page: tuple[Any, Path]) -> None:
    page, _ = browser_page
    name = HALLS["H1"]
    widths = page.evaluate(
        """(name) => {
          const probe = (text) => {
            const s = document.createElement('span');
            s.textContent = text; s.style.fontSize = '20px'; s.style.whiteSpace = 'nowrap';
            document.body.appendChild(s);
            const w = s.getBoundingClientRect().width; s.remove(); return w;
          };
          // U+10FFFD: a private-use code point no font draws: the browser's box fallback
          return {cjk: probe(name), box: probe('\\u{10FFFD}'.repeat(name.length))};
        }""",
        name,
    )
    em = 20 * len(name)
    assert 0.9 * em <= widths["cjk"] <= 1.1 * em, widths  # full-width ideographs
    assert abs(widths["cjk"] - widths["box"]) > 0.1 * em, widths  # not the fallback's boxes
    # the hall name in a table cell and in a chart's SVG text are drawn with a CJK font
    page.evaluate(
        """(name) => {
          const td = [...document.querySelectorAll('td')].find(e => e.textContent.includes(name));
          td.id = 'cjk-cell';
          const t = [...document.querySelectorAll('figure[data-chart="trend-halls"] svg text')]
            .find(e => e.textContent.includes(name));
          t.id = 'cjk-svg-text';
        }""",
        name,
    )
    for selector in ("#cjk-cell", "#cjk-svg-text"):
        fonts = _cdp_fonts(page, selector)
        cjk = [f for f in fonts if any(k in f["familyName"] for k in CJK_FONTS)]
        assert cjk and sum(f["glyphCount"] for f in cjk) >= len(name), (selector, fonts)
    svg_width = page.evaluate(
        """() => { const t = document.getElementById('cjk-svg-text');
          return [t.getBBox().width, parseFloat(getComputedStyle(t).fontSize), t.textContent]; }"""
    )
    width, size, text = svg_width
    assert width >= 0.9 * size * len(name), svg_width  # the name's glyphs take their room
    assert name in text
