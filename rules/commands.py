"""``integrity detect`` and ``integrity review ...`` (issue: outlier detection)."""

from __future__ import annotations

import click


@click.command("detect")
def detect_command() -> None:
    """Run outlier detection over the ledger; flagged ratings become held."""
    raise click.ClickException("detection is not implemented yet")


@click.group("review")
def review_group() -> None:
    """Review held ratings: list, show, clear (accept) or confirm (reject)."""
