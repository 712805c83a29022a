"""An opened instance: the core's parts, wired once, and the services packages add.

An *instance* is a home folder (``INTEGRITY_HOME``, default ``./.integrity``)
holding the secret key for pseudonymisation and, on embedded defaults, the SQLite
ledger (the in-process limiter keeps nothing on disk: its counters are rebuilt from
the ledger when the instance opens). Production points ``--db`` at
PostgreSQL and ``--redis`` at Redis; the secret key file stays off the database.

The composition root (``bootstrap.py``, beside ``cli.py``) builds an :class:`App`
and registers a factory for each package's service; commands, HTTP routers and
scripts ask for a service by its type (``app.get(AppealService)``) and never build
one themselves. Services are built on first use, once per App.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from integrity.adapters.sql import SqlLedger
from integrity.clock import Clock
from integrity.config import CoreConfig
from integrity.forking import fork_pool
from integrity.hook import ValidationHook
from integrity.log import MerkleLog, adopt, seal_adopted
from integrity.model import Decision
from integrity.people import People
from integrity.ports import Limiter
from integrity.pseudonym import Pseudonymiser

DEFAULT_HOME = ".integrity"
T = TypeVar("T")


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
        limiter = redis or env.get("INTEGRITY_REDIS") or "memory://"
        secret = Path(env.get("INTEGRITY_SECRET_FILE") or h / "secret.key")
        return cls(h, db_url, limiter, secret, env.get("INTEGRITY_NAMESPACE", "integrity"))

    @property
    def embedded_db(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def embedded_limiter(self) -> bool:
        return self.limiter_url.startswith("memory")


@dataclass
class App:
    """Everything one process needs, wired once by the composition root.

    Sealing is a policy of the process, not of each command: when the App closes,
    every event its units of work committed is sealed into the Merkle log (``serve``
    also seals every few seconds in the background).
    """

    settings: Settings
    ledger: SqlLedger
    log: MerkleLog
    core: CoreConfig
    limiter: Limiter
    hook: ValidationHook
    pseudonymiser: Pseudonymiser
    people: People
    clock: Clock
    rules: Any  # the parsed rule set (``rules.ruleset.RuleSet``); the core reads ``core``
    #: Keyed by the service's type, or by its ``"module:Class"`` name for a service
    #: whose module is heavy to import: it is imported by whoever asks for it.
    factories: dict[type | str, Callable[[App], Any]] = field(default_factory=dict)
    _built: dict[type, Any] = field(default_factory=dict)
    on_close: list[Callable[[], None]] = field(default_factory=list)
    #: Work the server's background round runs besides sealing (each called with the
    #: round's time, e.g. the webhook outbox); registered by the composition root.
    background: list[Callable[[datetime], object]] = field(default_factory=list)
    #: Work that follows from what this process wrote, run when it closes, before
    #: sealing, only if it wrote (e.g. the low-score alerts' projection); registered by
    #: the composition root. Each catches up from the ledger and may run any number of
    #: times, in a forked process too (``integrity ingest`` runs them beside its batch,
    #: on that process's own connections).
    closing: list[Callable[[], None]] = field(default_factory=list)

    def get(self, kind: type[T]) -> T:
        """The service of type ``kind``, built on first use by its registered factory."""
        if kind not in self._built:
            factory = self.factories.get(kind) or self.factories.get(
                f"{kind.__module__}:{kind.__qualname__}"
            )
            if factory is None:
                raise LookupError(f"no service {kind.__name__} is wired")
            self._built[kind] = factory(self)
        return cast(T, self._built[kind])

    def validate(
        self, rating: Any, *, replay: bool = False, client_id: str | None = None
    ) -> Decision:
        """The Python API of the validation hook: judge and record one rating
        (``client_id``: who sent it, recorded with it; see ``integrity clients``)."""
        return self.hook.validate(rating, replay=replay, client_id=client_id)

    def close(self) -> None:
        """Finish what this process wrote (the ``closing`` hooks), seal it, run the close
        hooks, release connections."""
        try:
            if self.ledger.written:
                self._finish_and_seal()
        finally:
            for hook in reversed(self.on_close):
                hook()
            self.ledger.engine.dispose()

    def _finish_and_seal(self) -> None:
        """The ``closing`` hooks, then a seal of everything. What this process wrote is
        sealed meanwhile, on connections of its own, in a forked process where one can
        be made (:mod:`integrity.forking`: hashing leaves is CPU work, and so are the
        closing hooks; a sealer hashes before it takes the log's head, so on SQLite it
        waits for the write lock only to write), else on PostgreSQL in a thread (the
        closing hooks and the sealer lock different things) and on SQLite after the
        hooks. The last seal is left with only the events the hooks wrote."""
        pool = fork_pool(adopt, (self.log,)) if self.closing else None
        if pool is None and (self.ledger.dialect != "postgresql" or not self.closing):
            for task in self.closing:
                task()
            self.log.seal(self.clock.now())
            return
        with pool or ThreadPoolExecutor(1, thread_name_prefix="sealer") as sealer:
            seal = seal_adopted if pool is not None else self.log.seal
            first = sealer.submit(seal, self.clock.now())
            try:
                for task in self.closing:
                    task()
            finally:
                first.result()
        self.log.seal(self.clock.now())

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
