"""People work through a running server with nothing but their token:
``integrity --server URL ...`` against a real ``integrity serve`` process on PostgreSQL
and Redis. The server runs the same commands as the person the bearer token names;
roles are checked there; operator commands are refused; reads follow the read policy.

The operator sets the instance up directly on the database (in-process CLI); people's
commands run with no database settings at all (a bogus ``INTEGRITY_DB``, an empty home),
one of them in a separate client process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from factories import make_app, pg_ledger, rating
from fastapi.testclient import TestClient
from processes import start

from integrity.adapters import tables as t
from integrity.catalogue import KINDS, describe
from integrity.http import create_app
from integrity.people import People
from integrity.remote import CommandRunner

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import cli  # noqa: E402

START = datetime(2026, 10, 5, 2, 0, tzinfo=UTC)
SEED = "27182818284590452353"
#: Settings that reach no database: people never need them.
NO_DATABASE = {"INTEGRITY_DB": "postgresql://nobody@127.0.0.1:1/none"}


@dataclass
class World:
    base: str
    db_url: str
    tokens: dict[str, str]
    held: list[int]
    operator_env: dict[str, str]
    nowhere: Path

    def person(self, who: str, *args: str, token: str | None = None) -> Result:
        """``integrity --server URL ARGS`` as ``who`` (in-process client, no database)."""
        env = {
            **NO_DATABASE,
            "INTEGRITY_HOME": str(self.nowhere),
            "INTEGRITY_TOKEN": token or self.tokens[who],
        }
        return CliRunner().invoke(cli.main, ["--server", self.base, *args], env=env)

    def post(self, who: str | None, argv: list[str], **extra: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.post(
            f"{self.base}/v1/commands", json={"argv": argv, **extra}, headers=headers, timeout=60
        )

    def actors_of(self, rating_id: int) -> list[tuple[str, str]]:
        engine = sa.create_engine(self.db_url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.events.c.kind, t.events.c.actor)
                .where(t.events.c.rating_id == rating_id)
                .order_by(t.events.c.event_id)
            ).all()
        engine.dispose()
        return [(k, a) for k, a in rows]


def operator(env: dict[str, str], *args: str) -> Result:
    res = CliRunner().invoke(cli.main, list(args), env=env)
    assert res.exit_code == 0, (args, res.stdout, res.stderr, res.exception)
    return res


def _ratings() -> list[dict[str, Any]]:
    docs = []
    at = START
    for n in range(12):
        docs.append(
            rating(
                window_id="W01",
                staff_id="S1",
                submitted_at=at.isoformat(),
                comment=f"comment {n}",
            )
        )
        at += timedelta(hours=3)
    for _ in range(2):  # at a window the registry does not know: held
        docs.append(rating(window_id="W99", submitted_at=at.isoformat(), comment="typo window"))
        at += timedelta(hours=3)
    return docs


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, pg_server_url: str, redis_url: str
) -> Iterator[World]:
    base_dir = tmp_path_factory.mktemp("server-mode")
    namespace = f"itest:{uuid.uuid4().hex[:12]}"
    with pg_ledger(pg_server_url) as db_url:
        env = {
            "INTEGRITY_HOME": str(base_dir / "home"),
            "INTEGRITY_DB": db_url,
            "INTEGRITY_REDIS": redis_url,
            "INTEGRITY_NAMESPACE": namespace,
        }
        operator(env, "init")
        registry = {
            "halls": [{"hall_id": "H1", "supervisor": "SUP"}],
            "windows": [{"window_id": "W01", "hall_id": "H1", "head": "S1"}],
            "roster": [{"staff_id": "S1", "window_id": "W01", "from": "2026-10-01"}],
        }
        (base_dir / "registry.json").write_text(json.dumps(registry))
        operator(env, "registry", "load", str(base_dir / "registry.json"))
        (base_dir / "ratings.jsonl").write_text("".join(json.dumps(d) + "\n" for d in _ratings()))
        operator(env, "ingest", str(base_dir / "ratings.jsonl"))
        operator(env, "staff", "add", "A1", "--role", "admin")  # the first admin
        tokens = {"A1": operator(env, "staff", "token", "issue", "A1").stdout.strip()}
        admin = {**env, "INTEGRITY_TOKEN": tokens["A1"]}
        for pid, role in (("R1", "reviewer"), ("S1", "staff"), ("AU", "auditor")):
            operator(admin, "staff", "add", pid, "--role", role, "--unit", f"U-{pid}")
            tokens[pid] = operator(admin, "staff", "token", "issue", pid).stdout.strip()
        operator(admin, "audit", "frame", "--period", "2026-10", "-o", str(base_dir / "f.json"))
        operator(admin, "audit", "draw", "1", "--seed", SEED)
        operator(admin, "audit", "batches", "1", "--size", "50", "--auditor", "AU")
        held = [
            r["rating_id"]
            for r in json.loads(operator(env, "export", "ratings", "--format", "json").stdout)
            if r["status"] == "held"
        ]
        assert len(held) == 2

        port = _free_port()
        proc, out = start(
            [sys.executable, str(ROOT / "cli.py"), "serve", "--port", str(port)],
            env={**os.environ, **env},
            cwd=base_dir,
        )
        try:
            # one process binds its socket after its startup: wait until it listens
            out.wait_for("Uvicorn running on", what="integrity serve")
            nowhere = base_dir / "nowhere"
            nowhere.mkdir()
            yield World(f"http://127.0.0.1:{port}", db_url, tokens, held, env, nowhere)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            import redis

            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
            if keys:
                client.delete(*keys)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_reviewer_clears_a_held_rating_with_only_a_token(world: World, tmp_path: Path) -> None:
    rid = world.held[0]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("INTEGRITY_")},
        **NO_DATABASE,
        "INTEGRITY_HOME": str(world.nowhere),
        "INTEGRITY_SERVER": world.base,
        "INTEGRITY_TOKEN": world.tokens["R1"],
    }
    client = [sys.executable, str(ROOT / "cli.py")]  # a separate client process
    listed = subprocess.run(
        [*client, "review", "list", "--format", "json"],
        env=env, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert rid in [r["rating_id"] for r in json.loads(listed.stdout)]
    cleared = subprocess.run(
        [*client, "review", "clear", str(rid), "--reason", "a typo in the window id"],
        env=env, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert cleared.returncode == 0, cleared.stderr
    assert f"rating {rid} cleared: accepted, counts again" in cleared.stdout
    assert world.actors_of(rid)[-1] == ("clear", "R1")


def test_a_typed_name_does_not_act_through_the_server_either(world: World) -> None:
    rid = world.held[1]
    res = world.person("S1", "review", "clear", str(rid), "--reason", "looks fine", "--as", "R1")
    assert res.exit_code == 1 and "you are signed in as S1, not R1" in res.stderr
    res = world.person("S1", "review", "clear", str(rid), "--reason", "looks fine")
    assert res.exit_code == 1 and "'S1' does not hold the reviewer role" in res.stderr
    assert all(actor != "R1" for _, actor in world.actors_of(rid))
    assert world.actors_of(rid)[-1][0] == "decision"  # still held, nothing written


def test_operator_commands_are_refused(world: World, tmp_path: Path) -> None:
    for argv in (
        ["ingest", "ratings.jsonl"],
        ["init"],
        ["serve"],
        ["ledger", "verify"],
        ["venues", "load", "v.json"],
        ["registry", "load", "r.json"],
        ["detect"],
        ["staff", "add", "X9", "--role", "admin"],
        ["audit", "frame", "--period", "2026-10"],
    ):
        r = world.post("A1", argv)
        assert r.status_code == 403, (argv, r.text)
        assert "not available through the server" in r.json()["detail"]
    (tmp_path / "x.jsonl").write_text("{}\n")
    res = world.person("A1", "ingest", str(tmp_path / "x.jsonl"))
    assert res.exit_code == 1 and "not available through the server" in res.stderr
    res = world.person("A1", "review", "list", "--db", world.db_url)
    assert res.exit_code == 2 and "cannot be used through the server" in res.stderr


def test_tokens_are_checked_on_every_request(world: World) -> None:
    r = world.post(None, ["review", "list"])
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    res = world.person("R1", "review", "list", token="itk_forged")
    assert res.exit_code == 1 and "did not accept your token: unknown token" in res.stderr
    # a person revokes their own spare token through the server; it stops working at once
    admin = {**world.operator_env, "INTEGRITY_TOKEN": world.tokens["A1"]}
    spare = operator(admin, "staff", "token", "issue", "R1", "--format", "json").stdout
    doc = json.loads(spare)
    res = world.person("R1", "staff", "token", "revoke", str(doc["credential_id"]))
    assert res.exit_code == 0, res.stderr
    res = world.person("R1", "review", "list", token=doc["token"])
    assert res.exit_code == 1 and "was revoked" in res.stderr
    res = world.person("R1", "staff", "token", "issue", "R1")  # issuing stays with admins
    assert res.exit_code == 1 and "admin role" in res.stderr


def test_reads_follow_the_read_policy(world: World) -> None:
    res = world.person("AU", "export", "ratings", "--format", "json")
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert rows and all("comment" not in r for r in rows)  # comments only when asked for
    res = world.person("AU", "export", "ratings", "--with-comments")
    assert res.exit_code == 1 and "may not read comments" in res.stderr  # auditors read none
    res = world.person("R1", "export", "ratings", "--with-comments", "--format", "json")
    assert json.loads(res.stdout)[0]["comment"] == "comment 0"
    res = world.person("S1", "export", "ratings")
    assert res.exit_code == 1 and "'S1' may not read ratings" in res.stderr
    res = world.person("S1", "report", "--by", "staff")
    assert res.exit_code == 1 and "may not read staff performance" in res.stderr
    res = world.person("S1", "report", "--by", "window", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["window_id"] == "W01"
    res = world.person("S1", "audit", "report")
    assert res.exit_code == 1 and "may not read audit" in res.stderr


def test_an_auditor_pulls_and_records_files_through_the_server(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    res = world.person("AU", "audit", "batches", "--format", "json")
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    assert [b["auditor_id"] for b in json.loads(res.stdout)] == ["AU"]
    res = world.person("AU", "audit", "pull", "1", "--format", "csv", "-o", "out/batch.csv")
    assert res.exit_code == 0, res.stderr
    assert "-> out/batch.csv" in res.stdout and "integrity-command-" not in res.stdout
    pulled = list(csv.DictReader(io.StringIO(Path("out/batch.csv").read_text())))
    manifest = json.loads(Path("out/batch.csv.manifest.json").read_text())
    assert manifest["auditor"] == "AU" and len(manifest["items"]) == len(pulled) > 0
    res = world.person("R1", "audit", "pull", "1", "-o", "theirs.csv")
    assert res.exit_code == 1 and not Path("theirs.csv").exists()

    out = io.StringIO()
    w = csv.DictWriter(out, ["rating_id", "code", "note"], lineterminator="\n")
    w.writeheader()
    for r in pulled:
        w.writerow({"rating_id": r["rating_id"], "code": "genuine", "note": ""})
    Path("findings.csv").write_text(out.getvalue())
    res = world.person("AU", "audit", "record", "1", "findings.csv", "--format", "json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["findings"] == len(pulled)


def test_concurrent_commands_never_mix_their_output(world: World) -> None:
    codes = sorted(map(str, KINDS))[:12]

    def explain(code: str) -> tuple[str, str]:
        r = world.post("R1", ["explain", code])
        return code, r.json()["stdout"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(explain, codes * 2))
    assert results == [(c, f"{c}: {describe(c)}\n") for c in codes * 2]


def test_the_schema_documents_the_endpoint(world: World) -> None:
    doc = httpx.get(f"{world.base}/openapi.json", timeout=10).json()
    op = doc["paths"]["/v1/commands"]["post"]
    assert {"200", "401", "403", "413"} <= set(op["responses"])
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["argv"] and "files" in schema["properties"]


def test_a_body_over_the_limit_is_413(tmp_path: Path) -> None:
    with make_app(tmp_path / "home") as app:
        People(app.ledger).upsert("A1", roles=["admin"], at=datetime.now(UTC))
        from integrity.auth import Credentials

        token = app.get(Credentials).issue(None, "A1").token
        api = create_app(app, seal_every_s=None, commands=CommandRunner(cli.main, app, 1000))
        with TestClient(api) as client:
            auth = {"Authorization": f"Bearer {token}"}
            big = {"argv": ["explain", "x" * 2000]}
            assert client.post("/v1/commands", json=big, headers=auth).status_code == 413
            small = client.post("/v1/commands", json={"argv": ["explain", "void"]}, headers=auth)
            assert small.status_code == 200 and small.json()["exit_code"] == 0
            bad = client.post("/v1/commands", json={"argv": []}, headers=auth)
            assert bad.status_code == 422
            missing = client.post(
                "/v1/commands", json={"argv": ["audit", "record", "1", "f.csv"]}, headers=auth
            )
            assert missing.status_code == 422 and "was not uploaded" in missing.text
