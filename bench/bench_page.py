"""How long the supervisor's page and spreadsheet take for the demo month (SQLite).

Builds the demo's instance once (``integrity demo``'s month, seed 7: about 26,000
ratings, 18 windows in 3 halls; cached in ``--home``), then times, each the median of
``--repeat`` runs:

- the command as a supervisor runs it (a fresh process: start-up, imports, the
  queries, the charts, writing the file): ``integrity report page`` and ``report book``;
- the floor, in the same run: ``integrity report --by window`` for the same period, a
  fresh process too (the table the page starts from);
- in this process: gathering the figures (``Pages.view``: reports, trend, low scores
  per day, exclusions, audit, appeals), rendering the page (the charts), the workbook.

    .venv/bin/python -m bench.bench_page [--home .bench-page] [--repeat 3] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bootstrap import open_app  # noqa: E402
from integrity.app import Settings  # noqa: E402
from integrity.reports import Period  # noqa: E402
from publishing import Pages  # noqa: E402
from publishing.book import render_book  # noqa: E402
from publishing.page import render_page  # noqa: E402


def build(home: Path, rebuild: bool) -> tuple[date, date]:
    marker = home / "bench-page.json"
    if marker.exists() and not rebuild:
        doc = json.loads(marker.read_text())
        return date.fromisoformat(doc["first"]), date.fromisoformat(doc["last"])
    from simulation.demo import run_demo

    if home.exists():
        shutil.rmtree(home)
    out = run_demo(str(home), seed=7, days=30, echo=lambda *_: None)
    first, last = out["first_day"], out["last_day"]
    marker.write_text(json.dumps({"first": first.isoformat(), "last": last.isoformat()}))
    return first, last


def median(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, default=ROOT / ".bench-page")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    home = args.home.absolute()
    first, last = build(home, args.rebuild)
    span = ["--from", first.isoformat(), "--to", last.isoformat()]
    env_home = ["--home", str(home)]

    def command(*argv: str) -> Callable[[], None]:
        def run() -> None:
            subprocess.run(
                [sys.executable, "-m", "cli", *argv, *env_home],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )

        return run

    out = home / "bench"
    out.mkdir(exist_ok=True)
    floor = median(command("report", "--by", "window", *span, "--format", "csv"), args.repeat)
    page_cmd = median(command("report", "page", *span, "-o", str(out / "p.html")), args.repeat)
    book_cmd = median(command("report", "book", *span, "-o", str(out / "b.xlsx")), args.repeat)
    with open_app(Settings.resolve(home=home, env={})) as app:
        pages = app.get(Pages)
        period = Period.between(first, last, app.core.timezone)
        view = pages.view(None, period)
        t_view = median(lambda: pages.view(None, period), args.repeat)
        render_page(view)  # fonts registered, matplotlib warm
        t_page = median(lambda: render_page(view), args.repeat)
        t_book = median(lambda: render_book(view), args.repeat)
        size = len(render_page(view).encode())
        ratings = view.exclusions.received
    print(f"demo month {first}..{last}: {ratings:,} ratings, {len(view.windows.rows)} windows")
    print(f"floor: `integrity report --by window` (fresh process)   {floor:6.2f} s")
    print(
        f"`integrity report page` (fresh process)                {page_cmd:6.2f} s = {page_cmd / floor:.1f}x the floor"
    )
    print(
        f"`integrity report book` (fresh process)                {book_cmd:6.2f} s = {book_cmd / floor:.1f}x the floor"
    )
    print(
        f"in process: figures (Pages.view) {t_view:.2f} s, page {t_page:.2f} s ({size / 1e6:.2f} MB), workbook {t_book:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
