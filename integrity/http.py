"""HTTP intake (docs/reference.md, HTTP) on FastAPI: the same hook as the CLI and the Python API.

Trust at the edges:

- **Who sends**: intake needs an intake client's key (``Authorization: Bearer KEY``,
  see :mod:`integrity.clients`): none, unknown, expired or revoked is 401 and nothing
  is written; a rating for a window outside the client's scope is 403 (in a batch, an
  error result for that element). Every rating records the client that sent it.
  ``open_intake`` (``serve --open-intake``, local trials) accepts requests without a
  key as client ``open``, with a WARNING at startup and on every such request.
- **How much**: :class:`BodyLimit` answers 413 before a body larger than the rule
  set's ``[http]`` bounds is read (by ``Content-Length``, or as soon as a streamed body
  passes the bound); a batch is decoded element by element and refused (413) at the
  first element past ``max_batch_items``, without decoding the rest.
- **How long**: :class:`GuardedH11Protocol` closes a connection whose request line
  and headers do not arrive within a few seconds (408); ``serve --limit-concurrency``
  bounds connections and tasks per worker (503 beyond).
- **Where from**: forwarded headers are trusted only from ``serve --trusted-proxy``
  networks; the access log never shows a client address (:func:`log_config`).

Live intake judges each rating at the time of receipt. A background thread seals new
ledger events into the Merkle log every few seconds, off the request path, and
re-reads the registries and intake clients.
``POST /v1/commands`` runs a person-facing command of the CLI for the person a
bearer token names (:mod:`integrity.remote`; ``integrity --server URL ...`` is its
client).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, Literal

import h11
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from uvicorn.protocols.http.h11_impl import H11Protocol

from integrity.app import App
from integrity.auth import Credentials
from integrity.clients import OPEN_CLIENT, IntakeClients
from integrity.config import HttpLimits
from integrity.errors import (
    BackendUnavailable,
    EngineError,
    FieldError,
    InvalidInput,
    PermissionDenied,
    Unauthenticated,
)
from integrity.hook import IngestItem
from integrity.model import VERBAL_LEVELS, IntakeClient, Rubric
from integrity.parsing import RatingIn
from integrity.people import Person
from integrity.remote import MAX_BODY, CommandNotAllowed, CommandRunner, parse_request

log = logging.getLogger("integrity.http")

SEAL_EVERY_S = 2.0
#: Seconds a connection may take to send a whole request line and headers.
HEADER_TIMEOUT_S = 5.0
#: Connections plus tasks per worker process before new requests get 503.
LIMIT_CONCURRENCY = 1000
BATCH_PATH = "/v1/ratings:batch"
#: The catalogue's default bounds; an instance's come from its rule set's ``[http]``.
MAX_BATCH = HttpLimits().max_batch_items

OPEN = IntakeClient(name=OPEN_CLIENT, key_id="", key_hash="")
OPEN_WARNING = (
    "OPEN INTAKE (serve --open-intake): ratings are accepted without a client key and "
    "recorded as client 'open'; anyone who can reach this port can submit. Local trials only."
)


def rating_schema(rubric: Rubric) -> dict[str, Any]:
    """The JSON schema of one rating (docs/reference.md, Ratings) for this rule set's
    rubric: every dimension required, on the rubric's scale (or a verbal level)."""
    schema = RatingIn.model_json_schema()
    props = schema["properties"]
    integer = {"type": "integer", "minimum": rubric.scale_min, "maximum": rubric.scale_max}
    score: dict[str, Any] = integer
    if (rubric.scale_min, rubric.scale_max) == (1, 5):
        score = {"anyOf": [integer, {"type": "string", "enum": sorted(VERBAL_LEVELS)}]}
    props["scores"] = {
        "type": "object",
        "description": props["scores"].get("description", ""),
        "properties": {dim: score for dim in rubric.dimensions},
        "required": list(rubric.dimensions),
        "additionalProperties": False,
    }
    props["ip"] = {**props["ip"], "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
    for name in ("served_at", "submitted_at"):
        text = {"type": "string", "format": "date-time"}
        props[name] = {**props[name], "anyOf": [text, {"type": "null"}]}
    return schema


# -- what the endpoints answer (the OpenAPI schema; responses are built by hand) ------------


class FieldErrorOut(BaseModel):
    field: str = Field(description="dotted path of the field at fault (scores.attitude, (body))")
    message: str


class ErrorOut(BaseModel):
    detail: str
    errors: list[FieldErrorOut] = Field(
        default_factory=list, description="field-level errors (422)"
    )


class DecisionOut(BaseModel):
    rating_id: int
    status: Literal["accepted", "held", "rejected", "voided"]
    counted: bool
    reasons: list[str] = Field(description="reason codes from the catalogue")
    rule_set_id: str
    retry_after_s: float | None = Field(
        default=None, description="present when a rate limit was hit"
    )
    replayed: bool | None = Field(
        default=None, description="true when this answers an identical retry (nothing written)"
    )
    receipt: str | None = Field(
        default=None,
        description="the rater's receipt code: GET /v1/receipts/{code} tells them where the "
        "rating stands (the same for an identical retry)",
    )


class BatchDecisionOut(DecisionOut):
    index: int


class BatchErrorOut(BaseModel):
    index: int
    status: None = Field(description="null: this element was not recorded")
    detail: str
    errors: list[FieldErrorOut]


class BatchOut(BaseModel):
    results: list[BatchDecisionOut | BatchErrorOut] = Field(
        description="one per element, in order: a decision, or field errors (status null)"
    )


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    ledger: Literal["ok", "unavailable"]
    limiter: Literal["ok", "unavailable"]
    rule_set_id: str


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


_UNAUTHORIZED = {
    **_error("No client key, or an unknown, expired or revoked one; nothing written"),
    "headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
}
_TOO_LARGE = _error("The body is larger than the rule set's [http] bounds; nothing read or written")
_UNAVAILABLE = _error("The ledger is unavailable; nothing written; a retry is safe")


# -- request bodies --------------------------------------------------------------------------


class TooLarge(EngineError):
    """A request body or batch past the rule set's ``[http]`` bounds (HTTP 413)."""


def _not_json(err: Exception) -> InvalidInput:
    if isinstance(err, RecursionError):
        message = "nested too deeply"
    elif isinstance(err, UnicodeDecodeError):
        message = "not UTF-8 text"
    else:
        message = str(err)
    return InvalidInput([FieldError("(body)", f"not valid JSON: {message}")], what="request body")


def decode_json(body: bytes) -> Any:
    """The JSON value of a request body; ``InvalidInput`` (field ``(body)``) otherwise."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError too
        raise _not_json(err) from None


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def decode_batch(body: bytes, max_items: int) -> list[Any]:
    """The elements of a JSON array body, decoded one by one: ``TooLarge`` as soon as
    element ``max_items + 1`` begins (the rest is never decoded); ``InvalidInput`` for a
    body that is not a JSON array."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_json(err) from None
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("[", pos):
        try:
            json.loads(text)
        except (ValueError, RecursionError) as err:
            raise _not_json(err) from None
        raise InvalidInput([FieldError("(body)", "expected a JSON array of ratings")], "batch")
    items: list[Any] = []
    pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            if len(items) == max_items:
                raise TooLarge(f"at most {max_items} ratings per batch")
            try:
                item, pos = _DECODER.raw_decode(text, pos)
            except (ValueError, RecursionError) as err:
                raise _not_json(err) from None
            items.append(item)
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                raise _not_json(ValueError(f"expected ',' or ']' at char {pos}"))
    if _WS.match(text, pos).end() != len(text):  # type: ignore[union-attr]
        raise _not_json(ValueError(f"extra data after the array at char {pos}"))
    return items


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Refused(Exception):
    """Raised inside ``receive`` once a streamed body passed its bound (already answered)."""


class BodyLimit:
    """Pure ASGI middleware: a request body larger than its bound is answered 413 before
    the application reads it (``Content-Length``), or as soon as a streamed (chunked)
    body passes the bound; the connection is then closed, so the rest is never read.
    The bound is ``max_batch_bytes`` for the batch path, ``max_body_bytes`` for every
    other request."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, max_batch_bytes: int, batch_path: str = BATCH_PATH
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_batch_bytes = max_batch_bytes
        self.batch_path = batch_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.max_batch_bytes if scope["path"] == self.batch_path else self.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _answer_413(send, cap)
            return
        seen = 0
        answered = False

        async def bounded_receive() -> Message:
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap and not answered:
                    answered = True
                    await _answer_413(send, cap)
                    raise _Refused
            return message

        async def guarded_send(message: Message) -> None:
            if not answered:  # after our 413, whatever the application says is dropped
                await send(message)

        with suppress(_Refused):
            await self.app(scope, bounded_receive, guarded_send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer_413(send: Send, cap: int) -> None:
    body = json.dumps(
        {"detail": f"request body too large: at most {cap} bytes (the rule set's [http] bounds)"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _raw_body(request: Request) -> bytes:
    return await request.body()


# -- answers -------------------------------------------------------------------------------


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


def _item(item: IngestItem, index: int) -> dict[str, Any]:
    if item.error is not None:
        return {"index": index, "status": None, **_errors(item.error)}
    assert item.decision is not None
    return {"index": index, **item.decision.as_dict()}


def _refused_item(index: int, err: PermissionDenied) -> dict[str, Any]:
    return {
        "index": index,
        "status": None,
        "detail": f"refused: {err}",
        "errors": [{"field": "window_id", "message": str(err)}],
    }


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"})


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
    # a receipt code in a path is a capability: the access log shows the path without it
    cfg["filters"] = {"receipts": {"()": "integrity.http_tickets.RedactReceipts"}}
    cfg["handlers"] = {k: dict(v) for k, v in LOGGING_CONFIG["handlers"].items()}
    cfg["handlers"]["access"]["filters"] = ["receipts"]
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
    logged and the next round retries it (intake clients are
    re-read too: a revoked or rotated key stops working here), and one task failing never stops the others.
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
        if self.app.get(IntakeClients).reload():
            log.info("intake clients reloaded")

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
    *,
    open_intake: bool = False,
) -> FastAPI:
    """The ASGI application over a wired :class:`App`. ``seal_every_s=None`` disables sealing.

    ``routers``: packages' own endpoints (e.g. the audit router), included as given.
    ``commands``: the runner of person-facing CLI commands behind ``POST /v1/commands``
    (the composition root gives it the CLI); without it the endpoint is absent.
    ``open_intake``: accept intake without a client key, as client ``open`` (loudly).
    """
    limits = app.core.http
    clients = app.get(IntakeClients)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if open_intake:
            log.warning(OPEN_WARNING)
        await run_in_threadpool(_warm, clients)
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
    api.add_middleware(
        BodyLimit,
        max_body_bytes=limits.max_body_bytes,
        max_batch_bytes=limits.max_batch_bytes,
    )

    @api.exception_handler(BackendUnavailable)
    async def _unavailable(_: Any, err: BackendUnavailable) -> JSONResponse:
        log.error("backend unavailable: %s", err)
        return JSONResponse(
            status_code=503,
            content={"detail": "service unavailable: the ledger did not answer; retry"},
        )

    @api.exception_handler(RequestValidationError)
    async def _invalid_request(_: Any, err: RequestValidationError) -> JSONResponse:
        errors = []
        for e in err.errors():
            loc = [str(p) for p in e.get("loc", ()) if p != "body" and not isinstance(p, int)]
            if e.get("type") == "json_invalid":
                errors.append(FieldError("(body)", f"not valid JSON: {e.get('msg', '')}"))
            else:
                errors.append(FieldError(".".join(loc) or "(body)", str(e.get("msg", ""))))
        return JSONResponse(status_code=422, content=_errors(InvalidInput(errors, what="request")))

    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="IntakeClientKey",
        description="An intake client's key: `integrity clients add NAME` prints it once.",
    )

    async def intake_client(
        credentials: HTTPAuthorizationCredentials | None = Security(bearer),  # noqa: B008
    ) -> IntakeClient:
        if credentials is None:
            if open_intake:
                log.warning("open intake: a request without a client key, recorded as 'open'")
                return OPEN
            raise _unauthorized(
                "send Authorization: Bearer <intake client key> (integrity clients add)"
            )
        key = credentials.credentials
        try:
            client = clients.authenticate_cached(key)
            if client is None:  # a key this process has not seen: read the clients again
                client = await run_in_threadpool(clients.authenticate, key)
        except Unauthenticated as err:
            raise _unauthorized(str(err)) from None
        return client

    one_rating = rating_schema(app.core.rubric)
    intake_body = {
        "required": True,
        "content": {"application/json": {"schema": one_rating}},
    }

    @api.post(
        "/v1/ratings",
        summary="Validate and record one rating",
        response_model=None,
        responses={
            200: {"model": DecisionOut, "description": "The decision (the rating is recorded)"},
            401: _UNAUTHORIZED,
            403: _error("The client may not submit ratings for this window; nothing written"),
            409: {
                "model": DecisionOut,
                "description": "Another rating already holds this ticket; this one is recorded as rejected",
            },
            413: _TOO_LARGE,
            422: _error("The body is not JSON or the rating does not parse; nothing written"),
            503: _UNAVAILABLE,
        },
        openapi_extra={"requestBody": intake_body},
    )
    def post_rating(
        client: IntakeClient = Depends(intake_client),  # noqa: B008 - FastAPI's idiom
        body: bytes = Depends(_raw_body),
    ) -> JSONResponse:
        try:
            obj = decode_json(body)
            window = obj.get("window_id") if isinstance(obj, dict) else None
            if isinstance(window, str):
                clients.admit(client, window)
            decision = app.hook.validate(obj, replay=False, client_id=client.name)
        except InvalidInput as err:
            return JSONResponse(status_code=422, content=_errors(err))
        except PermissionDenied as err:
            return JSONResponse(status_code=403, content={"detail": str(err)})
        code = 409 if decision.duplicate_ticket else 200
        return JSONResponse(status_code=code, content=decision.as_dict())

    @api.post(
        BATCH_PATH,
        summary=f"Validate and record up to {limits.max_batch_items} ratings, in order",
        response_model=None,
        responses={
            200: {
                "model": BatchOut,
                "description": "One result per element, in order: a decision, or field "
                "errors (status null; also for a window outside the client's scope)",
            },
            401: _UNAUTHORIZED,
            413: _error(
                f"The body is larger than the [http] bounds, or holds more than "
                f"{limits.max_batch_items} ratings; nothing written"
            ),
            422: _error("The body is not a JSON array; nothing written"),
            503: _error(
                "The ledger became unavailable: `completed` elements are settled; " + BATCH_503
            ),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "items": one_rating,
                            "maxItems": limits.max_batch_items,
                        }
                    }
                },
            }
        },
    )
    def post_batch(
        client: IntakeClient = Depends(intake_client),  # noqa: B008
        body: bytes = Depends(_raw_body),
    ) -> JSONResponse:
        try:
            items = decode_batch(body, limits.max_batch_items)
        except InvalidInput as err:
            return JSONResponse(status_code=422, content=_errors(err))
        except TooLarge as err:
            return JSONResponse(status_code=413, content={"detail": str(err)})
        results: list[dict[str, Any] | None] = [None] * len(items)
        admitted: list[int] = []
        for i, obj in enumerate(items):
            window = obj.get("window_id") if isinstance(obj, dict) else None
            if isinstance(window, str):
                try:
                    clients.admit(client, window)
                except PermissionDenied as err:
                    results[i] = _refused_item(i, err)
                    continue
            admitted.append(i)
        try:
            stream = app.hook.validate_stream(
                (items[i] for i in admitted), replay=False, client_id=client.name
            )
            for item in stream:
                index = admitted[item.line - 1]
                results[index] = _item(item, index)
        except BackendUnavailable as err:
            completed = next((i for i, r in enumerate(results) if r is None), len(results))
            log.error(
                "backend unavailable after %d of %d batch elements: %s", completed, len(items), err
            )
            return JSONResponse(
                status_code=503,
                content={
                    "detail": "service unavailable: the ledger did not answer; elements before "
                    "the failure may have been recorded; retrying the same batch is safe",
                    "completed": completed,
                    "batch": BATCH_503,
                },
            )
        return JSONResponse(status_code=200, content={"results": results})

    @api.get(
        "/healthz",
        summary="Liveness and backend health (no key needed)",
        response_model=None,
        responses={
            200: {"model": HealthOut, "description": "Ledger reachable"},
            503: {"model": HealthOut, "description": "Ledger unavailable"},
        },
    )
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

    from integrity.http_tickets import add_endpoints  # it builds on this module

    add_endpoints(api, app, intake_client, clients)  # POST /v1/tickets, GET /v1/receipts/{code}
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


def _warm(clients: IntakeClients) -> None:
    try:
        clients.refresh()
    except BackendUnavailable as err:  # the first request will try again
        log.warning("could not read the intake clients yet: %s", err)


def _safe_ping(ping: Any) -> bool:
    try:
        return bool(ping())
    except EngineError:
        return False


# -- the server's connections ------------------------------------------------------------------

REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on the request head: a connection that has
    not sent a whole request line and headers within ``config.header_timeout_s`` seconds
    of opening (or of its previous response) is closed, with a 408 when part of a head
    had arrived (an idle one just closes, as keep-alive does). uvicorn alone waits for a
    slow head as long as the client likes (its keep-alive timeout stops at the first
    byte)."""

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout_s = float(getattr(config, "header_timeout_s", HEADER_TIMEOUT_S))
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_timer is not None and self.conn.their_state is not h11.IDLE:
            self._disarm()  # a whole request head arrived

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # waiting for the next request's head

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered
        started, _ = self.conn.trailing_data
        if started:  # part of a head arrived: say why (an idle connection just closes)
            log.info("closed a connection whose request head did not arrive in time")
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


class ServeConfig(uvicorn.Config):
    """uvicorn's configuration plus the request-head deadline (read by
    :class:`GuardedH11Protocol`; travels to worker processes with the configuration)."""

    def __init__(self, app: Any, *, header_timeout_s: float = HEADER_TIMEOUT_S, **kwargs: Any):
        super().__init__(app, **kwargs)
        self.header_timeout_s = header_timeout_s


def server_config(
    app: Any,
    *,
    host: str,
    port: int,
    workers: int = 1,
    trusted_proxies: Sequence[str] = (),
    limit_concurrency: int | None = LIMIT_CONCURRENCY,
    header_timeout_s: float = HEADER_TIMEOUT_S,
) -> ServeConfig:
    """The uvicorn configuration of ``integrity serve``. ``app`` is the ASGI application,
    or an import string of its factory (``bootstrap:asgi_app``) for several workers.

    Forwarded headers (``X-Forwarded-For``/``-Proto``) are honoured only from the
    ``trusted_proxies`` networks (CIDR); with none, never.
    """
    return ServeConfig(
        app,
        host=host,
        port=port,
        workers=workers,
        factory=isinstance(app, str),
        log_config=log_config(),
        http=GuardedH11Protocol,
        limit_concurrency=limit_concurrency,
        header_timeout_s=header_timeout_s,
        **proxy_options(trusted_proxies),
    )


def proxy_options(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """uvicorn's forwarded-header settings: honoured from ``trusted_proxies`` (CIDR) only."""
    if not trusted_proxies:
        return {"proxy_headers": False, "forwarded_allow_ips": None}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted_proxies)}


def run_server(config: ServeConfig) -> None:
    """Run ``config`` (what ``uvicorn.run`` does, for a configuration built beforehand)."""
    from uvicorn.supervisors import Multiprocess

    server = uvicorn.Server(config=config)
    if config.workers > 1:
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run()
