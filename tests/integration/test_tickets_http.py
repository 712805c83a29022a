"""``POST /v1/tickets`` (keys, scopes, idempotency) and ``GET /v1/receipts/{code}`` (stable,
unguessable, plain words, no personal data, rate-limited), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from factories import SCORES, T0, backend_url, bearer, intake_key, make_app, make_settings, rating
from fastapi.testclient import TestClient

from bootstrap import init_instance
from integrity.adapters import tables as t
from integrity.app import App
from integrity.catalogue import Reason
from integrity.clients import IntakeClients
from integrity.clock import FrozenClock
from integrity.http import create_app
from integrity.model import void_event
from integrity.receipts import (
    ALPHABET,
    LOOKUPS_RETRY_S,
    LOOKUPS_UNAVAILABLE,
    FollowUpView,
    ReceiptService,
)
from rules.ruleset import default_ruleset_text

ON = (
    default_ruleset_text()
    .replace("require_known_ticket = false", "require_known_ticket = true")
    .replace("lookups_per_minute = 30", "lookups_per_minute = 5")
)
LOW = dict.fromkeys(SCORES, 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


@pytest.fixture
def app(tmp_path: Path, db_url: str) -> Iterator[App]:
    home = tmp_path / "home"
    make_app(home, db_url).close()
    init_instance(
        make_settings(home, db_url), rules_text=ON, clock=FrozenClock(T0 + timedelta(minutes=1))
    )
    a = make_app(home, db_url, clock=FrozenClock(T0), init=False)
    yield a
    a.close()


@pytest.fixture
def key(app: App) -> str:
    return intake_key(app, "queue-gw")


@pytest.fixture
def http(app: App, key: str) -> Iterator[TestClient]:
    with TestClient(create_app(app, seal_every_s=None), headers=bearer(key)) as c:
        yield c


def rec(ticket: str, window: str = "W01", staff: str | None = "S01") -> dict[str, Any]:
    doc: dict[str, Any] = {"ticket_id": ticket, "window_id": window, "served_at": T0.isoformat()}
    if staff:
        doc["staff_id"] = staff
    return doc


def stored(app: App) -> list[tuple[str, str, str]]:
    with app.ledger.reading() as conn:
        rows = conn.execute(sa.select(t.service_records).order_by("ticket_id")).mappings()
        return [(r["ticket_id"], r["window_id"], r["client_id"]) for r in rows]


# -- POST /v1/tickets -------------------------------------------------------------------------


def test_tickets_need_a_live_intake_key(app: App, http: TestClient) -> None:
    anonymous = TestClient(create_app(app, seal_every_s=None))
    r = anonymous.post("/v1/tickets", json=rec("A-1"))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    revoked_key = intake_key(app, "old-gw")
    app.get(IntakeClients).revoke("old-gw")
    r = anonymous.post("/v1/tickets", json=rec("A-1"), headers=bearer(revoked_key))
    assert r.status_code == 401
    assert stored(app) == []


def test_the_same_record_twice_is_one_record(app: App, http: TestClient) -> None:
    first = http.post("/v1/tickets", json=rec("A-2"))
    assert first.status_code == 200 and first.json() == {"ticket_id": "A-2", "status": "recorded"}
    again = http.post("/v1/tickets", json=rec("A-2"))
    assert again.status_code == 200 and again.json()["status"] == "known"
    other = http.post("/v1/tickets", json=rec("A-2", window="W07"))
    assert other.status_code == 422
    [err] = other.json()["errors"]
    assert err["field"] == "window_id" and "W01" not in err["message"]
    assert stored(app) == [("A-2", "W01", "queue-gw")]


def test_an_array_answers_per_record(app: App, http: TestClient) -> None:
    r = http.post("/v1/tickets", json=[rec("B-1"), rec("B-1"), {"ticket_id": "B-2"}, rec("B-3")])
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["recorded", "known", None, "recorded"]
    assert [x["index"] for x in results] == [0, 1, 2, 3]
    assert {e["field"] for e in results[2]["errors"]} == {"window_id", "served_at"}
    assert [s[0] for s in stored(app)] == ["B-1", "B-3"]


def test_tickets_keep_to_the_clients_scope(app: App) -> None:
    scoped = bearer(intake_key(app, "w01-only", windows=["W01"]))
    with TestClient(create_app(app, seal_every_s=None), headers=scoped) as c:
        assert c.post("/v1/tickets", json=rec("C-1", window="W02")).status_code == 403
        r = c.post("/v1/tickets", json=[rec("C-2", window="W02"), rec("C-3")])
        assert r.status_code == 200
        refused, ok = r.json()["results"]
        assert refused["status"] is None and refused["errors"][0]["field"] == "window_id"
        assert ok["status"] == "recorded"
    assert [s[0] for s in stored(app)] == ["C-3"]


def test_bad_bodies_write_nothing(app: App, http: TestClient) -> None:
    assert http.post("/v1/tickets", content=b"{nope").status_code == 422
    assert http.post("/v1/tickets", json="T-1").status_code == 422
    too_many = [rec(f"D-{i}") for i in range(app.core.http.max_batch_items + 1)]
    assert http.post("/v1/tickets", json=too_many).status_code == 413
    assert stored(app) == []


def test_a_late_ticket_over_http_lets_the_rating_count(app: App, http: TestClient) -> None:
    d = http.post("/v1/ratings", json=rating(ticket_id="E-1")).json()
    assert (d["status"], d["reasons"]) == ("held", [Reason.UNKNOWN_TICKET])
    assert http.get(f"/v1/receipts/{d['receipt']}").json()["state"] == "waiting"
    assert http.post("/v1/tickets", json=rec("E-1")).json()["status"] == "recorded"
    assert app.ledger.rating(d["rating_id"]).counted
    assert http.get(f"/v1/receipts/{d['receipt']}").json()["state"] == "counts"


# -- receipts ------------------------------------------------------------------------------------


def test_a_receipt_is_stable_for_retries(app: App, http: TestClient) -> None:
    http.post("/v1/tickets", json=rec("F-1"))
    doc = rating(ticket_id="F-1")
    first = http.post("/v1/ratings", json=doc).json()
    again = http.post("/v1/ratings", json=doc).json()
    assert again["replayed"] is True and again["receipt"] == first["receipt"]
    [in_batch] = http.post("/v1/ratings:batch", json=[doc]).json()["results"]
    assert in_batch["replayed"] is True and in_batch["receipt"] == first["receipt"]
    assert app.get(ReceiptService).code(first["rating_id"]) == first["receipt"]
    r = http.get(f"/v1/receipts/{first['receipt']}")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert (body["state"], body["counts"], body["status"]) == ("counts", True, "accepted")
    assert body["reasons"] == [] and body["follow_up"] is None
    assert body["rated_on"] == "2026-10-15"
    # what a person types: lower case, no hyphens
    assert http.get(f"/v1/receipts/{first['receipt'].lower().replace('-', '')}").json() == body


def test_a_changed_character_is_404_like_any_unknown_code(app: App, http: TestClient) -> None:
    code = http.post("/v1/ratings", json=rating()).json()["receipt"]
    unknown = http.get("/v1/receipts/00000-00000-00000-00000")
    assert unknown.status_code == 404
    for pos in (0, 13, 22):  # five lookups in all: the rule set allows five a minute
        swapped = ALPHABET[(ALPHABET.index(code[pos]) + 1) % len(ALPHABET)]
        changed = code[:pos] + swapped + code[pos + 1 :]
        r = http.get(f"/v1/receipts/{changed}")
        assert r.status_code == 404 and r.json() == unknown.json() == {"detail": "no such receipt"}
    assert http.get("/v1/receipts/not-a-code").json() == unknown.json()


def test_a_receipt_leaks_nothing_personal(app: App, http: TestClient) -> None:
    doc = rating(
        ticket_id="TKT-SECRET-77",
        window_id="W-SECRET-5",
        staff_id="STAFF-SECRET-9",
        comment="my neighbour Zhang was rude",
        ip="203.0.113.77",
        device_id="phone-SECRET-1",
        scores=LOW,
    )
    d = http.post("/v1/ratings", json=doc).json()
    r = http.get(f"/v1/receipts/{d['receipt']}")
    stored_rating = app.ledger.rating(d["rating_id"])
    text = r.text
    for secret in (
        "TKT-SECRET-77",
        "W-SECRET-5",
        "STAFF-SECRET-9",
        "Zhang",
        "203.0.113",
        "phone-SECRET",
        stored_rating.ip_hash,
        stored_rating.prefix_hash,
        stored_rating.device_hash,
        stored_rating.fingerprint,
        "queue-gw",
    ):
        assert secret not in text, secret
    assert set(r.json()) == {
        "receipt",
        "state",
        "counts",
        "status",
        "summary",
        "reasons",
        "rated_on",
        "follow_up",
    }


def test_plain_words_for_each_status(app: App, http: TestClient) -> None:
    http.post("/v1/tickets", json=[rec("G-1"), rec("G-3")])
    counted = http.post("/v1/ratings", json=rating(ticket_id="G-1")).json()
    waiting = http.post("/v1/ratings", json=rating(ticket_id="G-2")).json()
    duplicate = http.post("/v1/ratings", json=rating(ticket_id="G-1", scores=LOW))
    assert duplicate.status_code == 409
    voided = http.post("/v1/ratings", json=rating(ticket_id="G-3")).json()
    app.ledger.append(
        void_event(
            voided["rating_id"],
            actor="A1",
            at=T0,
            reasons=(Reason.AUDIT_FABRICATED,),
            subject="audit:finding:1",
            evidence={},
        )
    )
    seen = {}
    for name, code in (
        ("counted", counted["receipt"]),
        ("waiting", waiting["receipt"]),
        ("rejected", duplicate.json()["receipt"]),
        ("voided", voided["receipt"]),
    ):
        seen[name] = http.get(f"/v1/receipts/{code}").json()
    assert [seen[n]["state"] for n in seen] == ["counts", "waiting", "not_counted", "not_counted"]
    assert [seen[n]["status"] for n in seen] == ["accepted", "held", "rejected", "voided"]
    assert len({seen[n]["summary"] for n in seen}) == 4
    assert "yet" in seen["waiting"]["reasons"][0]
    assert "rated once" in seen["rejected"]["reasons"][0]
    assert "audit" in seen["voided"]["reasons"][0]
    for body in seen.values():  # machine codes never: words only
        assert not any("_" in r or "." in r.rstrip(".") for r in body["reasons"])


class FakeFollowUp:
    def __init__(self) -> None:
        self.asked: list[int] = []

    def stage(self, rating_id: int) -> tuple[str, str | None] | None:
        self.asked.append(rating_id)
        return ("answered by the window", "We have retrained the counter staff.")


def test_a_low_score_shows_its_follow_up(app: App, key: str) -> None:
    view = FakeFollowUp()
    app.factories[FollowUpView] = lambda a: view  # type: ignore[type-abstract]
    with TestClient(create_app(app, seal_every_s=None), headers=bearer(key)) as http:
        http.post("/v1/tickets", json=[rec("H-1"), rec("H-2")])
        low = http.post("/v1/ratings", json=rating(ticket_id="H-1", scores=LOW)).json()
        high = http.post("/v1/ratings", json=rating(ticket_id="H-2")).json()
        body = http.get(f"/v1/receipts/{low['receipt']}").json()
        assert body["follow_up"] == {
            "stage": "answered by the window",
            "reply": "We have retrained the counter staff.",
        }
        assert http.get(f"/v1/receipts/{high['receipt']}").json()["follow_up"] is None
    assert view.asked == [low["rating_id"]]  # only low scores are asked about


def test_lookups_are_rate_limited_per_address(app: App, http: TestClient) -> None:
    code = http.post("/v1/ratings", json=rating()).json()["receipt"]
    for _ in range(5):  # [receipts] lookups_per_minute = 5 in this rule set
        assert http.get(f"/v1/receipts/{code}").status_code == 200
    r = http.get("/v1/receipts/00000-00000-00000-00000")  # bad guesses count alike
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    app.clock.advance(61)  # type: ignore[attr-defined]
    assert http.get(f"/v1/receipts/{code}").status_code == 200


DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused


def test_lookups_fail_closed_while_the_limiter_does_not_answer(tmp_path: Path, db_url: str) -> None:
    """A dead Redis: every lookup is refused with 503 and a Retry-After, never answered
    uncounted (intake holds the rating with ``limiter_unavailable`` alike); the operator's
    ``integrity receipt`` (no limiter) still reads it."""
    home = tmp_path / "dead-redis"
    app = make_app(home, db_url, DEAD_REDIS, rules_text=ON)
    try:
        key = intake_key(app, "queue-gw")
        with TestClient(create_app(app, seal_every_s=None), headers=bearer(key)) as http:
            d = http.post("/v1/ratings", json=rating()).json()
            assert d["status"] == "held" and Reason.LIMITER_UNAVAILABLE in d["reasons"]
            waits = []
            for _ in range(8):  # far more than lookups_per_minute = 5: none gets through
                r = http.get(f"/v1/receipts/{d['receipt']}")
                assert r.status_code == 503, r.text
                assert r.json() == {"detail": LOOKUPS_UNAVAILABLE}
                assert r.headers["cache-control"] == "no-store"
                assert d["receipt"] not in r.text
                waits.append(int(r.headers["retry-after"]))
            assert min(waits) >= 1
            # once the breaker is open (frozen clock), the wait is its cool-down
            assert waits[-1] == math.ceil(LOOKUPS_RETRY_S)
            bad = http.get("/v1/receipts/00000-00000-00000-00000")
            assert bad.status_code == 503  # not a 404 that would confirm a guess uncounted
            paths = http.get("/openapi.json").json()["paths"]
            assert "503" in paths["/v1/receipts/{code}"]["get"]["responses"]
        assert app.get(ReceiptService).look_up(d["receipt"]).state == "waiting"
    finally:
        app.close()


def test_the_schema_documents_both_endpoints(http: TestClient) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert {"401", "403", "413", "422"} <= set(paths["/v1/tickets"]["post"]["responses"])
    assert {"200", "404", "429"} <= set(paths["/v1/receipts/{code}"]["get"]["responses"])
    decision = http.get("/openapi.json").json()["components"]["schemas"]["DecisionOut"]
    assert "receipt" in decision["properties"]
    assert json.dumps(paths["/v1/tickets"]).count("served_at") >= 1


def test_the_access_log_never_shows_a_receipt_code() -> None:
    """serve's access handler, built from its logging configuration (no global logging
    is touched), logs a receipt lookup without its code."""
    import importlib
    import io
    import logging

    from uvicorn.logging import AccessFormatter

    from integrity.http import log_config

    cfg = log_config()
    [name] = cfg["handlers"]["access"]["filters"]
    module, _, cls = cfg["filters"][name]["()"].rpartition(".")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(AccessFormatter(cfg["formatters"]["access"]["fmt"], use_colors=False))
    handler.addFilter(getattr(importlib.import_module(module), cls)())
    code = "7KQ2M-0XH4D-RZ9B1-C3TVE"
    for method, path in (("GET", f"/v1/receipts/{code}"), ("POST", "/v1/tickets")):
        handler.handle(
            logging.LogRecord(
                "uvicorn.access",
                logging.INFO,
                __file__,
                1,
                '%s - "%s %s HTTP/%s" %d',
                ("-", method, path, "1.1", 200),
                None,
            )
        )
    text = out.getvalue()
    assert code not in text and "GET /v1/receipts/... HTTP/1.1" in text
    assert "POST /v1/tickets HTTP/1.1" in text
