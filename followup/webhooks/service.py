"""Telling people: endpoints, the outbox derived from the ledger, and delivery with retries.

**Outbox.** What to send is derived from the ledger, never from the code that writes an
event: :meth:`WebhookService.dispatch` reads the ledger's events above its cursor, in id
order, and queues one delivery per enabled endpoint subscribed to the event's kind, in
the same transaction as it moves the cursor; a crash either side of that commit loses
nothing and queues nothing twice (deliveries are also unique per endpoint and event).
Sealing is unrelated: events are sent whether or not they are sealed yet. On
PostgreSQL an event id can commit after a higher one; the ids the cursor passes before
they commit are kept as gaps and read again every round until they appear (then they
are queued, possibly after later events) or are older than ``gap_grace_s`` (a rolled
back transaction leaves ids that never appear).

**Delivery.** :meth:`WebhookService.deliver` sends each endpoint's pending deliveries in
event order, one sender per endpoint at a time (a lease on the endpoint, in
``webhook_leases``: the endpoint's own row is sealed configuration): while
the oldest fails, the later ones wait behind it, so a receiver that was down gets
everything in order once it is back. A 2xx answer is delivered; anything else, or no
answer within ``timeout_s``, is retried with exponential backoff and jitter until
``max_age_s`` after the delivery was queued, when it becomes a dead letter (which a
person can list and replay). Delivery is at least once: a sender that dies after the
receiver answered but before the answer was recorded sends again, with the same
``Idempotency-Key``.

**Sealed.** ``webhook_endpoints`` is a configuration table: every change of an endpoint
is sealed (``config.sealed``) in its unit of work, and a round that has something to
queue or send first checks the table against its seal, refusing (``ConfigError``) while
it differs, so an endpoint edited behind the engine's back is never acted on.

Times come from the round's ``now`` (the injected clock); ``timer`` only measures how
long an attempt took and how far a round has run.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from followup.webhooks.model import (
    Added,
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointState,
    RoundSummary,
    body,
    check_subscription,
    idempotency_key,
)
from followup.webhooks.policy import WebhookPolicy
from followup.webhooks.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SecretBox,
    new_secret,
    signature,
)
from followup.webhooks.store import WebhookStore
from followup.webhooks.transport import HttpTransport, Response, Transport
from integrity.catalogue import Kind
from integrity.clock import Clock
from integrity.errors import (
    ConfigError,
    Conflict,
    EngineError,
    FieldError,
    InvalidInput,
    NotFound,
)
from integrity.model import Event
from integrity.ports import Ledger

log = logging.getLogger("integrity.webhooks")

#: The lock that serialises dispatchers (several ``serve`` workers, a CLI round).
OUTBOX_LOCK = "followup.webhooks.outbox"
MIN_SECRET_CHARS = 16
MAX_URL_CHARS = 2048
USER_AGENT = "integrity-engine-webhooks/1"


@dataclass
class WebhookService:
    ledger: Ledger
    clock: Clock
    policy: WebhookPolicy
    box: SecretBox
    transport: Transport
    rng: random.Random
    timer: Callable[[], float] = time.perf_counter

    def __post_init__(self) -> None:
        self.store = WebhookStore(self.ledger)

    @classmethod
    def from_app(
        cls, app: Any, transport: Transport | None = None, seed: int | None = None
    ) -> WebhookService:
        """Wire from an opened instance (the composition root's factory). ``seed`` seeds
        the retry jitter (``None``: from the operating system)."""
        service = cls(
            ledger=app.ledger,
            clock=app.clock,
            policy=WebhookPolicy.from_section(app.core.section("webhooks")),
            box=SecretBox(app.pseudonymiser.key),
            transport=transport or HttpTransport(),
            rng=random.Random(seed),
        )
        service.check_schema()
        return service

    def check_schema(self) -> None:
        if not self.store.schema_ready():
            raise ConfigError(
                "the database has no webhook tables; run `integrity init` to upgrade the schema"
            )

    # -- endpoints (operator commands) ---------------------------------------------------

    def add(
        self,
        url: str,
        events: Sequence[str],
        secret: str | None = None,
        actor: str = "operator",
    ) -> Added:
        """Register an endpoint for ``events`` (kinds of the catalogue, or families such
        as ``appeal.*``). Without ``secret`` the engine makes one and returns it (shown
        once). It receives events written after its ``webhook.added`` event."""
        url = url.strip()
        patterns, errors = check_subscription(events)
        errors = check_url(url) + errors
        if secret is not None and len(secret) < MIN_SECRET_CHARS:
            errors.append(
                FieldError(
                    "secret", f"a signing secret needs at least {MIN_SECRET_CHARS} characters"
                )
            )
        if errors:
            raise InvalidInput(errors, what="webhook endpoint")
        made = secret is None
        plain = new_secret() if secret is None else secret
        now = self.clock.now()
        with self.ledger.unit_of_work() as uow:
            eid = self.store.insert_endpoint(
                uow.connection, url, patterns, self.box.seal(plain), actor, now
            )
            ev = uow.append(
                Event(
                    kind=Kind.WEBHOOK_ADDED,
                    actor=actor,
                    at=now,
                    subject=subject(eid),
                    evidence={
                        **url_evidence(url),
                        "events": list(patterns),
                        "secret": "generated" if made else "given",
                    },
                )
            )
            self.store.update_endpoint(uow.connection, eid, since_event_id=ev.event_id)
            uow.seal_tables(at=now, actor=actor)  # webhook_endpoints
            [endpoint] = self.store.endpoints(uow.connection, ids=[eid])
        return Added(endpoint, plain if made else None, int(ev.event_id or 0))

    def endpoints(self, include_removed: bool = False) -> list[Endpoint]:
        """Endpoints with their pending and dead counts (never their secrets)."""
        return self.store.endpoints(include_removed=include_removed, counts=True)

    def endpoint(self, endpoint_id: int) -> Endpoint:
        found = self.store.endpoints(ids=[endpoint_id], counts=True)
        if not found:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        return found[0]

    def disable(self, endpoint_id: int, actor: str = "operator") -> Endpoint:
        """Pause: events after its ``webhook.disabled`` event are not queued for it, and
        nothing is sent to it until it is enabled (what was queued waits)."""
        return self._change(endpoint_id, Kind.WEBHOOK_DISABLED, actor)

    def enable(self, endpoint_id: int, actor: str = "operator") -> Endpoint:
        """Resume a paused endpoint: what waited is sent, and events after its
        ``webhook.enabled`` event; those written while it was paused are not."""
        # queue what came before the pause first: the cursor must pass it while the
        # endpoint still remembers where its pause began
        self.dispatch(self.clock.now())
        return self._change(endpoint_id, Kind.WEBHOOK_ENABLED, actor)

    def remove(self, endpoint_id: int, actor: str = "operator") -> Endpoint:
        """Remove: its secret is wiped and its pending deliveries are cancelled; its
        delivery log stays."""
        return self._change(endpoint_id, Kind.WEBHOOK_REMOVED, actor)

    def _change(self, endpoint_id: int, kind: Kind, actor: str) -> Endpoint:
        now = self.clock.now()
        want = {
            Kind.WEBHOOK_DISABLED: (EndpointState.ENABLED, EndpointState.DISABLED),
            Kind.WEBHOOK_ENABLED: (EndpointState.DISABLED, EndpointState.ENABLED),
            Kind.WEBHOOK_REMOVED: (None, EndpointState.REMOVED),
        }
        before, after = want[kind]
        with self.ledger.unit_of_work() as uow:
            uow.lock(f"followup.webhooks.endpoint:{endpoint_id}")
            found = self.store.endpoints(uow.connection, ids=[endpoint_id])
            if not found:
                raise NotFound(f"no webhook endpoint {endpoint_id}")
            ep = found[0]
            if ep.state is EndpointState.REMOVED:
                raise Conflict(f"webhook endpoint {endpoint_id} was removed")
            if before is not None and ep.state is not before:
                raise Conflict(f"webhook endpoint {endpoint_id} is already {ep.state.value}")
            evidence: dict[str, Any] = {"state": after.value}
            values: dict[str, Any] = {"state": after.value, "updated_at": now}
            if after is EndpointState.REMOVED:
                values["secret"] = ""
                evidence["cancelled"] = self.store.cancel_pending(uow.connection, endpoint_id, now)
            ev = uow.append(
                Event(
                    kind=kind, actor=actor, at=now, subject=subject(endpoint_id), evidence=evidence
                )
            )
            if after is EndpointState.ENABLED:
                values.update(since_event_id=ev.event_id, until_event_id=None)
            elif after is EndpointState.DISABLED:
                values["until_event_id"] = ev.event_id
            self.store.update_endpoint(uow.connection, endpoint_id, **values)
            uow.seal_tables(at=now, actor=actor)  # webhook_endpoints
            [changed] = self.store.endpoints(uow.connection, ids=[endpoint_id])
        return changed

    # -- the outbox ----------------------------------------------------------------------

    def round(self, now: datetime) -> RoundSummary:
        """One round: queue what the ledger has new, then send what is due by ``now``."""
        queued = self.dispatch(now)
        return RoundSummary(queued=queued) + self.deliver(now)

    def dispatch(self, now: datetime) -> int:
        """Queue deliveries for ledger events above the cursor (and for late ones in its
        gaps); returns how many were queued. Reads at most ``dispatch_rounds`` batches."""
        if self._idle():
            return 0
        self._check_sealed("to queue deliveries for its endpoints")
        queued = 0
        for i in range(self.policy.dispatch_rounds):
            n, more = self._dispatch_batch(now, recheck_gaps=i == 0)
            queued += n
            if not more:
                break
        return queued

    def _idle(self) -> bool:
        """Nothing new and no gaps: a round need not take the outbox's write lock (on
        SQLite that is the database's, which intake needs)."""
        with self.ledger.reading() as conn:
            cursor = self.store.cursor(conn)
            gaps = self.store.gaps(conn)
        return cursor is not None and not gaps and (self.ledger.last_event_id() or 0) <= cursor

    def _dispatch_batch(self, now: datetime, recheck_gaps: bool) -> tuple[int, bool]:
        grace = timedelta(seconds=self.policy.gap_grace_s)
        with self.ledger.unit_of_work() as uow:
            uow.lock(OUTBOX_LOCK)
            conn = uow.connection
            cursor = self.store.cursor(conn)
            endpoints = [
                e for e in self.store.endpoints(conn) if e.state is not EndpointState.REMOVED
            ]
            if cursor is None:  # no outbox row (the migration makes one): start fresh
                cursor = min(
                    (e.since_event_id for e in endpoints), default=self.ledger.last_event_id() or 0
                )
                self.store.start_cursor(conn, cursor, now)
            found: list[tuple[int, str]] = []
            if recheck_gaps:
                for lo, hi, seen_at in self.store.gaps(conn):
                    heads = self.ledger.event_heads(lo - 1, hi - lo + 1, until=hi)
                    expired = now - seen_at >= grace
                    if not heads and not expired:
                        continue
                    self.store.drop_gap(conn, lo)
                    if not expired:
                        for a, b in missing_ranges(lo, hi, [i for i, _ in heads]):
                            self.store.add_gap(conn, a, b, seen_at)
                    found.extend(heads)
            heads = self.ledger.event_heads(cursor, self.policy.dispatch_batch)
            prev = cursor
            for eid, _ in heads:
                if eid > prev + 1:
                    self.store.add_gap(conn, prev + 1, eid - 1, now)
                prev = eid
            if heads:
                self.store.move_cursor(conn, prev, now)
            found.extend(heads)
            rows = [
                {
                    "endpoint_id": ep.endpoint_id,
                    "event_id": eid,
                    "kind": kind,
                    "status": DeliveryStatus.PENDING.value,
                    "attempts": 0,
                    "queued_at": now,
                    "next_attempt_at": now,
                }
                for eid, kind in sorted(found)
                for ep in endpoints
                if ep.wants(eid, kind)
            ]
            queued = self.store.queue(conn, uow.dialect, rows)
        return queued, len(heads) == self.policy.dispatch_batch

    def deliver(self, now: datetime) -> RoundSummary:
        """Send every endpoint's due deliveries, in event order, stopping at an endpoint's
        first failure; returns what happened."""
        start = self.timer()
        total = RoundSummary()
        trouble: EngineError | None = None
        if not self.store.due_endpoints(now):
            return total
        self._check_sealed("to send to its endpoints")
        for ep in self.store.due_endpoints(now):
            held = self._lease_end(now, start)
            with self.ledger.unit_of_work() as uow:
                claimed = self.store.claim(uow.connection, ep.endpoint_id, now, held)
            if not claimed:
                continue  # another sender has it
            try:
                summary, held = self._drain(ep, now, start, held)
                total += summary
            except ConfigError as err:  # this endpoint's secret is unreadable: the others go on
                log.warning("webhook endpoint %d not sent to: %s", ep.endpoint_id, err)
                trouble = trouble or err
            finally:
                with self.ledger.unit_of_work() as uow:
                    self.store.release(uow.connection, ep.endpoint_id, held)
        if total != RoundSummary():
            log.info(
                "webhooks: delivered %d, failed %d (will retry), dead letters %d",
                total.delivered,
                total.failed,
                total.dead,
            )
        if trouble is not None:
            raise trouble
        return total

    def _check_sealed(self, refusing: str) -> None:
        """``ConfigError`` while ``webhook_endpoints`` differs from its latest seal: an
        endpoint redirected, resubscribed or given another secret behind the engine's
        back is not sent to (nor is any other: the digest covers the whole table) until
        the table is restored. What is queued waits; nothing is lost."""
        with self.ledger.unit_of_work() as uow:
            self.store.check_sealed(uow, refusing)

    def _lease_end(self, now: datetime, start: float) -> datetime:
        return now + timedelta(seconds=self.timer() - start + self.policy.lease_s)

    def _drain(
        self, ep: Endpoint, now: datetime, start: float, held: datetime
    ) -> tuple[RoundSummary, datetime]:
        batch = self.store.pending(ep.endpoint_id, self.policy.batch)
        if not batch or batch[0].next_attempt_at > now:
            return RoundSummary(), held
        events = self.ledger.events([d.event_id for d in batch])
        secret = self.box.open(self.store.sealed_secret(ep.endpoint_id))
        delivered = failed = dead = 0
        for d in batch:
            if d.next_attempt_at > now:
                break
            ev = events[d.event_id]
            data = body(ev)
            stamp = int(now.timestamp() + (self.timer() - start))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Idempotency-Key": idempotency_key(d.event_id, d.endpoint_id),
                "X-Integrity-Event": str(ev.kind),
                "X-Integrity-Event-Id": str(d.event_id),
                "X-Integrity-Delivery": str(d.delivery_id),
                "X-Integrity-Attempt": str(d.attempts + 1),
                TIMESTAMP_HEADER: str(stamp),
                SIGNATURE_HEADER: signature(secret, stamp, data),
            }
            t0 = self.timer()
            resp = self.transport.post(ep.url, data, headers, self.policy.timeout_s)
            duration_ms = (self.timer() - t0) * 1000.0
            status, next_at = self._outcome(d, resp, now)
            renewed = self._lease_end(now, start)
            with self.ledger.unit_of_work() as uow:
                moved = self.store.finish_attempt(
                    uow.connection,
                    d,
                    at=now,
                    status=status,
                    next_attempt_at=next_at,
                    result=resp.summary(),
                    status_code=resp.status,
                    error=resp.error,
                    duration_ms=duration_ms,
                )
                kept = self.store.renew(uow.connection, ep.endpoint_id, held, renewed)
            held = renewed if kept else held
            delivered += status is DeliveryStatus.DELIVERED
            dead += status is DeliveryStatus.DEAD
            failed += status is DeliveryStatus.PENDING
            if not moved or not kept or not resp.ok:
                break  # in order: what follows waits behind the failure
        return RoundSummary(delivered=delivered, failed=failed, dead=dead), held

    def _outcome(
        self, d: Delivery, resp: Response, at: datetime
    ) -> tuple[DeliveryStatus, datetime]:
        """Where one attempt leaves its delivery, and when it is tried next."""
        if resp.ok:
            return DeliveryStatus.DELIVERED, at
        deadline = d.queued_at + timedelta(seconds=self.policy.max_age_s)
        if at >= deadline:
            return DeliveryStatus.DEAD, at
        delay = self.policy.delay_s(d.attempts + 1, self.rng.random())
        return DeliveryStatus.PENDING, min(at + timedelta(seconds=delay), deadline)

    # -- what a person sees and does -----------------------------------------------------

    def deliveries(
        self,
        endpoint_id: int | None = None,
        statuses: Sequence[DeliveryStatus] = (),
        limit: int | None = 100,
    ) -> list[Delivery]:
        """Deliveries in the order they were queued (with ``limit``: the newest ones)."""
        if endpoint_id is not None:
            self.endpoint(endpoint_id)
        return self.store.deliveries(endpoint_id=endpoint_id, statuses=statuses, limit=limit)

    def attempts(
        self,
        delivery_id: int | None = None,
        endpoint_id: int | None = None,
        limit: int | None = 100,
    ) -> list[Attempt]:
        """The delivery log: every attempt, in the order made (with ``limit``: the newest)."""
        return self.store.attempts(delivery_id=delivery_id, endpoint_id=endpoint_id, limit=limit)

    def replay(
        self,
        delivery_ids: Sequence[int] = (),
        *,
        all_dead: bool = False,
        endpoint_id: int | None = None,
        actor: str = "operator",
    ) -> list[int]:
        """Re-queue dead letters (these, or every one, of one endpoint or all): each is
        pending again, due now, with a new maximum age. Returns the ids re-queued."""
        if bool(delivery_ids) == all_dead or (delivery_ids and endpoint_id is not None):
            raise InvalidInput(
                [
                    FieldError(
                        "delivery_id",
                        "give delivery ids, or --all-dead (with --endpoint or not), not both",
                    )
                ],
                what="replay",
            )
        now = self.clock.now()
        with self.ledger.unit_of_work() as uow:
            uow.lock(OUTBOX_LOCK)
            conn = uow.connection
            if all_dead:
                found = self.store.deliveries(
                    conn,
                    endpoint_id=endpoint_id,
                    statuses=(DeliveryStatus.DEAD,),
                    for_update=True,
                )
            else:
                found = self.store.deliveries(conn, ids=list(delivery_ids), for_update=True)
                missing = sorted(set(delivery_ids) - {d.delivery_id for d in found})
                if missing:
                    raise NotFound(f"no webhook delivery {', '.join(map(str, missing))}")
                not_dead = [d for d in found if d.status is not DeliveryStatus.DEAD]
                if not_dead:
                    d = not_dead[0]
                    raise Conflict(
                        f"webhook delivery {d.delivery_id} is {d.status.value}; "
                        "only dead letters are replayed"
                    )
            if not found:
                return []
            endpoints = {
                e.endpoint_id: e
                for e in self.store.endpoints(conn, ids=sorted({d.endpoint_id for d in found}))
            }
            gone = [d for d in found if endpoints[d.endpoint_id].state is EndpointState.REMOVED]
            if gone and not all_dead:
                raise Conflict(
                    f"webhook delivery {gone[0].delivery_id}: its endpoint "
                    f"{gone[0].endpoint_id} was removed"
                )
            ids = [d.delivery_id for d in found if d not in gone]
            if not ids:
                return []
            self.store.requeue(conn, ids, now)
            uow.append(
                Event(
                    kind=Kind.WEBHOOK_REPLAYED,
                    actor=actor,
                    at=now,
                    subject=subject(endpoint_id) if endpoint_id is not None else "webhooks",
                    evidence={"deliveries": ids, "events": sorted({d.event_id for d in found})},
                )
            )
        return ids


def subject(endpoint_id: int) -> str:
    return f"webhook:{endpoint_id}"


def check_url(url: str) -> list[FieldError]:
    """An absolute ``http``/``https`` URL with a host, no credentials, no fragment."""
    if not url or len(url) > MAX_URL_CHARS:
        return [FieldError("url", f"a URL of 1-{MAX_URL_CHARS} characters is required")]
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as err:
        return [FieldError("url", f"not a URL: {err}")]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [FieldError("url", "expected an absolute http:// or https:// URL with a host")]
    if parts.username is not None or parts.password is not None:
        return [
            FieldError(
                "url", "credentials in the URL are not accepted: receivers check the signature"
            )
        ]
    if parts.fragment:
        return [FieldError("url", "a URL fragment (#...) is never sent; leave it out")]
    if any(c.isspace() for c in url):
        return [FieldError("url", "a URL has no spaces")]
    return []


def url_evidence(url: str) -> dict[str, str]:
    """What the ledger keeps of a URL: its origin and a SHA-256 of the whole (a path or
    query may carry the receiver's own token, which the ledger should not seal)."""
    parts = urlsplit(url)
    return {
        "origin": f"{parts.scheme}://{parts.netloc}",
        "url_sha256": hashlib.sha256(url.encode()).hexdigest(),
    }


def missing_ranges(lo: int, hi: int, present: Sequence[int]) -> list[tuple[int, int]]:
    """The ranges of ``[lo, hi]`` not in ``present`` (sorted ids within it)."""
    out: list[tuple[int, int]] = []
    nxt = lo
    for i in sorted(present):
        if i > nxt:
            out.append((nxt, i - 1))
        nxt = max(nxt, i + 1)
    if nxt <= hi:
        out.append((nxt, hi))
    return out
