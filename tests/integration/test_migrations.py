"""Alembic migrations against real SQLite and PostgreSQL: up, compare with the models, down.

The migrations must build exactly the schema the SQLAlchemy tables describe (an
autogenerate comparison finds nothing to do), tear it all down again, and be safe to
run twice (``integrity init`` on an existing instance).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from factories import make_app, make_settings, rating, sqlite_url

import appeals.tables  # noqa: F401 - every package's tables on the shared metadata, as
import audit_sampling.tables  # noqa: F401 - `alembic check` sees them, whatever ran first
import rules.tables  # noqa: F401
from bootstrap import MIGRATION_LOCATIONS, init_instance
from integrity import migrate
from integrity.adapters import tables
from integrity.adapters.sql import SqlLedger, make_engine

# The ledger's own tables, as declared in integrity/adapters/tables.py (other packages
# register theirs on the same metadata when imported).
CORE_TABLES = {v.name for v in vars(tables).values() if isinstance(v, sa.Table)}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return sqlite_url(tmp_path / "ledger.db")


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    e = make_engine(db_url)
    yield e
    e.dispose()


def table_names(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def core_diff(engine: sa.Engine) -> list[Any]:
    def only_core(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name in CORE_TABLES

    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": only_core}
        )
        return list(compare_metadata(ctx, tables.metadata))


def heads(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def test_upgrade_builds_exactly_the_modelled_schema(engine: sa.Engine) -> None:
    assert table_names(engine) == set()
    migrate.upgrade(engine, MIGRATION_LOCATIONS)
    assert table_names(engine) >= CORE_TABLES
    assert "alembic_version" in table_names(engine)
    script = ScriptDirectory.from_config(migrate.alembic_config(engine, MIGRATION_LOCATIONS))
    assert heads(engine) == set(script.get_heads())

    assert core_diff(engine) == []

    # every package's migrations against every table on the shared metadata, the way
    # `alembic check` sees it through the migration environment
    cfg = migrate.alembic_config(engine, MIGRATION_LOCATIONS)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.check(cfg)

    # details the comparison may pass over: the claim index is unique and partial (several
    # non-claiming ratings may share a ticket), fingerprints are unique, and neither events
    # nor status rows carry a foreign key to ratings (verify checks them instead)
    insp = sa.inspect(engine)
    idx = {i["name"]: i for i in insp.get_indexes("ratings")}
    claim = idx["uq_ratings_ticket_claim"]
    assert claim["unique"] and claim["column_names"] == ["ticket_id"]
    where = claim.get("dialect_options", {})
    assert any("claims_ticket" in str(v) for k, v in where.items() if k.endswith("_where"))
    uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("ratings")}
    assert ("fingerprint",) in uniques
    fks = {
        (f["constrained_columns"][0], f["referred_table"]) for f in insp.get_foreign_keys("events")
    }
    assert ("rating_id", "ratings") not in fks
    assert insp.get_foreign_keys("rating_status") == []


def test_hex_columns_compare_bytes_on_postgresql_whatever_the_database_collation(
    engine: sa.Engine,
) -> None:
    """Every ``Hash`` and ``Pseudonym`` column, in every package's tables, is collated
    "C" after the migrations on PostgreSQL (the comparison above passes over a column
    whose collation only the model names)."""
    from integrity.sqlkit import Hash, Pseudonym

    migrate.upgrade(engine, MIGRATION_LOCATIONS)
    hex_columns = {
        (table.name, col.name)
        for table in tables.metadata.tables.values()
        for col in table.columns
        if col.type is Hash or col.type is Pseudonym
    }
    assert ("ratings", "fingerprint") in hex_columns and (
        "audit_frames",
        "frame_hash",
    ) in hex_columns
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                "WHERE table_schema = current_schema()"
            )
        ).all()
    collation = {(t_, c): coll for t_, c, coll in rows}
    assert {key: collation[key] for key in hex_columns} == dict.fromkeys(hex_columns, "C")


def test_downgrade_to_base_removes_every_table(engine: sa.Engine) -> None:
    migrate.upgrade(engine, MIGRATION_LOCATIONS)
    migrate.downgrade(engine, "base", MIGRATION_LOCATIONS)
    assert table_names(engine) - {"alembic_version"} == set()
    assert heads(engine) == set()
    # and up again from nothing: the round trip is clean
    migrate.upgrade(engine, MIGRATION_LOCATIONS)
    assert core_diff(engine) == []


def test_a_filled_ledger_goes_through_the_foreign_key_revision_both_ways(
    db_url: str, tmp_path: Path
) -> None:
    """0013 copies ``events`` and ``rating_status`` on SQLite (batch mode), which other
    tables reference (a risk block names its event): with rows in them, both ways, every
    row survives, the ledger still verifies, and foreign keys are enforced afterwards."""
    app = make_app(tmp_path / "home", db_url)
    try:
        ids = [app.validate(rating()).rating_id for _ in range(3)]
        app.ledger.set_risk({ids[0]: 0.7}, actor="detector")  # a risk_blocks row -> events
    finally:
        app.close()
    engine = make_engine(db_url)

    def rows() -> dict[str, int]:
        with engine.connect() as conn:
            return {
                name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()
                for name in ("ratings", "events", "rating_status", "risk_blocks", "log_leaves")
            }

    def rating_fks() -> set[str]:
        insp = sa.inspect(engine)
        return {
            name
            for name in ("events", "rating_status")
            for fk in insp.get_foreign_keys(name)
            if fk["referred_table"] == "ratings"
        }

    try:
        before = rows()
        assert before["risk_blocks"] == 1 and rating_fks() == set()
        migrate.downgrade(engine, "0012_risk_blocks", MIGRATION_LOCATIONS)
        assert rows() == before and rating_fks() == {"events", "rating_status"}
        migrate.upgrade(engine, MIGRATION_LOCATIONS)
        assert rows() == before and rating_fks() == set()
        if engine.dialect.name == "sqlite":  # enforced again on every connection
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()
    again = make_app(tmp_path / "home", db_url, init=False)
    try:
        assert again.log.verify(again.clock.now()).ok
    finally:
        again.close()


def test_a_sqlite_migration_leaving_a_dangling_reference_is_rolled_back(tmp_path: Path) -> None:
    """SQLite migrates with foreign keys unenforced (see ``migrate._migrating``), so the
    references are checked before the commit: one left dangling rolls every revision
    of the run back, the tables it created included, and enforcement is on again."""
    engine = make_engine(sqlite_url(tmp_path / "ledger.db"))
    try:
        migrate.upgrade(engine, MIGRATION_LOCATIONS, "0012_risk_blocks")
        with engine.connect() as conn:  # a risk block naming no event, behind the back
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            conn.exec_driver_sql("INSERT INTO risk_blocks VALUES (999, 1, x'00')")
            conn.commit()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        before, names = heads(engine), table_names(engine)
        with pytest.raises(RuntimeError, match="dangling references"):
            migrate.upgrade(engine, MIGRATION_LOCATIONS)
        assert heads(engine) == before
        assert table_names(engine) == names  # the tables created meanwhile too
        assert {fk["referred_table"] for fk in sa.inspect(engine).get_foreign_keys("events")} == {
            "ratings"
        }
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()


def test_upgrade_and_init_twice_are_idempotent(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", db_url)
    first = init_instance(settings)
    engine = make_engine(db_url)
    try:
        before_heads = heads(engine)
        with engine.connect() as conn:
            events_before = conn.execute(
                sa.select(sa.func.count()).select_from(tables.events)
            ).scalar()
        secret = settings.secret_file.read_bytes()

        assert init_instance(settings) == first
        migrate.upgrade(engine, MIGRATION_LOCATIONS)
        assert heads(engine) == before_heads
        with engine.connect() as conn:
            assert (
                conn.execute(sa.select(sa.func.count()).select_from(tables.events)).scalar()
                == events_before
            )
            assert (
                conn.execute(sa.select(sa.func.count()).select_from(tables.rule_sets)).scalar() == 1
            )
        assert settings.secret_file.read_bytes() == secret  # the key is never replaced
        assert SqlLedger(engine).active_rule_set() is not None
        assert core_diff(engine) == []
    finally:
        engine.dispose()


def test_credentials_upgrade_carries_old_tokens_over_with_an_expiry(engine: sa.Engine) -> None:
    """0006_credentials on a ledger with people, an old single token, and rows that
    reference people (an audit batch): every row survives; the token moves into
    ``credentials`` with an expiry; ``people.token_hash`` is emptied."""
    from datetime import UTC, datetime

    from integrity.auth import token_hash

    migrate.upgrade(engine, MIGRATION_LOCATIONS, "0004")
    migrate.upgrade(engine, MIGRATION_LOCATIONS, "0100_audit")
    at = datetime(2026, 10, 1, tzinfo=UTC)
    meta = sa.MetaData()
    meta.reflect(engine)
    people, frames, samples, batches = (
        meta.tables[n] for n in ("people", "audit_frames", "audit_samples", "audit_batches")
    )
    with engine.begin() as conn:
        conn.execute(
            people.insert(),
            [
                {"person_id": "AU", "roles": "auditor", "token_hash": token_hash("itk_old"),
                 "created_at": at},
                {"person_id": "A1", "roles": "admin", "token_hash": None, "created_at": at},
            ],
        )  # fmt: skip
        conn.execute(
            frames.insert(),
            {"frame_id": 1, "frame_hash": "f" * 64, "period": "2026-10", "timezone": "UTC",
             "period_start": at, "period_end": at, "checkpoint": "c", "log_size": 0,
             "ratings": 0, "strata": "{}", "content": b"", "created_at": at, "created_by": "A1"},
        )  # fmt: skip
        conn.execute(
            samples.insert(),
            {"sample_id": 1, "frame_id": 1, "seed": "s" * 20, "algorithm": "a", "rate": "0.1",
             "min_per_stratum": 1, "drawn_at": at, "drawn_by": "A1"},
        )  # fmt: skip
        conn.execute(
            batches.insert(),
            {"batch_id": 1, "sample_id": 1, "seq": 1, "auditor_id": "AU", "created_at": at,
             "created_by": "A1"},
        )  # fmt: skip

    migrate.upgrade(engine, MIGRATION_LOCATIONS)
    assert core_diff(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(tables.people.c.token_hash)).scalars().all() == [None, None]
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.people)).scalar() == 2
        assert conn.execute(sa.select(batches.c.auditor_id)).scalar() == "AU"
        cred = conn.execute(sa.select(tables.credentials)).mappings().one()
    assert (cred["person_id"], cred["token_hash"]) == ("AU", token_hash("itk_old"))
    assert cred["created_by"] == "migration" and cred["revoked_at"] is None
    assert (cred["expires_at"] - cred["created_at"]).days == 90
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []


def test_webhook_leases_upgrade_moves_the_lease_out_of_the_sealed_endpoints(
    db_url: str, tmp_path: Path
) -> None:
    """0404_webhook_leases on a ledger with two endpoints, one held by a sender: the lease
    moves to ``webhook_leases``, ``webhook_endpoints`` loses the column, and ``integrity
    init`` then seals the endpoints as they stand; down again, the lease comes back."""
    from datetime import UTC, datetime

    from integrity.clock import FrozenClock
    from integrity.log import MerkleLog

    at = datetime(2026, 12, 1, tzinfo=UTC)
    held = datetime(2026, 12, 1, 0, 5, tzinfo=UTC)
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine, MIGRATION_LOCATIONS, "0403_case_deadlines")
        meta = sa.MetaData()
        meta.reflect(engine)
        endpoints = meta.tables["webhook_endpoints"]
        assert "webhook_leases" not in meta.tables
        row = {"url": "https://hooks.example.org/", "events": '["case.opened"]', "secret": "v1:x",
               "state": "enabled", "created_by": "operator", "created_at": at, "updated_at": at}  # fmt: skip
        with engine.begin() as conn:
            conn.execute(
                endpoints.insert(), [row | {"lease_until": held}, row | {"lease_until": None}]
            )
        migrate.upgrade(engine, MIGRATION_LOCATIONS)
        insp = sa.inspect(engine)
        assert "lease_until" not in {c["name"] for c in insp.get_columns("webhook_endpoints")}
        with engine.connect() as conn:
            leases = conn.execute(sa.text("SELECT endpoint_id, lease_until FROM webhook_leases"))
            [(eid, until)] = leases.all()
        assert eid == 1 and until is not None
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []

        settings = make_settings(tmp_path / "home", db_url)
        init_instance(settings, clock=FrozenClock(at))
        from bootstrap import open_ledger

        ledger = open_ledger(db_url)
        try:
            [seal] = ledger.events_about("table:webhook_endpoints")
            assert seal.actor == "init" and seal.evidence["rows"] == 2
            assert MerkleLog(ledger).verify(at).ok
        finally:
            ledger.engine.dispose()

        migrate.downgrade(engine, "0403_case_deadlines", MIGRATION_LOCATIONS)
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT lease_until FROM webhook_endpoints ORDER BY 1"))
            assert sum(v is not None for (v,) in got) == 1
    finally:
        engine.dispose()
