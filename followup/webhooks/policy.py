"""The ``[webhooks]`` table of the rule set: timeouts, the retry schedule, the maximum age.

Every delay is in seconds. A failed delivery waits ``backoff_first_s`` before its second
attempt, twice as long before each later one, never more than ``backoff_max_s``; each
delay is scaled by a factor drawn uniformly from ``[1 - jitter, 1 + jitter]`` (from the
service's injected, seeded RNG) and capped again, so many endpoints failing together do
not retry in lockstep. A delivery still failing ``max_age_s`` after it was queued gets
one last attempt then and becomes a dead letter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from integrity.errors import ConfigError


@dataclass(frozen=True)
class WebhookPolicy:
    #: Seconds an attempt may take, connecting and answering together.
    timeout_s: float = 5.0
    #: Delay before the second attempt; each later delay doubles ...
    backoff_first_s: float = 30.0
    #: ... up to this.
    backoff_max_s: float = 3600.0
    #: Each delay is scaled by a uniform factor in [1 - jitter, 1 + jitter] (0 <= jitter < 1).
    jitter: float = 0.1
    #: A delivery failing this long after it was queued becomes a dead letter.
    max_age_s: float = 86400.0
    #: Deliveries sent to one endpoint in one round (in event order).
    batch: int = 100
    #: Ledger events the dispatcher reads per transaction, and transactions per round.
    dispatch_batch: int = 5000
    dispatch_rounds: int = 20
    #: How long an event id the cursor passed before it was committed is looked for
    #: (PostgreSQL hands out ids before commit): longer than any transaction that
    #: writes events while others are written.
    gap_grace_s: float = 600.0

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> WebhookPolicy:
        """Read ``[webhooks]``; unknown keys and bad values are a :class:`ConfigError`."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise ConfigError(
                f"[webhooks]: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for name, raw in section.items():
            want = int if known[name].type in ("int", int) else float
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise ConfigError(f"[webhooks].{name}: expected a number, got {raw!r}")
            if want is int and not float(raw).is_integer():
                raise ConfigError(f"[webhooks].{name}: expected a whole number, got {raw!r}")
            values[name] = want(raw)
        policy = cls(**values)
        policy._check()
        return policy

    def _check(self) -> None:
        for f in fields(self):
            if f.name != "jitter" and getattr(self, f.name) <= 0:
                raise ConfigError(f"[webhooks].{f.name}: must be positive")
        if not 0 <= self.jitter < 1:
            raise ConfigError("[webhooks].jitter: must be at least 0 and below 1")
        if self.backoff_max_s < self.backoff_first_s:
            raise ConfigError("[webhooks].backoff_max_s: must not be below backoff_first_s")

    def delay_s(self, failures: int, u: float) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1, 2, ...); ``u`` is a
        uniform draw in [0, 1) that sets the jitter."""
        base = min(self.backoff_max_s, self.backoff_first_s * 2.0 ** max(0, failures - 1))
        return min(self.backoff_max_s, base * (1.0 + self.jitter * (2.0 * u - 1.0)))

    @property
    def lease_s(self) -> float:
        """How long a sender holds an endpoint past its last recorded attempt: a sender
        that died lets go after this."""
        return 2 * self.timeout_s + 60.0
