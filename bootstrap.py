"""The composition root: settings -> adapters -> services. The one place that wires.

Only this module (and ``cli.py`` above it) imports every package. It picks adapters
by URL (``sqlite://``, ``postgresql://``; ``memory://``, ``redis://``,
``redis+sentinel://``), builds the core's :class:`~integrity.app.App`, and registers a
factory for each package's service, so commands, HTTP routers and scripts ask for a
service by type (``app.get(AppealService)``) and never build one themselves.

Python API::

    from bootstrap import connect

    with connect(db="postgresql://ledger@db/ratings", redis="redis://cache:6379/0") as app:
        decision = app.validate({"ticket_id": "T-1", ...})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from appeals.service import AppealService
from audit_sampling.context import AuditContext
from integrity import migrate
from integrity.adapters.registry import SqlRegistryStore
from integrity.adapters.sql import SqlLedger, make_engine
from integrity.app import App, Settings
from integrity.catalogue import Kind
from integrity.clock import Clock, SystemClock
from integrity.errors import ConfigError
from integrity.hook import ValidationHook
from integrity.log import MerkleLog
from integrity.people import People, StaffRegistry
from integrity.ports import Gate
from integrity.pseudonym import Pseudonymiser, write_secret
from integrity.registry import RegistryService
from integrity.reports import ReportService
from integrity.sqlkit import translate_errors
from rules.detectors.review import ReviewService
from rules.detectors.service import DetectService
from rules.ratelimit import RateLimitGate, limiter_from_url
from rules.realtime import KioskGate, RegistryGate, Snapshot, TimeGate
from rules.ruleset import default_ruleset_text, load_ruleset

#: Each package's own migration branch (the core's revisions come first).
MIGRATION_LOCATIONS = tuple(
    Path(__import__(pkg).__file__ or "").parent / "migrations"
    for pkg in ("audit_sampling", "appeals", "rules")
)


def init_instance(
    settings: Settings, rules_text: str | None = None, clock: Clock | None = None
) -> str:
    """Create (or upgrade) an instance: home, secret key, schema, rule set. Idempotent.

    Returns the active rule set id. A given ``rules_text`` becomes the active rule set;
    otherwise the default is activated only when none is active yet.
    """
    clock = clock or SystemClock()
    settings.home.mkdir(parents=True, exist_ok=True)
    if not settings.secret_file.exists():
        write_secret(settings.secret_file)
    engine = make_engine(settings.db_url)
    try:
        with translate_errors():
            migrate.upgrade(engine, MIGRATION_LOCATIONS)
        ledger = SqlLedger(engine)
        active = ledger.active_rule_set()
        if rules_text is None and active is not None:
            return active[0]
        rs = load_ruleset(rules_text or default_ruleset_text())
        ledger.activate_rule_set(rs.id, rs.name, rs.raw_text, clock.now())
        return rs.id
    finally:
        engine.dispose()


def open_app(settings: Settings, clock: Clock | None = None) -> App:
    """Wire an initialised instance; ``ConfigError`` tells how to create one."""
    clock = clock or SystemClock()
    if not settings.secret_file.exists():
        raise ConfigError(
            f"no instance at {settings.home} (no secret key {settings.secret_file}); "
            "run `integrity init` first"
        )
    ledger = SqlLedger(make_engine(settings.db_url))
    if not ledger.has_tables("rule_sets"):
        raise ConfigError(
            f"database {ledger.engine.url!r} has no ledger schema; run `integrity init` first"
        )
    active = ledger.active_rule_set()
    if active is None:
        raise ConfigError("no active rule set; run `integrity init` first")
    ruleset = load_ruleset(active[1])
    limiter = limiter_from_url(settings.limiter_url, namespace=settings.namespace, clock=clock)
    venues = Snapshot(ledger.venue_registry, lambda: ledger.last_event_id(Kind.VENUES_LOADED))
    registry_store = SqlRegistryStore(ledger)
    registry = Snapshot(registry_store.load, registry_store.version)
    gates: list[Gate] = [
        RateLimitGate(ruleset, limiter, venues, settings.namespace),
        KioskGate(venues),
        TimeGate(ruleset.core.max_clock_skew_s),
        RegistryGate.from_section(registry, ruleset.tz, ruleset.section("registry")),
    ]
    hook = ValidationHook(
        ledger, ruleset.core, gates, Pseudonymiser.from_file(settings.secret_file), clock
    )
    app = App(
        settings=settings,
        ledger=ledger,
        log=MerkleLog(ledger),
        core=ruleset.core,
        limiter=limiter,
        hook=hook,
        pseudonymiser=hook.pseudonymiser,
        people=People(ledger),
        clock=clock,
        rules=ruleset,
    )
    app.on_close.append(lambda: _close_limiter(limiter))
    app.factories.update(
        {
            StaffRegistry: lambda a: StaffRegistry(a.people, a.clock),
            ReportService: ReportService.from_app,
            RegistryService: lambda a: RegistryService(
                SqlRegistryStore(a.ledger), a.people, a.clock
            ),
            DetectService: DetectService.from_app,
            ReviewService: lambda a: ReviewService(a.ledger, a.people, a.clock, a.core.rule_set_id),
            AppealService: AppealService.from_app,
            AuditContext: AuditContext.from_app,
        }
    )
    return app


def _close_limiter(limiter: Any) -> None:
    """Persist the embedded limiter's counters (when it keeps a file) and close it."""
    snapshot = getattr(limiter, "snapshot", None)
    if snapshot is not None and getattr(limiter, "path", None) is not None:
        snapshot()
    close = getattr(limiter, "close", None)
    if close is not None:
        close()


def connect(
    home: str | os.PathLike[str] | None = None,
    db: str | None = None,
    redis: str | None = None,
    clock: Clock | None = None,
) -> App:
    """Open an instance for in-process use (initialising it on first use)."""
    settings = Settings.resolve(home=home, db=db, redis=redis)
    init_instance(settings, clock=clock)
    return open_app(settings, clock=clock)


def asgi_app(app: App | None = None) -> Any:
    """The full HTTP application (intake + auditor API) over ``app``.

    With no ``app`` one is opened from the environment (``INTEGRITY_HOME``,
    ``INTEGRITY_DB``, ``INTEGRITY_REDIS``) and lives as long as the process: the
    factory uvicorn calls in each worker process of ``integrity serve --workers N``.
    """
    from audit_sampling.http import audit_router
    from integrity.http import create_app

    app = app or open_app(Settings.resolve())
    return create_app(app, routers=[audit_router(app.get(AuditContext))])
