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

import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from appeals.figures import PeriodAppeals
from appeals.repository import AppealRepository
from appeals.service import AppealService
from audit_sampling import tables as audit_tables
from audit_sampling.context import AuditContext
from audit_sampling.figures import PeriodAudit
from followup.alerts import AlertFigures, AlertService, AlertView
from followup.cases import CaseService, MonthClose
from followup.webhooks import WebhookService
from followup.webhooks import tables as webhook_tables
from integrity.adapters.clients import SqlClientStore
from integrity.adapters.periods import SqlPeriodStore
from integrity.adapters.registry import SqlRegistryStore
from integrity.adapters.sql import SqlLedger, make_engine
from integrity.adapters.tickets import SqlTicketStore
from integrity.app import App, Settings
from integrity.auth import Credentials
from integrity.catalogue import Kind
from integrity.clients import IntakeClients
from integrity.clock import Clock, SystemClock
from integrity.config import rule_set_id
from integrity.errors import ConfigError, EngineError
from integrity.hook import ValidationHook
from integrity.log import MerkleLog
from integrity.people import People, StaffRegistry
from integrity.periods import ClosedPeriods
from integrity.ports import Gate
from integrity.pseudonym import Pseudonymiser, write_secret
from integrity.receipts import FollowUpView, ReceiptService
from integrity.registry import RegistryService
from integrity.reports import AppealFigures, AuditFigures, FollowupFigures, ReportService
from integrity.sqlkit import translate_errors
from integrity.tickets import ServiceRecords, TicketPolicy
from publishing import Pages, Releases
from rules.detectors.review import ReviewService
from rules.ratelimit import MemoryLimiter, RateLimitGate, limiter_from_url
from rules.ratelimit.rebuild import rebuild, replay_lateness_ms
from rules.realtime import KioskGate, PeriodGate, RegistryGate, Snapshot, TicketGate, TimeGate
from rules.ruleset import default_ruleset_text, load_ruleset

log = logging.getLogger("integrity.bootstrap")

#: Each package's own migration branch (the core's revisions come first).
MIGRATION_LOCATIONS = tuple(
    Path(__import__(pkg).__file__ or "").parent / "migrations"
    for pkg in ("audit_sampling", "appeals", "rules", "followup")
)

#: Each package's configuration tables, registered with every ledger this root opens
#: (the core's own are in ``integrity.config_tables.CORE_CONFIG_TABLES``).
PACKAGE_CONFIG_TABLES: tuple[str, ...] = (
    *audit_tables.CONFIG_TABLES,
    *webhook_tables.CONFIG_TABLES,
)


def open_ledger(db_url: str) -> SqlLedger:
    """The ledger on ``db_url``, with every package's configuration tables registered."""
    ledger = SqlLedger(make_engine(db_url))
    ledger.config_tables.register(*PACKAGE_CONFIG_TABLES)
    return ledger


def init_instance(
    settings: Settings, rules_text: str | None = None, clock: Clock | None = None
) -> str:
    """Create (or upgrade) an instance: home, secret key, schema, rule set. Idempotent.

    Returns the active rule set id. A given ``rules_text`` becomes the active rule set;
    otherwise the default is activated only when none is active yet. A new home folder
    is created 0700, the secret key and the SQLite ledger file 0600. Configuration
    tables that have rows but were never sealed (an instance from before seals) are
    sealed as they stand (``SqlLedger.adopt_config``).
    """
    clock = clock or SystemClock()
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not settings.secret_file.exists():
        write_secret(settings.secret_file)
    from integrity import migrate  # Alembic: only creating or upgrading needs it

    ledger = open_ledger(settings.db_url)
    try:
        with translate_errors():
            migrate.upgrade(ledger.engine, MIGRATION_LOCATIONS)
        ledger.adopt_config(clock.now())
        active = ledger.active_rule_set()
        if rules_text is None and active is not None:
            return active[0]
        rs = load_ruleset(rules_text or default_ruleset_text())
        ledger.activate_rule_set(rs.id, rs.name, rs.raw_text, clock.now())
        return rs.id
    finally:
        ledger.engine.dispose()


def open_app(settings: Settings, clock: Clock | None = None, *, inspect: bool = False) -> App:
    """Wire an initialised instance; ``ConfigError`` tells how to create one.

    Refuses (``ConfigError``) a stored rule set whose text does not hash to its id,
    unless ``inspect``: the ledger's own commands (verify, seal, checkpoint, prove)
    open it anyway, so the operator can see what was changed.
    """
    clock = clock or SystemClock()
    if not settings.secret_file.exists():
        raise ConfigError(
            f"no instance at {settings.home} (no secret key {settings.secret_file}); "
            "run `integrity init` first"
        )
    ledger = open_ledger(settings.db_url)
    if not ledger.has_tables("rule_sets"):
        raise ConfigError(
            f"database {ledger.engine.url!r} has no ledger schema; run `integrity init` first"
        )
    active = ledger.active_rule_set()
    if active is None:
        raise ConfigError("no active rule set; run `integrity init` first")
    if rule_set_id(active[1]) != active[0] and not inspect:
        ledger.engine.dispose()
        raise ConfigError(
            f"the stored text of the active rule set {active[0]} does not hash to its id "
            f"(it hashes to {rule_set_id(active[1])}): it was edited in the database; "
            "refusing to start. Run `integrity ledger verify` to see what changed, restore "
            "the rule set, or activate a new one with `integrity init --rules FILE`"
        )
    ruleset = load_ruleset(active[1])
    limiter = limiter_from_url(settings.limiter_url, namespace=settings.namespace, clock=clock)
    venues = Snapshot(ledger.venue_registry, lambda: ledger.last_event_id(Kind.VENUES_LOADED))
    registry_store = SqlRegistryStore(ledger)
    registry = Snapshot(registry_store.load, registry_store.version)
    periods = ClosedPeriods(SqlPeriodStore(ledger), ruleset.tz)
    tickets = SqlTicketStore(ledger)
    ticket_policy = TicketPolicy.from_section(ruleset.section("tickets"))
    rate_limit = RateLimitGate(ruleset, limiter, venues, settings.namespace)
    if isinstance(limiter, MemoryLimiter):
        # Nothing on disk: the counters are a function of the ledger, so a crash can
        # never leave them disagreeing with the ratings written. Rebuilt before the
        # first limit is checked, not at open: commands that never check one (detect,
        # reports, review) do not read the recent ratings for it.
        limiter.defer(lambda: rebuild(ledger, rate_limit, limiter))
        # ... and a replay's keys are dropped by replayed time too, so a long replay
        # holds what its busiest days need, not every key it touched
        limiter.bound_replay(replay_lateness_ms(rate_limit))
    gates: list[Gate] = [
        rate_limit,
        KioskGate(venues),
        TimeGate(ruleset.core.max_clock_skew_s, ruleset.core.max_age_s),
        RegistryGate.from_section(registry, ruleset.tz, ruleset.section("registry")),
        PeriodGate(periods),
        TicketGate(tickets, ticket_policy),
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
            ClosedPeriods: lambda a: periods,
            StaffRegistry: lambda a: StaffRegistry(a.people, a.clock),
            Credentials: lambda a: Credentials(a.people, a.clock, a.core.timezone),
            ReportService: ReportService.from_app,
            RegistryService: lambda a: RegistryService(
                SqlRegistryStore(a.ledger), a.people, a.clock
            ),
            # detection loads numpy, pandas and scipy: imported by whoever asks for it
            "rules.detectors.service:DetectService": _detect_service,
            ReviewService: ReviewService.from_app,
            AppealService: AppealService.from_app,
            AuditContext: AuditContext.from_app,
            # the period's audit estimates and appeals, for pages and public releases
            AuditFigures: lambda a: PeriodAudit(a.get(AuditContext)),
            AppealFigures: lambda a: PeriodAppeals(AppealRepository(a.ledger), a.ledger, a.clock),
            Pages: Pages.from_app,
            Releases: Releases.from_app,
            WebhookService: WebhookService.from_app,
            AlertService: AlertService.from_app,
            AlertView: AlertView.from_app,
            FollowupFigures: AlertFigures.from_app,
            # the month's close (frozen figures, rectification cases) and the cases
            MonthClose: MonthClose.from_app,
            CaseService: CaseService.from_app,
            # hall scopes resolve through the registry the gates keep (reloaded with them)
            IntakeClients: lambda a: IntakeClients(
                SqlClientStore(a.ledger), a.clock, a.core.timezone, lambda: registry.registry
            ),
            ServiceRecords: lambda a: ServiceRecords(
                a.ledger, tickets, ticket_policy, a.clock, a.core.rule_set_id
            ),
            # the rater's receipt reads where the alert of a low score stands
            FollowUpView: lambda a: a.get(AlertView),
            ReceiptService: ReceiptService.from_app,
        }
    )

    def alerts_round(now: datetime) -> object:
        """The low-score alerts' projection and deadlines in ``serve``'s background
        thread (before the outbox, so new alert events go out in the same round)."""
        return app.get(AlertService).round(now)

    def alerts_sync() -> None:
        """Alerts for what this process wrote, before it seals (a failure is logged:
        the next process, or ``serve``'s round, catches up)."""
        try:
            app.get(AlertService).sync()
        except EngineError as err:
            log.warning("low-score alerts not brought up to date: %s", err)

    def cases_round(now: datetime) -> object:
        """Rectification cases past their due date, marked and escalated in ``serve``'s
        background thread (before the outbox, so their events go out in the same round)."""
        return app.get(CaseService).round(now)

    app.background.append(alerts_round)
    app.background.append(cases_round)
    app.closing.append(alerts_sync)

    def webhook_outbox(now: datetime) -> object:
        """The webhook outbox's round in ``serve``'s background thread."""
        return app.get(WebhookService).round(now)

    def tickets_settle(now: datetime) -> object:
        """Unknown-ticket holds whose wait ran out, in ``serve``'s background thread."""
        return app.get(ServiceRecords).background(now)

    app.background.append(webhook_outbox)
    app.background.append(tickets_settle)
    return app


def _detect_service(app: App) -> Any:
    from rules.detectors.service import DetectService

    return DetectService.from_app(app)


def _close_limiter(limiter: Any) -> None:
    """Close the limiter's connections (the in-process one keeps nothing to save)."""
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


def asgi_app(
    app: App | None = None, cli_root: Any = None, *, open_intake: bool | None = None
) -> Any:
    """The full HTTP application (intake, auditor API, person commands) over ``app``.

    With no ``app`` one is opened from the environment (``INTEGRITY_HOME``,
    ``INTEGRITY_DB``, ``INTEGRITY_REDIS``) and lives as long as the process: the
    factory uvicorn calls in each worker process of ``integrity serve --workers N``.
    ``cli_root``: the ``integrity`` click group whose person commands
    ``POST /v1/commands`` runs (default: ``cli.main``).
    ``open_intake`` (default: ``INTEGRITY_OPEN_INTAKE=1``) accepts ratings without a
    client key (``serve --open-intake``, local trials only).
    """
    from audit_sampling.http import audit_router
    from integrity.http import create_app
    from integrity.remote import CommandRunner
    from publishing.http import reports_router

    if cli_root is None:
        from cli import main as cli_root
    if open_intake is None:
        open_intake = os.environ.get("INTEGRITY_OPEN_INTAKE") == "1"
    app = app or open_app(Settings.resolve())
    return create_app(
        app,
        routers=[
            audit_router(app.get(AuditContext)),
            reports_router(app.get(Pages), app.get(Credentials)),
        ],
        commands=CommandRunner(cli_root, app),
        open_intake=open_intake,
    )
