"""Low-score alerts: every counted low score goes to its window's head, who answers within
24 hours, verifies, rectifies and replies to the rater within working days.

Alerts are a projection of the ledger's status events (``service.py``), so the rule
"exactly one alert for every counted low score" holds whichever path a rating takes;
each step people take is a checked transition (``model.py``) and a ledger event.
:class:`AlertView` gives the rater's receipt the follow-up's stage and the reply;
:class:`AlertFigures` adds the alerts' figures to performance reports.
"""

from followup.alerts.model import Alert, State
from followup.alerts.service import AlertService
from followup.alerts.views import AlertFigures, AlertView

__all__ = ["Alert", "AlertFigures", "AlertService", "AlertView", "State"]
