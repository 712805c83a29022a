"""``integrity alerts ...``: low-score alerts from the command line.

Thin: each command parses its options, calls one
:class:`~followup.alerts.service.AlertService` method as the person signed in
(``current_actor``; ``--as`` only asserts it) and renders the answer. Listing with
nobody signed in is the operator's (direct database access): every alert. Times are
RFC 3339 with the rule set's offset in CSV and JSON, local with the offset in tables.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import click

from followup.acting import EscalationRun
from followup.alerts.model import Alert, Finding, State
from followup.alerts.service import Addressed, AlertDetail, AlertService
from integrity.calendar import due_day
from integrity.cliutil import (
    actor_option,
    current_actor,
    format_option,
    instance_options,
    pass_service,
)
from integrity.render import dump_json, jsonable, render
from integrity.reports.periods import local_time

LIST_COLUMNS = (
    "alert_id",
    "rating_id",
    "window_id",
    "staff_id",
    "head_id",
    "opened_at",
    "respond_by",
    "reply_by",
    "status",
    "responded_at",
    "overdue",
    "escalated_to",
)
DETAIL_FIELDS = (
    "alert_id",
    "rating_id",
    "status",
    "window_id",
    "hall_id",
    "staff_id",
    "head_id",
    "supervisor_id",
    "via",
    "opened_at",
    "respond_by",
    "reply_by",
    "reply_due_day",
    "overdue",
    "missed",
    "responded_at",
    "responded_by",
    "verified_at",
    "callback",
    "finding",
    "appeal_id",
    "note",
    "rectified_at",
    "action",
    "replied_at",
    "reply",
    "closed_at",
    "voided_at",
    "void_event_id",
    "escalated_at",
    "escalated_to",
    "version",
)
HISTORY_COLUMNS = ("event_id", "at", "kind", "actor", "from", "to")
ESCALATION_COLUMNS = ("alert_id", "rating_id", "window_id", "what", "to", "event_id")


def _time(at: datetime | None, tz: ZoneInfo, fmt: str) -> str | None:
    if at is None:
        return None
    return local_time(at, tz) if fmt == "table" else at.astimezone(tz).isoformat()


def list_row(ad: Addressed, tz: ZoneInfo, fmt: str) -> dict[str, Any]:
    a = ad.alert
    return {
        "alert_id": a.alert_id,
        "rating_id": a.rating_id,
        "window_id": a.window_id,
        "staff_id": a.staff_id,
        "head_id": ad.head,
        "opened_at": _time(a.opened_at, tz, fmt),
        "respond_by": _time(a.respond_by, tz, fmt),
        "reply_by": _time(a.reply_by, tz, fmt),
        "status": a.state.value,
        "responded_at": _time(a.responded_at, tz, fmt),
        "overdue": ad.overdue,
        "escalated_to": a.escalated_to,
    }


def detail_row(ad: Addressed, tz: ZoneInfo, fmt: str) -> dict[str, Any]:
    a = ad.alert
    t = lambda at: _time(at, tz, fmt)  # noqa: E731
    return {
        **list_row(ad, tz, fmt),
        "hall_id": ad.hall_id,
        "supervisor_id": ad.supervisor,
        "via": a.via,
        "reply_due_day": due_day(a.reply_by, tz),
        "missed": [d.value for d in ad.missed],
        "responded_by": a.responded_by,
        "verified_at": t(a.verified_at),
        "callback": a.callback.value if a.callback else None,
        "finding": a.finding.value if a.finding else None,
        "appeal_id": a.appeal_id,
        "note": a.note,
        "rectified_at": t(a.rectified_at),
        "action": a.action,
        "replied_at": t(a.replied_at),
        "reply": a.reply,
        "closed_at": t(a.closed_at),
        "voided_at": t(a.voided_at),
        "void_event_id": a.void_event_id,
        "escalated_at": t(a.escalated_at),
        "version": a.version,
    }


def _key_values(row: Mapping[str, Any], fields: Sequence[str], out: TextIO) -> None:
    width = max(len(f) for f in fields)
    for f in fields:
        value = row.get(f)
        if value is None or value == []:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        out.write(f"{f.ljust(width)}  {value}\n")


def _print_alert(svc: AlertService, a: Alert, fmt: str, message: str) -> None:
    """An alert after an action: JSON (its fields and the message) or the message."""
    out = sys.stdout
    if fmt == "json":
        dump_json({**detail_row(svc.addressed(a), svc.tz, fmt), "message": message}, out)
        return
    out.write(message + "\n")


def _doc_format(func: Any) -> Any:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(("table", "json")),
        default="table",
        show_default=True,
        help="Output format.",
    )(func)


@click.group("alerts")
def alerts_group() -> None:
    """Low-score alerts: every counted low score goes to its window's head, who answers
    within 24 hours, verifies, rectifies and replies within 5 working days.

    An alert opens when a low score starts to count (composite below the rubric's mark,
    or a dimension at most [followup] low_dimension_at_most) and is void when the rating
    stops counting. open -> acknowledged (ack) -> verified -> rectified ->
    feedback_given (reply: the text the rater sees on their receipt) -> closed. A
    missed deadline escalates the alert to the hall supervisor. The window's head acts
    on its alerts, the hall supervisor on escalated ones, admins on all; staff read
    their own. Every step is a ledger event naming you (the person your token or OS
    account signs in; --as only asserts it).
    """


@alerts_group.command("list")
@instance_options
@pass_service(AlertService)
@actor_option
@click.option(
    "--mine",
    is_flag=True,
    help="Only alerts addressed to you (you head the window, or it was escalated to you) "
    "or about you (the staff member named).",
)
@click.option("--overdue", is_flag=True, help="Only alerts waiting past a deadline.")
@click.option("--window", "window_id", metavar="WINDOW", help="Only this window's alerts.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in State]),
    help="Only alerts in this state (repeatable).",
)
@format_option()
def alerts_list(
    svc: AlertService,
    actor: str | None,
    mine: bool,
    overdue: bool,
    window_id: str | None,
    statuses: tuple[str, ...],
    fmt: str,
) -> None:
    """List alerts, oldest first: those you may read (nobody signed in: every alert).

    overdue is true while a step waits past its deadline: the answer 24 hours after
    opening, the reply by the end of the 5th working day (respond_by, reply_by).
    """
    found = svc.listing(
        current_actor(actor),
        mine=mine,
        overdue=overdue,
        window_id=window_id,
        states=tuple(State(s) for s in statuses),
    )
    render([list_row(ad, svc.tz, fmt) for ad in found], LIST_COLUMNS, fmt, sys.stdout)


@alerts_group.command("show")
@instance_options
@pass_service(AlertService)
@actor_option
@click.argument("alert_id", type=int)
@_doc_format
def alerts_show(svc: AlertService, actor: str | None, alert_id: int, fmt: str) -> None:
    """Show ALERT_ID: its state, deadlines, answers, the rating and the ledger history."""
    d = svc.show(current_actor(actor), alert_id)
    row = detail_row(d.addressed, svc.tz, fmt)
    rating = _rating(d)
    history = [_history_row(e, svc.tz, fmt) for e in d.history]
    if fmt == "json":
        dump_json(
            {
                **row,
                "allowed_next": list(d.allowed_next),
                "rating": rating,
                "history": history,
            },
            sys.stdout,
        )
        return
    out = sys.stdout
    _key_values(row, DETAIL_FIELDS, out)
    out.write(f"{'next'.ljust(13)}  {', '.join(d.allowed_next) or 'nothing (final)'}\n")
    if rating:
        out.write("\nrating\n")
        _key_values(rating, tuple(rating), out)
    out.write("\nhistory\n")
    render(history, HISTORY_COLUMNS, "table", out)


def _rating(d: AlertDetail) -> dict[str, Any] | None:
    r = d.rating
    if r is None:
        return None
    out = {
        "rating_id": r.rating_id,
        "status": r.status.value,
        "composite": round(r.composite, 6),
        "scores": jsonable(dict(r.scores)),
        "service_type": r.service_type,
        "channel": r.channel,
        "submitted_at": r.submitted_at.isoformat(),
    }
    if d.show_comment:
        out["comment"] = r.comment
    return out


def _history_row(e: Any, tz: ZoneInfo, fmt: str) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "at": _time(e.at, tz, fmt),
        "kind": str(e.kind),
        "actor": e.actor,
        "from": e.evidence.get("from"),
        "to": e.evidence.get("to"),
        **({"evidence": jsonable(dict(e.evidence))} if fmt == "json" else {}),
    }


@alerts_group.command("ack")
@instance_options
@pass_service(AlertService)
@actor_option
@click.argument("alert_id", type=int)
@_doc_format
def alerts_ack(svc: AlertService, actor: str | None, alert_id: int, fmt: str) -> None:
    """Answer ALERT_ID (the window's head; due within 24 hours of opening)."""
    a = svc.acknowledge(current_actor(actor), alert_id)
    assert a.responded_at is not None
    on_time = "on time" if a.responded_at < a.respond_by else "late"
    _print_alert(
        svc,
        a,
        fmt,
        f"alert {a.alert_id}: acknowledged ({on_time}); verify, rectify and reply by the "
        f"end of {due_day(a.reply_by, svc.tz)}",
    )


@alerts_group.command("verify")
@instance_options
@pass_service(AlertService)
@actor_option
@click.argument("alert_id", type=int)
@click.option(
    "--reached/--not-reachable",
    "reached",
    default=None,
    help="Whether the call-back reached the rater. Required.",
)
@click.option(
    "--finding",
    required=True,
    type=click.Choice([f.value for f in Finding]),
    help="What happened.",
)
@click.option(
    "--appeal",
    "appeal_id",
    type=int,
    metavar="APPEAL_ID",
    help="With --finding malicious: the staff member's appeal about this rating.",
)
@click.option("--note", required=True, help="What the call-back and the check found.")
@_doc_format
def alerts_verify(
    svc: AlertService,
    actor: str | None,
    alert_id: int,
    reached: bool | None,
    finding: str,
    appeal_id: int | None,
    note: str,
    fmt: str,
) -> None:
    """Record the call-back to the rater and what verification of ALERT_ID found."""
    if reached is None:
        raise click.UsageError("say --reached or --not-reachable")
    a = svc.verify(
        current_actor(actor),
        alert_id,
        reached=reached,
        finding=finding,
        note=note,
        appeal_id=appeal_id,
    )
    _print_alert(svc, a, fmt, f"alert {a.alert_id}: verified ({finding}); rectify next")


@alerts_group.command("rectify")
@instance_options
@pass_service(AlertService)
@actor_option
@click.argument("alert_id", type=int)
@click.option("--action", "action", required=True, help="What was done about it.")
@_doc_format
def alerts_rectify(
    svc: AlertService, actor: str | None, alert_id: int, action: str, fmt: str
) -> None:
    """Record what was done about ALERT_ID's low score."""
    a = svc.rectify(current_actor(actor), alert_id, action)
    _print_alert(svc, a, fmt, f"alert {a.alert_id}: rectified; write the reply to the rater next")


@alerts_group.command("reply")
@instance_options
@pass_service(AlertService)
@actor_option
@click.argument("alert_id", type=int)
@click.option(
    "--text",
    required=True,
    help="The reply the rater sees on their receipt, as written (no staff names, no "
    "ticket numbers).",
)
@_doc_format
def alerts_reply(svc: AlertService, actor: str | None, alert_id: int, text: str, fmt: str) -> None:
    """Write the reply to the rater of ALERT_ID (due by the end of the 5th working day)."""
    a = svc.reply(current_actor(actor), alert_id, text)
    _print_alert(
        svc, a, fmt, f"alert {a.alert_id}: reply written; the rater sees it on their receipt"
    )


@alerts_group.command("close")
@instance_options
@pass_service(AlertService)
@actor_option
@click.argument("alert_id", type=int)
@_doc_format
def alerts_close(svc: AlertService, actor: str | None, alert_id: int, fmt: str) -> None:
    """Close ALERT_ID after its reply."""
    a = svc.close(current_actor(actor), alert_id)
    _print_alert(svc, a, fmt, f"alert {a.alert_id}: closed")


@alerts_group.command("escalate-overdue")
@instance_options
@pass_service(AlertService)
@actor_option
@format_option()
def alerts_escalate_overdue(svc: AlertService, actor: str | None, fmt: str) -> None:
    """Mark every alert past a deadline overdue and escalate it to its hall supervisor.

    One alert.overdue event per alert and missed deadline (the 24-hour answer, the
    reply), one alert.escalated event per alert (to the admins when its hall has no
    supervisor): running it again changes nothing until another deadline passes.
    `integrity serve` does this in its background round. Nobody signed in: the
    operator; signed in: an admin or a supervisor.
    """
    run = svc.escalate_overdue(current_actor(actor))
    rows = _escalation_rows(run)
    if fmt == "table":
        click.echo(
            f"{len(run.overdue)} missed deadline(s) marked; {len(run.escalated)} alert(s) escalated"
        )
        if rows:
            render(rows, ESCALATION_COLUMNS, "table", sys.stdout)
        return
    render(rows, ESCALATION_COLUMNS, fmt, sys.stdout)


def _escalation_rows(run: EscalationRun) -> list[dict[str, Any]]:
    rows = [
        {**{k: o[k] for k in ("alert_id", "rating_id", "window_id", "event_id")},
         "what": f"overdue:{o['deadline']}", "to": None}
        for o in run.overdue
    ]  # fmt: skip
    rows += [
        {**{k: e[k] for k in ("alert_id", "rating_id", "window_id", "event_id")},
         "what": "escalated", "to": e["escalated_to"] or "(admins)"}
        for e in run.escalated
    ]  # fmt: skip
    return sorted(rows, key=lambda r: (r["alert_id"], r["event_id"]))
