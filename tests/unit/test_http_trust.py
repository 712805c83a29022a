"""Trust at the edges of HTTP intake, in process (SQLite, in-memory limiter): client keys
(401), scopes (403), open mode, the client recorded and sealed with every rating, bounded
bodies and batches (413, before parsing), error shapes, and a batch cut short (503)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from factories import SCORES, bearer, intake_key, make_app, rating, rating_counts
from fastapi.testclient import TestClient

from integrity.adapters import tables as t
from integrity.app import App
from integrity.clients import IntakeClients
from integrity.errors import BackendUnavailable, InvalidInput
from integrity.hook import ValidationHook
from integrity.http import TooLarge, create_app, decode_batch
from integrity.ports import Pending
from integrity.registry import RegistryService, parse_registry
from integrity.reports import export_ratings
from rules.ruleset import default_ruleset_text

# Small bounds, so a test can cross them with a few kilobytes.
SMALL = (
    default_ruleset_text()
    .replace("max_body_bytes = 1048576", "max_body_bytes = 4096")
    .replace("max_batch_bytes = 8388608", "max_batch_bytes = 16384")
    .replace("max_batch_items = 1000", "max_batch_items = 10")
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    a = make_app(tmp_path / "home", rules_text=SMALL)
    yield a
    a.close()


@pytest.fixture
def api(app: App) -> Iterator[TestClient]:
    """No credentials by default: each test says which key it sends."""
    with TestClient(create_app(app, seal_every_s=None)) as c:
        yield c


def written(app: App) -> int:
    return rating_counts(app.ledger.engine)["ratings"]


# -- who may send ---------------------------------------------------------------------------


def test_intake_without_a_valid_key_is_401_and_writes_nothing(app: App, api: TestClient) -> None:
    key = intake_key(app, "gw")
    revoked = intake_key(app, "gone")
    app.get(IntakeClients).revoke("gone")
    for headers in (
        {},
        {"Authorization": "Basic Z3c6cGFzcw=="},
        {"Authorization": "Bearer"},
        bearer("not-a-key"),
        bearer(key[:-2] + "xx"),
        bearer(revoked),
    ):
        for path, body in (("/v1/ratings", rating()), ("/v1/ratings:batch", [rating()])):
            r = api.post(path, json=body, headers=headers)
            assert r.status_code == 401, (headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["detail"]
    assert written(app) == 0
    assert api.get("/healthz").status_code == 200  # health stays open
    assert api.post("/v1/ratings", json=rating(), headers=bearer(key)).status_code == 200


def test_an_expired_key_is_401(app: App, api: TestClient) -> None:
    key = intake_key(app, "short", expires="1")
    assert api.post("/v1/ratings", json=rating(), headers=bearer(key)).status_code == 200
    app.clock.advance(86400)  # type: ignore[attr-defined]
    r = api.post("/v1/ratings", json=rating(), headers=bearer(key))
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    assert written(app) == 1


def test_a_key_made_while_serving_works_at_once_and_a_rotated_one_stops(
    app: App, api: TestClient
) -> None:
    key = intake_key(app, "gw")
    assert api.post("/v1/ratings", json=rating(), headers=bearer(key)).status_code == 200
    _, new = app.get(IntakeClients).rotate("gw")
    assert api.post("/v1/ratings", json=rating(), headers=bearer(key)).status_code == 401
    assert api.post("/v1/ratings", json=rating(), headers=bearer(new)).status_code == 200


def load_registry(app: App) -> None:
    app.get(RegistryService).load(
        parse_registry(
            {
                "halls": [{"hall_id": "H1"}, {"hall_id": "H2"}],
                "windows": [
                    {"window_id": "H1-W01", "hall_id": "H1"},
                    {"window_id": "H1-W02", "hall_id": "H1"},
                    {"window_id": "H2-W01", "hall_id": "H2"},
                ],
            }
        ),
        actor="operator",
    )
    app.hook.reload()  # a server's background round


def test_a_rating_outside_the_clients_scope_is_403(app: App, api: TestClient) -> None:
    hall = bearer(intake_key(app, "hall-gw", halls=["H1"]))
    window = bearer(intake_key(app, "window-gw", windows=["H2-W01"]))
    r = api.post("/v1/ratings", json=rating(window_id="H1-W01"), headers=hall)
    assert r.status_code == 403
    assert "no service registry is loaded" in r.json()["detail"]
    load_registry(app)
    ok = api.post("/v1/ratings", json=rating(window_id="H1-W02", omit=["staff_id"]), headers=hall)
    assert ok.status_code == 200 and ok.json()["status"] == "accepted"
    for headers, window_id in ((hall, "H2-W01"), (window, "H1-W01"), (hall, "X-W99")):
        r = api.post("/v1/ratings", json=rating(window_id=window_id), headers=headers)
        assert r.status_code == 403, r.text
        assert window_id in r.json()["detail"]
    assert written(app) == 1


def test_a_batch_refuses_elements_outside_the_scope_one_by_one(app: App, api: TestClient) -> None:
    load_registry(app)
    headers = bearer(intake_key(app, "hall-gw", halls=["H1"]))
    batch = [rating(window_id=w, omit=["staff_id"]) for w in ("H1-W01", "H2-W01", "H1-W02")]
    r = api.post("/v1/ratings:batch", json=batch, headers=headers)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["accepted", None, "accepted"]
    assert [x["index"] for x in results] == [0, 1, 2]
    assert [e["field"] for e in results[1]["errors"]] == ["window_id"]
    assert "H2-W01" in results[1]["errors"][0]["message"]
    assert written(app) == 2
    tickets = {r.ticket_id for r in app.ledger.find_ratings(_all())}
    assert batch[1]["ticket_id"] not in tickets


def _all() -> Any:
    from integrity.ports import RatingQuery

    return RatingQuery()


def test_open_mode_accepts_without_a_key_loudly_and_records_open(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="integrity.http")
    key = intake_key(app, "gw")
    with TestClient(create_app(app, seal_every_s=None, open_intake=True)) as c:
        assert any("OPEN INTAKE" in m for m in caplog.messages)  # at startup
        caplog.clear()
        one = c.post("/v1/ratings", json=rating()).json()
        two = c.post("/v1/ratings:batch", json=[rating()]).json()["results"][0]
        assert sum("open intake" in m for m in caplog.messages) == 2  # on every request
        keyed = c.post("/v1/ratings", json=rating(), headers=bearer(key)).json()
        assert c.post("/v1/ratings", json=rating(), headers=bearer("bad")).status_code == 401
    assert app.ledger.rating(one["rating_id"]).client_id == "open"
    assert app.ledger.rating(two["rating_id"]).client_id == "open"
    assert app.ledger.rating(keyed["rating_id"]).client_id == "gw"


# -- every rating says who sent it ------------------------------------------------------------


def test_the_client_is_recorded_exported_and_sealed(app: App, api: TestClient) -> None:
    gw = bearer(intake_key(app, "kiosk-gw"))
    one = api.post("/v1/ratings", json=rating(), headers=gw).json()["rating_id"]
    [two] = [
        x["rating_id"]
        for x in api.post("/v1/ratings:batch", json=[rating()], headers=gw).json()["results"]
    ]
    cli = app.hook.validate(rating(), client_id="cli").rating_id
    python = app.validate(rating()).rating_id
    for rid, expected in ((one, "kiosk-gw"), (two, "kiosk-gw"), (cli, "cli"), (python, None)):
        assert app.ledger.rating(rid).client_id == expected
        [decision] = app.ledger.events_of(rid)
        assert decision.evidence.get("client_id") == expected
    exported = {r["rating_id"]: r["client_id"] for r in export_ratings(app.ledger)}
    assert exported == {one: "kiosk-gw", two: "kiosk-gw", cli: "cli", python: None}
    assert [r["rating_id"] for r in export_ratings(app.ledger, client_id="kiosk-gw")] == [one, two]
    app.log.seal(app.clock.now())
    assert app.log.verify(app.clock.now()).ok
    # the column is checked against the sealed evidence: re-attributing a rating shows
    with app.ledger.engine.begin() as conn:
        conn.execute(
            sa.update(t.ratings).where(t.ratings.c.rating_id == one).values(client_id="cli")
        )
    report = app.log.verify(app.clock.now())
    assert not report.ok
    assert any(f"rating {one}: client_id 'cli'" in p for p in report.problems), report.problems


# -- how much may be sent ---------------------------------------------------------------------


def test_a_body_past_the_bound_is_413_before_it_is_read(app: App, api: TestClient) -> None:
    gw = bearer(intake_key(app))
    big = rating(comment="x" * 2000)
    big["ticket_id"] = "T" * 100
    body = json.dumps([big, big]).encode()  # 4 KB+: past max_body_bytes = 4096
    assert len(body) > 4096
    r = api.post("/v1/ratings", content=body, headers={**gw, "content-type": "application/json"})
    assert r.status_code == 413 and "4096 bytes" in r.json()["detail"]
    assert r.headers["connection"] == "close"

    # a streamed (chunked) body has no Content-Length: refused once it passes the bound
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    r = api.post("/v1/ratings", content=chunks(), headers=gw)
    assert r.status_code == 413
    assert written(app) == 0


def test_a_batch_past_its_byte_or_item_bound_is_413(app: App, api: TestClient) -> None:
    gw = bearer(intake_key(app))
    r = api.post("/v1/ratings:batch", json=[rating() for _ in range(11)], headers=gw)
    assert r.status_code == 413 and "at most 10 ratings" in r.json()["detail"]
    fat = [rating(comment="y" * 1900) for _ in range(9)]  # 9 items but ~18 KB
    r = api.post("/v1/ratings:batch", json=fat, headers=gw)
    assert r.status_code == 413 and "16384 bytes" in r.json()["detail"]
    assert written(app) == 0
    ok = api.post("/v1/ratings:batch", json=[rating() for _ in range(10)], headers=gw)
    assert ok.status_code == 200 and written(app) == 10


def test_a_batch_is_counted_before_the_rest_is_decoded() -> None:
    items = [json.dumps(rating()) for _ in range(3)]
    # element 4 is garbage: with a bound of 3 it is never decoded, so the answer is 413
    body = ("[" + ",".join(items) + ", {not json at all]").encode()
    with pytest.raises(TooLarge):
        decode_batch(body, 3)
    with pytest.raises(InvalidInput):
        decode_batch(body, 4)
    assert decode_batch(b" [ ] ", 3) == []
    assert decode_batch(("[" + ",".join(items) + "]").encode(), 3) == [json.loads(i) for i in items]
    for bad in (b"[1,]", b"[1 2]", b"[1] x", b"{}", b"", b"\xff", b"[" * 100_000):
        with pytest.raises(InvalidInput):
            decode_batch(bad, 3)


# -- errors in the documented shape -----------------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b"[" * 4000, b'{"a": 1e999999}x'])
def test_a_body_that_is_not_json_gets_the_documented_422(
    app: App, api: TestClient, body: bytes
) -> None:
    gw = bearer(intake_key(app))
    for path in ("/v1/ratings", "/v1/ratings:batch"):
        r = api.post(path, content=body, headers={**gw, "content-type": "application/json"})
        assert r.status_code == 422, r.text
        doc = r.json()
        assert isinstance(doc["detail"], str)
        assert [e["field"] for e in doc["errors"]] == ["(body)"]
        assert "not valid JSON" in doc["errors"][0]["message"]
    assert written(app) == 0


@pytest.mark.parametrize("score", [4.5, 5.0, True, None, [5]])
def test_a_score_that_is_not_an_integer_gets_one_clear_message(
    app: App, api: TestClient, score: Any
) -> None:
    r = api.post(
        "/v1/ratings",
        json=rating(scores={**SCORES, "attitude": score}),
        headers=bearer(intake_key(app)),
    )
    assert r.status_code == 422
    errors = [e for e in r.json()["errors"] if e["field"] == "scores.attitude"]
    assert len(errors) == 1, errors
    assert errors[0]["message"].startswith("not an integer score")


def test_framework_validation_errors_have_the_documented_shape(app: App) -> None:
    from audit_sampling.context import AuditContext
    from audit_sampling.http import audit_router

    with TestClient(
        create_app(app, seal_every_s=None, routers=[audit_router(app.get(AuditContext))])
    ) as c:
        r = c.post(
            "/v1/audit/batches/1/findings",
            content=b"{broken",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "(body)"
        r = c.get("/v1/audit/batches/not-a-number")
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "path.batch_id"


# -- a batch cut short by the database -------------------------------------------------------


class FailsOnce:
    """A ledger whose ``record_many`` fails on call number ``on`` (once), like a database
    that goes away in the middle of a batch."""

    def __init__(self, ledger: Any, on: int) -> None:
        self.ledger = ledger
        self.on = on
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)

    def record_many(self, pending: Sequence[Pending], actor: str = "hook") -> Any:
        self.calls += 1
        if self.calls == self.on:
            raise BackendUnavailable("database unavailable: connection lost")
        return self.ledger.record_many(pending, actor)


def test_a_503_batch_may_be_partly_written_and_its_retry_is_safe(app: App) -> None:
    key = intake_key(app, "gw")
    flaky = FailsOnce(app.ledger, on=2)
    hook = ValidationHook(flaky, app.core, app.hook.gates, app.pseudonymiser, app.clock)  # type: ignore[arg-type]
    broken = dataclasses.replace(app, hook=hook)
    a, b, c = rating(), rating(), rating()
    bad = {**rating(), "ticket_id": ""}  # refused: the hook writes a, b before going on
    batch = [a, b, bad, c, dict(a)]
    with TestClient(create_app(broken, seal_every_s=None), headers=bearer(key)) as api:
        r = api.post("/v1/ratings:batch", json=batch)
        assert r.status_code == 503
        assert "retrying the same batch is safe" in r.json()["detail"]
        assert written(app) == 2  # a and b were recorded before the failure
        again = api.post("/v1/ratings:batch", json=batch).json()["results"]
    assert [x["status"] for x in again] == ["accepted", "accepted", None, "accepted", "accepted"]
    assert again[0].get("replayed") and again[1].get("replayed")  # the first decisions
    assert "replayed" not in again[3]  # c, written now
    assert again[4].get("replayed") and again[4]["rating_id"] == again[0]["rating_id"]
    assert written(app) == 3
