"""The rule set: versioned TOML configuration of gates and detectors.

:func:`load_ruleset` parses the text once: the core's part (id, name, time zone,
rubric) by :func:`integrity.config.parse_core_config`, the limits here. The id is
derived from a hash of the raw text, so every edit is a new version and every
decision can name the version that made it. Sections this module does not know
(``[intake]``, ``[detect]`` ...) are kept, unvalidated, for the modules that own them.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from integrity.catalogue import rate_limit_reason
from integrity.config import CoreConfig, parse_core_config, read_toml
from integrity.errors import ConfigError

LIMIT_KEYS = ("device", "ip", "prefix", "device_window", "client")
LIMIT_SCOPES = ("default", "venue", "kiosk", "any")
LIMIT_ACTIONS = ("reject", "hold")
CALENDAR_DAY = "calendar_day"

# Which scopes can apply to which key (see rules/default_ruleset.toml): a `venue` rule
# is chosen by the rater's address, a `kiosk` rule by the rater's device.
_SCOPES_FOR_KEY = {
    "ip": ("default", "venue", "any"),
    "prefix": ("default", "venue", "any"),
    "device": ("default", "kiosk", "any"),
    "device_window": ("default", "kiosk", "any"),
    # the intake client that sent the rating (applies only to ratings that record one)
    "client": ("default", "any"),
}
_LIMIT_FIELDS = ("id", "key", "scope", "window", "limit", "action")
# A rule id becomes part of a storage key: keep it to a safe alphabet.
_RULE_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_KNOWN_TOP_LEVEL = ("name", "timezone", "rubric", "limits")


@dataclass(frozen=True)
class LimitRule:
    """One rate limit: at most ``limit`` ratings per ``key`` subject in a window.

    ``window_s`` is the length of a sliding window in seconds, or ``None`` for the
    calendar day in the rule set's time zone.
    """

    id: str
    key: str
    scope: str
    window_s: int | None
    limit: int
    action: str

    @property
    def calendar_day(self) -> bool:
        return self.window_s is None

    @property
    def reason(self) -> str:
        """The reason code a broken rule gives: ``rate_limit.<key>``."""
        return rate_limit_reason(self.key)


@dataclass(frozen=True)
class RuleSet:
    """A parsed rule set: the core's part (:class:`~integrity.config.CoreConfig`: id,
    name, time zone, rubric) and what ``rules`` owns (limits, and the other sections)."""

    core: CoreConfig
    limits: tuple[LimitRule, ...]

    @property
    def id(self) -> str:
        """``rs-`` + the first 12 hex digits of sha256(raw text)."""
        return self.core.rule_set_id

    @property
    def name(self) -> str:
        return self.core.name

    @property
    def tz(self) -> ZoneInfo:
        return self.core.timezone

    @property
    def timezone(self) -> str:
        return str(self.core.timezone)

    @property
    def raw_text(self) -> str:
        return self.core.text

    @property
    def extra(self) -> Mapping[str, Any]:
        """Top-level tables other than name, time zone, rubric and limits."""
        return {k: v for k, v in self.core.raw.items() if k not in _KNOWN_TOP_LEVEL}

    def limit(self, rule_id: str) -> LimitRule:
        """The limit rule with this id; ``KeyError`` if there is none."""
        for rule in self.limits:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def section(self, name: str) -> Mapping[str, Any]:
        """A top-level table this module does not interpret (``intake``), or ``{}``."""
        return self.core.section(name)


def default_ruleset_text() -> str:
    """The text of ``rules/default_ruleset.toml`` (package data)."""
    return importlib.resources.files("rules").joinpath("default_ruleset.toml").read_text("utf-8")


def default_ruleset() -> RuleSet:
    return load_ruleset(default_ruleset_text())


def load_ruleset(text: str) -> RuleSet:
    """Parse and validate a rule set; :class:`ConfigError` names the rule and field at fault."""
    doc = read_toml(text)
    raw_limits = doc.get("limits", [])
    if not isinstance(raw_limits, list):
        raise ConfigError("rule set field 'limits' must be an array of tables ([[limits]])")
    limits = tuple(_parse_limit(i, raw) for i, raw in enumerate(raw_limits))
    seen: set[str] = set()
    for rule in limits:
        if rule.id in seen:
            raise ConfigError(f"limit rule {rule.id!r}: field 'id': duplicate rule id")
        seen.add(rule.id)
    return RuleSet(core=parse_core_config(text, doc), limits=limits)


def _parse_limit(index: int, raw: Any) -> LimitRule:
    where = f"limits[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        raise ConfigError(
            f"{where}: field 'id': required, 1-64 characters of letters, digits, '_', '.', '-'"
        )
    where = f"limit rule {rule_id!r}"

    unknown = sorted(set(raw) - set(_LIMIT_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    for name in _LIMIT_FIELDS:
        if name not in raw:
            raise ConfigError(f"{where}: field {name!r} is required")

    key = raw["key"]
    if key not in LIMIT_KEYS:
        raise ConfigError(f"{where}: field 'key': {key!r} is not one of {', '.join(LIMIT_KEYS)}")
    scope = raw["scope"]
    if scope not in LIMIT_SCOPES:
        raise ConfigError(
            f"{where}: field 'scope': {scope!r} is not one of {', '.join(LIMIT_SCOPES)}"
        )
    if scope not in _SCOPES_FOR_KEY[key]:
        raise ConfigError(
            f"{where}: field 'scope': {scope!r} never applies to key {key!r} "
            f"(allowed: {', '.join(_SCOPES_FOR_KEY[key])})"
        )

    window = raw["window"]
    window_s: int | None
    if window == CALENDAR_DAY:
        window_s = None
    elif isinstance(window, int) and not isinstance(window, bool) and window > 0:
        window_s = window
    else:
        raise ConfigError(
            f"{where}: field 'window': {window!r} is neither a positive number of seconds "
            f"nor {CALENDAR_DAY!r}"
        )

    limit = raw["limit"]
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ConfigError(f"{where}: field 'limit': {limit!r} is not an integer >= 1")

    action = raw["action"]
    if action not in LIMIT_ACTIONS:
        raise ConfigError(
            f"{where}: field 'action': {action!r} is not one of {', '.join(LIMIT_ACTIONS)}"
        )
    return LimitRule(
        id=rule_id, key=key, scope=scope, window_s=window_s, limit=limit, action=action
    )
