"""The ``[audit]`` table of the rule set: sampling rate, minimums, tolerances.

Every field is optional; the defaults are 10 % per window (at least 5), 95 %
confidence and a 5 % tolerable deviation rate. A draw records the values it used, so a
later rule set never changes an existing sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from audit_sampling.sampler import as_rate
from integrity.errors import ConfigError

SUPERVISOR_ROLE = "admin"
AUDITOR_ROLE = "auditor"


@dataclass(frozen=True)
class AuditConfig:
    """Audit settings. Rates are exact fractions in (0, 1]; ``confidence`` in (0, 1)."""

    rate: Fraction = Fraction(1, 10)
    min_per_stratum: int = 5
    batch_size: int = 25
    confidence: float = 0.95
    tolerable_rate: float = 0.05
    expansion_step: Fraction = Fraction(1, 10)
    expansion_cap: Fraction = Fraction(1, 2)
    risk_extra: int = 0
    risk_min: float = 0.0
    min_seed_chars: int = 20

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> AuditConfig:
        """Parse ``[audit]``; ``ConfigError`` names the field at fault."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"audit: unknown field(s) {', '.join(unknown)}")
        out: dict[str, Any] = {}
        for name in ("rate", "expansion_step", "expansion_cap"):
            if name in section:
                try:
                    out[name] = as_rate(section[name], name)
                except ValueError as err:
                    raise ConfigError(f"audit.{name}: {err}") from None
        for name, lo in (
            ("min_per_stratum", 0),
            ("batch_size", 1),
            ("risk_extra", 0),
            ("min_seed_chars", 1),
        ):
            if name in section:
                n = section[name]
                if not isinstance(n, int) or isinstance(n, bool) or n < lo:
                    raise ConfigError(f"audit.{name}: expected an integer >= {lo}, got {n!r}")
                out[name] = n
        for name in ("confidence", "tolerable_rate", "risk_min"):
            if name in section:
                raw = section[name]
                if isinstance(raw, bool) or not isinstance(raw, int | float):
                    raise ConfigError(f"audit.{name}: expected a number, got {raw!r}")
                x = float(raw)
                ok = 0.0 < x < 1.0 if name == "confidence" else 0.0 <= x <= 1.0
                if not ok:
                    span = "(0, 1)" if name == "confidence" else "[0, 1]"
                    raise ConfigError(f"audit.{name}: {x} is outside {span}")
                out[name] = x
        return cls(**out)
