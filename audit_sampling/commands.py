"""``integrity audit ...`` (issue: verifiable third-party audit sampling)."""

from __future__ import annotations

import click


@click.group("audit")
def audit_group() -> None:
    """Verifiable random audit samples, auditor batches, findings and estimates."""
