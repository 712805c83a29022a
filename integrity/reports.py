"""Reading the ledger: performance reports and the ratings export.

Performance counts ``accepted`` ratings only. A rating belongs to the period of its
``served_at`` (``submitted_at`` when absent) in the rule set's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from integrity.adapters import tables as t
from integrity.adapters.sql import SqlLedger
from integrity.errors import FieldError, InvalidInput
from integrity.model import Rubric, Status
from integrity.sqlkit import translate_errors

GROUPS = {"window": "window_id", "staff": "staff_id", "service_type": "service_type"}
REPORT_COLUMNS = (
    "ratings",
    "counted",
    "score",
    "low_score_rate",
    "low_scores",
    "held",
    "rejected",
    "voided",
)
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
class Period:
    """A calendar month in a time zone, as a half-open UTC interval."""

    label: str
    start: datetime
    end: datetime

    @classmethod
    def month(cls, text: str, tz: ZoneInfo) -> Period:
        m = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise InvalidInput(
                [FieldError("period", f"expected YYYY-MM, got {text!r}")], what="period"
            )
        y, mo = int(m.group(1)), int(m.group(2))
        ny, nmo = (y + 1, 1) if mo == 12 else (y, mo + 1)
        start = datetime(y, mo, 1, tzinfo=tz).astimezone(UTC)
        end = datetime(ny, nmo, 1, tzinfo=tz).astimezone(UTC)
        return cls(text.strip(), start, end)


def performance(
    ledger: SqlLedger, by: str, rubric: Rubric, period: Period | None = None
) -> list[dict[str, Any]]:
    """One row per group with any rating in the period (also when none counted).

    ``score`` is the mean weighted composite of counted ratings (``None`` when none
    counted); ``low_score_rate`` the share of counted ratings below the rubric's low
    mark (0..1).
    """
    if by not in GROUPS:
        raise InvalidInput(
            [FieldError("by", f"expected one of {', '.join(GROUPS)}")], what="report"
        )
    key = t.ratings.c[GROUPS[by]]
    st = t.rating_status.c.status
    counted = st == Status.ACCEPTED.value
    low = sa.and_(counted, t.ratings.c.composite < rubric.low_score_below)

    def n(cond: Any) -> Any:
        return sa.func.sum(sa.case((cond, 1), else_=0))

    q = (
        sa.select(
            key.label("group"),
            sa.func.count().label("ratings"),
            n(counted).label("counted"),
            sa.func.avg(sa.case((counted, t.ratings.c.composite), else_=None)).label("score"),
            n(low).label("low_scores"),
            n(st == Status.HELD.value).label("held"),
            n(st == Status.REJECTED.value).label("rejected"),
            n(st == Status.VOIDED.value).label("voided"),
        )
        .select_from(
            t.ratings.join(t.rating_status, t.rating_status.c.rating_id == t.ratings.c.rating_id)
        )
        .group_by(key)
        .order_by(key)
    )
    if period is not None:
        q = q.where(t.ratings.c.occurred_at >= period.start, t.ratings.c.occurred_at < period.end)
    rows = []
    with translate_errors(), ledger.engine.connect() as conn:
        for r in conn.execute(q).mappings():
            c = int(r["counted"] or 0)
            rows.append(
                {
                    GROUPS[by]: r["group"],
                    "ratings": int(r["ratings"]),
                    "counted": c,
                    "score": float(r["score"]) if c else None,
                    "low_score_rate": (int(r["low_scores"]) / c) if c else None,
                    "low_scores": int(r["low_scores"] or 0),
                    "held": int(r["held"] or 0),
                    "rejected": int(r["rejected"] or 0),
                    "voided": int(r["voided"] or 0),
                }
            )
    return rows


def export_ratings(
    ledger: SqlLedger,
    batch: int = 5000,
    *,
    comments: bool = True,
    client_id: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Every rating in the order received with its current status (and its ``comment``
    unless ``comments`` is false); streams.

    ``client_id``: only the ratings that intake client sent (who sent a flood)."""
    extra = [t.ratings.c.comment] if comments else []
    q = (
        sa.select(
            t.ratings.c.rating_id,
            t.ratings.c.ticket_id,
            t.ratings.c.window_id,
            t.ratings.c.staff_id,
            t.ratings.c.service_type,
            t.ratings.c.channel,
            t.ratings.c.served_at,
            t.ratings.c.submitted_at,
            t.ratings.c.composite,
            t.rating_status.c.status,
            t.rating_status.c.reasons,
            t.rating_status.c.risk,
            t.ratings.c.client_id,
            *extra,
        )
        .select_from(
            t.ratings.join(t.rating_status, t.rating_status.c.rating_id == t.ratings.c.rating_id)
        )
        .order_by(t.ratings.c.rating_id)
    )
    if client_id is not None:
        q = q.where(t.ratings.c.client_id == client_id)
    with translate_errors(), ledger.engine.connect() as conn:
        result = conn.execution_options(yield_per=batch).execute(q).mappings()
        for r in result:
            row = dict(r)
            row["counted"] = row["status"] == Status.ACCEPTED.value
            row["served_at"] = row["served_at"].isoformat() if row["served_at"] else None
            row["submitted_at"] = row["submitted_at"].isoformat()
            row["risk"] = float(row["risk"] or 0.0)
            yield row
