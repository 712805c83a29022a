"""HTTP intake (docs/reference.md, HTTP) over the embedded SQLite ledger and in-memory limiter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from factories import SCORES, T0, bearer, intake_key, make_app, rating, rating_counts
from fastapi.testclient import TestClient

from integrity.app import App
from integrity.http import MAX_BATCH, Background, create_app
from integrity.venues import pseudonymise_venues

DECISION_KEYS = {"rating_id", "status", "counted", "reasons"}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    a = make_app(tmp_path / "home")
    yield a
    a.close()


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    """A test client that sends an intake client's key with every request."""
    with TestClient(create_app(app, seal_every_s=None), headers=bearer(intake_key(app))) as c:
        yield c


def keyed(app: App) -> TestClient:
    return TestClient(create_app(app, seal_every_s=None), headers=bearer(intake_key(app)))


def written(app: App) -> int:
    return rating_counts(app.ledger.engine)["ratings"]


def test_one_rating_gets_its_decision(app: App, client: TestClient) -> None:
    doc = rating()
    r = client.post("/v1/ratings", json=doc)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= DECISION_KEYS
    assert isinstance(body["rating_id"], int)
    assert (body["status"], body["counted"], body["reasons"]) == ("accepted", True, [])
    assert body["rule_set_id"] == app.core.rule_set_id
    assert app.ledger.rating(body["rating_id"]).ticket_id == doc["ticket_id"]
    assert written(app) == 1


def test_identical_retry_returns_the_same_decision_and_writes_nothing(
    app: App, client: TestClient
) -> None:
    doc = rating()
    first = client.post("/v1/ratings", json=doc).json()
    app.clock.advance(30)  # type: ignore[attr-defined]
    again = client.post("/v1/ratings", json=doc)
    assert again.status_code == 200
    assert {k: again.json()[k] for k in DECISION_KEYS} == {k: first[k] for k in DECISION_KEYS}
    assert written(app) == 1


def test_different_rating_for_a_taken_ticket_is_409_and_recorded(
    app: App, client: TestClient
) -> None:
    doc = rating()
    first = client.post("/v1/ratings", json=doc).json()
    r = client.post("/v1/ratings", json={**doc, "scores": {**SCORES, "attitude": 1}})
    assert r.status_code == 409
    body = r.json()
    assert (body["status"], body["counted"], body["reasons"]) == (
        "rejected",
        False,
        ["duplicate_ticket"],
    )
    assert body["rating_id"] != first["rating_id"]
    assert written(app) == 2
    # retrying that duplicate replays it: 409 again, same id, nothing new
    again = client.post("/v1/ratings", json={**doc, "scores": {**SCORES, "attitude": 1}})
    assert again.status_code == 409 and again.json()["rating_id"] == body["rating_id"]
    assert written(app) == 2


def test_held_and_rate_limited_ratings_are_200_with_their_status(
    app: App, client: TestClient
) -> None:
    ahead = (T0.replace(hour=5)).isoformat()  # three hours after receipt
    r = client.post("/v1/ratings", json=rating(submitted_at=ahead))
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["counted"]) == ("held", False)
    assert r.json()["reasons"] == ["time.submitted_in_future"]
    codes = [
        client.post("/v1/ratings", json=rating(device_id="pad", window_id=f"W{i}"))
        for i in range(4)
    ]
    assert [c.status_code for c in codes] == [200] * 4
    last = codes[-1].json()
    assert (last["status"], last["reasons"]) == ("rejected", ["rate_limit.device"])
    assert last["retry_after_s"] > 0


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (rating(ticket_id=""), {"ticket_id"}),
        (rating(omit=["ip"]), {"ip"}),
        (rating(ip="198.51.100.300", channel="fax"), {"ip", "channel"}),
        (rating(scores={**SCORES, "speed": 2}), {"scores.speed"}),
        (rating(submitted_at="2026-10-15T10:00:00"), {"submitted_at"}),
        (rating(referrer="x"), {"referrer"}),
        (rating(comment="nul \x00 inside"), {"comment"}),
        (rating(served_at="9999-12-31T23:59:59-05:00"), {"served_at"}),
        (rating(submitted_at="0001-01-01T00:00:00+05:00"), {"submitted_at"}),
        ([rating()], {"(rating)"}),
        ("a rating", {"(rating)"}),
    ],
)
def test_bad_rating_is_422_with_field_errors_and_nothing_written(
    app: App, client: TestClient, body: Any, fields: set[str]
) -> None:
    r = client.post("/v1/ratings", json=body)
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert {e["field"] for e in errors} >= fields
    assert all(e["message"] for e in errors)
    assert r.json()["detail"].startswith("invalid rating")
    assert written(app) == 0


def test_far_future_rating_replayed_is_decided_not_a_crash(app: App) -> None:
    d = app.validate(rating(submitted_at="9998-12-31T23:59:59Z"), replay=True)
    assert d.status.value == "held" and d.reasons == ("time.submitted_in_future",)
    [item] = app.hook.validate_stream([rating(submitted_at="9998-12-31T23:00:00Z")])
    assert item.decision is not None and item.decision.status.value == "held"


def test_body_that_is_not_json_is_422(app: App, client: TestClient) -> None:
    r = client.post(
        "/v1/ratings", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert written(app) == 0


def test_batch_answers_each_element_in_order(app: App, client: TestClient) -> None:
    a, b = rating(), rating()
    batch = [a, rating(ticket_id=""), b, {**a, "comment": "changed"}, dict(a), "junk", rating()]
    r = client.post("/v1/ratings:batch", json=batch)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["index"] for x in results] == list(range(len(batch)))
    assert [x["status"] for x in results] == [
        "accepted",
        None,
        "accepted",
        "rejected",
        "accepted",
        None,
        "accepted",
    ]
    assert {e["field"] for e in results[1]["errors"]} == {"ticket_id"}
    assert {e["field"] for e in results[5]["errors"]} == {"(rating)"}
    assert results[3]["reasons"] == ["duplicate_ticket"]
    assert results[4]["rating_id"] == results[0]["rating_id"]  # the identical retry
    assert len({x["rating_id"] for x in results if x["status"]}) == 4
    assert written(app) == 4
    for x in results:
        if x["status"] is not None:
            assert set(x) >= DECISION_KEYS


def test_batch_decides_like_single_posts(app: App, client: TestClient, tmp_path: Path) -> None:
    docs = [rating(device_id="shared", window_id=f"W{i}") for i in range(5)]
    docs.insert(2, {**docs[0], "comment": "dup"})
    batch = client.post("/v1/ratings:batch", json=docs).json()["results"]
    other = make_app(tmp_path / "other")
    try:
        with keyed(other) as single:
            one = [single.post("/v1/ratings", json=d).json() for d in docs]
    finally:
        other.close()
    strip = ("rating_id", "index", "rule_set_id", "receipt")  # receipt: of the rating id
    assert [{k: v for k, v in x.items() if k not in strip} for x in batch] == [
        {k: v for k, v in x.items() if k not in strip} for x in one
    ]


@pytest.mark.parametrize("body", [{"ratings": []}, rating(), "x", 3])
def test_batch_of_anything_but_an_array_is_422(app: App, client: TestClient, body: Any) -> None:
    r = client.post("/v1/ratings:batch", json=body)
    assert r.status_code == 422
    assert written(app) == 0


def test_batch_limits(app: App, client: TestClient) -> None:
    assert client.post("/v1/ratings:batch", json=[]).json() == {"results": []}
    r = client.post("/v1/ratings:batch", json=[rating() for _ in range(MAX_BATCH + 1)])
    assert r.status_code == 413
    assert f"at most {MAX_BATCH} ratings" in r.json()["detail"]
    assert written(app) == 0


def test_healthz(app: App, client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "ledger": "ok",
        "limiter": "ok",
        "rule_set_id": app.core.rule_set_id,
    }


def test_openapi_describes_both_intake_paths_and_the_rating(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert "post" in paths["/v1/ratings"] and "post" in paths["/v1/ratings:batch"]
    assert "get" in paths["/healthz"]
    single = paths["/v1/ratings"]["post"]
    schema = single["requestBody"]["content"]["application/json"]["schema"]
    props = schema["properties"]
    assert set(props) == {
        "ticket_id",
        "window_id",
        "staff_id",
        "service_type",
        "channel",
        "served_at",
        "submitted_at",
        "scores",
        "comment",
        "ip",
        "device_id",
    }
    assert set(schema["required"]) == {"ticket_id", "window_id", "scores", "ip", "device_id"}
    assert schema.get("additionalProperties") is False
    assert props["ticket_id"]["maxLength"] == 128
    channel = props["channel"]
    assert set(channel.get("enum") or channel["anyOf"][0]["enum"]) == {
        "kiosk",
        "qr",
        "app",
        "sms",
        "web",
        "phone",
    }
    assert {"200", "401", "403", "409", "413", "422", "503"} <= set(single["responses"])
    batch = paths["/v1/ratings:batch"]["post"]["requestBody"]["content"]["application/json"]
    assert batch["schema"]["type"] == "array"
    assert batch["schema"]["items"]["properties"] == props


def test_a_background_round_seals_what_http_wrote(app: App) -> None:
    with keyed(app) as c:
        rid = c.post("/v1/ratings", json=rating()).json()["rating_id"]
    [ev] = app.ledger.events_of(rid)
    assert app.log.head().size < (ev.event_id or 0)
    Background(app, every=3600).round()
    assert app.log.head().size >= (ev.event_id or 0)
    report = app.log.verify(app.clock.now())
    assert report.ok and report.unsealed == 0, report.problems


def test_the_server_seals_what_it_wrote_when_it_stops(app: App) -> None:
    # an interval far longer than the test: only the last round, at shutdown, can seal
    key = intake_key(app)
    with TestClient(create_app(app, seal_every_s=3600), headers=bearer(key)) as c:
        rid = c.post("/v1/ratings", json=rating()).json()["rating_id"]
    [ev] = app.ledger.events_of(rid)
    assert app.log.head().size >= (ev.event_id or 0)
    assert app.log.verify(app.clock.now()).unsealed == 0


def test_a_background_round_picks_up_a_replaced_venue_registry(app: App) -> None:
    background = Background(app, every=3600)
    background.round()  # nothing changed yet
    hall = "198.51.100.77"
    with keyed(app) as c:
        pv = pseudonymise_venues(
            {"venues": [{"venue_id": "H1", "networks": [f"{hall}/32"]}]}, app.pseudonymiser
        )
        app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, app.clock.now(), "test")
        assert app.hook.reload() is True  # what the background round does
        assert app.hook.reload() is False  # and only once per change
        statuses = [c.post("/v1/ratings", json=rating(ip=hall)).json()["status"] for _ in range(25)]
    # an ordinary address holds ratings past 20 in ten minutes (ip.burst); a hall's does not
    assert statuses == ["accepted"] * 25


def test_a_background_round_runs_every_task_even_when_one_fails(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[object] = []

    def broken(now: object) -> None:
        raise RuntimeError("a task that fails")

    app.background[:] = [broken, seen.append]
    Background(app, every=3600).round()  # never raises
    assert seen == [app.clock.now()]
    assert "broken failed unexpectedly" in caplog.text
