"""The floor of ``bench_serve``: a bare intake endpoint on the same framework and server.

``POST /v1/ratings`` parses the JSON body and inserts it as one row (one commit through
SQLAlchemy Core on the same PostgreSQL), nothing else: no key, no judging, no limiter,
no ledger. Run by ``bench/bench_serve.py`` in its own process:

    .venv/bin/python -m bench.serve_floor --db postgresql://... --port 8081 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse

from integrity.adapters.sql import make_engine

_MD = sa.MetaData()
FLOOR = sa.Table(
    "floor_ratings",
    _MD,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("ticket_id", sa.String(128), nullable=False),
    sa.Column("window_id", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)


def floor_app() -> FastAPI:
    """The ASGI application (a factory: one per worker process)."""
    engine = make_engine(os.environ["FLOOR_DB"])
    api = FastAPI()

    @api.post("/v1/ratings")
    def post(body: Any = Body(...)) -> JSONResponse:  # noqa: B008 - FastAPI's idiom
        with engine.begin() as conn:
            rid = conn.execute(
                FLOOR.insert().returning(FLOOR.c.id),
                {
                    "ticket_id": body["ticket_id"],
                    "window_id": body["window_id"],
                    "body": json.dumps(body),
                },
            ).scalar_one()
        return JSONResponse({"rating_id": rid, "status": "accepted"})

    @api.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return api


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    engine = make_engine(args.db)
    _MD.create_all(engine)
    engine.dispose()
    os.environ["FLOOR_DB"] = args.db
    uvicorn.run(
        "bench.serve_floor:floor_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        http="h11",
    )


if __name__ == "__main__":
    main()
