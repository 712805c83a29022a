"""``integrity report page|book`` and ``integrity publish [verify]``.

``page`` and ``book`` join the core's ``report`` group (``cli.py`` adds them): they are
person commands, so through the server they follow the read policy (``report_pages``:
admin, supervisor; staff named only for readers of ``staff_performance``), and the file
they write comes back to the caller. ``publish`` writes a public release and records it
on the ledger (the operator's, directly on the database); ``publish verify`` needs
nothing but the release folder.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from integrity.cliutil import (
    DefaultGroup,
    current_actor,
    current_reader,
    instance_options,
    pass_service,
)
from publishing.month import Pages
from publishing.release import Releases


def _period_options(func: Any) -> Any:
    for opt in reversed(
        [
            click.option(
                "--period",
                metavar="PERIOD",
                help="A month (2026-10), quarter (2026-Q4) or ISO week (2026-W43) in the rule "
                "set's time zone (default: the last whole month).",
            ),
            click.option(
                "--from", "first", metavar="DATE", help="First day (YYYY-MM-DD), with --to."
            ),
            click.option("--to", "last", metavar="DATE", help="Last day, included (YYYY-MM-DD)."),
        ]
    ):
        func = opt(func)
    return func


def _output(default_suffix: str) -> Any:
    return click.option(
        "-o",
        "--output",
        required=True,
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        help=f"The file to write ({default_suffix}; page: .xlsx writes the spreadsheet).",
    )


def _write(
    pages: Pages,
    kind: str,
    period: str | None,
    first: str | None,
    last: str | None,
    hall: str | None,
    output: Path,
) -> None:
    from publishing.book import render_book
    from publishing.page import render_page

    t0 = time.perf_counter()
    p = pages.period(period, first, last)
    view = pages.view(current_reader(), p, hall=hall)
    book = kind == "book" or output.suffix.lower() == ".xlsx"
    data = render_book(view) if book else render_page(view).encode("utf-8")
    output.write_bytes(data)
    what = "spreadsheet" if book else "page"
    staff = "" if view.staff is not None else "; staff not named"
    click.echo(
        f"wrote {output} ({len(data):,} bytes, {time.perf_counter() - t0:.1f} s): the {what} of "
        f"{p.describe()}{staff}"
    )


@click.command("page")
@instance_options
@_period_options
@click.option("--hall", metavar="HALL", help="Only this hall's windows.")
@_output(".html")
@pass_service(Pages)
def report_page(
    pages: Pages,
    period: str | None,
    first: str | None,
    last: str | None,
    hall: str | None,
    output: Path,
) -> None:
    """The supervisor's page of a period: ONE self-contained HTML file (charts as inline
    SVG, nothing fetched when it opens), for screen and print.

    Rankings (halls, windows, staff), the trend of score and low-score rate over the 12
    periods up to it, dimension means against the hall and the whole, low scores per
    window and day, what the integrity checks excluded and why (with the audit's
    estimates and the appeals), the rectification list and the follow-up loop's
    figures. An output ending in .xlsx writes the spreadsheet instead (`report book`).

    Through the server it needs the admin or supervisor role; staff are named only for
    roles that may read staff performance.
    """
    _write(pages, "page", period, first, last, hall, output)


@click.command("book")
@instance_options
@_period_options
@click.option("--hall", metavar="HALL", help="Only this hall's windows.")
@_output(".xlsx")
@pass_service(Pages)
def report_book(
    pages: Pages,
    period: str | None,
    first: str | None,
    last: str | None,
    hall: str | None,
    output: Path,
) -> None:
    """The supervisor's spreadsheet of a period (.xlsx): the page's tables as sheets, with
    the rubric's dimensions as columns, number formats and frozen headers.

    Through the server it needs the admin or supervisor role; staff are named only for
    roles that may read staff performance.
    """
    _write(pages, "book", period, first, last, hall, output)


@click.group(cls=DefaultGroup, default="release")
def publish() -> None:
    """The public release of a period: `integrity publish --period 2026-10 -o release/`
    writes it (the default command, `publish release`); `integrity publish verify
    release/` checks one with no database."""


@publish.command("release")
@instance_options
@_period_options
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A new (or empty) folder to write the release into.",
)
@pass_service(Releases)
def publish_release(
    releases: Releases, period: str | None, first: str | None, last: str | None, output: Path
) -> None:
    """Write what the public may see of a period into a folder: release.json, CSV files
    of the window and hall rankings (staff only when the rule set's [publish]
    staff_names is true) and of what was excluded, index.html, and manifest.json with
    every file's SHA-256.

    It holds the ratings received, counted and excluded (by stage and reason), the
    audit's sample results with exact bounds, the appeals filed and upheld, and the
    ledger checkpoint it stands on (recorded first). The release is a ledger event
    (release.published, with the manifest's SHA-256).
    """
    p = releases.pages.period(period, first, last)
    done = releases.publish(p, output, current_actor())
    click.echo(f"published {p.describe()} in {done.folder}: {', '.join(done.files)}")
    click.echo(f"manifest SHA-256 {done.manifest_sha256} (ledger event {done.event_id})")
    click.echo(f"stands on {done.checkpoint}")


@publish.command("verify")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def publish_verify(folder: Path) -> None:
    """Check a release folder with no database: every file's SHA-256 against the
    manifest, the formats and the checkpoint line, that counts add up (windows to totals,
    windows to halls, stages to the excluded, the audit's windows to its overall line)
    and that ranks follow from scores. Exit 1 if anything fails.

    That the ledger still extends the release's checkpoint is checked on the ledger:
    integrity ledger verify --checkpoint "<checkpoint>".
    """
    from publishing.verify import verify_release

    v = verify_release(folder)
    for note in v.notes:
        click.echo(f"ok: {note}")
    for problem in v.problems:
        click.echo(f"FAIL: {problem}", err=True)
    if not v.ok:
        click.echo(f"release {folder} does NOT verify ({len(v.problems)} problem(s))", err=True)
        sys.exit(1)
    click.echo(f"release {folder} verifies")


#: Subcommands of the core's ``report`` group.
REPORT_COMMANDS = (report_page, report_book)
#: Top-level commands.
COMMANDS = (publish,)
