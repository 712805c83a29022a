"""``integrity period ...`` and ``integrity cases ...``: the month's close and its cases.

Thin: each command parses its options, calls one :class:`MonthClose` or
:class:`CaseService` method as the person signed in (``current_actor``; ``--as`` only
asserts it) and renders the answer. Times are RFC 3339 with the rule set's offset in
CSV and JSON, local in tables; ``due`` is the last local day on which a case is on time.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import click

from followup.cases.model import Case, CaseKind, State
from followup.cases.service import Amendment, CaseService, CloseResult, FigureChange, MonthClose
from integrity.access import require_read
from integrity.calendar import due_day
from integrity.catalogue import Kind
from integrity.cliutil import (
    actor_option,
    current_actor,
    current_reader,
    format_option,
    instance_options,
    pass_service,
)
from integrity.errors import FieldError, InvalidInput
from integrity.render import dump_json, jsonable, render
from integrity.reports.periods import local_time

LIST_COLUMNS = (
    "case_id",
    "kind",
    "subject",
    "hall_id",
    "period",
    "counted",
    "low_scores",
    "low_score_rate",
    "low_rate_lo",
    "low_rate_hi",
    "mark",
    "status",
    "due",
    "overdue",
    "escalated",
    "escalated_to",
    "carried_from",
    "checked_period",
    "checked_rate",
)
DETAIL_FIELDS = (
    *LIST_COLUMNS,
    "score",
    "rank",
    "head_id",
    "supervisor_id",
    "opened_at",
    "due_at",
    "overdue_at",
    "escalated_at",
    "plan",
    "planned_at",
    "planned_by",
    "notes",
    "last_note_at",
    "checked_counted",
    "checked_at",
    "closed_at",
    "closed_by",
    "close_reason",
    "carried_into",
    "version",
)
ESCALATION_COLUMNS = ("case_id", "kind", "subject", "what", "to", "event_id")
HISTORY_COLUMNS = ("event_id", "at", "kind", "actor", "from", "to", "text")
AMENDMENT_COLUMNS = (
    "event_id",
    "at",
    "kind",
    "actor",
    "rating_id",
    "window_id",
    "staff_id",
    "before",
    "after",
    "counted_change",
    "cause",
    "reasons",
)
CHANGE_COLUMNS = (
    "kind",
    "subject",
    "counted_then",
    "counted_now",
    "low_then",
    "low_now",
    "rate_then",
    "rate_now",
)
FIGURE_COLUMNS = (
    "subject",
    "hall_id",
    "rank",
    "ratings",
    "counted",
    "low_scores",
    "score",
    "low_score_rate",
    "low_rate_lo",
    "low_rate_hi",
    "bottom",
)


def _time(at: datetime | None, tz: ZoneInfo, fmt: str) -> str | None:
    if at is None:
        return None
    return local_time(at, tz) if fmt == "table" else at.astimezone(tz).isoformat()


def list_row(c: Case, tz: ZoneInfo, now: datetime) -> dict[str, Any]:
    return {
        "case_id": c.case_id,
        "kind": c.kind.value,
        "subject": c.subject,
        "hall_id": c.hall_id,
        "period": c.period,
        "counted": c.counted,
        "low_scores": c.low_scores,
        "low_score_rate": c.low_score_rate,
        "low_rate_lo": c.low_rate_lo,
        "low_rate_hi": c.low_rate_hi,
        "mark": c.mark,
        "status": c.state.value,
        "due": due_day(c.due_at, tz),
        "overdue": c.overdue(now),
        "escalated": c.escalated_at is not None,
        "escalated_to": c.escalated_to,
        "carried_from": c.carried_from,
        "checked_period": c.checked_period,
        "checked_rate": c.checked_rate,
    }


def _key_values(row: Mapping[str, Any], fields: Sequence[str], out: TextIO) -> None:
    width = max(len(f) for f in fields)
    for f in fields:
        value = row.get(f)
        if value is None or value == [] or value == ():
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, float):
            value = f"{value:.3f}"
        elif isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        out.write(f"{f.ljust(width)}  {value}\n")


def _doc_format(func: Any) -> Any:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(("table", "json")),
        default="table",
        show_default=True,
        help="Output format.",
    )(func)


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


# -- integrity period -------------------------------------------------------------------------


@click.group("period")
def period_group() -> None:
    """The month's close: freeze a month's figures and open its rectification cases.

    `integrity period close 2026-10` writes the period.closed ledger event with the
    month's figures per window and staff member (counted ratings only) and their
    SHA-256, holds any later rating into the month, checks the cases of earlier months
    and opens a case for every window and staff member whose low-score rate is above
    [followup] rectify_low_rate with at least rectify_min_counted counted (integrity
    cases ...). Later changes to the month are amendments (period amendments).
    """


@period_group.command("close")
@instance_options
@pass_service(MonthClose)
@actor_option
@click.argument("period", metavar="YYYY-MM")
@_doc_format
def period_close(svc: MonthClose, actor: str | None, period: str, fmt: str) -> None:
    """Close the month PERIOD (YYYY-MM, in the rule set's time zone) once it is over.

    Freezes its figures (a ledger event), checks every earlier window and staff case
    still active against its subject's rate in this month (resolved at or below the
    mark; unresolved above it, carried into this close's new case; too few counted
    ratings: checked again at the next close), opens a case for every window and staff
    member above the mark with enough counted ratings, and a talk for every window in
    the bottom [followup] talk_bottom_ranks this month and the month before. Closing a
    month twice is refused. Signed in: an admin; nobody signed in: the operator.
    """
    res = svc.close(current_actor(actor), period)
    tz = svc.policy.tz
    now = svc.clock.now()
    if fmt == "json":
        dump_json(_close_doc(res, tz, now), sys.stdout)
        return
    out = sys.stdout
    c = res.closed
    outcomes = res.outcomes()
    kinds = {k: sum(1 for x in res.opened if x.kind is k) for k in CaseKind}
    out.write(
        f"period {c.period} closed by {c.closed_by} (event {c.event_id}); figures "
        f"sha256 {res.figures_sha256}\n"
        f"cases opened: {kinds[CaseKind.WINDOW]} window, {kinds[CaseKind.STAFF]} staff; "
        f"talks: {kinds[CaseKind.TALK]}; earlier cases checked: {outcomes['resolved']} "
        f"resolved, {outcomes['unresolved']} unresolved, {outcomes['too_few']} too few "
        "ratings to judge\n"
    )
    if res.opened:
        render([list_row(x, tz, now) for x in res.opened], LIST_COLUMNS, "table", out)


def _close_doc(res: CloseResult, tz: ZoneInfo, now: datetime) -> dict[str, Any]:
    return {
        "period": res.period,
        "closed_at": res.closed.closed_at.astimezone(tz).isoformat(),
        "closed_by": res.closed.closed_by,
        "event_id": res.closed.event_id,
        "figures_sha256": res.figures_sha256,
        "cases_opened": res.cases_opened,
        "talks_opened": res.talks_opened,
        "checked": res.outcomes(),
        "opened": [list_row(x, tz, now) for x in res.opened],
        "checks": [
            {
                "case_id": ch.case.case_id,
                "outcome": ch.outcome,
                "counted": ch.counted,
                "low_score_rate": ch.low_score_rate,
                "status": ch.case.state.value,
            }
            for ch in res.checked
        ],
    }


def amendment_row(a: Amendment, tz: ZoneInfo, fmt: str) -> dict[str, Any]:
    return {
        "event_id": a.event_id,
        "at": _time(a.at, tz, fmt),
        "kind": a.kind,
        "actor": a.actor,
        "rating_id": a.rating_id,
        "window_id": a.window_id,
        "staff_id": a.staff_id,
        "before": a.before,
        "after": a.after,
        "counted_change": a.change,
        "cause": a.cause,
        "reasons": list(a.reasons),
    }


def change_row(c: FigureChange) -> dict[str, Any]:
    return {
        "kind": c.kind,
        "subject": c.subject,
        "counted_then": c.counted_then,
        "counted_now": c.counted_now,
        "low_then": c.low_then,
        "low_now": c.low_now,
        "rate_then": c.rate_then,
        "rate_now": c.rate_now,
    }


@period_group.command("show")
@instance_options
@pass_service(MonthClose)
@click.argument("period", metavar="YYYY-MM")
@click.option(
    "--by",
    type=click.Choice(("window", "staff")),
    default="window",
    show_default=True,
    help="Which frozen figures to show.",
)
@_doc_format
def period_show(svc: MonthClose, period: str, by: str, fmt: str) -> None:
    """A closed month: who closed it and when, its frozen figures (and whether they
    still hash to the SHA-256 in the event), its cases, and how many amendments
    changed it since. Through the server: roles that may read staff performance."""
    require_read(current_reader(), "staff_performance")
    v = svc.show(period)
    tz = svc.policy.tz
    head = {
        "period": v.closed.period,
        "closed_at": _time(v.closed.closed_at, tz, fmt),
        "closed_by": v.closed.closed_by,
        "event_id": v.closed.event_id,
        "figures_sha256": v.figures_sha256,
        "digest_ok": v.digest_ok,
        "cases": len(v.cases),
        "amendments": len(v.amendments),
        "subjects_changed": len(v.changes),
    }
    rows = list(v.figures.get(by, []) or [])
    if fmt == "json":
        dump_json({**head, "figures": jsonable(dict(v.figures))}, sys.stdout)
        return
    out = sys.stdout
    _key_values(head, tuple(head), out)
    out.write(f"\nfigures frozen at the close, by {by}\n")
    render(rows, FIGURE_COLUMNS if by == "window" else FIGURE_COLUMNS[:-1], "table", out)


@period_group.command("amendments")
@instance_options
@pass_service(MonthClose)
@click.argument("period", metavar="YYYY-MM")
@format_option()
def period_amendments(svc: MonthClose, period: str, fmt: str) -> None:
    """Changes to a closed month since its close: every ledger event that moved one of
    its ratings into or out of the counted set (counted_change +1 / -1: an appeal
    upheld, an audit void, a review clearing a late rating ...), then, per window and
    staff member, the figures frozen at the close against those of now (table and JSON;
    CSV: the events only). Through the server: roles that may read staff performance."""
    require_read(current_reader(), "staff_performance")
    v = svc.show(period)
    tz = svc.policy.tz
    rows = [amendment_row(a, tz, fmt) for a in v.amendments]
    changes = [change_row(c) for c in v.changes]
    if fmt == "json":
        dump_json({"period": v.closed.period, "amendments": rows, "changes": changes}, sys.stdout)
        return
    if fmt == "csv":
        render(rows, AMENDMENT_COLUMNS, "csv", sys.stdout)
        return
    out = sys.stdout
    out.write(f"{len(rows)} amendment(s) to {v.closed.period} since its close\n")
    if rows:
        render(rows, AMENDMENT_COLUMNS, "table", out)
    if changes:
        out.write("\nfigures: frozen at the close (then) and now\n")
        render(changes, CHANGE_COLUMNS, "table", out)


# -- integrity cases --------------------------------------------------------------------------


@click.group("cases")
def cases_group() -> None:
    """Rectification cases opened by the month's close (integrity period close).

    A window or staff member whose low-score rate is above [followup]
    rectify_low_rate with at least rectify_min_counted counted ratings gets a case
    (kind window or staff) with a due date ([followup] case_working_days working
    days). open -> planned (plan) -> in_progress (note) -> resolved / unresolved at the
    next close (the rate in that month against the mark), or closed by hand (close).
    Windows in the bottom ranks two closes running get a talk (kind talk, listed with
    --kind talk). The window's head plans and notes its window's case, the hall
    supervisor any case of the hall, admins all; staff read their own. An active case
    past its due date is marked overdue and escalated to its hall supervisor, once
    (escalate-overdue; integrity serve does it in its background round).
    """


def _parse_due(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            [FieldError("due", f"expected YYYY-MM-DD, got {value!r}")], "plan"
        ) from None


@cases_group.command("list")
@instance_options
@pass_service(CaseService)
@actor_option
@click.option("--period", metavar="YYYY-MM", help="Only cases opened by this month's close.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in State]),
    help="Only cases in this state (repeatable).",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice([k.value for k in CaseKind]),
    help="Only this kind (repeatable; default: window and staff, talks only when asked).",
)
@click.option("--overdue", is_flag=True, help="Only active cases past their due date.")
@format_option()
def cases_list(
    svc: CaseService,
    actor: str | None,
    period: str | None,
    statuses: tuple[str, ...],
    kinds: tuple[str, ...],
    overdue: bool,
    fmt: str,
) -> None:
    """List cases you may read (nobody signed in: every case), by id.

    low_score_rate is the share of the month's counted ratings below the rubric's low
    mark, with its exact 95 % interval (low_rate_lo, low_rate_hi); mark is the rule
    set's rectify_low_rate; due is the last day on time; checked_* the next close's check.
    """
    found = svc.listing(
        current_actor(actor),
        period=period,
        states=tuple(State(s) for s in statuses),
        kinds=tuple(CaseKind(k) for k in kinds),
        overdue=overdue,
    )
    now = svc.clock.now()
    render([list_row(c, svc.tz, now) for c in found], LIST_COLUMNS, fmt, sys.stdout)


@cases_group.command("show")
@instance_options
@pass_service(CaseService)
@actor_option
@click.argument("case_id", type=int)
@_doc_format
def cases_show(svc: CaseService, actor: str | None, case_id: int, fmt: str) -> None:
    """Show CASE_ID: its figures, plan, notes, check and the ledger history."""
    d = svc.show(current_actor(actor), case_id)
    c, tz = d.case, svc.tz
    row = {
        **list_row(c, tz, svc.clock.now()),
        "score": c.score,
        "rank": c.rank,
        "head_id": d.head,
        "supervisor_id": d.supervisor,
        "opened_at": _time(c.opened_at, tz, fmt),
        "due_at": _time(c.due_at, tz, fmt),
        "overdue_at": _time(c.overdue_at, tz, fmt),
        "escalated_at": _time(c.escalated_at, tz, fmt),
        "plan": c.plan,
        "planned_at": _time(c.planned_at, tz, fmt),
        "planned_by": c.planned_by,
        "notes": c.notes,
        "last_note_at": _time(c.last_note_at, tz, fmt),
        "checked_counted": c.checked_counted,
        "checked_at": _time(c.checked_at, tz, fmt),
        "closed_at": _time(c.closed_at, tz, fmt),
        "closed_by": c.closed_by,
        "close_reason": c.close_reason,
        "carried_into": list(d.carried_into),
        "version": c.version,
    }
    history = [
        {
            "event_id": e.event_id,
            "at": _time(e.at, tz, fmt),
            "kind": str(e.kind),
            "actor": e.actor,
            "from": e.evidence.get("from"),
            "to": e.evidence.get("to"),
            "text": e.evidence.get("plan")
            or e.evidence.get("text")
            or e.evidence.get("reason")
            or e.evidence.get("outcome")
            or _deadline_text(str(e.kind), e.evidence),
            **({"evidence": jsonable(dict(e.evidence))} if fmt == "json" else {}),
        }
        for e in d.history
    ]
    if fmt == "json":
        dump_json({**row, "allowed_next": list(d.allowed_next), "history": history}, sys.stdout)
        return
    out = sys.stdout
    _key_values(row, DETAIL_FIELDS, out)
    width = max(len(f) for f in DETAIL_FIELDS)
    out.write(f"{'next'.ljust(width)}  {', '.join(d.allowed_next) or 'nothing (final)'}\n")
    out.write("\nhistory\n")
    render(history, HISTORY_COLUMNS, "table", out)


def _deadline_text(kind: str, evidence: Mapping[str, Any]) -> str | None:
    """What a due date marked or an escalation says in a case's history."""
    if kind == str(Kind.RECTIFICATION_OVERDUE):
        return f"past its due date ({evidence.get('due_at')})"
    if kind == str(Kind.RECTIFICATION_ESCALATED):
        return f"escalated to {evidence.get('escalated_to') or 'the admins'}"
    return None


def _print_case(svc: CaseService, c: Case, fmt: str, message: str) -> None:
    if fmt == "json":
        dump_json({**list_row(c, svc.tz, svc.clock.now()), "message": message}, sys.stdout)
        return
    click.echo(message)


@cases_group.command("plan")
@instance_options
@pass_service(CaseService)
@actor_option
@click.argument("case_id", type=int)
@click.option("--text", required=True, help="The rectification plan.")
@click.option("--due", metavar="YYYY-MM-DD", help="A new due day (default: keep the due date).")
@_doc_format
def cases_plan(
    svc: CaseService, actor: str | None, case_id: int, text: str, due: str | None, fmt: str
) -> None:
    """Write (or revise) CASE_ID's plan and, with --due, its due day."""
    c = svc.plan(current_actor(actor), case_id, text, _parse_due(due))
    _print_case(
        svc, c, fmt, f"case {c.case_id}: planned; due by the end of {due_day(c.due_at, svc.tz)}"
    )


@cases_group.command("note")
@instance_options
@pass_service(CaseService)
@actor_option
@click.argument("case_id", type=int)
@click.option("--text", required=True, help="What was done since the last note.")
@_doc_format
def cases_note(svc: CaseService, actor: str | None, case_id: int, text: str, fmt: str) -> None:
    """Add a progress note to CASE_ID."""
    c = svc.note(current_actor(actor), case_id, text)
    _print_case(svc, c, fmt, f"case {c.case_id}: note {c.notes} added ({c.state.value})")


@cases_group.command("close")
@instance_options
@pass_service(CaseService)
@actor_option
@click.argument("case_id", type=int)
@click.option(
    "--reason", required=True, help="Why it is closed (a talk held, a window dissolved ...)."
)
@_doc_format
def cases_close(svc: CaseService, actor: str | None, case_id: int, reason: str, fmt: str) -> None:
    """Close CASE_ID by hand (the hall supervisor or an admin), with the reason."""
    c = svc.close(current_actor(actor), case_id, reason)
    _print_case(svc, c, fmt, f"case {c.case_id}: closed")


@cases_group.command("escalate-overdue")
@instance_options
@pass_service(CaseService)
@actor_option
@format_option()
def cases_escalate_overdue(svc: CaseService, actor: str | None, fmt: str) -> None:
    """Mark every active case past its due date overdue and escalate it to its hall
    supervisor.

    One rectification.overdue event per case (its due date and the state it was in),
    one rectification.escalated event per case (to the admins when its hall has no
    supervisor): running it again changes nothing. `integrity serve` does this in its
    background round. Nobody signed in: the operator; signed in: an admin or a
    supervisor.
    """
    run = svc.escalate_overdue(current_actor(actor))
    rows = [
        {**{k: o[k] for k in ("case_id", "kind", "subject", "event_id")},
         "what": "overdue", "to": None}
        for o in run.overdue
    ]  # fmt: skip
    rows += [
        {**{k: e[k] for k in ("case_id", "kind", "subject", "event_id")},
         "what": "escalated", "to": e["escalated_to"] or "(admins)"}
        for e in run.escalated
    ]  # fmt: skip
    rows.sort(key=lambda r: (r["case_id"], r["event_id"]))
    if fmt == "table":
        click.echo(f"{len(run.overdue)} case(s) marked overdue; {len(run.escalated)} escalated")
        if rows:
            render(rows, ESCALATION_COLUMNS, "table", sys.stdout)
        return
    render(rows, ESCALATION_COLUMNS, fmt, sys.stdout)
