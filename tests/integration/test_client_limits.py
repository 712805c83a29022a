"""The ``client`` rate-limit key on the in-memory limiter and on Redis: a flood through one
intake client is bounded whatever addresses and devices it claims; other clients, and
ratings that record no client, are not counted against it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import make_app, rating

from integrity.app import App
from rules.ruleset import default_ruleset_text, load_ruleset

RULES = (
    default_ruleset_text()
    + """
[[limits]]
id = "client.tiny"
key = "client"
scope = "default"
window = 600
limit = 3
action = "reject"
"""
)


@pytest.fixture(params=["memory", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    if request.param == "redis":
        url = str(request.getfixturevalue("redis_url"))
        ns = str(request.getfixturevalue("redis_namespace"))
        a = make_app(tmp_path / "home", limiter_url=url, namespace=ns, rules_text=RULES)
    else:
        a = make_app(tmp_path / "home", rules_text=RULES)
    yield a
    a.close()


def test_a_flood_through_one_client_is_bounded(app: App) -> None:
    # every rating its own ticket, address and device: only the client ties them
    flood = [app.validate(rating(), client_id="stolen-key").status.value for _ in range(5)]
    assert flood == ["accepted"] * 3 + ["rejected"] * 2
    last = app.validate(rating(), client_id="stolen-key")
    assert last.reasons == ("rate_limit.client",) and (last.retry_after_s or 0) > 0
    # another client, and the Python API (no client), are not counted against it
    assert app.validate(rating(), client_id="honest-gw").status.value == "accepted"
    assert all(app.validate(rating()).status.value == "accepted" for _ in range(4))


def test_a_batch_through_one_client_is_bounded_alike(app: App) -> None:
    items = list(app.hook.validate_stream([rating() for _ in range(5)], client_id="gw"))
    statuses = [i.decision.status.value for i in items if i.decision]
    assert statuses == ["accepted"] * 3 + ["rejected"] * 2


def test_client_rules_take_the_default_and_any_scopes_only() -> None:
    assert load_ruleset(RULES).limit("client.tiny").reason == "rate_limit.client"
    from integrity.errors import ConfigError

    with pytest.raises(ConfigError, match="never applies to key 'client'"):
        load_ruleset(
            RULES.replace(
                'id = "client.tiny"\nkey = "client"\nscope = "default"',
                'id = "client.tiny"\nkey = "client"\nscope = "venue"',
            )
        )
