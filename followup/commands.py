"""The follow-up loop's command groups, for ``cli.py`` to assemble."""

from __future__ import annotations

from followup.alerts.commands import alerts_group
from followup.cases.commands import cases_group, period_group
from followup.webhooks.commands import webhooks_group

COMMANDS = (webhooks_group, alerts_group, period_group, cases_group)
