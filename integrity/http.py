"""HTTP intake (docs/reference.md, HTTP) on FastAPI: the same hook as the CLI and the Python API.

Live intake judges each rating at the time of receipt. A background thread seals
new ledger events into the Merkle log every few seconds, off the request path.
``POST /v1/commands`` runs a person-facing command of the CLI for the person a
bearer token names (:mod:`integrity.remote`; ``integrity --server URL ...`` is its
client).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from integrity.app import App
from integrity.auth import Credentials
from integrity.errors import (
    BackendUnavailable,
    EngineError,
    InvalidInput,
    PermissionDenied,
    Unauthenticated,
)
from integrity.hook import IngestItem
from integrity.parsing import RatingIn
from integrity.people import Person
from integrity.remote import MAX_BODY, CommandNotAllowed, CommandRunner, parse_request

log = logging.getLogger("integrity.http")

MAX_BATCH = 1000
SEAL_EVERY_S = 2.0

_RATING_SCHEMA = RatingIn.model_json_schema()
_DECISION_EXAMPLE = {
    "rating_id": 42,
    "status": "accepted",
    "counted": True,
    "reasons": [],
    "rule_set_id": "rs-61015115e8cb",
}


_COMMAND_BODY = {
    "type": "object",
    "required": ["argv"],
    "properties": {
        "argv": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The command line after `integrity`, e.g. "
            '["review", "clear", "42", "--reason", "known regular customer"]',
        },
        "files": {
            "type": "object",
            "additionalProperties": {"type": "string", "contentEncoding": "base64"},
            "description": "Content of each input file named on the command line, keyed by "
            "its index in argv (base64)",
        },
    },
}
_COMMAND_RESULT = {
    "exit_code": 0,
    "stdout": "rating 42 cleared: accepted, counts again (event 9)\n",
    "stderr": "",
    "files": [{"slot": 4, "path": "batch.csv", "content": "cmF0aW5nX2lkLC4uLgo="}],
}


def bearer(credentials: Credentials, authorization: str | None) -> Person:
    """The person an ``Authorization: Bearer <token>`` header signs in; else
    :class:`Unauthenticated` (HTTP 401)."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthenticated("send Authorization: Bearer <your personal token>")
    return credentials.authenticate(authorization[7:].strip())


def unauthorized(err: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=401, content={"detail": str(err)}, headers={"WWW-Authenticate": "Bearer"}
    )


#: What a 503 on ``POST /v1/ratings:batch`` means (in its body, and docs/reference.md).
BATCH_503 = (
    "A batch is written in chunks, one transaction each. The first `completed` elements "
    "are settled: each written element has its decision, and elements that do not parse "
    "were refused. The chunk that failed and the ones after it were not written (unless "
    "the database failed while confirming a commit: then that chunk may be written) and "
    "the rate-limit slots taken for them were given back. Retrying the SAME batch is "
    "always safe: identical elements return their first decision and write nothing, and "
    "no slot is consumed twice."
)


def _errors(err: InvalidInput) -> dict[str, Any]:
    return {"detail": err.summary(), "errors": [e.as_dict() for e in err.errors]}


def _item(item: IngestItem) -> dict[str, Any]:
    if item.error is not None:
        return {"index": item.line - 1, "status": None, **_errors(item.error)}
    assert item.decision is not None
    return {"index": item.line - 1, **item.decision.as_dict()}


def log_config() -> dict[str, Any]:
    """Logging for ``serve``: uvicorn's own, the engine's loggers (``integrity.*``) beside
    it, and an access log that never shows the client's address (raw addresses are
    personal data and never reach a log)."""
    from uvicorn.config import LOGGING_CONFIG

    cfg: dict[str, Any] = {
        k: (dict(v) if isinstance(v, dict) else v) for k, v in LOGGING_CONFIG.items()
    }
    cfg["formatters"] = {k: dict(v) for k, v in LOGGING_CONFIG["formatters"].items()}
    cfg["formatters"]["access"]["fmt"] = '%(levelprefix)s "%(request_line)s" %(status_code)s'
    cfg["loggers"] = {
        **LOGGING_CONFIG["loggers"],
        "integrity": {"handlers": ["default"], "level": "INFO", "propagate": False},
    }
    return cfg


class Background:
    """The server's background round, every ``every`` seconds until stopped: seal new events
    into the Merkle log, pick up what changed meanwhile on the ledger (a venue registry
    ``integrity venues load`` replaced, a new service registry, a period closed), then
    run each of the App's ``background`` tasks (registered by the composition root, e.g.
    the webhook outbox) with the round's time. One thread per process; a failed step is
    logged and the next round retries it, and one task failing never stops the others.
    When it stops it runs one last round, so what the process wrote is sealed by the
    time it exits."""

    def __init__(self, app: App, every: float) -> None:
        self.app = app
        self.every = every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="integrity-background", daemon=True)

    def round(self) -> None:
        """One round: seal, reload, then the background tasks; never raises (logs instead)."""
        self._step("background round", self._seal_and_reload)
        for task in self.app.background:
            self._step(getattr(task, "__name__", "background task"), task, self.app.clock.now())

    def _seal_and_reload(self) -> None:
        sealed = self.app.log.seal(self.app.clock.now())
        if sealed:
            log.debug("sealed %d event(s)", sealed)
        if self.app.hook.reload():
            log.info("configuration reloaded (venue registry, service registry, closed periods)")

    @staticmethod
    def _step(name: str, fn: Callable[..., object], *args: Any) -> None:
        try:
            fn(*args)
        except EngineError as err:  # keep serving; the next round retries
            log.warning("%s failed: %s", name, err)
        except Exception:  # a background thread must not die silently
            log.exception("%s failed unexpectedly; retrying next round", name)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self.round()
        self.round()

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def create_app(
    app: App,
    seal_every_s: float | None = SEAL_EVERY_S,
    routers: Sequence[APIRouter] = (),
    commands: CommandRunner | None = None,
) -> FastAPI:
    """The ASGI application over a wired :class:`App`. ``seal_every_s=None`` disables sealing.

    ``routers``: packages' own endpoints (e.g. the audit router), included as given.
    ``commands``: the runner of person-facing CLI commands behind ``POST /v1/commands``
    (the composition root gives it the CLI); without it the endpoint is absent.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if seal_every_s is None:
            yield
            return
        with Background(app, seal_every_s):
            yield

    api = FastAPI(
        title="Integrity engine",
        version="1",
        summary="Validation hook for citizen ratings of public services",
        lifespan=lifespan,
    )

    @api.exception_handler(BackendUnavailable)
    async def _unavailable(_: Any, err: BackendUnavailable) -> JSONResponse:
        log.error("backend unavailable: %s", err)
        return JSONResponse(
            status_code=503,
            content={"detail": "service unavailable: the ledger did not answer; retry"},
        )

    @api.post(
        "/v1/ratings",
        summary="Validate and record one rating",
        responses={
            200: {
                "description": "The decision",
                "content": {"application/json": {"example": _DECISION_EXAMPLE}},
            },
            409: {
                "description": "Another rating already exists for this ticket; this one is recorded as rejected"
            },
            422: {"description": "The rating does not parse; field-level errors; nothing written"},
            503: {"description": "The ledger is unavailable; nothing written"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _RATING_SCHEMA}},
            }
        },
    )
    def post_rating(body: Any = Body(...)) -> JSONResponse:  # noqa: B008 - FastAPI's idiom
        try:
            decision = app.hook.validate(body, replay=False)
        except InvalidInput as err:
            return JSONResponse(status_code=422, content=_errors(err))
        code = 409 if decision.duplicate_ticket else 200
        return JSONResponse(status_code=code, content=decision.as_dict())

    @api.post(
        "/v1/ratings:batch",
        summary="Validate and record up to 1000 ratings, in order",
        responses={
            200: {
                "description": "One result per element, in order: a decision, or field errors (status null)"
            },
            422: {"description": "The body is not a JSON array, or too long"},
            503: {
                "description": "The ledger is unavailable: `completed` elements are settled; "
                + BATCH_503
            },
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "array", "items": _RATING_SCHEMA}}
                },
            }
        },
    )
    def post_batch(body: Any = Body(...)) -> JSONResponse:  # noqa: B008
        if not isinstance(body, list):
            return JSONResponse(
                status_code=422, content={"detail": "expected a JSON array of ratings"}
            )
        if len(body) > MAX_BATCH:
            return JSONResponse(
                status_code=422, content={"detail": f"at most {MAX_BATCH} ratings per batch"}
            )
        items: list[dict[str, Any]] = []
        try:
            for item in app.hook.validate_stream(body, replay=False):
                items.append(_item(item))
        except BackendUnavailable as err:
            log.error(
                "backend unavailable after %d of %d batch elements: %s", len(items), len(body), err
            )
            return JSONResponse(
                status_code=503,
                content={
                    "detail": "service unavailable: the ledger did not answer; retry the same batch",
                    "completed": len(items),
                    "batch": BATCH_503,
                },
            )
        return JSONResponse(status_code=200, content={"results": items})

    @api.get("/healthz", summary="Liveness and backend health")
    def healthz() -> JSONResponse:
        try:
            app.ledger.active_rule_set()
            db = "ok"
        except BackendUnavailable:
            db = "unavailable"
        ping = getattr(app.limiter, "ping", None)
        limiter = "ok" if ping is None or _safe_ping(ping) else "unavailable"
        body = {
            "status": "ok" if db == "ok" else "degraded",
            "ledger": db,
            "limiter": limiter,
            "rule_set_id": app.core.rule_set_id,
        }
        return JSONResponse(status_code=200 if db == "ok" else 503, content=body)

    if commands is not None:
        _command_endpoint(api, app, commands)
    for router in routers:
        api.include_router(router)
    return api


def _command_endpoint(api: FastAPI, app: App, runner: CommandRunner) -> None:
    credentials = app.get(Credentials)

    @api.post(
        "/v1/commands",
        summary="Run a person-facing CLI command as the person the bearer token names",
        description=(
            "What `integrity --server URL ...` sends. The server runs the same click command "
            "of the same CLI, acting as the token's person (`--as` is only checked against "
            "it); roles are checked as on the command line. Person commands only: appeal, "
            "review, audit pull/record/batches/report/show/pulls/assign/auditors/token, "
            "report, export ratings, staff list, staff token, explain. Input files named "
            "on the command line travel in `files`; output files (`-o FILE`) come back in "
            "`files`. One command runs at a time per server process."
        ),
        responses={
            200: {
                "description": "The command ran; its exit code, output, and output files "
                "(`slot`: the argv index of the path the client named; `path`: relative "
                "to that path's folder; `content`: base64)",
                "content": {"application/json": {"example": _COMMAND_RESULT}},
            },
            401: {"description": "No, unknown, expired or revoked token"},
            403: {"description": "Not a command persons may run (an operator command)"},
            413: {"description": f"Body larger than {MAX_BODY} bytes"},
            422: {"description": "Malformed body, or an input file not uploaded"},
            503: {"description": "The ledger is unavailable"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _COMMAND_BODY}},
            }
        },
    )
    async def post_command(request: Request) -> JSONResponse:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > runner.max_body:
            return _too_large(runner.max_body)
        try:
            person = await run_in_threadpool(
                bearer, credentials, request.headers.get("authorization")
            )
        except Unauthenticated as err:
            return unauthorized(err)
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > runner.max_body:
                return _too_large(runner.max_body)
        try:
            doc = json.loads(raw or b"null")
        except ValueError:
            return JSONResponse(status_code=422, content={"detail": "the body is not JSON"})
        try:
            argv, files = parse_request(doc)
            result = await run_in_threadpool(runner.run, person, argv, files)
        except InvalidInput as err:
            return JSONResponse(status_code=422, content=_errors(err))
        except (CommandNotAllowed, PermissionDenied) as err:
            return JSONResponse(status_code=403, content={"detail": str(err)})
        return JSONResponse(status_code=200, content=result.as_dict())


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        status_code=413, content={"detail": f"the request is larger than {limit} bytes"}
    )


def _safe_ping(ping: Any) -> bool:
    try:
        return bool(ping())
    except EngineError:
        return False
