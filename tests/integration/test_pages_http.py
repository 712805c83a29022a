"""``integrity serve`` shows the supervisor's page and spreadsheet to signed-in people:
``GET /v1/reports/page|book`` with a bearer personal token under the read policy, and
``integrity report page|book`` through ``POST /v1/commands`` (the file comes back)."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import make_app
from fastapi.testclient import TestClient
from publishing_factories import HALLS, NOW, build_month

import bootstrap
from integrity.auth import Credentials
from integrity.clock import FrozenClock

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import cli  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = make_app(tmp_path_factory.mktemp("serve") / "home", clock=FrozenClock(NOW))
    build_month(app)
    creds = app.get(Credentials)
    tokens = {"boss": creds.issue(None, "boss").token}
    for who in ("sup", "rev1", "head", "S1"):
        tokens[who] = creds.issue("boss", who).token
    client = TestClient(bootstrap.asgi_app(app, cli_root=cli.main))
    yield client, tokens
    app.close()


def get(client: TestClient, path: str, token: str | None = None) -> object:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, headers=headers)


def test_the_page_for_supervisors_and_admins(served: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = served
    for who in ("sup", "boss"):
        res = get(client, "/v1/reports/page?period=2026-10", tokens[who])
        assert res.status_code == 200, res.text  # type: ignore[attr-defined]
        assert res.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]
        html = res.text  # type: ignore[attr-defined]
        assert HALLS["H1"] in html and "李娜 (S1)" in html and html.count("<svg ") >= 5
    res = get(client, "/v1/reports/book?from=2026-10-01&to=2026-10-31", tokens["sup"])
    assert res.status_code == 200 and res.content[:2] == b"PK"  # type: ignore[attr-defined]
    assert "attachment" in res.headers["content-disposition"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("itk_not-a-token", 401), ("rev1", 403), ("head", 403), ("S1", 403)],
)
def test_who_may_not_read_the_pages(
    served: tuple[TestClient, dict[str, str]], token: str | None, status: int
) -> None:
    client, tokens = served
    res = get(client, "/v1/reports/page?period=2026-10", tokens.get(token or "", token))
    assert res.status_code == status  # type: ignore[attr-defined]
    if status == 401:
        assert res.headers["www-authenticate"] == "Bearer"  # type: ignore[attr-defined]


def test_a_bad_period_is_422_and_the_schema_documents_the_answers(
    served: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = served
    res = get(client, "/v1/reports/page?period=2026-13", tokens["sup"])
    assert res.status_code == 422 and res.json()["errors"][0]["field"] == "period"  # type: ignore[attr-defined]
    schema = client.get("/openapi.json").json()
    for path in ("/v1/reports/page", "/v1/reports/book"):
        answers = schema["paths"][path]["get"]["responses"]
        assert {"200", "401", "403", "422"} <= set(answers), path
    assert "text/html" in schema["paths"]["/v1/reports/page"]["get"]["responses"]["200"]["content"]


def test_report_page_runs_through_the_server_and_the_file_comes_back(
    served: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = served
    argv = ["report", "page", "--period", "2026-10", "-o", "page.html"]
    res = client.post(
        "/v1/commands", json={"argv": argv}, headers={"Authorization": f"Bearer {tokens['sup']}"}
    )
    body = res.json()
    assert res.status_code == 200 and body["exit_code"] == 0, body
    [f] = body["files"]
    html = base64.b64decode(f["content"]).decode()
    assert f["slot"] == argv.index("page.html") and HALLS["H2"] in html
    argv = ["report", "--by", "window", "--period", "2026-10", "--format", "csv"]
    res = client.post(
        "/v1/commands", json={"argv": argv}, headers={"Authorization": f"Bearer {tokens['head']}"}
    )
    assert res.json()["exit_code"] == 0 and "H1-W01" in res.json()["stdout"]  # the table, as before
    argv = ["report", "book", "--period", "2026-10", "-o", "book.xlsx"]
    res = client.post(
        "/v1/commands", json={"argv": argv}, headers={"Authorization": f"Bearer {tokens['head']}"}
    )
    assert res.json()["exit_code"] == 1 and "may not read report pages" in res.json()["stderr"]
    assert not res.json()["files"]
    # the operator's release is not a person command
    argv = ["publish", "--period", "2026-10", "-o", "release"]
    res = client.post(
        "/v1/commands", json={"argv": argv}, headers={"Authorization": f"Bearer {tokens['boss']}"}
    )
    assert res.status_code == 403
