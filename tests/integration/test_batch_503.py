"""A batch that fails half-way: what the 503 says, and that retrying it is exact.

``POST /v1/ratings:batch`` writes in chunks, one transaction each. When the ledger fails
on a later chunk, the answer is a 503 that says how many elements are settled; the
same batch sent again ends with exactly one row per element and the decisions an
uninterrupted run gives, with the limiter holding the same slots.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from factories import bearer, intake_key, make_app, rating, rating_counts, serial, sqlite_url
from fastapi.testclient import TestClient
from faults import CrashOn

from integrity.app import App
from integrity.http import BATCH_503, create_app
from rules.ratelimit import MemoryLimiter


def limiter_entries(app: App) -> int:
    """How many (key, member) entries the limiter holds in the app's namespace."""
    if isinstance(app.limiter, MemoryLimiter):
        return app.limiter.size()
    client: Any = app.limiter.client  # type: ignore[attr-defined]
    keys = list(client.scan_iter(match=f"{app.settings.namespace}:*", count=1000))
    return sum(int(client.zcard(k)) for k in keys)


@pytest.fixture(params=["memory", "redis"])
def apps(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[App, App]]:
    """Two instances on their own SQLite ledgers: one to break, one uninterrupted."""
    made = []
    for name in ("broken", "reference"):
        home = tmp_path / name
        if request.param == "memory":
            made.append(make_app(home, sqlite_url(home / "ledger.db")))
        else:
            url = request.getfixturevalue("redis_url")
            ns = f"{request.getfixturevalue('redis_namespace')}:{name}"
            made.append(make_app(home, sqlite_url(home / "ledger.db"), url, namespace=ns))
    try:
        yield made[0], made[1]
    finally:
        for a in made:
            if not isinstance(a.limiter, MemoryLimiter):
                a.limiter.reset()
            a.close()


def batch() -> list[dict[str, Any]]:
    """700 elements: devices and addresses shared, so later decisions depend on earlier
    ones (rate limits), an element that does not parse at 300 (the chunk ends there), new
    devices after it, and an identical repeat at the end."""
    tag = serial()
    docs: list[dict[str, Any]] = []
    for i in range(700):
        group = "a" if i < 300 else "b"
        d = i % 13
        docs.append(
            rating(
                device_id=f"bd{tag}-{group}{d}",
                window_id=f"W{i % 5}",
                ip=f"10.{tag % 200}.{d}.{i % 4 + 1}",
            )
        )
    docs.insert(300, {"ticket_id": "", "nope": 1})
    docs.append(dict(docs[420]))
    return docs


def decided(results: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["status"], tuple(r.get("reasons", ())), bool(r.get("errors"))) for r in results]


def test_a_batch_retried_after_a_503_ends_exactly_like_an_uninterrupted_run(
    apps: tuple[App, App],
) -> None:
    broken, reference = apps
    docs = batch()
    with TestClient(
        create_app(reference, seal_every_s=None), headers=bearer(intake_key(reference, "gw"))
    ) as client:
        expected = client.post("/v1/ratings:batch", json=docs)
    assert expected.status_code == 200
    want = expected.json()["results"]
    assert {r["status"] for r in want} >= {"accepted", "rejected", None}

    with TestClient(
        create_app(broken, seal_every_s=None), headers=bearer(intake_key(broken, "gw"))
    ) as client:
        # the first chunk (elements 0-299) is written; the next one fails
        with CrashOn(broken.ledger.engine, r"insert\s+into\s+events", after=1) as crash:
            failed = client.post("/v1/ratings:batch", json=docs)
        assert crash.fired == 1
        assert failed.status_code == 503
        body = failed.json()
        assert body["completed"] == 301  # 300 decisions and the element that does not parse
        assert body["batch"] == BATCH_503 and "retry" in body["detail"]
        assert rating_counts(broken.ledger.engine)["ratings"] == 300

        again = client.post("/v1/ratings:batch", json=docs)
    assert again.status_code == 200
    got = again.json()["results"]
    assert decided(got) == decided(want)
    assert [r.get("replayed", False) for r in got[:300]] == [True] * 300
    assert not any(r.get("replayed") for r in got[301:-1])
    assert got[-1]["replayed"] and got[-1]["rating_id"] == got[420]["rating_id"]
    # one row per element that parses (the repeat is the same rating), none twice
    assert rating_counts(broken.ledger.engine) == rating_counts(reference.ledger.engine)
    assert rating_counts(broken.ledger.engine)["ratings"] == 700
    # and no slot taken twice: the limiter holds what the uninterrupted run's holds
    assert limiter_entries(broken) == limiter_entries(reference) > 0


def test_the_503_answer_of_a_batch_is_documented() -> None:
    reference = (Path(__file__).resolve().parents[2] / "docs" / "reference.md").read_text()
    assert BATCH_503 in " ".join(reference.split())
