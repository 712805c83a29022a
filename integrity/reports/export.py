"""The ratings export: one row per rating in the order received, with its current status.

Columns (docs/reference.md, Exports): ``rating_id``, ``ticket_id``, ``window_id``,
``hall_id`` (when a service registry is loaded), ``staff_id``, ``service_type``,
``channel``, ``served_at``, ``submitted_at`` (RFC 3339 in the rule set's time zone, with
its offset), one column per rubric dimension (its score; empty when the rating has
none), ``composite``, ``status``, ``counted``, ``reasons`` (``;``-joined current
reason codes), ``risk`` (0-1), ``client_id`` (the intake client that sent it), and
``comment`` only when asked for and allowed (:mod:`integrity.access`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from integrity.model import Rubric
from integrity.ports import Ledger, RatingQuery
from integrity.registry import ServiceRegistry

#: The columns every export has (without dimensions, hall or comment).
EXPORT_COLUMNS = (
    "rating_id",
    "ticket_id",
    "window_id",
    "staff_id",
    "service_type",
    "channel",
    "served_at",
    "submitted_at",
    "composite",
    "status",
    "counted",
    "reasons",
    "risk",
    "client_id",
)


@dataclass(frozen=True)
class ExportSpec:
    """What an export holds: the rubric's dimensions, halls (a loaded registry), comments."""

    rubric: Rubric
    registry: ServiceRegistry
    timezone: ZoneInfo
    with_comments: bool = False
    client_id: str | None = None  # only the ratings this intake client sent

    @property
    def dimension_columns(self) -> dict[str, str]:
        """Dimension -> its column (its name; ``score_<name>`` if a column has that name)."""
        taken = {*EXPORT_COLUMNS, "hall_id", "comment"}
        return {d: (f"score_{d}" if d in taken else d) for d in self.rubric.dimensions}

    @property
    def columns(self) -> tuple[str, ...]:
        hall = ("hall_id",) if self.registry.loaded else ()
        return (
            "rating_id",
            "ticket_id",
            "window_id",
            *hall,
            "staff_id",
            "service_type",
            "channel",
            "served_at",
            "submitted_at",
            *self.dimension_columns.values(),
            "composite",
            "status",
            "counted",
            "reasons",
            "risk",
            "client_id",
            *(("comment",) if self.with_comments else ()),
        )


def _time(at: datetime | None, tz: ZoneInfo) -> str | None:
    return at.astimezone(tz).isoformat() if at is not None else None


def export_rows(ledger: Ledger, spec: ExportSpec, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Every rating in the order received, as rows of ``spec.columns``; streams."""
    dims = spec.dimension_columns
    tz = spec.timezone
    reg = spec.registry
    for r in ledger.iter_ratings(RatingQuery(order="rating_id", client_id=spec.client_id), batch):
        row: dict[str, Any] = {
            "rating_id": r.rating_id,
            "ticket_id": r.ticket_id,
            "window_id": r.window_id,
            "staff_id": r.staff_id,
            "service_type": r.service_type,
            "channel": r.channel,
            "served_at": _time(r.served_at, tz),
            "submitted_at": _time(r.submitted_at, tz),
            "composite": r.composite,
            "status": r.status.value,
            "counted": r.counted,
            "reasons": ";".join(r.reasons),
            "risk": r.risk,
            "client_id": r.client_id,
        }
        for d, col in dims.items():
            row[col] = r.scores.get(d)
        if reg.loaded:
            hall = reg.hall_of(r.window_id)
            row["hall_id"] = hall.hall_id if hall else None
        if spec.with_comments:
            row["comment"] = r.comment
        yield row


def export_ratings(
    ledger: Ledger,
    batch: int = 5000,
    *,
    rubric: Rubric | None = None,
    registry: ServiceRegistry | None = None,
    timezone: ZoneInfo | None = None,
    client_id: str | None = None,
) -> Iterator[dict[str, Any]]:
    """:func:`export_rows` with defaults (default rubric, no registry, UTC), for callers
    that only read a few columns."""
    from integrity.model import DEFAULT_RUBRIC

    spec = ExportSpec(
        rubric=rubric or DEFAULT_RUBRIC,
        registry=registry or ServiceRegistry(),
        timezone=timezone or ZoneInfo("UTC"),
        client_id=client_id,
    )
    return export_rows(ledger, spec, batch)
