"""``integrity appeal ...`` and ``integrity staff ...`` (issue: staff appeal workflow)."""

from __future__ import annotations

import click


@click.group("appeal")
def appeal_group() -> None:
    """Staff appeals against malicious low scores, and their review."""


@click.group("staff")
def staff_group() -> None:
    """The staff registry: people, units, windows and roles."""
