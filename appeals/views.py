"""How appeals read on screen and in JSON: rows, one-record tables, and each command's
output. Pure functions of what the service returned (and the clock and time zone for
"overdue" and local times); the commands in :mod:`appeals.commands` only call them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import click

from appeals.context import RatingContext
from appeals.model import Appeal, State
from appeals.policy import Ineligibility
from appeals.service import AppealDetail, EscalationRun, FilingResult
from appeals.stats import STAT_COLUMNS
from integrity.model import Event
from integrity.render import dump_json, jsonable, render

#: Formats of commands that print one document (a record with tables inside).
DOC_FORMATS = ("table", "json")

LIST_COLUMNS = (
    "appeal_id",
    "rating_id",
    "appellant",
    "unit",
    "ground",
    "state",
    "round",
    "reviewers",
    "uphold_votes",
    "filed",
    "due",
    "overdue",
    "version",
)
EVIDENCE_COLUMNS = ("sha256", "name", "bytes", "round", "added_by", "added_at", "on_disk", "path")
HISTORY_COLUMNS = ("event_id", "at", "kind", "actor", "from", "to", "note")
FINDING_COLUMNS = (
    "event_id",
    "at",
    "kind",
    "detector",
    "reason",
    "score",
    "threshold",
    "explanation",
)
CLUSTER_COLUMNS = ("by", "pseudonym", "ratings", "includes_this", "statuses", "rating_ids")
RATING_FIELDS = (
    "rating_id",
    "ticket_id",
    "window_id",
    "staff_id",
    "service_type",
    "channel",
    "submitted_at",
    "composite",
    "scores",
    "status",
    "reasons",
    "risk",
    "comment",
)
# Machine-only fields: JSON carries them, tables show their readable twins (filed, due).
_TABLE_HIDDEN = frozenset({"filed_at", "due_at", "decided_at"})


# -- rows ---------------------------------------------------------------------------------


def local(at: datetime | None, tz: ZoneInfo) -> str | None:
    """``YYYY-MM-DD HH:MM+hhmm`` in the rule set's time zone."""
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M%z") if at else None


def due_day(due_at: datetime | None, tz: ZoneInfo) -> str | None:
    """The last local day on which a decision is on time (``due_at`` is exclusive)."""
    if due_at is None:
        return None
    return (due_at.astimezone(tz) - timedelta(microseconds=1)).date().isoformat()


def appeal_row(a: Appeal, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """One appeal as a list row (``LIST_COLUMNS``) plus machine fields for JSON."""
    return {
        "appeal_id": a.appeal_id,
        "rating_id": a.rating_id,
        "appellant": a.appellant_id,
        "unit": a.appellant_unit,
        "window_id": a.window_id,
        "ground": a.ground,
        "state": a.state.value,
        "ineligible_reasons": list(a.ineligible_reasons),
        "round": a.round,
        "reviewers": list(a.reviewers),
        "uphold_votes": len(a.uphold_voters),
        "filed": local(a.filed_at, tz),
        "filed_at": a.filed_at,
        "due": due_day(a.due_at, tz),
        "due_at": a.due_at,
        "overdue": a.overdue(now),
        "decided": local(a.decided_at, tz),
        "decided_at": a.decided_at,
        "decided_by": a.decided_by,
        "decision_reason": a.decision_reason,
        "used_automated_evidence": a.used_automated_evidence,
        "prior_outcome": a.prior_outcome.value if a.prior_outcome else None,
        "escalations": a.escalations,
        "reopens": a.reopens,
        "reversals": a.reversals,
        "evidence": [f.sha256 for f in a.evidence],
        "version": a.version,
    }


def event_row(e: Event, tz: ZoneInfo) -> dict[str, Any]:
    """One ledger event of an appeal or a rating, with a one-line note of what it says."""
    ev = dict(e.evidence)
    note = next((str(ev[k]) for k in ("reason", "message") if ev.get(k)), "")
    if "vote" in ev:
        auto = (
            "automated evidence used"
            if ev.get("used_automated_evidence")
            else "no automated evidence"
        )
        note = f"{ev['vote']} ({auto}): {note}"
    if "reviewer" in ev:
        note = f"reviewer {ev['reviewer']}"
    if ev.get("ineligible"):
        note = "; ".join(f"{p['code']}: {p['message']}" for p in ev["ineligible"])
    if e.status is not None:
        why = f" ({', '.join(e.reasons)})" if e.reasons else ""
        note = f"rating -> {e.status.value}{why}"
    return {
        "event_id": e.event_id,
        "at": local(e.at, tz),
        "kind": e.kind,
        "actor": e.actor,
        "from": ev.get("from"),
        "to": ev.get("to") or (e.status.value if e.status else None),
        "note": note,
    }


def ineligible_rows(problems: Sequence[Ineligibility]) -> list[dict[str, str]]:
    return [{"code": p.code, "message": p.message} for p in problems]


def key_values(doc: Mapping[str, Any], out: TextIO, fields: Sequence[str] | None = None) -> None:
    """A one-record table of field/value rows; empty and machine-only fields left out."""
    keys = fields or [
        k for k in doc if k not in _TABLE_HIDDEN and doc[k] not in (None, "", [], {}, ())
    ]
    render([{"field": k, "value": doc[k]} for k in keys], ["field", "value"], "table", out)


# -- one appeal after an action --------------------------------------------------------------


def print_appeal(
    a: Appeal,
    fmt: str,
    message: str,
    out: TextIO,
    *,
    now: datetime,
    tz: ZoneInfo,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """The appeal after an action: JSON (its row, ``extra`` and the message) or the
    message and a field/value table."""
    row = appeal_row(a, now, tz)
    if fmt == "json":
        dump_json({**row, **(extra or {}), "message": message}, out)
        return
    out.write(message + "\n")
    key_values(row, out)


def filing_message(res: FilingResult, tz: ZoneInfo) -> str:
    a = res.appeal
    if res.admitted:
        return (
            f"appeal {a.appeal_id} filed about rating {a.rating_id}; "
            f"a decision is due by {due_day(a.due_at, tz)}"
        )
    why = "; ".join(f"{p.code}: {p.message}" for p in res.ineligible)
    return f"appeal {a.appeal_id} recorded as ineligible: {why}"


def decision_message(a: Appeal, uphold_needed: int) -> str:
    if a.state is State.UPHELD:
        return f"appeal {a.appeal_id} upheld: rating {a.rating_id} is voided"
    if a.state is State.REJECTED:
        return f"appeal {a.appeal_id} rejected: rating {a.rating_id} stands"
    return (
        f"appeal {a.appeal_id}: uphold vote {len(a.uphold_voters)} of "
        f"{uphold_needed} recorded; another reviewer must agree"
    )


# -- lists, runs, statistics, verification -----------------------------------------------------


def print_list(
    appeals: Sequence[Appeal], fmt: str, out: TextIO, *, now: datetime, tz: ZoneInfo
) -> None:
    rows = [appeal_row(a, now, tz) for a in appeals]
    if fmt == "json":  # every field, not only the list's columns
        dump_json(rows, out)
    else:
        render(rows, LIST_COLUMNS, fmt, out)


def print_escalation_run(
    run: EscalationRun, fmt: str, out: TextIO, *, now: datetime, tz: ZoneInfo
) -> None:
    rows = [appeal_row(a, now, tz) for a in run.escalated]
    if fmt == "json":
        dump_json(
            {
                "escalated": rows,
                "skipped": [{"appeal_id": i, "why": w} for i, w in run.skipped],
            },
            out,
        )
        return
    out.write(f"{len(rows)} overdue appeal(s) escalated\n")
    if rows:
        render(rows, LIST_COLUMNS, "table", out)
    for i, why in run.skipped:
        click.echo(f"skipped appeal {i}: {why}", err=True)


def print_stats(rows: Sequence[Mapping[str, Any]], by: str | None, fmt: str, out: TextIO) -> None:
    """Rows of :func:`~appeals.stats.summarise_by` (with ``by``), or the one summary."""
    if by:
        cols = [by, *STAT_COLUMNS]
        render(rows, [*cols, "by_state"] if fmt == "json" else cols, fmt, out)
        return
    doc = rows[0]
    if fmt == "json":
        dump_json(doc, out)
        return
    if fmt == "csv":
        render([doc], STAT_COLUMNS, "csv", out)
        return
    key_values(doc, out, list(STAT_COLUMNS))
    out.write("\n")
    render(
        [{"state": k, "appeals": v} for k, v in doc["by_state"].items()],
        ["state", "appeals"],
        "table",
        out,
    )


def print_verification(problems: Sequence[str], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        dump_json({"ok": not problems, "problems": list(problems)}, out)
        return
    for p in problems:
        out.write(f"MISMATCH: {p}\n")
    if not problems:
        out.write("ok: every appeal agrees with its ledger events\n")


# -- appeal show ------------------------------------------------------------------------------


def show_doc(
    d: AppealDetail, *, now: datetime, tz: ZoneInfo, cluster_days: float
) -> dict[str, Any]:
    """``appeal show`` as one document (what ``--format json`` prints)."""
    a = d.appeal
    doc: dict[str, Any] = {
        "appeal": appeal_row(a, now, tz),
        "reason": a.reason,
        "evidence": list(d.evidence),
        "votes": [
            {
                "reviewer": v.reviewer_id,
                "vote": v.vote,
                "used_automated_evidence": v.used_automated_evidence,
                "at": local(v.at, tz),
                "reason": v.reason,
            }
            for v in a.votes
        ],
        "history": [event_row(e, tz) for e in d.history],
        "allowed_next": list(d.allowed_next),
    }
    if d.context is not None:
        doc.update(_context_doc(d.context, tz, cluster_days))
    return doc


def _context_doc(ctx: RatingContext, tz: ZoneInfo, cluster_days: float) -> dict[str, Any]:
    r = ctx.rating
    return {
        "rating": {k: jsonable(getattr(r, k)) for k in RATING_FIELDS},
        "rating_events": [event_row(e, tz) for e in ctx.events],
        "flags": [
            {
                "event_id": e.event_id,
                "at": local(e.at, tz),
                "kind": e.kind,
                "actor": e.actor,
                "subject": e.subject,
                "reasons": list(e.reasons),
                "evidence": dict(e.evidence),
            }
            for e in ctx.flags
        ],
        "findings": [{**jsonable(f), "at": local(f.at, tz)} for f in ctx.findings],
        "cluster": {"days": cluster_days, **ctx.cluster},
    }


def print_show(doc: Mapping[str, Any], out: TextIO) -> None:
    """``appeal show`` as text: the appeal, then (for reviewers) the rating's context."""
    a = doc["appeal"]
    out.write(f"Appeal {a['appeal_id']}: {a['state'].replace('_', ' ')}\n")
    key_values({**a, "reason": doc["reason"]}, out)
    out.write(f"\nAllowed next: {', '.join(doc['allowed_next']) or 'nothing (final)'}\n")
    if doc["evidence"]:
        out.write("\nEvidence\n")
        render(
            doc["evidence"],
            ["sha256", "name", "bytes", "round", "added_by", "on_disk"],
            "table",
            out,
        )
    if doc["votes"]:
        out.write("\nVotes this round\n")
        render(
            doc["votes"],
            ["reviewer", "vote", "used_automated_evidence", "at", "reason"],
            "table",
            out,
        )
    out.write("\nHistory (ledger)\n")
    render(doc["history"], HISTORY_COLUMNS, "table", out)
    if "rating" not in doc:
        return
    rt = dict(doc["rating"])
    rt["scores"] = ", ".join(f"{k} {v}" for k, v in rt["scores"].items())
    out.write(f"\nRating {rt['rating_id']}\n")
    key_values(rt, out, [k for k in rt if rt[k] not in (None, "", [])])
    out.write("\nRating events\n")
    render(doc["rating_events"], ["event_id", "at", "kind", "actor", "to", "note"], "table", out)
    out.write("\nDetector flags (automated evidence)\n")
    if doc["findings"]:
        render(doc["findings"], FINDING_COLUMNS, "table", out)
    else:
        out.write("none\n")
    c = doc["cluster"]
    out.write(
        f"\nLow ratings on the same staff member within {c['days']:g} days: "
        f"{c['low_ratings_nearby']} other(s); same device: {c['same_device']}; "
        f"same network prefix: {c['same_prefix']}\n"
    )
    if c["groups"]:
        render(c["groups"], CLUSTER_COLUMNS, "table", out)
