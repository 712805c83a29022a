"""Rule set parsing: the default parses, and every bad rule names the rule and field."""

from __future__ import annotations

import hashlib

import pytest

from integrity.errors import ConfigError
from integrity.model import DEFAULT_RUBRIC
from rules.ruleset import LimitRule, default_ruleset, default_ruleset_text, load_ruleset

HEAD = 'name = "t"\ntimezone = "Asia/Shanghai"\n'


def limit_block(**fields: object) -> str:
    base: dict[str, object] = {
        "id": "r1",
        "key": "device",
        "scope": "default",
        "window": 600,
        "limit": 3,
        "action": "reject",
    }
    base.update(fields)
    lines = ["[[limits]]"]
    for name, value in base.items():
        if value is None:
            continue
        lines.append(f"{name} = {value!r}" if isinstance(value, str) else f"{name} = {value}")
    return "\n".join(lines).replace("True", "true").replace("False", "false") + "\n"


def test_default_ruleset_parses() -> None:
    text = default_ruleset_text()
    rs = default_ruleset()
    assert rs.id == "rs-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    assert rs.name == "default" and rs.timezone == "Asia/Shanghai"
    assert rs.raw_text == text
    assert [r.id for r in rs.limits][:3] == ["device.burst", "device.day", "device_window.day"]
    assert rs.limit("device.burst") == LimitRule(
        "device.burst", "device", "default", 600, 3, "reject"
    )
    assert rs.limit("device.day").window_s is None and rs.limit("device.day").calendar_day
    assert rs.limit("venue.ip.burst").reason == "rate_limit.ip"
    assert rs.section("intake") == {"max_clock_skew_s": 300, "max_age_s": 604800}
    assert (rs.core.max_clock_skew_s, rs.core.max_age_s) == (300, 7 * 86400)
    assert rs.section("no_such_section") == {}
    assert rs.core.rubric == DEFAULT_RUBRIC


def test_id_changes_with_every_edit() -> None:
    text = HEAD + limit_block()
    assert load_ruleset(text).id != load_ruleset(text + "# a comment\n").id
    assert load_ruleset(text).id == load_ruleset(text).id


def test_unknown_sections_are_kept_for_their_owners() -> None:
    rs = load_ruleset(HEAD + "[detect]\nburst_z = 4.0\n[intake]\nmax_clock_skew_s = 60\n")
    assert rs.extra == {"detect": {"burst_z": 4.0}, "intake": {"max_clock_skew_s": 60}}
    assert rs.limits == ()


def test_intake_max_age_defaults_to_seven_days() -> None:
    assert load_ruleset(HEAD).core.max_age_s == 7 * 86400
    assert load_ruleset(HEAD + "[intake]\nmax_age_s = 3600\n").core.max_age_s == 3600


def test_timezone_defaults_to_utc_like_the_core() -> None:
    assert load_ruleset('name = "t"\n').timezone == "UTC"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = [", "not valid TOML"),
        (HEAD.replace("Asia/Shanghai", "Mars/Olympus"), "'timezone': unknown time zone"),
        ('name = ""\n', "'name'"),
        (HEAD + "limits = 3\n", "'limits' must be an array"),
        (HEAD + limit_block(id=None), r"limits\[0\]: field 'id'"),
        (HEAD + limit_block(id="has space"), r"limits\[0\]: field 'id'"),
        (HEAD + limit_block(key="user"), "limit rule 'r1': field 'key': 'user'"),
        (HEAD + limit_block(scope="global"), "limit rule 'r1': field 'scope': 'global'"),
        (HEAD + limit_block(key="ip", scope="kiosk"), "'scope': 'kiosk' never applies to key 'ip'"),
        (HEAD + limit_block(scope="venue"), "'scope': 'venue' never applies to key 'device'"),
        (HEAD + limit_block(window=0), "limit rule 'r1': field 'window': 0"),
        (HEAD + limit_block(window=-5), "field 'window'"),
        (HEAD + limit_block(window="day"), "field 'window': 'day'"),
        (HEAD + limit_block(window=1.5), "field 'window'"),
        (HEAD + limit_block(window=True), "field 'window'"),
        (HEAD + limit_block(limit=0), "limit rule 'r1': field 'limit': 0"),
        (HEAD + limit_block(limit="3"), "field 'limit'"),
        (HEAD + limit_block(action="ban"), "limit rule 'r1': field 'action': 'ban'"),
        (HEAD + limit_block(action=None), "limit rule 'r1': field 'action' is required"),
        (HEAD + limit_block(windw=600), "limit rule 'r1': unknown field"),
        (HEAD + limit_block() + limit_block(), "limit rule 'r1': field 'id': duplicate"),
        (HEAD + "[[limits]]\n" + "id = 'x'\n" + "[rubric]\n", "field 'key' is required"),
        (HEAD + "[intake]\nmax_age_s = 'week'\n", r"\[intake\] max_age_s: expected a number"),
        (HEAD + "[intake]\nmax_age_s = 0\n", r"\[intake\] max_age_s: expected a positive"),
        (HEAD + "[intake]\nmax_clock_skew_s = true\n", r"\[intake\] max_clock_skew_s"),
        (HEAD + "intake = 3\n", "'intake' must be a table"),
    ],
)
def test_bad_rule_sets_name_the_rule_and_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_ruleset(text)


def test_every_key_scope_pair_that_can_apply_parses() -> None:
    blocks = [
        limit_block(id=f"{key}.{scope}", key=key, scope=scope, window="calendar_day")
        for key, scopes in {
            "ip": ("default", "venue", "any"),
            "prefix": ("default", "venue", "any"),
            "device": ("default", "kiosk", "any"),
            "device_window": ("default", "kiosk", "any"),
        }.items()
        for scope in scopes
    ]
    rs = load_ruleset(HEAD + "".join(blocks))
    assert len(rs.limits) == 12 and all(r.calendar_day for r in rs.limits)


def test_bad_rubric_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="rubric"):
        load_ruleset(HEAD + "[rubric]\nscale = [5, 1]\nweights = { a = 1 }\n")
