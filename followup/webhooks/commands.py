"""``integrity webhooks ...``: endpoints, the outbox's round, the delivery log, dead letters.

Operator commands (like ``registry load``): changes are ledger events with actor
``operator``. Each command parses its options, calls one
:class:`~followup.webhooks.service.WebhookService` method and renders the answer. A
signing secret is printed once, when the engine makes it, and never listed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from followup.webhooks.model import Attempt, Delivery, DeliveryStatus, Endpoint, rfc3339
from followup.webhooks.service import WebhookService
from integrity.cliutil import format_option, instance_options, pass_service
from integrity.render import render

ENDPOINT_COLUMNS = (
    "endpoint_id",
    "state",
    "url",
    "events",
    "pending",
    "dead",
    "since_event_id",
    "created_at",
)
DELIVERY_COLUMNS = (
    "delivery_id",
    "endpoint_id",
    "event_id",
    "kind",
    "status",
    "attempts",
    "queued_at",
    "next_attempt_at",
    "last_result",
    "finished_at",
)
ATTEMPT_COLUMNS = (
    "attempt_id",
    "delivery_id",
    "number",
    "at",
    "status_code",
    "error",
    "duration_ms",
)


def _time(at: datetime | None) -> str | None:
    return rfc3339(at) if at is not None else None


def endpoint_row(e: Endpoint) -> dict[str, Any]:
    return {
        "endpoint_id": e.endpoint_id,
        "state": e.state.value,
        "url": e.url,
        "events": list(e.events),
        "pending": e.pending,
        "dead": e.dead,
        "since_event_id": e.since_event_id,
        "created_at": _time(e.created_at),
    }


def delivery_row(d: Delivery) -> dict[str, Any]:
    return {
        "delivery_id": d.delivery_id,
        "endpoint_id": d.endpoint_id,
        "event_id": d.event_id,
        "kind": d.kind,
        "status": d.status.value,
        "attempts": d.attempts,
        "queued_at": _time(d.queued_at),
        "next_attempt_at": _time(d.next_attempt_at) if d.status is DeliveryStatus.PENDING else None,
        "last_result": d.last_result,
        "finished_at": _time(d.finished_at),
    }


def attempt_row(a: Attempt) -> dict[str, Any]:
    return {
        "attempt_id": a.attempt_id,
        "delivery_id": a.delivery_id,
        "number": a.number,
        "at": _time(a.at),
        "status_code": a.status_code,
        "error": a.error,
        "duration_ms": round(a.duration_ms, 1),
    }


def _render(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str) -> None:
    render(rows, columns, fmt, sys.stdout)


@click.group("webhooks")
def webhooks_group() -> None:
    """Telling people: HTTP endpoints that receive ledger events of the kinds they chose.

    Each new event of a subscribed kind is POSTed as JSON, signed (HMAC-SHA256 over
    the timestamp and the body, X-Integrity-Signature: v1=<hex>), with an
    Idempotency-Key that stays the same on every retry. Failures are retried with
    exponential backoff until [webhooks] max_age_s (24 h), then kept as dead letters
    to replay. `integrity serve` runs the outbox every few seconds; `webhooks deliver`
    runs one round.
    """


@webhooks_group.command("add")
@instance_options
@pass_service(WebhookService)
@click.argument("url")
@click.option(
    "--event",
    "events",
    multiple=True,
    required=True,
    metavar="KIND",
    help="An event kind of the catalogue (README, Event kinds), e.g. case.opened, or a "
    "family such as 'appeal.*' (repeatable).",
)
@click.option(
    "--secret-file",
    type=click.File("r", encoding="utf-8"),
    help="Read the signing secret (at least 16 characters) from this file instead of "
    "having one made.",
)
def webhooks_add(svc: WebhookService, url: str, events: tuple[str, ...], secret_file: Any) -> None:
    """Send events of the given kinds to URL (http:// or https://).

    Prints the endpoint id and, when the engine made it, the signing secret: shown this
    once, give it to the receiver. The endpoint receives events written after it was
    added.
    """
    secret = secret_file.read().strip() if secret_file is not None else None
    added = svc.add(url, events, secret)
    ep = added.endpoint
    click.echo(f"webhook endpoint {ep.endpoint_id} added (event {added.event_id}): {ep.url}")
    click.echo(f"receives: {', '.join(ep.events)}")
    if added.secret is not None:
        click.echo(
            "signing secret (shown once; the receiver checks X-Integrity-Signature with it):"
        )
        click.echo(added.secret)


@webhooks_group.command("list")
@instance_options
@pass_service(WebhookService)
@click.option("--all", "include_removed", is_flag=True, help="Include removed endpoints.")
@format_option()
def webhooks_list(svc: WebhookService, include_removed: bool, fmt: str) -> None:
    """The endpoints, their event kinds, state, and pending and dead deliveries (never
    their secrets)."""
    _render([endpoint_row(e) for e in svc.endpoints(include_removed)], ENDPOINT_COLUMNS, fmt)


def _endpoint_change(name: str, verb: str, doc: str) -> click.Command:
    @webhooks_group.command(name, help=doc)
    @instance_options
    @pass_service(WebhookService)
    @click.argument("endpoint_id", type=int)
    def change(svc: WebhookService, endpoint_id: int) -> None:
        ep = getattr(svc, name)(endpoint_id)
        click.echo(f"webhook endpoint {ep.endpoint_id} {verb}: {ep.url}")

    return change


_endpoint_change(
    "disable",
    "disabled",
    "Pause ENDPOINT_ID: events written from now on are not queued for it, and nothing "
    "is sent to it until it is enabled again (what was queued waits).",
)
_endpoint_change(
    "enable",
    "enabled",
    "Resume ENDPOINT_ID: what waited is sent, then events written from now on (not "
    "those written while it was paused).",
)
_endpoint_change(
    "remove",
    "removed",
    "Remove ENDPOINT_ID: its secret is wiped and its pending deliveries are cancelled; "
    "its delivery log stays.",
)


@webhooks_group.command("deliver")
@instance_options
@pass_service(WebhookService)
def webhooks_deliver(svc: WebhookService) -> None:
    """Run one round of the outbox and exit: queue deliveries for new ledger events,
    then send those that are due (what `integrity serve` does every few seconds)."""
    s = svc.round(svc.clock.now())
    click.echo(
        f"queued {s.queued}, delivered {s.delivered}, failed {s.failed} (will retry), "
        f"dead letters {s.dead}"
    )


def _limit_option(func: Any) -> Any:
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=100,
        show_default=True,
        help="Show the newest N.",
    )(func)


@webhooks_group.command("deliveries")
@instance_options
@pass_service(WebhookService)
@click.option("--endpoint", "endpoint_id", type=int, help="One endpoint's deliveries only.")
@click.option(
    "--status",
    type=click.Choice([s.value for s in DeliveryStatus]),
    help="Only deliveries with this status.",
)
@_limit_option
@format_option()
def webhooks_deliveries(
    svc: WebhookService, endpoint_id: int | None, status: str | None, limit: int, fmt: str
) -> None:
    """Deliveries (one per endpoint and event): status, attempts, the last result and,
    when pending, the next attempt."""
    statuses = (DeliveryStatus(status),) if status else ()
    rows = [delivery_row(d) for d in svc.deliveries(endpoint_id, statuses, limit)]
    _render(rows, DELIVERY_COLUMNS, fmt)


@webhooks_group.command("dead")
@instance_options
@pass_service(WebhookService)
@click.option("--endpoint", "endpoint_id", type=int, help="One endpoint's dead letters only.")
@_limit_option
@format_option()
def webhooks_dead(svc: WebhookService, endpoint_id: int | None, limit: int, fmt: str) -> None:
    """Dead letters: deliveries still failing at the maximum age. `webhooks replay`
    sends them again."""
    rows = [delivery_row(d) for d in svc.deliveries(endpoint_id, (DeliveryStatus.DEAD,), limit)]
    _render(rows, DELIVERY_COLUMNS, fmt)


@webhooks_group.command("attempts")
@instance_options
@pass_service(WebhookService)
@click.option("--delivery", "delivery_id", type=int, help="One delivery's attempts only.")
@click.option("--endpoint", "endpoint_id", type=int, help="One endpoint's attempts only.")
@_limit_option
@format_option()
def webhooks_attempts(
    svc: WebhookService, delivery_id: int | None, endpoint_id: int | None, limit: int, fmt: str
) -> None:
    """The delivery log: every attempt with its time, HTTP status or error, and duration."""
    rows = [attempt_row(a) for a in svc.attempts(delivery_id, endpoint_id, limit)]
    _render(rows, ATTEMPT_COLUMNS, fmt)


@webhooks_group.command("replay")
@instance_options
@pass_service(WebhookService)
@click.argument("delivery_ids", nargs=-1, type=int, metavar="[DELIVERY_ID]...")
@click.option("--all-dead", is_flag=True, help="Every dead letter (of --endpoint, or all).")
@click.option("--endpoint", "endpoint_id", type=int, help="With --all-dead: one endpoint's.")
def webhooks_replay(
    svc: WebhookService, delivery_ids: tuple[int, ...], all_dead: bool, endpoint_id: int | None
) -> None:
    """Re-queue dead letters: each is pending again, sent in the next round, with a new
    maximum age and the same Idempotency-Key."""
    ids = svc.replay(delivery_ids, all_dead=all_dead, endpoint_id=endpoint_id)
    click.echo(
        f"re-queued {len(ids)} dead letter(s)" + (f": {', '.join(map(str, ids))}" if ids else "")
    )
