"""Tamper evidence over what is not a leaf, on SQLite and PostgreSQL: the rule sets, the
configuration tables (people, venues, the service registry, the audit's frames, samples,
items and batches, the webhook endpoints), the stored checkpoints, and events inserted
behind the engine's back.

One ledger per backend is filled once through the engine's own services (every writer of
configuration runs), checked clean (strictly: nothing unsealed), then each test edits it
with plain SQL, checks that ``verify`` names what changed, undoes the edit and checks that
verify is clean again.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from audit_factories import populate
from factories import backend_url, make_app, pg_ledger, sqlite_url

from audit_sampling import batches
from audit_sampling import tables as at
from audit_sampling.auditors import issue_token
from audit_sampling.context import AuditContext
from audit_sampling.draw import draw_sample
from audit_sampling.frame import make_frame
from bootstrap import init_instance, open_app
from followup.webhooks import WebhookService
from followup.webhooks import tables as wt
from followup.webhooks.model import EndpointState
from integrity.adapters import tables as t
from integrity.adapters.periods import SqlPeriodStore
from integrity.app import App
from integrity.auth import Credentials
from integrity.catalogue import Kind
from integrity.clients import IntakeClients
from integrity.clock import FrozenClock
from integrity.config import rule_set_id
from integrity.config_tables import config_subject
from integrity.errors import ConfigError
from integrity.log import VerifyReport
from integrity.people import StaffRecord, StaffRegistry
from integrity.periods import close_period
from integrity.registry import RegistryService, parse_registry
from integrity.venues import pseudonymise_venues

NOW = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
SEED = "27182818284590452353"
REGISTRY = {
    "halls": [{"hall_id": "H1", "name": "Hall one", "supervisor": "A1"}],
    "windows": [
        {"window_id": "W01", "hall_id": "H1", "head": "S01", "service_types": ["tax"]},
        {"window_id": "W02", "hall_id": "H1", "head": "S01", "service_types": ["tax"]},
    ],
    "roster": [{"staff_id": "S-W01", "window_id": "W01", "from": "2026-01-01"}],
}


@dataclass
class World:
    app: App
    ctx: AuditContext
    checkpoint_size: int
    batch_id: int
    held_rating: int
    endpoint_id: int
    sample_id: int


def fill(app: App) -> World:
    """Every writer of configuration, through the engine: staff, venues, registry, rule
    set (at init), audit frame / draw / batches / assign / token, a checkpoint."""
    staff = app.get(StaffRegistry)
    staff.add(None, StaffRecord("A1", frozenset({"admin"}), unit="HQ"))
    staff.import_records(
        "A1",
        [
            StaffRecord("aud1", frozenset({"auditor"}), unit="Audit Co."),
            StaffRecord("aud2", frozenset({"auditor"}), unit="Audit Co."),
            StaffRecord("S01", frozenset({"staff"}), windows=("W01",)),
        ],
    )
    staff.add("A1", StaffRecord("S01", frozenset({"staff", "reviewer"})), update=True)
    app.get(Credentials).map_os_user("A1", "ops-alice", "A1")
    close_period(app.ledger, SqlPeriodStore(app.ledger), "2026-08", at=NOW, actor="A1")
    app.get(IntakeClients).add("kiosk-gw")
    pv = pseudonymise_venues(
        {
            "venues": [
                {
                    "venue_id": "H1",
                    "networks": ["198.51.100.7/32"],
                    "kiosk_devices": [{"window_id": "W01", "device_id": "pad-1"}],
                }
            ]
        },
        app.pseudonymiser,
    )
    app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, NOW, actor="A1")
    ids = populate(app, {"W01": 20, "W02": 10}, datetime(2026, 10, 2, 1, 0, tzinfo=UTC))
    app.get(RegistryService).load(parse_registry(REGISTRY), actor="A1")
    hooks = app.get(WebhookService)
    # nothing listens there: the round below fails the delivery, holding and releasing
    # the endpoint's lease and logging the attempt (none of it configuration)
    endpoint = hooks.add("http://127.0.0.1:9/integrity", ["hold"], actor="A1").endpoint
    hooks.disable(
        hooks.add("https://hooks.example.org/x", ["case.*"], actor="A1").endpoint.endpoint_id,
        actor="A1",
    )
    held = app.ledger.append(
        _event("hold", ids[3], "held", "outlier.burst"), app.ledger.current(ids[3])[1]
    )
    assert held.event_id is not None
    assert hooks.round(app.clock.now()).failed == 1
    ctx = app.get(AuditContext)
    frame = make_frame(ctx, "2026-10", "A1").frame
    sample = draw_sample(ctx, frame.frame_id, SEED, "A1").sample
    made = batches.split(ctx, sample.sample_id, "A1", 4, ["aud1"])
    batches.assign(ctx, made[0].batch_id, "aud2", "A1")
    issue_token(ctx, "aud1", "A1")
    head = app.log.checkpoint(app.clock.now())
    app.log.seal(app.clock.now())
    return World(
        app, ctx, head.size, made[1].batch_id, ids[3], endpoint.endpoint_id, sample.sample_id
    )


def _event(kind: str, rid: int, status: str, *reasons: str) -> Any:
    from integrity.model import Event, Status

    return Event(
        kind=kind,
        actor="detector",
        at=NOW - timedelta(days=1),
        rating_id=rid,
        status=Status(status),
        reasons=reasons,
        evidence={"score": 0.99},
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    home = tmp_path_factory.mktemp("config-tamper")
    clock = FrozenClock(NOW)
    if request.param == "sqlite":
        app = make_app(home, sqlite_url(home / "ledger.db"), clock=clock)
        yield fill(app)
        app.close()
        return
    with pg_ledger(str(request.getfixturevalue("pg_server_url"))) as url:
        app = make_app(home, url, clock=clock)
        yield fill(app)
        app.close()


def verify(w: World) -> VerifyReport:
    return w.app.log.verify(w.app.clock.now())


@contextmanager
def tampered(
    w: World, do: Callable[[sa.Connection], Any], undo: Callable[[sa.Connection], Any]
) -> Iterator[None]:
    before = verify(w)
    assert before.strict_ok, f"not clean before tampering: {before.problems} {before.warnings}"
    with w.app.ledger.engine.begin() as conn:
        do(conn)
    try:
        yield
    finally:
        with w.app.ledger.engine.begin() as conn:
            undo(conn)
        after = verify(w)
        assert after.strict_ok, f"still reported after the undo: {after.problems} {after.warnings}"


def assert_reported(report: VerifyReport, *fragments: str) -> None:
    assert not report.ok
    assert any(all(f in p for f in fragments) for p in report.problems), (
        fragments,
        report.problems,
    )


def edit(table: sa.Table, key: dict[str, Any], **values: Any) -> tuple[Any, Any]:
    saved: dict[str, Any] = {}
    cond = sa.and_(*(table.c[k] == v for k, v in key.items()))

    def do(conn: sa.Connection) -> None:
        row = conn.execute(sa.select(table).where(cond)).mappings().one()
        saved.update({k: row[k] for k in values})
        assert conn.execute(table.update().where(cond).values(**values)).rowcount == 1

    def undo(conn: sa.Connection) -> None:
        now_key = {k: values.get(k, v) for k, v in key.items()}  # the key may have been edited
        now_cond = sa.and_(*(table.c[k] == v for k, v in now_key.items()))
        conn.execute(table.update().where(now_cond).values(**saved))

    return do, undo


def delete(table: sa.Table, **key: Any) -> tuple[Any, Any]:
    saved: dict[str, Any] = {}
    cond = sa.and_(*(table.c[k] == v for k, v in key.items()))

    def do(conn: sa.Connection) -> None:
        saved.update(conn.execute(sa.select(table).where(cond)).mappings().one())
        assert conn.execute(table.delete().where(cond)).rowcount == 1

    def undo(conn: sa.Connection) -> None:
        conn.execute(table.insert().values(**saved))

    return do, undo


def last_seal(w: World, table: str) -> int:
    """The newest seal of ``table``; of a table sealed per partition (``audit_items``),
    the newest seal of the world's sample."""
    column = w.app.ledger.config_tables.partition_column(table)
    partition = None if column is None else (column, w.sample_id)
    [*_, ev] = w.app.ledger.events_about(config_subject(table, partition))
    assert ev.kind == Kind.CONFIG_SEALED and ev.event_id is not None
    return ev.event_id


# -- the untouched ledger ---------------------------------------------------------------------


def test_ordinary_use_verifies_clean_and_every_configuration_table_is_sealed(w: World) -> None:
    report = verify(w)
    assert report.strict_ok, (report.problems, report.warnings)
    for name in w.app.ledger.config_tables:
        ev = w.app.ledger.events([last_seal(w, name)])[last_seal(w, name)]
        assert ev.evidence["table"] == name and len(ev.evidence["sha256"]) == 64
    # the activation pins the exact text of the rule set
    rs_id = w.app.core.rule_set_id
    [activated] = w.app.ledger.events_about(f"rule_set:{rs_id}")
    text = w.app.ledger.rule_set_text(rs_id)
    assert activated.evidence["sha256"] == hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def w(world: World) -> World:
    return world


# -- rule sets ---------------------------------------------------------------------------------


def test_an_edited_rule_set_limit_is_named_and_the_instance_refuses_to_start(w: World) -> None:
    rs_id = w.app.core.rule_set_id
    text = w.app.ledger.rule_set_text(rs_id)
    assert 'id = "device.day"' in text and "limit = 8\n" in text
    forged = text.replace("limit = 8\n", "limit = 300\n", 1)
    do, undo = edit(t.rule_sets, {"rule_set_id": rs_id}, text=forged)
    with tampered(w, do, undo):
        report = verify(w)
        assert_reported(
            report, f"rule set {rs_id}: its stored text hashes to {rule_set_id(forged)}"
        )
        assert_reported(report, f"rule set {rs_id}: its text differs from what event")
        assert_reported(report, "table rule_sets differs from what event", "sealed")
        settings = w.app.settings
        with pytest.raises(ConfigError, match="ledger verify") as err:
            open_app(settings, clock=FrozenClock(NOW))
        assert rs_id in str(err.value)
        # the ledger's own commands still open it, to show what changed
        with open_app(settings, clock=FrozenClock(NOW), inspect=True) as inspecting:
            assert not inspecting.log.verify(NOW).ok


def test_decisions_citing_a_rule_set_that_no_table_holds_are_named(w: World) -> None:
    """The text edited and the id renamed to match it: the decisions cite an id that no
    table holds, and the table's seal breaks."""
    rs_id = w.app.core.rule_set_id
    text = w.app.ledger.rule_set_text(rs_id).replace("limit = 8\n", "limit = 300\n", 1)
    do, undo = edit(t.rule_sets, {"rule_set_id": rs_id}, text=text, rule_set_id=rule_set_id(text))
    with tampered(w, do, undo):
        report = verify(w)
        assert_reported(report, "event(s) cite a rule set that is not stored", f"cites {rs_id}")
        assert_reported(report, "rating(s) cite a rule set that is not stored", f"cites {rs_id}")
        assert_reported(report, "table rule_sets differs")


# -- configuration tables ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "values"),
    [
        (t.people, {"person_id": "aud1"}, {"roles": "admin;auditor"}),
        (t.people, {"person_id": "S01"}, {"windows": "W01;W02"}),
        (t.venues, {"venue_id": "H1"}, {"networks": 9}),
        (t.kiosks, None, {"window_id": "W02"}),
        (t.windows, {"window_id": "W01"}, {"head": "aud1"}),
        (t.halls, {"hall_id": "H1"}, {"supervisor": "aud1"}),
        (at.audit_batches, "batch", {"auditor_id": "aud2"}),
        (at.audit_samples, None, {"rate": "0.01"}),
        (at.audit_items, None, {"batch_id": None}),
        (at.audit_items, None, {"rank": 99}),
        (wt.webhook_endpoints, "endpoint", {"url": "https://attacker.example/collect"}),
        (wt.webhook_endpoints, "endpoint", {"state": "disabled"}),
        (wt.webhook_endpoints, "endpoint", {"events": '["alert.opened"]'}),
    ],
    ids=lambda v: getattr(v, "name", None) or None,
)
def test_an_edited_configuration_row_names_the_table_and_its_seal(
    w: World, table: sa.Table, key: Any, values: dict[str, Any]
) -> None:
    if key == "batch":
        key = {"batch_id": w.batch_id}
    if key == "endpoint":
        key = {"endpoint_id": w.endpoint_id}
    if key is None:  # the table's only row, or its first
        with w.app.ledger.engine.connect() as conn:
            pk = [c.name for c in table.primary_key.columns]
            row = conn.execute(sa.select(table).order_by(*pk).limit(1)).mappings().one()
        key = {c: row[c] for c in pk}
    seal = last_seal(w, table.name)
    with tampered(w, *edit(table, key, **values)):
        assert_reported(verify(w), f"table {table.name} differs from what event {seal} sealed")


def test_a_deleted_roster_entry_and_an_inserted_person_are_named(w: World) -> None:
    with w.app.ledger.engine.connect() as conn:
        entry = conn.execute(sa.select(sa.func.min(t.roster.c.entry_id))).scalar_one()
    with tampered(w, *delete(t.roster, entry_id=entry)):
        assert_reported(verify(w), "table roster differs", "(0 row(s) now, 1 sealed)")

    def insert(conn: sa.Connection) -> None:
        conn.execute(t.people.insert().values(person_id="X9", roles="admin", created_at=NOW))

    def remove(conn: sa.Connection) -> None:
        conn.execute(t.people.delete().where(t.people.c.person_id == "X9"))

    with tampered(w, insert, remove):
        assert_reported(verify(w), "table people differs", f"event {last_seal(w, 'people')}")


def test_a_rating_dropped_from_the_audit_sample_is_named(w: World) -> None:
    with w.app.ledger.engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(at.audit_items)).scalar_one()
        row = conn.execute(sa.select(at.audit_items).limit(1)).mappings().one()
    key = {"sample_id": row["sample_id"], "rating_id": row["rating_id"]}
    with tampered(w, *delete(at.audit_items, **key)):
        assert_reported(verify(w), "table audit_items differs", f"({n - 1} row(s) now, {n} sealed)")


def test_a_planted_webhook_secret_is_named(w: World) -> None:
    """Whoever sets an endpoint's secret can sign as the engine: it is an edit of
    ``webhook_endpoints``."""
    key = {"endpoint_id": w.endpoint_id}
    with tampered(w, *edit(wt.webhook_endpoints, key, secret="v1:planted")):
        assert_reported(verify(w), "table webhook_endpoints differs")


def test_a_senders_lease_is_not_configuration(w: World) -> None:
    """The lease changes on every delivery round: it lives in ``webhook_leases``,
    outside the seal (the round in ``fill`` held and released it)."""
    with w.app.ledger.engine.connect() as conn:
        held = conn.execute(sa.select(wt.webhook_leases)).mappings().all()
    assert [r["endpoint_id"] for r in held] == [w.endpoint_id]
    key = {"endpoint_id": w.endpoint_id}
    with tampered(w, *edit(wt.webhook_leases, key, lease_until=NOW + timedelta(hours=1))):
        assert verify(w).strict_ok


def test_the_engine_never_seals_over_an_edited_webhook_endpoint(w: World) -> None:
    """An endpoint redirected behind the engine's back: the operator's next change of
    any endpoint is refused (its seal would cover the redirect), nothing is written, and
    the sender sends nothing until the table is restored."""
    seal = last_seal(w, "webhook_endpoints")
    hooks = w.app.get(WebhookService)
    key = {"endpoint_id": w.endpoint_id}
    with tampered(w, *edit(wt.webhook_endpoints, key, url="https://attacker.example/collect")):
        events_before = w.app.ledger.last_event_id()
        match = f"table webhook_endpoints differs from what event {seal}"
        with pytest.raises(ConfigError, match=match):
            hooks.add("https://hooks.example.org/new", ["case.opened"], actor="A1")
        with pytest.raises(ConfigError, match=match):
            hooks.disable(w.endpoint_id, actor="A1")
        # nor does the sender act on it: nothing is sent, to that endpoint or any other
        attempts = len(hooks.attempts(endpoint_id=w.endpoint_id))
        with pytest.raises(ConfigError, match=f"{match}.*refusing to send to its endpoints"):
            hooks.deliver(NOW + timedelta(hours=1))
        assert len(hooks.attempts(endpoint_id=w.endpoint_id)) == attempts
        assert w.app.ledger.last_event_id() == events_before
        assert last_seal(w, "webhook_endpoints") == seal
        [ep] = [e for e in hooks.endpoints(include_removed=True) if e.endpoint_id == w.endpoint_id]
        assert ep.state is EndpointState.ENABLED
        assert_reported(verify(w), f"table webhook_endpoints differs from what event {seal} sealed")


def test_a_planted_token_hash_is_named(w: World) -> None:
    """Setting a token hash one knows the token of is an edit of ``credentials``."""
    [cred] = w.app.get(Credentials).tokens("A1", "aud1")
    key = {"credential_id": cred.credential_id}
    with tampered(w, *edit(t.credentials, key, token_hash="0" * 64)):
        assert_reported(verify(w), "table credentials differs")


def test_a_token_last_use_is_not_configuration(w: World) -> None:
    """A token's last use changes as people sign in: it is outside the seal."""
    [cred] = w.app.get(Credentials).tokens("A1", "aud1")
    key = {"credential_id": cred.credential_id}
    with tampered(w, *edit(t.credentials, key, last_used_at=NOW)):
        assert verify(w).strict_ok


def test_a_change_through_the_engine_never_seals_over_an_edit(w: World) -> None:
    """After an edit behind its back, the engine refuses to change the table (its seal
    would cover the edit): verify keeps naming it until the table is restored."""
    seal = last_seal(w, "people")
    staff = w.app.get(StaffRegistry)
    with tampered(w, *edit(t.people, {"person_id": "aud1"}, roles="admin;auditor")):
        events_before = w.app.ledger.last_event_id("staff.added")
        with pytest.raises(ConfigError, match=f"table people differs from what event {seal}"):
            staff.add("A1", StaffRecord("P-new", frozenset({"staff"})))
        assert w.app.ledger.last_event_id("staff.added") == events_before
        assert last_seal(w, "people") == seal
        assert_reported(verify(w), f"table people differs from what event {seal} sealed")


# -- checkpoints --------------------------------------------------------------------------------


def test_a_deleted_checkpoint_is_named(w: World) -> None:
    size = w.checkpoint_size
    [ev] = w.app.ledger.events_about(f"checkpoint:{size}")
    with tampered(w, *delete(t.checkpoints, size=size)):
        assert_reported(
            verify(w), f"checkpoint at size {size} recorded by event {ev.event_id} is missing"
        )
    with tampered(w, *edit(t.checkpoints, {"size": size}, root=b"\x07" * 32)):
        report = verify(w)
        assert_reported(report, f"checkpoint at size {size} differs from what event {ev.event_id}")


# -- events inserted behind the engine's back -----------------------------------------------------


def test_an_unsealed_fake_rating_is_listed_and_fails_strict(w: World) -> None:
    """A rating with its decision event and status row, all consistent, with a recent time."""
    now = w.app.clock.now()
    ids: dict[str, int] = {}

    def insert(conn: sa.Connection) -> None:
        with w.app.ledger.engine.connect() as c2:
            template = dict(
                c2.execute(sa.select(t.ratings).order_by(t.ratings.c.rating_id).limit(1))
                .mappings()
                .one()
            )
        template.pop("rating_id")
        template.update(ticket_id="T-FAKE", fingerprint="e" * 64, received_at=now, submitted_at=now)
        rid = conn.execute(
            t.ratings.insert().values(**template).returning(t.ratings.c.rating_id)
        ).scalar_one()
        eid = conn.execute(
            t.events.insert()
            .values(
                rating_id=rid,
                kind="decision",
                actor="hook",
                status="accepted",
                reasons="[]",
                rule_set_id=w.app.core.rule_set_id,
                evidence="{}",
                at=now,
            )
            .returning(t.events.c.event_id)
        ).scalar_one()
        conn.execute(
            t.rating_status.insert().values(
                rating_id=rid, status="accepted", reasons="", last_event_id=eid, risk=0.0, version=1
            )
        )
        ids.update(rating=rid, event=eid)

    def remove(conn: sa.Connection) -> None:
        conn.execute(t.rating_status.delete().where(t.rating_status.c.rating_id == ids["rating"]))
        conn.execute(t.events.delete().where(t.events.c.event_id == ids["event"]))
        conn.execute(t.ratings.delete().where(t.ratings.c.rating_id == ids["rating"]))

    with tampered(w, insert, remove):
        report = verify(w)
        assert report.ok and not report.strict_ok and report.unsealed == 1
        assert report.unsealed_events[0][:3] == (ids["event"], "decision", "hook")
        [warning] = report.warnings
        assert "1 event(s) not yet in the log" in warning
        assert "no tamper evidence until sealed" in warning
        assert f"{ids['event']} decision by hook" in warning


def test_an_unsealed_fake_review_clearance_is_listed_and_fails_strict(w: World) -> None:
    rid = w.held_rating
    now = w.app.clock.now()
    saved: dict[str, Any] = {}

    def insert(conn: sa.Connection) -> None:
        saved.update(
            conn.execute(sa.select(t.rating_status).where(t.rating_status.c.rating_id == rid))
            .mappings()
            .one()
        )
        eid = conn.execute(
            t.events.insert()
            .values(
                rating_id=rid,
                kind="clear",
                actor="R1",
                status="accepted",
                reasons='["review.cleared"]',
                rule_set_id=w.app.core.rule_set_id,
                evidence="{}",
                at=now,
            )
            .returning(t.events.c.event_id)
        ).scalar_one()
        conn.execute(
            t.rating_status.update()
            .where(t.rating_status.c.rating_id == rid)
            .values(
                status="accepted",
                reasons="review.cleared",
                last_event_id=eid,
                version=saved["version"] + 1,
            )
        )
        saved["fake"] = eid

    def remove(conn: sa.Connection) -> None:
        fake = saved.pop("fake")
        conn.execute(
            t.rating_status.update().where(t.rating_status.c.rating_id == rid).values(**saved)
        )
        conn.execute(t.events.delete().where(t.events.c.event_id == fake))

    with tampered(w, insert, remove):
        report = verify(w)
        assert report.ok and report.unsealed == 1 and not report.strict_ok
        assert f"{saved['fake']} clear by R1 at {now.isoformat()}" in report.warnings[0]


# -- seals on other ledgers ------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    app = make_app(tmp_path / "home", backend_url(request, tmp_path), clock=FrozenClock(NOW))
    yield app
    app.close()


def test_a_configuration_table_with_rows_but_no_seal_fails(fresh: App) -> None:
    with fresh.ledger.engine.begin() as conn:
        conn.execute(t.venues.insert().values(venue_id="H9", networks=1))
    assert_reported(
        fresh.log.verify(NOW), "table venues has 1 row(s) but no config.sealed event covers it"
    )


def test_a_unit_of_work_that_changes_configuration_without_a_seal_commits_nothing(
    fresh: App,
) -> None:
    with (
        pytest.raises(ValueError, match="people changed without a seal"),
        fresh.ledger.unit_of_work() as uow,
    ):
        uow.connection.execute(
            t.people.insert().values(person_id="P1", roles="staff", created_at=NOW)
        )
    with fresh.ledger.reading() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.people)).scalar_one() == 0
    with (
        pytest.raises(ValueError, match="not registered configuration tables: events"),
        fresh.ledger.unit_of_work() as uow,
    ):
        uow.seal_tables("events", at=NOW, actor="x")
    # a write after the seal needs another seal
    with (
        pytest.raises(ValueError, match="people changed without a seal"),
        fresh.ledger.unit_of_work() as uow,
    ):
        uow.connection.execute(
            t.people.insert().values(person_id="P1", roles="staff", created_at=NOW)
        )
        uow.seal_tables("people", at=NOW, actor="x")
        uow.connection.execute(t.people.update().values(name="late"))
    assert fresh.log.verify(NOW).ok


def test_init_seals_tables_from_before_seals_but_never_launders_an_edit(fresh: App) -> None:
    app = fresh
    # an instance from before seals: people rows and no config.sealed event for them
    with app.ledger.engine.begin() as conn:
        conn.execute(t.people.insert().values(person_id="A1", roles="admin", created_at=NOW))
    assert_reported(app.log.verify(NOW), "table people has 1 row(s) but no config.sealed")
    init_instance(app.settings, clock=FrozenClock(NOW))  # the upgrade
    assert app.log.verify(NOW).ok
    [seal] = app.ledger.events_about("table:people")
    assert seal.actor == "init" and seal.evidence["rows"] == 1
    # an edit after the seal is not laundered by running init again
    with app.ledger.engine.begin() as conn:
        conn.execute(t.people.update().values(roles="admin;auditor"))
    init_instance(app.settings, clock=FrozenClock(NOW))
    assert_reported(app.log.verify(NOW), f"table people differs from what event {seal.event_id}")
    assert len(app.ledger.events_about("table:people")) == 1


@pytest.mark.postgres
def test_concurrent_changes_on_postgresql_end_with_a_seal_of_the_final_content(
    pg_server_url: str, tmp_path: Path
) -> None:
    """Two workers change people at the same time: the seal that commits last is the
    newest one and covers both changes (each seal locks its table)."""
    with pg_ledger(pg_server_url) as url:
        apps = [make_app(tmp_path / f"home{i}", url, clock=FrozenClock(NOW)) for i in range(2)]
        try:
            apps[0].get(StaffRegistry).add(None, StaffRecord("A1", frozenset({"admin"})))
            barrier = threading.Barrier(2)
            errors: list[BaseException] = []

            def work(i: int) -> None:
                try:
                    barrier.wait()
                    reg = apps[i].get(StaffRegistry)
                    for n in range(10):
                        reg.add("A1", StaffRecord(f"P{i}-{n}", frozenset({"staff"})))
                except BaseException as err:  # reported below
                    errors.append(err)

            threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert not errors, errors
            report = apps[0].log.verify(NOW)
            assert report.ok, report.problems
        finally:
            for a in apps:
                a.close()


def test_sealing_an_edited_table_without_changing_it_is_refused_too(w: World) -> None:
    seal = last_seal(w, "halls")
    with tampered(w, *edit(t.halls, {"hall_id": "H1"}, name="Hall zero")):
        with (
            pytest.raises(ConfigError, match=f"table halls differs from what event {seal}"),
            w.app.ledger.unit_of_work() as uow,
        ):
            uow.seal_tables("halls", at=NOW, actor="A1")
        assert last_seal(w, "halls") == seal
