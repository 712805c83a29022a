"""Extension point: the follow-up loop's figures in performance reports.

The follow-up loop supplies a :class:`FollowupFigures` and the composition root wires it
(``app.factories[FollowupFigures] = ...``); every report then carries its columns after
the report's own, one value per group. The low-score alerts (``followup.alerts``) add
``alerts_opened`` (alerts opened in the period whose rating still counts),
``answered_in_24h`` (the share of them answered within 24 hours) and ``alerts_overdue``
(how many missed a deadline). Without one wired, reports have no follow-up columns:
nothing here invents those figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from integrity.reports.periods import Period


class FollowupFigures(Protocol):
    """Figures of the follow-up loop, per report group."""

    #: The columns it adds to reports, in order.
    columns: tuple[str, ...]

    def figures(
        self, by: str, period: Period | None, keys: Sequence[str | None]
    ) -> Mapping[str | None, Mapping[str, Any]]:
        """For each group ``key`` (a window id, staff id, hall id ... as ``by`` says), the
        value of each of :attr:`columns` in ``period`` (``None``: all time). Groups left
        out, or columns left out of a group's mapping, show empty."""
        ...
