"""The rule set as the core reads it: id, name, time zone, rubric, intake tolerances
(``[intake] max_clock_skew_s``, ``max_age_s``), the working-day calendar (``[calendar]``,
see :mod:`integrity.calendar`), and the HTTP intake's request bounds (``[http]``).

A rule set is one versioned TOML text (see ``rules/default_ruleset.toml``); its id is
derived from the text, so the id names exactly the configuration that decided. The
text is parsed once, here; :func:`rules.ruleset.load_ruleset` builds on the result
and validates the sections ``rules`` owns (limits, detection, ...).
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from integrity.calendar import WorkingCalendar
from integrity.errors import ConfigError
from integrity.model import DEFAULT_RUBRIC, Rubric

#: ``[intake] max_age_s`` when the rule set does not say: seven days.
DEFAULT_MAX_AGE_S = 7 * 86400


def rule_set_id(text: str) -> str:
    """``rs-`` and the first 12 hex digits of the SHA-256 of the rule set's UTF-8 text."""
    return "rs-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class HttpLimits:
    """Bounds of an HTTP intake request (the rule set's ``[http]`` table).

    ``max_body_bytes``: the largest body of any request but a batch (one rating);
    ``max_batch_bytes``: the largest body of ``POST /v1/ratings:batch``;
    ``max_batch_items``: the most ratings in one batch. A larger body is answered 413
    before it is read; a batch with more items is answered 413 when its item past the
    limit is reached, without decoding the rest.
    """

    max_body_bytes: int = 1_048_576
    max_batch_bytes: int = 8_388_608
    max_batch_items: int = 1000


@dataclass(frozen=True)
class CoreConfig:
    rule_set_id: str
    name: str
    timezone: ZoneInfo
    rubric: Rubric
    max_clock_skew_s: float
    text: str = field(repr=False)
    raw: Mapping[str, Any] = field(repr=False, hash=False)
    calendar: WorkingCalendar = field(default_factory=WorkingCalendar)
    #: A live rating submitted or served longer ago than this at receipt is held (s).
    max_age_s: float = DEFAULT_MAX_AGE_S
    http: HttpLimits = field(default_factory=HttpLimits)

    def section(self, name: str) -> Mapping[str, Any]:
        """A top-level table (``intake``, ``detect`` ...), or ``{}`` when absent."""
        value = self.raw.get(name, {})
        return value if isinstance(value, Mapping) else {}


def read_toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"rule set is not valid TOML: {err}") from None


def parse_core_config(text: str, doc: Mapping[str, Any] | None = None) -> CoreConfig:
    """Read name, time zone, rubric, intake settings and the calendar; ``ConfigError``
    names the field.

    ``doc`` is the text's parsed TOML when the caller has it already. A rule set
    without a ``[rubric]`` table uses the default rubric.
    """
    raw = read_toml(text) if doc is None else doc
    name = raw.get("name", "unnamed")
    if not isinstance(name, str) or not name:
        raise ConfigError("rule set field 'name' must be a non-empty string")
    tz_name = raw.get("timezone", "UTC")
    if not isinstance(tz_name, str) or not tz_name:
        raise ConfigError("rule set field 'timezone' must be an IANA zone, e.g. 'Asia/Shanghai'")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"rule set field 'timezone': unknown time zone {tz_name!r}") from None
    rubric = _rubric(raw.get("rubric"))
    intake = raw.get("intake", {})
    if not isinstance(intake, Mapping):
        raise ConfigError("rule set field 'intake' must be a table")
    skew = _seconds(intake, "max_clock_skew_s", 300)
    max_age = _seconds(intake, "max_age_s", DEFAULT_MAX_AGE_S)
    if max_age <= 0:
        raise ConfigError("[intake] max_age_s: expected a positive number of seconds")
    cal = raw.get("calendar", {})
    if not isinstance(cal, Mapping):
        raise ConfigError("rule set field 'calendar' must be a table")
    return CoreConfig(
        rule_set_id=rule_set_id(text),
        name=name,
        timezone=tz,
        rubric=rubric,
        max_clock_skew_s=skew,
        text=text,
        raw=raw,
        calendar=WorkingCalendar.from_section(cal),
        max_age_s=max_age,
        http=_http(raw.get("http", {})),
    )


def _seconds(intake: Mapping[str, Any], key: str, default: float) -> float:
    value = intake.get(key, default)
    if isinstance(value, bool):
        raise ConfigError(f"[intake] {key}: expected a number of seconds")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"[intake] {key}: expected a number of seconds") from None


def _http(section: Any) -> HttpLimits:
    if not isinstance(section, Mapping):
        raise ConfigError("rule set field 'http' must be a table")
    known = set(HttpLimits.__dataclass_fields__)
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"[http]: unknown field(s) {', '.join(map(repr, unknown))}")
    values: dict[str, int] = {}
    for name in known:
        if name not in section:
            continue
        value = section[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"[http] {name}: {value!r} is not an integer >= 1")
        values[name] = value
    return HttpLimits(**values)


def _rubric(rub: Any) -> Rubric:
    if rub is None:
        return DEFAULT_RUBRIC
    if not isinstance(rub, Mapping):
        raise ConfigError("rule set field 'rubric' must be a table")
    try:
        lo, hi = rub.get("scale", [1, 5])
        return Rubric(
            weights={str(k): float(v) for k, v in dict(rub["weights"]).items()},
            scale_min=int(lo),
            scale_max=int(hi),
            low_score_below=float(rub.get("low_score_below", 3.0)),
        )
    except KeyError:
        raise ConfigError("rule set [rubric]: field 'weights' is missing") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"rule set [rubric]: {err}") from None
