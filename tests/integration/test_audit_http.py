"""Auditor isolation over HTTP: a token sees its own batches only (401 / 403 otherwise), a
pull is the CLI's export and is logged, findings are all-or-nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from audit_factories import populate, register
from factories import make_app
from fastapi.testclient import TestClient

from audit_sampling import batches, formats
from audit_sampling.context import AuditContext
from audit_sampling.draw import draw_sample
from audit_sampling.frame import make_frame
from audit_sampling.http import audit_router
from integrity.auth import Credentials
from integrity.clock import FrozenClock
from integrity.http import create_app
from integrity.model import Status

NOW = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
SEED = "52061387942016785301"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    app = make_app(tmp_path / "home", clock=FrozenClock(NOW))
    populate(app, {"W1": 30, "W2": 12}, datetime(2026, 10, 2, tzinfo=UTC))
    people = register(app, NOW, auditors=("aud1", "aud2"))
    people.upsert("clerk", roles=["staff"], at=NOW)
    ctx = AuditContext.from_app(app)
    frame = make_frame(ctx, "2026-10", "boss").frame
    sample = draw_sample(ctx, frame.frame_id, SEED, "boss").sample
    made = batches.split(ctx, sample.sample_id, "boss", 5, ["aud1", "aud2"])
    client = TestClient(create_app(app, seal_every_s=None, routers=[audit_router(ctx)]))
    creds = app.get(Credentials)
    tokens = {p: creds.issue("boss", p).token for p in ("aud1", "aud2", "clerk")}
    yield {"app": app, "ctx": ctx, "client": client, "batches": made, "tokens": tokens}
    client.close()
    app.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_or_unknown_token_is_401(world: dict[str, Any]) -> None:
    c, b = world["client"], world["batches"][0]
    r = c.get(f"/v1/audit/batches/{b.batch_id}")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.get(f"/v1/audit/batches/{b.batch_id}", headers=auth("forged")).status_code == 401
    assert c.get("/v1/audit/batches", headers={"Authorization": "Basic abc"}).status_code == 401


def test_an_auditor_sees_only_their_own_batches(world: dict[str, Any]) -> None:
    c, tok = world["client"], world["tokens"]
    mine = [b for b in world["batches"] if b.auditor_id == "aud1"]
    theirs = [b for b in world["batches"] if b.auditor_id == "aud2"]
    listed = c.get("/v1/audit/batches", headers=auth(tok["aud1"])).json()["batches"]
    assert [b["batch_id"] for b in listed] == [b.batch_id for b in mine]
    for b in theirs:
        r = c.get(f"/v1/audit/batches/{b.batch_id}", headers=auth(tok["aud1"]))
        assert r.status_code == 403 and "not assigned to 'aud1'" in r.json()["detail"]
    assert c.get("/v1/audit/batches/99999", headers=auth(tok["aud1"])).status_code == 404
    # a registered person without the auditor role
    assert (
        c.get(f"/v1/audit/batches/{mine[0].batch_id}", headers=auth(tok["clerk"])).status_code
        == 403
    )
    # nothing was logged for the refused requests
    app = world["app"]
    for b in theirs:
        assert not [
            e
            for e in app.ledger.events_about(f"audit:batch:{b.batch_id}")
            if e.kind == "audit.pull"
        ]


def test_a_pull_over_http_is_the_cli_export_and_is_logged(world: dict[str, Any]) -> None:
    c, tok, app, ctx = world["client"], world["tokens"], world["app"], world["ctx"]
    b = world["batches"][0]
    r = c.get(f"/v1/audit/batches/{b.batch_id}", headers=auth(tok["aud1"]))
    assert r.status_code == 200
    doc = r.json()
    m, items = doc["manifest"], doc["items"]
    assert m["seed"] == SEED and m["batch_id"] == b.batch_id and m["auditor"] == "aud1"
    assert [i["rating_id"] for i in items] == [i["rating_id"] for i in m["items"]]
    assert set(items[0]) == set(formats.EXPORT_COLUMNS)
    text = r.text
    assert "audit-device-" not in text and "10.0." not in text  # raw values never leave
    # the manifest's hash is the JSON Lines export's, byte for byte
    jsonl = formats.render_rows(items, "jsonl")
    assert hashlib.sha256(jsonl).hexdigest() == m["file"]["sha256"]
    cli = batches.pull(ctx, b.batch_id, "aud1", "jsonl")
    assert cli.data == jsonl
    pulls = [
        e for e in app.ledger.events_about(f"audit:batch:{b.batch_id}") if e.kind == "audit.pull"
    ]
    assert [(e.actor, e.evidence["via"]) for e in pulls] == [("aud1", "http"), ("aud1", "cli")]


def test_findings_over_http_are_all_or_nothing(world: dict[str, Any]) -> None:
    c, tok, app = world["client"], world["tokens"], world["app"]
    b = world["batches"][0]
    ids = [
        i["rating_id"]
        for i in c.get(f"/v1/audit/batches/{b.batch_id}", headers=auth(tok["aud1"])).json()["items"]
    ]
    bad = [
        {"rating_id": ids[0], "code": "fabricated", "note": "no such visit"},
        {"rating_id": ids[1], "code": "made_up"},
    ]
    r = c.post(f"/v1/audit/batches/{b.batch_id}/findings", json=bad, headers=auth(tok["aud1"]))
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["item 2: code"]
    assert app.ledger.current(ids[0])[0] is Status.ACCEPTED
    r = c.post(f"/v1/audit/batches/{b.batch_id}/findings", json=bad[:1], headers=auth(tok["aud2"]))
    assert r.status_code == 403
    r = c.post(
        f"/v1/audit/batches/{b.batch_id}/findings", json={"rating_id": 1}, headers=auth(tok["aud1"])
    )
    assert r.status_code == 422
    r = c.post(f"/v1/audit/batches/{b.batch_id}/findings", json=bad[:1], headers=auth(tok["aud1"]))
    assert r.status_code == 200 and r.json()["voided"] == [ids[0]]
    assert app.ledger.current(ids[0])[0] is Status.VOIDED


def test_the_routes_are_in_the_openapi_schema(world: dict[str, Any]) -> None:
    paths = world["client"].get("/openapi.json").json()["paths"]
    assert {
        "/v1/audit/batches",
        "/v1/audit/batches/{batch_id}",
        "/v1/audit/batches/{batch_id}/findings",
    } <= set(paths)
