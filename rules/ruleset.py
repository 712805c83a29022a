"""The rule set: versioned TOML configuration of gates and detectors.

:func:`load_ruleset` parses and validates the text into frozen dataclasses. The rule
set's id is derived from a hash of the raw text, so every edit is a new version and
every decision can name the version that made it. Sections this module does not know
(``[intake]``, ``[detect]`` ...) are kept, unvalidated, in :attr:`RuleSet.extra` for the
modules that own them.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from integrity.errors import ConfigError
from integrity.model import Rubric

LIMIT_KEYS = ("device", "ip", "prefix", "device_window")
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
        return f"rate_limit.{self.key}"


@dataclass(frozen=True)
class RuleSet:
    """A parsed rule set. ``id`` is ``rs-`` + the first 12 hex digits of sha256(raw text)."""

    id: str
    name: str
    timezone: str
    rubric: Mapping[str, Any] = field(hash=False)
    limits: tuple[LimitRule, ...]
    raw_text: str = field(repr=False)
    extra: Mapping[str, Any] = field(hash=False, default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def limit(self, rule_id: str) -> LimitRule:
        """The limit rule with this id; ``KeyError`` if there is none."""
        for rule in self.limits:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def section(self, name: str) -> Mapping[str, Any]:
        """A top-level table this module does not interpret (``intake``), or ``{}``."""
        value = self.extra.get(name, {})
        return value if isinstance(value, Mapping) else {}

    def build_rubric(self) -> Rubric:
        """The ``[rubric]`` table as a :class:`~integrity.model.Rubric` (default scale 1–5)."""
        raw = self.rubric
        try:
            scale = raw.get("scale", [1, 5])
            lo, hi = (int(scale[0]), int(scale[1]))
            return Rubric(
                weights={str(k): float(v) for k, v in dict(raw["weights"]).items()},
                scale_min=lo,
                scale_max=hi,
                low_score_below=float(raw.get("low_score_below", 3.0)),
            )
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ConfigError(f"rule set {self.name!r}: bad [rubric]: {err}") from err


def ruleset_id(raw_text: str) -> str:
    """``rs-`` + the first 12 hex digits of the sha256 of the UTF-8 text."""
    return "rs-" + hashlib.sha256(raw_text.encode("utf-8")).hexdigest()[:12]


def default_ruleset_text() -> str:
    """The text of ``rules/default_ruleset.toml`` (package data)."""
    return importlib.resources.files("rules").joinpath("default_ruleset.toml").read_text("utf-8")


def default_ruleset() -> RuleSet:
    return load_ruleset(default_ruleset_text())


def load_ruleset(text: str) -> RuleSet:
    """Parse and validate a rule set; :class:`ConfigError` names the rule and field at fault."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"rule set is not valid TOML: {err}") from err

    name = doc.get("name", "unnamed")
    if not isinstance(name, str) or not name:
        raise ConfigError("rule set field 'name' must be a non-empty string")

    tz = doc.get("timezone", "UTC")  # the core (integrity.config) defaults to UTC too
    if not isinstance(tz, str) or not tz:
        raise ConfigError("rule set field 'timezone' must be an IANA zone, e.g. 'Asia/Shanghai'")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ConfigError(f"rule set field 'timezone': unknown time zone {tz!r}") from err

    rubric = doc.get("rubric", {})
    if not isinstance(rubric, dict):
        raise ConfigError("rule set field 'rubric' must be a table")

    raw_limits = doc.get("limits", [])
    if not isinstance(raw_limits, list):
        raise ConfigError("rule set field 'limits' must be an array of tables ([[limits]])")
    limits = tuple(_parse_limit(i, raw) for i, raw in enumerate(raw_limits))
    seen: set[str] = set()
    for rule in limits:
        if rule.id in seen:
            raise ConfigError(f"limit rule {rule.id!r}: field 'id': duplicate rule id")
        seen.add(rule.id)

    extra = {k: v for k, v in doc.items() if k not in _KNOWN_TOP_LEVEL}
    return RuleSet(
        id=ruleset_id(text),
        name=name,
        timezone=tz,
        rubric=rubric,
        limits=limits,
        raw_text=text,
        extra=extra,
    )


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
