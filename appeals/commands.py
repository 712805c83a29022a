"""``integrity appeal ...``: staff appeals from the command line.

Thin: each command parses its options, calls one :class:`~appeals.service.AppealService`
method as the person signed in (``current_actor``; ``--as`` only asserts it), and
renders the answer with :mod:`appeals.views`. The root group opens the instance, maps engine errors to
exit 1 with one line on stderr, and seals what the command wrote when it ends.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar
from zoneinfo import ZoneInfo

import click

from appeals import views
from appeals.model import Appeal, State
from appeals.policy import GROUND_CODES, GROUNDS, NOT_GROUNDS
from appeals.repository import AppealFilter
from appeals.service import AppealService
from appeals.stats import GROUP_KEYS
from integrity.cliutil import (
    actor_option,
    current_actor,
    format_option,
    instance_options,
    pass_service,
)
from integrity.errors import EngineError, FieldError, InvalidInput
from integrity.render import dump_json, render

F = TypeVar("F", bound=Callable[..., Any])


def _out() -> TextIO:
    return sys.stdout


def doc_format_option(func: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(views.DOC_FORMATS),
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


def _print_appeal(svc: AppealService, a: Appeal, fmt: str, message: str, **extra: Any) -> None:
    views.print_appeal(a, fmt, message, _out(), now=svc.clock.now(), tz=svc.tz, extra=extra)


# -- appeal -----------------------------------------------------------------------------


@click.group("appeal")
def appeal_group() -> None:
    """Staff appeals against malicious low scores, and their review.

    A staff member files about a low score on themselves; reviewers from another unit
    decide with written reasons. Upholding needs two independent reviewers (rule set
    [appeals] uphold_reviewers) and voids the rating; a rejection leaves it counting.
    Every action is a ledger event naming you: the person your token or OS account
    signs in (--as only asserts who you are). From a laptop:
    integrity --server URL appeal ... with your token in INTEGRITY_TOKEN.
    """


@appeal_group.command("file")
@instance_options
@pass_service(AppealService)
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
def appeal_file(
    svc: AppealService,
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
    res = svc.file(current_actor(actor), rating_id, ground, reason, evidence)
    _print_appeal(
        svc,
        res.appeal,
        fmt,
        views.filing_message(res, svc.tz),
        ineligible=views.ineligible_rows(res.ineligible),
    )


@appeal_group.command("assign")
@instance_options
@pass_service(AppealService)
@actor_option
@click.argument("appeal_id", type=int)
@click.option(
    "--reviewer",
    metavar="PERSON_ID",
    help="Who reviews (admins only; default: yourself, if you are a reviewer).",
)
@doc_format_option
def appeal_assign(
    svc: AppealService, actor: str | None, appeal_id: int, reviewer: str | None, fmt: str
) -> None:
    """Assign a reviewer to APPEAL_ID (not the appellant, not from the appellant's unit)."""
    a = svc.assign(current_actor(actor), appeal_id, reviewer)
    _print_appeal(svc, a, fmt, f"appeal {a.appeal_id}: {', '.join(a.reviewers)} reviewing")


@appeal_group.command("request-info")
@instance_options
@pass_service(AppealService)
@actor_option
@click.argument("appeal_id", type=int)
@click.option("--message", required=True, help="What the appellant should provide.")
@doc_format_option
def appeal_request_info(
    svc: AppealService, actor: str | None, appeal_id: int, message: str, fmt: str
) -> None:
    """Ask the appellant of APPEAL_ID for more information (assigned reviewers)."""
    a = svc.request_info(current_actor(actor), appeal_id, message)
    _print_appeal(svc, a, fmt, f"appeal {a.appeal_id}: waiting for {a.appellant_id}")


@appeal_group.command("respond")
@instance_options
@pass_service(AppealService)
@actor_option
@click.argument("appeal_id", type=int)
@click.option("--message", required=True, help="Your answer to the reviewer.")
@evidence_option("A further file (repeatable).")
@doc_format_option
def appeal_respond(
    svc: AppealService,
    actor: str | None,
    appeal_id: int,
    message: str,
    evidence: tuple[Path, ...],
    fmt: str,
) -> None:
    """Answer a request for information on your APPEAL_ID."""
    a = svc.respond(current_actor(actor), appeal_id, message, evidence)
    _print_appeal(svc, a, fmt, f"appeal {a.appeal_id}: back under review")


@appeal_group.command("decide")
@instance_options
@pass_service(AppealService)
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
    help="Whether automated evidence (detection holds, holds at intake, window cases, "
    "risk scores) informed the decision. Required.",
)
@doc_format_option
def appeal_decide(
    svc: AppealService,
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
    a = svc.decide(
        current_actor(actor),
        appeal_id,
        uphold=uphold,
        reason=reason,
        used_automated_evidence=used_automated,
    )
    _print_appeal(svc, a, fmt, views.decision_message(a, svc.policy.uphold_reviewers))


@appeal_group.command("withdraw")
@instance_options
@pass_service(AppealService)
@actor_option
@click.argument("appeal_id", type=int)
@click.option("--reason", default="", help="Why (optional).")
@doc_format_option
def appeal_withdraw(
    svc: AppealService, actor: str | None, appeal_id: int, reason: str, fmt: str
) -> None:
    """Withdraw your APPEAL_ID."""
    a = svc.withdraw(current_actor(actor), appeal_id, reason)
    _print_appeal(svc, a, fmt, f"appeal {a.appeal_id} withdrawn")


@appeal_group.command("escalate")
@instance_options
@pass_service(AppealService)
@actor_option
@click.argument("appeal_id", type=int)
@click.option("--reason", required=True, help="Why supervisors should look at it.")
@doc_format_option
def appeal_escalate(
    svc: AppealService, actor: str | None, appeal_id: int, reason: str, fmt: str
) -> None:
    """Escalate APPEAL_ID to supervisors (admins, its reviewers, or its appellant once
    overdue). Escalation never decides."""
    a = svc.escalate(current_actor(actor), appeal_id, reason)
    _print_appeal(svc, a, fmt, f"appeal {a.appeal_id} escalated")


@appeal_group.command("escalate-overdue")
@instance_options
@pass_service(AppealService)
@actor_option
@doc_format_option
def appeal_escalate_overdue(svc: AppealService, actor: str | None, fmt: str) -> None:
    """Escalate every open appeal whose decision deadline has passed (run it daily).

    A missed deadline escalates; it never upholds or rejects by itself.
    """
    run = svc.escalate_overdue(current_actor(actor))
    views.print_escalation_run(run, fmt, _out(), now=svc.clock.now(), tz=svc.tz)


@appeal_group.command("reopen")
@instance_options
@pass_service(AppealService)
@actor_option
@click.argument("appeal_id", type=int)
@click.option("--reason", required=True, help="What the new evidence shows.")
@evidence_option("New evidence (at least one file not attached before; repeatable).")
@doc_format_option
def appeal_reopen(
    svc: AppealService,
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
    a = svc.reopen(current_actor(actor), appeal_id, reason, evidence)
    _print_appeal(svc, a, fmt, f"appeal {a.appeal_id} reopened (round {a.round})")


# -- reading ------------------------------------------------------------------------------


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
    tz: ZoneInfo,
    states: Sequence[str],
    person: str | None,
    unit: str | None,
    reviewer: str | None,
    rating_id: int | None,
    period: str | None,
    overdue_at: datetime | None = None,
    limit: int | None = None,
) -> AppealFilter:
    start = end = None
    if period:
        from integrity.reports import Period

        p = Period.month(period, tz)
        start, end = p.start, p.end
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


@appeal_group.command("list")
@instance_options
@pass_service(AppealService)
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
def appeal_list(
    svc: AppealService,
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
    now = _parse_at(at_text) or svc.clock.now()
    f = _filter(
        svc.tz, states, person, unit, reviewer, rating_id, period, now if overdue else None, limit
    )
    appeals = svc.find(current_actor(actor), f)
    views.print_list(appeals, fmt, _out(), now=now, tz=svc.tz)


@appeal_group.command("show")
@instance_options
@pass_service(AppealService)
@actor_option
@click.argument("appeal_id", type=int)
@doc_format_option
def appeal_show(svc: AppealService, actor: str | None, appeal_id: int, fmt: str) -> None:
    """Show APPEAL_ID: state, evidence, votes, its history on the ledger and, for
    reviewers, the rating's context (its events, the automated evidence about it, and
    other low ratings on the same staff member nearby from the same device or network
    prefix)."""
    detail = svc.show(current_actor(actor), appeal_id)
    doc = views.show_doc(
        detail, now=svc.clock.now(), tz=svc.tz, cluster_days=svc.policy.cluster_days
    )
    if fmt == "json":
        dump_json(doc, _out())
    else:
        views.print_show(doc, _out())


@appeal_group.command("evidence")
@instance_options
@pass_service(AppealService)
@actor_option
@click.argument("appeal_id", type=int)
@format_option()
def appeal_evidence(svc: AppealService, actor: str | None, appeal_id: int, fmt: str) -> None:
    """List APPEAL_ID's evidence files: SHA-256, name, size, and whether the stored file
    is still intact (ok, missing, altered)."""
    rows = svc.list_evidence(current_actor(actor), appeal_id)
    render(rows, views.EVIDENCE_COLUMNS, fmt, _out())


@appeal_group.command("stats")
@instance_options
@pass_service(AppealService)
@actor_option
@filter_options
@click.option(
    "--by",
    type=click.Choice(sorted(GROUP_KEYS)),
    help="One row per ground, unit, appellant or window instead of one summary.",
)
@format_option()
def appeal_stats(
    svc: AppealService,
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
    f = _filter(svc.tz, states, person, unit, reviewer, rating_id, period)
    rows = svc.stats(current_actor(actor), f, by)
    views.print_stats(rows, by, fmt, _out())


@appeal_group.command("verify")
@instance_options
@pass_service(AppealService)
@actor_option
@doc_format_option
def appeal_verify(svc: AppealService, actor: str | None, fmt: str) -> None:
    """Replay every appeal's ledger events through the transition table and compare with
    its stored state and version; check upheld appeals voided their rating and evidence
    files are intact. Exit 1 if anything disagrees (auditors, admins)."""
    problems = svc.verify(current_actor(actor))
    views.print_verification(problems, fmt, _out())
    if problems:
        raise EngineError(f"appeal verification found {len(problems)} problem(s)")
