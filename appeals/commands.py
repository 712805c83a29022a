"""``integrity appeal ...`` and ``integrity staff ...`` (issue: staff appeal workflow).

Thin: each command parses, calls one :class:`~appeals.service.AppealService` (or
:class:`~appeals.staff.StaffRegistry`) method as the person given by ``--as`` /
``INTEGRITY_ACTOR``, and renders. Writes are sealed into the Merkle log at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from appeals.evidence import EvidenceStore
from appeals.model import Appeal, State, allowed_commands
from appeals.policy import GROUND_CODES, GROUNDS, NOT_GROUNDS, AppealPolicy
from appeals.repository import AppealFilter
from appeals.service import AppealService
from appeals.stats import (
    GROUP_KEYS,
    LIST_COLUMNS,
    STAT_COLUMNS,
    appeal_row,
    local,
    summarise,
    summarise_by,
)
from integrity.app import App
from integrity.cliutil import (
    actor_option,
    current_actor,
    format_option,
    handled,
    instance_options,
    opened,
)
from integrity.errors import FieldError, InvalidInput
from integrity.model import Event
from integrity.people import ROLES, People
from integrity.render import render

F = TypeVar("F", bound=Callable[..., Any])

DOC_FORMATS = ("table", "json")


def doc_format_option(func: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(DOC_FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(func)


def evidence_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--evidence",
        "evidence",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=help_text,
    )


def build_service(app: App) -> AppealService:
    return app.get(AppealService)


@contextmanager
def appeals_app(
    home: str | None, db_url: str | None, redis_url: str | None
) -> Iterator[tuple[App, AppealService]]:
    with opened(home, db_url, redis_url) as app:
        yield app, build_service(app)


def _out() -> Any:
    return sys.stdout


def _emit_appeal(svc: AppealService, appeal: Appeal, fmt: str, message: str) -> None:
    row = appeal_row(appeal, svc.clock.now(), svc.tz)
    if fmt == "json":
        click.echo(json.dumps({**_jsonable(row), "message": message}, indent=2, ensure_ascii=False))
        return
    click.echo(message)
    _kv(row, _out())


# Machine-only fields: JSON carries them, tables show their readable twins (filed, due).
_TABLE_HIDDEN = frozenset({"filed_at", "due_at", "decided_at"})


def _kv(doc: Mapping[str, Any], out: Any, fields: Sequence[str] | None = None) -> None:
    """A one-record table of field/value rows; empty and machine-only fields left out."""
    keys = fields or [
        k for k in doc if k not in _TABLE_HIDDEN and doc[k] not in (None, "", [], {}, ())
    ]
    render([{"field": k, "value": doc[k]} for k in keys], ["field", "value"], "table", out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return value


def _seal(app: App) -> None:
    app.log.seal(app.clock.now())


def _state_word(a: Appeal) -> str:
    return a.state.value.replace("_", " ")


# -- appeal -----------------------------------------------------------------------------


@click.group("appeal")
def appeal_group() -> None:
    """Staff appeals against malicious low scores, and their review.

    A staff member files about a low score on themselves; reviewers from another unit
    decide with written reasons. Upholding needs two independent reviewers (rule set
    [appeals] uphold_reviewers) and voids the rating; a rejection leaves it counting.
    Every action is a ledger event. Act as a registered person with --as PERSON_ID
    (or INTEGRITY_ACTOR).
    """


@appeal_group.command("file")
@instance_options
@actor_option
@click.argument("rating_id", type=int)
@click.option(
    "--ground",
    required=True,
    type=click.Choice(GROUND_CODES),
    help="Why the rating should not count: "
    + "; ".join(f"{k}: {v}" for k, v in GROUNDS.items())
    + ". ("
    + "; ".join(f"{k}: {v}" for k, v in NOT_GROUNDS.items())
    + ": such a filing is recorded as ineligible.)",
)
@click.option("--reason", required=True, help="What happened, in your words.")
@evidence_option("A file supporting the appeal (repeatable); stored by SHA-256.")
@doc_format_option
@handled
def appeal_file(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    actor: str | None,
    rating_id: int,
    ground: str,
    reason: str,
    evidence: tuple[Path, ...],
    fmt: str,
) -> None:
    """Appeal RATING_ID, a low score about yourself.

    Admitted only for your own low score (composite below the mark, or a dimension at
    most 2), within the filing window (default 7 days), once per rating, within your
    monthly quota and on a listed ground. A filing that is not admitted is still
    recorded, as ineligible, with every reason.
    """
    with appeals_app(home, db_url, redis_url) as (app, svc):
        res = svc.file(current_actor(actor), rating_id, ground, reason, evidence)
        _seal(app)
    a = res.appeal
    if res.admitted:
        msg = f"appeal {a.appeal_id} filed about rating {a.rating_id}; a decision is due by {appeal_row(a, svc.clock.now(), svc.tz)['due']}"
    else:
        why = "; ".join(f"{p.code}: {p.message}" for p in res.ineligible)
        msg = f"appeal {a.appeal_id} recorded as ineligible: {why}"
    if fmt == "json":
        row = appeal_row(a, svc.clock.now(), svc.tz)
        row["ineligible"] = [{"code": p.code, "message": p.message} for p in res.ineligible]
        click.echo(json.dumps({**_jsonable(row), "message": msg}, indent=2, ensure_ascii=False))
        return
    click.echo(msg)
    _kv(appeal_row(a, svc.clock.now(), svc.tz), _out())


@appeal_group.command("assign")
@instance_options
@actor_option
@click.argument("appeal_id", type=int)
@click.option(
    "--reviewer",
    metavar="PERSON_ID",
    help="Who reviews (admins only; default: yourself, if you are a reviewer).",
)
@doc_format_option
@handled
def appeal_assign(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    actor: str | None,
    appeal_id: int,
    reviewer: str | None,
    fmt: str,
) -> None:
    """Assign a reviewer to APPEAL_ID (not the appellant, not from the appellant's unit)."""
    with appeals_app(home, db_url, redis_url) as (app, svc):
        a = svc.assign(current_actor(actor), appeal_id, reviewer)
        _seal(app)
    _emit_appeal(svc, a, fmt, f"appeal {a.appeal_id}: {', '.join(a.reviewers)} reviewing")


@appeal_group.command("request-info")
@instance_options
@actor_option
@click.argument("appeal_id", type=int)
@click.option("--message", required=True, help="What the appellant should provide.")
@doc_format_option
@handled
def appeal_request_info(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    actor: str | None,
    appeal_id: int,
    message: str,
    fmt: str,
) -> None:
    """Ask the appellant of APPEAL_ID for more information (assigned reviewers)."""
    with appeals_app(home, db_url, redis_url) as (app, svc):
        a = svc.request_info(current_actor(actor), appeal_id, message)
        _seal(app)
    _emit_appeal(svc, a, fmt, f"appeal {a.appeal_id}: waiting for {a.appellant_id}")


@appeal_group.command("respond")
@instance_options
@actor_option
@click.argument("appeal_id", type=int)
@click.option("--message", required=True, help="Your answer to the reviewer.")
@evidence_option("A further file (repeatable).")
@doc_format_option
@handled
def appeal_respond(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    actor: str | None,
    appeal_id: int,
    message: str,
    evidence: tuple[Path, ...],
    fmt: str,
) -> None:
    """Answer a request for information on your APPEAL_ID."""
    with appeals_app(home, db_url, redis_url) as (app, svc):
        a = svc.respond(current_actor(actor), appeal_id, message, evidence)
        _seal(app)
    _emit_appeal(svc, a, fmt, f"appeal {a.appeal_id}: back under review")


@appeal_group.command("decide")
@instance_options
@actor_option
@click.argument("appeal_id", type=int)
@click.option(
    "--uphold/--reject",
    "uphold",
    default=None,
    help="Uphold (the rating is voided once enough reviewers agree) or reject (it stands). Required.",
)
@click.option("--reason", required=True, help="The written reason for the decision.")
@click.option(
    "--used-automated-evidence/--no-automated-evidence",
    "used_automated",
    default=None,
    help="Whether detector flags or risk scores informed the decision. Required.",
)
@doc_format_option
@handled
def appeal_decide(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    actor: str | None,
    appeal_id: int,
    uphold: bool | None,
    reason: str,
    used_automated: bool | None,
    fmt: str,
) -> None:
    """Decide APPEAL_ID as an assigned reviewer.

    Any rejection decides. An uphold is a vote until the configured number of distinct
    reviewers (default 2) have upheld; the last vote voids the rating on the ledger.
    """
    if uphold is None:
        raise click.UsageError("say --uphold or --reject")
    if used_automated is None:
        raise click.UsageError("say --used-automated-evidence or --no-automated-evidence")
    with appeals_app(home, db_url, redis_url) as (app, svc):
        a = svc.decide(
            current_actor(actor),
            appeal_id,
            uphold=uphold,
            reason=reason,
            used_automated_evidence=used_automated,
        )
        _seal(app)
    if a.state is State.UPHELD:
        msg = f"appeal {a.appeal_id} upheld: rating {a.rating_id} is voided"
    elif a.state is State.REJECTED:
        msg = f"appeal {a.appeal_id} rejected: rating {a.rating_id} stands"
    else:
        msg = (
            f"appeal {a.appeal_id}: uphold vote {len(a.uphold_voters)} of "
            f"{svc.policy.uphold_reviewers} recorded; another reviewer must agree"
        )
    _emit_appeal(svc, a, fmt, msg)


@appeal_group.command("withdraw")
@instance_options
@actor_option
@click.argument("appeal_id", type=int)
@click.option("--reason", default="", help="Why (optional).")
@doc_format_option
@handled
def appeal_withdraw(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    actor: str | None,
    appeal_id: int,
    reason: str,
    fmt: str,
) -> None:
    """Withdraw your APPEAL_ID."""
    with appeals_app(home, db_url, redis_url) as (app, svc):
        a = svc.withdraw(current_actor(actor), appeal_id, reason)
        _seal(app)
    _emit_appeal(svc, a, fmt, f"appeal {a.appeal_id} withdrawn")


@appeal_group.command("escalate")
@instance_options
@actor_option
@click.argument("appeal_id", type=int)
@click.option("--reason", required=True, help="Why supervisors should look at it.")
@doc_format_option
@handled
def appeal_escalate(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    actor: str | None,
    appeal_id: int,
    reason: str,
    fmt: str,
) -> None:
    """Escalate APPEAL_ID to supervisors (admins, its reviewers, or its appellant once
    overdue). Escalation never decides."""
    with appeals_app(home, db_url, redis_url) as (app, svc):
        a = svc.escalate(current_actor(actor), appeal_id, reason)
        _seal(app)
    _emit_appeal(svc, a, fmt, f"appeal {a.appeal_id} escalated")


@appeal_group.command("escalate-overdue")
@instance_options
@actor_option
@doc_format_option
@handled
def appeal_escalate_overdue(
    home: str | None, db_url: str | None, redis_url: str | None, actor: str | None, fmt: str
) -> None:
    """Escalate every open appeal whose decision deadline has passed (run it daily).

    A missed deadline escalates; it never upholds or rejects by itself.
    """
    with appeals_app(home, db_url, redis_url) as (app, svc):
        run = svc.escalate_overdue(current_actor(actor))
        _seal(app)
        now = svc.clock.now()
    rows = [appeal_row(a, now, svc.tz) for a in run.escalated]
    if fmt == "json":
        doc = {
            "escalated": _jsonable(rows),
            "skipped": [{"appeal_id": i, "why": w} for i, w in run.skipped],
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    click.echo(f"{len(rows)} overdue appeal(s) escalated")
    if rows:
        render(rows, LIST_COLUMNS, "table", _out())
    for i, why in run.skipped:
        click.echo(f"skipped appeal {i}: {why}", err=True)


@appeal_group.command("reopen")
@instance_options
@actor_option
@click.argument("appeal_id", type=int)
@click.option("--reason", required=True, help="What the new evidence shows.")
@evidence_option("New evidence (at least one file not attached before; repeatable).")
@doc_format_option
@handled
def appeal_reopen(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    actor: str | None,
    appeal_id: int,
    reason: str,
    evidence: tuple[Path, ...],
    fmt: str,
) -> None:
    """Reopen a closed APPEAL_ID with new evidence: a new review round and deadline.

    The appellant may reopen within the reopen window and up to the reopen limit; an
    admin may reopen any time, and only an admin may reopen an ineligible filing. The
    rating keeps its status until the new round is decided.
    """
    if not evidence:
        raise click.UsageError("reopening needs new evidence: --evidence FILE")
    with appeals_app(home, db_url, redis_url) as (app, svc):
        a = svc.reopen(current_actor(actor), appeal_id, reason, evidence)
        _seal(app)
    _emit_appeal(svc, a, fmt, f"appeal {a.appeal_id} reopened (round {a.round})")


def _period_bounds(
    period: str | None, svc: AppealService
) -> tuple[datetime | None, datetime | None]:
    if not period:
        return None, None
    from integrity.reports import Period

    p = Period.month(period, svc.tz)
    return p.start, p.end


def _parse_at(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            [FieldError("at", f"expected an ISO date or date-time, got {text!r}")], what="option"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def filter_options(func: F) -> F:
    for opt in reversed(
        [
            click.option(
                "--state",
                "states",
                multiple=True,
                type=click.Choice([s.value for s in State]),
                help="Only appeals in this state (repeatable).",
            ),
            click.option("--person", metavar="PERSON_ID", help="Only this appellant's appeals."),
            click.option("--unit", help="Only appeals by staff of this unit."),
            click.option(
                "--reviewer", metavar="PERSON_ID", help="Only appeals this person reviews."
            ),
            click.option("--rating", "rating_id", type=int, help="Only appeals about this rating."),
            click.option(
                "--period",
                metavar="YYYY-MM",
                help="Only appeals filed in this month (rule set's time zone).",
            ),
        ]
    ):
        func = opt(func)
    return func


def _filter(
    svc: AppealService,
    states: Sequence[str],
    person: str | None,
    unit: str | None,
    reviewer: str | None,
    rating_id: int | None,
    period: str | None,
    overdue_at: datetime | None = None,
    limit: int | None = None,
) -> AppealFilter:
    start, end = _period_bounds(period, svc)
    return AppealFilter(
        states=tuple(State(s) for s in states),
        appellant_id=person,
        unit=unit,
        reviewer_id=reviewer,
        rating_id=rating_id,
        filed_from=start,
        filed_to=end,
        overdue_at=overdue_at,
        limit=limit,
    )


@appeal_group.command("list")
@instance_options
@actor_option
@filter_options
@click.option("--overdue", is_flag=True, help="Only open appeals past their decision deadline.")
@click.option(
    "--at",
    "at_text",
    metavar="DATETIME",
    help="Judge overdue as of this ISO time instead of now (e.g. to plan the week).",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many appeals.")
@format_option()
@handled
def appeal_list(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    actor: str | None,
    states: tuple[str, ...],
    person: str | None,
    unit: str | None,
    reviewer: str | None,
    rating_id: int | None,
    period: str | None,
    overdue: bool,
    at_text: str | None,
    limit: int | None,
    fmt: str,
) -> None:
    """List appeals, oldest first. Staff without a reviewer, admin or auditor role see
    only their own."""
    with appeals_app(home, db_url, redis_url) as (_app, svc):
        now = _parse_at(at_text) or svc.clock.now()
        f = _filter(
            svc, states, person, unit, reviewer, rating_id, period, now if overdue else None, limit
        )
        rows = [appeal_row(a, now, svc.tz) for a in svc.find(current_actor(actor), f)]
    if fmt == "json":
        render(rows, list(rows[0]) if rows else LIST_COLUMNS, "json", _out())
    else:
        render(rows, LIST_COLUMNS, fmt, _out())


def _event_row(e: Event, svc: AppealService) -> dict[str, Any]:
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
        "at": local(e.at, svc.tz),
        "kind": e.kind,
        "actor": e.actor,
        "from": ev.get("from"),
        "to": ev.get("to") or (e.status.value if e.status else None),
        "note": note,
    }


@appeal_group.command("show")
@instance_options
@actor_option
@click.argument("appeal_id", type=int)
@doc_format_option
@handled
def appeal_show(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    actor: str | None,
    appeal_id: int,
    fmt: str,
) -> None:
    """Show APPEAL_ID: state, evidence, votes, its history on the ledger and, for
    reviewers, the rating's context (its events, detector flags, and other low ratings
    on the same staff member nearby from the same device or network prefix)."""
    who = current_actor(actor)
    with appeals_app(home, db_url, redis_url) as (_app, svc):
        a = svc.get(who, appeal_id)
        now = svc.clock.now()
        reader = svc.require_any(who, ("reviewer", "admin", "auditor", "staff"))
        reviewer_view = any(reader.has(r) for r in ("reviewer", "admin", "auditor"))
        history = [_event_row(e, svc) for e in svc.history(a)]
        files = svc.evidence_files(a)
        votes = [
            {
                "reviewer": v.reviewer_id,
                "vote": v.vote,
                "used_automated_evidence": v.used_automated_evidence,
                "at": local(v.at, svc.tz),
                "reason": v.reason,
            }
            for v in a.votes
        ]
        ctx = svc.context(a) if reviewer_view else None
    doc: dict[str, Any] = {
        "appeal": appeal_row(a, now, svc.tz),
        "reason": a.reason,
        "evidence": files,
        "votes": votes,
        "history": history,
        "allowed_next": _allowed(a),
    }
    if ctx is not None:
        r = ctx["rating"]
        doc["rating"] = {
            k: r.get(k)
            for k in (
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
                "current_reasons",
                "risk",
                "comment",
            )
        }
        doc["rating_events"] = [_event_row(e, svc) for e in ctx["events"]]
        doc["flags"] = [
            {
                "event_id": e.event_id,
                "at": local(e.at, svc.tz),
                "kind": e.kind,
                "actor": e.actor,
                "reasons": list(e.reasons),
                "evidence": dict(e.evidence),
            }
            for e in ctx["flags"]
        ]
        doc["cluster"] = {"days": svc.policy.cluster_days, **ctx["cluster"]}
    if fmt == "json":
        click.echo(json.dumps(_jsonable(doc), indent=2, ensure_ascii=False))
        return
    out = _out()
    click.echo(f"Appeal {a.appeal_id}: {_state_word(a)}")
    _kv({**doc["appeal"], "reason": a.reason}, out)
    click.echo(f"\nAllowed next: {', '.join(doc['allowed_next']) or 'nothing (final)'}")
    if files:
        click.echo("\nEvidence")
        render(files, ["sha256", "name", "bytes", "round", "added_by", "on_disk"], "table", out)
    if votes:
        click.echo("\nVotes this round")
        render(votes, ["reviewer", "vote", "used_automated_evidence", "at", "reason"], "table", out)
    click.echo("\nHistory (ledger)")
    render(history, ["event_id", "at", "kind", "actor", "from", "to", "note"], "table", out)
    if ctx is None:
        return
    rt = dict(doc["rating"])
    rt["scores"] = ", ".join(f"{k} {v}" for k, v in rt["scores"].items())
    click.echo(f"\nRating {a.rating_id}")
    _kv(rt, out, [k for k in rt if rt[k] not in (None, "")])
    click.echo("\nRating events")
    render(doc["rating_events"], ["event_id", "at", "kind", "actor", "to", "note"], "table", out)
    click.echo("\nDetector flags")
    if doc["flags"]:
        flag_rows = [
            {**f, "evidence": json.dumps(f["evidence"], sort_keys=True, ensure_ascii=False)}
            for f in doc["flags"]
        ]
        render(flag_rows, ["event_id", "at", "kind", "actor", "reasons", "evidence"], "table", out)
    else:
        click.echo("none")
    c = doc["cluster"]
    click.echo(
        f"\nLow ratings on the same staff member within {c['days']:g} days: "
        f"{c['low_ratings_nearby']} other(s); same device: {c['same_device']}; "
        f"same network prefix: {c['same_prefix']}"
    )
    if c["groups"]:
        render(
            c["groups"],
            ["by", "pseudonym", "ratings", "includes_this", "statuses", "rating_ids"],
            "table",
            out,
        )


def _allowed(a: Appeal) -> list[str]:
    """The commands that may act on the appeal now, in the table's order."""
    return list(allowed_commands(a.state))


@appeal_group.command("evidence")
@instance_options
@actor_option
@click.argument("appeal_id", type=int)
@format_option()
@handled
def appeal_evidence(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    actor: str | None,
    appeal_id: int,
    fmt: str,
) -> None:
    """List APPEAL_ID's evidence files: SHA-256, name, size, and whether the stored file
    is still intact (ok, missing, altered)."""
    with appeals_app(home, db_url, redis_url) as (_app, svc):
        rows = svc.evidence_files(svc.get(current_actor(actor), appeal_id))
    render(
        rows,
        ["sha256", "name", "bytes", "round", "added_by", "added_at", "on_disk", "path"],
        fmt,
        _out(),
    )


@appeal_group.command("stats")
@instance_options
@actor_option
@filter_options
@click.option(
    "--by",
    type=click.Choice(sorted(GROUP_KEYS)),
    help="One row per ground, unit, appellant or window instead of one summary.",
)
@format_option()
@handled
def appeal_stats(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    actor: str | None,
    states: tuple[str, ...],
    person: str | None,
    unit: str | None,
    reviewer: str | None,
    rating_id: int | None,
    period: str | None,
    by: str | None,
    fmt: str,
) -> None:
    """Counts by state, uphold rate, median days to decision, overdue, escalations,
    reopens and reversals (reopened appeals whose outcome changed)."""
    who = current_actor(actor)
    with appeals_app(home, db_url, redis_url) as (_app, svc):
        svc.require_any(who, ("reviewer", "admin", "auditor"))
        f = _filter(svc, states, person, unit, reviewer, rating_id, period)
        appeals = svc.find(who, f)
        now = svc.clock.now()
    if by:
        rows = summarise_by(appeals, by, now)
        cols = [by, *STAT_COLUMNS]
        if fmt == "json":
            render(rows, [*cols, "by_state"], fmt, _out())
        else:
            render(rows, cols, fmt, _out())
        return
    doc = summarise(appeals, now)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    if fmt == "csv":
        render([doc], STAT_COLUMNS, "csv", _out())
        return
    _kv(doc, _out(), list(STAT_COLUMNS))
    click.echo("")
    render(
        [{"state": k, "appeals": v} for k, v in doc["by_state"].items()],
        ["state", "appeals"],
        "table",
        _out(),
    )


@appeal_group.command("verify")
@instance_options
@actor_option
@doc_format_option
@handled
def appeal_verify(
    home: str | None, db_url: str | None, redis_url: str | None, actor: str | None, fmt: str
) -> None:
    """Replay every appeal's ledger events through the transition table and compare with
    its stored state and version; check upheld appeals voided their rating and evidence
    files are intact. Exit 1 if anything disagrees (auditors, admins)."""
    with appeals_app(home, db_url, redis_url) as (_app, svc):
        problems = svc.verify(current_actor(actor))
    if fmt == "json":
        click.echo(json.dumps({"ok": not problems, "problems": problems}, indent=2))
    else:
        for p in problems:
            click.echo(f"MISMATCH: {p}")
    if problems:
        click.echo(f"error: appeal verification found {len(problems)} problem(s)", err=True)
        sys.exit(1)
    if fmt != "json":
        click.echo("ok: every appeal agrees with its ledger events")
