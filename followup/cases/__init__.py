"""Rectification cases and the month's close.

``integrity period close YYYY-MM`` (:class:`MonthClose`) freezes the month's figures in
its ``period.closed`` event and opens a case for every window and staff member whose
low-score rate is above the rule set's mark with enough counted ratings, and a
supervisory ``talk`` for windows in the bottom ranks two closes running; the next close
checks each case. People plan and note them (:class:`CaseService`, ``integrity cases
...``); each step is a checked transition (``model.py``) and a ledger event.
"""

from followup.cases.model import Case, CaseKind, State
from followup.cases.service import CaseService, CloseResult, MonthClose

__all__ = ["Case", "CaseKind", "CaseService", "CloseResult", "MonthClose", "State"]
