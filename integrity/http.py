"""HTTP intake (docs/reference.md, HTTP) on FastAPI: the same hook as the CLI and the Python API.

Live intake judges each rating at the time of receipt. A background thread seals
new ledger events into the Merkle log every few seconds, off the request path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Body, FastAPI
from fastapi.responses import JSONResponse

from integrity.app import App
from integrity.errors import BackendUnavailable, EngineError, InvalidInput
from integrity.hook import IngestItem
from integrity.parsing import RatingIn

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
    into the Merkle log, pick up a venue registry that ``integrity venues load``
    replaced meanwhile, then run each of the App's ``background`` tasks (registered by
    the composition root, e.g. the webhook outbox) with the round's time. One thread per
    process; a failed step is logged and the next round retries it, and one task failing
    never stops the others. When it stops it runs one last round, so what the process
    wrote is sealed by the time it exits."""

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
            log.info("venue registry reloaded")

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
) -> FastAPI:
    """The ASGI application over a wired :class:`App`. ``seal_every_s=None`` disables sealing.

    ``routers``: packages' own endpoints (e.g. the audit router), included as given.
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
            503: {"description": "The ledger is unavailable"},
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
        items = [_item(i) for i in app.hook.validate_stream(body, replay=False)]
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

    for router in routers:
        api.include_router(router)
    return api


def _safe_ping(ping: Any) -> bool:
    try:
        return bool(ping())
    except EngineError:
        return False
