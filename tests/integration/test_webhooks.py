"""Telling people: the webhook outbox against a real receiver, on SQLite and PostgreSQL.

A real ``ThreadingHTTPServer`` on 127.0.0.1 (``tests/webhook_receiver.py``) receives
what the engine sends: signatures verify, the idempotency key stays the same across
retries, the backoff schedule, a receiver down for an hour gets everything in order
once, dead letters after the maximum age and their replay, crashes either side of the
dispatch commit and after the receiver answered, events committed out of id order on
PostgreSQL, and two senders at once. Time is a ``FrozenClock`` the tests move.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from factories import T0, backend_url, make_app, rating
from webhook_receiver import Receiver

from followup.webhooks import tables as wt
from followup.webhooks.model import DeliveryStatus, EndpointState
from followup.webhooks.policy import WebhookPolicy
from followup.webhooks.service import WebhookService
from followup.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SecretBox, verify
from followup.webhooks.transport import HttpTransport, Response
from integrity.app import App
from integrity.catalogue import Kind, Reason
from integrity.clock import FrozenClock
from integrity.errors import ConfigError, Conflict, InvalidInput, NotFound
from integrity.http import Background
from integrity.model import Event, Status

SEED = 20261015


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


def open_app(home: Path, db_url: str, clock: FrozenClock, init: bool = True) -> App:
    app = make_app(home, db_url, clock=clock, init=init)
    app.factories[WebhookService] = lambda a: WebhookService.from_app(a, seed=SEED)
    return app


@pytest.fixture
def app(db_url: str, tmp_path: Path, clock: FrozenClock) -> Iterator[App]:
    a = open_app(tmp_path / "home", db_url, clock)
    yield a
    a.close()


@pytest.fixture
def svc(app: App) -> WebhookService:
    return app.get(WebhookService)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def case(app: App, window: str = "W01") -> Event:
    """A real ``case.opened`` event, as detection writes it."""
    return app.ledger.append(
        Event(
            kind=Kind.CASE_OPENED,
            actor="detector",
            at=app.clock.now(),
            subject=f"window:{window}",
            reasons=(Reason.OUTLIER_COERCED,),
            rule_set_id=app.core.rule_set_id,
            evidence={"window_id": window, "p_value": 1e-9, "fast_share": 0.93},
        )
    )


def hold(app: App) -> Event:
    """A rating through the hook, then held by detection (a status event on a rating)."""
    rid = app.validate(rating()).rating_id
    return app.ledger.append(
        Event(
            kind=Kind.HOLD,
            actor="detector",
            at=app.clock.now(),
            rating_id=rid,
            status=Status.HELD,
            reasons=(Reason.OUTLIER_BURST,),
            evidence={"detector": "burst", "score": 0.999},
        )
    )


def appeal_filed(app: App) -> Event:
    return app.ledger.append(
        Event(
            kind=Kind.APPEAL_FILED,
            actor="S1",
            at=app.clock.now(),
            subject="appeal:1",
            evidence={"ground": "abusive_or_unrelated"},
        )
    )


def body_of(r: Any) -> dict[str, Any]:
    return dict(json.loads(r.body))


def ids(received: list[Any]) -> list[int]:
    return [body_of(r)["event_id"] for r in received]


# -- what is sent ---------------------------------------------------------------------------


def test_a_subscribed_event_is_posted_once_signed_with_its_idempotency_key(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    added = svc.add(receiver.url, ["case.opened"])
    assert added.secret is not None and len(added.secret) == 64
    app.validate(rating())  # a decision: not subscribed
    ev = case(app)
    summary = svc.round(clock.now())
    assert (summary.queued, summary.delivered, summary.failed, summary.dead) == (1, 1, 0, 0)

    [got] = receiver.received
    assert got.path == "/hooks/integrity?tenant=t1"
    assert got.header("Content-Type") == "application/json"
    assert got.header("Idempotency-Key") == f"{ev.event_id}-{added.endpoint.endpoint_id}"
    assert got.header("X-Integrity-Event") == "case.opened"
    ts = got.header(TIMESTAMP_HEADER)
    sig = got.header(SIGNATURE_HEADER)
    assert sig.startswith("v1=")
    assert verify(added.secret, ts, sig, got.body, now_s=clock.now().timestamp())
    assert not verify(added.secret, ts, sig, got.body + b" ", now_s=clock.now().timestamp())
    assert not verify("another secret entirely", ts, sig, got.body, clock.now().timestamp())
    assert body_of(got) == {
        "event_id": ev.event_id,
        "kind": "case.opened",
        "at": "2026-10-15T02:00:00+00:00",
        "subject": "window:W01",
        "rating_id": None,
        "status": None,
        "reasons": ["outlier.coerced"],
        "evidence": {"fast_share": 0.93, "p_value": 1e-9, "window_id": "W01"},
        "actor": "detector",
    }
    # nothing more to send, and the same event is never queued again
    assert svc.round(clock.now() + timedelta(hours=1)).queued == 0
    assert len(receiver.received) == 1
    [d] = svc.deliveries()
    assert (d.status, d.attempts, d.last_result) == (DeliveryStatus.DELIVERED, 1, "HTTP 200")
    [a] = svc.attempts(d.delivery_id)
    assert (a.number, a.status_code, a.error, a.at) == (1, 200, None, clock.now())
    assert a.duration_ms >= 0


def test_events_are_sent_unsealed_and_the_body_never_carries_raw_addresses(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    svc.add(receiver.url, ["hold", "decision"])
    doc = rating(ip="203.0.113.77", device_id="raw-device-id-123")
    held = hold(app)
    app.validate(doc)
    assert app.log.head().size < (held.event_id or 0)  # nothing sealed yet
    svc.round(clock.now())
    assert len(receiver.delivered) == 3  # two decisions and the hold
    for r in receiver.delivered:
        assert b"203.0.113.77" not in r.body and b"raw-device-id-123" not in r.body
    sent_hold = body_of(receiver.delivered[1])
    assert (sent_hold["kind"], sent_hold["status"], sent_hold["rating_id"]) == (
        "hold",
        "held",
        held.rating_id,
    )


def test_any_catalogue_kind_and_families_each_endpoint_gets_its_own_in_order(
    app: App, svc: WebhookService, clock: FrozenClock
) -> None:
    a, b = Receiver(), Receiver()
    try:
        before = case(app)  # written before the endpoints exist: nobody's
        ea = svc.add(a.url, ["appeal.*"]).endpoint
        eb = svc.add(b.url, ["hold", "case.opened", "webhook.added"]).endpoint
        written = [appeal_filed(app), hold(app), case(app), appeal_filed(app)]
        svc.round(clock.now())
        assert ids(a.delivered) == [written[0].event_id, written[3].event_id]
        # b was added after a: it also hears of nothing before its own webhook.added
        assert ids(b.delivered) == [written[1].event_id, written[2].event_id]
        assert before.event_id not in ids(a.delivered) + ids(b.delivered)
        assert {d.endpoint_id for d in svc.deliveries()} == {ea.endpoint_id, eb.endpoint_id}
    finally:
        a.close()
        b.close()


# -- retries ----------------------------------------------------------------------------------


def test_retries_keep_key_and_body_and_follow_the_backoff_schedule(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    added = svc.add(receiver.url, ["case.opened"])
    assert added.secret is not None
    receiver.fail(5, status=503)
    case(app)
    svc.round(clock.now())
    for _ in range(5):
        [d] = svc.deliveries()
        assert d.status is DeliveryStatus.PENDING
        clock.set(d.next_attempt_at - timedelta(seconds=1))
        assert svc.round(clock.now()).failed == 0  # not due yet: nothing sent
        clock.set(d.next_attempt_at)
        svc.round(clock.now())
    assert [r.status for r in receiver.received] == [503] * 5 + [200]
    assert len({r.header("Idempotency-Key") for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1
    for r in receiver.received:  # each attempt signed afresh, each signature verifies
        assert verify(
            added.secret,
            r.header(TIMESTAMP_HEADER),
            r.header(SIGNATURE_HEADER),
            r.body,
            now_s=int(r.header(TIMESTAMP_HEADER)),
        )
    assert len({r.header(TIMESTAMP_HEADER) for r in receiver.received}) == 6

    attempts = svc.attempts()
    assert [a.number for a in attempts] == [1, 2, 3, 4, 5, 6]
    assert [a.status_code for a in attempts] == [503] * 5 + [200]
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(attempts)]
    # 30 s, 1 min, 2 min, 4 min, 8 min, each within the jitter, from the seeded RNG
    policy = WebhookPolicy()
    rng = random.Random(SEED)
    expected = [policy.delay_s(n, rng.random()) for n in range(1, 6)]
    assert gaps == pytest.approx(expected, abs=1e-5)
    for n, g in enumerate(gaps, start=1):
        assert 0.9 * 30 * 2 ** (n - 1) <= g <= 1.1 * 30 * 2 ** (n - 1)
    [d] = svc.deliveries()
    assert (d.status, d.attempts) == (DeliveryStatus.DELIVERED, 6)


def test_a_receiver_down_for_an_hour_gets_everything_in_order_once(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    svc.add(receiver.url, ["case.opened", "hold"])
    receiver.down()
    written = []
    for minute in range(60):  # serve's rounds, once a minute; events now and then
        if minute in (0, 5, 20, 40, 55):
            written.append(case(app, f"W{minute:02d}") if minute % 2 else hold(app))
        svc.round(clock.now())
        clock.advance(60)
    assert receiver.received == []
    pending = svc.deliveries(statuses=(DeliveryStatus.PENDING,))
    assert [d.event_id for d in pending] == [e.event_id for e in written]
    # only the oldest was tried: the others wait behind it, in order
    assert [d.attempts > 0 for d in pending] == [True, False, False, False, False]

    receiver.up()
    for _ in range(120):
        svc.round(clock.now())
        if len(receiver.received) == len(written):
            break
        clock.advance(60)
    for _ in range(5):  # later rounds send nothing again
        clock.advance(3600)
        svc.round(clock.now())
    assert ids(receiver.received) == [e.event_id for e in written]
    assert all(r.ok for r in receiver.received)
    assert {d.status for d in svc.deliveries()} == {DeliveryStatus.DELIVERED}


def test_a_delivery_failing_for_the_maximum_age_is_a_dead_letter_and_replays(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    endpoint = svc.add(receiver.url, ["case.opened"]).endpoint
    receiver.down()
    ev = case(app)
    svc.round(clock.now())
    for _ in range(100):
        [d] = svc.deliveries()
        if d.status is not DeliveryStatus.PENDING:
            break
        clock.set(d.next_attempt_at)
        svc.round(clock.now())
    assert d.status is DeliveryStatus.DEAD
    attempts = svc.attempts(d.delivery_id)
    assert attempts[-1].at == d.queued_at + timedelta(hours=24) == d.finished_at
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert max(gaps) <= 3600  # capped at an hour
    assert gaps[:6] == pytest.approx([30, 60, 120, 240, 480, 960], rel=0.1)
    assert all(a.status_code is None and "Connection" in (a.error or "") for a in attempts)
    assert [x.delivery_id for x in svc.deliveries(statuses=(DeliveryStatus.DEAD,))] == [
        d.delivery_id
    ]
    assert svc.endpoint(endpoint.endpoint_id).dead == 1
    clock.advance(3600)
    assert svc.round(clock.now()).failed == 0  # a dead letter is not retried

    receiver.up()
    assert svc.replay([d.delivery_id]) == [d.delivery_id]
    [again] = svc.deliveries()
    assert (again.status, again.attempts, again.queued_at) == (
        DeliveryStatus.PENDING,
        0,
        clock.now(),
    )
    assert svc.round(clock.now()).delivered == 1
    [got] = receiver.received
    assert got.header("Idempotency-Key") == f"{ev.event_id}-{endpoint.endpoint_id}"
    [replayed] = [e for e in app.ledger.events_about("webhooks") if e.kind == "webhook.replayed"]
    assert replayed.evidence["deliveries"] == [d.delivery_id]
    with pytest.raises(Conflict, match="only dead letters"):
        svc.replay([d.delivery_id])
    with pytest.raises(NotFound):
        svc.replay([d.delivery_id + 1000])
    assert svc.replay(all_dead=True) == []


def test_replay_all_dead_requeues_every_dead_letter_in_event_order(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    svc.add(receiver.url, ["case.opened"])
    receiver.down()
    written = [case(app, f"W{i}") for i in range(3)]
    svc.round(clock.now())  # queued; the first fails
    clock.advance(86400)  # a day later each is too old: one more attempt each, then dead
    for _ in range(5):
        svc.round(clock.now())
    assert [d.status for d in svc.deliveries()] == [DeliveryStatus.DEAD] * 3
    receiver.up()
    assert len(svc.replay(all_dead=True)) == 3
    svc.round(clock.now())
    assert ids(receiver.received) == [e.event_id for e in written]


# -- crashes -------------------------------------------------------------------------------


def test_a_crash_after_the_dispatch_commit_loses_and_doubles_nothing(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock, monkeypatch: Any
) -> None:
    svc.add(receiver.url, ["case.opened"])
    written = [case(app, "W1"), case(app, "W2")]

    def crash(now: Any) -> Any:
        raise RuntimeError("the process died after the dispatch commit")

    monkeypatch.setattr(svc, "deliver", crash)
    with pytest.raises(RuntimeError):
        svc.round(clock.now())
    assert [d.status for d in svc.deliveries()] == [DeliveryStatus.PENDING] * 2
    assert receiver.received == []
    monkeypatch.undo()

    s = svc.round(clock.now())
    assert (s.queued, s.delivered) == (0, 2)  # queued once, before the crash
    svc.round(clock.now() + timedelta(hours=2))
    assert ids(receiver.received) == [e.event_id for e in written]


def test_a_crash_inside_the_dispatch_rolls_back_the_deliveries_with_the_cursor(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock, monkeypatch: Any
) -> None:
    svc.add(receiver.url, ["case.opened"])
    ev = case(app)

    def crash(*args: Any) -> None:
        raise RuntimeError("the process died before the dispatch commit")

    monkeypatch.setattr(svc.store, "move_cursor", crash)
    with pytest.raises(RuntimeError):
        svc.dispatch(clock.now())
    assert svc.deliveries() == []  # rolled back with the cursor
    monkeypatch.undo()

    assert svc.round(clock.now()).delivered == 1
    assert svc.round(clock.now()).queued == 0
    assert ids(receiver.received) == [ev.event_id]


def test_a_crash_after_the_receiver_answered_sends_again_with_the_same_key(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    svc.add(receiver.url, ["case.opened"])
    case(app)
    real = HttpTransport()

    class DiesAfterSending:
        def post(self, *args: Any) -> Response:
            real.post(*args)
            raise RuntimeError("the process died before recording the answer")

    svc.transport = DiesAfterSending()
    with pytest.raises(RuntimeError):
        svc.round(clock.now())
    svc.transport = real
    svc.round(clock.now())  # the endpoint was let go: sent again at once
    assert [r.status for r in receiver.received] == [200, 200]
    assert len({r.header("Idempotency-Key") for r in receiver.received}) == 1
    [d] = svc.deliveries()
    assert (d.status, d.attempts) == (DeliveryStatus.DELIVERED, 1)


def test_a_delivery_is_queued_once_per_endpoint_and_event_whatever_reads_it_twice(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    ep = svc.add(receiver.url, ["case.opened"]).endpoint
    ev = case(app)
    row = {
        "endpoint_id": ep.endpoint_id,
        "event_id": ev.event_id,
        "kind": "case.opened",
        "status": "pending",
        "attempts": 0,
        "queued_at": clock.now(),
        "next_attempt_at": clock.now(),
    }
    for expected in (1, 0):
        with app.ledger.unit_of_work() as uow:
            assert svc.store.queue(uow.connection, uow.dialect, [row, row]) == expected
    with app.ledger.unit_of_work() as uow:  # the cursor went back: the event is read again
        svc.store.move_cursor(uow.connection, 0, clock.now())
    assert svc.round(clock.now()).queued == 0
    assert ids(receiver.received) == [ev.event_id]


# -- endpoints -----------------------------------------------------------------------------


def test_disable_enable_remove(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    ep = svc.add(receiver.url, ["case.opened"], secret="a-secret-given-by-the-receiver").endpoint
    first = case(app)
    svc.disable(ep.endpoint_id)
    during = case(app)
    svc.round(clock.now())
    assert receiver.received == []  # first is queued but waits; during is not queued
    assert [d.event_id for d in svc.deliveries()] == [first.event_id]
    with pytest.raises(Conflict, match="already disabled"):
        svc.disable(ep.endpoint_id)

    svc.enable(ep.endpoint_id)
    after = case(app)
    svc.round(clock.now())
    assert ids(receiver.received) == [first.event_id, after.event_id]
    assert during.event_id not in ids(receiver.received)
    [got] = receiver.received[:1]
    assert verify(
        "a-secret-given-by-the-receiver",
        got.header(TIMESTAMP_HEADER),
        got.header(SIGNATURE_HEADER),
        got.body,
        clock.now().timestamp(),
    )

    receiver.down()
    pending = case(app)
    svc.round(clock.now())
    svc.remove(ep.endpoint_id)
    [cancelled] = [d for d in svc.deliveries() if d.event_id == pending.event_id]
    assert cancelled.status is DeliveryStatus.CANCELLED
    assert svc.endpoints() == []
    [removed] = svc.endpoints(include_removed=True)
    assert removed.state is EndpointState.REMOVED
    with app.ledger.reading() as conn:
        assert conn.execute(sa.select(wt.webhook_endpoints.c.secret)).scalar_one() == ""
    with pytest.raises(Conflict, match="removed"):
        svc.enable(ep.endpoint_id)
    with pytest.raises(NotFound):
        svc.disable(ep.endpoint_id + 1000)
    kinds = [e.kind for e in app.ledger.events_about(f"webhook:{ep.endpoint_id}")]
    assert kinds == ["webhook.added", "webhook.disabled", "webhook.enabled", "webhook.removed"]


def test_the_secret_is_kept_encrypted_and_out_of_the_ledger(app: App, svc: WebhookService) -> None:
    url = "https://hooks.example.org/services/T000/B000/receiver-token?x=1"
    added = svc.add(url, ["case.opened"])
    assert added.secret is not None
    with app.ledger.reading() as conn:
        stored = conn.execute(sa.select(wt.webhook_endpoints.c.secret)).scalar_one()
    assert added.secret not in stored and stored.startswith("v1:")
    assert svc.box.open(stored) == added.secret
    [ev] = app.ledger.events_about(f"webhook:{added.endpoint.endpoint_id}")
    text = json.dumps(dict(ev.evidence))
    assert added.secret not in text and "receiver-token" not in text
    assert ev.evidence["origin"] == "https://hooks.example.org"
    assert ev.evidence["events"] == ["case.opened"] and ev.evidence["secret"] == "generated"


def test_an_endpoint_whose_secret_cannot_be_read_does_not_hold_up_the_others(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    other = Receiver()
    try:
        broken = svc.add(other.url, ["case.opened"]).endpoint
        svc.add(receiver.url, ["case.opened"])
        with app.ledger.unit_of_work() as uow:  # as if the instance key had been replaced
            uow.connection.execute(
                wt.webhook_endpoints.update()
                .where(wt.webhook_endpoints.c.endpoint_id == broken.endpoint_id)
                .values(secret=SecretBox(b"another instance key").seal("x" * 32))
            )
            uow.seal_tables("webhook_endpoints", at=clock.now(), actor="operator")
        ev = case(app)
        with pytest.raises(ConfigError, match="another instance secret key"):
            svc.round(clock.now())
        assert ids(receiver.received) == [ev.event_id]
        assert other.received == []
    finally:
        other.close()


def test_an_endpoint_redirected_behind_the_engines_back_is_not_sent_to(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    """``webhook_endpoints`` is sealed configuration: while it differs from its seal the
    round queues and sends nothing (ConfigError, logged by ``serve``); once restored,
    what waited is sent to the right place, once."""
    thief = Receiver()
    try:
        ep = svc.add(receiver.url, ["case.opened"]).endpoint
        E = wt.webhook_endpoints
        with app.ledger.engine.begin() as conn:  # behind the engine's back
            conn.execute(E.update().where(E.c.endpoint_id == ep.endpoint_id).values(url=thief.url))
        ev = case(app)
        with pytest.raises(ConfigError, match="refusing to queue deliveries for its endpoints"):
            svc.round(clock.now())
        assert svc.deliveries() == [] and thief.received == [] and receiver.received == []
        with app.ledger.engine.begin() as conn:
            conn.execute(
                E.update().where(E.c.endpoint_id == ep.endpoint_id).values(url=receiver.url)
            )
        svc.round(clock.now())
        assert ids(receiver.received) == [ev.event_id] and thief.received == []
    finally:
        thief.close()


def test_bad_endpoints_are_refused_with_field_errors_and_nothing_written(
    app: App, svc: WebhookService
) -> None:
    before = app.ledger.last_event_id()
    with pytest.raises(InvalidInput) as err:
        svc.add("ftp://example.org/x", ["no.such.kind", "case.opened"], secret="short")
    assert {e.field for e in err.value.errors} == {"url", "event", "secret"}
    for bad in ("https://user:pw@example.org/", "example.org/hook", "https://example.org/#x"):
        with pytest.raises(InvalidInput):
            svc.add(bad, ["case.opened"])
    with pytest.raises(InvalidInput):
        svc.add("https://example.org/", [])
    assert app.ledger.last_event_id() == before
    assert svc.endpoints() == []


# -- serve's background round, several senders ---------------------------------------------


def test_the_servers_background_round_runs_the_outbox(
    app: App, svc: WebhookService, receiver: Receiver
) -> None:
    svc.add(receiver.url, ["case.opened"])
    ev = case(app)
    Background(app, every=3600).round()
    assert ids(receiver.received) == [ev.event_id]


def test_two_senders_at_once_send_each_event_once(
    db_url: str,
    tmp_path: Path,
    app: App,
    svc: WebhookService,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    other = open_app(tmp_path / "home", db_url, clock, init=False)
    try:
        svc.add(receiver.url, ["case.opened"])
        written = [case(app, f"W{i}") for i in range(20)]
        services = [svc, other.get(WebhookService)]
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(s: WebhookService) -> None:
            try:
                barrier.wait()
                for _ in range(3):
                    s.round(clock.now())
            except BaseException as err:  # reported below
                errors.append(err)

        threads = [threading.Thread(target=run, args=(s,)) for s in services]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        svc.round(clock.now())
        assert ids(receiver.received) == [e.event_id for e in written]
    finally:
        other.close()


# -- PostgreSQL: ids that commit out of order ---------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_event_committed_after_a_later_one_is_still_sent(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    svc.add(receiver.url, ["case.opened"])
    with app.ledger.unit_of_work() as slow:  # takes an id, commits last
        early = slow.append(
            Event(kind=Kind.CASE_OPENED, actor="detector", at=clock.now(), subject="window:SLOW")
        )
        late = case(app, "FAST")
        assert (early.event_id or 0) < (late.event_id or 0)
        svc.round(clock.now())
        assert ids(receiver.received) == [late.event_id]
    clock.advance(2)
    svc.round(clock.now())
    assert ids(receiver.received) == [late.event_id, early.event_id]
    svc.round(clock.now())
    assert len(receiver.received) == 2
    with app.ledger.reading() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(wt.webhook_gaps)).scalar() == 0


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_id_that_never_commits_is_given_up_after_the_grace_period(
    app: App, svc: WebhookService, receiver: Receiver, clock: FrozenClock
) -> None:
    svc.add(receiver.url, ["case.opened"])
    with pytest.raises(RuntimeError), app.ledger.unit_of_work() as uow:
        uow.append(Event(kind=Kind.CASE_OPENED, actor="x", at=clock.now(), subject="window:X"))
        raise RuntimeError("rolled back: its event id is never used")
    after = case(app)
    svc.round(clock.now())
    assert ids(receiver.received) == [after.event_id]

    def gaps() -> int:
        with app.ledger.reading() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(wt.webhook_gaps)).scalar_one()
            )

    assert gaps() == 1
    clock.advance(svc.policy.gap_grace_s - 1)
    svc.round(clock.now())
    assert gaps() == 1
    clock.advance(1)
    svc.round(clock.now())
    assert gaps() == 0
    assert len(receiver.received) == 1
