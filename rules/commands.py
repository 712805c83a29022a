"""``integrity detect`` and ``integrity review ...``: outlier detection and its review.

Thin: each command parses, calls :class:`~rules.detectors.service.DetectService` or
:class:`~rules.detectors.review.ReviewService`, and renders.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, time
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from integrity.cliutil import (
    actor_option,
    current_actor,
    format_option,
    instance_options,
    pass_service,
    progress,
)
from integrity.errors import FieldError, InvalidInput
from integrity.model import CHANNELS
from integrity.render import dump_json, jsonable, render
from rules.detectors.review import (
    CASE_COLUMNS,
    LIST_COLUMNS,
    OVERDUE_COLUMNS,
    CaseSelector,
    ReviewService,
)

if TYPE_CHECKING:  # numpy, pandas and scipy load only when detection runs
    from rules.detectors.base import Flag
    from rules.detectors.service import DetectService

DOC_FORMATS = ("table", "json")


def _when(value: str | None, name: str, tz: ZoneInfo) -> datetime | None:
    """``YYYY-MM-DD`` (local midnight in the rule set's time zone) or an RFC 3339 time."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            d = datetime.strptime(text, "%Y-%m-%d").date()
            return datetime.combine(d, time(0), tzinfo=tz)
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise InvalidInput(
            [
                FieldError(
                    name, f"expected YYYY-MM-DD or an RFC 3339 time with offset, got {value!r}"
                )
            ],
            what="option",
        )
    return at


@click.command("detect")
@instance_options
@click.option(
    "--since", metavar="DATE", help="Only ratings submitted from then (YYYY-MM-DD or RFC 3339)."
)
@click.option("--until", metavar="DATE", help="Only ratings submitted before then.")
@click.option("--dry-run", is_flag=True, help="Analyse and print, hold nothing.")
@click.option(
    "--full",
    is_flag=True,
    help="Analyse the whole ledger even when nothing changed since the last run.",
)
@click.option(
    "--show", default=15, show_default=True, type=click.IntRange(min=0), help="Findings to print."
)
@format_option(choices=DOC_FORMATS)
@pass_service("rules.detectors.service:DetectService")
def detect_command(
    svc: DetectService,
    since: str | None,
    until: str | None,
    dry_run: bool,
    full: bool,
    show: int,
    fmt: str,
) -> None:
    """Run outlier detection over the ledger; flagged ratings become held.

    Detectors (rule set [detect]): bursts against a window's own baseline, what the
    rate limits let through before and between their refusals (episodes), dense
    address blocks and devices rating in lockstep, devices rating one window again and
    again with skewed scores, staff self-rating, coerced high scores (a window case),
    malicious low scores (concentrated sources, near-duplicate comments, a change in a
    staff member's low-score share), and pyod and rater fairness as supporting signals.
    Thresholds are calibrated for the rule set's target share of honest ratings held.
    Idempotent: a second run holds nothing new; evidence a reviewer cleared never
    holds that rating again. Every rating gets a risk in [0, 1] (0.5 at a detector's
    line; below it a rank). Prints what it held and why, each finding in words: what
    was seen against what is usual, and the line it crossed. Over the whole ledger,
    when nothing it reads changed since the last such run (no new rating, no status
    change, same rule set and venues), it reads nothing and says so (--full: analyse
    anyway).
    """
    lo, hi = _when(since, "since", svc.tz), _when(until, "until", svc.tz)
    with progress("detect: reading") as tick:
        rep = svc.run(lo, hi, on_progress=tick, dry_run=dry_run, full=full)
    strong = sorted((f for f in rep.flags if f.strength >= 1), key=lambda f: -f.strength)
    if fmt == "json":
        doc = {
            "run_id": rep.run_id,
            "ratings": rep.ratings,
            "held": rep.held,
            "held_by_reason": dict(rep.held_by_reason),
            "cases": rep.cases,
            "findings": [f.as_evidence() | {"ratings": len(f.rating_ids)} for f in strong],
            "thresholds": {
                k: (v if v != float("inf") else None) for k, v in rep.thresholds.items()
            },
            "risk_updates": rep.risk_updates,
            "seconds": round(rep.seconds, 3),
            "dry_run": dry_run,
            "up_to_date": rep.up_to_date,
        }
        click.echo(json.dumps(jsonable(doc), indent=2, ensure_ascii=False))
        return
    if rep.up_to_date is not None:
        click.echo(
            f"detect: nothing changed since run {rep.up_to_date} (no new rating, no status "
            "change, same rule set and venues): nothing to do (--full analyses anyway)"
        )
        return
    verb = "would hold" if dry_run else "held"
    click.echo(
        f"detect: {rep.ratings:,} ratings analysed in {rep.seconds:.1f} s; {len(strong)} finding(s); "
        f"{verb} {rep.held:,} rating(s)" + (f" (run {rep.run_id})" if rep.run_id else "")
    )
    if rep.held_by_reason:
        rows = [{"reason": k, "ratings": v} for k, v in rep.held_by_reason.most_common()]
        render(rows, ["reason", "ratings"], "table", sys.stdout)
    for case in rep.cases:
        click.echo(f"case opened for review: {case}")
    if strong and show:
        click.echo("")
        click.echo(f"findings (strongest first, {min(show, len(strong))} of {len(strong)}):")
        for f in strong[:show]:
            click.echo(f"- [{f.reason}] {_finding(f)}")


def _finding(f: Flag) -> str:
    """A finding in words: what it holds, what was seen against the usual, and the line."""
    held = f"on {len(f.rating_ids)} rating(s)" if f.rating_ids else "on no rating"
    if f.case:
        held += f", {f.case.replace('case:', '').replace(':', ' ')} opened for review"
    line = f" Flagged below p = {10 ** (-min(f.threshold, 300)):.1g}." if f.threshold > 0 else ""
    return f"{held}: {f.explanation}{line}"


# -- review ---------------------------------------------------------------------------------


@click.group("review")
def review_group() -> None:
    """Review held ratings: list, show, clear (accept) or confirm (reject), decide a
    window case as a unit, and escalate what is past its deadline.

    Sign in as a person holding the reviewer role (a personal token, e.g.
    integrity --server URL review ... with INTEGRITY_TOKEN, or a mapped OS account).
    Each decision is a ledger event with your id and reason; a cleared rating is not
    held again for the same evidence. A held rating is due [review]
    deadline_working_days working days (rule set [calendar], its time zone) after the
    day it was held.
    """


@review_group.command("list")
@instance_options
@actor_option
@click.option("--reason", help="Only ratings held with this reason code (e.g. outlier.burst).")
@click.option("--window", "window_id", help="Only ratings of this window.")
@click.option(
    "--cases",
    is_flag=True,
    help="List window cases instead: ratings held, cleared, confirmed, still open, opened at, due.",
)
@click.option(
    "--overdue",
    is_flag=True,
    help="List held ratings and cases past their review deadline instead, oldest due "
    "first (a case's ratings are listed as their case). Reviewer or admin role.",
)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@format_option()
@pass_service(ReviewService)
def review_list(
    svc: ReviewService,
    actor: str | None,
    reason: str | None,
    window_id: str | None,
    cases: bool,
    overdue: bool,
    limit: int,
    fmt: str,
) -> None:
    """Held ratings, riskiest first, with their review deadline (or window cases with
    --cases, or overdue items with --overdue)."""
    if cases and overdue:
        raise click.UsageError("--cases and --overdue list different things: give one")
    cols: tuple[str, ...]
    if cases:
        rows, cols = svc.case_rows(current_actor(actor)), CASE_COLUMNS
    elif overdue:
        rows, cols = svc.overdue(current_actor(actor)), OVERDUE_COLUMNS
    else:
        rows = svc.list_held(current_actor(actor), reason=reason, window_id=window_id, limit=limit)
        cols = LIST_COLUMNS
    if fmt == "json":
        dump_json(rows, sys.stdout)
        return
    render(rows, cols, fmt, sys.stdout)


@review_group.command("show")
@instance_options
@actor_option
@click.argument("rating_id", type=int)
@format_option(choices=DOC_FORMATS)
@pass_service(ReviewService)
def review_show(
    svc: ReviewService,
    actor: str | None,
    rating_id: int,
    fmt: str,
) -> None:
    """A held rating with its events, the evidence behind each hold, and its deadline."""
    doc = svc.show(current_actor(actor), rating_id)
    if fmt == "json":
        dump_json(doc, sys.stdout)
        return
    r = doc["rating"]
    click.echo(
        f"rating {r.rating_id}: ticket {r.ticket_id}, window {r.window_id}, staff "
        f"{r.staff_id or '-'}, {r.channel}, composite {r.composite:.2f}, status {r.status}, "
        f"risk {r.risk:.3f}"
    )
    click.echo(
        f"submitted {r.submitted_at.isoformat()}, served {r.served_at.isoformat() if r.served_at else '-'}"
    )
    if doc["due"]:
        click.echo(f"held {doc['held_at'].isoformat()}; review due by the end of {doc['due']}")
    click.echo("")
    events = [
        {
            "event_id": e.event_id,
            "at": e.at,
            "kind": e.kind,
            "actor": e.actor,
            "status": e.status.value if e.status else "",
            "reasons": list(e.reasons),
        }
        for e in doc["events"]
    ]
    render(events, ["event_id", "at", "kind", "actor", "status", "reasons"], "table", sys.stdout)
    if doc["flags"]:
        click.echo("")
        click.echo("evidence:")
        for f in doc["flags"]:
            click.echo(
                f"- [{f['reason']}] {f['detector']}: score {f['score']} (threshold {f['threshold']}); {f['explanation']}"
            )
    if doc["cleared"]:
        click.echo("")
        click.echo("cleared evidence: " + ", ".join(c["fingerprint"] for c in doc["cleared"]))


def _decide(
    svc: ReviewService,
    actor: str | None,
    rating_id: int,
    reason: str,
    *,
    clear: bool,
    fmt: str,
) -> None:
    fn = svc.clear if clear else svc.confirm
    out = fn(current_actor(actor), rating_id, reason)
    if fmt == "json":
        dump_json(
            {
                "rating_id": out.rating_id,
                "status": out.status.value,
                "event_id": out.event_id,
                "cleared_fingerprints": list(out.cleared_fingerprints),
            },
            sys.stdout,
        )
        return
    word = "cleared: accepted, counts again" if clear else "confirmed: rejected, does not count"
    click.echo(f"rating {out.rating_id} {word} (event {out.event_id})")


@review_group.command("clear")
@instance_options
@actor_option
@click.argument("rating_id", type=int)
@click.option("--reason", required=True, help="Why the hold was wrong (at least 5 characters).")
@format_option(choices=DOC_FORMATS)
@pass_service(ReviewService)
def review_clear(
    svc: ReviewService,
    actor: str | None,
    rating_id: int,
    reason: str,
    fmt: str,
) -> None:
    """Clear a held rating: back to accepted; its evidence never holds it again."""
    _decide(svc, actor, rating_id, reason, clear=True, fmt=fmt)


@review_group.command("confirm")
@instance_options
@actor_option
@click.argument("rating_id", type=int)
@click.option("--reason", required=True, help="Why the hold stands (at least 5 characters).")
@format_option(choices=DOC_FORMATS)
@pass_service(ReviewService)
def review_confirm(
    svc: ReviewService,
    actor: str | None,
    rating_id: int,
    reason: str,
    fmt: str,
) -> None:
    """Confirm a held rating: rejected; it does not count."""
    _decide(svc, actor, rating_id, reason, clear=False, fmt=fmt)


@review_group.command("case")
@instance_options
@actor_option
@click.argument("subject")
@click.option(
    "--clear", "decision", flag_value="clear", help="Clear the selected ratings: accepted."
)
@click.option(
    "--confirm", "decision", flag_value="confirm", help="Confirm the selected ratings: rejected."
)
@click.option("--reason", help="Why (at least 5 characters); required with --clear / --confirm.")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    type=click.Choice(CHANNELS),
    help="Selector: only ratings given through this channel (repeatable: any of them).",
)
@click.option(
    "--staff",
    "staff_ids",
    multiple=True,
    metavar="STAFF_ID",
    help="Selector: only ratings naming this staff member (repeatable: any of them).",
)
@click.option(
    "--from",
    "from_",
    metavar="TIME",
    help="Selector: only ratings submitted from then (YYYY-MM-DD: local midnight, or RFC 3339).",
)
@click.option("--to", metavar="TIME", help="Selector: only ratings submitted before then.")
@format_option(choices=DOC_FORMATS)
@pass_service(ReviewService)
def review_case(
    svc: ReviewService,
    actor: str | None,
    subject: str,
    decision: str | None,
    reason: str | None,
    channels: tuple[str, ...],
    staff_ids: tuple[str, ...],
    from_: str | None,
    to: str | None,
    fmt: str,
) -> None:
    """Decide a window case as a unit: clear or confirm all its held ratings, or those
    the selectors pick, in one ledger transaction with one reason.

    SUBJECT is case:window:<id> (or the window id). Selectors (all given must hold):
    --channel, --staff, --from / --to (submitted time, end exclusive). Without --clear
    or --confirm, shows what the selection would cover and writes nothing. Clearing
    leaves held the ratings that other, uncleared evidence holds too (reported).
    """
    selector = CaseSelector(
        channels=channels,
        staff_ids=staff_ids,
        submitted_from=_when(from_, "from", svc.tz),
        submitted_to=_when(to, "to", svc.tz),
    )
    if decision is not None and not reason:
        raise click.UsageError("--reason is required with --clear / --confirm")
    clear = None if decision is None else decision == "clear"
    out = svc.decide_case(
        current_actor(actor), subject, clear=clear, reason=reason or "", selector=selector
    )
    if fmt == "json":
        dump_json(out, sys.stdout)
        return
    what = "all held ratings" if selector.everything else "the selected held ratings"
    if out.event_id is None:
        click.echo(
            f"{out.subject}: {out.still_held} rating(s) held; {what}: {out.selected}"
            + (
                f" ({len(out.left_other_evidence)} also held by other evidence: a case "
                "clear leaves them held)"
                if out.left_other_evidence
                else ""
            )
        )
        click.echo("nothing written: add --clear or --confirm with --reason to decide")
        return
    verb = "cleared (accepted, count again)" if out.decision == "clear" else "confirmed (rejected)"
    click.echo(
        f"{out.subject}: {len(out.changed)} rating(s) {verb} (event {out.event_id}); "
        f"{out.still_held} still held in the case"
    )
    if out.left_other_evidence:
        click.echo(
            "left held, other evidence holds them too (review one by one): "
            + ", ".join(str(r) for r in out.left_other_evidence)
        )
    if out.skipped:
        click.echo(f"{out.skipped} rating(s) were decided meanwhile and left as they are")


@review_group.command("escalate-overdue")
@instance_options
@actor_option
@format_option()
@pass_service(ReviewService)
def review_escalate_overdue(svc: ReviewService, actor: str | None, fmt: str) -> None:
    """Escalate every held rating and case past its review deadline to the admins.

    One review.escalated ledger event per item (a case's ratings go with their case),
    once per deadline: running it again escalates nothing new until a deadline moves.
    Needs the reviewer or admin role.
    """
    run = svc.escalate_overdue(current_actor(actor))
    if fmt == "json":
        dump_json(run, sys.stdout)
        return
    if fmt == "csv":
        render(run.escalated, (*OVERDUE_COLUMNS, "event_id"), fmt, sys.stdout)
        return
    click.echo(
        f"escalated {len(run.escalated)} overdue item(s) to the admins; "
        f"{len(run.already)} already escalated at their deadline"
    )
    if run.escalated:
        render(run.escalated, (*OVERDUE_COLUMNS, "event_id"), "table", sys.stdout)
