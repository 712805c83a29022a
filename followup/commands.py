"""The follow-up loop's command groups, for ``cli.py`` to assemble."""

from __future__ import annotations

from followup.alerts.commands import alerts_group
from followup.webhooks.commands import webhooks_group

COMMANDS = (webhooks_group, alerts_group)
