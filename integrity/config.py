"""The parts of a rule set the core reads itself: rubric, time zone, intake tolerances.

A rule set is one versioned TOML text (see ``rules/default_ruleset.toml``); its id is
derived from the text, so the id names exactly the configuration that decided. The
core parses only the sections it owns; ``rules`` parses the rest.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from integrity.errors import ConfigError
from integrity.model import Rubric


def rule_set_id(text: str) -> str:
    """``rs-`` and the first 12 hex digits of the SHA-256 of the rule set's text."""
    return "rs-" + hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class CoreConfig:
    rule_set_id: str
    name: str
    timezone: ZoneInfo
    rubric: Rubric
    max_clock_skew_s: float
    raw: dict[str, Any]


def parse_core_config(text: str) -> CoreConfig:
    """Read rubric, time zone and intake settings; raise ``ConfigError`` naming the field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"rule set is not valid TOML: {err}") from None
    try:
        tz = ZoneInfo(str(raw.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone: unknown time zone {raw.get('timezone')!r}") from None
    rub = raw.get("rubric", {})
    try:
        lo, hi = rub.get("scale", [1, 5])
        rubric = Rubric(
            weights={str(k): float(v) for k, v in rub["weights"].items()},
            scale_min=int(lo),
            scale_max=int(hi),
            low_score_below=float(rub.get("low_score_below", 3.0)),
        )
    except KeyError:
        raise ConfigError("rubric.weights: missing") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"rubric: {err}") from None
    intake = raw.get("intake", {})
    return CoreConfig(
        rule_set_id=rule_set_id(text),
        name=str(raw.get("name", "unnamed")),
        timezone=tz,
        rubric=rubric,
        max_clock_skew_s=float(intake.get("max_clock_skew_s", 300)),
        raw=raw,
    )
