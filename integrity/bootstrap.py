"""The composition root: settings → adapters → services. Only this module and
``cli.py`` import every package; services never read environment variables.

An *instance* is a home folder (``INTEGRITY_HOME``, default ``./.integrity``)
holding the secret key for pseudonymisation and, on embedded defaults, the SQLite
ledger and the in-process limiter's counters. Production points ``--db`` at
PostgreSQL and ``--redis`` at Redis; the secret key file stays off the database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from integrity import migrate
from integrity.adapters.sql import SqlLedger, make_engine, translate_errors
from integrity.clock import Clock, SystemClock
from integrity.config import CoreConfig, parse_core_config
from integrity.errors import ConfigError
from integrity.hook import ValidationHook
from integrity.log import MerkleLog
from integrity.model import Decision
from integrity.ports import Limiter
from integrity.pseudonym import Pseudonymiser, write_secret
from rules.ratelimit import RateLimitGate, limiter_from_url
from rules.ruleset import RuleSet, default_ruleset_text, load_ruleset

DEFAULT_HOME = ".integrity"


@dataclass(frozen=True)
class Settings:
    """Where an instance lives. Built from options and environment by the CLI only."""

    home: Path
    db_url: str
    limiter_url: str
    secret_file: Path
    namespace: str = "integrity"

    @classmethod
    def resolve(
        cls,
        home: str | os.PathLike[str] | None = None,
        db: str | None = None,
        redis: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Settings:
        env = dict(os.environ) if env is None else env
        h = Path(home or env.get("INTEGRITY_HOME") or DEFAULT_HOME).absolute()
        db_url = db or env.get("INTEGRITY_DB") or f"sqlite:///{h / 'ledger.db'}"
        limiter = redis or env.get("INTEGRITY_REDIS") or f"memory://{h / 'limiter.json'}"
        secret = Path(env.get("INTEGRITY_SECRET_FILE") or h / "secret.key")
        return cls(h, db_url, limiter, secret, env.get("INTEGRITY_NAMESPACE", "integrity"))

    @property
    def embedded_db(self) -> bool:
        return self.db_url.startswith("sqlite")


@dataclass
class App:
    """Everything one process needs, wired once."""

    settings: Settings
    ledger: SqlLedger
    log: MerkleLog
    ruleset: RuleSet
    core: CoreConfig
    limiter: Limiter
    hook: ValidationHook
    pseudonymiser: Pseudonymiser
    clock: Clock
    extras: dict[str, Any] = field(default_factory=dict)

    def validate(self, rating: Any, *, replay: bool = False) -> Decision:
        """The Python API of the validation hook: judge and record one rating."""
        return self.hook.validate(rating, replay=replay)

    def close(self) -> None:
        """Persist the embedded limiter's counters and release connections."""
        snapshot = getattr(self.limiter, "snapshot", None)
        if snapshot is not None and getattr(self.limiter, "path", None) is not None:
            snapshot()
        close = getattr(self.limiter, "close", None)
        if close is not None:
            close()
        self.ledger.engine.dispose()

    def detector(self) -> Any:
        """The batch detection service (``rules.detectors``) wired to this instance."""
        from rules.detectors.service import DetectService

        return DetectService.from_app(self)

    def reload_venues(self) -> None:
        """Rebuild the rate-limit gate after the venue registry changed."""
        self.hook.gates = [
            RateLimitGate(
                self.ruleset, self.limiter, self.ledger.venue_registry(), self.settings.namespace
            )
        ]

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
            migrate.upgrade(engine)
        ledger = SqlLedger(engine)
        active = ledger.active_rule_set()
        if rules_text is None and active is not None:
            return active[0]
        text = rules_text or default_ruleset_text()
        rs = load_ruleset(text)
        parse_core_config(text)
        ledger.activate_rule_set(rs.id, rs.name, text, clock.now())
        return rs.id
    finally:
        engine.dispose()


def open_app(settings: Settings, clock: Clock | None = None) -> App:
    """Wire an initialised instance; ``ConfigError`` tells how to create one."""
    clock = clock or SystemClock()
    if not settings.secret_file.exists():
        raise ConfigError(
            f"no instance at {settings.home} (no secret key {settings.secret_file}); run `integrity init` first"
        )
    engine = make_engine(settings.db_url)
    ledger = SqlLedger(engine)
    with translate_errors():
        if not sa.inspect(engine).has_table("rule_sets"):
            raise ConfigError(
                f"database {engine.url!r} has no ledger schema; run `integrity init` first"
            )
        active = ledger.active_rule_set()
    if active is None:
        raise ConfigError("no active rule set; run `integrity init` first")
    _, text = active
    ruleset = load_ruleset(text)
    core = parse_core_config(text)
    limiter = limiter_from_url(settings.limiter_url, namespace=settings.namespace, clock=clock)
    pseudonymiser = Pseudonymiser.from_file(settings.secret_file)
    gate = RateLimitGate(ruleset, limiter, ledger.venue_registry(), settings.namespace)
    hook = ValidationHook(ledger, core, [gate], pseudonymiser, clock)
    return App(
        settings, ledger, MerkleLog(ledger), ruleset, core, limiter, hook, pseudonymiser, clock
    )


def connect(
    home: str | os.PathLike[str] | None = None,
    db: str | None = None,
    redis: str | None = None,
    clock: Clock | None = None,
) -> App:
    """Open an instance for in-process use (initialising it on first use).

    >>> with connect(db="postgresql://127.0.0.1/ratings", redis="redis://127.0.0.1") as app:
    ...     decision = app.validate(rating_dict)
    """
    settings = Settings.resolve(home=home, db=db, redis=redis)
    init_instance(settings, clock=clock)
    return open_app(settings, clock=clock)


def asgi_app(app: App | None = None) -> Any:
    """The full HTTP application (intake + auditor API) over ``app``.

    With no ``app`` one is opened from the environment (``INTEGRITY_HOME``,
    ``INTEGRITY_DB``, ``INTEGRITY_REDIS``) and lives as long as the process: the
    factory uvicorn calls in each worker process of ``integrity serve --workers N``.
    """
    from audit_sampling.context import AuditContext
    from audit_sampling.http import audit_router
    from integrity.http import create_app

    app = app or open_app(Settings.resolve())
    return create_app(app, routers=[audit_router(AuditContext.from_app(app))])
